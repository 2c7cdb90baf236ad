//! A fleet's bookkeeping, apart from the fleet that fills it: live
//! counters for progress lines and benchmarks, and the latency histograms
//! the report is built from.

use hdrhistogram::Histogram;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// The phases whose latency a fleet measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// First access request to the access response.
    Access,
    /// Gateway query to the registry's answer.
    Query,
    /// Opening the gateway connection to being subscribed there.
    Connect,
    /// Power-on to connected on the gateway.
    EndToEnd,
    /// Losing a gateway (redirect or loss) to connected on the next one.
    Move,
}

impl Phase {
    pub const ALL: [Phase; 5] = [
        Phase::Access,
        Phase::Query,
        Phase::Connect,
        Phase::EndToEnd,
        Phase::Move,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Phase::Access => "access",
            Phase::Query => "query",
            Phase::Connect => "connect",
            Phase::EndToEnd => "end_to_end",
            Phase::Move => "move",
        }
    }
}

/// Live counters, readable while the fleet runs (progress, benchmarks).
pub struct FleetStats {
    started: Instant,
    total: usize,
    pub(crate) powered: AtomicU64,
    pub(crate) joined: AtomicU64,
    pub(crate) assigned: AtomicU64,
    pub(crate) connected: AtomicU64,
    failed: AtomicU64,
    pub(crate) moves: AtomicU64,
    pub(crate) redirects: AtomicU64,
    pub(crate) losses: AtomicU64,
    pub(crate) refusals: AtomicU64,
    changed: Notify,
    book: Mutex<Book>,
}

/// What needs a lock: histograms, error codes, the timeline, placement.
pub(crate) struct Book {
    pub(crate) latency: BTreeMap<Phase, Histogram<u64>>,
    pub(crate) errors: BTreeMap<String, u64>,
    /// Seconds since the start at which each device first connected.
    pub(crate) completions: Vec<f64>,
    pub(crate) on_gateway: HashMap<String, u64>,
    /// What each device is doing now (`on gw-2`, `asking the registry: 3
    /// queries unanswered`, …): where a device that never arrives is stuck.
    pub(crate) doing: HashMap<String, String>,
    /// Every assignment each device was told, by the registry's answer or
    /// a redirect notice: (device, epoch) -> gateway. A second, different
    /// gateway at one epoch goes to `contradictions`.
    pub(crate) told: HashMap<(String, u64), String>,
    pub(crate) contradictions: Vec<(String, u64, String, String)>,
}

impl FleetStats {
    pub fn new(total: usize) -> Arc<FleetStats> {
        let latency = Phase::ALL
            .iter()
            .filter_map(|p| {
                // 1 µs to 10 min, 3 significant digits.
                Histogram::new_with_bounds(1, 600_000_000, 3)
                    .ok()
                    .map(|h| (*p, h))
            })
            .collect();
        Arc::new(FleetStats {
            started: Instant::now(),
            total,
            powered: AtomicU64::new(0),
            joined: AtomicU64::new(0),
            assigned: AtomicU64::new(0),
            connected: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            moves: AtomicU64::new(0),
            redirects: AtomicU64::new(0),
            losses: AtomicU64::new(0),
            refusals: AtomicU64::new(0),
            changed: Notify::new(),
            book: Mutex::new(Book {
                latency,
                errors: BTreeMap::new(),
                completions: Vec::with_capacity(total),
                on_gateway: HashMap::new(),
                doing: HashMap::with_capacity(total),
                told: HashMap::with_capacity(total),
                contradictions: Vec::new(),
            }),
        })
    }

    pub(crate) fn book(&self) -> MutexGuard<'_, Book> {
        // A panic while holding the lock leaves plain counters behind;
        // they are still the best numbers there are.
        self.book.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn total(&self) -> usize {
        self.total
    }

    pub fn started(&self) -> Instant {
        self.started
    }

    pub fn snapshot(&self) -> Progress {
        Progress {
            total: self.total as u64,
            powered: self.powered.load(Ordering::Relaxed),
            joined: self.joined.load(Ordering::Relaxed),
            assigned: self.assigned.load(Ordering::Relaxed),
            connected: self.connected.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            moves: self.moves.load(Ordering::Relaxed),
            redirects: self.redirects.load(Ordering::Relaxed),
            losses: self.losses.load(Ordering::Relaxed),
            refusals: self.refusals.load(Ordering::Relaxed),
            elapsed: self.started.elapsed(),
        }
    }

    /// Devices connected to `gateway_id` right now.
    pub fn on_gateway(&self, gateway_id: &str) -> u64 {
        self.book().on_gateway.get(gateway_id).copied().unwrap_or(0)
    }

    /// Waits until `pred` holds, re-checking after every change; false if
    /// `timeout` passes first.
    pub async fn wait_until(&self, timeout: Duration, pred: impl Fn(&FleetStats) -> bool) -> bool {
        let wait = async {
            loop {
                let changed = self.changed.notified();
                if pred(self) {
                    return;
                }
                // A change between the check and here is not lost: the
                // Notified future was created before the check. The
                // timeout bounds a missed wake-up anyway.
                let _ = tokio::time::timeout(Duration::from_millis(50), changed).await;
            }
        };
        tokio::time::timeout(timeout, wait).await.is_ok()
    }

    /// All devices have connected at least once or failed.
    pub fn settled(&self) -> bool {
        let p = self.snapshot();
        p.connected + p.failed >= p.total
    }

    pub(crate) fn record(&self, phase: Phase, d: Duration) {
        let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1);
        if let Some(h) = self.book().latency.get_mut(&phase) {
            h.saturating_record(micros);
        }
    }

    pub(crate) fn bump(&self, counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
        self.changed.notify_waiters();
    }

    pub(crate) fn fail(&self, code: String) {
        *self.book().errors.entry(code).or_default() += 1;
        self.bump(&self.failed);
    }

    /// Records what `device` is doing now.
    pub(crate) fn set_doing(&self, device: &str, what: String) {
        self.book().doing.insert(device.to_owned(), what);
    }

    /// An error that ended a device after it had connected: counted by
    /// code (as `after_connect_CODE`), not as a failed device.
    pub(crate) fn note_error(&self, code: &str) {
        *self
            .book()
            .errors
            .entry(format!("after_connect_{code}"))
            .or_default() += 1;
        self.changed.notify_waiters();
    }

    /// Records that `device` was told its gateway is `gateway_id` at
    /// `epoch`.
    pub(crate) fn told(&self, device: &str, epoch: u64, gateway_id: &str) {
        let mut book = self.book();
        match book.told.entry((device.to_owned(), epoch)) {
            std::collections::hash_map::Entry::Occupied(known) => {
                if known.get() != gateway_id {
                    let first = known.get().clone();
                    book.contradictions.push((
                        device.to_owned(),
                        epoch,
                        first,
                        gateway_id.to_owned(),
                    ));
                }
            }
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(gateway_id.to_owned());
            }
        }
    }

    /// Every (device, epoch, gateway) the devices were told, sorted.
    pub fn told_assignments(&self) -> Vec<(String, u64, String)> {
        let mut all: Vec<(String, u64, String)> = self
            .book()
            .told
            .iter()
            .map(|((d, e), g)| (d.clone(), *e, g.clone()))
            .collect();
        all.sort();
        all
    }

    /// The devices told two different gateways at one epoch: (device,
    /// epoch, first gateway, second gateway). Empty when the platform
    /// never contradicted itself.
    pub fn contradictions(&self) -> Vec<(String, u64, String, String)> {
        self.book().contradictions.clone()
    }

    /// What each device is doing now (`on gw-2`, …), by device.
    pub fn placements(&self) -> HashMap<String, String> {
        self.book().doing.clone()
    }

    /// The devices not connected to `gateway_id` now, each with what it is
    /// doing, sorted by device.
    pub fn not_on(&self, gateway_id: &str) -> Vec<(String, String)> {
        let there = format!("on {gateway_id}");
        let mut away: Vec<(String, String)> = self
            .book()
            .doing
            .iter()
            .filter(|(_, what)| **what != there)
            .map(|(d, what)| (d.clone(), what.clone()))
            .collect();
        away.sort();
        away
    }

    pub(crate) fn arrive(&self, gateway_id: &str, first: bool) {
        let now = Instant::now();
        {
            let mut book = self.book();
            *book.on_gateway.entry(gateway_id.to_owned()).or_default() += 1;
            if first {
                let at = now.duration_since(self.started).as_secs_f64();
                book.completions.push(at);
            }
        }
        self.changed.notify_waiters();
    }

    pub(crate) fn leave(&self, gateway_id: &str) {
        let mut book = self.book();
        if let Some(n) = book.on_gateway.get_mut(gateway_id) {
            *n = n.saturating_sub(1);
        }
    }
}

/// A moment's counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    pub total: u64,
    pub powered: u64,
    pub joined: u64,
    pub assigned: u64,
    pub connected: u64,
    pub failed: u64,
    pub moves: u64,
    pub redirects: u64,
    pub losses: u64,
    pub refusals: u64,
    pub elapsed: Duration,
}

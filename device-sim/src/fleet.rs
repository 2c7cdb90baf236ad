//! Many simulated devices in one process.
//!
//! Every device runs [`crate::live`], the very code a single `device-sim`
//! runs, with its own MQTT connections and state. The fleet only shares the
//! runtime and adds pacing (`concurrency`, `rate`) and bookkeeping
//! ([`FleetStats`]), from which [`crate::report::FleetReport`] is built.

use crate::gateway::{HomeConfig, HomeEvent};
use crate::manifest::Identity;
use crate::report::FleetReport;
use crate::{DeviceConfig, DeviceError, DeviceEvent, LifeEvents};
use hdrhistogram::Histogram;
use protocol::crypto::PlatformPublicKey;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::warn;

/// How a fleet runs.
#[derive(Debug, Clone)]
pub struct FleetConfig {
    /// The platform broker, "host:port".
    pub broker: String,
    pub devices: Vec<Identity>,
    /// Device `i` joins `ssids[i % len]`, so a fleet spreads over APs.
    pub ssids: Vec<String>,
    pub auto_confirm: bool,
    /// Devices between power-on and their first gateway connection at once.
    pub concurrency: usize,
    /// Power-ons per second; None: as fast as `concurrency` allows.
    pub rate: Option<f64>,
    /// How long the fleet stays connected after every device has settled;
    /// None: until shut down.
    pub hold: Option<Duration>,
    pub username: String,
    pub password: String,
    /// Per device: how long to wait for an AP before giving up.
    pub answer_timeout: Duration,
    /// Secure mode (see [`DeviceConfig::platform_key`]); None: walkthrough.
    pub platform_key: Option<PlatformPublicKey>,
}

impl FleetConfig {
    pub fn new(broker: impl Into<String>, devices: Vec<Identity>, ssid: impl Into<String>) -> Self {
        FleetConfig {
            broker: broker.into(),
            devices,
            ssids: vec![ssid.into()],
            auto_confirm: true,
            concurrency: 256,
            rate: None,
            hold: None,
            username: "device".into(),
            password: String::new(),
            answer_timeout: Duration::from_secs(30),
            platform_key: None,
        }
    }
}

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
    powered: AtomicU64,
    joined: AtomicU64,
    assigned: AtomicU64,
    connected: AtomicU64,
    failed: AtomicU64,
    moves: AtomicU64,
    redirects: AtomicU64,
    losses: AtomicU64,
    refusals: AtomicU64,
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

    fn record(&self, phase: Phase, d: Duration) {
        let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1);
        if let Some(h) = self.book().latency.get_mut(&phase) {
            h.saturating_record(micros);
        }
    }

    fn bump(&self, counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
        self.changed.notify_waiters();
    }

    fn fail(&self, code: String) {
        *self.book().errors.entry(code).or_default() += 1;
        self.bump(&self.failed);
    }

    fn arrive(&self, gateway_id: &str, first: bool) {
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

    fn leave(&self, gateway_id: &str) {
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

/// Runs the fleet: powers devices on, paced by `concurrency` and `rate`,
/// keeps them on their gateways until every one has settled and `hold` has
/// passed (or `shutdown`), then disconnects them all and reports.
pub async fn run(
    config: FleetConfig,
    stats: Arc<FleetStats>,
    shutdown: CancellationToken,
) -> FleetReport {
    let fleet = shutdown.child_token();
    let gate = Arc::new(Semaphore::new(config.concurrency.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    let ssids = if config.ssids.is_empty() {
        vec![String::new()]
    } else {
        config.ssids.clone()
    };
    let hold = config.hold;
    let spawner = {
        let fleet = fleet.clone();
        let stats = stats.clone();
        async move {
            let t0 = tokio::time::Instant::now();
            for (i, identity) in config.devices.iter().enumerate() {
                if let Some(rate) = config.rate.filter(|r| *r > 0.0) {
                    let at = t0 + Duration::from_secs_f64(i as f64 / rate);
                    tokio::select! {
                        _ = fleet.cancelled() => return,
                        _ = tokio::time::sleep_until(at) => {}
                    }
                }
                let permit = tokio::select! {
                    _ = fleet.cancelled() => return,
                    p = gate.clone().acquire_owned() => match p {
                        Ok(p) => p,
                        Err(_) => return,
                    },
                };
                let mut device = DeviceConfig::new(
                    &config.broker,
                    &identity.uuid,
                    &identity.pass_tmp,
                    &ssids[i % ssids.len()],
                );
                device.auto_confirm = config.auto_confirm;
                device.answer_timeout = config.answer_timeout;
                device.username = config.username.clone();
                device.password = config.password.clone();
                device.platform_key = config.platform_key;
                let mut home = HomeConfig::new(&config.broker, &identity.uuid);
                home.username = config.username.clone();
                home.password = config.password.clone();
                if let Some(key) = config.platform_key {
                    home = home.secure(key, &identity.pass_tmp);
                }
                tasks.spawn(one_device(
                    device,
                    home,
                    stats.clone(),
                    permit,
                    fleet.clone(),
                ));
            }
            // Keep the set alive until the fleet stops, reaping as we go.
            loop {
                tokio::select! {
                    _ = fleet.cancelled() => break,
                    done = tasks.join_next() => if done.is_none() { fleet.cancelled().await; break },
                }
            }
            let drain = async { while tasks.join_next().await.is_some() {} };
            if tokio::time::timeout(Duration::from_secs(10), drain)
                .await
                .is_err()
            {
                warn!("some devices did not stop within 10 s");
                tasks.abort_all();
            }
        }
    };
    let spawner = tokio::spawn(spawner);

    let settled = async {
        stats.wait_until(Duration::MAX, |s| s.settled()).await;
        match hold {
            Some(hold) => tokio::time::sleep(hold).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = shutdown.cancelled() => {}
        _ = settled => {}
    }
    let report = FleetReport::from_stats(&stats);
    fleet.cancel();
    let _ = spawner.await;
    report
}

/// One device's whole life, with its events turned into statistics.
async fn one_device(
    device: DeviceConfig,
    home: HomeConfig,
    stats: Arc<FleetStats>,
    permit: tokio::sync::OwnedSemaphorePermit,
    shutdown: CancellationToken,
) {
    stats.bump(&stats.powered);
    let powered_on = Instant::now();
    let mut permit = Some(permit);
    let (device_tx, mut device_rx) = mpsc::unbounded_channel();
    let (home_tx, mut home_rx) = mpsc::unbounded_channel();
    let events = LifeEvents {
        device: device_tx,
        home: home_tx,
    };
    let life = crate::live(&device, &home, &events, None, &shutdown);
    tokio::pin!(life);
    let mut current: Option<String> = None;
    let mut ever_connected = false;
    let result = loop {
        tokio::select! {
            result = &mut life => break result,
            Some(event) = device_rx.recv() => match event {
                DeviceEvent::Prompt { latency, .. } => stats.record(Phase::Access, latency),
                DeviceEvent::Joined { .. } => stats.bump(&stats.joined),
                DeviceEvent::Connected { .. } | DeviceEvent::RequestSent { .. } => {}
            },
            Some(event) = home_rx.recv() => match event {
                HomeEvent::Assigned { latency, .. } => {
                    stats.record(Phase::Query, latency);
                    if !ever_connected {
                        stats.bump(&stats.assigned);
                    }
                }
                HomeEvent::Connected { gateway_id, from, elapsed, connect_latency, .. } => {
                    stats.record(Phase::Connect, connect_latency);
                    // Placement first, so that whoever sees the count
                    // rise also sees where the device is.
                    stats.arrive(&gateway_id, !ever_connected);
                    if ever_connected {
                        stats.record(Phase::Move, elapsed);
                        if from.is_some() {
                            stats.bump(&stats.moves);
                        }
                    } else {
                        stats.record(Phase::EndToEnd, powered_on.elapsed());
                        stats.bump(&stats.connected);
                        permit.take();
                    }
                    ever_connected = true;
                    current = Some(gateway_id);
                }
                HomeEvent::Redirected { .. } => {
                    if let Some(gw) = current.take() {
                        stats.leave(&gw);
                    }
                    stats.bump(&stats.redirects);
                }
                HomeEvent::Lost { .. } => {
                    if let Some(gw) = current.take() {
                        stats.leave(&gw);
                    }
                    stats.bump(&stats.losses);
                }
                HomeEvent::Refused { .. } => stats.bump(&stats.refusals),
                HomeEvent::QueryRefused { code, .. } => {
                    warn!(device = %device.uuid, %code, "registry refused a query");
                }
            },
        }
    };
    if let Some(gw) = current.take() {
        stats.leave(&gw);
    }
    match result {
        Ok(()) => {}
        Err(DeviceError::Stopped) if shutdown.is_cancelled() => {}
        Err(e) => {
            if !ever_connected {
                stats.fail(error_code(&e));
            }
        }
    }
}

/// A short, stable name for a failure, for counting.
pub fn error_code(e: &DeviceError) -> String {
    match e {
        DeviceError::Invalid { field, .. } => format!("invalid_{}", field.replace(' ', "_")),
        DeviceError::Bus(bus::BusError::Timeout { .. }) => "broker_timeout".into(),
        DeviceError::Bus(bus::BusError::Refused { .. }) => "broker_refused".into(),
        DeviceError::Bus(_) => "broker_error".into(),
        DeviceError::Refused { code, .. } => code.to_string(),
        DeviceError::NoAnswer(_) => "no_answer".into(),
        DeviceError::Declined => "declined".into(),
        DeviceError::ConfirmTimeout(_) => "confirm_timeout".into(),
        DeviceError::Stopped => "stopped".into(),
    }
}

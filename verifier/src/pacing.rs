//! How often one device UUID's pass_tmp may be guessed: failed proofs per
//! UUID, and the pace they set for its next attempts.
//!
//! The one place that counts guesses at a pass_tmp: proofs the verifier
//! judged wrong (a device login tests no guess, and neither does a
//! challenge nobody proved). Below `free` failures nothing is paced. From
//! there each new challenge for the UUID waits a step after the last one,
//! doubling from one second up to `cap`; a proof that checks forgets them.
//!
//! Nobody is locked out: the real device, which holds pass_tmp, always
//! gets through. A request that must wait is given a slot of its own (a
//! short queue per UUID, in arrival order) and keeps it as long as it asks
//! again with the same handshake, so a stranger who keeps failing cannot
//! take every slot from the device: the device is at most a few steps
//! behind, while a guesser gets one guess per step. Kept in memory, per
//! verifier instance (docs/SECURITY.md, Limits).

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// UUIDs tracked at most; at capacity, those not paced are forgotten
/// first, so a flood of made-up ids cannot grow the map without bound.
const MAX_TRACKED: usize = 1_000_000;

/// A UUID that has not failed for this long starts afresh.
const FORGET_AFTER: Duration = Duration::from_secs(3_600);

/// Slots reserved per UUID at most: more requests waiting at once than
/// this are told to come back a step later, with no slot.
const MAX_WAITING: usize = 4;

/// How long a reserved slot is kept for its request after it opens.
const SLOT_GRACE: Duration = Duration::from_secs(5);

/// The first step, doubled per failure past `free`.
const FIRST_STEP: Duration = Duration::from_secs(1);

/// One handshake, as the pacing knows it.
pub type Handshake = [u8; 12];

/// The wait between two attempts on a UUID with `failures` failures.
fn step(free: u32, cap: Duration, failures: u32) -> Duration {
    let past = failures.saturating_sub(free).min(16);
    FIRST_STEP.saturating_mul(1 << past).min(cap)
}

#[derive(Debug)]
struct Entry {
    failures: u32,
    last_failure: Instant,
    /// Before this, no unreserved request gets a challenge.
    next_slot: Instant,
    /// Requests that were told to wait, each with its slot.
    waiting: VecDeque<(Handshake, Instant)>,
}

/// Failures and slots per UUID. Owned by one task (the verifier's serve
/// loop): no lock.
#[derive(Debug)]
pub struct Pacing {
    free: u32,
    cap: Duration,
    capacity: usize,
    entries: HashMap<String, Entry>,
}

impl Pacing {
    /// `free` failures are allowed before pacing starts; `cap` is the
    /// longest step between two attempts on one UUID (at least a second).
    pub fn new(free: u32, cap: Duration) -> Self {
        Self::with_capacity(free, cap, MAX_TRACKED)
    }

    fn with_capacity(free: u32, cap: Duration, capacity: usize) -> Self {
        Pacing {
            free,
            cap: cap.max(FIRST_STEP),
            capacity: capacity.max(1),
            entries: HashMap::new(),
        }
    }

    fn step(&self, failures: u32) -> Duration {
        step(self.free, self.cap, failures)
    }

    /// Whether the request with `handshake` for `uuid` may be challenged
    /// now; if not, how long until its slot (or, with no slot left to
    /// give, until it may ask again).
    pub fn admit(
        &mut self,
        uuid: &str,
        handshake: Handshake,
        now: Instant,
    ) -> Result<(), Duration> {
        let Some(entry) = self.entries.get_mut(uuid) else {
            return Ok(());
        };
        if now.saturating_duration_since(entry.last_failure) >= FORGET_AFTER {
            self.entries.remove(uuid);
            return Ok(());
        }
        if entry.failures < self.free {
            return Ok(());
        }
        let step = step(self.free, self.cap, entry.failures);
        while entry
            .waiting
            .front()
            .is_some_and(|(_, slot)| *slot + SLOT_GRACE < now)
        {
            entry.waiting.pop_front();
        }
        if let Some(i) = entry.waiting.iter().position(|(h, _)| *h == handshake) {
            let slot = entry.waiting[i].1;
            if slot <= now {
                entry.waiting.remove(i);
                entry.next_slot = entry.next_slot.max(now + step);
                return Ok(());
            }
            return Err(slot - now);
        }
        if entry.waiting.is_empty() && now >= entry.next_slot {
            entry.next_slot = now + step;
            return Ok(());
        }
        if entry.waiting.len() >= MAX_WAITING {
            return Err(step);
        }
        let after = entry
            .waiting
            .back()
            .map_or(entry.next_slot, |(_, slot)| *slot + step);
        let slot = after.max(entry.next_slot).max(now);
        entry.waiting.push_back((handshake, slot));
        Err(slot
            .saturating_duration_since(now)
            .max(Duration::from_millis(1)))
    }

    /// A proof for `uuid` that did not check: one more failure.
    pub fn failed(&mut self, uuid: &str, now: Instant) {
        self.make_room(now);
        let entry = self.entries.entry(uuid.to_owned()).or_insert(Entry {
            failures: 0,
            last_failure: now,
            next_slot: now,
            waiting: VecDeque::new(),
        });
        entry.failures = entry.failures.saturating_add(1);
        entry.last_failure = now;
        let failures = entry.failures;
        if failures >= self.free {
            let step = self.step(failures);
            if let Some(entry) = self.entries.get_mut(uuid) {
                entry.next_slot = entry.next_slot.max(now + step);
            }
        }
    }

    /// The device proved pass_tmp: its failures are forgotten.
    pub fn proved(&mut self, uuid: &str) {
        self.entries.remove(uuid);
    }

    /// Failures counted for `uuid` now.
    pub fn failures(&self, uuid: &str) -> u32 {
        self.entries.get(uuid).map_or(0, |e| e.failures)
    }

    /// At capacity, forgets the UUIDs not paced, then, if that is not
    /// enough, every one (the pace is a brake, not a lock: forgetting it
    /// lets nobody in).
    fn make_room(&mut self, now: Instant) {
        if self.entries.len() < self.capacity {
            return;
        }
        let free = self.free;
        self.entries.retain(|_, e| {
            e.failures >= free && now.saturating_duration_since(e.last_failure) < FORGET_AFTER
        });
        if self.entries.len() >= self.capacity {
            self.entries.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn h(n: u8) -> Handshake {
        [n; 12]
    }

    #[test]
    fn failures_below_free_pace_nothing_and_a_proof_forgets_them() {
        let t0 = Instant::now();
        let mut p = Pacing::new(5, 8 * S);
        for n in 0..4 {
            assert_eq!(p.admit("u", h(n), t0), Ok(()));
            p.failed("u", t0);
        }
        assert_eq!(p.admit("u", h(9), t0), Ok(()), "four failures: free");
        p.proved("u");
        assert_eq!(p.failures("u"), 0);
        assert_eq!(p.admit("other", h(1), t0), Ok(()));
    }

    #[test]
    fn past_free_each_attempt_waits_a_step_doubling_to_the_cap() {
        let t0 = Instant::now();
        let mut p = Pacing::new(2, 4 * S);
        p.failed("u", t0);
        p.failed("u", t0);
        // Two failures: the next challenge waits a second.
        let wait = p.admit("u", h(1), t0).unwrap_err();
        assert_eq!(wait, S);
        assert_eq!(p.admit("u", h(1), t0 + S), Ok(()), "its slot came");
        p.failed("u", t0 + S);
        let wait = p.admit("u", h(2), t0 + S).unwrap_err();
        assert_eq!(wait, 2 * S, "doubled");
        for _ in 0..10 {
            p.failed("u", t0 + S);
        }
        assert!(p.step(p.failures("u")) <= 4 * S, "capped");
        // Nobody is ever locked out for longer than the cap.
        let later = t0 + 6 * S;
        let first = p.admit("u", h(3), later);
        assert!(first.is_ok() || first.unwrap_err() <= 4 * S, "{first:?}");
    }

    #[test]
    fn a_waiting_device_keeps_its_slot_against_a_stranger_who_keeps_failing() {
        let t0 = Instant::now();
        let mut p = Pacing::new(3, 4 * S);
        // The stranger failed three times: paced from now on.
        for _ in 0..3 {
            p.failed("u", t0);
        }
        // The device asks and is given a slot.
        let device = h(0xd);
        let wait = p.admit("u", device, t0).unwrap_err();
        // The stranger asks with fresh handshakes meanwhile: each gets a
        // later slot, never the device's.
        let mut t = t0;
        for n in 0..20 {
            t += Duration::from_millis(100);
            if t >= t0 + wait {
                break;
            }
            assert!(p.admit("u", h(n), t).is_err(), "stranger {n} at {t:?}");
        }
        // At its slot the device is admitted.
        assert_eq!(p.admit("u", device, t0 + wait), Ok(()));
        // The stranger's first reserved slot is after the device's.
        assert!(p.admit("u", h(0), t0 + wait).is_err());
    }

    #[test]
    fn a_slot_not_taken_in_time_is_given_up() {
        let t0 = Instant::now();
        let mut p = Pacing::new(1, 2 * S);
        p.failed("u", t0);
        let wait = p.admit("u", h(1), t0).unwrap_err();
        // It never comes back; another request later is served.
        let late = t0 + wait + SLOT_GRACE + S;
        assert_eq!(p.admit("u", h(2), late), Ok(()));
    }

    #[test]
    fn failures_are_forgotten_after_an_hour_and_the_map_stays_bounded() {
        let t0 = Instant::now();
        let mut p = Pacing::with_capacity(1, 2 * S, 4);
        p.failed("u", t0);
        assert!(p.admit("u", h(1), t0).is_err());
        assert_eq!(p.admit("u", h(2), t0 + FORGET_AFTER), Ok(()));
        for n in 0..20 {
            p.failed(&format!("x{n}"), t0);
            assert!(p.entries.len() <= 4, "{}", p.entries.len());
        }
    }
}

//! Failed attempts per device UUID, and the lockout they lead to.
//!
//! The one place that counts guesses at a pass_tmp: the verifier's
//! releases of a pass_tmp to an AP, and the proofs that follow them (a
//! device login tests no guess, so it counts none). Kept in memory only:
//! a restart forgets lockouts (docs/SECURITY.md, Limits).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// UUIDs tracked at most before the unlocked ones are forgotten, so that a
/// flood of made-up ids cannot grow the map without bound. Locked entries
/// are always kept: forgetting them would unlock the devices an attacker
/// has been guessing at.
const MAX_TRACKED: usize = 1_000_000;

#[derive(Debug, Clone, Copy, Default)]
struct Entry {
    failures: u32,
    locked_until: Option<Instant>,
}

/// Counts failures per key and locks a key for `duration` once it reaches
/// `max_failures`. Safe to share between threads.
#[derive(Debug)]
pub struct Lockout {
    max_failures: u32,
    duration: Duration,
    capacity: usize,
    entries: Mutex<HashMap<String, Entry>>,
}

impl Lockout {
    /// `max_failures` below 1 counts as 1.
    pub fn new(max_failures: u32, duration: Duration) -> Self {
        Self::with_capacity(max_failures, duration, MAX_TRACKED)
    }

    fn with_capacity(max_failures: u32, duration: Duration, capacity: usize) -> Self {
        Lockout {
            max_failures: max_failures.max(1),
            duration,
            capacity,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        // A panic elsewhere while holding the lock leaves counts that are
        // still counts: keep using them.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How long `key` stays locked, if it is locked now. A lock that has
    /// run out is forgotten with its failures.
    pub fn locked(&self, key: &str) -> Option<Duration> {
        let now = Instant::now();
        let mut entries = self.entries();
        let until = entries.get(key)?.locked_until?;
        if until > now {
            return Some(until - now);
        }
        entries.remove(key);
        None
    }

    /// Counts one failure of `key`, locking it at the limit.
    pub fn fail(&self, key: &str) {
        let now = Instant::now();
        let mut entries = self.entries();
        self.make_room(&mut entries, now);
        let entry = entries.entry(key.to_owned()).or_default();
        Self::expire(entry, now);
        self.count(entry, now);
    }

    /// One attempt that counts as a failure until [`Lockout::clear`] says
    /// it succeeded: refused with the time left if `key` is locked,
    /// otherwise counted (and locking at the limit). Check and count are
    /// one step, so concurrent attempts cannot both slip under the limit.
    pub fn attempt(&self, key: &str) -> Result<(), Duration> {
        let now = Instant::now();
        let mut entries = self.entries();
        self.make_room(&mut entries, now);
        let entry = entries.entry(key.to_owned()).or_default();
        if let Some(until) = entry.locked_until.filter(|u| *u > now) {
            return Err(until - now);
        }
        Self::expire(entry, now);
        self.count(entry, now);
        Ok(())
    }

    /// Forgets `key`'s failures: it succeeded.
    pub fn clear(&self, key: &str) {
        self.entries().remove(key);
    }

    fn expire(entry: &mut Entry, now: Instant) {
        if entry.locked_until.is_some_and(|u| u <= now) {
            *entry = Entry::default();
        }
    }

    fn count(&self, entry: &mut Entry, now: Instant) {
        entry.failures = entry.failures.saturating_add(1);
        if entry.failures >= self.max_failures {
            entry.locked_until = Some(now + self.duration);
        }
    }

    /// At capacity, forgets every key that is not locked now.
    fn make_room(&self, entries: &mut HashMap<String, Entry>, now: Instant) {
        if entries.len() >= self.capacity {
            entries.retain(|_, e| e.locked_until.is_some_and(|u| u > now));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_locks_at_the_limit_and_a_success_clears_it() {
        let l = Lockout::new(3, Duration::from_secs(60));
        l.fail("a");
        l.fail("a");
        assert_eq!(l.locked("a"), None);
        l.clear("a");
        l.fail("a");
        l.fail("a");
        assert_eq!(l.locked("a"), None, "cleared counts start again");
        l.fail("a");
        assert!(l.locked("a").is_some());
        assert_eq!(l.locked("b"), None);
    }

    #[test]
    fn attempts_count_until_cleared_and_are_refused_while_locked() {
        let l = Lockout::new(2, Duration::from_secs(60));
        assert_eq!(l.attempt("a"), Ok(()));
        assert_eq!(l.attempt("a"), Ok(()), "the second locks after it");
        let left = l.attempt("a").unwrap_err();
        assert!(left > Duration::from_secs(59), "{left:?}");
        l.clear("a");
        assert_eq!(l.attempt("a"), Ok(()));
    }

    #[test]
    fn a_lock_runs_out_and_its_failures_with_it() {
        let l = Lockout::new(1, Duration::from_millis(20));
        l.fail("a");
        assert!(l.locked("a").is_some());
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(l.locked("a"), None);
        assert_eq!(l.attempt("a"), Ok(()), "counted afresh, locking again");
        assert!(l.locked("a").is_some());
    }

    #[test]
    fn a_full_map_forgets_the_unlocked_and_keeps_the_locked() {
        let l = Lockout::with_capacity(2, Duration::from_secs(60), 4);
        l.fail("locked");
        l.fail("locked");
        for key in ["x", "y", "z", "w", "v"] {
            l.fail(key);
        }
        assert!(l.locked("locked").is_some(), "a flood unlocked a device");
        assert!(l.entries().len() <= 4, "{:?}", l.entries().len());
    }
}

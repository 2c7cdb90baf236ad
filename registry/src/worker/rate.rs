//! How many presence reports each gateway may send: a token bucket per
//! gateway id, in a map of bounded size.
//!
//! A report costs the registry a decode (up to
//! [`protocol::gateway::MAX_ASSIGN_PAYLOAD`]) and a store read, whatever it
//! says; one gateway credential flooding reports would otherwise cost the
//! registry (and a shared PostgreSQL) as much as the broker lets it send.
//! Each gateway gets [`PRESENCE_BURST`] reports at once and
//! [`PRESENCE_PER_SEC`] a second after that; a report over its rate is
//! dropped unread. The gateway agent coalesces what happened since its
//! last report, so a legitimate gateway sends fewer reports the busier it
//! is.
//!
//! The map holds at most [`MAX_BUCKETS`] gateways. A full bucket is the
//! same as a new one, so forgetting it loses nothing: when the map is full
//! the full buckets go first, then the fullest one (the gateway that
//! reported least lately), which can then send at most a burst early.
//!
//! Time is passed in, so that tests need no clock.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Reports a gateway may send at once.
pub(crate) const PRESENCE_BURST: u32 = 1_000;
/// Reports a second a gateway may send after its burst.
pub(crate) const PRESENCE_PER_SEC: u32 = 500;
/// Gateways whose buckets are kept at once.
pub(crate) const MAX_BUCKETS: usize = 4096;
/// How often, at most, a gateway's dropped reports are logged: the first
/// at once, then a count.
pub(crate) const WARN_EVERY: Duration = Duration::from_secs(10);

/// What [`RateLimits::admit`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admit {
    Yes,
    /// Dropped. `log`: reports dropped since the last warning, this one
    /// included, when it is time to warn again; None: stay quiet.
    No {
        log: Option<u64>,
    },
}

struct Bucket {
    tokens: f64,
    at: Instant,
    /// Drops not yet logged, and when the last warning went out.
    unlogged: u64,
    warned: Option<Instant>,
}

impl Bucket {
    fn refill(&mut self, now: Instant, burst: f64, per_sec: f64) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * per_sec).min(burst);
        self.at = self.at.max(now);
    }
}

/// A token bucket per gateway id.
pub(crate) struct RateLimits {
    buckets: HashMap<String, Bucket>,
    burst: f64,
    per_sec: f64,
    max_buckets: usize,
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits::new(PRESENCE_BURST, PRESENCE_PER_SEC, MAX_BUCKETS)
    }
}

impl RateLimits {
    pub(crate) fn new(burst: u32, per_sec: u32, max_buckets: usize) -> Self {
        RateLimits {
            buckets: HashMap::new(),
            burst: f64::from(burst),
            per_sec: f64::from(per_sec),
            max_buckets: max_buckets.max(1),
        }
    }

    /// Takes a token from `gateway_id`'s bucket, if it has one at `now`.
    pub(crate) fn admit(&mut self, gateway_id: &str, now: Instant) -> Admit {
        let (burst, per_sec) = (self.burst, self.per_sec);
        if !self.buckets.contains_key(gateway_id) {
            self.make_room(now);
            self.buckets.insert(
                gateway_id.to_owned(),
                Bucket {
                    tokens: burst,
                    at: now,
                    unlogged: 0,
                    warned: None,
                },
            );
        }
        let Some(b) = self.buckets.get_mut(gateway_id) else {
            return Admit::Yes;
        };
        b.refill(now, burst, per_sec);
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            return Admit::Yes;
        }
        b.unlogged += 1;
        let due = b
            .warned
            .is_none_or(|w| now.saturating_duration_since(w) >= WARN_EVERY);
        if !due {
            return Admit::No { log: None };
        }
        b.warned = Some(now);
        Admit::No {
            log: Some(std::mem::take(&mut b.unlogged)),
        }
    }

    /// Below [`MAX_BUCKETS`] again before a new gateway's bucket goes in.
    fn make_room(&mut self, now: Instant) {
        if self.buckets.len() < self.max_buckets {
            return;
        }
        let (burst, per_sec) = (self.burst, self.per_sec);
        for b in self.buckets.values_mut() {
            b.refill(now, burst, per_sec);
        }
        self.buckets.retain(|_, b| b.tokens < burst);
        while self.buckets.len() >= self.max_buckets {
            let fullest = self
                .buckets
                .iter()
                .max_by(|a, b| a.1.tokens.total_cmp(&b.1.tokens))
                .map(|(id, _)| id.clone());
            match fullest {
                Some(id) => self.buckets.remove(&id),
                None => break,
            };
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.buckets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admitted(limits: &mut RateLimits, gw: &str, now: Instant, n: usize) -> usize {
        (0..n)
            .filter(|_| limits.admit(gw, now) == Admit::Yes)
            .count()
    }

    #[test]
    fn a_gateway_gets_its_burst_then_its_rate_and_others_are_not_charged() {
        let t0 = Instant::now();
        let mut limits = RateLimits::default();
        let burst = PRESENCE_BURST as usize;
        let rate = PRESENCE_PER_SEC as usize;
        assert_eq!(admitted(&mut limits, "gw-a", t0, burst * 5), burst);
        // The first drop is logged at once, the next ones are counted.
        assert_eq!(limits.admit("gw-a", t0), Admit::No { log: None });
        // Another gateway has its own bucket.
        assert_eq!(admitted(&mut limits, "gw-b", t0, burst), burst);
        // A second later, one second's worth more, and no more.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(admitted(&mut limits, "gw-a", t1, rate * 3), rate);
        // Idle long enough, the bucket is full again, never fuller.
        let t2 = t1 + Duration::from_secs(3600);
        assert_eq!(admitted(&mut limits, "gw-a", t2, burst * 2), burst);
    }

    #[test]
    fn dropped_reports_are_logged_once_then_counted_every_so_often() {
        let t0 = Instant::now();
        let mut limits = RateLimits::new(1, 1, 16);
        assert_eq!(limits.admit("gw", t0), Admit::Yes);
        assert_eq!(limits.admit("gw", t0), Admit::No { log: Some(1) });
        for _ in 0..99 {
            assert_eq!(limits.admit("gw", t0), Admit::No { log: None });
        }
        // Once WARN_EVERY has passed: a token back (the burst is one),
        // then the next drop is logged with every drop since the warning.
        let t1 = t0 + WARN_EVERY;
        assert_eq!(limits.admit("gw", t1), Admit::Yes);
        assert_eq!(limits.admit("gw", t1), Admit::No { log: Some(100) });
        assert_eq!(limits.admit("gw", t1), Admit::No { log: None });
    }

    #[test]
    fn the_map_stays_bounded_and_keeps_the_busy_gateways_buckets() {
        let t0 = Instant::now();
        let mut limits = RateLimits::new(10, 1, 4);
        // A busy gateway empties its bucket.
        assert_eq!(admitted(&mut limits, "busy", t0, 20), 10);
        for i in 0..1000 {
            limits.admit(&format!("gw-{i}"), t0);
            assert!(limits.len() <= 4, "{} buckets", limits.len());
        }
        // Its bucket was not forgotten: it is still empty.
        assert_eq!(admitted(&mut limits, "busy", t0, 5), 0);
    }
}

//! Secure mode's limits on guessing: a token bucket per registered AP, and
//! the per-UUID [`Lockout`], which the verifier feeds itself: a release
//! of pass_tmp is an attempt until the device's own proof clears it, and
//! a proof that does not check is a failure. No AP's report moves it.
//! In memory only: a restart forgets them (docs/SECURITY.md).

use super::SecureVerify;
use crate::lockout::Lockout;
use std::collections::HashMap;
use std::time::{Duration, Instant};

pub(super) struct Guard {
    pub(super) settings: SecureVerify,
    /// Releases of each UUID's pass_tmp not yet followed by a proof that
    /// checks, and proofs that did not.
    attempts: Lockout,
    /// Registered AP id -> (tokens, last refill).
    buckets: HashMap<String, (f64, Instant)>,
}

/// Bounds the rate buckets. Only registered APs get one, so this is a
/// backstop, not the bound.
const MAX_TRACKED: usize = 1_000_000;

impl Guard {
    pub(super) fn new(settings: SecureVerify) -> Self {
        Guard {
            attempts: Lockout::new(settings.max_failures, settings.lockout),
            settings,
            buckets: Default::default(),
        }
    }

    /// Takes one token from the bucket of `ap_id`, a registered AP.
    pub(super) fn ap_allowed(&mut self, ap_id: &str) -> bool {
        let rate = f64::from(self.settings.ap_rate_per_sec);
        let now = Instant::now();
        let buckets = &mut self.buckets;
        if buckets.len() >= MAX_TRACKED {
            buckets.clear();
        }
        let (tokens, last) = match buckets.get_mut(ap_id) {
            Some(bucket) => bucket,
            None => buckets.entry(ap_id.to_owned()).or_insert((rate, now)),
        };
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * rate).min(rate);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Whether the UUID may have its pass_tmp released now; counts the
    /// release as an attempt, locking the UUID at the limit.
    pub(super) fn release(&self, uuid: &str) -> Result<(), Duration> {
        self.attempts.attempt(uuid)
    }

    /// The device proved pass_tmp itself: its attempts are forgotten.
    pub(super) fn proved(&self, uuid: &str) {
        self.attempts.clear(uuid);
    }

    /// A proof that did not check: one more failure.
    pub(super) fn failed(&self, uuid: &str) {
        self.attempts.fail(uuid);
    }
}

//! Secure mode's limits on guessing: a token bucket per registered AP, and
//! the per-UUID [`Pacing`], which the verifier feeds itself: a proof it
//! judged wrong is a failure, and one that checks forgets them. No AP's
//! report moves it. In memory only: a restart forgets them
//! (docs/SECURITY.md).

use super::SecureVerify;
use crate::pacing::{Handshake, Pacing};
use std::collections::HashMap;
use std::time::{Duration, Instant};

pub(super) struct Guard {
    pub(super) settings: SecureVerify,
    /// Proofs that did not check, per UUID, and the pace they set.
    attempts: Pacing,
    /// Registered AP id -> its bucket.
    buckets: HashMap<String, Bucket>,
}

/// One AP's token bucket, and the next slot handed to a request it refused.
struct Bucket {
    tokens: f64,
    last: Instant,
    next_slot: Instant,
}

/// The furthest slot a refused request is given: past it, slots are no
/// longer spread, and the AP's devices time out sooner than they would
/// wait.
const MAX_SLOT: Duration = Duration::from_secs(10);

/// Bounds the rate buckets. Only registered APs get one, so this is a
/// backstop, not the bound.
const MAX_TRACKED: usize = 1_000_000;

impl Guard {
    pub(super) fn new(settings: SecureVerify) -> Self {
        Guard {
            attempts: Pacing::new(settings.max_failures, settings.lockout),
            settings,
            buckets: Default::default(),
        }
    }

    /// Takes one token from the bucket of `ap_id`, a registered AP. With
    /// none left, the request is refused with a slot of its own to come
    /// back at: the refused requests of a burst are handed slots one token
    /// apart, so they come back paced at the rate, not all at once, nor
    /// each on a backoff that doubles while the AP waits.
    pub(super) fn ap_admit(&mut self, ap_id: &str) -> Result<(), Duration> {
        let rate = f64::from(self.settings.ap_rate_per_sec);
        let now = Instant::now();
        let buckets = &mut self.buckets;
        if buckets.len() >= MAX_TRACKED {
            buckets.clear();
        }
        let b = buckets.entry(ap_id.to_owned()).or_insert(Bucket {
            tokens: rate,
            last: now,
            next_slot: now,
        });
        b.tokens = (b.tokens + now.duration_since(b.last).as_secs_f64() * rate).min(rate);
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            return Ok(());
        }
        let interval = Duration::from_secs_f64(1.0 / rate);
        let slot = (b.next_slot.max(now) + interval).min(now + MAX_SLOT);
        b.next_slot = slot;
        Err(slot - now)
    }

    /// Whether the device request with `handshake` may be challenged now,
    /// or when to ask again.
    pub(super) fn admit(&mut self, uuid: &str, handshake: Handshake) -> Result<(), Duration> {
        self.attempts.admit(uuid, handshake, Instant::now())
    }

    /// The device proved pass_tmp itself: its failures are forgotten.
    pub(super) fn proved(&mut self, uuid: &str) {
        self.attempts.proved(uuid);
    }

    /// A proof that did not check: one more failure.
    pub(super) fn failed(&mut self, uuid: &str) {
        self.attempts.failed(uuid, Instant::now());
    }
}

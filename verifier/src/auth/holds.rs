//! What the platform keeps per onboarding session: the connection that
//! holds its client id (`UUID.SESSION`; a second one with the same id is
//! refused while the first is young, instead of kicking it off
//! mid-onboarding), and what it may still publish (a token bucket). A
//! device's UUID is held by nobody: any number of sessions may onboard for
//! it, so nobody keeps the real device out.

use super::ONBOARDING_HOLD;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What a device not onboarded yet may publish: a burst of this many
/// access requests and proofs, then one per [`ONBOARDING_REFILL`]. A real
/// device sends two per attempt and retries after a second or more.
const ONBOARDING_BURST: f64 = 10.0;
const ONBOARDING_REFILL: Duration = Duration::from_millis(500);

/// Devices tracked at most by each map; beyond, the oldest state is
/// forgotten (a made-up UUID flood must not grow them).
const MAX_ONBOARDING: usize = 100_000;

#[derive(Default)]
pub(super) struct Holds {
    /// Onboarding client ids connected (lower case), since when.
    held: Mutex<HashMap<String, Instant>>,
    /// What each onboarding client id may still publish.
    rate: Mutex<HashMap<String, (f64, Instant)>>,
}

impl Holds {
    /// Takes the hold on `client_id` (lower case), or says another
    /// connection has it.
    pub(super) fn take(&self, uuid: &str) -> bool {
        let now = Instant::now();
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        if held
            .get(uuid)
            .is_some_and(|since| now.saturating_duration_since(*since) < ONBOARDING_HOLD)
        {
            return false;
        }
        if held.len() >= MAX_ONBOARDING {
            held.retain(|_, since| now.saturating_duration_since(*since) < ONBOARDING_HOLD);
        }
        held.insert(uuid.to_owned(), now);
        true
    }

    /// The connection that held `client_id` (lower case) has ended.
    pub(super) fn release(&self, uuid: &str) {
        self.held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(uuid);
        // Every onboarding session has a client id of its own: its
        // allowance goes with it, or the map would grow with every
        // onboarding until its cap.
        self.rate
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(uuid);
    }

    /// Takes one publish from an onboarding client's allowance.
    pub(super) fn publish_allowed(&self, client_id: &str) -> bool {
        let now = Instant::now();
        let mut rates = self.rate.lock().unwrap_or_else(|e| e.into_inner());
        if rates.len() >= MAX_ONBOARDING {
            rates.clear();
        }
        let (tokens, last) = rates
            .entry(client_id.to_ascii_lowercase())
            .or_insert((ONBOARDING_BURST, now));
        let refilled =
            now.saturating_duration_since(*last).as_secs_f64() / ONBOARDING_REFILL.as_secs_f64();
        *tokens = (*tokens + refilled).min(ONBOARDING_BURST);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hold_keeps_a_second_connection_out_until_released() {
        let holds = Holds::default();
        assert!(holds.take("u"));
        assert!(!holds.take("u"));
        assert!(holds.take("v"));
        holds.release("u");
        assert!(holds.take("u"));
    }

    #[test]
    fn an_onboarding_client_publishes_a_burst_then_at_the_rate() {
        let holds = Holds::default();
        let allowed = (0..20).filter(|_| holds.publish_allowed("U")).count();
        assert_eq!(allowed, ONBOARDING_BURST as usize);
        assert!(
            !holds.publish_allowed("u"),
            "one bucket per device, any case"
        );
    }
}

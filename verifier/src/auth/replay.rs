//! The nonces of device login tokens seen within [`LOGIN_SKEW`]: a token
//! is good for one login, so one captured from a CONNECT cannot open
//! another connection. Gateways keep one for their devices' gateway
//! logins too (`broker::gateway`), with the same skew.
//!
//! The cache is in this process's memory: two verifiers answering one
//! broker each keep their own, so a token could be used once at each
//! (docs/SECURITY.md, *HTTP authentication for an external broker*).

use super::LOGIN_SKEW;
use protocol::crypto::LoginNonce;
use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Instant;

/// Two generations, each spanning twice the skew, so that a nonce is
/// remembered at least as long as its token is accepted.
#[derive(Default)]
pub struct SeenTokens {
    generations: Mutex<Generations>,
}

/// The nonces seen since `started`, and those of the generation before.
#[derive(Default)]
struct Generations {
    current: HashSet<LoginNonce>,
    previous: HashSet<LoginNonce>,
    started: Option<Instant>,
}

impl SeenTokens {
    /// True the first time `nonce` is seen.
    pub fn first_use(&self, nonce: LoginNonce) -> bool {
        self.first_use_at(nonce, Instant::now())
    }

    fn first_use_at(&self, nonce: LoginNonce, now: Instant) -> bool {
        let mut g = self.generations.lock().unwrap_or_else(|e| e.into_inner());
        match g.started {
            Some(at) if now.saturating_duration_since(at) < LOGIN_SKEW * 2 => {}
            _ => {
                g.previous = std::mem::take(&mut g.current);
                g.started = Some(now);
            }
        }
        if g.previous.contains(&nonce) {
            return false;
        }
        g.current.insert(nonce)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nonce_is_good_once_for_at_least_twice_the_skew() {
        let seen = SeenTokens::default();
        let start = Instant::now();
        assert!(seen.first_use_at([1; 16], start));
        assert!(!seen.first_use_at([1; 16], start));
        assert!(seen.first_use_at([2; 16], start));
        // A new generation: the old nonces are still remembered.
        let later = start + LOGIN_SKEW * 2;
        assert!(!seen.first_use_at([1; 16], later));
        assert!(seen.first_use_at([3; 16], later));
        // Two generations on, [1] is forgotten: its token is long stale.
        let much_later = later + LOGIN_SKEW * 2;
        assert!(seen.first_use_at([1; 16], much_later));
        assert!(!seen.first_use_at([3; 16], much_later));
    }
}

//! What secure mode keeps between messages: its limits, the device
//! requests seen, the questions waiting for theirs, and the flusher of
//! registered keys. One value, owned by the serve loop and handed to each
//! handler in turn, so none of it needs a lock of its own.

use super::guard::Guard;
use super::key_flush::KeyFlush;
use super::parked::Parked;
use super::release::Question;
use super::requests::Requests;
use super::SecureVerify;
use std::time::Instant;

pub(super) struct Onboarding {
    pub(super) guard: Guard,
    pub(super) requests: Requests,
    pub(super) parked: Parked<Question>,
    pub(super) keys: KeyFlush,
}

impl Onboarding {
    pub(super) fn new(settings: SecureVerify, keys: KeyFlush) -> Self {
        Onboarding {
            guard: Guard::new(settings),
            requests: Requests::new(Instant::now()),
            parked: Parked::new(),
            keys,
        }
    }
}

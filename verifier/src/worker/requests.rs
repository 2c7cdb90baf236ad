//! The verifier's memory of the access requests devices make, as the
//! broker delivered them on `wlan/{ssid}/access/request`: which device
//! asked which SSID with which handshake, and when, and what the verifier
//! has done about it since (released its pass_tmp to an AP once, then
//! seen the device's proof).
//!
//! pass_tmp is released only for a request remembered here, and once per
//! request, so an AP gets nothing for a device that did not ask it, and at
//! most one online guess per request a device really made.
//!
//! Bounded in time and memory without a sweep: two generations of a map,
//! each [`REQUEST_WINDOW`] long. Every entry younger than the window is in
//! one of them; the older generation is dropped whole at each rotation,
//! and early if the current one fills up (a flood forgets the oldest
//! requests first; their devices ask again).

use protocol::DeviceUuid;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How long a device's request stays good for a release.
pub(super) const REQUEST_WINDOW: Duration = Duration::from_secs(30);

/// Requests per generation before it rotates early: far above a window's
/// worth of a 10,000-device onboarding, and a few megabytes at most.
const MAX_PER_GENERATION: usize = 100_000;

/// One request: the device, and its handshake's id
/// ([`protocol::crypto::handshake_id`]). Fixed-size, so remembering a
/// request costs no allocation for its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct RequestKey {
    uuid: u128,
    handshake: [u8; 12],
}

impl RequestKey {
    pub(super) fn new(uuid: &DeviceUuid, handshake: [u8; 12]) -> Self {
        // A DeviceUuid's key is a parsed, canonical UUID: it parses again.
        let uuid = uuid::Uuid::try_parse(uuid.key()).map_or(0, |u| u.as_u128());
        RequestKey { uuid, handshake }
    }
}

/// Where a remembered request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// The device asked; nothing released yet.
    Asked,
    /// pass_tmp went to one AP; the device's proof is awaited.
    Released,
    /// The device's proof was judged; nothing more happens for it.
    Settled,
}

#[derive(Debug)]
struct Seen {
    ssid: Box<str>,
    at: Instant,
    stage: Stage,
    /// The AP pass_tmp was released to, once it was.
    released_to: Option<Box<str>>,
}

/// What a release would be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Release {
    /// The first for this request.
    New,
    /// The same AP asking again for a request released to it (its session
    /// lost to a restart, say): it is given what it has already, and no
    /// new guess; it counts for nothing more.
    Again,
}

/// Why a request cannot have pass_tmp released.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refusal {
    /// No such request from the device within the window (yet: the
    /// broker may deliver it after the AP's question).
    NotSeen,
    /// The device asked another SSID with this handshake.
    OtherSsid,
    /// Already released, to this AP or another.
    AlreadyReleased,
}

pub(super) struct Requests {
    current: HashMap<RequestKey, Seen>,
    previous: HashMap<RequestKey, Seen>,
    rotated: Instant,
    window: Duration,
    capacity: usize,
}

impl Requests {
    pub(super) fn new(now: Instant) -> Self {
        Self::with_limits(now, REQUEST_WINDOW, MAX_PER_GENERATION)
    }

    fn with_limits(now: Instant, window: Duration, capacity: usize) -> Self {
        Requests {
            current: HashMap::new(),
            previous: HashMap::new(),
            rotated: now,
            window,
            capacity: capacity.max(1),
        }
    }

    /// Ages the generations: whatever is in `previous` after this may be
    /// up to two windows old, which lookups check entry by entry.
    fn tick(&mut self, now: Instant) {
        let since = now.saturating_duration_since(self.rotated);
        if since >= self.window {
            self.previous = std::mem::take(&mut self.current);
            if since >= 2 * self.window {
                self.previous.clear();
            }
            self.rotated = now;
        }
    }

    /// A device asked `ssid` with the handshake of `key`: remembered, or,
    /// for a re-send of the same request, remembered as asked again now.
    pub(super) fn record(&mut self, key: RequestKey, ssid: &str, now: Instant) {
        self.tick(now);
        if let Some(seen) = self.current.get_mut(&key) {
            if *seen.ssid == *ssid {
                seen.at = now;
            }
            return;
        }
        let seen = match self.previous.remove(&key) {
            Some(mut seen) => {
                if *seen.ssid == *ssid {
                    seen.at = now;
                }
                seen
            }
            None => Seen {
                ssid: ssid.into(),
                at: now,
                stage: Stage::Asked,
                released_to: None,
            },
        };
        if self.current.len() >= self.capacity {
            self.previous = std::mem::take(&mut self.current);
            self.rotated = now;
        }
        self.current.insert(key, seen);
    }

    fn find(&mut self, key: &RequestKey, now: Instant) -> Option<&mut Seen> {
        self.tick(now);
        let window = self.window;
        let seen = match self.current.get_mut(key) {
            Some(seen) => seen,
            None => self.previous.get_mut(key)?,
        };
        (now.saturating_duration_since(seen.at) <= window).then_some(seen)
    }

    /// Whether pass_tmp may be released for this request to AP `ap_id`,
    /// serving `ssid`. Marks nothing: [`Requests::mark_released`] does,
    /// once the release is made.
    pub(super) fn check(
        &mut self,
        key: &RequestKey,
        ssid: &str,
        ap_id: &str,
        now: Instant,
    ) -> Result<Release, Refusal> {
        let seen = self.find(key, now).ok_or(Refusal::NotSeen)?;
        if *seen.ssid != *ssid {
            return Err(Refusal::OtherSsid);
        }
        match seen.stage {
            Stage::Asked => Ok(Release::New),
            Stage::Released if seen.released_to.as_deref() == Some(ap_id) => Ok(Release::Again),
            Stage::Released | Stage::Settled => Err(Refusal::AlreadyReleased),
        }
    }

    /// pass_tmp was released for this request to `ap_id`: to no other AP
    /// after it.
    pub(super) fn mark_released(&mut self, key: &RequestKey, ap_id: &str, now: Instant) {
        if let Some(seen) = self.find(key, now) {
            seen.stage = Stage::Released;
            seen.released_to = Some(ap_id.into());
        }
    }

    /// The device's proof for this request, on `ssid`: true, once, if the
    /// request was released and the proof is the first to be judged.
    pub(super) fn settle(&mut self, key: &RequestKey, ssid: &str, now: Instant) -> bool {
        match self.find(key, now) {
            Some(seen) if seen.stage == Stage::Released && *seen.ssid == *ssid => {
                seen.stage = Stage::Settled;
                true
            }
            _ => false,
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.current.len() + self.previous.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> RequestKey {
        RequestKey {
            uuid: u128::from(n),
            handshake: [n; 12],
        }
    }

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn a_request_is_released_once_and_settled_once() {
        let t0 = Instant::now();
        let mut r = Requests::new(t0);
        assert_eq!(r.check(&key(1), "home", "ap", t0), Err(Refusal::NotSeen));
        r.record(key(1), "home", t0);
        assert_eq!(r.check(&key(1), "other", "ap", t0), Err(Refusal::OtherSsid));
        assert!(!r.settle(&key(1), "home", t0), "nothing released yet");
        assert_eq!(r.check(&key(1), "home", "ap", t0), Ok(Release::New));
        r.mark_released(&key(1), "ap", t0);
        assert_eq!(
            r.check(&key(1), "home", "ap", t0),
            Ok(Release::Again),
            "the same AP again"
        );
        assert_eq!(
            r.check(&key(1), "home", "other-ap", t0),
            Err(Refusal::AlreadyReleased)
        );
        // A re-send of the same request releases nothing more.
        r.record(key(1), "home", t0 + S);
        assert_eq!(
            r.check(&key(1), "home", "other-ap", t0 + S),
            Err(Refusal::AlreadyReleased)
        );
        assert!(!r.settle(&key(1), "other", t0 + S), "proof on another SSID");
        assert!(r.settle(&key(1), "home", t0 + S));
        assert!(!r.settle(&key(1), "home", t0 + S), "judged once");
        assert_eq!(
            r.check(&key(1), "home", "other-ap", t0 + S),
            Err(Refusal::AlreadyReleased)
        );
    }

    #[test]
    fn a_request_is_good_for_the_window_after_it_was_last_made() {
        let t0 = Instant::now();
        let mut r = Requests::new(t0);
        r.record(key(1), "home", t0);
        r.record(key(2), "home", t0);
        assert_eq!(
            r.check(&key(1), "home", "ap", t0 + REQUEST_WINDOW),
            Ok(Release::New)
        );
        // Re-sent 25 s in: good until 25 s + the window, across rotations.
        r.record(key(2), "home", t0 + 25 * S);
        let late = t0 + REQUEST_WINDOW + 2 * S;
        assert_eq!(r.check(&key(1), "home", "ap", late), Err(Refusal::NotSeen));
        assert_eq!(r.check(&key(2), "home", "ap", late), Ok(Release::New));
        let later = t0 + 25 * S + REQUEST_WINDOW;
        assert_eq!(r.check(&key(2), "home", "ap", later), Ok(Release::New));
        assert_eq!(
            r.check(&key(2), "home", "ap", later + S),
            Err(Refusal::NotSeen)
        );
        // Two quiet windows later, nothing is kept.
        r.tick(later + 3 * REQUEST_WINDOW);
        assert_eq!(r.len(), 0);
    }

    #[test]
    fn a_flood_rotates_early_and_memory_stays_bounded() {
        let t0 = Instant::now();
        let mut r = Requests::with_limits(t0, REQUEST_WINDOW, 4);
        r.record(key(0), "home", t0);
        r.mark_released(&key(0), "ap", t0);
        for n in 1..=20 {
            r.record(key(n), "home", t0);
            assert!(r.len() <= 8, "{}", r.len());
        }
        // The oldest were forgotten first; the newest are kept.
        assert_eq!(r.check(&key(0), "home", "ap", t0), Err(Refusal::NotSeen));
        assert_eq!(r.check(&key(20), "home", "ap", t0), Ok(Release::New));
    }
}

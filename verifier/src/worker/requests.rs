//! The verifier's memory of the access requests devices make, as the
//! broker delivered them on `wlan/{ssid}/access/request`: which device
//! asked which SSID with which handshake message and commitment, and when,
//! and what the verifier has done about it since (answered it with its own
//! half of the handshake for one AP to relay, then judged the device's
//! proof).
//!
//! The verifier answers only a request remembered here, and runs one
//! handshake per request, so an AP gets nothing for a device that did not
//! ask, and each request is at most one online guess.
//!
//! Bounded in time and memory without a sweep: two generations of a map,
//! each [`REQUEST_WINDOW`] long. Every entry younger than the window is in
//! one of them; the older generation is dropped whole at each rotation,
//! and early if the current one fills up (a flood forgets the oldest
//! requests first; their devices ask again).

use protocol::crypto::SessionKeys;
use protocol::onboarding::VerifyOutcome;
use protocol::DeviceUuid;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How long a device's request stays good for an answer and a proof.
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
    /// The device asked; not answered yet.
    Asked,
    /// Answered with a challenge, for one AP to relay; the device's proof
    /// is awaited.
    Challenged,
    /// The device's proof was judged; nothing more happens for it.
    Settled,
}

/// The verifier's side of a handshake it answered.
pub(super) struct Handshake {
    /// The AP that relays it, and where its answers go.
    pub(super) ap_id: Box<str>,
    pub(super) ap_key: Box<str>,
    /// The AP's latest question for it: the verdict answers that one.
    pub(super) request_id: Box<str>,
    pub(super) session: Box<str>,
    /// The challenge as sent, to send again to the same AP.
    pub(super) challenge: VerifyOutcome,
    pub(super) keys: SessionKeys,
}

struct Seen {
    ssid: Box<str>,
    at: Instant,
    stage: Stage,
    /// The device's handshake message, and its commitment.
    spake2: Box<str>,
    commit: Box<str>,
    handshake: Option<Box<Handshake>>,
}

/// What a request is, for an AP's question about it.
pub(super) enum Release<'a> {
    /// Not answered yet: the device's message to answer.
    New { spake2: &'a str },
    /// Answered already, to this same AP (its session lost to a restart,
    /// say): the same challenge again, no new guess.
    Again(&'a mut Handshake),
}

/// Why a request cannot be answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refusal {
    /// No such request from the device within the window (yet: the
    /// broker may deliver it after the AP's question).
    NotSeen,
    /// The device asked another SSID with this handshake.
    OtherSsid,
    /// Already answered, to another AP, or judged.
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

    /// A device asked `ssid` with the handshake message `spake2` (whose
    /// id is in `key`) and commitment `commit`: remembered, or, for a
    /// re-send of the same request, remembered as asked again now.
    pub(super) fn record(
        &mut self,
        key: RequestKey,
        ssid: &str,
        spake2: &str,
        commit: &str,
        now: Instant,
    ) {
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
                spake2: spake2.into(),
                commit: commit.into(),
                handshake: None,
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

    /// Whether this request may be answered for AP `ap_id`, serving
    /// `ssid`. Marks nothing: [`Requests::mark_challenged`] does, once the
    /// challenge is made.
    pub(super) fn check(
        &mut self,
        key: &RequestKey,
        ssid: &str,
        ap_id: &str,
        now: Instant,
    ) -> Result<Release<'_>, Refusal> {
        let seen = self.find(key, now).ok_or(Refusal::NotSeen)?;
        if *seen.ssid != *ssid {
            return Err(Refusal::OtherSsid);
        }
        match (seen.stage, seen.handshake.as_deref_mut()) {
            (Stage::Asked, _) => Ok(Release::New {
                spake2: &seen.spake2,
            }),
            (Stage::Challenged, Some(h)) if *h.ap_id == *ap_id => Ok(Release::Again(h)),
            _ => Err(Refusal::AlreadyReleased),
        }
    }

    /// The request was answered with `handshake`: to no other AP after.
    pub(super) fn mark_challenged(&mut self, key: &RequestKey, handshake: Handshake, now: Instant) {
        if let Some(seen) = self.find(key, now) {
            seen.stage = Stage::Challenged;
            seen.handshake = Some(Box::new(handshake));
        }
    }

    /// A proof for this request, on `ssid`: the request's commitment, if
    /// it was challenged and not judged yet. Marks nothing:
    /// [`Requests::settle`] does.
    pub(super) fn open(&mut self, key: &RequestKey, ssid: &str, now: Instant) -> Option<&str> {
        match self.find(key, now) {
            Some(Seen {
                stage: Stage::Challenged,
                ssid: seen_ssid,
                commit,
                handshake: Some(_),
                ..
            }) if **seen_ssid == *ssid => Some(commit),
            _ => None,
        }
    }

    /// The request's proof was judged: nothing more for it. Gives back the
    /// verifier's side of the handshake, for the verdict.
    pub(super) fn settle(&mut self, key: &RequestKey, now: Instant) -> Option<Box<Handshake>> {
        let seen = self.find(key, now)?;
        seen.stage = Stage::Settled;
        seen.handshake.take()
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

    fn handshake(ap_id: &str) -> Handshake {
        let (device, msg) = protocol::crypto::DeviceHandshake::start("u", "home", "p");
        drop(device);
        let (keys, _) =
            protocol::crypto::verifier_handshake("u", "home", "p", &msg, "c2Vzcw").unwrap();
        Handshake {
            ap_id: ap_id.into(),
            ap_key: "k".into(),
            request_id: "r".into(),
            session: "c2Vzcw".into(),
            challenge: VerifyOutcome::failed(protocol::AccessErrorCode::Unavailable, "x"),
            keys,
        }
    }

    const S: Duration = Duration::from_secs(1);

    fn is_new(r: Result<Release<'_>, Refusal>) -> bool {
        matches!(r, Ok(Release::New { .. }))
    }

    fn is_again(r: Result<Release<'_>, Refusal>) -> bool {
        matches!(r, Ok(Release::Again(_)))
    }

    fn refusal(r: Result<Release<'_>, Refusal>) -> Option<Refusal> {
        r.err()
    }

    #[test]
    fn a_request_is_challenged_once_and_settled_once() {
        let t0 = Instant::now();
        let mut r = Requests::new(t0);
        assert_eq!(
            refusal(r.check(&key(1), "home", "ap", t0)),
            Some(Refusal::NotSeen)
        );
        r.record(key(1), "home", "msg", "commit", t0);
        assert_eq!(
            refusal(r.check(&key(1), "other", "ap", t0)),
            Some(Refusal::OtherSsid)
        );
        assert!(r.open(&key(1), "home", t0).is_none(), "not challenged yet");
        assert!(is_new(r.check(&key(1), "home", "ap", t0)));
        r.mark_challenged(&key(1), handshake("ap"), t0);
        assert!(
            is_again(r.check(&key(1), "home", "ap", t0)),
            "the same AP again"
        );
        assert_eq!(
            refusal(r.check(&key(1), "home", "other-ap", t0)),
            Some(Refusal::AlreadyReleased)
        );
        // A re-send of the same request answers nothing more.
        r.record(key(1), "home", "msg", "commit", t0 + S);
        assert_eq!(
            refusal(r.check(&key(1), "home", "other-ap", t0 + S)),
            Some(Refusal::AlreadyReleased)
        );
        assert!(
            r.open(&key(1), "other", t0 + S).is_none(),
            "proof on another SSID"
        );
        assert_eq!(r.open(&key(1), "home", t0 + S), Some("commit"));
        assert!(r.settle(&key(1), t0 + S).is_some());
        assert!(r.open(&key(1), "home", t0 + S).is_none(), "judged once");
        assert_eq!(
            refusal(r.check(&key(1), "home", "ap", t0 + S)),
            Some(Refusal::AlreadyReleased)
        );
    }

    #[test]
    fn a_request_is_good_for_the_window_after_it_was_last_made() {
        let t0 = Instant::now();
        let mut r = Requests::new(t0);
        r.record(key(1), "home", "m", "c", t0);
        r.record(key(2), "home", "m", "c", t0);
        assert!(is_new(r.check(&key(1), "home", "ap", t0 + REQUEST_WINDOW)));
        // Re-sent 25 s in: good until 25 s + the window, across rotations.
        r.record(key(2), "home", "m", "c", t0 + 25 * S);
        let late = t0 + REQUEST_WINDOW + 2 * S;
        assert_eq!(
            refusal(r.check(&key(1), "home", "ap", late)),
            Some(Refusal::NotSeen)
        );
        assert!(is_new(r.check(&key(2), "home", "ap", late)));
        let later = t0 + 25 * S + REQUEST_WINDOW;
        assert!(is_new(r.check(&key(2), "home", "ap", later)));
        assert_eq!(
            refusal(r.check(&key(2), "home", "ap", later + S)),
            Some(Refusal::NotSeen)
        );
        // Two quiet windows later, nothing is kept.
        r.tick(later + 3 * REQUEST_WINDOW);
        assert_eq!(r.len(), 0);
    }

    #[test]
    fn a_flood_rotates_early_and_memory_stays_bounded() {
        let t0 = Instant::now();
        let mut r = Requests::with_limits(t0, REQUEST_WINDOW, 4);
        r.record(key(0), "home", "m", "c", t0);
        r.mark_challenged(&key(0), handshake("ap"), t0);
        for n in 1..=20 {
            r.record(key(n), "home", "m", "c", t0);
            assert!(r.len() <= 8, "{}", r.len());
        }
        // The oldest were forgotten first; the newest are kept.
        assert_eq!(
            refusal(r.check(&key(0), "home", "ap", t0)),
            Some(Refusal::NotSeen)
        );
        assert!(is_new(r.check(&key(20), "home", "ap", t0)));
    }
}

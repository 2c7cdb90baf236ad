//! Secure mode's rules for answering an AP's question about a device
//! request: the verifier, not the AP, is the device's PAKE peer, so an
//! answer is the verifier's half of the handshake (keyed by the enrolled
//! pass_tmp, which never leaves the verifier), for the AP to relay. Only
//! if
//!
//! 1. the AP is registered and serves the SSID the question names;
//! 2. the AP is within its rate (per registered AP id);
//! 3. the device itself asked that SSID with that handshake in the last
//!    [`REQUEST_WINDOW`](super::requests::REQUEST_WINDOW), as the broker
//!    delivered it ([`super::access`]); a question that arrives before
//!    its request waits for it ([`super::parked`]);
//! 4. that request has not been answered already (but to this same AP,
//!    whose session a restart may have lost: the same challenge again, no
//!    new guess): one handshake per device request, relayed by one AP;
//! 5. the UUID's pace allows a new attempt ([`crate::pacing`]): after a few
//!    failed proofs each attempt waits its slot, and the AP is told when
//!    to ask again (`unavailable`, not final).
//!
//! A UUID that is not enrolled is answered the same way, with a decoy
//! pass_tmp only the platform can derive
//! ([`protocol::crypto::PlatformKey::decoy_pass_tmp`]): its proof fails
//! as a wrong pass_tmp does, so nobody learns whether a UUID is enrolled.
//! The challenge carries the platform's [`Ticket`] over the handshake
//! message and the session, which the device requires. Refusals of rules
//! 1, 3 and 4 are `not_authorized`, in that order, before the store is
//! read. A question under an AP id nobody registered gets no answer at all
//! (see [`decide`]).

use super::onboarding::Onboarding;
use super::requests::{Handshake, Refusal, Release, RequestKey};
use super::serve::Served;
use super::verify::{answer, answer_store_failure};
use crate::store::EnrollmentStore;
use protocol::crypto::{parse_handshake_tag, random_b64, verifier_handshake};
use protocol::onboarding::{Ticket, TicketFor, VerifyOutcome, VerifyRequest};
use protocol::{now_ms, AccessErrorCode, DeviceUuid, ErrorBody};
use std::time::{Duration, Instant};
use tracing::{debug, error, warn};

/// How long a ticket is good for: the device checks it when the AP's
/// challenge arrives, moments after the answer; the AP may repeat that
/// challenge while it waits for the proof.
const TICKET_TTL: Duration = Duration::from_secs(60);

/// A question that passed rules 1 and 2, with its secure-mode fields.
pub(super) struct Question {
    req: VerifyRequest,
    uuid: DeviceUuid,
    key: RequestKey,
    handshake: [u8; 12],
    ssid: String,
    request: String,
    ap_key: String,
}

fn refused(code: AccessErrorCode, message: impl Into<String>) -> VerifyOutcome {
    VerifyOutcome::failed(code, message)
}

/// Rules 1 and 2, then the rest. Answers now, or parks the question
/// until its device request arrives; answers `unavailable` on a storage
/// error (the device asks again).
pub(super) async fn decide<S: EnrollmentStore>(
    worker: &Served<S>,
    onboarding: &mut Onboarding,
    req: VerifyRequest,
    uuid: DeviceUuid,
) {
    let (Some(ap_key), Some(ssid), Some(request)) =
        (req.ap_key.clone(), req.ssid.clone(), req.request.clone())
    else {
        let outcome = refused(
            AccessErrorCode::BadRequest,
            "secure mode: the request must carry ap_key, ssid and request",
        );
        return answer(worker, &req, outcome).await;
    };
    let Some(handshake) = parse_handshake_tag(&request) else {
        let outcome = refused(
            AccessErrorCode::BadRequest,
            "request is not a handshake tag",
        );
        return answer(worker, &req, outcome).await;
    };
    match worker.store.ap(&req.ap_id).await {
        Ok(Some(ap)) if ap.serves(&ssid) => {}
        Ok(Some(_)) => {
            warn!(target: "audit", ap_id = %req.ap_id, uuid = %uuid, ssid = %ssid.escape_debug(), "verification refused: AP not registered for this SSID");
            let outcome = refused(
                AccessErrorCode::NotAuthorized,
                "this AP is not registered for this SSID",
            );
            return answer(worker, &req, outcome).await;
        }
        Ok(None) => {
            // No answer at all: every topic rumqttd sees keeps a commit
            // log for good, so answering made-up AP ids would grow the
            // broker without bound.
            warn!(target: "audit", ap_id = %req.ap_id.escape_debug(), uuid = %uuid, "verification ignored: no such AP is registered");
            worker.metrics.verification("not_authorized");
            return;
        }
        Err(e) => {
            // Not final, and no guess at whether the AP is registered. An
            // AP asks only under its own id (the broker's ACL), so this
            // answers no made-up one.
            error!(ap_id = %req.ap_id, error = %e, "AP lookup failed");
            return answer_store_failure(worker, &req);
        }
    }
    if let Err(after) = onboarding.guard.ap_admit(&req.ap_id) {
        warn!(target: "audit", ap_id = %req.ap_id, uuid = %uuid, retry_after_ms = after.as_millis() as u64, "verification refused: AP over its rate");
        // Not the device's fault, and not final: the AP passes this on,
        // with the slot to ask again at, which the device keeps. No
        // handshake is run and nothing counts toward the UUID's pace.
        return answer(
            worker,
            &req,
            unavailable(
                after,
                "this AP is over its verification rate; try again shortly",
            ),
        )
        .await;
    }
    let question = Question {
        key: RequestKey::new(&uuid, handshake),
        handshake,
        req,
        uuid,
        ssid,
        request,
        ap_key,
    };
    release(worker, onboarding, question, true).await;
}

fn unavailable(after: Duration, message: &str) -> VerifyOutcome {
    VerifyOutcome::Failed {
        error: ErrorBody::new(AccessErrorCode::Unavailable, message).retry_after(after),
        denial: None,
    }
}

/// A parked question whose device request has just arrived.
pub(super) async fn resume<S: EnrollmentStore>(
    worker: &Served<S>,
    onboarding: &mut Onboarding,
    question: Question,
) {
    release(worker, onboarding, question, false).await;
}

/// Parked questions whose request never came: refused.
pub(super) async fn expire<S: EnrollmentStore>(worker: &Served<S>, onboarding: &mut Onboarding) {
    for q in onboarding.parked.expired(Instant::now()) {
        warn!(target: "audit", ap_id = %q.req.ap_id, uuid = %q.uuid, "verification refused: the device made no such request");
        answer(worker, &q.req, not_asked()).await;
    }
}

fn not_asked() -> VerifyOutcome {
    refused(
        AccessErrorCode::NotAuthorized,
        "this device has not asked this SSID with this handshake in the last 30 s",
    )
}

/// Rules 3 to 5, and the challenge.
async fn release<S: EnrollmentStore>(
    worker: &Served<S>,
    onboarding: &mut Onboarding,
    q: Question,
    may_park: bool,
) {
    let now = Instant::now();
    let spake2 = match onboarding
        .requests
        .check(&q.key, &q.ssid, &q.req.ap_id, now)
    {
        Ok(Release::New { spake2 }) => spake2.to_owned(),
        Ok(Release::Again(open)) => {
            // The same AP again: the same challenge, no new guess; its
            // verdict goes to this question.
            open.request_id = q.req.request_id.as_str().into();
            let outcome = open.challenge.clone();
            debug!(ap_id = %q.req.ap_id, uuid = %q.uuid, "challenge sent again");
            return answer(worker, &q.req, outcome).await;
        }
        Err(Refusal::NotSeen) if may_park => {
            let key = q.key;
            if let Err(q) = onboarding.parked.park(key, q, now) {
                warn!(target: "audit", ap_id = %q.req.ap_id, uuid = %q.uuid, "verification refused: no such device request, and too many questions waiting");
                answer(worker, &q.req, not_asked()).await;
            } else {
                debug!("verification waits for its device request");
            }
            return;
        }
        Err(Refusal::NotSeen | Refusal::OtherSsid) => {
            warn!(target: "audit", ap_id = %q.req.ap_id, uuid = %q.uuid, "verification refused: the device made no such request");
            return answer(worker, &q.req, not_asked()).await;
        }
        Err(Refusal::AlreadyReleased) => {
            warn!(target: "audit", ap_id = %q.req.ap_id, uuid = %q.uuid, "verification refused: this request was answered already");
            let outcome = refused(
                AccessErrorCode::NotAuthorized,
                "this device request was already answered to an AP",
            );
            return answer(worker, &q.req, outcome).await;
        }
    };
    if let Err(after) = onboarding.guard.admit(q.uuid.key(), q.handshake) {
        debug!(target: "audit", ap_id = %q.req.ap_id, uuid = %q.uuid, wait_ms = after.as_millis() as u64, "verification paced: failed proofs for this UUID");
        worker.metrics.verification("paced");
        let outcome = unavailable(
            after,
            "attempts for this device are paced after failed proofs; ask again at the slot given",
        );
        return answer(worker, &q.req, outcome).await;
    }
    let platform = &onboarding.guard.settings.key;
    let pass_tmp = match worker.store.get(&q.uuid).await {
        Ok(Some(enrollment)) => enrollment.pass_tmp,
        // Not enrolled: the same handshake with a decoy, which fails as a
        // wrong pass_tmp does.
        Ok(None) => platform.decoy_pass_tmp(q.uuid.key()),
        Err(e) => {
            error!(uuid = %q.uuid, error = %e, "store lookup failed");
            return answer_store_failure(worker, &q.req);
        }
    };
    let session = random_b64(16);
    let (keys, message) =
        match verifier_handshake(q.uuid.key(), &q.ssid, &pass_tmp, &spake2, &session) {
            Ok(ok) => ok,
            Err(e) => {
                let outcome = refused(AccessErrorCode::BadRequest, format!("spake2: {e}"));
                return answer(worker, &q.req, outcome).await;
            }
        };
    let expires_ms = now_ms().saturating_add(TICKET_TTL.as_millis() as u64);
    let what = TicketFor {
        uuid: q.uuid.key(),
        ssid: &q.ssid,
        request: &q.request,
        session: &session,
        spake2: &message,
    };
    let ticket = Ticket::issue(platform, what, &q.req.ap_id, expires_ms);
    let challenge = VerifyOutcome::Challenge {
        session: session.clone(),
        spake2: message,
        ticket,
    };
    let handshake = Handshake {
        ap_id: q.req.ap_id.as_str().into(),
        ap_key: q.ap_key.as_str().into(),
        request_id: q.req.request_id.as_str().into(),
        session: session.into(),
        challenge: challenge.clone(),
        keys,
    };
    onboarding.requests.mark_challenged(&q.key, handshake, now);
    debug!(ap_id = %q.req.ap_id, uuid = %q.uuid, "device request challenged");
    answer(worker, &q.req, challenge).await;
}

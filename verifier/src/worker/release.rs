//! Secure mode's release rules: when the verifier seals a device's
//! pass_tmp to an AP. Only if
//!
//! 1. the AP is registered and serves the SSID the question names;
//! 2. the AP is within its rate (per registered AP id);
//! 3. the device itself asked that SSID with that handshake in the last
//!    [`REQUEST_WINDOW`](super::requests::REQUEST_WINDOW), as the broker
//!    delivered it ([`super::access`]); a question that arrives before
//!    its request waits for it ([`super::parked`]);
//! 4. that request has not been released already (but to this same AP,
//!    whose session a restart may have lost: the same answer again, no new
//!    guess, counted once): one release per
//!    device request, to one AP;
//! 5. the device is enrolled and not locked out; the release counts as an
//!    attempt until the device's own proof clears it ([`super::proof`]).
//!
//! A release carries the platform's [`Ticket`] for the request, which the
//! device requires in the AP's challenge. Refusals of rules 1, 3 and 4 are
//! `not_authorized`, in that order, before the store is read, so an AP
//! learns nothing (not even whether a UUID is enrolled) about a device
//! that did not ask it. A question under an AP id nobody registered gets
//! no answer at all (see [`decide`]).

use super::onboarding::Onboarding;
use super::requests::{Refusal, Release, RequestKey};
use super::serve::Served;
use super::verify::{answer, answer_store_failure};
use crate::store::EnrollmentStore;
use protocol::crypto::parse_handshake_tag;
use protocol::onboarding::{seal_verify_answer, Ticket, VerifyOutcome, VerifyRequest};
use protocol::{now_ms, AccessErrorCode, DeviceUuid, ErrorBody};
use std::time::{Duration, Instant};
use tracing::{debug, error, warn};

/// How long a ticket is good for: the device checks it when the AP's
/// challenge arrives, moments after the release; the AP may repeat that
/// challenge while it waits for the proof.
const TICKET_TTL: Duration = Duration::from_secs(60);

/// A question that passed rules 1 and 2, with its secure-mode fields.
pub(super) struct Question {
    req: VerifyRequest,
    uuid: DeviceUuid,
    key: RequestKey,
    ssid: String,
    request: String,
    ap_key: String,
}

fn refused(code: AccessErrorCode, message: impl Into<String>) -> VerifyOutcome {
    VerifyOutcome::Failed {
        error: ErrorBody::new(code, message),
    }
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
        // with the slot to ask again at, which the device keeps. Nothing
        // is released and nothing counts toward the UUID's lockout.
        let outcome = VerifyOutcome::Failed {
            error: ErrorBody::new(
                AccessErrorCode::Unavailable,
                "this AP is over its verification rate; try again shortly",
            )
            .retry_after(after),
        };
        return answer(worker, &req, outcome).await;
    }
    let question = Question {
        key: RequestKey::new(&uuid, handshake),
        req,
        uuid,
        ssid,
        request,
        ap_key,
    };
    release(worker, onboarding, question, true).await;
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

/// Rules 3 to 5, and the release.
async fn release<S: EnrollmentStore>(
    worker: &Served<S>,
    onboarding: &mut Onboarding,
    q: Question,
    may_park: bool,
) {
    let now = Instant::now();
    let again = match onboarding
        .requests
        .check(&q.key, &q.ssid, &q.req.ap_id, now)
    {
        Ok(release) => release == Release::Again,
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
            warn!(target: "audit", ap_id = %q.req.ap_id, uuid = %q.uuid, "verification refused: this request was released already");
            let outcome = refused(
                AccessErrorCode::NotAuthorized,
                "this device request was already answered to an AP",
            );
            return answer(worker, &q.req, outcome).await;
        }
    };
    let enrollment = match worker.store.get(&q.uuid).await {
        Ok(Some(enrollment)) => enrollment,
        Ok(None) => {
            let outcome = refused(
                AccessErrorCode::UnknownDevice,
                "no device is enrolled with this UUID",
            );
            return answer(worker, &q.req, outcome).await;
        }
        Err(e) => {
            error!(uuid = %q.uuid, error = %e, "store lookup failed");
            return answer_store_failure(worker, &q.req);
        }
    };
    // A release again to the same AP is no new guess: it counted once.
    let counted = if again {
        Ok(())
    } else {
        onboarding.guard.release(q.uuid.key())
    };
    if let Err(left) = counted {
        warn!(target: "audit", ap_id = %q.req.ap_id, uuid = %q.uuid, locked_for_s = left.as_secs(), "verification refused: UUID locked out");
        let outcome = refused(
            AccessErrorCode::TooManyAttempts,
            format!(
                "too many failed attempts for this UUID; try again in {} s",
                left.as_secs() + 1
            ),
        );
        return answer(worker, &q.req, outcome).await;
    }
    let key = &onboarding.guard.settings.key;
    let expires_ms = now_ms().saturating_add(TICKET_TTL.as_millis() as u64);
    let ticket = Ticket::issue(
        key,
        q.uuid.key(),
        &q.ssid,
        &q.req.ap_id,
        &q.request,
        expires_ms,
    );
    let outcome = match seal_verify_answer(key, &q.req, &q.ap_key, &enrollment.pass_tmp, ticket) {
        Ok(outcome) => {
            onboarding.requests.mark_released(&q.key, &q.req.ap_id, now);
            debug!(ap_id = %q.req.ap_id, uuid = %q.uuid, "pass_tmp released for a device request");
            outcome
        }
        Err(e) => refused(AccessErrorCode::BadRequest, format!("ap_key: {e}")),
    };
    answer(worker, &q.req, outcome).await;
}

//! The APs' verification requests on `verifier/verify/request`. In
//! walkthrough mode: look the UUID up and answer with its pass_tmp. In
//! secure mode the release rules decide ([`super::release`]), and the
//! answer is the verifier's half of the handshake, with the device's
//! ticket; pass_tmp never leaves the verifier.

use super::onboarding::Onboarding;
use super::release;
use super::serve::{publish, Served};
use crate::store::EnrollmentStore;
use protocol::onboarding::{VerifyOutcome, VerifyRequest, VerifyResponse};
use protocol::{decode, peek_str_field, topics, AccessErrorCode, DecodeError};
use tracing::{debug, error, warn};

pub(super) async fn handle_verify<S: EnrollmentStore>(
    worker: &Served<S>,
    onboarding: Option<&mut Onboarding>,
    payload: &[u8],
) {
    let checked = decode::<VerifyRequest>(payload).and_then(|req| {
        let uuid = req.validate()?;
        Ok((req, uuid))
    });
    let (req, uuid) = match checked {
        Ok(ok) => ok,
        Err(e) => {
            warn!(error = %e, "malformed verification message");
            worker.metrics.verification("bad_request");
            answer_bad_verify(worker, onboarding.is_some(), payload, &e).await;
            return;
        }
    };
    if let Some(onboarding) = onboarding {
        return release::decide(worker, onboarding, req, uuid).await;
    }
    let outcome = match worker.store.get(&uuid).await {
        Err(e) => {
            error!(uuid = %uuid, error = %e, "store lookup failed");
            return answer_store_failure(worker, &req);
        }
        Ok(None) => VerifyOutcome::failed(
            AccessErrorCode::UnknownDevice,
            "no device is enrolled with this UUID",
        ),
        Ok(Some(enrollment)) => VerifyOutcome::Found {
            pass_tmp: enrollment.pass_tmp,
        },
    };
    answer(worker, &req, outcome).await;
}

/// Counts and sends the answer to `req` on the AP's topic.
pub(super) async fn answer<S>(worker: &Served<S>, req: &VerifyRequest, outcome: VerifyOutcome) {
    worker.metrics.verification(match &outcome {
        VerifyOutcome::Found { .. } | VerifyOutcome::Challenge { .. } => "found",
        VerifyOutcome::Proved { .. } => "proved",
        VerifyOutcome::Failed { error, .. } => error.code.as_str(),
    });
    debug!(uuid = %req.uuid, ap_id = %req.ap_id, request_id = %req.request_id, found = !matches!(outcome, VerifyOutcome::Failed { .. }), "verification answered");
    let response = VerifyResponse {
        request_id: req.request_id.clone(),
        uuid: req.uuid.clone(),
        outcome,
    };
    publish(
        &worker.outbox,
        topics::verify_response(&req.ap_id),
        &response,
    );
}

/// Answers `unavailable` to `req` when the store could not be read (out
/// of reach, or a record that does not open): not final, so the device
/// asks again with its backoff, and never an answer (`unknown_device`,
/// say) the store did not give. Counted as `error`.
pub(super) fn answer_store_failure<S>(worker: &Served<S>, req: &VerifyRequest) {
    worker.metrics.verification("error");
    let response = VerifyResponse {
        request_id: req.request_id.clone(),
        uuid: req.uuid.clone(),
        outcome: VerifyOutcome::failed(
            AccessErrorCode::Unavailable,
            "the verifier cannot read its store just now; try again shortly",
        ),
    };
    publish(
        &worker.outbox,
        topics::verify_response(&req.ap_id),
        &response,
    );
}

/// Answers `bad_request` to a verification message that did not validate,
/// if it names an AP we can answer to: in secure mode, a registered one
/// (an answer to any made-up AP id would be one more topic the broker
/// keeps forever).
async fn answer_bad_verify<S: EnrollmentStore>(
    worker: &Served<S>,
    secure: bool,
    payload: &[u8],
    error: &DecodeError,
) {
    let (Some(ap_id), Some(request_id)) = (
        peek_str_field(payload, "ap_id"),
        peek_str_field(payload, "request_id"),
    ) else {
        return;
    };
    if protocol::ids::check_segment(&ap_id).is_err() || request_id.len() > 64 {
        return;
    }
    if secure && !matches!(worker.store.ap(&ap_id).await, Ok(Some(_))) {
        return;
    }
    let response = VerifyResponse {
        request_id,
        uuid: peek_str_field(payload, "uuid").unwrap_or_default(),
        outcome: VerifyOutcome::failed(AccessErrorCode::BadRequest, error.to_string()),
    };
    publish(&worker.outbox, topics::verify_response(&ap_id), &response);
}

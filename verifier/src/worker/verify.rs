//! The APs' verification requests on `verifier/verify/request`: look the
//! UUID up and answer with its pass_tmp. In secure mode the answer is
//! sealed to the AP's key and signed, and a [`Guard`] rate-limits each AP
//! and locks out a UUID whose pass_tmp was released too often without a
//! `granted` report.

use super::serve::{publish, Served};
use super::SecureVerify;
use crate::lockout::Lockout;
use crate::store::EnrollmentStore;
use bus::Bus;
use protocol::onboarding::{VerifyOutcome, VerifyRequest, VerifyResponse};
use protocol::{decode, peek_str_field, topics, AccessErrorCode, DecodeError, ErrorBody};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tracing::{debug, error, warn};

/// Secure mode's memory of attempts (in memory only: a restart forgets
/// lockouts, see docs/SECURITY.md).
pub(super) struct Guard {
    settings: SecureVerify,
    /// Releases of each UUID's pass_tmp not yet followed by a `granted`.
    attempts: Lockout,
    /// AP id -> (tokens, last refill).
    buckets: std::sync::Mutex<HashMap<String, (f64, Instant)>>,
}

/// Bounds the rate buckets against a flood of made-up AP ids.
const MAX_TRACKED: usize = 1_000_000;

impl Guard {
    pub(super) fn new(settings: SecureVerify) -> Self {
        Guard {
            attempts: Lockout::new(settings.max_failures, settings.lockout),
            settings,
            buckets: Default::default(),
        }
    }

    /// Takes one token from the AP's bucket.
    fn ap_allowed(&self, ap_id: &str) -> bool {
        let rate = f64::from(self.settings.ap_rate_per_sec);
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= MAX_TRACKED {
            buckets.clear();
        }
        let (tokens, last) = buckets.entry(ap_id.to_owned()).or_insert((rate, now));
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
    fn release(&self, uuid: &str) -> Result<(), Duration> {
        self.attempts.attempt(uuid)
    }

    pub(super) fn granted(&self, uuid: &str) {
        self.attempts.clear(uuid);
    }
}

pub(super) async fn handle_verify<S: EnrollmentStore>(worker: &Served<S>, payload: &[u8]) {
    let Served {
        store,
        bus,
        metrics,
        guard,
    } = worker;
    let checked = decode::<VerifyRequest>(payload).and_then(|req| {
        let uuid = req.validate()?;
        Ok((req, uuid))
    });
    let (req, uuid) = match checked {
        Ok(ok) => ok,
        Err(e) => {
            warn!(error = %e, "malformed verification message");
            metrics.verification("bad_request");
            answer_bad_verify(bus, payload, &e).await;
            return;
        }
    };
    let failed = |code, message: &str| VerifyOutcome::Failed {
        error: ErrorBody::new(code, message),
    };
    let outcome = match (guard, store.get(&uuid).await) {
        (_, Err(e)) => {
            // The AP times out and tells the device; nothing better to say.
            error!(uuid = %uuid, error = %e, "store lookup failed");
            metrics.verification("error");
            return;
        }
        (_, Ok(None)) => failed(
            AccessErrorCode::UnknownDevice,
            "no device is enrolled with this UUID",
        ),
        (None, Ok(Some(enrollment))) => VerifyOutcome::Found {
            pass_tmp: enrollment.pass_tmp,
        },
        (Some(g), Ok(Some(enrollment))) => secure_answer(g, &req, &enrollment.pass_tmp),
    };
    metrics.verification(match &outcome {
        VerifyOutcome::Found { .. } | VerifyOutcome::Sealed { .. } => "found",
        VerifyOutcome::Failed { error } => error.code.as_str(),
    });
    debug!(uuid = %uuid, ap_id = %req.ap_id, request_id = %req.request_id, found = !matches!(outcome, VerifyOutcome::Failed { .. }), "verification answered");
    let response = VerifyResponse {
        request_id: req.request_id,
        uuid: req.uuid,
        outcome,
    };
    publish(bus, topics::verify_response(&req.ap_id), &response).await;
}

/// Secure mode: rate limit, lockout, then pass_tmp sealed to the AP.
fn secure_answer(g: &Guard, req: &VerifyRequest, pass_tmp: &str) -> VerifyOutcome {
    let failed = |code, message: String| VerifyOutcome::Failed {
        error: ErrorBody::new(code, message),
    };
    let Some(ap_key) = req.ap_key.as_deref() else {
        return failed(
            AccessErrorCode::BadRequest,
            "secure mode: the request must carry ap_key".into(),
        );
    };
    if !g.ap_allowed(&req.ap_id) {
        warn!(target: "audit", ap_id = %req.ap_id, uuid = %req.uuid, "verification refused: AP over its rate");
        // Not the device's fault, and not final: the AP passes this on and
        // the device asks again with its backoff. Nothing is released and
        // nothing counts toward the UUID's lockout.
        return failed(
            AccessErrorCode::Unavailable,
            "this AP is over its verification rate; try again shortly".into(),
        );
    }
    if let Err(left) = g.release(&req.uuid) {
        warn!(target: "audit", ap_id = %req.ap_id, uuid = %req.uuid, locked_for_s = left.as_secs(), "verification refused: UUID locked out");
        return failed(
            AccessErrorCode::TooManyAttempts,
            format!(
                "too many failed attempts for this UUID; try again in {} s",
                left.as_secs() + 1
            ),
        );
    }
    match protocol::onboarding::seal_verify_answer(&g.settings.key, req, ap_key, pass_tmp) {
        Ok(outcome) => outcome,
        Err(e) => failed(AccessErrorCode::BadRequest, format!("ap_key: {e}")),
    }
}

/// Answers `bad_request` to a verification message that did not validate,
/// if it names an AP we can answer to.
async fn answer_bad_verify(bus: &Bus, payload: &[u8], error: &DecodeError) {
    let (Some(ap_id), Some(request_id)) = (
        peek_str_field(payload, "ap_id"),
        peek_str_field(payload, "request_id"),
    ) else {
        return;
    };
    if protocol::ids::check_segment(&ap_id).is_err() || request_id.len() > 64 {
        return;
    }
    let response = VerifyResponse {
        request_id,
        uuid: peek_str_field(payload, "uuid").unwrap_or_default(),
        outcome: VerifyOutcome::Failed {
            error: ErrorBody::new(AccessErrorCode::BadRequest, error.to_string()),
        },
    };
    publish(bus, topics::verify_response(&ap_id), &response).await;
}

//! Devices' proofs on `wlan/+/access/proof`, judged by the verifier, the
//! device's PAKE peer (secure mode). A proof answers the challenge the
//! verifier made for one of the device's requests; it opens that request's
//! commitment (so it is the requester's: anyone who read the challenge
//! could send one), proves the handshake's key, and carries the device's
//! own key, vouched for by that key and sealed to the platform.
//!
//! Each challenged request gets one verdict, from its first proof that
//! opens the commitment; proofs that do not open it are ignored, and cost
//! the device nothing:
//! - the proof does not check: a wrong pass_tmp (or a UUID not enrolled,
//!   which looks the same): one more failure toward the UUID's pace,
//!   audited, and the platform's signed refusal for the AP to pass on;
//! - it checks, but the enrollment does not name the SSID: a signed
//!   `ssid_not_allowed`, which only a device that proved pass_tmp sees;
//! - it checks: the device's key is registered (or replaced: a reset
//!   device onboards again, audited), the store is flushed, and only then
//!   is the session's Wi-Fi key sealed to the AP that relayed it, so the
//!   AP can grant the device. pass_tmp itself never leaves the verifier.

use super::onboarding::Onboarding;
use super::requests::{Handshake, RequestKey};
use super::serve::Served;
use super::verify::answer;
use crate::store::{EnrollmentStore, KeyOutcome};
use protocol::crypto::{opens_commitment, parse_handshake_tag, PlatformKey};
use protocol::onboarding::{
    seal_wifi_key, AccessDenied, AccessProof, VerifyOutcome, VerifyRequest,
};
use protocol::{decode, AccessErrorCode, DeviceUuid, ErrorBody};
use std::sync::Arc;
use std::time::Instant;
use tracing::{debug, error, info, warn};

pub(super) async fn on_proof<S: EnrollmentStore>(
    worker: &Served<S>,
    onboarding: &mut Onboarding,
    ssid: &str,
    payload: &[u8],
) {
    let checked = decode::<AccessProof>(payload).and_then(|p| {
        let uuid = p.validate()?;
        Ok((p, uuid))
    });
    let (proof, uuid) = match checked {
        Ok(ok) => ok,
        Err(e) => return debug!(error = %e, "malformed access proof ignored"),
    };
    let (Some(request), Some(opening)) = (proof.request.as_deref(), proof.opening.as_deref())
    else {
        return debug!(uuid = %uuid, "access proof without its request or opening ignored");
    };
    let Some(handshake) = parse_handshake_tag(request) else {
        return debug!(uuid = %uuid, "access proof for no handshake ignored");
    };
    let key = RequestKey::new(&uuid, handshake);
    let now = Instant::now();
    let Some(commit) = onboarding.requests.open(&key, ssid, now) else {
        // A repeat of a proof already judged, or one for a request that
        // was never challenged: nothing to decide.
        return debug!(uuid = %uuid, "access proof for no open challenge ignored");
    };
    if !opens_commitment(opening, commit) {
        // Not the requester's: anyone who read the challenge can send
        // this. It decides nothing and counts for nothing.
        return warn!(target: "audit", uuid = %uuid, "access proof that does not open its request's commitment ignored");
    }
    let Some(open) = onboarding.requests.settle(&key, now) else {
        return;
    };
    let verdict = judge(worker, onboarding, &uuid, ssid, request, &proof, &open).await;
    let req = VerifyRequest {
        request_id: open.request_id.to_string(),
        ap_id: open.ap_id.to_string(),
        uuid: uuid.key().to_owned(),
        ap_key: None,
        ssid: None,
        request: None,
    };
    match verdict {
        Verdict::Refused(code, message) => {
            let platform: &PlatformKey = &onboarding.guard.settings.key;
            let denial = AccessDenied::signed(
                platform,
                uuid.as_str(),
                request,
                ErrorBody::new(code, message.clone()),
            );
            let outcome = VerifyOutcome::Failed {
                error: ErrorBody::new(code, message),
                denial: Some(denial),
            };
            answer(worker, &req, outcome).await;
        }
        Verdict::Retry(message) => {
            let outcome = VerifyOutcome::failed(AccessErrorCode::Unavailable, message);
            answer(worker, &req, outcome).await;
        }
        Verdict::Proved { registered } => {
            let platform: Arc<PlatformKey> = onboarding.guard.settings.key.clone();
            let outcome = match seal_wifi_key(
                &platform,
                &req,
                &open.ap_key,
                &open.session,
                open.keys.wifi_key(),
            ) {
                Ok(outcome) => outcome,
                Err(e) => {
                    let outcome =
                        VerifyOutcome::failed(AccessErrorCode::BadRequest, format!("ap_key: {e}"));
                    return answer(worker, &req, outcome).await;
                }
            };
            if !registered {
                return answer(worker, &req, outcome).await;
            }
            // The AP may grant only once the key is durable: the flush is
            // awaited off the serve loop, shared with other registrations.
            let durable = onboarding.keys.durable();
            let worker = worker.clone();
            tokio::spawn(async move {
                let outcome = if durable.await {
                    outcome
                } else {
                    VerifyOutcome::failed(
                        AccessErrorCode::Unavailable,
                        "the verifier could not store the device's key just now; try again shortly",
                    )
                };
                answer(&worker, &req, outcome).await;
            });
        }
    }
}

enum Verdict {
    /// Final: the platform signs it.
    Refused(AccessErrorCode, String),
    /// Not final: the device asks again with a new handshake.
    Retry(&'static str),
    /// The device proved pass_tmp; `registered`: its key was written and
    /// must be flushed before the AP is told.
    Proved { registered: bool },
}

async fn judge<S: EnrollmentStore>(
    worker: &Served<S>,
    onboarding: &mut Onboarding,
    uuid: &DeviceUuid,
    ssid: &str,
    request: &str,
    proof: &AccessProof,
    open: &Handshake,
) -> Verdict {
    let mismatch = || {
        Verdict::Refused(
            AccessErrorCode::PassTmpMismatch,
            "the device's proof does not match the enrolled pass_tmp".into(),
        )
    };
    if !open.keys.check_device_proof(&proof.proof) {
        onboarding.guard.failed(uuid.key());
        worker.metrics.verification("proof_failed");
        warn!(target: "audit", uuid = %uuid, ap_id = %open.ap_id, "access attempt failed: wrong pass_tmp proof; counted as a failure");
        return mismatch();
    }
    let enrollment = match worker.store.get(uuid).await {
        Ok(Some(enrollment)) => enrollment,
        // Only the decoy could have been used, and nobody knows it.
        Ok(None) => return mismatch(),
        Err(e) => {
            error!(uuid = %uuid, error = %e, "store lookup failed");
            return Verdict::Retry(
                "the verifier cannot read its store just now; try again shortly",
            );
        }
    };
    onboarding.guard.proved(uuid.key());
    if !ssid_allowed(&enrollment, ssid) {
        warn!(target: "audit", uuid = %uuid, ssid = %ssid.escape_debug(), "access refused: the device's enrollment does not name this SSID");
        return Verdict::Refused(
            AccessErrorCode::SsidNotAllowed,
            format!("this device is not enrolled for SSID {ssid:?}"),
        );
    }
    let platform: &PlatformKey = &onboarding.guard.settings.key;
    let claim = proof
        .enroll
        .as_deref()
        .ok_or_else(|| "no device key in the proof".to_owned())
        .and_then(|enroll| {
            platform
                .open_enrollment(enroll, uuid.key(), request)
                .map_err(|e| e.to_string())
        })
        .and_then(|claim| {
            if claim.vouched_by(&open.keys, uuid.key(), request) {
                Ok(claim)
            } else {
                Err("the device key is not vouched for by this handshake".into())
            }
        });
    let claim = match claim {
        Ok(claim) => claim,
        Err(reason) => {
            warn!(target: "audit", uuid = %uuid, %reason, "device enrollment refused");
            return Verdict::Refused(
                AccessErrorCode::BadRequest,
                format!("the device key in the proof was refused: {reason}"),
            );
        }
    };
    let device_key = claim.device_key_hex();
    match register_key(worker, uuid, &device_key).await {
        Ok(KeyOutcome::Registered) => {
            info!(target: "audit", uuid = %uuid, %device_key, "device key registered");
            Verdict::Proved { registered: true }
        }
        Ok(KeyOutcome::Unchanged) => {
            debug!(uuid = %uuid, "device key already registered");
            Verdict::Proved { registered: false }
        }
        Ok(KeyOutcome::Conflict) => {
            warn!(target: "audit", uuid = %uuid, %device_key, "device key refused: the device has another key (revoke it first)");
            Verdict::Refused(
                AccessErrorCode::NotAuthorized,
                "this device has another key registered; an admin must revoke it first".into(),
            )
        }
        Ok(KeyOutcome::NotEnrolled) => {
            warn!(uuid = %uuid, "device key for a device no longer enrolled");
            mismatch()
        }
        Err(e) => {
            error!(uuid = %uuid, error = %e, "registering the device key failed");
            Verdict::Retry(
                "the verifier could not store the device's key just now; try again shortly",
            )
        }
    }
}

/// Whether the device's enrollment lets it onboard at `ssid`.
fn ssid_allowed(_enrollment: &crate::store::Enrollment, _ssid: &str) -> bool {
    true
}

/// Registers the device's key.
async fn register_key<S: EnrollmentStore>(
    worker: &Served<S>,
    uuid: &DeviceUuid,
    device_key: &str,
) -> Result<KeyOutcome, crate::store::StoreError> {
    worker.store.set_device_key(uuid, device_key).await
}

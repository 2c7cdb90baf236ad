//! Secure mode never puts pass_tmp on the wire: the AP and the device
//! compare it by a SPAKE2 handshake, a challenge and the device's proof.
//! The challenge carries the verifier's ticket, without which the device
//! would not answer it.

use crate::shared::{Denied, Shared};
use protocol::crypto::{ap_handshake, handshake_tag, random_b64, SessionKeys};
use protocol::onboarding::{AccessChallenge, AccessRequest, Ticket};
use protocol::{topics, AccessErrorCode, DeviceUuid};
use tracing::warn;

/// Secure mode's comparison: the SPAKE2 handshake keyed by the stored
/// pass_tmp, a challenge to the device, and a check of its proof. Only a
/// device holding the same pass_tmp can prove it.
pub(crate) async fn compare_by_handshake(
    shared: &Shared,
    req: &AccessRequest,
    uuid: &DeviceUuid,
    stored: &str,
    ticket: Option<Ticket>,
    device_msg: &str,
) -> Result<(SessionKeys, String), Denied> {
    let session = random_b64(16);
    let (keys, ap_msg) = ap_handshake(uuid.as_str(), &req.ssid, stored, device_msg, &session)
        .map_err(|e| shared.deny(uuid.as_str(), AccessErrorCode::BadRequest, e.to_string()))?;
    let proof = shared.proofs.insert(session.clone());
    let challenge = AccessChallenge {
        uuid: uuid.as_str().to_owned(),
        ssid: req.ssid.clone(),
        request: handshake_tag(device_msg),
        session: session.clone(),
        spake2: ap_msg,
        ticket,
    };
    if let Some(open) = shared
        .in_flight
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_mut(uuid.key())
    {
        *open = Some(challenge.clone());
    }
    if let Err(e) = shared
        .bus
        .publish_json(topics::access_challenge(uuid.as_str()), &challenge)
        .await
    {
        shared.proofs.remove(&session);
        return Err(shared.deny(
            uuid.as_str(),
            AccessErrorCode::Unavailable,
            format!("the AP could not send its challenge: {e}"),
        ));
    }
    let proof = match tokio::time::timeout(shared.config.verify_timeout, proof).await {
        Ok(Ok(p)) => p,
        _ => {
            // Not a failed guess: the challenge or the proof may have
            // been lost (the platform restarting, say). The device starts
            // a new handshake; each one still counts toward the lockout
            // until one is granted.
            shared.proofs.remove(&session);
            return Err(shared.deny(
                uuid.as_str(),
                AccessErrorCode::Unavailable,
                "no proof of pass_tmp arrived in time; start a new handshake",
            ));
        }
    };
    let same_device = DeviceUuid::parse(&proof.uuid).is_ok_and(|u| u.key() == uuid.key());
    if !same_device || !keys.check_device_proof(&proof.proof) {
        warn!(target: "audit", uuid = %uuid, ap_id = %shared.config.ap_id, "access attempt failed: wrong pass_tmp proof");
        return Err(shared.deny(
            uuid.as_str(),
            AccessErrorCode::PassTmpMismatch,
            "the device's proof does not match the enrolled pass_tmp",
        ));
    }
    Ok((keys, session))
}

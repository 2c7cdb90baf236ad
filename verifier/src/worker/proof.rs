//! Devices' proofs on `wlan/+/access/proof`, as the verifier sees them
//! (secure mode). A proof answers a challenge to a request the verifier
//! released; its `enroll` field is the device's key, vouched for by a MAC
//! keyed by pass_tmp and sealed to the platform. Only devices may publish
//! here (the broker's ACL), and each only with its own UUID, so no AP can
//! put a key or a verdict in a device's mouth.
//!
//! Each released request gets one verdict, from its first proof:
//! - the MAC checks: the device holds pass_tmp. Its attempts are cleared
//!   and its key registered (first come; a device that has another key
//!   keeps it, and the attempt is audited), to be flushed soon by
//!   [`super::key_flush`], off this path;
//! - it does not (or the enrollment does not open): one more failure
//!   toward the UUID's lockout, audited.
//!
//! Cost per proof: one X25519 agreement, two HKDF, one ChaCha20-Poly1305
//! open and one HMAC, a store read and, the first time, a store write.

use super::onboarding::Onboarding;
use super::requests::RequestKey;
use super::serve::Served;
use crate::store::{EnrollmentStore, KeyOutcome};
use protocol::crypto::{parse_handshake_tag, PlatformKey};
use protocol::decode;
use protocol::onboarding::AccessProof;
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
    let (Some(request), Some(enroll)) = (proof.request.as_deref(), proof.enroll.as_deref()) else {
        return debug!(uuid = %uuid, "access proof without an enrollment ignored");
    };
    let Some(handshake) = parse_handshake_tag(request) else {
        return debug!(uuid = %uuid, "access proof for no handshake ignored");
    };
    let key = RequestKey::new(&uuid, handshake);
    if !onboarding.requests.settle(&key, ssid, Instant::now()) {
        // A repeat of a proof already judged, or one for a request that
        // was never released: nothing to decide.
        return debug!(uuid = %uuid, "access proof for no open release ignored");
    }
    let guard = &onboarding.guard;
    let platform: &PlatformKey = &guard.settings.key;
    let claim = match platform.open_enrollment(enroll, uuid.key(), request) {
        Ok(claim) => claim,
        Err(e) => {
            guard.failed(uuid.key());
            warn!(target: "audit", uuid = %uuid, error = %e, "device enrollment refused: it does not open; counted as a failure");
            return;
        }
    };
    let enrollment = match worker.store.get(&uuid).await {
        Ok(Some(enrollment)) => enrollment,
        Ok(None) => return warn!(uuid = %uuid, "device enrollment for a device no longer enrolled"),
        Err(e) => return error!(uuid = %uuid, error = %e, "store lookup failed"),
    };
    if !claim.vouched_by(&enrollment.pass_tmp, uuid.key(), request) {
        guard.failed(uuid.key());
        warn!(target: "audit", uuid = %uuid, "device enrollment refused: not vouched for by the enrolled pass_tmp; counted as a failure");
        return;
    }
    guard.proved(uuid.key());
    let device_key = claim.device_key_hex();
    match worker.store.set_device_key(&uuid, &device_key).await {
        Ok(KeyOutcome::Registered) => {
            info!(target: "audit", uuid = %uuid, %device_key, "device key registered");
            onboarding.keys.soon();
        }
        Ok(KeyOutcome::Unchanged) => debug!(uuid = %uuid, "device key already registered"),
        Ok(KeyOutcome::Conflict) => {
            warn!(target: "audit", uuid = %uuid, %device_key, "device key refused: the device has another key (revoke it first)")
        }
        Ok(KeyOutcome::NotEnrolled) => {
            warn!(uuid = %uuid, "device key for a device no longer enrolled")
        }
        // set_device_key is first come: it neither replaces nor defers.
        Ok(other @ (KeyOutcome::Replaced | KeyOutcome::Pending)) => {
            error!(uuid = %uuid, outcome = ?other, "unexpected answer to a first-come key registration")
        }
        Err(e) => error!(uuid = %uuid, error = %e, "registering the device key failed"),
    }
}

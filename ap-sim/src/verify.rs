//! The AP never holds a device's pass_tmp: it asks the verifier for it per
//! request, and in secure mode trusts only an answer sealed to this AP and
//! signed by the platform. In secure mode it names the device request it
//! answers (SSID and handshake): the verifier releases pass_tmp only for a
//! request the device itself made, and gives the AP the ticket the device
//! will want to see in the challenge.

use crate::shared::{Denied, Shared};
use protocol::crypto::handshake_tag;
use protocol::onboarding::{
    open_verify_answer, AccessRequest, Ticket, VerifyOutcome, VerifyRequest,
};
use protocol::{topics, AccessErrorCode, DeviceUuid};
use tracing::warn;

/// What the verifier gave: the device's pass_tmp and, in secure mode, the
/// platform's ticket for this request.
pub(crate) struct Verified {
    pub(crate) pass_tmp: String,
    pub(crate) ticket: Option<Ticket>,
}

/// Asks the verifier for the UUID's pass_tmp for the device's request
/// `req`; in secure mode it arrives sealed to this AP and signed by the
/// platform.
pub(crate) async fn verify(
    shared: &Shared,
    uuid: &DeviceUuid,
    req: &AccessRequest,
) -> Result<Verified, Denied> {
    let config = &shared.config;
    let request_id = uuid::Uuid::new_v4().simple().to_string();
    let answer = shared.verifications.insert(request_id.clone());
    let secure = config.platform_key.is_some();
    let ask = VerifyRequest {
        request_id: request_id.clone(),
        ap_id: config.ap_id.clone(),
        uuid: uuid.key().to_owned(),
        ap_key: secure.then(|| shared.ap_key.public_b64()),
        ssid: secure.then(|| req.ssid.clone()),
        request: req.spake2.as_deref().filter(|_| secure).map(handshake_tag),
    };
    if shared
        .bus
        .publish_json(topics::VERIFY_REQUEST, &ask)
        .await
        .is_err()
    {
        shared.verifications.remove(&request_id);
        return Err(shared.deny(
            uuid.as_str(),
            AccessErrorCode::Unavailable,
            "the AP lost its connection to the verifier",
        ));
    }
    let verified = match tokio::time::timeout(config.verify_timeout, answer).await {
        Ok(Ok(resp)) => resp,
        _ => {
            shared.verifications.remove(&request_id);
            if secure {
                // The secure verifier does not answer an AP id nobody
                // registered: say so where the AP's operator looks.
                warn!(ap_id = %config.ap_id, uuid = %uuid, "no answer from the verifier; is this AP registered (verifier ap add)?");
            }
            return Err(shared.deny(
                uuid.as_str(),
                AccessErrorCode::Unavailable,
                "the verifier did not answer in time",
            ));
        }
    };
    match (verified.outcome, &config.platform_key) {
        (VerifyOutcome::Found { pass_tmp }, None) => Ok(Verified {
            pass_tmp,
            ticket: None,
        }),
        (
            VerifyOutcome::Sealed {
                sealed_pass_tmp,
                sig,
                ticket,
            },
            Some(platform),
        ) => open_verify_answer(
            platform,
            &shared.ap_key,
            &request_id,
            uuid.key(),
            &config.ap_id,
            &sealed_pass_tmp,
            &sig,
        )
        .map(|pass_tmp| Verified {
            pass_tmp,
            ticket: Some(ticket),
        })
        .map_err(|e| {
            warn!(target: "audit", uuid = %uuid, error = %e, "verifier answer refused: not signed by the platform or not sealed to this AP");
            shared.deny(
                uuid.as_str(),
                AccessErrorCode::Timeout,
                "no valid answer from the verifier",
            )
        }),
        (VerifyOutcome::Failed { error }, _) => Err(shared.deny_with(uuid.as_str(), error)),
        (_, _) => {
            warn!(target: "audit", uuid = %uuid, "verifier answer refused: wrong mode (plaintext in secure mode or sealed in walkthrough)");
            Err(shared.deny(
                uuid.as_str(),
                AccessErrorCode::Timeout,
                "no valid answer from the verifier",
            ))
        }
    }
}

//! The AP never holds a device's pass_tmp. It asks the verifier per
//! request: in walkthrough mode for the pass_tmp itself; in secure mode to
//! answer the device's request, naming it (SSID and handshake). The
//! verifier is the device's PAKE peer: its answer is its own half of the
//! handshake, which the AP relays (`handshake.rs`), and a refusal of
//! the device it signs, which the AP passes on as it is.

use crate::shared::{Denied, Shared};
use protocol::crypto::handshake_tag;
use protocol::onboarding::{AccessRequest, Ticket, VerifyOutcome, VerifyRequest};
use protocol::{topics, AccessErrorCode, DeviceUuid};
use tracing::warn;

/// What the verifier gave.
pub(crate) enum Verified {
    /// Walkthrough mode: the device's pass_tmp, to compare.
    PassTmp(String),
    /// Secure mode: the verifier's half of the handshake, to relay, and
    /// the question's id, which its verdict on the proof will answer.
    Challenge {
        request_id: String,
        session: String,
        spake2: String,
        ticket: Ticket,
    },
}

/// Asks the verifier about the device's request `req`.
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
    match (verified.outcome, secure) {
        (VerifyOutcome::Found { pass_tmp }, false) => Ok(Verified::PassTmp(pass_tmp)),
        (
            VerifyOutcome::Challenge {
                session,
                spake2,
                ticket,
            },
            true,
        ) => Ok(Verified::Challenge {
            request_id,
            session,
            spake2,
            ticket,
        }),
        (VerifyOutcome::Failed { error, denial }, _) => Err(shared.refusal(uuid, error, denial)),
        (_, _) => {
            warn!(target: "audit", uuid = %uuid, "verifier answer refused: not what this mode expects");
            Err(shared.deny(
                uuid.as_str(),
                AccessErrorCode::Unavailable,
                "no valid answer from the verifier",
            ))
        }
    }
}

//! Secure mode never puts pass_tmp on the wire, nor in the AP: the device
//! and the verifier run a SPAKE2 handshake keyed by it, which the AP
//! relays: the verifier's challenge to the device, and the device's proof
//! to the verifier (the broker carries it there). The AP waits for the
//! verifier's verdict on the proof: only if the proof checked does it get
//! the session's Wi-Fi key, sealed to its own key and signed by the
//! platform, which seals the Wi-Fi password for this device and nothing
//! else.

use crate::shared::{Denied, Shared};
use protocol::crypto::{handshake_tag, WifiKey};
use protocol::onboarding::{
    open_wifi_key, AccessChallenge, AccessRequest, SealedFor, Ticket, VerifyOutcome,
};
use protocol::{topics, AccessErrorCode, DeviceUuid};
use tracing::warn;

/// The verifier's challenge for one device request, to relay.
pub(crate) struct Relay<'a> {
    pub(crate) in_flight_key: &'a str,
    pub(crate) request_id: String,
    pub(crate) session: String,
    pub(crate) spake2: String,
    pub(crate) ticket: Ticket,
    pub(crate) device_msg: &'a str,
}

/// Relays the verifier's challenge to the device and waits for the
/// verifier's verdict on the device's proof: the session's Wi-Fi key, or
/// the refusal to pass on.
pub(crate) async fn relay_handshake(
    shared: &Shared,
    req: &AccessRequest,
    uuid: &DeviceUuid,
    relay: Relay<'_>,
) -> Result<(WifiKey, String), Denied> {
    let config = &shared.config;
    // The waiter exists before the device hears of the challenge, so the
    // verdict cannot arrive too early.
    let verdict = shared.verifications.insert(relay.request_id.clone());
    let challenge = AccessChallenge {
        uuid: uuid.as_str().to_owned(),
        ssid: req.ssid.clone(),
        request: handshake_tag(relay.device_msg),
        session: relay.session.clone(),
        spake2: relay.spake2,
        ticket: Some(relay.ticket),
    };
    if let Some(open) = shared
        .in_flight
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_mut(relay.in_flight_key)
    {
        *open = Some(challenge.clone());
    }
    if let Err(e) = shared
        .bus
        .publish_json(topics::access_challenge(uuid.as_str()), &challenge)
        .await
    {
        shared.verifications.remove(&relay.request_id);
        return Err(shared.deny(
            uuid.as_str(),
            AccessErrorCode::Unavailable,
            format!("the AP could not send its challenge: {e}"),
        ));
    }
    let verdict = match tokio::time::timeout(config.verify_timeout, verdict).await {
        Ok(Ok(v)) => v,
        _ => {
            // Not a failed guess: the challenge or the proof may have
            // been lost (the platform restarting, say). The device starts
            // a new handshake.
            shared.verifications.remove(&relay.request_id);
            return Err(shared.deny(
                uuid.as_str(),
                AccessErrorCode::Unavailable,
                "no verdict on the device's proof arrived in time; start a new handshake",
            ));
        }
    };
    let platform = config.platform_key.as_ref();
    match (verdict.outcome, platform) {
        (
            VerifyOutcome::Proved {
                session,
                sealed_key,
                sig,
            },
            Some(platform),
        ) if session == relay.session => {
            let for_ = SealedFor {
                request_id: &relay.request_id,
                uuid: uuid.key(),
                ap_id: &config.ap_id,
                session: &session,
            };
            open_wifi_key(platform, &shared.ap_key, for_, &sealed_key, &sig)
                .map(|key| (key, session))
                .map_err(|e| {
                    warn!(target: "audit", uuid = %uuid, error = %e, "verifier verdict refused: not signed by the platform or not sealed to this AP");
                    shared.deny(
                        uuid.as_str(),
                        AccessErrorCode::Unavailable,
                        "no valid verdict from the verifier",
                    )
                })
        }
        (VerifyOutcome::Failed { error, denial }, _) => Err(shared.refusal(uuid, error, denial)),
        (_, _) => {
            warn!(target: "audit", uuid = %uuid, "verifier verdict refused: not a verdict for this session");
            Err(shared.deny(
                uuid.as_str(),
                AccessErrorCode::Unavailable,
                "no valid verdict from the verifier",
            ))
        }
    }
}

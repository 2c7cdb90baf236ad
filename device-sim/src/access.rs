//! What the device puts on the wire to an AP and what it believes back,
//! in either mode: the access request (in secure mode SPAKE2's first
//! message and a commitment, never pass_tmp), the challenge it answers (in
//! secure mode only the verifier's, with the platform's ticket for this
//! device, SSID, handshake and message), the proof that answers it (with
//! the device's key, sealed to the platform, and the commitment's
//! opening), the password of a grant (in secure mode only if it opens with
//! the handshake's key), and which refusals end the onboarding (in secure
//! mode only the platform's, or one bound to the device's session). The
//! onboarding flow decides when; this decides what.

use crate::{DeviceConfig, DeviceError};
use bus::Message;
use protocol::crypto::{
    handshake_commitment, handshake_tag, seal_enrollment, DeviceHandshake, SessionKeys,
};
use protocol::onboarding::{
    wifi_seal_context, AccessChallenge, AccessDenied, AccessGranted, AccessProof, AccessRequest,
    AccessResponse, TicketFor,
};
use protocol::{decode, now_ms, topics, DeviceUuid};
use tracing::warn;

/// A challenge this device answered: the keys of its handshake, and the
/// proof it sent, kept to send again if the AP repeats the challenge.
pub(crate) struct Answered {
    pub(crate) keys: SessionKeys,
    pub(crate) session: String,
    /// The request (handshake tag) it answered.
    pub(crate) request: String,
    proof: AccessProof,
}

/// A handshake started and not answered yet: its state, its tag
/// ([`handshake_tag`]), and the opening of its request's commitment.
pub(crate) struct Started {
    state: DeviceHandshake,
    pub(crate) tag: String,
    opening: String,
}

/// The access request, and in secure mode the handshake it starts.
pub(crate) fn access_request(
    config: &DeviceConfig,
    uuid: &DeviceUuid,
) -> (AccessRequest, Option<Started>) {
    let mut request = AccessRequest {
        uuid: uuid.as_str().to_owned(),
        ssid: config.ssid.clone(),
        pass_tmp: String::new(),
        spake2: None,
        commit: None,
    };
    if config.platform_key.is_none() {
        request.pass_tmp = config.pass_tmp.clone();
        return (request, None);
    }
    let (state, msg) = DeviceHandshake::start(uuid.key(), &config.ssid, &config.pass_tmp);
    let tag = handshake_tag(&msg);
    let (opening, commit) = handshake_commitment();
    request.spake2 = Some(msg);
    request.commit = Some(commit);
    (
        request,
        Some(Started {
            state,
            tag,
            opening,
        }),
    )
}

/// Secure mode: once a challenge has answered the current handshake
/// (`handshake` is None), the next request starts a new one.
pub(crate) fn renew_if_spent(
    config: &DeviceConfig,
    uuid: &DeviceUuid,
    request: &mut AccessRequest,
    handshake: &mut Option<Started>,
) {
    if config.platform_key.is_some() && handshake.is_none() {
        (*request, *handshake) = access_request(config, uuid);
    }
}

fn invalid_challenge(reason: String) -> DeviceError {
    DeviceError::Invalid {
        field: "challenge",
        reason,
    }
}

/// Whether the challenge carries the platform's ticket for this device,
/// SSID, handshake (`tag`), session and handshake message: proof that the
/// verifier itself answered this very request. Without it, answering would
/// hand whoever sent the challenge one guess of pass_tmp to test against
/// the proof, outside the verifier's pacing.
pub(crate) fn ticket_ok(
    config: &DeviceConfig,
    uuid: &DeviceUuid,
    challenge: &AccessChallenge,
    tag: &str,
) -> Result<(), String> {
    let platform = config.platform_key.as_ref().ok_or("no platform key")?;
    let ticket = challenge.ticket.as_ref().ok_or("no ticket")?;
    let what = TicketFor {
        uuid: uuid.key(),
        ssid: &config.ssid,
        request: tag,
        session: &challenge.session,
        spake2: &challenge.spake2,
    };
    ticket
        .check(platform, what, now_ms())
        .map_err(|e| e.to_string())
}

/// A well-formed challenge for this device's SSID.
pub(crate) fn read_challenge(
    config: &DeviceConfig,
    msg: &Message,
) -> Result<AccessChallenge, DeviceError> {
    let challenge = decode::<AccessChallenge>(&msg.payload)
        .map_err(|e| invalid_challenge(e.to_string()))
        .and_then(|c| {
            c.validate()
                .map(|()| c)
                .map_err(|e| invalid_challenge(e.to_string()))
        })?;
    if challenge.ssid != config.ssid {
        return Err(invalid_challenge("for another SSID".into()));
    }
    Ok(challenge)
}

/// Sends the proof of an answered challenge (again, if the AP repeats it).
pub(crate) async fn send_proof(
    bus: &bus::Bus,
    config: &DeviceConfig,
    answered: &Answered,
) -> Result<(), DeviceError> {
    bus.publish_json(topics::access_proof(&config.ssid), &answered.proof)
        .await?;
    Ok(())
}

/// Secure mode: finishes the handshake with the verifier's challenge
/// (whose ticket has been checked) and sends the proof, with the device's
/// key for its later logins sealed to the platform, and the opening of the
/// request's commitment.
pub(crate) async fn answer_challenge(
    bus: &bus::Bus,
    config: &DeviceConfig,
    uuid: &DeviceUuid,
    started: Started,
    challenge: &AccessChallenge,
) -> Result<Answered, DeviceError> {
    let keys = started
        .state
        .finish(&challenge.spake2, &challenge.session)
        .map_err(|e| invalid_challenge(e.to_string()))?;
    let enroll = config.platform_key.as_ref().map(|platform| {
        seal_enrollment(
            platform,
            &config.device_key,
            uuid.key(),
            &keys,
            &challenge.request,
        )
    });
    let answered = Answered {
        proof: AccessProof {
            uuid: uuid.as_str().to_owned(),
            session: challenge.session.clone(),
            proof: keys.device_proof(),
            request: Some(challenge.request.clone()),
            enroll,
            opening: Some(started.opening),
        },
        keys,
        session: challenge.session.clone(),
        request: challenge.request.clone(),
    };
    send_proof(bus, config, &answered).await?;
    Ok(answered)
}

/// The password of a grant: in secure mode, only if it opens with this
/// handshake's key; in walkthrough mode, as sent.
pub(crate) fn open_grant(
    config: &DeviceConfig,
    uuid: &DeviceUuid,
    answered: Option<&Answered>,
    mut granted: AccessGranted,
) -> Result<AccessGranted, String> {
    if config.platform_key.is_none() {
        if granted.password.is_empty() {
            return Err("no password in a walkthrough-mode grant".into());
        }
        return Ok(granted);
    }
    let Answered { keys, session, .. } = answered.ok_or("no handshake completed")?;
    if granted.session.as_deref() != Some(session.as_str()) {
        return Err("for another session".into());
    }
    let sealed = granted.sealed.as_deref().ok_or("no sealed password")?;
    granted.password = keys
        .open_password(
            sealed,
            &wifi_seal_context(uuid.as_str(), &config.ssid, session),
        )
        .map_err(|e| e.to_string())?;
    Ok(granted)
}

/// Whether a final refusal ends this device's onboarding: in walkthrough
/// mode any does; in secure mode only the platform's, signed for the
/// device's current or answered request, or one bound to the session it
/// answered (by the AP the verifier handed the session's key). Anyone can
/// publish a refusal on a device's response topic; any other is at most a
/// reason to ask again.
pub(crate) fn refusal_is_binding(
    config: &DeviceConfig,
    uuid: &DeviceUuid,
    started: Option<&Started>,
    answered: Option<&Answered>,
    denied: &AccessDenied,
) -> bool {
    let Some(platform) = config.platform_key.as_ref() else {
        return true;
    };
    let signed = |tag: &str| denied.signed_for(platform, uuid.key(), tag);
    started.is_some_and(|s| signed(&s.tag))
        || answered.is_some_and(|a| {
            signed(&a.request) || denied.bound_to(a.keys.wifi_key(), uuid.key(), &a.session)
        })
}

pub(crate) fn read_response(msg: &Message, uuid: &DeviceUuid) -> Option<AccessResponse> {
    match decode::<AccessResponse>(&msg.payload) {
        Ok(resp) if DeviceUuid::parse(resp.uuid()).is_ok_and(|u| u.key() == uuid.key()) => {
            Some(resp)
        }
        Ok(_) => {
            warn!("access response for another device ignored");
            None
        }
        Err(e) => {
            warn!(error = %e, "malformed access response ignored");
            None
        }
    }
}

//! A simulated headless device.
//!
//! [`onboard`] runs one device through Wi-Fi onboarding: it sends its
//! access request {uuid, ssid, pass_tmp} to whichever AP serves the SSID,
//! re-sending with capped, jittered backoff while nobody answers; on an
//! access response it prompts its own user and, on accept, "joins" (records
//! the credentials). Then [`gateway::stay_homed`] keeps it on its gateway.
//! The same functions serve one device or, later, each device of a fleet.

#![forbid(unsafe_code)]

pub mod fleet;
pub mod gateway;
mod link;
pub mod manifest;
pub mod report;
mod stats;

pub use link::{LinkConfig, PlatformLink};

use bus::{Backoff, BusError, Message};
use protocol::crypto::{handshake_tag, DeviceHandshake, PlatformPublicKey, SessionKeys};
use protocol::onboarding::{
    check_pass_tmp, check_ssid, wifi_seal_context, AccessChallenge, AccessGranted, AccessProof,
    AccessRequest, AccessResponse, Confirm,
};
use protocol::{decode, topics, AccessErrorCode, DeviceUuid};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("invalid {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error("refused by the AP: {code}: {message}")]
    Refused {
        code: AccessErrorCode,
        message: String,
    },
    #[error("no AP answered within {0:?}; is an AP serving this SSID?")]
    NoAnswer(Duration),
    #[error("the device's user declined to join")]
    Declined,
    #[error("the device's user did not confirm within {0:?}")]
    ConfirmTimeout(Duration),
    #[error("stopped before joining")]
    Stopped,
}

#[derive(Debug, Clone)]
pub struct DeviceConfig {
    /// The platform broker, "host:port".
    pub broker: String,
    pub uuid: String,
    pub pass_tmp: String,
    pub ssid: String,
    pub auto_confirm: bool,
    /// How long the device's own prompt waits for its user.
    pub confirm_timeout: Duration,
    /// Give up if no AP has answered by then. Longer than an AP's prompt
    /// timeout (60 s), so a slow human on the AP side is not cut off.
    pub answer_timeout: Duration,
    /// First wait before re-sending the request; doubles up to `retry_cap`.
    pub retry_base: Duration,
    pub retry_cap: Duration,
    pub username: String,
    pub password: String,
    /// Secure mode: the platform's public key. The device then logs in as
    /// itself, proves pass_tmp by SPAKE2 without sending it, and accepts
    /// only a sealed password. None: walkthrough mode (plaintext).
    pub platform_key: Option<PlatformPublicKey>,
}

impl DeviceConfig {
    pub fn new(
        broker: impl Into<String>,
        uuid: impl Into<String>,
        pass_tmp: impl Into<String>,
        ssid: impl Into<String>,
    ) -> Self {
        DeviceConfig {
            broker: broker.into(),
            uuid: uuid.into(),
            pass_tmp: pass_tmp.into(),
            ssid: ssid.into(),
            auto_confirm: false,
            confirm_timeout: Duration::from_secs(60),
            answer_timeout: Duration::from_secs(90),
            retry_base: Duration::from_secs(1),
            retry_cap: Duration::from_secs(15),
            username: "device".into(),
            password: String::new(),
            platform_key: None,
        }
    }
}

impl DeviceConfig {
    /// Checks the factory identity before anything goes on the wire.
    pub fn validate(&self) -> Result<DeviceUuid, DeviceError> {
        let uuid = DeviceUuid::parse(&self.uuid).map_err(|e| DeviceError::Invalid {
            field: "uuid",
            reason: e.to_string(),
        })?;
        check_ssid(&self.ssid).map_err(|reason| DeviceError::Invalid {
            field: "ssid",
            reason,
        })?;
        check_pass_tmp(&self.pass_tmp).map_err(|reason| DeviceError::Invalid {
            field: "pass_tmp",
            reason,
        })?;
        Ok(uuid)
    }

    /// The device's session on the platform broker.
    pub fn link(&self) -> LinkConfig {
        let (username, password) = match self.platform_key {
            Some(_) => (
                self.uuid.clone(),
                protocol::crypto::device_login(&self.uuid, &self.pass_tmp),
            ),
            None => (self.username.clone(), self.password.clone()),
        };
        LinkConfig {
            broker: self.broker.clone(),
            device_id: self.uuid.clone(),
            username,
            password,
            timeout: Duration::from_secs(10),
        }
    }
}

/// Steps of the flow, for whoever shows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceEvent {
    Connected {
        broker: String,
    },
    RequestSent {
        attempt: u32,
    },
    /// The AP answered with the credentials; the device's user must confirm.
    /// `latency`: from the first access request to the response.
    Prompt {
        ssid: String,
        latency: Duration,
    },
    Joined {
        ssid: String,
    },
}

/// The result of a successful onboarding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Joined {
    pub ssid: String,
    pub password: String,
    /// From sending the first access request to receiving the response.
    pub access_latency: Duration,
}

/// Runs the onboarding flow for one device on its own connection, closed
/// when it returns. `local_confirm` carries the device user's answers from
/// elsewhere (a terminal); `device/{uuid}/confirm` messages work too.
pub async fn onboard(
    config: &DeviceConfig,
    events: &mpsc::UnboundedSender<DeviceEvent>,
    local_confirm: Option<mpsc::Receiver<bool>>,
    shutdown: &CancellationToken,
) -> Result<Joined, DeviceError> {
    config.validate()?;
    let mut link = PlatformLink::open(&config.link(), shutdown).await?;
    onboard_on(&mut link, config, events, local_confirm, shutdown).await
}

/// Runs the onboarding flow over an open [`PlatformLink`], which stays
/// open for the gateway query.
pub async fn onboard_on(
    link: &mut PlatformLink,
    config: &DeviceConfig,
    events: &mpsc::UnboundedSender<DeviceEvent>,
    mut local_confirm: Option<mpsc::Receiver<bool>>,
    shutdown: &CancellationToken,
) -> Result<Joined, DeviceError> {
    let uuid = config.validate()?;
    let response_topic = topics::access_response(uuid.as_str());
    let confirm_topic = topics::device_confirm(uuid.as_str());
    let _ = events.send(DeviceEvent::Connected {
        broker: link.broker().to_owned(),
    });
    let bus = &link.bus;
    let inbox = &mut link.inbox;

    // Step 2: the access request, re-sent while nobody answers. Secure
    // mode sends the first SPAKE2 message instead of pass_tmp.
    let challenge_topic = topics::access_challenge(uuid.as_str());
    let mut keys: Option<(SessionKeys, String)> = None;
    let (mut request, mut handshake) = access_request(config, &uuid);
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + config.answer_timeout;
    let mut backoff = Backoff::new(config.retry_base, config.retry_cap);
    let mut attempt = 0;
    let mut unavailable: Option<String> = None;
    let mut link_state = bus.watch_state();
    link_state.mark_unchanged();
    let granted = 'wait: loop {
        attempt += 1;
        bus.publish_json(topics::access_request(&config.ssid), &request)
            .await?;
        let _ = events.send(DeviceEvent::RequestSent { attempt });
        let resend_at = (tokio::time::Instant::now() + backoff.next_delay()).min(deadline);
        loop {
            let msg = tokio::select! {
                _ = shutdown.cancelled() => return Err(DeviceError::Stopped),
                Ok(()) = link_state.changed() => {
                    // Back after a lost connection (the platform
                    // restarting, say): whatever was in flight may be
                    // gone, so ask again now and from the shortest delay,
                    // not after a backoff grown while nobody answered. A
                    // handshake this device already answered is spent: the
                    // AP dropped its session with the link, and would
                    // answer the same request with a challenge nobody can
                    // finish.
                    if *link_state.borrow_and_update() == bus::LinkState::Ready {
                        debug!("link to the platform is back; asking again");
                        renew_if_spent(config, &uuid, &mut request, &mut handshake);
                        backoff.reset();
                        continue 'wait;
                    }
                    continue;
                }
                _ = tokio::time::sleep_until(resend_at) => {
                    if resend_at >= deadline {
                        return Err(match unavailable.take() {
                            Some(message) => DeviceError::Refused {
                                code: AccessErrorCode::Unavailable,
                                message,
                            },
                            None => DeviceError::NoAnswer(config.answer_timeout),
                        });
                    }
                    continue 'wait;
                }
                    msg = inbox.recv() => msg.ok_or(DeviceError::Stopped)?,
            };
            if msg.topic == challenge_topic {
                let challenge = match read_challenge(config, &msg) {
                    Ok(c) => c,
                    Err(e) => {
                        warn!(error = %e, "challenge refused");
                        continue;
                    }
                };
                match handshake.take() {
                    Some((state, tag)) if tag == challenge.request => {
                        match answer_challenge(bus, config, &uuid, state, &challenge).await {
                            Ok(k) => keys = Some(k),
                            Err(e) => warn!(error = %e, "challenge refused"),
                        }
                    }
                    other => {
                        handshake = other;
                        match &keys {
                            // The AP sent the challenge this device answered
                            // again: the proof may have been lost. Same proof.
                            Some((k, session)) if *session == challenge.session => {
                                debug!(%session, "challenge repeated; proof re-sent");
                                send_proof(bus, config, &uuid, k, session).await?;
                            }
                            _ => {
                                debug!(session = %challenge.session, "challenge to another handshake ignored")
                            }
                        }
                    }
                }
                continue;
            }
            if msg.topic != response_topic {
                debug!(topic = %msg.topic, "ignored before the access response");
                continue;
            }
            match read_response(&msg, &uuid) {
                Some(AccessResponse::Granted(g)) if g.ssid == config.ssid => {
                    match open_grant(config, &uuid, keys.as_ref(), g) {
                        Ok(g) => break 'wait g,
                        Err(e) => {
                            warn!(target: "audit", error = %e, "access response that is not the AP's ignored")
                        }
                    }
                }
                Some(AccessResponse::Granted(g)) => {
                    warn!(ssid = %g.ssid, "access response for another SSID ignored");
                }
                Some(AccessResponse::Denied(d)) if d.error.code == AccessErrorCode::Unavailable => {
                    // Not final: ask again at the next resend. Until then
                    // a re-sent request repeats the same handshake, which
                    // the AP treats as a repeat (no new session, no new
                    // verification). But once the AP has given up on a
                    // session whose challenge this device answered (the
                    // proof or the response lost across a restart, say),
                    // that handshake is spent: ask with a new one.
                    debug!(message = %d.error.message, "the AP cannot reach the verifier; retrying");
                    renew_if_spent(config, &uuid, &mut request, &mut handshake);
                    unavailable = Some(d.error.message);
                }
                Some(AccessResponse::Denied(d)) => {
                    return Err(DeviceError::Refused {
                        code: d.error.code,
                        message: d.error.message,
                    })
                }
                None => {}
            }
        }
    };
    let access_latency = started.elapsed();

    // Step 6: the device's own prompt.
    let _ = events.send(DeviceEvent::Prompt {
        ssid: granted.ssid.clone(),
        latency: access_latency,
    });
    if !config.auto_confirm {
        let answer = async {
            loop {
                tokio::select! {
                    Some(accept) = recv_local(&mut local_confirm) => return Ok(accept),
                    msg = inbox.recv() => {
                        let msg = msg.ok_or(DeviceError::Stopped)?;
                        if msg.topic == confirm_topic {
                            match decode::<Confirm>(&msg.payload) {
                                Ok(c) => return Ok(c.accept),
                                Err(e) => warn!(error = %e, "malformed confirmation ignored"),
                            }
                        }
                    }
                    _ = shutdown.cancelled() => return Err(DeviceError::Stopped),
                }
            }
        };
        match tokio::time::timeout(config.confirm_timeout, answer).await {
            Err(_) => return Err(DeviceError::ConfirmTimeout(config.confirm_timeout)),
            Ok(Err(e)) => return Err(e),
            Ok(Ok(false)) => return Err(DeviceError::Declined),
            Ok(Ok(true)) => {}
        }
    }

    // Step 7: join. In simulation, keep the credentials and report.
    let _ = events.send(DeviceEvent::Joined {
        ssid: granted.ssid.clone(),
    });
    Ok(Joined {
        ssid: granted.ssid,
        password: granted.password,
        access_latency,
    })
}

/// The access request, and in secure mode the handshake it starts with
/// that handshake's tag ([`handshake_tag`]).
fn access_request(
    config: &DeviceConfig,
    uuid: &DeviceUuid,
) -> (AccessRequest, Option<(DeviceHandshake, String)>) {
    let mut request = AccessRequest {
        uuid: uuid.as_str().to_owned(),
        ssid: config.ssid.clone(),
        pass_tmp: String::new(),
        spake2: None,
    };
    if config.platform_key.is_none() {
        request.pass_tmp = config.pass_tmp.clone();
        return (request, None);
    }
    let (state, msg) = DeviceHandshake::start(uuid.as_str(), &config.ssid, &config.pass_tmp);
    let tag = handshake_tag(&msg);
    request.spake2 = Some(msg);
    (request, Some((state, tag)))
}

/// Secure mode: once a challenge has answered the current handshake
/// (`handshake` is None), the next request starts a new one.
fn renew_if_spent(
    config: &DeviceConfig,
    uuid: &DeviceUuid,
    request: &mut AccessRequest,
    handshake: &mut Option<(DeviceHandshake, String)>,
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

/// A well-formed challenge for this device's SSID.
fn read_challenge(config: &DeviceConfig, msg: &Message) -> Result<AccessChallenge, DeviceError> {
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
async fn send_proof(
    bus: &bus::Bus,
    config: &DeviceConfig,
    uuid: &DeviceUuid,
    keys: &SessionKeys,
    session: &str,
) -> Result<(), DeviceError> {
    let proof = AccessProof {
        uuid: uuid.as_str().to_owned(),
        session: session.to_owned(),
        proof: keys.device_proof(),
    };
    bus.publish_json(topics::access_proof(&config.ssid), &proof)
        .await?;
    Ok(())
}

/// Secure mode: finishes the handshake with the AP's challenge and sends
/// the proof. Returns the session keys and the session id.
async fn answer_challenge(
    bus: &bus::Bus,
    config: &DeviceConfig,
    uuid: &DeviceUuid,
    state: DeviceHandshake,
    challenge: &AccessChallenge,
) -> Result<(SessionKeys, String), DeviceError> {
    let keys = state
        .finish(&challenge.spake2, &challenge.session)
        .map_err(|e| invalid_challenge(e.to_string()))?;
    send_proof(bus, config, uuid, &keys, &challenge.session).await?;
    Ok((keys, challenge.session.clone()))
}

/// The password of a grant: in secure mode, only if it opens with this
/// handshake's key; in walkthrough mode, as sent.
fn open_grant(
    config: &DeviceConfig,
    uuid: &DeviceUuid,
    keys: Option<&(SessionKeys, String)>,
    mut granted: AccessGranted,
) -> Result<AccessGranted, String> {
    if config.platform_key.is_none() {
        if granted.password.is_empty() {
            return Err("no password in a walkthrough-mode grant".into());
        }
        return Ok(granted);
    }
    let (keys, session) = keys.ok_or("no handshake completed")?;
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

/// Where [`live`] reports each step.
#[derive(Debug, Clone)]
pub struct LifeEvents {
    pub device: mpsc::UnboundedSender<DeviceEvent>,
    pub home: mpsc::UnboundedSender<gateway::HomeEvent>,
}

/// A device's whole life: Wi-Fi onboarding, then its gateway, until
/// `shutdown`. One platform session carries the access request and the
/// first gateway query; it closes once the device is on its gateway.
/// `device-sim` runs this for one device and `device-sim fleet` for each.
pub async fn live(
    device: &DeviceConfig,
    home: &gateway::HomeConfig,
    events: &LifeEvents,
    local_confirm: Option<mpsc::Receiver<bool>>,
    shutdown: &CancellationToken,
) -> Result<(), DeviceError> {
    device.validate()?;
    let mut link = PlatformLink::open(&device.link(), shutdown).await?;
    onboard_on(&mut link, device, &events.device, local_confirm, shutdown).await?;
    gateway::stay_homed_with(home, Some(link), &events.home, shutdown).await
}

fn read_response(msg: &Message, uuid: &DeviceUuid) -> Option<AccessResponse> {
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

async fn recv_local(rx: &mut Option<mpsc::Receiver<bool>>) -> Option<bool> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

//! Wi-Fi onboarding, steps 2 to 7 of the flow: ask until an AP answers
//! (again from the shortest delay when the platform comes back), then let
//! the device's own user confirm, then join.

use crate::access::{
    access_request, answer_challenge, open_grant, read_challenge, read_response,
    refusal_is_binding, renew_if_spent, send_proof, ticket_ok, Answered,
};
use crate::{DeviceConfig, DeviceError, PlatformLink};
use bus::Backoff;
use protocol::onboarding::{AccessResponse, Confirm};
use protocol::{decode, topics, AccessErrorCode};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

/// The longest retry-after a device keeps: a larger one (a wrong or hostile
/// answer) is cut to this, so a device is never parked for long.
const MAX_RETRY_AFTER_MS: u64 = 30_000;

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
    mut local_confirm: Option<mpsc::Receiver<bool>>,
    shutdown: &CancellationToken,
) -> Result<Joined, DeviceError> {
    config.validate()?;
    let mut link = PlatformLink::open_to_onboard(config, shutdown).await?;
    onboard_on(&mut link, config, events, &mut local_confirm, shutdown).await
}

/// Runs the onboarding flow over an open [`PlatformLink`], which stays
/// open for the gateway query.
pub async fn onboard_on(
    link: &mut PlatformLink,
    config: &DeviceConfig,
    events: &mpsc::UnboundedSender<DeviceEvent>,
    local_confirm: &mut Option<mpsc::Receiver<bool>>,
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
    let mut answered: Option<Answered> = None;
    let (mut request, mut handshake) = access_request(config, &uuid);
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + config.answer_timeout;
    let mut backoff = Backoff::new(config.retry_base, config.retry_cap);
    let mut attempt = 0;
    // The last answer that was not final, to give up with at the deadline.
    let mut unavailable: Option<(AccessErrorCode, String)> = None;
    let mut link_state = bus.watch_state();
    link_state.mark_unchanged();
    let granted = 'wait: loop {
        attempt += 1;
        bus.publish_json(topics::access_request(&config.ssid), &request)
            .await?;
        let _ = events.send(DeviceEvent::RequestSent { attempt });
        let mut resend_at = (tokio::time::Instant::now() + backoff.next_delay()).min(deadline);
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
                            Some((code, message)) => DeviceError::Refused { code, message },
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
                let current = match &handshake {
                    Some(started) if started.tag == challenge.request => Some(started.tag.as_str()),
                    _ => None,
                };
                if let Some(tag) = current {
                    // The handshake is spent only on a challenge the
                    // platform vouches for; any other is ignored, and the
                    // device waits and asks again as for a lost one.
                    if let Err(reason) = ticket_ok(config, &uuid, &challenge, tag) {
                        warn!(target: "audit", %reason, "challenge without a valid platform ticket ignored");
                        continue;
                    }
                    if let Some(started) = handshake.take() {
                        match answer_challenge(bus, config, &uuid, started, &challenge).await {
                            Ok(a) => answered = Some(a),
                            Err(e) => warn!(error = %e, "challenge refused"),
                        }
                    }
                    continue;
                }
                match &answered {
                    // The AP sent the challenge this device answered
                    // again: the proof may have been lost. Same proof.
                    Some(a) if a.session == challenge.session => {
                        debug!(session = %a.session, "challenge repeated; proof re-sent");
                        send_proof(bus, config, a).await?;
                    }
                    _ => {
                        debug!(session = %challenge.session, "challenge to another handshake ignored")
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
                    match open_grant(config, &uuid, answered.as_ref(), g) {
                        Ok(g) => break 'wait g,
                        Err(e) => {
                            warn!(target: "audit", error = %e, "access response that is not the AP's ignored")
                        }
                    }
                }
                Some(AccessResponse::Granted(g)) => {
                    warn!(ssid = %g.ssid, "access response for another SSID ignored");
                }
                Some(AccessResponse::Denied(d)) if !d.error.code.is_final() => {
                    // Not final: ask again at the next resend. Until then
                    // a re-sent request repeats the same handshake, which
                    // the AP treats as a repeat (no new session, no new
                    // verification). But once the AP has given up on a
                    // session whose challenge this device answered (the
                    // proof or the response lost across a restart, say:
                    // `unavailable`), that handshake is spent: ask with a
                    // new one. `not_authorized` is another AP of the SSID
                    // that got nothing for this request (the one that did
                    // may still answer), or a request the verifier no
                    // longer remembers, which the resend makes again.
                    debug!(code = %d.error.code, message = %d.error.message, "the AP could not serve this request; retrying");
                    if d.error.code == AccessErrorCode::Unavailable {
                        renew_if_spent(config, &uuid, &mut request, &mut handshake);
                    }
                    // A platform pacing its load gives a slot: ask again
                    // then, and from the shortest backoff after it, as the
                    // wait was the platform's, not a sign of trouble.
                    if let Some(ms) = d.error.retry_after_ms {
                        let slot = Duration::from_millis(ms.min(MAX_RETRY_AFTER_MS));
                        resend_at = (tokio::time::Instant::now() + slot).min(deadline);
                        backoff.reset();
                    }
                    unavailable = Some((d.error.code, d.error.message));
                }
                Some(AccessResponse::Denied(d))
                    if refusal_is_binding(
                        config,
                        &uuid,
                        handshake.as_ref(),
                        answered.as_ref(),
                        &d,
                    ) =>
                {
                    return Err(DeviceError::Refused {
                        code: d.error.code,
                        message: d.error.message,
                    })
                }
                Some(AccessResponse::Denied(d)) => {
                    // Final on its face, but neither the platform's nor
                    // bound to this device's session: anyone may publish
                    // on a device's response topic. At most a reason to
                    // ask again; kept to give up with at the deadline.
                    warn!(target: "audit", code = %d.error.code, "a refusal neither signed by the platform nor bound to this session ignored; asking again");
                    unavailable = Some((
                        d.error.code,
                        format!("{} (not signed by the platform; ignored)", d.error.message),
                    ));
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
                    Some(accept) = recv_local(local_confirm) => return Ok(accept),
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

async fn recv_local(rx: &mut Option<mpsc::Receiver<bool>>) -> Option<bool> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

//! After joining Wi-Fi: find the gateway, stay on it, follow it when it moves.
//!
//! The device knows only the registry's address (the platform broker). It
//! asks for its gateway, connects there with its device id as client id,
//! and waits. A redirect notice (with a newer epoch; an MQTT 5 device gets
//! it in the gateway's redirecting DISCONNECT, a 3.1.1 device on its
//! redirect topic), a refusal at connect or a lost connection all lead
//! back to the registry, after a capped, jittered backoff, so that
//! thousands of devices losing one gateway at once reach the registry
//! spread out in time; a notice carrying a signed assignment the device
//! believes sends it straight to its new gateway.

use crate::link::{LinkConfig, PlatformLink};
use crate::login::{self, DeviceLogin, LinkLogin};
use crate::DeviceError;
use bus::{Backoff, Bus, BusError, BusOptions, LinkState};
use protocol::crypto::{DeviceKey, PlatformPublicKey};
use protocol::gateway::{
    AssignmentError, GatewayAnswer, GatewayAssigned, GatewayErrorCode, GatewayQuery, Presence,
    Redirect, RedirectReason, REDIRECT_PROPERTY,
};
use protocol::{decode, topics};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

#[derive(Debug, Clone)]
pub struct HomeConfig {
    /// The registry's address: the platform broker, "host:port".
    pub registry: String,
    /// MQTT over TLS, to the registry and the gateways, with this
    /// configuration (the device's own, so that it resumes its sessions):
    /// the platform broker is verified by the host connected to, a gateway
    /// by the id its assignment names, never by its address. None:
    /// plaintext.
    pub tls: Option<tls::DeviceTls>,
    /// The MQTT version the device speaks, to the registry and gateways.
    pub mqtt: bus::MqttVersion,
    pub device_id: String,
    /// How long to wait for the registry's answer before asking again.
    pub query_timeout: Duration,
    /// How long a gateway, or the platform broker, gets to accept a
    /// connection: TCP, TLS handshake and CONNACK.
    pub connect_timeout: Duration,
    /// Backoff between attempts after a refusal or a loss.
    pub retry_base: Duration,
    pub retry_cap: Duration,
    pub username: String,
    pub password: String,
    /// The gateway the device was on before it went offline. It is tried
    /// first, without asking the registry; if the device moved meanwhile,
    /// that gateway refuses it and it asks.
    pub last_known: Option<KnownGateway>,
    /// Secure mode: the platform's public key. Only registry answers it
    /// signed are believed, and the device logs in to its gateway with the
    /// signed answer and a token of its own key ([`crate::login`]). None:
    /// walkthrough mode.
    pub platform_key: Option<PlatformPublicKey>,
    /// Secure mode: how the device logs in to the platform broker; each
    /// new session asks it for a password ([`crate::login`]). None: it
    /// logs in with `username` and `password`.
    pub login: Option<DeviceLogin>,
}

/// How many times in a row a device tries a gateway that does not answer
/// in `connect_timeout` before it asks the registry again.
const SAME_GATEWAY_TRIES: u32 = 3;

/// The shortest time between two re-queries caused by redirect notices,
/// so forged notices cost the registry at most one query per second.
pub const MIN_REDIRECT_REQUERY: Duration = Duration::from_secs(1);

/// A gateway the device remembers.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KnownGateway {
    pub gateway_id: String,
    pub address: String,
    pub epoch: u64,
    /// Secure mode: the signed answer (JSON), from which the device's
    /// login to the gateway is made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

impl HomeConfig {
    pub fn new(registry: impl Into<String>, device_id: impl Into<String>) -> Self {
        HomeConfig {
            registry: registry.into(),
            tls: None,
            mqtt: bus::MqttVersion::V311,
            device_id: device_id.into(),
            query_timeout: Duration::from_secs(3),
            connect_timeout: Duration::from_secs(10),
            retry_base: Duration::from_millis(200),
            retry_cap: Duration::from_secs(10),
            username: "device".into(),
            password: String::new(),
            last_known: None,
            platform_key: None,
            login: None,
        }
    }

    /// Secure mode, logging in to the platform as the device itself, with
    /// `device_key` (registered when it was onboarded).
    pub fn secure(self, key: PlatformPublicKey, device_key: DeviceKey) -> Self {
        let login = DeviceLogin::new(&self.device_id, device_key);
        self.secure_with(key, login)
    }

    /// Secure mode, logging in to the platform as `login` says.
    pub fn secure_with(mut self, key: PlatformPublicKey, login: DeviceLogin) -> Self {
        self.username = self.device_id.clone();
        self.platform_key = Some(key);
        self.login = Some(login);
        self
    }
}

impl HomeConfig {
    /// The device's session on the platform broker, for queries.
    pub fn link(&self) -> LinkConfig {
        LinkConfig {
            broker: self.registry.clone(),
            tls: self.tls.as_ref().map(tls::DeviceTls::platform),
            mqtt: self.mqtt,
            device_id: self.device_id.clone(),
            login: match &self.login {
                Some(login) => LinkLogin::Key(login.clone()),
                None => LinkLogin::Plain {
                    username: self.username.clone(),
                    password: self.password.clone(),
                },
            },
            // Connecting to the platform is connecting to a broker, as
            // busy in a failover as a gateway in a drain.
            timeout: self.connect_timeout,
        }
    }
}

/// What the device does, for whoever shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HomeEvent {
    /// The registry's answer; `latency` runs from sending the query.
    Assigned {
        gateway_id: String,
        address: String,
        epoch: u64,
        latency: Duration,
    },
    /// Connected to the gateway; `from` is the previous one after a move.
    /// `elapsed` runs from losing the previous gateway (or from the start),
    /// `connect_latency` from opening the connection to being subscribed.
    Connected {
        gateway_id: String,
        address: String,
        epoch: u64,
        from: Option<String>,
        elapsed: Duration,
        connect_latency: Duration,
    },
    Redirected {
        gateway_id: String,
        reason: RedirectReason,
        epoch: u64,
        /// The gateway the notice's signed assignment sends the device to;
        /// None: the device asks the registry.
        to: Option<String>,
        /// MQTT 5: the gateway's DISCONNECT that carried the notice, e.g.
        /// "DISCONNECT 0x9D ServerMoved, server reference 127.0.0.1:8884";
        /// None: the notice came on the device's redirect topic.
        by: Option<String>,
    },
    /// The gateway refused the connection (the device asks the registry
    /// again) or did not answer in time (the device tries it again, up to
    /// three times in a row, before it asks).
    Refused {
        gateway_id: String,
        reason: String,
    },
    Lost {
        gateway_id: String,
    },
    QueryRefused {
        code: GatewayErrorCode,
        message: String,
    },
    /// A query went unanswered for `query_timeout`; `unanswered` counts
    /// them since the last answer. The device asks again after a backoff,
    /// on the same connection: the bus reconnects and resubscribes by
    /// itself when the connection is lost, and the broker disconnects a
    /// subscriber that lost messages, so a new connection would only add
    /// load to a platform that is slow already (a drain of 10,000 devices
    /// that reconnected after two unanswered queries took twice as long).
    QueryTimedOut {
        unanswered: u32,
    },
}

/// Runs until `shutdown`: keeps the device connected to its gateway.
pub async fn stay_homed(
    config: &HomeConfig,
    events: &mpsc::UnboundedSender<HomeEvent>,
    shutdown: &CancellationToken,
) -> Result<(), DeviceError> {
    stay_homed_with(config, None, events, shutdown).await
}

/// [`stay_homed`], starting with the device's platform session when it is
/// still open from onboarding. The session is closed once the device is on
/// its gateway and reopened whenever it must ask the registry again.
pub async fn stay_homed_with(
    config: &HomeConfig,
    mut registry: Option<PlatformLink>,
    events: &mpsc::UnboundedSender<HomeEvent>,
    shutdown: &CancellationToken,
) -> Result<(), DeviceError> {
    let mut backoff = Backoff::new(config.retry_base, config.retry_cap);
    let mut current: Option<(String, u64)> = None;
    let mut move_started = Instant::now();
    let mut remembered = config.last_known.clone();
    let mut last_redirect: Option<Instant> = None;
    // Attempts in a row that the gateway did not answer.
    let mut unanswered = 0u32;
    if registry.is_none() && remembered.is_none() {
        // A registry that cannot be reached at all is an error to report,
        // not a state to wait in; later losses are retried.
        registry = Some(PlatformLink::open(&config.link(), shutdown).await?);
    }
    loop {
        let known = remembered
            .take()
            .filter(|k| config.platform_key.is_none() || k.token.is_some());
        let target = match known {
            Some(k) => {
                // Remembered from before going offline, it is where the
                // device is; carried by a redirect, the device is still
                // coming from the gateway it was on.
                current.get_or_insert_with(|| (k.gateway_id.clone(), k.epoch));
                k
            }
            None => {
                let Some((k, latency)) =
                    query(config, &mut registry, &mut backoff, events, shutdown).await?
                else {
                    return Ok(());
                };
                let _ = events.send(HomeEvent::Assigned {
                    gateway_id: k.gateway_id.clone(),
                    address: k.address.clone(),
                    epoch: k.epoch,
                    latency,
                });
                k
            }
        };
        let connecting = Instant::now();
        match connect(config, &target, target.token.as_deref()).await {
            Err(failed) => {
                let _ = events.send(HomeEvent::Refused {
                    gateway_id: target.gateway_id.clone(),
                    reason: failed.reason,
                });
                if !pause(&mut backoff, shutdown).await {
                    return Ok(());
                }
                // A gateway that said no (moved away, bad login) sends the
                // device back to the registry. One that did not answer in
                // time is most likely busy taking a crowd of devices: the
                // assignment still stands, and asking the registry would
                // only add a connection and a query to the crowd. After
                // a few silences, though, the registry may know better
                // (the gateway died, the device moved).
                unanswered += 1;
                if failed.refused || unanswered >= SAME_GATEWAY_TRIES {
                    unanswered = 0;
                } else {
                    remembered = Some(target);
                }
                continue;
            }
            Ok((gateway, inbox, token)) => {
                unanswered = 0;
                let KnownGateway {
                    gateway_id,
                    address,
                    epoch,
                    ..
                } = target;
                let connect_latency = connecting.elapsed();
                // On the gateway now: the platform session is not needed
                // until the next query.
                registry = None;
                backoff.reset();
                let from = current
                    .as_ref()
                    .map(|(g, _)| g.clone())
                    .filter(|g| *g != gateway_id);
                let _ = events.send(HomeEvent::Connected {
                    gateway_id: gateway_id.clone(),
                    address: address.clone(),
                    epoch,
                    from,
                    elapsed: move_started.elapsed(),
                    connect_latency,
                });
                current = Some((gateway_id.clone(), epoch));
                let outcome = stay(config, &gateway, inbox, epoch, shutdown).await;
                let _ = gateway
                    .publish_json(
                        topics::device_presence(&config.device_id),
                        &Presence { online: false },
                    )
                    .await;
                token.cancel();
                move_started = Instant::now();
                match outcome {
                    Stay::Shutdown => return Ok(()),
                    Stay::Redirected(notice, by) => {
                        // A notice carrying the new assignment, signed,
                        // cannot be forged: go there now (after a jitter
                        // that spreads a drain's connects), no query.
                        let carried = notice
                            .carried()
                            .filter(|a| keyed(config, a))
                            .map(|a| believe(config, a));
                        let _ = events.send(HomeEvent::Redirected {
                            gateway_id,
                            reason: notice.reason,
                            epoch: notice.epoch,
                            to: match &carried {
                                Some(Ok(next)) => Some(next.gateway_id.clone()),
                                _ => None,
                            },
                            by,
                        });
                        let next = match carried {
                            Some(Ok(next)) => Some(next),
                            Some(Err(e)) => {
                                warn!(target: "audit", device_id = %config.device_id, error = %e, "assignment in a redirect not believed; asking the registry");
                                None
                            }
                            None => None,
                        };
                        // A short random pause spreads a drain's connects or
                        // re-queries; a floor between re-queries bounds what
                        // forged notices cost.
                        let jitter = Duration::from_millis(fastrand::u64(0..=20));
                        let floor = match (&next, last_redirect) {
                            (None, Some(t)) => MIN_REDIRECT_REQUERY.saturating_sub(t.elapsed()),
                            _ => Duration::ZERO,
                        };
                        tokio::select! {
                            _ = shutdown.cancelled() => return Ok(()),
                            _ = tokio::time::sleep(floor.max(jitter)) => {}
                        }
                        if next.is_none() {
                            // Measured from the re-query itself, so two of
                            // them are never closer than the floor.
                            last_redirect = Some(Instant::now());
                        }
                        remembered = next;
                    }
                    Stay::Lost => {
                        let _ = events.send(HomeEvent::Lost { gateway_id });
                        if !pause(&mut backoff, shutdown).await {
                            return Ok(());
                        }
                    }
                }
            }
        }
    }
}

/// Whether assignment `a` names the device's own key, as its gateway
/// login needs (always, in walkthrough mode). One that does not (made
/// from a registry record that has no key yet) is not followed: the
/// device asks the registry, and its query brings the key.
fn keyed(config: &HomeConfig, a: &GatewayAssigned) -> bool {
    let ok = match (&config.platform_key, &config.login) {
        (Some(_), Some(login)) => login.keyed(a),
        _ => true,
    };
    if !ok {
        debug!(device_id = %config.device_id, "the redirect's assignment names no key of this device; asking the registry");
    }
    ok
}

/// Waits out the next backoff delay; false if shut down meanwhile.
async fn pause(backoff: &mut Backoff, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        _ = shutdown.cancelled() => false,
        _ = tokio::time::sleep(backoff.next_delay()) => true,
    }
}

/// Asks the registry until it assigns a gateway, over the platform session
/// (opened if needed); None on shutdown. Also returns how long the answer
/// took.
async fn query(
    config: &HomeConfig,
    registry: &mut Option<PlatformLink>,
    backoff: &mut Backoff,
    events: &mpsc::UnboundedSender<HomeEvent>,
    shutdown: &CancellationToken,
) -> Result<Option<(KnownGateway, Duration)>, DeviceError> {
    let question = GatewayQuery {
        device_id: config.device_id.clone(),
        device_key: config.login.as_ref().map(DeviceLogin::public_hex),
    };
    let answer_topic = topics::device_gateway(&config.device_id);
    let mut unanswered = 0u32;
    loop {
        let link = match registry {
            Some(link) => link,
            None => match PlatformLink::open(&config.link(), shutdown).await {
                Ok(link) => registry.insert(link),
                Err(e) if shutdown.is_cancelled() => {
                    debug!(error = %e, "stopped while connecting to the registry");
                    return Ok(None);
                }
                Err(e) => {
                    warn!(device_id = %config.device_id, error = %e, "registry unreachable; retrying");
                    if !pause(backoff, shutdown).await {
                        return Ok(None);
                    }
                    continue;
                }
            },
        };
        let asked = Instant::now();
        if let Err(e) = link
            .bus
            .publish_json(topics::REGISTRY_QUERY, &question)
            .await
        {
            // The link closed under us: open a new one and ask again.
            warn!(device_id = %config.device_id, error = %e, "could not send the registry query; reconnecting");
            *registry = None;
            if !pause(backoff, shutdown).await {
                return Ok(None);
            }
            continue;
        }
        let deadline = tokio::time::Instant::now() + config.query_timeout;
        let mut timed_out = false;
        loop {
            let msg = tokio::select! {
                _ = shutdown.cancelled() => return Ok(None),
                _ = tokio::time::sleep_until(deadline) => {
                    timed_out = true;
                    break;
                }
                msg = link.inbox.recv() => msg.ok_or(DeviceError::Stopped)?,
            };
            if msg.topic != answer_topic {
                debug!(topic = %msg.topic, "ignored while waiting for the registry");
                continue;
            }
            match decode::<GatewayAnswer>(&msg.payload) {
                Ok(GatewayAnswer::Assigned(a)) if a.device_id == config.device_id => {
                    match believe(config, &a) {
                        Ok(known) => return Ok(Some((known, asked.elapsed()))),
                        Err(e) => {
                            warn!(target: "audit", device_id = %config.device_id, error = %e, "registry answer not believed");
                            continue;
                        }
                    }
                }
                Ok(GatewayAnswer::Refused(r)) if r.device_id == config.device_id => {
                    let _ = events.send(HomeEvent::QueryRefused {
                        code: r.error.code,
                        message: r.error.message,
                    });
                    if r.error.code == GatewayErrorCode::BadRequest {
                        return Err(DeviceError::Invalid {
                            field: "device id",
                            reason: "the registry refused it".into(),
                        });
                    }
                    break;
                }
                Ok(_) => debug!("answer for another device ignored"),
                Err(e) => warn!(error = %e, "malformed registry answer ignored"),
            }
        }
        if timed_out {
            unanswered += 1;
            let _ = events.send(HomeEvent::QueryTimedOut { unanswered });
        } else {
            unanswered = 0;
        }
        if !pause(backoff, shutdown).await {
            return Ok(None);
        }
    }
}

/// `a` as the gateway to go to, if the device believes it: in secure mode
/// it must carry the platform's valid signature for this device, and
/// is what the device's login to that gateway is made from.
fn believe(config: &HomeConfig, a: &GatewayAssigned) -> Result<KnownGateway, AssignmentError> {
    let token = match &config.platform_key {
        None => None,
        Some(key) => {
            a.verify(key, &config.device_id, protocol::now_ms())?;
            Some(String::from_utf8_lossy(&protocol::encode(a)).into_owned())
        }
    };
    Ok(KnownGateway {
        gateway_id: a.gateway_id.clone(),
        address: a.address.clone(),
        epoch: a.epoch,
        token,
    })
}

type Connection = (Bus, mpsc::Receiver<bus::Message>, CancellationToken);

/// Why a connection to a gateway failed.
struct ConnectFailed {
    /// The gateway answered no (a CONNACK refusal), as opposed to not
    /// answering in time or not being reachable.
    refused: bool,
    reason: String,
}

impl ConnectFailed {
    fn from_bus(e: BusError) -> Self {
        ConnectFailed {
            refused: matches!(e, BusError::Refused { .. } | BusError::Untrusted { .. }),
            reason: e.to_string(),
        }
    }
}

/// One attempt to connect to a gateway; in secure mode the login is the
/// device's id and a gateway login made from its signed assignment
/// ([`crate::login::at_gateway`]). Over TLS, the gateway must prove it is
/// the gateway the assignment names (its certificate names that id), not
/// merely that it holds a certificate for its address.
async fn connect(
    config: &HomeConfig,
    gateway: &KnownGateway,
    token: Option<&str>,
) -> Result<Connection, ConnectFailed> {
    // Secure mode: a gateway is trusted only on an assignment to it that
    // still holds. A remembered one that expired (the gateway may have been
    // removed since) sends the device back to the registry, whatever
    // certificate the gateway still has.
    if let (Some(key), Some(token)) = (&config.platform_key, token) {
        let still = decode::<GatewayAssigned>(token.as_bytes())
            .map_err(|e| e.to_string())
            .and_then(|a| {
                a.verify_for_gateway(
                    key,
                    &config.device_id,
                    &gateway.gateway_id,
                    protocol::now_ms(),
                )
                .map_err(|e| e.to_string())
            });
        if let Err(why) = still {
            return Err(ConnectFailed {
                refused: true,
                reason: format!("not connecting to gateway {}: {why}", gateway.gateway_id),
            });
        }
    }
    let tls = match &config.tls {
        Some(tls) => Some(
            tls.gateway(&gateway.gateway_id)
                .map_err(|e| ConnectFailed {
                    refused: true,
                    reason: format!("gateway {}: {e}", gateway.gateway_id),
                })?,
        ),
        None => None,
    };
    let opts =
        BusOptions::new(&gateway.address, &config.device_id).map_err(ConnectFailed::from_bus)?;
    let opts = match token {
        Some(t) => login::at_gateway(opts, &config.device_id, t, config.login.as_ref()),
        None => opts.with_credentials(&config.username, &config.password),
    };
    let mut opts = opts.with_tls(tls);
    opts.mqtt = config.mqtt;
    opts.connect_timeout = config.connect_timeout;
    opts.last_will = Some((
        topics::device_presence(&config.device_id),
        protocol::encode(&Presence { online: false }),
    ));
    // The device gives up on this gateway after one failure; the bus must
    // not keep retrying meanwhile.
    opts.backoff_base = config.connect_timeout;
    opts.backoff_cap = config.connect_timeout;
    let token = CancellationToken::new();
    let (bus, inbox) = Bus::connect(
        opts,
        vec![topics::device_redirect(&config.device_id)],
        token.clone(),
    );
    // A little longer than the bus's own attempt, so that its reason,
    // not this timer, is what the device reports.
    if let Err(e) = bus
        .ready_once(config.connect_timeout + Duration::from_secs(1))
        .await
    {
        token.cancel();
        return Err(ConnectFailed::from_bus(e));
    }
    if let Err(e) = bus
        .publish_json(
            topics::device_presence(&config.device_id),
            &Presence { online: true },
        )
        .await
    {
        token.cancel();
        return Err(ConnectFailed::from_bus(e));
    }
    Ok((bus, inbox, token))
}

enum Stay {
    Shutdown,
    /// With the MQTT 5 DISCONNECT that carried the notice, described.
    /// Boxed: a notice with its signed assignment is large.
    Redirected(Box<Redirect>, Option<String>),
    Lost,
}

/// Stays connected until redirected (with a newer epoch), lost, or shut down.
async fn stay(
    config: &HomeConfig,
    gateway: &Bus,
    mut inbox: mpsc::Receiver<bus::Message>,
    epoch: u64,
    shutdown: &CancellationToken,
) -> Stay {
    let mut state = gateway.watch_state();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return Stay::Shutdown,
            changed = state.changed() => {
                let now = state.borrow_and_update().clone();
                if changed.is_err() {
                    return Stay::Lost;
                }
                match now {
                    LinkState::Ready => {}
                    // MQTT 5: the gateway closed the connection with a
                    // redirecting DISCONNECT, which carries the notice.
                    LinkState::Moved(m) => {
                        let notice = m.user_property(REDIRECT_PROPERTY).map(|n| decode::<Redirect>(n.as_bytes()));
                        debug!(reason = %m.reason, server_reference = ?m.server_reference, "gateway sent DISCONNECT");
                        let by = format!(
                            "DISCONNECT {:#04X} {}{}",
                            m.reason_code,
                            m.reason,
                            m.server_reference.as_ref().map(|s| format!(", server reference {s}")).unwrap_or_default()
                        );
                        return match notice {
                            Some(Ok(r)) if heeded(config, &r, epoch) => Stay::Redirected(Box::new(r), Some(by)),
                            _ => Stay::Lost,
                        };
                    }
                    _ => return Stay::Lost,
                }
            }
            msg = inbox.recv() => {
                let Some(msg) = msg else { return Stay::Lost };
                match decode::<Redirect>(&msg.payload) {
                    Ok(r) if heeded(config, &r, epoch) => return Stay::Redirected(Box::new(r), None),
                    Ok(r) => debug!(epoch = r.epoch, current = epoch, "stale redirect ignored"),
                    Err(e) => warn!(error = %e, "malformed redirect ignored"),
                }
            }
        }
    }
}

/// Whether the device obeys redirect `r` while on assignment `epoch`: it
/// must be for this device and newer. A revocation from the gateway's
/// agent carries no epoch; like any redirect it costs at most one query a
/// second (the re-query is rate-limited).
fn heeded(config: &HomeConfig, r: &Redirect, epoch: u64) -> bool {
    r.device_id == config.device_id && (r.epoch > epoch || r.reason == RedirectReason::Revoked)
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::crypto::PlatformKey;

    /// A signed assignment of `device` to gw-9 (at a port nothing listens
    /// on), expiring at `expires_ms`, as the device remembers it.
    fn remembered(key: &PlatformKey, device: &str, expires_ms: u64) -> KnownGateway {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        drop(listener);
        let mut a = GatewayAssigned {
            device_id: device.into(),
            gateway_id: "gw-9".into(),
            address: address.clone(),
            epoch: 1,
            device_key: None,
            expires_ms: None,
            sig: None,
        };
        a.sign(key, expires_ms);
        KnownGateway {
            gateway_id: "gw-9".into(),
            address,
            epoch: 1,
            token: Some(String::from_utf8(protocol::encode(&a)).unwrap()),
        }
    }

    #[tokio::test]
    async fn a_remembered_assignment_that_expired_is_not_used_to_connect() {
        let key = PlatformKey::generate();
        let mut config = HomeConfig::new("127.0.0.1:1", "dev-1");
        config.platform_key = Some(key.public());
        config.connect_timeout = Duration::from_secs(2);
        let expired = remembered(&key, "dev-1", protocol::now_ms() - 1);
        let Err(failed) = connect(&config, &expired, expired.token.as_deref()).await else {
            panic!("connected on an expired assignment");
        };
        assert!(
            failed.refused && failed.reason.contains("expired"),
            "{}",
            failed.reason
        );
        // One that holds is tried (and here finds nobody listening).
        let valid = remembered(&key, "dev-1", protocol::now_ms() + 60_000);
        let Err(failed) = connect(&config, &valid, valid.token.as_deref()).await else {
            panic!("something listens at {}", valid.address);
        };
        assert!(!failed.reason.contains("expired"), "{}", failed.reason);
        // Another gateway's assignment is not this one's.
        let mut other = valid.clone();
        other.gateway_id = "gw-1".into();
        let Err(failed) = connect(&config, &other, other.token.as_deref()).await else {
            panic!("connected to gw-1 on gw-9's assignment");
        };
        assert!(
            failed.refused && failed.reason.contains("gw-9"),
            "{}",
            failed.reason
        );
    }
}

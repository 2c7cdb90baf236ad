//! After joining Wi-Fi: find the gateway, stay on it, follow it when it moves.
//!
//! The device knows only the registry's address (the platform broker). It
//! asks for its gateway, connects there with its device id as client id,
//! and waits. A redirect notice (with a newer epoch), a refusal at connect
//! or a lost connection all lead back to the registry, after a capped,
//! jittered backoff, so that thousands of devices losing one gateway at
//! once reach the registry spread out in time.

use crate::DeviceError;
use bus::{Backoff, Bus, BusOptions, LinkState, Message};
use protocol::gateway::{
    GatewayAnswer, GatewayErrorCode, GatewayQuery, Presence, Redirect, RedirectReason,
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
    pub device_id: String,
    /// How long to wait for the registry's answer before asking again.
    pub query_timeout: Duration,
    /// How long a gateway gets to accept the connection.
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
}

/// A gateway the device remembers.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KnownGateway {
    pub gateway_id: String,
    pub address: String,
    pub epoch: u64,
}

impl HomeConfig {
    pub fn new(registry: impl Into<String>, device_id: impl Into<String>) -> Self {
        HomeConfig {
            registry: registry.into(),
            device_id: device_id.into(),
            query_timeout: Duration::from_secs(3),
            connect_timeout: Duration::from_secs(3),
            retry_base: Duration::from_millis(200),
            retry_cap: Duration::from_secs(10),
            username: "device".into(),
            password: String::new(),
            last_known: None,
        }
    }
}

/// What the device does, for whoever shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HomeEvent {
    Assigned {
        gateway_id: String,
        address: String,
        epoch: u64,
    },
    /// Connected to the gateway; `from` is the previous one after a move.
    Connected {
        gateway_id: String,
        address: String,
        epoch: u64,
        from: Option<String>,
        elapsed: Duration,
    },
    Redirected {
        gateway_id: String,
        reason: RedirectReason,
        epoch: u64,
    },
    /// The gateway refused the connection or could not be reached.
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
}

/// Runs until `shutdown`: keeps the device connected to its gateway.
pub async fn stay_homed(
    config: &HomeConfig,
    events: &mpsc::UnboundedSender<HomeEvent>,
    shutdown: &CancellationToken,
) -> Result<(), DeviceError> {
    let link = shutdown.child_token();
    let _close = link.clone().drop_guard();
    let opts = BusOptions::new(&config.registry, &config.device_id)?
        .with_credentials(&config.username, &config.password);
    let answer_topic = topics::device_gateway(&config.device_id);
    let (registry, mut answers) = Bus::connect(opts, vec![answer_topic], link);
    registry.ready(Duration::from_secs(10)).await?;

    let mut backoff = Backoff::new(config.retry_base, config.retry_cap);
    let mut current: Option<(String, u64)> = None;
    let mut move_started = Instant::now();
    let mut remembered = config.last_known.clone();
    loop {
        let (gateway_id, address, epoch) = match remembered.take() {
            Some(k) => {
                current = Some((k.gateway_id.clone(), k.epoch));
                (k.gateway_id, k.address, k.epoch)
            }
            None => {
                let Some(found) = query(
                    config,
                    &registry,
                    &mut answers,
                    &mut backoff,
                    events,
                    shutdown,
                )
                .await?
                else {
                    return Ok(());
                };
                let _ = events.send(HomeEvent::Assigned {
                    gateway_id: found.0.clone(),
                    address: found.1.clone(),
                    epoch: found.2,
                });
                found
            }
        };
        match connect(config, &address).await {
            Err(reason) => {
                let _ = events.send(HomeEvent::Refused { gateway_id, reason });
                if !pause(&mut backoff, shutdown).await {
                    return Ok(());
                }
                continue;
            }
            Ok((gateway, inbox, token)) => {
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
                    Stay::Redirected(notice) => {
                        let _ = events.send(HomeEvent::Redirected {
                            gateway_id,
                            reason: notice.reason,
                            epoch: notice.epoch,
                        });
                        // A short random pause spreads a drain's re-queries.
                        tokio::time::sleep(Duration::from_millis(fastrand::u64(0..=20))).await;
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

/// Waits out the next backoff delay; false if shut down meanwhile.
async fn pause(backoff: &mut Backoff, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        _ = shutdown.cancelled() => false,
        _ = tokio::time::sleep(backoff.next_delay()) => true,
    }
}

/// Asks the registry until it assigns a gateway; None on shutdown.
async fn query(
    config: &HomeConfig,
    registry: &Bus,
    answers: &mut mpsc::Receiver<Message>,
    backoff: &mut Backoff,
    events: &mpsc::UnboundedSender<HomeEvent>,
    shutdown: &CancellationToken,
) -> Result<Option<(String, String, u64)>, DeviceError> {
    let question = GatewayQuery {
        device_id: config.device_id.clone(),
    };
    loop {
        registry
            .publish_json(topics::REGISTRY_QUERY, &question)
            .await?;
        let deadline = tokio::time::Instant::now() + config.query_timeout;
        loop {
            let msg = tokio::select! {
                _ = shutdown.cancelled() => return Ok(None),
                _ = tokio::time::sleep_until(deadline) => break,
                msg = answers.recv() => msg.ok_or(DeviceError::Stopped)?,
            };
            match decode::<GatewayAnswer>(&msg.payload) {
                Ok(GatewayAnswer::Assigned(a)) if a.device_id == config.device_id => {
                    return Ok(Some((a.gateway_id, a.address, a.epoch)));
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
        if !pause(backoff, shutdown).await {
            return Ok(None);
        }
    }
}

type Connection = (Bus, mpsc::Receiver<Message>, CancellationToken);

/// One attempt to connect to a gateway.
async fn connect(config: &HomeConfig, address: &str) -> Result<Connection, String> {
    let mut opts = BusOptions::new(address, &config.device_id)
        .map_err(|e| e.to_string())?
        .with_credentials(&config.username, &config.password);
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
    if let Err(e) = bus.ready_once(config.connect_timeout).await {
        token.cancel();
        return Err(e.to_string());
    }
    if let Err(e) = bus
        .publish_json(
            topics::device_presence(&config.device_id),
            &Presence { online: true },
        )
        .await
    {
        token.cancel();
        return Err(e.to_string());
    }
    Ok((bus, inbox, token))
}

enum Stay {
    Shutdown,
    Redirected(Redirect),
    Lost,
}

/// Stays connected until redirected (with a newer epoch), lost, or shut down.
async fn stay(
    config: &HomeConfig,
    gateway: &Bus,
    mut inbox: mpsc::Receiver<Message>,
    epoch: u64,
    shutdown: &CancellationToken,
) -> Stay {
    let mut state = gateway.watch_state();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return Stay::Shutdown,
            changed = state.changed() => {
                let now = state.borrow_and_update().clone();
                if changed.is_err() || now != LinkState::Ready {
                    return Stay::Lost;
                }
            }
            msg = inbox.recv() => {
                let Some(msg) = msg else { return Stay::Lost };
                match decode::<Redirect>(&msg.payload) {
                    Ok(r) if r.device_id == config.device_id && r.epoch > epoch => return Stay::Redirected(r),
                    Ok(r) => debug!(epoch = r.epoch, current = epoch, "stale redirect ignored"),
                    Err(e) => warn!(error = %e, "malformed redirect ignored"),
                }
            }
        }
    }
}

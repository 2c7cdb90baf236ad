//! A gateway: an embedded broker devices connect to, plus its agent.
//!
//! The agent connects to the platform broker, announces the gateway
//! (`alive: true`, with a last will `alive: false`), keeps the set of
//! devices the registry assigned here, and admits only those at CONNECT
//! (a device that moved while offline is refused and re-queries). It turns
//! the registry's notifications into redirect notices on its own broker,
//! and reports which devices are connected.

use crate::config::{BrokerSettings, GatewaySection};
use crate::embedded::{AclAction, Admission, BrokerError, EmbeddedBroker};
use bus::{Bus, BusError, BusOptions, LinkState, Message};
use protocol::crypto::PlatformPublicKey;
use protocol::gateway::GatewayAssigned;
use protocol::gateway::{
    AssignUpdate, GatewayStatus, Presence, PresenceReport, Redirect, RedirectBatch, RedirectReason,
    SyncRequest, ASSIGN_CHUNK, GATEWAY_AGENT_CLIENT_ID, MAX_ASSIGN_PAYLOAD,
};
use protocol::{decode, topics};
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("gateway {id}: {source}")]
    Broker { id: String, source: BrokerError },
    #[error("gateway {id}: {source}")]
    Bus { id: String, source: BusError },
}

/// The devices this gateway admits, as the registry last told it.
#[derive(Default)]
struct Assigned {
    id: String,
    /// Secure mode: a device must log in with its signed assignment to
    /// this gateway (username = client id = device id, password = the
    /// registry's answer as JSON), and may use only its own topics.
    key: Option<PlatformPublicKey>,
    /// False until the first snapshot: admit nobody before knowing.
    synced: AtomicBool,
    devices: RwLock<HashSet<String>>,
    /// Fired on every change, for connects waiting out their grace.
    changed: Arc<tokio::sync::Notify>,
}

/// How long a device the gateway does not know yet may wait at connect for
/// the registry's note about it, which can trail the registry's answer to
/// the device by a few milliseconds.
const ADMISSION_GRACE: Duration = Duration::from_millis(250);

impl Assigned {
    fn apply(&self, update: AssignUpdate) {
        let mut devices = self.devices.write().unwrap_or_else(|e| e.into_inner());
        if update.reset {
            devices.clear();
            self.synced.store(true, Ordering::Release);
        }
        for d in update.remove {
            devices.remove(&d);
        }
        devices.extend(update.add);
        drop(devices);
        self.changed.notify_waiters();
    }

    fn forget(&self, device_id: &str) {
        self.devices
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(device_id);
    }
}

impl Assigned {
    /// The signed-assignment check of secure mode.
    fn token_ok(&self, client_id: &str, username: &str, password: &str) -> bool {
        let Some(key) = &self.key else {
            return true;
        };
        if username != client_id {
            warn!(target: "audit", client_id, username, gateway_id = %self.id, "gateway connect refused: username is not the client id");
            return false;
        }
        let checked = decode::<GatewayAssigned>(password.as_bytes())
            .map_err(|e| e.to_string())
            .and_then(|a| {
                a.verify_for_gateway(key, client_id, &self.id, protocol::now_ms())
                    .map_err(|e| e.to_string())
            });
        match checked {
            Ok(()) => true,
            Err(reason) => {
                warn!(target: "audit", client_id, gateway_id = %self.id, %reason, "gateway connect refused: no valid signed assignment");
                false
            }
        }
    }
}

impl Admission for Assigned {
    fn admit(&self, client_id: &str, username: &str, password: &str) -> bool {
        let ok = client_id != GATEWAY_AGENT_CLIENT_ID
            && self.synced.load(Ordering::Acquire)
            && self
                .devices
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .contains(client_id);
        if !ok {
            debug!(client_id, "device not assigned here: refused at connect");
            return false;
        }
        self.token_ok(client_id, username, password)
    }

    /// Secure mode: a device publishes and subscribes only under
    /// `device/{its id}/`.
    fn allow(&self, client_id: &str, _username: &str, topic: &str, action: AclAction) -> bool {
        if self.key.is_none() {
            return true;
        }
        let own = topics::parse_device_topic(topic).is_some_and(|(id, _)| id == client_id)
            && !topic.contains(['+', '#']);
        if !own {
            warn!(target: "audit", client_id, topic, ?action, gateway_id = %self.id, "refused by the gateway ACL");
        }
        own
    }

    fn grace(&self) -> Option<(Duration, Arc<tokio::sync::Notify>)> {
        Some((ADMISSION_GRACE, self.changed.clone()))
    }
}

/// A running gateway. The broker lives until the process exits; the agent
/// stops on shutdown, announcing `alive: false` first.
pub struct Gateway {
    pub id: String,
    pub address: String,
    task: tokio::task::JoinHandle<()>,
}

impl Gateway {
    pub async fn join(self) {
        let _ = self.task.await;
    }
}

/// How a gateway logs in to the platform, and whether it checks devices'
/// signed assignments (secure mode) or not (walkthrough).
#[derive(Debug, Clone)]
pub struct GatewaySecurity {
    /// (username, password) on the platform broker.
    pub login: (String, String),
    /// Secure mode: the platform's public key.
    pub platform_key: Option<PlatformPublicKey>,
}

/// Starts the gateway broker and its agent; returns once the agent is
/// connected to both brokers.
pub async fn start(
    section: &GatewaySection,
    settings: &BrokerSettings,
    platform: &str,
    security: &GatewaySecurity,
    shutdown: CancellationToken,
) -> Result<Gateway, GatewayError> {
    let id = section.id.clone();
    let assigned = Arc::new(Assigned {
        id: id.clone(),
        key: security.platform_key,
        ..Assigned::default()
    });
    let gw_settings = BrokerSettings {
        listen: section.listen,
        ..settings.clone()
    };
    let broker = EmbeddedBroker::start(&format!("gateway-{id}"), &gw_settings, assigned.clone())
        .map_err(|source| GatewayError::Broker {
            id: id.clone(),
            source,
        })?;
    let address = section.advertised(broker.addr());
    let bus_err = |source| GatewayError::Bus {
        id: id.clone(),
        source,
    };

    let status = |alive: bool| GatewayStatus {
        gateway_id: id.clone(),
        alive,
        address: alive.then(|| address.clone()),
        weight: alive.then_some(section.weight),
    };
    let mut up_opts = BusOptions::new(platform, format!("gateway.{id}"))
        .map_err(bus_err)?
        .with_credentials(security.login.0.clone(), security.login.1.clone());
    up_opts.last_will = Some((
        topics::gateway_status(&id),
        protocol::encode(&status(false)),
    ));
    let (user, password) = broker.internal_login();
    let local_opts = BusOptions::new(&broker.addr().to_string(), GATEWAY_AGENT_CLIENT_ID)
        .map_err(bus_err)?
        .with_credentials(user, password);
    let ready = Some(Duration::from_secs(10));
    let local_link = CancellationToken::new();
    let (local, local_inbox) = Bus::connect_ready(
        local_opts,
        vec![topics::DEVICE_PRESENCE_ALL.into()],
        local_link.clone(),
        ready,
    )
    .await
    .map_err(bus_err)?;
    let up_link = CancellationToken::new();
    let up_filters = vec![topics::gateway_assign(&id), topics::gateway_notify(&id)];
    let connected = Bus::connect_ready(up_opts, up_filters, up_link.clone(), ready).await;
    let (up, up_inbox) = match connected {
        Ok(up) => up,
        Err(e) => {
            local_link.cancel();
            return Err(bus_err(e));
        }
    };
    info!(gateway_id = %id, listen = %broker.addr(), advertise = %address, "gateway listening");

    let agent = Agent {
        id: id.clone(),
        up,
        local,
        assigned,
        alive: status(true),
        dead: status(false),
    };
    let task = tokio::spawn(agent.run(up_inbox, local_inbox, up_link, local_link, shutdown));
    Ok(Gateway { id, address, task })
}

/// How long the agent waits for the registry's snapshot before announcing
/// again, doubling up to the cap.
const RESYNC_FIRST: Duration = Duration::from_secs(1);
const RESYNC_CAP: Duration = Duration::from_secs(10);

struct Agent {
    id: String,
    up: Bus,
    local: Bus,
    assigned: Arc<Assigned>,
    alive: GatewayStatus,
    dead: GatewayStatus,
}

impl Agent {
    /// The agent's two directions run apart, so neither connection's
    /// event loop ever waits on the other: registry messages become local
    /// publishes in this task, while device presence is only recorded by a
    /// collector that never blocks and is sent up by its own task. (One
    /// loop doing both deadlocked under a drain: it waited on the local
    /// broker, whose event loop waited for the loop to take presence.)
    async fn run(
        self,
        mut up_inbox: tokio::sync::mpsc::Receiver<Message>,
        local_inbox: tokio::sync::mpsc::Receiver<Message>,
        up_link: CancellationToken,
        local_link: CancellationToken,
        shutdown: CancellationToken,
    ) {
        let presence = Arc::new(PendingPresence::default());
        let collector = tokio::spawn(collect_presence(
            local_inbox,
            presence.clone(),
            shutdown.clone(),
        ));
        let reporter = tokio::spawn(report_presence(
            self.id.clone(),
            self.up.clone(),
            presence.clone(),
            shutdown.clone(),
        ));
        let mut up_state = self.up.watch_state();
        // Announce on this connection and on every reconnect, and again
        // until the registry's snapshot arrives: an announcement reaching
        // a restarted platform broker before its registry has subscribed
        // is dropped, and the gateway would stay dead to the registry.
        self.announce().await;
        up_state.borrow_and_update();
        let mut awaiting_snapshot = true;
        let mut retry = RESYNC_FIRST;
        let resync = tokio::time::sleep(retry);
        tokio::pin!(resync);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                changed = up_state.changed() => {
                    if changed.is_err() { break; }
                    let now = up_state.borrow_and_update().clone();
                    if now == LinkState::Ready {
                        self.announce().await;
                        awaiting_snapshot = true;
                        retry = RESYNC_FIRST;
                        resync.as_mut().reset(tokio::time::Instant::now() + retry);
                    }
                }
                _ = &mut resync, if awaiting_snapshot => {
                    warn!(gateway_id = %self.id, "no snapshot from the registry yet; announcing again");
                    self.announce().await;
                    retry = (retry * 2).min(RESYNC_CAP);
                    resync.as_mut().reset(tokio::time::Instant::now() + retry);
                }
                Some(msg) = up_inbox.recv() => {
                    if self.on_registry_message(msg, &presence).await {
                        awaiting_snapshot = false;
                    }
                }
            }
        }
        let _ = collector.await;
        let _ = reporter.await;
        if let Err(e) = self
            .up
            .publish_json(topics::gateway_status(&self.id), &self.dead)
            .await
        {
            warn!(error = %e, "could not announce shutdown");
        }
        local_link.cancel();
        up_link.cancel();
        self.up.closed(Duration::from_secs(3)).await;
        info!(gateway_id = %self.id, "gateway agent stopped");
    }

    async fn announce(&self) {
        let sync = SyncRequest {
            gateway_id: self.id.clone(),
        };
        if let Err(e) = self
            .up
            .publish_json(topics::gateway_status(&self.id), &self.alive)
            .await
        {
            warn!(error = %e, "could not announce the gateway");
        }
        if let Err(e) = self.up.publish_json(topics::REGISTRY_SYNC, &sync).await {
            warn!(error = %e, "could not ask for the assignment snapshot");
        }
    }

    /// True for a snapshot (`reset`) from the registry.
    async fn on_registry_message(&self, msg: Message, presence: &PendingPresence) -> bool {
        match topics::parse_gateway_topic(&msg.topic) {
            Some((_, "assign")) => match protocol::decode::decode_limited::<AssignUpdate>(
                &msg.payload,
                MAX_ASSIGN_PAYLOAD,
            ) {
                Ok(update) => {
                    let reset = update.reset;
                    self.assigned.apply(update);
                    if reset {
                        self.revoke_strays(presence).await;
                    }
                    return reset;
                }
                Err(e) => warn!(error = %e, "malformed assignment update"),
            },
            Some((_, "notify")) => match protocol::decode::decode_limited::<RedirectBatch>(
                &msg.payload,
                MAX_ASSIGN_PAYLOAD,
            ) {
                Ok(batch) => self.redirect(batch.redirects).await,
                Err(e) => warn!(error = %e, "malformed redirect batch"),
            },
            _ => debug!(topic = %msg.topic, "unexpected topic"),
        }
        false
    }

    /// After a snapshot: devices connected here that the registry no longer
    /// assigns here were moved while this agent could not hear it (their
    /// redirect lost with a platform crash, say). Nothing else would ever
    /// move them, since a gateway cannot disconnect a client, so tell them
    /// to ask again. The agent does not know their new epoch: the notice
    /// says `revoked`, which a device obeys whatever its epoch.
    async fn revoke_strays(&self, presence: &PendingPresence) {
        let strays: Vec<Redirect> = {
            let admitted = self
                .assigned
                .devices
                .read()
                .unwrap_or_else(|e| e.into_inner());
            presence
                .connected_outside(&admitted)
                .into_iter()
                .map(|device_id| Redirect {
                    device_id,
                    reason: RedirectReason::Revoked,
                    epoch: 0,
                })
                .collect()
        };
        if !strays.is_empty() {
            info!(gateway_id = %self.id, devices = strays.len(), "connected devices no longer assigned here told to ask again");
            self.redirect(strays).await;
        }
    }

    /// Stops admitting each device, then sends it its notice on this
    /// gateway's broker.
    async fn redirect(&self, notices: Vec<Redirect>) {
        for notice in notices {
            if protocol::check_client_id(&notice.device_id).is_err() {
                warn!("redirect for an invalid device id ignored");
                continue;
            }
            self.assigned.forget(&notice.device_id);
            debug!(device_id = %notice.device_id, reason = %notice.reason, "redirect notice sent");
            if let Err(e) = self
                .local
                .publish_json(topics::device_redirect(&notice.device_id), &notice)
                .await
            {
                warn!(error = %e, "could not send a redirect notice");
            }
        }
    }
}

/// Presence not yet reported: each device's latest state, so a burst of
/// connects and disconnects costs a few reports, not one per event.
#[derive(Default)]
struct PendingPresence {
    latest: std::sync::Mutex<std::collections::HashMap<String, bool>>,
    added: tokio::sync::Notify,
    /// The devices connected here now, as their presence says.
    connected: std::sync::Mutex<HashSet<String>>,
}

impl PendingPresence {
    fn record(&self, device_id: &str, online: bool) {
        {
            let mut connected = self.connected.lock().unwrap_or_else(|e| e.into_inner());
            if online {
                connected.insert(device_id.to_owned());
            } else {
                connected.remove(device_id);
            }
        }
        self.latest
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(device_id.to_owned(), online);
        self.added.notify_one();
    }

    /// The devices connected here that `admitted` does not list.
    fn connected_outside(&self, admitted: &HashSet<String>) -> Vec<String> {
        self.connected
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|d| !admitted.contains(*d))
            .cloned()
            .collect()
    }

    fn take(&self) -> std::collections::HashMap<String, bool> {
        std::mem::take(&mut *self.latest.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// Takes every presence message off the local broker at once; never waits
/// on anything but its inbox.
async fn collect_presence(
    mut inbox: tokio::sync::mpsc::Receiver<Message>,
    pending: Arc<PendingPresence>,
    shutdown: CancellationToken,
) {
    loop {
        let msg = tokio::select! {
            _ = shutdown.cancelled() => return,
            msg = inbox.recv() => match msg {
                Some(msg) => msg,
                None => return,
            },
        };
        let Some((device_id, "presence")) = topics::parse_device_topic(&msg.topic) else {
            continue;
        };
        match decode::<Presence>(&msg.payload) {
            Ok(p) => pending.record(device_id, p.online),
            Err(e) => warn!(device_id, error = %e, "malformed presence"),
        }
    }
}

/// Sends what the collector gathered to the registry, in reports of at
/// most [`ASSIGN_CHUNK`] devices per list; flushes what is left at shutdown.
async fn report_presence(
    gateway_id: String,
    up: Bus,
    pending: Arc<PendingPresence>,
    shutdown: CancellationToken,
) {
    loop {
        let stopping = tokio::select! {
            _ = shutdown.cancelled() => true,
            _ = pending.added.notified() => false,
        };
        let mut online = Vec::new();
        let mut offline = Vec::new();
        for (device, is_online) in pending.take() {
            if is_online {
                online.push(device);
            } else {
                offline.push(device);
            }
        }
        let reports = online
            .chunks(ASSIGN_CHUNK)
            .map(|c| PresenceReport {
                online: c.to_vec(),
                offline: Vec::new(),
            })
            .chain(offline.chunks(ASSIGN_CHUNK).map(|c| PresenceReport {
                online: Vec::new(),
                offline: c.to_vec(),
            }));
        for report in reports {
            if let Err(e) = up
                .publish_json(topics::gateway_presence(&gateway_id), &report)
                .await
            {
                warn!(error = %e, "could not report presence");
            }
        }
        if stopping {
            return;
        }
    }
}

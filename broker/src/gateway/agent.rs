//! A gateway's agent: its client of both brokers. It announces the gateway
//! to the registry, keeps the admitted set in step with the registry's
//! snapshot and deltas, and turns redirect requests into notices to the
//! devices on its own broker: an MQTT 5 device gets a server DISCONNECT
//! (0x9C, or 0x9D for a drain) with its new gateway as Server Reference
//! and the notice as a user property; a 3.1.1 device gets the notice on
//! its redirect topic, and its connection is closed `close_after_notice`
//! later if it has not left by itself.

use super::admitted::Assigned;
use super::presence::{collect_presence, report_presence, PendingPresence};
use crate::admission::Moved;
use bus::{Bus, LinkState, Message};
use protocol::gateway::{
    AssignUpdate, GatewayStatus, Redirect, RedirectBatch, RedirectReason, SyncRequest,
    MAX_ASSIGN_PAYLOAD, REDIRECT_PROPERTY,
};
use protocol::topics::{self, Topic};
use rumqttd::protocol::DisconnectReasonCode;
use rumqttd::{Kick, Sessions};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// How long the agent waits for the registry's snapshot before announcing
/// again, doubling up to the cap.
const RESYNC_FIRST: Duration = Duration::from_secs(1);
const RESYNC_CAP: Duration = Duration::from_secs(10);

/// How often the agent says again that the gateway is alive. Every
/// registry instance subscribes to gateway status (it is not shared), but
/// one that starts after a gateway's announcement would not hear of it
/// until then; this is shorter than the registry's restart grace, so no
/// device of a live gateway fails over meanwhile.
const HEARTBEAT: Duration = Duration::from_secs(5);

pub(super) struct Agent {
    pub(super) id: String,
    pub(super) up: Bus,
    pub(super) local: Bus,
    pub(super) assigned: Arc<Assigned>,
    /// The gateway broker's connections, to close a moved device's.
    pub(super) sessions: Sessions,
    /// How long a 3.1.1 device may stay after its notice.
    pub(super) close_after_notice: Duration,
    pub(super) alive: GatewayStatus,
    pub(super) dead: GatewayStatus,
}

impl Agent {
    /// The agent's two directions run apart, so neither connection's
    /// event loop ever waits on the other: registry messages become local
    /// publishes in this task, while device presence is only recorded by a
    /// collector that never blocks and is sent up by its own task. (One
    /// loop doing both deadlocked under a drain: it waited on the local
    /// broker, whose event loop waited for the loop to take presence.)
    pub(super) async fn run(
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
        let mut heartbeat = tokio::time::interval(HEARTBEAT);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        heartbeat.tick().await;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = heartbeat.tick() => self.heartbeat().await,
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

    /// Says again that the gateway is alive, for a registry instance that
    /// started after the last announcement.
    async fn heartbeat(&self) {
        if let Err(e) = self
            .up
            .publish_json(topics::gateway_status(&self.id), &self.alive)
            .await
        {
            debug!(error = %e, "could not repeat the gateway's status");
        }
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
        match Topic::parse(&msg.topic) {
            Some(Topic::GatewayAssign { .. }) => match protocol::decode::decode_limited::<
                AssignUpdate,
            >(
                &msg.payload, MAX_ASSIGN_PAYLOAD
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
            Some(Topic::GatewayNotify { .. }) => match protocol::decode::decode_limited::<
                RedirectBatch,
            >(
                &msg.payload, MAX_ASSIGN_PAYLOAD
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
                    assignment: None,
                })
                .collect()
        };
        if !strays.is_empty() {
            info!(gateway_id = %self.id, devices = strays.len(), "connected devices no longer assigned here told to ask again");
            self.redirect(strays).await;
        }
    }

    /// Stops admitting each device, then moves it: an MQTT 5 device by a
    /// redirecting DISCONNECT, a 3.1.1 device (or one not connected) by
    /// its notice on this gateway's broker, and `close_after_notice` later, if
    /// it is still connected and still not admitted here, by closing its
    /// connection.
    async fn redirect(&self, notices: Vec<Redirect>) {
        let mut told = Vec::new();
        for notice in notices {
            if protocol::check_client_id(&notice.device_id).is_err() {
                warn!("redirect for an invalid device id ignored");
                continue;
            }
            let to = notice.assignment.as_ref().map(|a| Moved {
                address: a.address.clone(),
                permanent: notice.reason == RedirectReason::Draining,
            });
            self.assigned.forget(&notice.device_id, to.clone());
            if self.sessions.version(&notice.device_id) == Some(5)
                && self
                    .sessions
                    .kick(&notice.device_id, redirecting(&notice, to))
                    .is_some()
            {
                debug!(device_id = %notice.device_id, reason = %notice.reason, "MQTT 5 device redirected by DISCONNECT");
                continue;
            }
            debug!(device_id = %notice.device_id, reason = %notice.reason, "redirect notice sent");
            if let Err(e) = self
                .local
                .publish_json(topics::device_redirect(&notice.device_id), &notice)
                .await
            {
                warn!(error = %e, "could not send a redirect notice");
            }
            told.push((notice.device_id, notice.reason));
        }
        if told.is_empty() {
            return;
        }
        let sessions = self.sessions.clone();
        let assigned = self.assigned.clone();
        let gateway_id = self.id.clone();
        let grace = self.close_after_notice;
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            let mut closed = 0usize;
            for (device_id, reason) in told {
                // Moved back here meanwhile: its connection is welcome.
                if assigned.admits(&device_id) {
                    continue;
                }
                let kick = Kick {
                    reason: reason_code(reason),
                    server_reference: None,
                    user_properties: Vec::new(),
                };
                if sessions.kick(&device_id, kick).is_some() {
                    closed += 1;
                }
            }
            if closed > 0 {
                info!(%gateway_id, devices = closed, "closed the connections of devices that stayed after their redirect notice");
            }
        });
    }
}

/// The DISCONNECT reason code of a redirect: 0x9D (server moved) for a
/// drain, which is for good; 0x9C (use another server) otherwise.
fn reason_code(reason: RedirectReason) -> DisconnectReasonCode {
    match reason {
        RedirectReason::Draining => DisconnectReasonCode::ServerMoved,
        RedirectReason::Remapped | RedirectReason::Revoked => {
            DisconnectReasonCode::UseAnotherServer
        }
    }
}

/// The DISCONNECT that redirects an MQTT 5 device: the reason code, its
/// new gateway as Server Reference, and the notice (with its signed
/// assignment, so that it moves without asking the registry) as the
/// [`REDIRECT_PROPERTY`] user property.
fn redirecting(notice: &Redirect, to: Option<Moved>) -> Kick {
    let json = String::from_utf8_lossy(&protocol::encode(notice)).into_owned();
    Kick {
        reason: reason_code(notice.reason),
        server_reference: to.map(|m| m.address),
        user_properties: vec![(REDIRECT_PROPERTY.to_owned(), json)],
    }
}

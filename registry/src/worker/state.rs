//! The registry's state and the invariants it keeps.
//!
//! **One task owns the state.** [`Registry`] is moved into the task that
//! [`super::start`] spawns, and every message is handled to completion
//! before the next, so two changes to one assignment never race. Nothing
//! here is behind a lock because nothing else can reach it.
//!
//! **Liveness is not persisted.** A gateway's `alive` and `heard` live only
//! here: after a restart every gateway is dead until it announces itself,
//! and [`RESTART_GRACE`] keeps its devices where they are meanwhile.
//!
//! **Epochs only grow.** [`Registry::set`] is the one place an assignment
//! changes. It names the epoch it replaces, and the store gives the device
//! that epoch plus one, or refuses if the stored one differs
//! ([`crate::store::StoreBatch::set`]).

use super::announce::Move;
use crate::logins::GatewayLogins;
use crate::policy::{Candidate, Policy};
use crate::store::{Assignment, GatewayRecord, RegistryStore, StoreBatch, StoreError};
use bus::{Bus, Outbox};
use metrics::{Counter, Gauge, Metrics};
use protocol::crypto::PlatformKey;
use protocol::gateway::{GatewayAnswer, GatewayAssigned, RedirectReason};
use protocol::now_ms;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// After the registry starts, how long a known gateway that has not yet
/// announced itself keeps its devices. A platform restart loses every
/// gateway's liveness, and gateways that rode it out re-announce within a
/// second or so; failing their devices over in that window would move
/// fleets off healthy gateways. A gateway that really died is failed over
/// once this passes (its devices, refused at connect, ask again).
pub(super) const RESTART_GRACE: Duration = Duration::from_secs(10);

pub(super) struct GatewayState {
    pub(super) record: GatewayRecord,
    pub(super) alive: bool,
    /// Whether it has said anything (up or down) since this registry
    /// started. Liveness is not stored: after a restart every gateway is
    /// unknown until it announces itself again.
    pub(super) heard: bool,
    pub(super) assigned: u64,
    pub(super) connected: HashSet<String>,
    /// This gateway's series, kept so that recording needs no lookup.
    connected_gauge: Gauge,
    pub(super) redirects: Counter,
}

impl GatewayState {
    pub(super) fn new(gateway_id: &str, record: GatewayRecord, metrics: &Metrics) -> Self {
        GatewayState {
            record,
            alive: false,
            heard: false,
            assigned: 0,
            connected: HashSet::new(),
            connected_gauge: metrics.connected_devices(gateway_id),
            redirects: metrics.redirects(gateway_id),
        }
    }

    /// Keeps the gauge equal to the connected set.
    pub(super) fn connected_changed(&self) {
        self.connected_gauge
            .set(i64::try_from(self.connected.len()).unwrap_or(i64::MAX));
    }
}

/// Sets every gateway's `assigned` from the store; returns how many
/// devices are assigned in all.
pub(super) async fn count_assigned<S: RegistryStore>(
    store: &S,
    gateways: &mut BTreeMap<String, GatewayState>,
) -> Result<u64, StoreError> {
    let counts = store.assigned_counts().await?;
    for (id, g) in gateways.iter_mut() {
        g.assigned = counts.get(id).copied().unwrap_or(0);
    }
    Ok(counts.values().sum())
}

/// Everything the registry knows, owned by its one task.
pub(super) struct Registry<S> {
    /// Assignments, gateway records, audit log, last seen. The counts and
    /// liveness below are kept here, not read from it per message.
    pub(super) store: S,
    pub(super) bus: Bus,
    /// Every publish of the worker goes here.
    pub(super) outbox: Outbox,
    pub(super) policy: Policy,
    pub(super) allow_unknown: bool,
    pub(super) gateways: BTreeMap<String, GatewayState>,
    pub(super) metrics: Metrics,
    pub(super) signing_key: Option<Arc<PlatformKey>>,
    pub(super) answer_ttl: Duration,
    /// When this registry started: the clock of [`RESTART_GRACE`].
    pub(super) started: Instant,
    /// Secure mode: only registered gateways are believed, at their
    /// registered address and weight.
    pub(super) registration_required: bool,
    /// The registered gateways' credentials, for the platform broker.
    pub(super) logins: Arc<GatewayLogins>,
    /// Issues registered gateways' TLS certificates; None: none issued.
    pub(super) certificates: Option<crate::CertificateSigner>,
    /// A store shared with other registry instances: the gateway records
    /// are read back from it every [`super::cmd::REFRESH`].
    pub(super) shared_store: bool,
    /// Refreshes done, for the recount every so many.
    pub(super) refreshes: u32,
    /// Each gateway's rate of presence reports.
    pub(super) presence_limits: super::rate::RateLimits,
}

impl<S: RegistryStore> Registry<S> {
    /// The gateways that may take a device: alive, not draining, and not
    /// `exclude` (the one being drained).
    pub(super) fn candidates(&self, exclude: Option<&str>) -> Vec<Candidate<'_>> {
        self.gateways
            .iter()
            .filter(|(id, g)| g.alive && !g.record.draining && Some(id.as_str()) != exclude)
            .map(|(id, g)| Candidate {
                gateway_id: id,
                weight: g.record.weight,
                assigned: g.assigned,
            })
            .collect()
    }

    pub(super) fn is_alive(&self, gateway_id: &str) -> bool {
        self.gateways.get(gateway_id).is_some_and(|g| g.alive)
    }

    /// A known gateway not heard from since this registry started, within
    /// [`RESTART_GRACE`] of the start: presumed alive for its devices.
    pub(super) fn presumed_alive(&self, gateway_id: &str) -> bool {
        self.started.elapsed() < RESTART_GRACE
            && self.gateways.get(gateway_id).is_some_and(|g| !g.heard)
    }

    fn address(&self, gateway_id: &str) -> String {
        self.gateways
            .get(gateway_id)
            .map(|g| g.record.address.clone())
            .unwrap_or_default()
    }

    /// Makes every change so far durable, timing it.
    pub(super) async fn flush(&self) -> Result<(), StoreError> {
        let started = Instant::now();
        let result = self.store.flush().await;
        self.metrics.store_flush("registry", started.elapsed());
        result
    }

    /// Reloads the counts from the store after a batch that staged changes
    /// failed to commit or was dropped: the counts kept what it staged,
    /// the store holds what happened.
    pub(super) async fn recount(&mut self) {
        if let Err(e) = count_assigned(&self.store, &mut self.gateways).await {
            warn!(error = %e, "cannot reload the assigned counts");
        }
    }

    /// Stages a change in `batch` (durable once it commits) and keeps the
    /// counts. `previous` is the assignment it replaces: the store refuses
    /// the change if another is stored by then.
    pub(super) async fn set(
        &mut self,
        batch: &mut S::Batch,
        device_id: &str,
        to: &str,
        previous: Option<&Assignment>,
        reason: &'static str,
        notify: Option<RedirectReason>,
    ) -> Result<Move, StoreError> {
        let from = previous.map(|a| a.gateway_id.clone());
        let staged = batch
            .set(device_id, previous.map(|a| a.epoch), to, reason)
            .await?;
        let epoch = staged.epoch;
        if let Some(f) = from.as_deref().and_then(|f| self.gateways.get_mut(f)) {
            f.assigned = f.assigned.saturating_sub(1);
        }
        if let Some(t) = self.gateways.get_mut(to) {
            t.assigned += 1;
        }
        info!(device_id, from = ?from, to, epoch, reason, "assignment changed");
        Ok(Move {
            device_id: device_id.to_owned(),
            from,
            to: to.to_owned(),
            epoch,
            device_key: staged.device_key,
            notify,
            reason,
        })
    }

    /// The answer naming the device's gateway and key; in secure mode
    /// signed, valid for `answer_ttl`.
    pub(super) fn assigned(
        &self,
        device_id: &str,
        gateway_id: &str,
        epoch: u64,
        device_key: Option<&str>,
    ) -> GatewayAnswer {
        let mut answer = GatewayAssigned {
            device_id: device_id.to_owned(),
            gateway_id: gateway_id.to_owned(),
            address: self.address(gateway_id),
            epoch,
            device_key: device_key.map(str::to_owned),
            expires_ms: None,
            sig: None,
        };
        if let Some(key) = &self.signing_key {
            answer.sign(
                key,
                now_ms().saturating_add(self.answer_ttl.as_millis() as u64),
            );
        }
        GatewayAnswer::Assigned(answer)
    }

    /// Queues `msg` as JSON on the outbox, so that the loop reading the
    /// inbox never waits on the link (see [`bus::Outbox`]); a failure is
    /// only logged.
    pub(super) fn publish<T: serde::Serialize>(&self, topic: String, msg: &T) {
        if let Err(e) = self.outbox.publish_json(topic, msg) {
            warn!(error = %e, "publish failed");
        }
    }
}

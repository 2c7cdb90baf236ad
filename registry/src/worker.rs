//! The registry worker. One task owns all state and handles one message at
//! a time, so an assignment never races another.

use crate::policy::{Candidate, Policy};
use crate::store::{Assignment, GatewayRecord, Store, StoreError};
use bus::{Bus, BusError, BusOptions, Message};
use metrics::Metrics;
use metrics::{Counter, Gauge};
use protocol::crypto::PlatformKey;
use protocol::gateway::{
    check_device_id, AssignUpdate, GatewayAnswer, GatewayAssigned, GatewayErrorCode, GatewayQuery,
    GatewayStatus, PresenceReport, Redirect, RedirectBatch, RedirectReason, SyncRequest,
    ASSIGN_CHUNK, MAX_ASSIGN_PAYLOAD,
};
use protocol::now_ms;
use protocol::registry_admin::{
    AssignmentView, DrainReport, GatewayView, LastSeen, RegistryErrorCode, RegistryOk, RegistryOp,
    RegistryOutcome, RegistryReply, RegistryRequest, MAX_DRAIN_BATCH,
};
use protocol::{decode, peek_str_field, topics, ErrorBody, Segment};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

#[derive(Debug, Clone)]
pub struct RegistryConfig {
    pub broker: String,
    pub client_id: String,
    pub username: String,
    pub password: String,
    pub db_dir: PathBuf,
    pub policy: Policy,
    /// Whether a device the registry has never seen gets a gateway by
    /// policy (true) or `unassigned` (false).
    pub allow_unknown: bool,
    /// Where queries, assignments, redirects, connected devices and
    /// flushes are counted. The default is a registry nobody serves.
    pub metrics: Metrics,
    /// Secure mode: signs every answer, valid for `answer_ttl`.
    pub signing_key: Option<Arc<PlatformKey>>,
    pub answer_ttl: Duration,
}

/// How long a signed answer stays valid: a device whose gateway restarts
/// after that asks the registry again.
pub const DEFAULT_ANSWER_TTL: Duration = Duration::from_secs(3600);

impl RegistryConfig {
    pub fn new(broker: impl Into<String>, db_dir: impl Into<PathBuf>) -> Self {
        RegistryConfig {
            broker: broker.into(),
            client_id: "registry".into(),
            username: "registry".into(),
            password: String::new(),
            db_dir: db_dir.into(),
            policy: Policy::default(),
            allow_unknown: true,
            metrics: Metrics::default(),
            signing_key: None,
            answer_ttl: DEFAULT_ANSWER_TTL,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error("registry task panicked: {0}")]
    Panicked(String),
}

pub struct Worker {
    task: tokio::task::JoinHandle<Result<(), RegistryError>>,
}

impl Worker {
    pub async fn join(self) -> Result<(), RegistryError> {
        match self.task.await {
            Ok(r) => r,
            Err(e) => Err(RegistryError::Panicked(e.to_string())),
        }
    }
}

/// Opens the store, connects, and spawns the worker; with `ready_timeout`,
/// returns only once subscribed.
pub async fn start(
    config: RegistryConfig,
    shutdown: CancellationToken,
    ready_timeout: Option<Duration>,
) -> Result<Worker, RegistryError> {
    let store = Store::open(&config.db_dir)?;
    let mut gateways = BTreeMap::new();
    for (id, record) in store.gateways()? {
        let state = GatewayState::new(&id, record, &config.metrics);
        gateways.insert(id, state);
    }
    let mut devices = 0;
    for item in store.assignments() {
        let (_, a) = item?;
        devices += 1;
        if let Some(g) = gateways.get_mut(&a.gateway_id) {
            g.assigned += 1;
        }
    }
    info!(db = %config.db_dir.display(), devices, gateways = gateways.len(), policy = ?config.policy, "registry store open");

    let opts = BusOptions::new(&config.broker, &config.client_id)?
        .with_credentials(&config.username, &config.password);
    let link = CancellationToken::new();
    let filters = vec![
        topics::REGISTRY_QUERY.into(),
        topics::REGISTRY_SYNC.into(),
        topics::REGISTRY_ADMIN_REQUEST.into(),
        topics::GATEWAY_STATUS_ALL.into(),
        topics::GATEWAY_PRESENCE_ALL.into(),
    ];
    let (bus, inbox) = Bus::connect_ready(opts, filters, link.clone(), ready_timeout).await?;
    if ready_timeout.is_some() {
        info!(broker = %config.broker, "registry serving");
    }
    let registry = Registry {
        store,
        bus,
        policy: config.policy,
        allow_unknown: config.allow_unknown,
        gateways,
        metrics: config.metrics,
        signing_key: config.signing_key,
        answer_ttl: config.answer_ttl,
        started: Instant::now(),
    };
    let task = tokio::spawn(registry.serve(inbox, link, shutdown));
    Ok(Worker { task })
}

struct GatewayState {
    record: GatewayRecord,
    alive: bool,
    /// Whether it has said anything (up or down) since this registry
    /// started. Liveness is not stored: after a restart every gateway is
    /// unknown until it announces itself again.
    heard: bool,
    assigned: u64,
    connected: HashSet<String>,
    /// This gateway's series, kept so that recording needs no lookup.
    connected_gauge: Gauge,
    redirects: Counter,
}

impl GatewayState {
    fn new(gateway_id: &str, record: GatewayRecord, metrics: &Metrics) -> Self {
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
    fn connected_changed(&self) {
        self.connected_gauge
            .set(i64::try_from(self.connected.len()).unwrap_or(i64::MAX));
    }
}

/// Gateway queries handled in one group commit at most.
const MAX_QUERY_BATCH: usize = 1024;

/// How a query is answered: at once, or once its new assignment is durable.
enum Resolved {
    Now(GatewayAnswer),
    Moved(Move),
}

/// One assignment change, announced to the gateways after it is durable.
#[derive(Clone)]
struct Move {
    device_id: String,
    from: Option<String>,
    to: String,
    epoch: u64,
    notify: Option<RedirectReason>,
    /// As in the audit log: policy, failover, assign, remap, drain.
    reason: &'static str,
}

type AdminResult = Result<RegistryOk, ErrorBody<RegistryErrorCode>>;

fn refuse(code: RegistryErrorCode, message: impl Into<String>) -> ErrorBody<RegistryErrorCode> {
    ErrorBody::new(code, message)
}

fn internal(e: StoreError) -> ErrorBody<RegistryErrorCode> {
    error!(error = %e, "registry store failure");
    ErrorBody::new(RegistryErrorCode::Internal, e.to_string())
}

struct Registry {
    store: Store,
    bus: Bus,
    policy: Policy,
    allow_unknown: bool,
    gateways: BTreeMap<String, GatewayState>,
    metrics: Metrics,
    signing_key: Option<Arc<PlatformKey>>,
    answer_ttl: Duration,
    started: Instant,
}

/// After the registry starts, how long a known gateway that has not yet
/// announced itself keeps its devices. A platform restart loses every
/// gateway's liveness, and gateways that rode it out re-announce within a
/// second or so; failing their devices over in that window would move
/// fleets off healthy gateways. A gateway that really died is failed over
/// once this passes (its devices, refused at connect, ask again).
const RESTART_GRACE: Duration = Duration::from_secs(10);

impl Registry {
    async fn serve(
        mut self,
        mut inbox: mpsc::Receiver<Message>,
        link: CancellationToken,
        shutdown: CancellationToken,
    ) -> Result<(), RegistryError> {
        let mut queries = Vec::new();
        loop {
            let msg = tokio::select! {
                _ = shutdown.cancelled() => break,
                msg = inbox.recv() => match msg { Some(m) => m, None => break },
            };
            // Group commit: the queries already waiting are answered
            // together, after one flush, in the order they arrived. Any
            // other message first settles the queries before it.
            let mut next = Some(msg);
            while let Some(msg) = next {
                if msg.topic == topics::REGISTRY_QUERY {
                    queries.push(msg.payload);
                    if queries.len() >= MAX_QUERY_BATCH {
                        self.on_queries(std::mem::take(&mut queries)).await;
                    }
                } else {
                    if !queries.is_empty() {
                        self.on_queries(std::mem::take(&mut queries)).await;
                    }
                    self.dispatch(msg).await;
                }
                next = inbox.try_recv().ok();
            }
            if !queries.is_empty() {
                self.on_queries(std::mem::take(&mut queries)).await;
            }
        }
        link.cancel();
        self.bus.closed(Duration::from_secs(3)).await;
        self.flush().await?;
        info!("registry stopped; store flushed");
        Ok(())
    }

    async fn dispatch(&mut self, msg: Message) {
        match msg.topic.as_str() {
            topics::REGISTRY_QUERY => self.on_queries(vec![msg.payload]).await,
            topics::REGISTRY_SYNC => self.on_sync(&msg.payload).await,
            topics::REGISTRY_ADMIN_REQUEST => self.on_admin(&msg.payload).await,
            topic => match topics::parse_gateway_topic(topic) {
                Some((gw, "status")) => self.on_status(gw, &msg.payload).await,
                Some((gw, "presence")) => self.on_presence(gw, &msg.payload),
                _ => debug!(topic, "message on an unexpected topic"),
            },
        }
    }

    fn candidates(&self, exclude: Option<&str>) -> Vec<Candidate<'_>> {
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

    fn is_alive(&self, gateway_id: &str) -> bool {
        self.gateways.get(gateway_id).is_some_and(|g| g.alive)
    }

    /// A known gateway not heard from since this registry started, within
    /// [`RESTART_GRACE`] of the start: presumed alive for its devices.
    fn presumed_alive(&self, gateway_id: &str) -> bool {
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
    async fn flush(&self) -> Result<(), StoreError> {
        let started = Instant::now();
        let result = self.store.flush().await;
        self.metrics.store_flush("registry", started.elapsed());
        result
    }

    /// Records a change (not yet flushed) and keeps the counts.
    fn set(
        &mut self,
        device_id: &str,
        to: &str,
        previous: Option<&Assignment>,
        reason: &'static str,
        notify: Option<RedirectReason>,
    ) -> Result<Move, StoreError> {
        let from = previous.map(|a| a.gateway_id.clone());
        let epoch = previous.map_or(1, |a| a.epoch + 1);
        self.store
            .set_assignment(device_id, to, epoch, from.as_deref(), reason)?;
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
            notify,
            reason,
        })
    }

    /// Tells the gateways about durable changes: the new gateway admits
    /// the device first, then the old one forgets it and redirects it.
    async fn announce(&self, moves: &[Move]) {
        let mut adds: HashMap<&str, Vec<String>> = HashMap::new();
        let mut removes: HashMap<&str, Vec<String>> = HashMap::new();
        for m in moves {
            self.metrics.assignment(m.reason);
            adds.entry(&m.to).or_default().push(m.device_id.clone());
            if let Some(from) = m.from.as_deref().filter(|f| *f != m.to) {
                removes.entry(from).or_default().push(m.device_id.clone());
            }
        }
        for (gw, devices) in adds {
            for chunk in devices.chunks(ASSIGN_CHUNK) {
                let update = AssignUpdate {
                    add: chunk.to_vec(),
                    ..Default::default()
                };
                self.publish(topics::gateway_assign(gw), &update).await;
            }
        }
        for (gw, devices) in removes {
            for chunk in devices.chunks(ASSIGN_CHUNK) {
                let update = AssignUpdate {
                    remove: chunk.to_vec(),
                    ..Default::default()
                };
                self.publish(topics::gateway_assign(gw), &update).await;
            }
        }
        let mut notices: HashMap<&str, Vec<Redirect>> = HashMap::new();
        for m in moves {
            if let (Some(from), Some(reason)) = (m.from.as_deref(), m.notify) {
                if from != m.to {
                    notices.entry(from).or_default().push(Redirect {
                        device_id: m.device_id.clone(),
                        reason,
                        epoch: m.epoch,
                    });
                }
            }
        }
        for (gw, redirects) in notices {
            match self.gateways.get(gw) {
                Some(g) => g.redirects.inc_by(redirects.len() as u64),
                None => self.metrics.redirects(gw).inc_by(redirects.len() as u64),
            };
            for chunk in redirects.chunks(ASSIGN_CHUNK) {
                let batch = RedirectBatch {
                    redirects: chunk.to_vec(),
                };
                self.publish(topics::gateway_notify(gw), &batch).await;
            }
        }
    }

    async fn publish<T: serde::Serialize>(&self, topic: String, msg: &T) {
        if let Err(e) = self.bus.publish_json(topic, msg).await {
            warn!(error = %e, "publish failed");
        }
    }

    /// Answers a batch of gateway queries. Every new assignment among them
    /// is made durable by one flush before any answer goes out, so a
    /// thousand devices failing over cost one fsync, not a thousand.
    async fn on_queries(&mut self, payloads: Vec<bytes::Bytes>) {
        let started = Instant::now();
        let mut answers: Vec<(String, Resolved)> = Vec::with_capacity(payloads.len());
        let mut moves = Vec::new();
        for payload in &payloads {
            let query = match decode::<GatewayQuery>(payload).and_then(|q| q.validate().map(|()| q))
            {
                Ok(q) => q,
                Err(e) => {
                    warn!(error = %e, "malformed gateway query");
                    if let Some(id) = peek_str_field(payload, "device_id")
                        .filter(|id| protocol::check_client_id(id).is_ok())
                    {
                        let answer = GatewayAnswer::refused(
                            &id,
                            GatewayErrorCode::BadRequest,
                            e.to_string(),
                        );
                        answers.push((id, Resolved::Now(answer)));
                    } else {
                        // Nobody to answer; it still counts as refused.
                        self.metrics.gateway_query(false);
                    }
                    continue;
                }
            };
            let resolved = self.resolve(&query.device_id);
            if let Resolved::Moved(m) = &resolved {
                moves.push(m.clone());
            }
            answers.push((query.device_id, resolved));
        }
        let durable = if moves.is_empty() {
            true
        } else {
            match self.flush().await {
                Ok(()) => {
                    self.announce(&moves).await;
                    true
                }
                Err(e) => {
                    error!(error = %e, devices = moves.len(), "flush failed; the assignments are not confirmed");
                    false
                }
            }
        };
        for (device_id, resolved) in answers {
            let answer = match resolved {
                Resolved::Now(answer) => answer,
                Resolved::Moved(m) if durable => self.assigned(&device_id, &m.to, m.epoch),
                Resolved::Moved(_) => GatewayAnswer::refused(
                    &device_id,
                    GatewayErrorCode::NoGateway,
                    "registry storage failure",
                ),
            };
            let assigned = matches!(answer, GatewayAnswer::Assigned(_));
            self.publish(topics::device_gateway(&device_id), &answer)
                .await;
            self.metrics.gateway_query(assigned);
            self.metrics.query_answered(started.elapsed());
        }
    }

    /// The device's live gateway, allocating one if it has none or its
    /// gateway is dead. A new assignment is recorded but not yet durable:
    /// the caller flushes before answering.
    fn resolve(&mut self, device_id: &str) -> Resolved {
        let current = match self.store.assignment(device_id) {
            Ok(a) => a,
            Err(e) => {
                error!(device_id, error = %e, "store lookup failed");
                return Resolved::Now(GatewayAnswer::refused(
                    device_id,
                    GatewayErrorCode::NoGateway,
                    "registry storage failure",
                ));
            }
        };
        if let Some(a) = &current {
            if self.is_alive(&a.gateway_id) || self.presumed_alive(&a.gateway_id) {
                return Resolved::Now(self.assigned(device_id, &a.gateway_id, a.epoch));
            }
        } else if !self.allow_unknown {
            return Resolved::Now(GatewayAnswer::refused(
                device_id,
                GatewayErrorCode::Unassigned,
                "this device is not registered",
            ));
        }
        let reason = if current.is_some() {
            "failover"
        } else {
            "policy"
        };
        let choice = self
            .policy
            .choose(device_id, &self.candidates(None))
            .map(str::to_owned);
        let Some(to) = choice else {
            return Resolved::Now(if self.policy == Policy::Static && current.is_none() {
                GatewayAnswer::refused(
                    device_id,
                    GatewayErrorCode::Unassigned,
                    "no gateway is assigned to this device",
                )
            } else {
                GatewayAnswer::refused(
                    device_id,
                    GatewayErrorCode::NoGateway,
                    "no live gateway can take this device",
                )
            });
        };
        match self.set(device_id, &to, current.as_ref(), reason, None) {
            Ok(m) => Resolved::Moved(m),
            Err(e) => {
                error!(device_id, error = %e, "cannot record assignment");
                Resolved::Now(GatewayAnswer::refused(
                    device_id,
                    GatewayErrorCode::NoGateway,
                    "registry storage failure",
                ))
            }
        }
    }

    fn assigned(&self, device_id: &str, gateway_id: &str, epoch: u64) -> GatewayAnswer {
        let mut answer = GatewayAssigned {
            device_id: device_id.to_owned(),
            gateway_id: gateway_id.to_owned(),
            address: self.address(gateway_id),
            epoch,
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

    async fn on_status(&mut self, gateway_id: &str, payload: &[u8]) {
        let status = match decode::<GatewayStatus>(payload) {
            Ok(s) if s.gateway_id == gateway_id && Segment::parse(gateway_id).is_ok() => s,
            Ok(_) => return warn!(gateway_id, "gateway status for another gateway ignored"),
            Err(e) => return warn!(gateway_id, error = %e, "malformed gateway status"),
        };
        if !status.alive {
            if let Some(g) = self.gateways.get_mut(gateway_id) {
                g.heard = true;
                if g.alive {
                    warn!(
                        gateway_id,
                        assigned = g.assigned,
                        "gateway down; its devices fail over when they re-query"
                    );
                }
                g.alive = false;
                g.connected.clear();
                g.connected_changed();
            }
            return;
        }
        let Some(address) = status.address.filter(|a| !a.is_empty()) else {
            return warn!(gateway_id, "gateway announced itself without an address");
        };
        let weight = status.weight.unwrap_or(1);
        let metrics = &self.metrics;
        let state = self
            .gateways
            .entry(gateway_id.to_owned())
            .or_insert_with(|| {
                let record = GatewayRecord {
                    address: String::new(),
                    weight,
                    draining: false,
                };
                GatewayState::new(gateway_id, record, metrics)
            });
        let changed = state.record.address != address || state.record.weight != weight;
        state.record.address = address;
        state.record.weight = weight;
        if !state.alive {
            info!(gateway_id, address = %state.record.address, weight, "gateway up");
        }
        state.alive = true;
        state.heard = true;
        if changed {
            let record = state.record.clone();
            if let Err(e) = self.store.put_gateway(gateway_id, &record) {
                error!(gateway_id, error = %e, "cannot record gateway");
            }
        }
    }

    async fn on_sync(&mut self, payload: &[u8]) {
        let req = match decode::<SyncRequest>(payload) {
            Ok(r) if Segment::parse(&r.gateway_id).is_ok() => r,
            _ => return warn!("malformed sync request"),
        };
        let mut devices = Vec::new();
        for item in self.store.assignments() {
            match item {
                Ok((device, a)) if a.gateway_id == req.gateway_id => devices.push(device),
                Ok(_) => {}
                Err(e) => return error!(error = %e, "cannot read assignments"),
            }
        }
        debug!(gateway_id = %req.gateway_id, devices = devices.len(), "sending assignment snapshot");
        let mut chunks = devices.chunks(ASSIGN_CHUNK);
        let first = AssignUpdate {
            reset: true,
            add: chunks.next().map(<[String]>::to_vec).unwrap_or_default(),
            remove: Vec::new(),
        };
        let topic = topics::gateway_assign(&req.gateway_id);
        self.publish(topic.clone(), &first).await;
        for chunk in chunks {
            let update = AssignUpdate {
                add: chunk.to_vec(),
                ..Default::default()
            };
            self.publish(topic.clone(), &update).await;
        }
    }

    fn on_presence(&mut self, gateway_id: &str, payload: &[u8]) {
        let report =
            match protocol::decode::decode_limited::<PresenceReport>(payload, MAX_ASSIGN_PAYLOAD) {
                Ok(r) => r,
                Err(e) => return warn!(gateway_id, error = %e, "malformed presence report"),
            };
        let Some(g) = self.gateways.get_mut(gateway_id) else {
            return debug!(gateway_id, "presence from an unknown gateway");
        };
        let now = now_ms();
        for (devices, online) in [(&report.online, true), (&report.offline, false)] {
            for device in devices {
                if online {
                    g.connected.insert(device.clone());
                } else {
                    g.connected.remove(device);
                }
                let seen = LastSeen {
                    gateway_id: gateway_id.to_owned(),
                    at_ms: now,
                    online,
                };
                if let Err(e) = self.store.set_last_seen(device, &seen) {
                    warn!(error = %e, "cannot record presence");
                }
            }
        }
        g.connected_changed();
    }

    async fn on_admin(&mut self, payload: &[u8]) {
        let req = match decode::<RegistryRequest>(payload) {
            Ok(r) => r,
            Err(e) => {
                warn!(error = %e, "malformed registry admin request");
                if let Some(request_id) =
                    peek_str_field(payload, "request_id").filter(|r| r.len() <= 64)
                {
                    let reply = RegistryReply {
                        request_id,
                        outcome: RegistryOutcome::Error(refuse(
                            RegistryErrorCode::BadRequest,
                            e.to_string(),
                        )),
                    };
                    self.publish(topics::REGISTRY_ADMIN_REPLY.into(), &reply)
                        .await;
                }
                return;
            }
        };
        let outcome = match self.apply(req.op).await {
            Ok(ok) => RegistryOutcome::Ok(ok),
            Err(body) => RegistryOutcome::Error(body),
        };
        let reply = RegistryReply {
            request_id: req.request_id,
            outcome,
        };
        self.publish(topics::REGISTRY_ADMIN_REPLY.into(), &reply)
            .await;
    }

    fn check_device(device_id: &str) -> Result<(), ErrorBody<RegistryErrorCode>> {
        check_device_id(device_id).map_err(|e| {
            refuse(
                RegistryErrorCode::BadRequest,
                format!("device id {device_id:?} {e}"),
            )
        })
    }

    fn check_target(&self, gateway_id: &str) -> Result<(), ErrorBody<RegistryErrorCode>> {
        match self.gateways.get(gateway_id) {
            None => Err(refuse(
                RegistryErrorCode::UnknownGateway,
                format!("no gateway {gateway_id:?} has ever announced itself"),
            )),
            Some(g) if !g.alive => Err(refuse(
                RegistryErrorCode::GatewayDead,
                format!("gateway {gateway_id:?} is not alive"),
            )),
            Some(_) => Ok(()),
        }
    }

    fn view(
        &self,
        device_id: &str,
        a: &Assignment,
        changed: bool,
    ) -> Result<RegistryOk, ErrorBody<RegistryErrorCode>> {
        Ok(RegistryOk::Assignment(AssignmentView {
            device_id: device_id.to_owned(),
            gateway_id: a.gateway_id.clone(),
            epoch: a.epoch,
            changed,
            last_seen: self.store.last_seen(device_id).map_err(internal)?,
        }))
    }

    async fn commit(&self, moves: &[Move]) -> Result<(), ErrorBody<RegistryErrorCode>> {
        self.flush().await.map_err(internal)?;
        self.announce(moves).await;
        Ok(())
    }

    async fn apply(&mut self, op: RegistryOp) -> AdminResult {
        match op {
            RegistryOp::Assign {
                device_id,
                gateway_id,
            } => {
                Self::check_device(&device_id)?;
                let current = self.store.assignment(&device_id).map_err(internal)?;
                if let Some(a) = &current {
                    if a.gateway_id == gateway_id {
                        return self.view(&device_id, a, false);
                    }
                    return Err(refuse(
                        RegistryErrorCode::AlreadyAssigned,
                        format!(
                            "{device_id} is assigned to {}; use remap to move it",
                            a.gateway_id
                        ),
                    ));
                }
                self.check_target(&gateway_id)?;
                let m = self
                    .set(&device_id, &gateway_id, None, "assign", None)
                    .map_err(internal)?;
                self.commit(std::slice::from_ref(&m)).await?;
                let a = self.store.assignment(&device_id).map_err(internal)?;
                a.map_or_else(
                    || Err(refuse(RegistryErrorCode::Internal, "assignment vanished")),
                    |a| self.view(&device_id, &a, true),
                )
            }
            RegistryOp::Remap {
                device_id,
                gateway_id,
            } => {
                Self::check_device(&device_id)?;
                let Some(current) = self.store.assignment(&device_id).map_err(internal)? else {
                    return Err(refuse(
                        RegistryErrorCode::NotFound,
                        format!("{device_id} has no assignment; use assign"),
                    ));
                };
                self.check_target(&gateway_id)?;
                if current.gateway_id == gateway_id {
                    return self.view(&device_id, &current, false);
                }
                let m = self
                    .set(
                        &device_id,
                        &gateway_id,
                        Some(&current),
                        "remap",
                        Some(RedirectReason::Remapped),
                    )
                    .map_err(internal)?;
                self.commit(std::slice::from_ref(&m)).await?;
                self.metrics.remap();
                let a = Assignment {
                    gateway_id,
                    epoch: m.epoch,
                    updated_ms: now_ms(),
                };
                self.view(&device_id, &a, true)
            }
            RegistryOp::Drain {
                gateway_id,
                to,
                limit,
            } => self.drain(&gateway_id, to.as_deref(), limit).await,
            RegistryOp::Undrain { gateway_id } => {
                let Some(g) = self.gateways.get_mut(&gateway_id) else {
                    return Err(refuse(
                        RegistryErrorCode::UnknownGateway,
                        format!("no gateway {gateway_id:?}"),
                    ));
                };
                g.record.draining = false;
                let record = g.record.clone();
                self.store
                    .put_gateway(&gateway_id, &record)
                    .map_err(internal)?;
                self.flush().await.map_err(internal)?;
                Ok(RegistryOk::Undrained { gateway_id })
            }
            RegistryOp::Show { device_id } => {
                Self::check_device(&device_id)?;
                match self.store.assignment(&device_id).map_err(internal)? {
                    Some(a) => self.view(&device_id, &a, false),
                    None => Err(refuse(
                        RegistryErrorCode::NotFound,
                        format!("{device_id} has no assignment"),
                    )),
                }
            }
            RegistryOp::Gateways => Ok(RegistryOk::Gateways {
                gateways: self
                    .gateways
                    .iter()
                    .map(|(id, g)| GatewayView {
                        gateway_id: id.clone(),
                        address: g.record.address.clone(),
                        alive: g.alive,
                        draining: g.record.draining,
                        weight: g.record.weight,
                        assigned: g.assigned,
                        connected: g.connected.len() as u64,
                    })
                    .collect(),
            }),
            RegistryOp::History { device_id } => {
                Self::check_device(&device_id)?;
                let entries = self.store.history(&device_id).map_err(internal)?;
                if entries.is_empty() {
                    return Err(refuse(
                        RegistryErrorCode::NotFound,
                        format!("{device_id} has no history"),
                    ));
                }
                Ok(RegistryOk::History { device_id, entries })
            }
        }
    }

    async fn drain(&mut self, gateway_id: &str, to: Option<&str>, limit: usize) -> AdminResult {
        if !self.gateways.contains_key(gateway_id) {
            return Err(refuse(
                RegistryErrorCode::UnknownGateway,
                format!("no gateway {gateway_id:?}"),
            ));
        }
        if let Some(to) = to {
            if to == gateway_id {
                return Err(refuse(
                    RegistryErrorCode::BadRequest,
                    "cannot drain a gateway into itself",
                ));
            }
            self.check_target(to)?;
        } else if self.policy == Policy::Static {
            return Err(refuse(
                RegistryErrorCode::BadRequest,
                "the static policy allocates nothing: give --to",
            ));
        } else if self.candidates(Some(gateway_id)).is_empty() {
            return Err(refuse(
                RegistryErrorCode::NoGateway,
                "no other live gateway can take the devices",
            ));
        }
        // Only a drain that can proceed marks the gateway.
        if let Some(g) = self.gateways.get_mut(gateway_id) {
            if !g.record.draining {
                g.record.draining = true;
                let record = g.record.clone();
                self.store
                    .put_gateway(gateway_id, &record)
                    .map_err(internal)?;
                info!(gateway_id, "gateway draining");
            }
        }
        let mut on_gateway = Vec::new();
        for item in self.store.assignments() {
            let (device, a) = item.map_err(internal)?;
            if a.gateway_id == gateway_id {
                on_gateway.push((device, a));
            }
        }
        let batch = limit.clamp(1, MAX_DRAIN_BATCH);
        let mut moves = Vec::new();
        for (device, a) in on_gateway.iter().take(batch) {
            let target = match to {
                Some(t) => t.to_owned(),
                None => match self
                    .policy
                    .choose(device, &self.candidates(Some(gateway_id)))
                {
                    Some(t) => t.to_owned(),
                    None => break,
                },
            };
            moves.push(
                self.set(
                    device,
                    &target,
                    Some(a),
                    "drain",
                    Some(RedirectReason::Draining),
                )
                .map_err(internal)?,
            );
        }
        self.commit(&moves).await?;
        Ok(RegistryOk::Drained(DrainReport {
            gateway_id: gateway_id.to_owned(),
            moved: moves.len() as u64,
            remaining: (on_gateway.len() - moves.len()) as u64,
        }))
    }
}

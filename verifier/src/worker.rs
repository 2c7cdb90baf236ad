//! The verifier worker: answers verification messages and admin requests.

use crate::lockout::Lockout;
use crate::store::{EnrollOutcome, Store, StoreError};
use bus::{Bus, BusError, BusOptions, Message};
use metrics::Metrics;
use protocol::admin::{
    AdminOk, AdminOp, AdminOutcome, AdminReply, AdminRequest, ImportReport, ImportRow, RejectedRow,
    MAX_ADMIN_PAYLOAD, MAX_LIST_PAGE,
};
use protocol::crypto::PlatformKey;
use protocol::onboarding::{
    check_pass_tmp, AccessOutcome, OutcomeReport, VerifyOutcome, VerifyRequest, VerifyResponse,
};
use protocol::{
    decode, peek_str_field, topics, AccessErrorCode, AdminErrorCode, DecodeError, DeviceUuid,
    ErrorBody,
};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

#[derive(Debug, Clone)]
pub struct VerifierConfig {
    /// The platform broker, "host:port".
    pub broker: String,
    pub client_id: String,
    pub username: String,
    pub password: String,
    /// The sled database directory; only this worker may open it.
    pub db_dir: PathBuf,
    /// Where verifications, flushes and the APs' outcome reports are
    /// counted. The default is a registry nobody serves.
    pub metrics: Metrics,
    /// Secure mode: seal and sign answers, lock out guessed UUIDs,
    /// rate-limit APs. None: walkthrough mode, plaintext answers.
    pub secure: Option<SecureVerify>,
}

/// The verifier's secure-mode settings.
#[derive(Debug, Clone)]
pub struct SecureVerify {
    pub key: Arc<PlatformKey>,
    /// Releases of a UUID's pass_tmp not followed by a `granted` report
    /// before the UUID is locked out.
    pub max_failures: u32,
    pub lockout: Duration,
    /// Verification requests per AP id per second.
    pub ap_rate_per_sec: u32,
}

impl VerifierConfig {
    pub fn new(broker: impl Into<String>, db_dir: impl Into<PathBuf>) -> Self {
        VerifierConfig {
            broker: broker.into(),
            client_id: "verifier".into(),
            username: "verifier".into(),
            password: String::new(),
            db_dir: db_dir.into(),
            metrics: Metrics::default(),
            secure: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum VerifierError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error("verifier task panicked: {0}")]
    Panicked(String),
}

/// A started worker; [`Worker::join`] waits for it to drain and stop.
pub struct Worker {
    task: tokio::task::JoinHandle<Result<(), VerifierError>>,
    store: Arc<Store>,
}

impl Worker {
    /// The enrollment store, for in-process readers (the platform broker
    /// checks device logins against it).
    pub fn store(&self) -> Arc<Store> {
        self.store.clone()
    }

    pub async fn join(self) -> Result<(), VerifierError> {
        match self.task.await {
            Ok(result) => result,
            Err(e) => Err(VerifierError::Panicked(e.to_string())),
        }
    }
}

/// Opens the store, connects, and spawns the worker. With
/// `ready_timeout`, returns only once subscribed (or fails); without, the
/// worker keeps trying to reach the broker in the background.
pub async fn start(
    config: VerifierConfig,
    shutdown: CancellationToken,
    ready_timeout: Option<Duration>,
) -> Result<Worker, VerifierError> {
    let store = Arc::new(Store::open(&config.db_dir)?);
    let store_handle = store.clone();
    info!(db = %config.db_dir.display(), enrolled = store.len(), "verifier store open");

    let opts = BusOptions::new(&config.broker, &config.client_id)?
        .with_credentials(&config.username, &config.password);
    // The connection outlives `shutdown` by as long as it takes to answer
    // the admin requests already queued.
    let link = CancellationToken::new();
    let filters = vec![
        topics::VERIFY_REQUEST.into(),
        topics::VERIFIER_ADMIN_REQUEST.into(),
        topics::AP_OUTCOME_ALL.into(),
    ];
    let (bus, inbox) = Bus::connect_ready(opts, filters, link.clone(), ready_timeout).await?;
    if ready_timeout.is_some() {
        info!(broker = %config.broker, "verifier serving");
    }
    let worker = Served {
        store,
        bus,
        metrics: config.metrics,
        guard: config.secure.map(|settings| Arc::new(Guard::new(settings))),
    };
    let task = tokio::spawn(serve(worker, inbox, link, shutdown));
    Ok(Worker {
        task,
        store: store_handle,
    })
}

/// Runs the worker until `shutdown` is cancelled, then finishes the admin
/// requests already taken, flushes the database and returns.
pub async fn run(config: VerifierConfig, shutdown: CancellationToken) -> Result<(), VerifierError> {
    start(config, shutdown, None).await?.join().await
}

/// What the worker's tasks share: the verify loop and the admin task.
#[derive(Clone)]
struct Served {
    store: Arc<Store>,
    bus: Bus,
    metrics: Metrics,
    guard: Option<Arc<Guard>>,
}

/// Secure mode's memory of attempts (in memory only: a restart forgets
/// lockouts, see docs/SECURITY.md).
struct Guard {
    settings: SecureVerify,
    /// Releases of each UUID's pass_tmp not yet followed by a `granted`.
    attempts: Lockout,
    /// AP id -> (tokens, last refill).
    buckets: std::sync::Mutex<HashMap<String, (f64, Instant)>>,
}

/// Bounds the rate buckets against a flood of made-up AP ids.
const MAX_TRACKED: usize = 1_000_000;

impl Guard {
    fn new(settings: SecureVerify) -> Self {
        Guard {
            attempts: Lockout::new(settings.max_failures, settings.lockout),
            settings,
            buckets: Default::default(),
        }
    }

    /// Takes one token from the AP's bucket.
    fn ap_allowed(&self, ap_id: &str) -> bool {
        let rate = f64::from(self.settings.ap_rate_per_sec);
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= MAX_TRACKED {
            buckets.clear();
        }
        let (tokens, last) = buckets.entry(ap_id.to_owned()).or_insert((rate, now));
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * rate).min(rate);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Whether the UUID may have its pass_tmp released now; counts the
    /// release as an attempt, locking the UUID at the limit.
    fn release(&self, uuid: &str) -> Result<(), Duration> {
        self.attempts.attempt(uuid)
    }

    fn granted(&self, uuid: &str) {
        self.attempts.clear(uuid);
    }
}

impl Served {
    /// Flushes the store, timing it.
    async fn flush(&self) -> Result<(), StoreError> {
        let started = Instant::now();
        let result = self.store.flush().await;
        self.metrics.store_flush("verifier", started.elapsed());
        result
    }
}

async fn serve(
    worker: Served,
    mut inbox: mpsc::Receiver<Message>,
    link: CancellationToken,
    shutdown: CancellationToken,
) -> Result<(), VerifierError> {
    // Admin requests run one at a time, off the verify path, because each
    // waits for an fsync.
    let (admin_tx, admin_rx) = mpsc::channel::<AdminRequest>(256);
    let admin_task = tokio::spawn(admin_loop(worker.clone(), admin_rx));

    loop {
        let msg = tokio::select! {
            _ = shutdown.cancelled() => break,
            msg = inbox.recv() => match msg { Some(m) => m, None => break },
        };
        dispatch(&worker, &admin_tx, msg).await;
    }

    drop(admin_tx);
    if let Err(e) = admin_task.await {
        error!(error = %e, "admin task failed");
    }
    link.cancel();
    worker.bus.closed(Duration::from_secs(3)).await;
    worker.flush().await?;
    info!("verifier stopped; store flushed");
    Ok(())
}

async fn dispatch(worker: &Served, admin_tx: &mpsc::Sender<AdminRequest>, msg: Message) {
    let bus = &worker.bus;
    match msg.topic.as_str() {
        topics::VERIFY_REQUEST => handle_verify(worker, &msg.payload).await,
        topics::VERIFIER_ADMIN_REQUEST => {
            match protocol::decode::decode_limited::<AdminRequest>(&msg.payload, MAX_ADMIN_PAYLOAD)
            {
                Ok(req) => {
                    if admin_tx.send(req).await.is_err() {
                        warn!("admin queue closed; request dropped");
                    }
                }
                Err(e) => {
                    warn!(topic = %msg.topic, error = %e, "malformed admin request");
                    if let Some(request_id) = peek_request_id(&msg.payload) {
                        let reply =
                            error_reply(request_id, AdminErrorCode::BadRequest, e.to_string());
                        publish(bus, topics::VERIFIER_ADMIN_REPLY, &reply).await;
                    }
                }
            }
        }
        topic => match topics::parse_ap_outcome(topic) {
            Some(ap_id) => record_outcome(worker, ap_id, &msg.payload),
            None => debug!(topic, "message on an unexpected topic"),
        },
    }
}

/// Counts an AP's report of how an access request ended. The AP decides
/// the outcome; the verifier is where the platform hears of it.
fn record_outcome(worker: &Served, ap_id: &str, payload: &[u8]) {
    match decode::<OutcomeReport>(payload).and_then(|r| r.validate().map(|_| r)) {
        Ok(report) => {
            worker
                .metrics
                .onboarding(report.outcome, Duration::from_millis(report.latency_ms));
            match report.outcome {
                AccessOutcome::Granted => {
                    if let Some(g) = &worker.guard {
                        g.granted(&report.uuid);
                    }
                }
                AccessOutcome::Refused(code) => {
                    warn!(target: "audit", uuid = %report.uuid, ap_id = %ap_id.escape_debug(), %code, "access attempt failed");
                }
            }
        }
        Err(e) => {
            warn!(ap_id = %ap_id.escape_debug(), error = %e, "malformed outcome report ignored")
        }
    }
}

async fn handle_verify(worker: &Served, payload: &[u8]) {
    let Served {
        store,
        bus,
        metrics,
        guard,
    } = worker;
    let checked = decode::<VerifyRequest>(payload).and_then(|req| {
        let uuid = req.validate()?;
        Ok((req, uuid))
    });
    let (req, uuid) = match checked {
        Ok(ok) => ok,
        Err(e) => {
            warn!(error = %e, "malformed verification message");
            metrics.verification("bad_request");
            answer_bad_verify(bus, payload, &e).await;
            return;
        }
    };
    let failed = |code, message: &str| VerifyOutcome::Failed {
        error: ErrorBody::new(code, message),
    };
    let outcome = match (guard, store.get(&uuid)) {
        (_, Err(e)) => {
            // The AP times out and tells the device; nothing better to say.
            error!(uuid = %uuid, error = %e, "store lookup failed");
            metrics.verification("error");
            return;
        }
        (_, Ok(None)) => failed(
            AccessErrorCode::UnknownDevice,
            "no device is enrolled with this UUID",
        ),
        (None, Ok(Some(enrollment))) => VerifyOutcome::Found {
            pass_tmp: enrollment.pass_tmp,
        },
        (Some(g), Ok(Some(enrollment))) => secure_answer(g, &req, &enrollment.pass_tmp),
    };
    metrics.verification(match &outcome {
        VerifyOutcome::Found { .. } | VerifyOutcome::Sealed { .. } => "found",
        VerifyOutcome::Failed { error } => error.code.as_str(),
    });
    debug!(uuid = %uuid, ap_id = %req.ap_id, request_id = %req.request_id, found = !matches!(outcome, VerifyOutcome::Failed { .. }), "verification answered");
    let response = VerifyResponse {
        request_id: req.request_id,
        uuid: req.uuid,
        outcome,
    };
    publish(bus, topics::verify_response(&req.ap_id), &response).await;
}

/// Secure mode: rate limit, lockout, then pass_tmp sealed to the AP.
fn secure_answer(g: &Guard, req: &VerifyRequest, pass_tmp: &str) -> VerifyOutcome {
    let failed = |code, message: String| VerifyOutcome::Failed {
        error: ErrorBody::new(code, message),
    };
    let Some(ap_key) = req.ap_key.as_deref() else {
        return failed(
            AccessErrorCode::BadRequest,
            "secure mode: the request must carry ap_key".into(),
        );
    };
    if !g.ap_allowed(&req.ap_id) {
        warn!(target: "audit", ap_id = %req.ap_id, uuid = %req.uuid, "verification refused: AP over its rate");
        // Not the device's fault, and not final: the AP passes this on and
        // the device asks again with its backoff. Nothing is released and
        // nothing counts toward the UUID's lockout.
        return failed(
            AccessErrorCode::Unavailable,
            "this AP is over its verification rate; try again shortly".into(),
        );
    }
    if let Err(left) = g.release(&req.uuid) {
        warn!(target: "audit", ap_id = %req.ap_id, uuid = %req.uuid, locked_for_s = left.as_secs(), "verification refused: UUID locked out");
        return failed(
            AccessErrorCode::TooManyAttempts,
            format!(
                "too many failed attempts for this UUID; try again in {} s",
                left.as_secs() + 1
            ),
        );
    }
    match protocol::onboarding::seal_verify_answer(&g.settings.key, req, ap_key, pass_tmp) {
        Ok(outcome) => outcome,
        Err(e) => failed(AccessErrorCode::BadRequest, format!("ap_key: {e}")),
    }
}

/// Answers `bad_request` to a verification message that did not validate,
/// if it names an AP we can answer to.
async fn answer_bad_verify(bus: &Bus, payload: &[u8], error: &DecodeError) {
    let (Some(ap_id), Some(request_id)) = (
        peek_str_field(payload, "ap_id"),
        peek_str_field(payload, "request_id"),
    ) else {
        return;
    };
    if protocol::ids::check_segment(&ap_id).is_err() || request_id.len() > 64 {
        return;
    }
    let response = VerifyResponse {
        request_id,
        uuid: peek_str_field(payload, "uuid").unwrap_or_default(),
        outcome: VerifyOutcome::Failed {
            error: ErrorBody::new(AccessErrorCode::BadRequest, error.to_string()),
        },
    };
    publish(bus, topics::verify_response(&ap_id), &response).await;
}

async fn admin_loop(worker: Served, mut rx: mpsc::Receiver<AdminRequest>) {
    while let Some(req) = rx.recv().await {
        let request_id = req.request_id.clone();
        let outcome = match apply_admin(&worker, req.op).await {
            Ok(ok) => AdminOutcome::Ok(ok),
            Err(body) => AdminOutcome::Error(body),
        };
        let reply = AdminReply {
            request_id,
            outcome,
        };
        publish(&worker.bus, topics::VERIFIER_ADMIN_REPLY, &reply).await;
    }
}

type AdminResult = Result<AdminOk, ErrorBody<AdminErrorCode>>;

fn bad(message: impl Into<String>) -> ErrorBody<AdminErrorCode> {
    ErrorBody::new(AdminErrorCode::BadRequest, message)
}

fn internal(e: StoreError) -> ErrorBody<AdminErrorCode> {
    error!(error = %e, "verifier store failure");
    ErrorBody::new(AdminErrorCode::Internal, e.to_string())
}

fn parse_uuid(uuid: &str) -> Result<DeviceUuid, ErrorBody<AdminErrorCode>> {
    DeviceUuid::parse(uuid).map_err(|e| bad(format!("uuid {uuid:?} {e}")))
}

async fn apply_admin(worker: &Served, op: AdminOp) -> AdminResult {
    let store = &worker.store;
    match op {
        AdminOp::Enroll {
            uuid,
            pass_tmp,
            replace,
        } => {
            let id = parse_uuid(&uuid)?;
            check_pass_tmp(&pass_tmp).map_err(|e| bad(format!("pass_tmp {e}")))?;
            let outcome = store.enroll(&id, &pass_tmp, replace).map_err(internal)?;
            if outcome == EnrollOutcome::Conflict {
                return Err(ErrorBody::new(
                    AdminErrorCode::AlreadyEnrolled,
                    format!(
                        "{} is enrolled with another pass_tmp; use --replace to change it",
                        id.key()
                    ),
                ));
            }
            worker.flush().await.map_err(internal)?;
            info!(uuid = %id.key(), ?outcome, "device enrolled");
            Ok(AdminOk::Enrolled {
                uuid: id.key().to_owned(),
                created: outcome == EnrollOutcome::Created,
            })
        }
        AdminOp::Import { rows } => {
            let report = import(store, rows).map_err(internal)?;
            worker.flush().await.map_err(internal)?;
            info!(
                added = report.added,
                unchanged = report.unchanged,
                rejected = report.rejected.len(),
                "import batch applied"
            );
            Ok(AdminOk::Imported(report))
        }
        AdminOp::Remove { uuid } => {
            let id = parse_uuid(&uuid)?;
            if !store.remove(&id).map_err(internal)? {
                return Err(ErrorBody::new(
                    AdminErrorCode::NotFound,
                    format!("{} is not enrolled", id.key()),
                ));
            }
            worker.flush().await.map_err(internal)?;
            info!(uuid = %id.key(), "device removed");
            Ok(AdminOk::Removed {
                uuid: id.key().to_owned(),
            })
        }
        AdminOp::Show { uuid } => {
            let id = parse_uuid(&uuid)?;
            match store.get(&id).map_err(internal)? {
                Some(e) => Ok(AdminOk::Device {
                    uuid: id.key().to_owned(),
                    enrolled_at_ms: e.enrolled_at_ms,
                }),
                None => Err(ErrorBody::new(
                    AdminErrorCode::NotFound,
                    format!("{} is not enrolled", id.key()),
                )),
            }
        }
        AdminOp::List { after, limit } => {
            let (uuids, next) = store
                .list(after.as_deref(), limit.clamp(1, MAX_LIST_PAGE))
                .map_err(internal)?;
            Ok(AdminOk::List { uuids, next })
        }
    }
}

fn import(store: &Store, rows: Vec<ImportRow>) -> Result<ImportReport, StoreError> {
    let mut report = ImportReport::default();
    for row in rows {
        let reject = |reason: String| RejectedRow {
            line: row.line,
            uuid: row.uuid.clone(),
            reason,
        };
        let id = match DeviceUuid::parse(&row.uuid) {
            Ok(id) => id,
            Err(e) => {
                report.rejected.push(reject(format!("uuid {e}")));
                continue;
            }
        };
        if let Err(e) = check_pass_tmp(&row.pass_tmp) {
            report.rejected.push(reject(format!("pass_tmp {e}")));
            continue;
        }
        match store.enroll(&id, &row.pass_tmp, false)? {
            EnrollOutcome::Created | EnrollOutcome::Replaced => report.added += 1,
            EnrollOutcome::Unchanged => report.unchanged += 1,
            EnrollOutcome::Conflict => {
                report
                    .rejected
                    .push(reject("already enrolled with another pass_tmp".into()));
            }
        }
    }
    Ok(report)
}

fn peek_request_id(payload: &[u8]) -> Option<String> {
    protocol::decode::decode_limited::<serde_json::Value>(payload, MAX_ADMIN_PAYLOAD)
        .ok()?
        .get("request_id")?
        .as_str()
        .filter(|id| !id.is_empty() && id.len() <= 64)
        .map(str::to_owned)
}

fn error_reply(request_id: String, code: AdminErrorCode, message: String) -> AdminReply {
    AdminReply {
        request_id,
        outcome: AdminOutcome::Error(ErrorBody::new(code, message)),
    }
}

async fn publish<T: serde::Serialize>(bus: &Bus, topic: impl Into<String>, msg: &T) {
    if let Err(e) = bus.publish_json(topic, msg).await {
        warn!(error = %e, "publish failed");
    }
}

/// How long a CLI waits for the worker to answer one request.
pub const DEFAULT_ADMIN_TIMEOUT: Duration = Duration::from_secs(10);

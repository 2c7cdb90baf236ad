//! The verifier worker: its config, how it starts and stops, and its errors.
//!
//! The work itself is split by job, as mini-redis splits its commands:
//! `serve.rs` takes messages and dispatches them by topic; `verify.rs`
//! answers the APs' verification requests, by `release.rs`'s rules in
//! secure mode; `access.rs` remembers the devices' own requests
//! (`requests.rs`) and wakes the questions waiting for them
//! (`parked.rs`); `proof.rs` judges the devices' proofs and registers
//! their keys, made durable by `key_flush.rs`; `guard.rs` is the rate
//! and the lockout; `onboarding.rs` is secure mode's state, owned by the
//! serve loop; `outcome.rs` counts the APs' reports; and `admin/` applies
//! admin requests one at a time, one file per operation.

mod access;
mod admin;
mod guard;
mod key_flush;
mod onboarding;
mod outcome;
mod parked;
mod proof;
mod release;
mod requests;
mod serve;
mod verify;

use crate::store::{ApRecord, EnrollmentStore, PgStore, Rekey, Store, StoreError};
use bus::{Bus, BusError, BusOptions};
use metrics::Metrics;
use protocol::crypto::PlatformKey;
use protocol::topics;
use serve::{serve, Served};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::info;

#[derive(Debug, Clone)]
pub struct VerifierConfig {
    /// The platform broker, "host:port".
    pub broker: String,
    /// MQTT over TLS with this configuration; None: plaintext.
    pub tls: Option<bus::TlsConfig>,
    pub client_id: String,
    pub username: String,
    pub password: String,
    /// The sled database directory; only this worker may open it.
    pub db_dir: PathBuf,
    /// A shared store instead of sled in `db_dir`: `postgres://…`, which
    /// several verifier instances may use at once.
    pub store_url: Option<String>,
    /// The key pass_tmps are sealed with in a shared store; every
    /// instance needs the same one [default: `db_dir` + `.key`].
    pub store_key_file: Option<PathBuf>,
    /// Share the load with other verifier instances: the APs' requests
    /// and reports and the admin requests are taken through shared
    /// subscriptions whose group names start with this.
    pub share_group: Option<String>,
    /// Where verifications, flushes and the APs' outcome reports are
    /// counted. The default is a registry nobody serves.
    pub metrics: Metrics,
    /// Secure mode: seal and sign answers, lock out guessed UUIDs,
    /// rate-limit APs. None: walkthrough mode, plaintext answers.
    pub secure: Option<SecureVerify>,
    /// APs to register at start unless already registered (the platform's
    /// bootstrap AP, on its first start).
    pub bootstrap_aps: Vec<(String, ApRecord)>,
}

/// The verifier's secure-mode settings.
#[derive(Debug, Clone)]
pub struct SecureVerify {
    pub key: Arc<PlatformKey>,
    /// Releases of a UUID's pass_tmp not followed by the device's own
    /// proof, plus proofs that did not check, before the UUID is locked
    /// out.
    pub max_failures: u32,
    pub lockout: Duration,
    /// Verification requests per AP id per second.
    pub ap_rate_per_sec: u32,
    /// What a device that proves pass_tmp again with a new key (after a
    /// factory reset) gets: that key at once, or only once an admin
    /// approves it.
    pub rekey: Rekey,
}

impl VerifierConfig {
    /// The key file pass_tmps are sealed with in a shared store:
    /// `store_key_file`, else beside `db_dir` (`db_dir` + `.key`), where the
    /// sled store keeps its own.
    pub fn store_key_path(&self) -> PathBuf {
        self.store_key_file.clone().unwrap_or_else(|| {
            let mut f = self.db_dir.as_os_str().to_owned();
            f.push(".key");
            PathBuf::from(f)
        })
    }

    pub fn new(broker: impl Into<String>, db_dir: impl Into<PathBuf>) -> Self {
        VerifierConfig {
            broker: broker.into(),
            tls: None,
            client_id: "verifier".into(),
            username: "verifier".into(),
            password: String::new(),
            db_dir: db_dir.into(),
            store_url: None,
            store_key_file: None,
            share_group: None,
            metrics: Metrics::default(),
            secure: None,
            bootstrap_aps: Vec::new(),
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
    store: Option<Arc<Store>>,
}

impl Worker {
    /// The enrollment store, for in-process readers (the platform broker
    /// checks device logins against it); None on a shared store.
    pub fn store(&self) -> Option<Arc<Store>> {
        self.store.clone()
    }

    pub async fn join(self) -> Result<(), VerifierError> {
        match self.task.await {
            Ok(result) => result,
            Err(e) => Err(VerifierError::Panicked(e.to_string())),
        }
    }
}

/// Opens the store (PostgreSQL at `store_url`, else sled in `db_dir`),
/// connects, and spawns the worker. With `ready_timeout`, returns only
/// once subscribed (or fails); without, the worker keeps trying to reach
/// the broker in the background.
pub async fn start(
    config: VerifierConfig,
    shutdown: CancellationToken,
    ready_timeout: Option<Duration>,
) -> Result<Worker, VerifierError> {
    match config.store_url.clone() {
        Some(url) => {
            let key_file = config.store_key_path();
            let store = Arc::new(PgStore::connect(&url, &key_file).await?);
            info!(store = %storage::pg::redact(&url), "verifier store: PostgreSQL");
            let task = spawn(store, config, shutdown, ready_timeout).await?;
            Ok(Worker { task, store: None })
        }
        None => {
            let store = Arc::new(Store::open(&config.db_dir)?);
            info!(db = %config.db_dir.display(), "verifier store: sled");
            let task = spawn(store.clone(), config, shutdown, ready_timeout).await?;
            Ok(Worker {
                task,
                store: Some(store),
            })
        }
    }
}

/// Registers the bootstrap APs, connects, and spawns the worker over an
/// open store. The store is chosen by the caller, once: the worker is
/// generic over it, so its calls need no dispatch.
async fn spawn<S: EnrollmentStore>(
    store: Arc<S>,
    config: VerifierConfig,
    shutdown: CancellationToken,
    ready_timeout: Option<Duration>,
) -> Result<tokio::task::JoinHandle<Result<(), VerifierError>>, VerifierError> {
    let enrolled = store.count().await?;
    info!(enrolled, "verifier store open");
    for (ap_id, record) in &config.bootstrap_aps {
        if EnrollmentStore::ap(store.as_ref(), ap_id).await?.is_none() {
            store.put_ap(ap_id, record).await?;
            info!(target: "audit", ap_id, ssids = ?record.ssids, "bootstrap AP registered");
        }
    }
    if !config.bootstrap_aps.is_empty() {
        store.flush().await?;
    }

    let opts = BusOptions::new(&config.broker, &config.client_id)?
        .with_credentials(&config.username, &config.password)
        .with_tls(config.tls.clone());
    // The connection outlives `shutdown` by as long as it takes to answer
    // the admin requests already queued.
    let link = CancellationToken::new();
    // The APs' requests and reports go to one instance of the group. In
    // secure mode the devices' own requests and proofs are subscribed by
    // every instance: the instance that answers an AP must know the
    // device's request, whichever instance the AP's request reached.
    let request = |filter| topics::request_filter(config.share_group.as_deref(), filter);
    let mut filters = vec![
        request(topics::VERIFY_REQUEST),
        request(topics::VERIFIER_ADMIN_REQUEST),
        request(topics::AP_OUTCOME_ALL),
    ];
    if config.secure.is_some() {
        // Secure mode releases pass_tmp only for requests devices made,
        // and learns of their success from their own proofs.
        filters.push(topics::access_request("+"));
        filters.push(topics::access_proof("+"));
    }
    let (bus, inbox) = Bus::connect_ready(opts, filters, link.clone(), ready_timeout).await?;
    if ready_timeout.is_some() {
        info!(broker = %config.broker, "verifier serving");
    }
    let worker = Served {
        store,
        outbox: bus::Outbox::new(bus.clone()),
        bus,
        metrics: config.metrics,
    };
    Ok(tokio::spawn(serve(
        worker,
        config.secure,
        inbox,
        link,
        shutdown,
    )))
}

/// Runs the worker until `shutdown` is cancelled, then finishes the admin
/// requests already taken, flushes the database and returns.
pub async fn run(config: VerifierConfig, shutdown: CancellationToken) -> Result<(), VerifierError> {
    start(config, shutdown, None).await?.join().await
}

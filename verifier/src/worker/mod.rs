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

use crate::store::{ApRecord, EnrollmentStore, Store, StoreError};
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
}

impl VerifierConfig {
    pub fn new(broker: impl Into<String>, db_dir: impl Into<PathBuf>) -> Self {
        VerifierConfig {
            broker: broker.into(),
            tls: None,
            client_id: "verifier".into(),
            username: "verifier".into(),
            password: String::new(),
            db_dir: db_dir.into(),
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
    let enrolled = store.count().await?;
    info!(db = %config.db_dir.display(), enrolled, "verifier store open");
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
    let mut filters = vec![
        topics::VERIFY_REQUEST.into(),
        topics::VERIFIER_ADMIN_REQUEST.into(),
        topics::AP_OUTCOME_ALL.into(),
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
    let task = tokio::spawn(serve(worker, config.secure, inbox, link, shutdown));
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

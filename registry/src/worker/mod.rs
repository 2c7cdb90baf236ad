//! The registry worker: its configuration, its error, and `start`, which
//! opens the store (sled, in `db_dir`), connects to the broker and spawns
//! the one task that owns the registry's state. That task is generic over
//! [`RegistryStore`]: the store is chosen here, once.
//!
//! The rest of the worker is split by job, as mini-redis splits a server:
//! - `state`: the state and the invariants it keeps (counts, liveness,
//!   candidates, signed answers);
//! - `serve`: the loop that takes messages one at a time, batches queries
//!   into group commits, and dispatches by topic;
//! - `announce`: committing moves, and only then telling the gateways;
//! - `rate`: how many presence reports each gateway may send;
//! - `cmd`: one file per handler (queries, status, presence, sync, and the
//!   admin operations).

mod announce;
mod cmd;
mod rate;
mod serve;
mod state;

use crate::logins::GatewayLogins;
use crate::policy::Policy;
use crate::store::{GatewayRecord, PgStore, RegistryStore, SledStore, StoreError};
use bus::{Bus, BusError, BusOptions};
use metrics::Metrics;
use protocol::crypto::PlatformKey;
use protocol::topics;
use state::{GatewayState, Registry};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tracing::info;

#[derive(Debug, Clone)]
pub struct RegistryConfig {
    pub broker: String,
    /// MQTT over TLS with this configuration; None: plaintext.
    pub tls: Option<bus::TlsConfig>,
    pub client_id: String,
    pub username: String,
    pub password: String,
    pub db_dir: PathBuf,
    /// A shared store instead of sled in `db_dir`: `postgres://…`, which
    /// several registry instances may use at once.
    pub store_url: Option<String>,
    /// Share the load with other registry instances: requests (queries,
    /// syncs, admin requests) are taken through shared subscriptions
    /// whose group names start with this (see [`topics::share_group`]).
    /// Gateway status and presence are subscribed by every instance.
    pub share_group: Option<String>,
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
    /// Secure mode: a gateway must be registered (`registry gateway add`,
    /// or the platform's own) to be believed, and its address and weight
    /// are its registration's, never its announcement's.
    pub registration_required: bool,
    /// Gateways registered at start (the platform's in-process ones, at
    /// the address they listen on), keeping what else the store knows of
    /// them (draining).
    pub bootstrap_gateways: Vec<(String, GatewayRecord)>,
    /// Kept current with the registered gateways' credentials, for the
    /// platform broker's admission.
    pub logins: Arc<GatewayLogins>,
    /// Signs a registering gateway's certificate request: the platform's
    /// CA, when it serves TLS with its own. None: no certificates issued.
    pub certificates: Option<CertificateSigner>,
}

/// Signs a PEM certificate request (the first argument) for a gateway id
/// (the second): the PEM chain, or why not. The certificate names that
/// gateway alone, never its address or a name of the platform's.
#[derive(Clone)]
pub struct CertificateSigner(pub Arc<SignFn>);

/// The signing of a [`CertificateSigner`].
pub type SignFn = dyn Fn(&str, &str) -> Result<String, String> + Send + Sync;

impl std::fmt::Debug for CertificateSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CertificateSigner(…)")
    }
}

/// How long a signed answer stays valid: a device whose gateway restarts
/// after that asks the registry again.
pub const DEFAULT_ANSWER_TTL: Duration = Duration::from_secs(3600);

impl RegistryConfig {
    pub fn new(broker: impl Into<String>, db_dir: impl Into<PathBuf>) -> Self {
        RegistryConfig {
            broker: broker.into(),
            tls: None,
            client_id: "registry".into(),
            username: "registry".into(),
            password: String::new(),
            db_dir: db_dir.into(),
            store_url: None,
            share_group: None,
            policy: Policy::default(),
            allow_unknown: true,
            metrics: Metrics::default(),
            signing_key: None,
            answer_ttl: DEFAULT_ANSWER_TTL,
            registration_required: false,
            bootstrap_gateways: Vec::new(),
            logins: Arc::default(),
            certificates: None,
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

/// Opens the store (PostgreSQL at `store_url`, else sled in `db_dir`),
/// connects, and spawns the worker; with `ready_timeout`, returns only
/// once subscribed.
pub async fn start(
    config: RegistryConfig,
    shutdown: CancellationToken,
    ready_timeout: Option<Duration>,
) -> Result<Worker, RegistryError> {
    match config.store_url.clone() {
        Some(url) => {
            let store = PgStore::connect(&url).await?;
            info!(store = %storage::pg::redact(&url), "registry store: PostgreSQL");
            spawn(store, config, shutdown, ready_timeout, true).await
        }
        None => {
            let store = SledStore::open(&config.db_dir)?;
            info!(db = %config.db_dir.display(), "registry store: sled");
            spawn(store, config, shutdown, ready_timeout, false).await
        }
    }
}

/// Loads the gateways and their counts from an open store, connects, and
/// spawns the worker over it. The store is chosen by the caller, once:
/// the worker is generic over it, so its calls need no dispatch.
async fn spawn<S: RegistryStore>(
    store: S,
    config: RegistryConfig,
    shutdown: CancellationToken,
    ready_timeout: Option<Duration>,
    shared_store: bool,
) -> Result<Worker, RegistryError> {
    for (id, mut record) in config.bootstrap_gateways.clone() {
        let known = store.gateways().await?.into_iter().find(|(g, _)| *g == id);
        if let Some((_, old)) = known {
            record.draining = old.draining;
        }
        store.put_gateway(&id, &record).await?;
    }
    if !config.bootstrap_gateways.is_empty() {
        store.flush().await?;
    }
    let mut gateways = BTreeMap::new();
    for (id, record) in store.gateways().await? {
        config.logins.set(
            &id,
            record
                .credential_sha256
                .as_deref()
                .filter(|_| record.registered),
        );
        let state = GatewayState::new(&id, record, &config.metrics);
        gateways.insert(id, state);
    }
    let devices = state::count_assigned(&store, &mut gateways).await?;
    info!(devices, gateways = gateways.len(), policy = ?config.policy, "registry store open");

    let opts = BusOptions::new(&config.broker, &config.client_id)?
        .with_credentials(&config.username, &config.password)
        .with_tls(config.tls.clone());
    let link = CancellationToken::new();
    // Requests go to one instance of the group; every instance hears
    // every gateway's status (liveness is not in the store) and presence.
    let request = |filter| topics::request_filter(config.share_group.as_deref(), filter);
    let filters = vec![
        request(topics::REGISTRY_QUERY),
        request(topics::REGISTRY_SYNC),
        request(topics::REGISTRY_ADMIN_REQUEST),
        topics::GATEWAY_STATUS_ALL.into(),
        topics::GATEWAY_PRESENCE_ALL.into(),
    ];
    let (bus, inbox) = Bus::connect_ready(opts, filters, link.clone(), ready_timeout).await?;
    if ready_timeout.is_some() {
        info!(broker = %config.broker, "registry serving");
    }
    let registry = Registry {
        store,
        outbox: bus::Outbox::new(bus.clone()),
        bus,
        policy: config.policy,
        allow_unknown: config.allow_unknown,
        gateways,
        metrics: config.metrics,
        signing_key: config.signing_key,
        answer_ttl: config.answer_ttl,
        started: Instant::now(),
        registration_required: config.registration_required,
        logins: config.logins,
        certificates: config.certificates,
        shared_store,
        refreshes: 0,
        presence_limits: rate::RateLimits::default(),
    };
    let task = tokio::spawn(registry.serve(inbox, link, shutdown));
    Ok(Worker { task })
}

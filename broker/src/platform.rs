//! The platform: the embedded broker plus its in-process workers.

use crate::certs::PlatformTls;
use crate::config::Config;
use crate::embedded::{BrokerError, EmbeddedBroker};
use crate::gateway;
use crate::security::{self, Mode, PlatformAuth, SecurityError};
use metrics::Metrics;
use protocol::crypto::PlatformKey;
use protocol::layout;
use registry::RegistryConfig;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};
use verifier::{VerifierConfig, VerifierError};

/// How long workers get to finish in-flight work after shutdown begins.
pub const DRAIN_GRACE: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    #[error(transparent)]
    Broker(#[from] BrokerError),
    #[error("verifier: {0}")]
    Verifier(#[from] VerifierError),
    #[error("registry: {0}")]
    Registry(#[from] registry::RegistryError),
    #[error(transparent)]
    Gateway(#[from] crate::gateway::GatewayError),
    #[error("{0} task panicked")]
    Panicked(&'static str),
    #[error("cannot serve metrics on {addr} (`metrics.listen`): {source}")]
    Metrics {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot create data dir {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Security(#[from] SecurityError),
    #[error("TLS: {0}")]
    Certs(#[from] crate::certs::CertError),
    #[error("workers did not stop within {0:?}")]
    DrainTimeout(Duration),
}

#[derive(Debug, Clone, Default)]
pub struct StartOptions {
    /// Run the broker alone, without in-process workers.
    pub broker_only: bool,
}

/// A running platform. Stop it with [`Platform::stop`].
pub struct Platform {
    broker: EmbeddedBroker,
    shutdown: CancellationToken,
    workers: JoinSet<(&'static str, Result<(), PlatformError>)>,
    gateways: Vec<(String, String)>,
    metrics: Metrics,
    /// The bound endpoint and its server task, unless `metrics.enabled` is off.
    metrics_endpoint: Option<(SocketAddr, tokio::task::JoinHandle<()>)>,
}

impl Platform {
    /// Starts the broker, the workers and the gateways, and returns once
    /// every one of them serves; then logs "platform ready".
    pub async fn start(
        config: &Config,
        data_dir: &Path,
        opts: StartOptions,
    ) -> Result<Self, PlatformError> {
        // pass_tmps, keys and credentials live here: the owner's only.
        storage::private_dir(data_dir)
            .and_then(|()| storage::restrict_tree(data_dir))
            .map_err(|source| PlatformError::DataDir {
                path: data_dir.to_owned(),
                source,
            })?;
        // Bound before the broker starts, so a port in use fails cleanly.
        let metrics_listener = if config.metrics.enabled {
            let addr = config.metrics.listen;
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| PlatformError::Metrics { addr, source })?;
            let bound = listener
                .local_addr()
                .map_err(|source| PlatformError::Metrics { addr, source })?;
            Some((listener, bound))
        } else {
            None
        };
        let sec = &config.security;
        let secure = sec.mode == Mode::Secure;
        let gateway_logins = Arc::new(registry::GatewayLogins::default());
        let (auth, signing_key) = if secure {
            let key_path = data_dir.join(&sec.signing_key_file);
            let key = security::load_or_create_key(&key_path)?;
            let users = security::users_with_bootstrap(sec, &layout::credentials_dir(data_dir))?;
            info!(
                public_key = %key.public().to_hex(),
                public_key_file = %security::public_key_path(&key_path).display(),
                credentials = %layout::credentials_dir(data_dir).display(),
                "secure mode: authentication by role, topic ACL, sealed onboarding, signed assignments"
            );
            (
                Arc::new(PlatformAuth::new(
                    Mode::Secure,
                    users,
                    gateway_logins.clone(),
                )),
                Some(Arc::new(key)),
            )
        } else {
            warn!("walkthrough mode: any client may connect and read every topic, and pass_tmp and Wi-Fi passwords travel in plaintext; never use it on a real network");
            (
                Arc::new(PlatformAuth::new(
                    Mode::Walkthrough,
                    Default::default(),
                    gateway_logins.clone(),
                )),
                None,
            )
        };
        let metrics = Metrics::new();
        let platform_tls = if config.tls_enabled() {
            Some(PlatformTls::load(&config.tls, data_dir)?)
        } else {
            if secure {
                warn!("TLS is off (`tls.enabled = false`): every login and token crosses the network in plaintext");
            }
            None
        };
        let listener_tls = |hosts: &[String], broker: &str| {
            platform_tls
                .as_ref()
                .map(|t| t.listener(hosts, metrics.broker_tls(broker)))
                .transpose()
        };
        let broker = EmbeddedBroker::start(
            "platform",
            &config.platform,
            auth.clone(),
            metrics.broker_lag("platform"),
            listener_tls(&[config.platform.listen.ip().to_string()], "platform")?,
        )?;
        let transport = if platform_tls.is_some() {
            "MQTT 3.1.1 over TLS"
        } else {
            "MQTT 3.1.1, plaintext"
        };
        info!(listen = %broker.addr(), protocol = transport, "platform broker listening");
        let (internal_user, internal_password) = broker.internal_login();
        let internal = (internal_user.to_owned(), internal_password.to_owned());
        let internal_tls = || broker.internal_tls().map(|t| t.config());

        let shutdown = CancellationToken::new();
        let metrics_endpoint = metrics_listener.map(|(listener, bound)| {
            let task = tokio::spawn(metrics::serve(
                listener,
                metrics.clone(),
                shutdown.child_token(),
            ));
            info!(listen = %bound, "metrics at http://{bound}{}", metrics::METRICS_PATH);
            (bound, task)
        });
        let mut workers = JoinSet::new();
        if config.verifier.enabled && !opts.broker_only {
            let mut vc = VerifierConfig::new(broker.addr().to_string(), data_dir.join("verifier"));
            vc.tls = internal_tls();
            vc.metrics = metrics.clone();
            (vc.username, vc.password) = internal.clone();
            vc.secure = secure.then(|| verifier::SecureVerify {
                key: signing_key
                    .clone()
                    .unwrap_or_else(|| Arc::new(PlatformKey::generate())),
                max_failures: sec.max_failures,
                lockout: Duration::from_secs(sec.lockout_secs),
                ap_rate_per_sec: sec.ap_rate_per_sec,
            });
            if secure {
                vc.bootstrap_aps =
                    security::bootstrap_aps(sec, &layout::credentials_dir(data_dir))?;
            }
            let worker =
                verifier::start(vc, shutdown.child_token(), Some(Duration::from_secs(10))).await?;
            // The platform's verifier is on sled, always: its store is
            // there for the broker's synchronous login checks.
            if let Some(store) = worker.store() {
                let directory: Arc<dyn security::Directory> = store;
                auth.set_directory(&directory);
            }
            workers.spawn(
                async move { ("verifier", worker.join().await.map_err(PlatformError::from)) },
            );
        }
        // The in-process gateways' ports are fixed now, so that they can be
        // registered, at the address they will listen on, before they
        // announce themselves.
        let mut gateway_sections = Vec::new();
        if !opts.broker_only {
            for section in &config.gateways {
                let mut section = section.clone();
                section.listen = free_listen(section.listen)?;
                gateway_sections.push(section);
            }
        }
        if config.registry.enabled && !opts.broker_only {
            let mut rc = RegistryConfig::new(broker.addr().to_string(), data_dir.join("registry"));
            rc.tls = internal_tls();
            rc.certificates = platform_tls.as_ref().and_then(PlatformTls::gateway_signer);
            rc.registration_required = secure;
            rc.logins = gateway_logins.clone();
            rc.bootstrap_gateways = gateway_sections
                .iter()
                .map(|g| {
                    let record = registry::store::GatewayRecord {
                        address: g.advertised(g.listen),
                        weight: g.weight,
                        draining: false,
                        registered: true,
                        credential_sha256: None,
                    };
                    (g.id.clone(), record)
                })
                .collect();
            rc.policy = config.registry.policy;
            rc.allow_unknown = config.registry.allow_unknown;
            rc.metrics = metrics.clone();
            (rc.username, rc.password) = internal.clone();
            rc.signing_key = signing_key.clone();
            let worker =
                registry::start(rc, shutdown.child_token(), Some(Duration::from_secs(10))).await?;
            workers.spawn(
                async move { ("registry", worker.join().await.map_err(PlatformError::from)) },
            );
        }
        let mut gateways = Vec::new();
        if !opts.broker_only {
            for section in &gateway_sections {
                let gw_security = gateway::GatewaySecurity {
                    login: internal.clone(),
                    platform_key: signing_key.as_ref().map(|k| k.public()),
                    platform_tls: broker.internal_tls().cloned(),
                };
                let name = format!("gateway-{}", section.id);
                let gw = gateway::start(
                    section,
                    &config.platform,
                    &broker.addr().to_string(),
                    &gw_security,
                    gateway::Served {
                        lag: metrics.broker_lag(&name),
                        tls: platform_tls
                            .as_ref()
                            .map(|t| t.gateway(&section.id, metrics.broker_tls(&name)))
                            .transpose()?,
                    },
                    shutdown.child_token(),
                )
                .await?;
                gateways.push((gw.id.clone(), gw.address.clone()));
                workers.spawn(async move {
                    gw.join().await;
                    ("gateway", Ok(()))
                });
            }
        }
        info!(
            listen = %broker.addr(),
            workers = workers.len() - gateways.len(),
            gateways = gateways.len(),
            "platform ready"
        );
        Ok(Platform {
            broker,
            shutdown,
            workers,
            gateways,
            metrics,
            metrics_endpoint,
        })
    }

    /// Where the metrics endpoint listens, if it is enabled: the bound
    /// address, so a config with port 0 learns its port here.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_endpoint.as_ref().map(|(addr, _)| *addr)
    }

    /// The platform's metrics, served or not.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The in-process gateways: (id, advertised address).
    pub fn gateways(&self) -> &[(String, String)] {
        &self.gateways
    }

    pub fn broker_addr(&self) -> SocketAddr {
        self.broker.addr()
    }

    /// Runs until `stop` is cancelled or a worker stops on its own (an
    /// error), then drains every worker within [`DRAIN_GRACE`].
    pub async fn run_until(mut self, stop: CancellationToken) -> Result<(), PlatformError> {
        let mut result = Ok(());
        if !self.workers.is_empty() {
            tokio::select! {
                _ = stop.cancelled() => {}
                Some(done) = self.workers.join_next() => result = worker_result(done),
            }
        } else {
            stop.cancelled().await;
        }
        self.shutdown.cancel();
        let metrics_task = self.metrics_endpoint.take().map(|(_, task)| task);
        let drain = async {
            while let Some(done) = self.workers.join_next().await {
                let r = worker_result(done);
                if result.is_ok() {
                    result = r;
                }
            }
            // Scrapes in progress end with the shutdown token.
            if let Some(task) = metrics_task {
                let _ = task.await;
            }
        };
        if tokio::time::timeout(DRAIN_GRACE, drain).await.is_err() {
            error!(grace = ?DRAIN_GRACE, "workers did not drain in time");
            return Err(PlatformError::DrainTimeout(DRAIN_GRACE));
        }
        if result.is_ok() {
            info!("platform stopped");
        }
        result
    }

    /// Stops the workers, waiting for them to drain and flush. The broker
    /// thread itself lives on until the process exits.
    pub async fn stop(self) -> Result<(), PlatformError> {
        let stop = CancellationToken::new();
        stop.cancel();
        self.run_until(stop).await
    }
}

type WorkerExit = Result<(&'static str, Result<(), PlatformError>), tokio::task::JoinError>;

fn worker_result(done: WorkerExit) -> Result<(), PlatformError> {
    match done {
        Ok((_, Ok(()))) => Ok(()),
        Ok((name, Err(e))) => {
            error!(worker = name, error = %e, "worker failed");
            Err(e)
        }
        Err(e) => Err(PlatformError::Verifier(VerifierError::Panicked(
            e.to_string(),
        ))),
    }
}

/// `listen` with its port chosen now, if it asks for any free one (port
/// 0): the address an in-process gateway is registered at must be known
/// before it starts.
fn free_listen(listen: SocketAddr) -> Result<SocketAddr, PlatformError> {
    if listen.port() != 0 {
        return Ok(listen);
    }
    std::net::TcpListener::bind(listen)
        .and_then(|l| l.local_addr())
        .map_err(|source| {
            PlatformError::Broker(BrokerError::Bind {
                addr: listen,
                source,
            })
        })
}

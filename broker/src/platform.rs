//! The platform: the embedded broker plus its in-process workers.

use crate::config::Config;
use crate::embedded::{BrokerError, EmbeddedBroker};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};
use verifier::{VerifierConfig, VerifierError};

/// How long workers get to finish in-flight work after shutdown begins.
pub const DRAIN_GRACE: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    #[error(transparent)]
    Broker(#[from] BrokerError),
    #[error("verifier: {0}")]
    Verifier(#[from] VerifierError),
    #[error("cannot create data dir {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
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
    verifier: Option<verifier::Worker>,
}

impl Platform {
    /// Starts the broker and the workers, and returns once they serve.
    pub async fn start(
        config: &Config,
        data_dir: &Path,
        opts: StartOptions,
    ) -> Result<Self, PlatformError> {
        std::fs::create_dir_all(data_dir).map_err(|source| PlatformError::DataDir {
            path: data_dir.to_owned(),
            source,
        })?;
        let broker = EmbeddedBroker::start("platform", &config.platform)?;
        info!(listen = %broker.addr(), protocol = "MQTT 3.1.1", "platform broker listening");

        let shutdown = CancellationToken::new();
        let verifier = if config.verifier.enabled && !opts.broker_only {
            let vc = VerifierConfig::new(broker.addr().to_string(), data_dir.join("verifier"));
            Some(verifier::start(vc, shutdown.child_token(), Some(Duration::from_secs(10))).await?)
        } else {
            None
        };
        Ok(Platform {
            broker,
            shutdown,
            verifier,
        })
    }

    pub fn broker_addr(&self) -> SocketAddr {
        self.broker.addr()
    }

    /// Runs until `stop` is cancelled or a worker fails, then drains.
    pub async fn run_until(mut self, stop: CancellationToken) -> Result<(), PlatformError> {
        let failed = match self.verifier.take() {
            Some(worker) => {
                let mut join = tokio::spawn(worker.join());
                tokio::select! {
                    _ = stop.cancelled() => { self.verifier = None; self.shutdown.cancel(); await_worker(&mut join).await }
                    res = &mut join => Some(flatten(res)),
                }
            }
            None => {
                stop.cancelled().await;
                None
            }
        };
        self.shutdown.cancel();
        match failed {
            Some(Err(e)) => Err(e),
            _ => {
                info!("platform stopped");
                Ok(())
            }
        }
    }

    /// Stops the workers, waiting for them to drain and flush. The broker
    /// thread itself lives on until the process exits.
    pub async fn stop(self) -> Result<(), PlatformError> {
        let stop = CancellationToken::new();
        stop.cancel();
        self.run_until(stop).await
    }
}

type JoinResult = Result<Result<(), VerifierError>, tokio::task::JoinError>;

fn flatten(res: JoinResult) -> Result<(), PlatformError> {
    match res {
        Ok(inner) => inner.map_err(PlatformError::from),
        Err(e) => Err(PlatformError::Verifier(VerifierError::Panicked(
            e.to_string(),
        ))),
    }
}

async fn await_worker(
    join: &mut tokio::task::JoinHandle<Result<(), VerifierError>>,
) -> Option<Result<(), PlatformError>> {
    match tokio::time::timeout(DRAIN_GRACE, join).await {
        Ok(res) => Some(flatten(res)),
        Err(_) => {
            error!("verifier did not drain in time");
            Some(Err(PlatformError::DrainTimeout(DRAIN_GRACE)))
        }
    }
}

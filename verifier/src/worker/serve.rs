//! The serve loop: takes each message off the bus and dispatches it by
//! topic, and on shutdown drains the admin queue and flushes the store.
//!
//! Verification requests are answered inline; admin requests go to their
//! own task, because each waits for an fsync and verification answers must
//! not wait behind one.

use super::verify::Guard;
use super::{admin, outcome, verify, VerifierError};
use crate::store::{EnrollmentStore, StoreError};
use bus::{Bus, Message};
use metrics::Metrics;
use protocol::topics::{Level, Topic};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

/// What the worker's tasks share: the verify loop and the admin task.
pub(super) struct Served<S> {
    pub(super) store: Arc<S>,
    pub(super) bus: Bus,
    pub(super) metrics: Metrics,
    pub(super) guard: Option<Arc<Guard>>,
}

// By hand: a derive would ask for `S: Clone`, and only the `Arc` is cloned.
impl<S> Clone for Served<S> {
    fn clone(&self) -> Self {
        Served {
            store: self.store.clone(),
            bus: self.bus.clone(),
            metrics: self.metrics.clone(),
            guard: self.guard.clone(),
        }
    }
}

impl<S: EnrollmentStore> Served<S> {
    /// Flushes the store, timing it.
    pub(super) async fn flush(&self) -> Result<(), StoreError> {
        let started = Instant::now();
        let result = self.store.flush().await;
        self.metrics.store_flush("verifier", started.elapsed());
        result
    }
}

pub(super) async fn serve<S: EnrollmentStore>(
    worker: Served<S>,
    mut inbox: mpsc::Receiver<Message>,
    link: CancellationToken,
    shutdown: CancellationToken,
) -> Result<(), VerifierError> {
    // Admin requests run one at a time, off the verify path, because each
    // waits for an fsync.
    let (admin_tx, admin_rx) = mpsc::channel(256);
    let admin_task = tokio::spawn(admin::admin_loop(worker.clone(), admin_rx));

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

async fn dispatch<S: EnrollmentStore>(worker: &Served<S>, admin_tx: &admin::Queue, msg: Message) {
    match Topic::parse(&msg.topic) {
        Some(Topic::VerifyRequest) => verify::handle_verify(worker, &msg.payload).await,
        Some(Topic::VerifierAdminRequest) => admin::submit(&worker.bus, admin_tx, &msg).await,
        Some(Topic::ApOutcome {
            ap_id: Level::Id(ap_id),
        }) => outcome::record_outcome(worker, ap_id, &msg.payload),
        _ => debug!(topic = %msg.topic, "message on an unexpected topic"),
    }
}

/// Publishes an answer; a failure is logged, since the asker times out.
pub(super) async fn publish<T: serde::Serialize>(bus: &Bus, topic: impl Into<String>, msg: &T) {
    if let Err(e) = bus.publish_json(topic, msg).await {
        warn!(error = %e, "publish failed");
    }
}

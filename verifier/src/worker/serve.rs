//! The serve loop: takes each message off the bus and dispatches it by
//! topic, and on shutdown drains the admin queue and flushes the store.
//!
//! Verification requests, and in secure mode the devices' requests and
//! proofs, are handled inline, one at a time, by this loop, which owns
//! secure mode's state ([`Onboarding`]); admin requests and the flushes
//! of registered keys go to tasks of their own, because each waits for an
//! fsync and verification answers must not wait behind one.

use super::key_flush::KeyFlush;
use super::onboarding::Onboarding;
use super::{access, admin, outcome, proof, release, verify, SecureVerify, VerifierError};
use crate::store::{EnrollmentStore, StoreError};
use bus::{Bus, Message, Outbox};
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
    /// Every answer goes out here, so that the serve loop never waits on
    /// the link that fills its inbox (see [`bus::Outbox`]).
    pub(super) outbox: Outbox,
    pub(super) metrics: Metrics,
}

// By hand: a derive would ask for `S: Clone`, and only the `Arc` is cloned.
impl<S> Clone for Served<S> {
    fn clone(&self) -> Self {
        Served {
            store: self.store.clone(),
            bus: self.bus.clone(),
            outbox: self.outbox.clone(),
            metrics: self.metrics.clone(),
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
    secure: Option<SecureVerify>,
    mut inbox: mpsc::Receiver<Message>,
    link: CancellationToken,
    shutdown: CancellationToken,
) -> Result<(), VerifierError> {
    // Admin requests run one at a time, off the verify path, because each
    // waits for an fsync.
    let (admin_tx, admin_rx) = mpsc::channel(256);
    let admin_task = tokio::spawn(admin::admin_loop(worker.clone(), admin_rx));
    let flush_stop = CancellationToken::new();
    let mut flush_task = None;
    let mut onboarding = secure.map(|settings| {
        let (keys, task) = KeyFlush::spawn(worker.clone(), flush_stop.clone());
        flush_task = Some(task);
        Onboarding::new(settings, keys)
    });

    loop {
        let parked_until = onboarding.as_ref().and_then(|o| o.parked.next_deadline());
        let msg = tokio::select! {
            _ = shutdown.cancelled() => break,
            // Not polled, so no timer armed, while nothing is parked.
            _ = tokio::time::sleep_until(parked_until.map_or_else(tokio::time::Instant::now, tokio::time::Instant::from_std)), if parked_until.is_some() => {
                if let Some(o) = onboarding.as_mut() {
                    release::expire(&worker, o).await;
                }
                continue;
            }
            msg = inbox.recv() => match msg { Some(m) => m, None => break },
        };
        dispatch(&worker, onboarding.as_mut(), &admin_tx, msg).await;
    }

    drop(admin_tx);
    if let Err(e) = admin_task.await {
        error!(error = %e, "admin task failed");
    }
    // The flush below covers whatever keys the flusher had not flushed.
    flush_stop.cancel();
    if let Some(task) = flush_task {
        if let Err(e) = task.await {
            error!(error = %e, "key flush task failed");
        }
    }
    if !worker.outbox.drained(Duration::from_secs(3)).await {
        warn!(
            queued = worker.outbox.queued(),
            "verifier stopping with answers not handed to the broker"
        );
    }
    link.cancel();
    worker.bus.closed(Duration::from_secs(3)).await;
    worker.flush().await?;
    info!("verifier stopped; store flushed");
    Ok(())
}

async fn dispatch<S: EnrollmentStore>(
    worker: &Served<S>,
    onboarding: Option<&mut Onboarding>,
    admin_tx: &admin::Queue,
    msg: Message,
) {
    match (Topic::parse(&msg.topic), onboarding) {
        (Some(Topic::VerifyRequest), onboarding) => {
            verify::handle_verify(worker, onboarding, &msg.payload).await
        }
        (
            Some(Topic::AccessRequest {
                ssid: Level::Id(ssid),
            }),
            Some(onboarding),
        ) => access::on_access_request(worker, onboarding, ssid, &msg.payload).await,
        (
            Some(Topic::AccessProof {
                ssid: Level::Id(ssid),
            }),
            Some(onboarding),
        ) => proof::on_proof(worker, onboarding, ssid, &msg.payload).await,
        (Some(Topic::VerifierAdminRequest), _) => {
            admin::submit(&worker.outbox, admin_tx, &msg).await
        }
        (
            Some(Topic::ApOutcome {
                ap_id: Level::Id(ap_id),
            }),
            _,
        ) => outcome::record_outcome(worker, ap_id, &msg.payload),
        _ => debug!(topic = %msg.topic, "message on an unexpected topic"),
    }
}

/// Publishes an answer; a failure is logged, since the asker times out.
pub(super) fn publish<T: serde::Serialize>(outbox: &Outbox, topic: impl Into<String>, msg: &T) {
    if let Err(e) = outbox.publish_json(topic, msg) {
        warn!(error = %e, "publish failed");
    }
}

//! Group commit of the device keys registered from proofs.
//!
//! A key is written to the store on the serve loop (visible at once, no
//! fsync), and made durable by this task: every registration asks for a
//! flush, and all those asked while one is running share the next. The
//! verdict that lets the AP grant the device is sent only once a flush
//! that began after the key was written has ended ([`KeyFlush::durable`]),
//! so a crash never leaves a device joined with a key the platform forgot;
//! and the serve loop never waits behind an fsync itself.

use super::serve::Served;
use crate::store::EnrollmentStore;
use std::future::Future;
use std::sync::Arc;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::error;

/// The serve loop's handle on the flusher.
pub(super) struct KeyFlush {
    wanted: Arc<Notify>,
    /// Flushes started so far.
    started: watch::Receiver<u64>,
    /// Flushes ended so far, with their outcome: `(count, ok)`.
    ended: watch::Receiver<(u64, bool)>,
}

impl KeyFlush {
    /// Starts the flusher; it runs until `stop`.
    pub(super) fn spawn<S: EnrollmentStore>(
        worker: Served<S>,
        stop: CancellationToken,
    ) -> (Self, JoinHandle<()>) {
        let wanted = Arc::new(Notify::new());
        let (started_tx, started) = watch::channel(0);
        let (ended_tx, ended) = watch::channel((0, true));
        let task = tokio::spawn(flusher(worker, wanted.clone(), started_tx, ended_tx, stop));
        (
            KeyFlush {
                wanted,
                started,
                ended,
            },
            task,
        )
    }

    /// Asks for a flush soon. Never waits: a request made while a flush
    /// runs is kept (one permit) and served by the next one.
    pub(super) fn soon(&self) {
        self.wanted.notify_one();
    }

    /// Asks for a flush, and resolves once one that began after this call
    /// has ended: true if it succeeded, false if it failed or the flusher
    /// stopped first.
    pub(super) fn durable(&self) -> impl Future<Output = bool> + Send + 'static {
        let target = *self.started.borrow() + 1;
        let mut ended = self.ended.clone();
        self.soon();
        async move {
            match ended.wait_for(|(count, _)| *count >= target).await {
                Ok(state) => state.1,
                Err(_) => false,
            }
        }
    }
}

async fn flusher<S: EnrollmentStore>(
    worker: Served<S>,
    wanted: Arc<Notify>,
    started: watch::Sender<u64>,
    ended: watch::Sender<(u64, bool)>,
    stop: CancellationToken,
) {
    let mut count = 0;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = wanted.notified() => {}
        }
        count += 1;
        started.send_replace(count);
        let ok = match worker.flush().await {
            Ok(()) => true,
            Err(e) => {
                // The keys stay written; the next registration or the
                // flush at shutdown tries again.
                error!(error = %e, "flushing registered device keys failed");
                false
            }
        };
        ended.send_replace((count, ok));
    }
}

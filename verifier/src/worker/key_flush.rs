//! Group commit of the device keys registered from proofs.
//!
//! A key is written to the store on the serve loop (visible at once, no
//! fsync), and made durable soon after by this task: every registration
//! asks for a flush, and all those asked while one is running share the
//! next. So a burst of onboardings costs a few flushes, not one each, and
//! no verification answer ever waits behind an fsync.

use super::serve::Served;
use crate::store::EnrollmentStore;
use std::sync::Arc;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::error;

/// The serve loop's handle on the flusher.
pub(super) struct KeyFlush {
    wanted: Arc<Notify>,
}

impl KeyFlush {
    /// Starts the flusher; it runs until `stop`.
    pub(super) fn spawn<S: EnrollmentStore>(
        worker: Served<S>,
        stop: CancellationToken,
    ) -> (Self, JoinHandle<()>) {
        let wanted = Arc::new(Notify::new());
        let task = tokio::spawn(flusher(worker, wanted.clone(), stop));
        (KeyFlush { wanted }, task)
    }

    /// Asks for a flush soon. Never waits: a request made while a flush
    /// runs is kept (one permit) and served by the next one.
    pub(super) fn soon(&self) {
        self.wanted.notify_one();
    }
}

async fn flusher<S: EnrollmentStore>(
    worker: Served<S>,
    wanted: Arc<Notify>,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = wanted.notified() => {}
        }
        if let Err(e) = worker.flush().await {
            // The keys stay written; the next registration or the flush at
            // shutdown tries again.
            error!(error = %e, "flushing registered device keys failed");
        }
    }
}

//! Which devices are connected to a gateway: gathered from their presence
//! messages on its broker without ever blocking that broker's link, and
//! reported to the registry in coalesced batches.

use bus::{Bus, Message};
use protocol::decode;
use protocol::gateway::{Presence, PresenceReport, ASSIGN_CHUNK};
use protocol::topics::{self, Level, Topic};
use std::collections::HashSet;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tracing::warn;

/// Presence not yet reported: each device's latest state, so a burst of
/// connects and disconnects costs a few reports, not one per event.
#[derive(Default)]
pub(super) struct PendingPresence {
    latest: std::sync::Mutex<std::collections::HashMap<String, bool>>,
    added: tokio::sync::Notify,
    /// The devices connected here now, as their presence says.
    connected: std::sync::Mutex<HashSet<String>>,
}

impl PendingPresence {
    fn record(&self, device_id: &str, online: bool) {
        {
            let mut connected = self.connected.lock().unwrap_or_else(|e| e.into_inner());
            if online {
                connected.insert(device_id.to_owned());
            } else {
                connected.remove(device_id);
            }
        }
        self.latest
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(device_id.to_owned(), online);
        self.added.notify_one();
    }

    /// The devices connected here that `admitted` does not list.
    pub(super) fn connected_outside(&self, admitted: &HashSet<String>) -> Vec<String> {
        self.connected
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|d| !admitted.contains(*d))
            .cloned()
            .collect()
    }

    fn take(&self) -> std::collections::HashMap<String, bool> {
        std::mem::take(&mut *self.latest.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// Takes every presence message off the local broker at once; never waits
/// on anything but its inbox.
pub(super) async fn collect_presence(
    mut inbox: tokio::sync::mpsc::Receiver<Message>,
    pending: Arc<PendingPresence>,
    shutdown: CancellationToken,
) {
    loop {
        let msg = tokio::select! {
            _ = shutdown.cancelled() => return,
            msg = inbox.recv() => match msg {
                Some(msg) => msg,
                None => return,
            },
        };
        let Some(Topic::DevicePresence {
            device_id: Level::Id(device_id),
        }) = Topic::parse(&msg.topic)
        else {
            continue;
        };
        match decode::<Presence>(&msg.payload) {
            Ok(p) => pending.record(device_id, p.online),
            Err(e) => warn!(device_id, error = %e, "malformed presence"),
        }
    }
}

/// Sends what the collector gathered to the registry, in reports of at
/// most [`ASSIGN_CHUNK`] devices per list; flushes what is left at shutdown.
pub(super) async fn report_presence(
    gateway_id: String,
    up: Bus,
    pending: Arc<PendingPresence>,
    shutdown: CancellationToken,
) {
    loop {
        let stopping = tokio::select! {
            _ = shutdown.cancelled() => true,
            _ = pending.added.notified() => false,
        };
        let mut online = Vec::new();
        let mut offline = Vec::new();
        for (device, is_online) in pending.take() {
            if is_online {
                online.push(device);
            } else {
                offline.push(device);
            }
        }
        let reports = online
            .chunks(ASSIGN_CHUNK)
            .map(|c| PresenceReport {
                online: c.to_vec(),
                offline: Vec::new(),
            })
            .chain(offline.chunks(ASSIGN_CHUNK).map(|c| PresenceReport {
                online: Vec::new(),
                offline: c.to_vec(),
            }));
        for report in reports {
            if let Err(e) = up
                .publish_json(topics::gateway_presence(&gateway_id), &report)
                .await
            {
                warn!(error = %e, "could not report presence");
            }
        }
        if stopping {
            return;
        }
    }
}

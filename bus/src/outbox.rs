//! Publishing that never waits on the link.
//!
//! A [`Bus`] delivers incoming messages into a bounded inbox, and its
//! network task waits while the inbox is full; [`Bus::publish`] waits while
//! the network task's request queue is full. A worker that reads its inbox
//! and publishes from the same loop can therefore deadlock under load: it
//! waits for room in the request queue, which only the network task makes,
//! while the network task waits for room in the inbox, which only the
//! worker makes. Nothing times out, and the worker stops answering for
//! good (the registry did, under a drain of 10,000 devices).
//!
//! An [`Outbox`] breaks that cycle: its publishes are queued at once, in
//! order, and a task of their own hands them to the bus. What it holds is
//! bounded by what its owner produces, which is bounded by what that owner
//! reads.

use crate::client::{Bus, BusError};
use serde::Serialize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, Notify};

/// A non-blocking, ordered publisher over one [`Bus`] (see the module).
/// Cheap to clone; all clones share one queue.
#[derive(Clone)]
pub struct Outbox {
    tx: mpsc::UnboundedSender<(String, Vec<u8>)>,
    queued: Arc<Queued>,
}

#[derive(Default)]
struct Queued {
    count: AtomicUsize,
    empty: Notify,
}

impl Outbox {
    /// An outbox over `bus`. Its task ends when every clone is dropped, or
    /// when the bus is closed.
    pub fn new(bus: Bus) -> Outbox {
        let (tx, mut rx) = mpsc::unbounded_channel::<(String, Vec<u8>)>();
        let queued = Arc::new(Queued::default());
        let counter = queued.clone();
        tokio::spawn(async move {
            while let Some((topic, payload)) = rx.recv().await {
                let sent = bus.publish(topic, payload).await;
                if counter.count.fetch_sub(1, Ordering::AcqRel) == 1 {
                    counter.empty.notify_waiters();
                }
                if sent.is_err() {
                    break;
                }
            }
            // Closed: what is left will not be sent; nobody should wait.
            counter.count.store(0, Ordering::Release);
            counter.empty.notify_waiters();
        });
        Outbox { tx, queued }
    }

    /// Queues a QoS 1 publish and returns at once. Fails only once the
    /// bus is closed.
    pub fn publish(&self, topic: impl Into<String>, payload: Vec<u8>) -> Result<(), BusError> {
        self.queued.count.fetch_add(1, Ordering::AcqRel);
        self.tx.send((topic.into(), payload)).map_err(|_| {
            self.queued.count.fetch_sub(1, Ordering::AcqRel);
            BusError::Closed
        })
    }

    pub fn publish_json<T: Serialize>(
        &self,
        topic: impl Into<String>,
        msg: &T,
    ) -> Result<(), BusError> {
        self.publish(topic, protocol::encode(msg))
    }

    /// Publishes queued and not handed to the bus yet.
    pub fn queued(&self) -> usize {
        self.queued.count.load(Ordering::Acquire)
    }

    /// Waits, at most `timeout`, until everything queued so far is handed
    /// to the bus: before a clean shutdown closes the link, so that the
    /// link's own flush sends it. Returns whether it got there.
    pub async fn drained(&self, timeout: Duration) -> bool {
        let wait = async {
            loop {
                let empty = self.queued.empty.notified();
                if self.queued() == 0 {
                    return;
                }
                empty.await;
            }
        };
        tokio::time::timeout(timeout, wait).await.is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::BusOptions;
    use tokio_util::sync::CancellationToken;

    #[tokio::test]
    async fn publishes_queue_at_once_and_a_closed_bus_fails_them() {
        // Nothing listens on this port: the bus never connects.
        let opts = BusOptions::new("127.0.0.1:9", "outbox-test").unwrap();
        let stop = CancellationToken::new();
        let (bus, _inbox) = Bus::connect(opts, Vec::new(), stop.clone());
        let outbox = Outbox::new(bus.clone());
        for i in 0..5000 {
            // More than the bus's request queue holds: none of these waits.
            outbox.publish("t", vec![i as u8]).unwrap();
        }
        assert!(outbox.queued() > 0);
        assert!(!outbox.drained(Duration::from_millis(100)).await);
        stop.cancel();
        bus.closed(Duration::from_secs(5)).await;
        assert!(outbox.drained(Duration::from_secs(5)).await);
    }
}

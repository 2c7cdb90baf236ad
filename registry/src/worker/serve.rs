//! The worker's loop: one message at a time, queries grouped into one
//! commit, every other message dispatched by topic to its handler in `cmd`.
//!
//! **One task owns the state**, and this loop is that task: a handler runs
//! to completion before the next message is taken, so two changes to one
//! assignment never race. The cost is that a slow fsync delays everything
//! behind it; group commit spreads it over every query already waiting.

use super::state::Registry;
use super::RegistryError;
use crate::store::RegistryStore;
use bus::Message;
use protocol::topics::{self, Level, Topic};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// Gateway queries handled in one group commit at most.
const MAX_QUERY_BATCH: usize = 1024;

impl<S: RegistryStore> Registry<S> {
    /// Runs until `shutdown` or the broker link closes, then flushes.
    pub(super) async fn serve(
        mut self,
        mut inbox: mpsc::Receiver<Message>,
        link: CancellationToken,
        shutdown: CancellationToken,
    ) -> Result<(), RegistryError> {
        let mut queries = Vec::new();
        let mut refresh = tokio::time::interval(super::cmd::REFRESH);
        refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        refresh.tick().await;
        loop {
            let msg = tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = refresh.tick(), if self.shared_store => {
                    self.refresh().await;
                    continue;
                }
                msg = inbox.recv() => match msg { Some(m) => m, None => break },
            };
            // Group commit: the queries already waiting are answered
            // together, after one commit, in the order they arrived. Any
            // other message first settles the queries before it.
            let mut next = Some(msg);
            while let Some(msg) = next {
                if msg.topic == topics::REGISTRY_QUERY {
                    queries.push(msg.payload);
                    if queries.len() >= MAX_QUERY_BATCH {
                        self.on_queries(std::mem::take(&mut queries)).await;
                    }
                } else {
                    if !queries.is_empty() {
                        self.on_queries(std::mem::take(&mut queries)).await;
                    }
                    self.dispatch(msg).await;
                }
                next = inbox.try_recv().ok();
            }
            if !queries.is_empty() {
                self.on_queries(std::mem::take(&mut queries)).await;
            }
        }
        if !self.outbox.drained(Duration::from_secs(3)).await {
            warn!(
                queued = self.outbox.queued(),
                "registry stopping with answers not handed to the broker"
            );
        }
        link.cancel();
        self.bus.closed(Duration::from_secs(3)).await;
        self.flush().await?;
        info!("registry stopped; store flushed");
        Ok(())
    }

    async fn dispatch(&mut self, msg: Message) {
        match Topic::parse(&msg.topic) {
            Some(Topic::RegistryQuery) => self.on_queries(vec![msg.payload]).await,
            Some(Topic::RegistrySync) => self.on_sync(&msg.payload).await,
            Some(Topic::RegistryAdminRequest) => self.on_admin(&msg.payload).await,
            Some(Topic::GatewayStatus {
                gateway_id: Level::Id(gw),
            }) => self.on_status(gw, &msg.payload).await,
            Some(Topic::GatewayPresence {
                gateway_id: Level::Id(gw),
            }) => self.on_presence(gw, &msg.payload).await,
            _ => debug!(topic = %msg.topic, "message on an unexpected topic"),
        }
    }
}

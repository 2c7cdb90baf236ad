use crate::{Bus, BusError, BusOptions, Pending};
use protocol::Correlated;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::debug;

#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error("no answer within {0:?}")]
    NoAnswer(Duration),
}

/// Request/response over MQTT: publish on one topic, wait for the reply
/// with the same request id on a shared reply topic. What the admin CLIs
/// use to talk to the running workers.
pub struct RpcClient<R> {
    bus: Bus,
    pending: Arc<Pending<String, R>>,
    request_topic: String,
    timeout: Duration,
    shutdown: CancellationToken,
}

impl<R: Correlated + DeserializeOwned + Send + 'static> RpcClient<R> {
    /// Connects and waits until replies can be received. `max_reply`
    /// bounds the size of a reply.
    pub async fn connect(
        opts: BusOptions,
        request_topic: &str,
        reply_topic: &str,
        max_reply: usize,
        timeout: Duration,
    ) -> Result<Self, RpcError> {
        let shutdown = CancellationToken::new();
        let (bus, mut inbox) = Bus::connect(opts, vec![reply_topic.to_owned()], shutdown.clone());
        let pending: Arc<Pending<String, R>> = Arc::default();
        let router = pending.clone();
        tokio::spawn(async move {
            while let Some(msg) = inbox.recv().await {
                match protocol::decode::decode_limited::<R>(&msg.payload, max_reply) {
                    Ok(reply) => {
                        let id = reply.request_id().to_owned();
                        if !router.complete(&id, reply) {
                            debug!(request_id = %id, "reply for another client");
                        }
                    }
                    Err(e) => debug!(error = %e, "unreadable reply"),
                }
            }
        });
        bus.ready(timeout).await?;
        Ok(RpcClient {
            bus,
            pending,
            request_topic: request_topic.to_owned(),
            timeout,
            shutdown,
        })
    }

    /// Sends the request `make(request_id)` and waits for its reply.
    pub async fn call<Q: Serialize>(&self, make: impl FnOnce(String) -> Q) -> Result<R, RpcError> {
        let request_id = new_request_id();
        let answer = self.pending.insert(request_id.clone());
        self.bus
            .publish_json(self.request_topic.clone(), &make(request_id.clone()))
            .await?;
        match tokio::time::timeout(self.timeout, answer).await {
            Ok(Ok(reply)) => Ok(reply),
            _ => {
                self.pending.remove(&request_id);
                Err(RpcError::NoAnswer(self.timeout))
            }
        }
    }

    /// Closes the connection after flushing what was sent.
    pub async fn close(self) {
        self.shutdown.cancel();
        self.bus.closed(Duration::from_secs(2)).await;
    }
}

fn new_request_id() -> String {
    format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..))
}

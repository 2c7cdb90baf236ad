//! The admin side: what `verifier enroll|import|remove|show|list` use to talk
//! to the running worker over MQTT.

use bus::{Bus, BusError, BusOptions, Pending};
use protocol::admin::{
    AdminOk, AdminOp, AdminOutcome, AdminReply, AdminRequest, ImportReport, ImportRow,
    IMPORT_BATCH_ROWS, MAX_ADMIN_PAYLOAD,
};
use protocol::{topics, AdminErrorCode, ErrorBody};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::debug;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error("the verifier did not answer within {0:?}; is the platform running with the verifier enabled?")]
    NoAnswer(Duration),
    #[error("{}: {}", .0.code, .0.message)]
    Refused(ErrorBody<AdminErrorCode>),
    #[error("the verifier answered with an unexpected reply: {0}")]
    Unexpected(String),
}

pub struct AdminClient {
    bus: Bus,
    pending: Arc<Pending<String, AdminReply>>,
    timeout: Duration,
    shutdown: CancellationToken,
}

impl AdminClient {
    /// Connects to the platform broker and waits until replies can be received.
    pub async fn connect(opts: BusOptions, timeout: Duration) -> Result<Self, ClientError> {
        let shutdown = CancellationToken::new();
        let (bus, mut inbox) = Bus::connect(
            opts,
            vec![topics::VERIFIER_ADMIN_REPLY.into()],
            shutdown.clone(),
        );
        let pending: Arc<Pending<String, AdminReply>> = Arc::default();
        let router = pending.clone();
        tokio::spawn(async move {
            while let Some(msg) = inbox.recv().await {
                match protocol::decode::decode_limited::<AdminReply>(
                    &msg.payload,
                    MAX_ADMIN_PAYLOAD,
                ) {
                    Ok(reply) => {
                        let id = reply.request_id.clone();
                        if !router.complete(&id, reply) {
                            debug!(request_id = %id, "reply for another admin client");
                        }
                    }
                    Err(e) => debug!(error = %e, "unreadable admin reply"),
                }
            }
        });
        bus.ready(timeout).await?;
        Ok(AdminClient {
            bus,
            pending,
            timeout,
            shutdown,
        })
    }

    /// Sends one request and waits for its answer.
    pub async fn request(&self, op: AdminOp) -> Result<AdminOk, ClientError> {
        let request_id = uuid::Uuid::new_v4().simple().to_string();
        let answer = self.pending.insert(request_id.clone());
        let req = AdminRequest {
            request_id: request_id.clone(),
            op,
        };
        self.bus
            .publish_json(topics::VERIFIER_ADMIN_REQUEST, &req)
            .await?;
        let reply = match tokio::time::timeout(self.timeout, answer).await {
            Ok(Ok(reply)) => reply,
            _ => {
                self.pending.remove(&request_id);
                return Err(ClientError::NoAnswer(self.timeout));
            }
        };
        match reply.outcome {
            AdminOutcome::Ok(ok) => Ok(ok),
            AdminOutcome::Error(body) => Err(ClientError::Refused(body)),
        }
    }

    /// Imports rows in batches; `progress(done, total)` after each batch.
    pub async fn import(
        &self,
        rows: Vec<ImportRow>,
        mut progress: impl FnMut(usize, usize),
    ) -> Result<ImportReport, ClientError> {
        let total = rows.len();
        let mut report = ImportReport::default();
        let mut done = 0;
        for batch in rows.chunks(IMPORT_BATCH_ROWS) {
            let op = AdminOp::Import {
                rows: batch.to_vec(),
            };
            match self.request(op).await? {
                AdminOk::Imported(part) => report.merge(part),
                other => return Err(ClientError::Unexpected(format!("{other:?}"))),
            }
            done += batch.len();
            progress(done, total);
        }
        Ok(report)
    }

    /// Closes the connection, flushing what was sent.
    pub async fn close(self) {
        self.shutdown.cancel();
        let mut state = self.bus.watch_state();
        let _ = tokio::time::timeout(
            Duration::from_secs(2),
            state.wait_for(|s| *s == bus::LinkState::Closed),
        )
        .await;
    }
}

//! The admin side: what `verifier enroll|import|remove|show|list` use to talk
//! to the running worker over MQTT.

use bus::{BusError, BusOptions, RpcClient, RpcError};
use protocol::admin::{
    AdminOk, AdminOp, AdminOutcome, AdminReply, AdminRequest, ImportReport, ImportRow,
    IMPORT_BATCH_ROWS, MAX_ADMIN_PAYLOAD,
};
use protocol::{topics, AdminErrorCode, ErrorBody};
use std::time::Duration;

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

impl From<RpcError> for ClientError {
    fn from(e: RpcError) -> Self {
        match e {
            RpcError::Bus(b) => ClientError::Bus(b),
            RpcError::NoAnswer(t) => ClientError::NoAnswer(t),
        }
    }
}

pub struct AdminClient {
    rpc: RpcClient<AdminReply>,
}

impl AdminClient {
    /// Connects to the platform broker and waits until replies can be received.
    pub async fn connect(opts: BusOptions, timeout: Duration) -> Result<Self, ClientError> {
        let rpc = RpcClient::connect(
            opts,
            topics::VERIFIER_ADMIN_REQUEST,
            topics::VERIFIER_ADMIN_REPLY,
            MAX_ADMIN_PAYLOAD,
            timeout,
        )
        .await?;
        Ok(AdminClient { rpc })
    }

    /// Sends one request and waits for its answer.
    pub async fn request(&self, op: AdminOp) -> Result<AdminOk, ClientError> {
        let reply = self
            .rpc
            .call(|request_id| AdminRequest { request_id, op })
            .await?;
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
        self.rpc.close().await;
    }
}

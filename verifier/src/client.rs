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
        for batch in batches(&rows) {
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

/// The bytes of an import request that its rows may take: the rest of
/// [`MAX_ADMIN_PAYLOAD`] is left for the request id and the framing.
const BATCH_BYTES: usize = MAX_ADMIN_PAYLOAD - 4 * 1024;

/// `rows` cut into import batches of at most [`IMPORT_BATCH_ROWS`] rows
/// and [`BATCH_BYTES`] of JSON each: rows with many long SSIDs make fewer
/// per batch. A row too large for a batch of its own goes alone, and the
/// verifier refuses it.
fn batches(rows: &[ImportRow]) -> Vec<&[ImportRow]> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, row) in rows.iter().enumerate() {
        // A row that does not encode counts as too large: it goes alone.
        let size = serde_json::to_vec(row).map_or(BATCH_BYTES, |v| v.len() + 1);
        if i > start && (i - start == IMPORT_BATCH_ROWS || bytes + size > BATCH_BYTES) {
            out.push(&rows[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += size;
    }
    if start < rows.len() {
        out.push(&rows[start..]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::admin::{AdminRequest, MAX_DEVICE_SSIDS};
    use protocol::onboarding::{MAX_PASS_TMP_LEN, MAX_SSID_LEN};

    #[test]
    fn batches_of_the_largest_rows_fit_an_admin_request() {
        let row = |n: usize, ssids: usize| ImportRow {
            line: n as u64,
            uuid: format!("00000000-0000-4000-8000-{n:012x}"),
            pass_tmp: "\"".repeat(MAX_PASS_TMP_LEN),
            ssids: vec!["\\".repeat(MAX_SSID_LEN); ssids],
        };
        let small: Vec<_> = (0..1200).map(|n| row(n, 0)).collect();
        let sizes: Vec<usize> = batches(&small).iter().map(|b| b.len()).collect();
        assert_eq!(sizes, [IMPORT_BATCH_ROWS, IMPORT_BATCH_ROWS, 200]);
        let large: Vec<_> = (0..1200).map(|n| row(n, MAX_DEVICE_SSIDS)).collect();
        let cut = batches(&large);
        assert!(cut.len() > 3, "{}", cut.len());
        assert_eq!(cut.iter().map(|b| b.len()).sum::<usize>(), 1200);
        for batch in cut {
            let request = AdminRequest {
                request_id: "r".repeat(64),
                op: AdminOp::Import {
                    rows: batch.to_vec(),
                },
            };
            let bytes = serde_json::to_vec(&request).unwrap().len();
            assert!(bytes <= MAX_ADMIN_PAYLOAD, "{bytes}");
        }
    }
}

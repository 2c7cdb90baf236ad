//! The admin side: what the `registry` CLI uses to talk to the running
//! registry over MQTT.

use bus::{BusError, BusOptions, RpcClient, RpcError};
use protocol::registry_admin::{
    RegistryErrorCode, RegistryOk, RegistryOp, RegistryOutcome, RegistryReply, RegistryRequest,
};
use protocol::{topics, ErrorBody};
use std::time::Duration;

/// Replies (gateway lists, histories) can be larger than device messages.
const MAX_REPLY: usize = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum RegistryClientError {
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error("the registry did not answer within {0:?}; is the platform running with the registry enabled?")]
    NoAnswer(Duration),
    #[error("{}: {}", .0.code, .0.message)]
    Refused(ErrorBody<RegistryErrorCode>),
}

impl From<RpcError> for RegistryClientError {
    fn from(e: RpcError) -> Self {
        match e {
            RpcError::Bus(b) => RegistryClientError::Bus(b),
            RpcError::NoAnswer(t) => RegistryClientError::NoAnswer(t),
        }
    }
}

pub struct RegistryClient {
    rpc: RpcClient<RegistryReply>,
}

impl RegistryClient {
    pub async fn connect(opts: BusOptions, timeout: Duration) -> Result<Self, RegistryClientError> {
        let rpc = RpcClient::connect(
            opts,
            topics::REGISTRY_ADMIN_REQUEST,
            topics::REGISTRY_ADMIN_REPLY,
            MAX_REPLY,
            timeout,
        )
        .await?;
        Ok(RegistryClient { rpc })
    }

    pub async fn request(&self, op: RegistryOp) -> Result<RegistryOk, RegistryClientError> {
        let reply = self
            .rpc
            .call(|request_id| RegistryRequest { request_id, op })
            .await?;
        match reply.outcome {
            RegistryOutcome::Ok(ok) => Ok(ok),
            RegistryOutcome::Error(body) => Err(RegistryClientError::Refused(body)),
        }
    }

    pub async fn close(self) {
        self.rpc.close().await;
    }
}

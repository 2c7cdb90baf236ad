//! The handlers, one file per message or admin operation. This file only
//! dispatches an admin request (`registry/admin/request`) to the file of
//! its operation and publishes the reply.

mod admin;
mod assign;
mod drain;
mod gateway;
mod presence;
mod query;
mod refresh;
mod show;
mod status;
mod sync;

use super::state::Registry;
use crate::store::RegistryStore;
use admin::{refuse, AdminResult};
use gateway::Registration;
use protocol::registry_admin::{
    RegistryErrorCode, RegistryOp, RegistryOutcome, RegistryReply, RegistryRequest,
};
use protocol::{decode, peek_str_field, topics};
pub(crate) use refresh::REFRESH;
use tracing::warn;

/// How many times a request that lost a race to another registry instance
/// is tried in all; the queries' group commits try as often.
pub(super) const CONFLICT_RETRIES: u32 = 3;

impl<S: RegistryStore> Registry<S> {
    pub(crate) async fn on_admin(&mut self, payload: &[u8]) {
        let req = match decode::<RegistryRequest>(payload) {
            Ok(r) => r,
            Err(e) => {
                warn!(error = %e, "malformed registry admin request");
                if let Some(request_id) =
                    peek_str_field(payload, "request_id").filter(|r| r.len() <= 64)
                {
                    let reply = RegistryReply {
                        request_id,
                        outcome: RegistryOutcome::Error(refuse(
                            RegistryErrorCode::BadRequest,
                            e.to_string(),
                        )),
                    };
                    self.publish(topics::REGISTRY_ADMIN_REPLY.into(), &reply);
                }
                return;
            }
        };
        let outcome = match self.apply(req.op).await {
            Ok(ok) => RegistryOutcome::Ok(ok),
            Err(body) => RegistryOutcome::Error(body),
        };
        let reply = RegistryReply {
            request_id: req.request_id,
            outcome,
        };
        self.publish(topics::REGISTRY_ADMIN_REPLY.into(), &reply);
    }

    /// Applies an operation, again (up to [`CONFLICT_RETRIES`] times) if
    /// another registry instance changed one of its devices between the
    /// read and the commit: each attempt reads afresh, so the retry
    /// decides on what is stored now, and a lost race changed nothing.
    async fn apply(&mut self, op: RegistryOp) -> AdminResult {
        let mut attempt = 1;
        loop {
            match self.apply_once(op.clone()).await {
                Err(body)
                    if body.code == RegistryErrorCode::Conflict && attempt < CONFLICT_RETRIES =>
                {
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    async fn apply_once(&mut self, op: RegistryOp) -> AdminResult {
        match op {
            RegistryOp::Assign {
                device_id,
                gateway_id,
            } => self.assign(&device_id, &gateway_id).await,
            RegistryOp::Remap {
                device_id,
                gateway_id,
            } => self.remap(&device_id, gateway_id).await,
            RegistryOp::Drain {
                gateway_id,
                to,
                limit,
            } => self.drain(&gateway_id, to.as_deref(), limit).await,
            RegistryOp::Undrain { gateway_id } => self.undrain(gateway_id).await,
            RegistryOp::Show { device_id } => self.show(&device_id).await,
            RegistryOp::Gateways => Ok(self.gateway_views()),
            RegistryOp::History { device_id } => self.history(device_id).await,
            RegistryOp::GatewayRegister {
                gateway_id,
                address,
                weight,
                credential_sha256,
                certificate_request,
            } => {
                let registration = Registration {
                    address: &address,
                    weight,
                    credential_sha256,
                    certificate_request: certificate_request.as_deref(),
                };
                self.register_gateway(&gateway_id, registration).await
            }
            RegistryOp::GatewayRemove { gateway_id } => self.remove_gateway(&gateway_id).await,
        }
    }
}

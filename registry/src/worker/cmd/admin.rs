//! What the admin operations share: their result, refusals, the checks of
//! their arguments, and the view of an assignment they reply with.

use crate::store::{Assignment, RegistryStore, StoreError};
use crate::worker::state::Registry;
use protocol::gateway::check_device_id;
use protocol::registry_admin::{AssignmentView, RegistryErrorCode, RegistryOk};
use protocol::ErrorBody;
use tracing::error;

pub(super) type AdminResult = Result<RegistryOk, ErrorBody<RegistryErrorCode>>;

pub(super) fn refuse(
    code: RegistryErrorCode,
    message: impl Into<String>,
) -> ErrorBody<RegistryErrorCode> {
    ErrorBody::new(code, message)
}

/// A store failure, logged, as the admin sees it: `unavailable` when the
/// store is out of reach, `conflict` when another registry instance
/// changed the device first (nothing was changed: ask again), else
/// `internal`.
pub(super) fn internal(e: StoreError) -> ErrorBody<RegistryErrorCode> {
    let code = match &e {
        StoreError::Unavailable(_) => RegistryErrorCode::Unavailable,
        StoreError::Conflict { .. } => RegistryErrorCode::Conflict,
        _ => RegistryErrorCode::Internal,
    };
    error!(error = %e, %code, "registry store failure");
    ErrorBody::new(code, e.to_string())
}

pub(super) fn check_device(device_id: &str) -> Result<(), ErrorBody<RegistryErrorCode>> {
    check_device_id(device_id).map_err(|e| {
        refuse(
            RegistryErrorCode::BadRequest,
            format!("device id {device_id:?} {e}"),
        )
    })
}

impl<S: RegistryStore> Registry<S> {
    /// A gateway an admin may move devices to: known and alive.
    pub(super) fn check_target(
        &self,
        gateway_id: &str,
    ) -> Result<(), ErrorBody<RegistryErrorCode>> {
        match self.gateways.get(gateway_id) {
            None => Err(refuse(
                RegistryErrorCode::UnknownGateway,
                format!("no gateway {gateway_id:?} has ever announced itself"),
            )),
            Some(g) if !g.alive => Err(refuse(
                RegistryErrorCode::GatewayDead,
                format!("gateway {gateway_id:?} is not alive"),
            )),
            Some(_) => Ok(()),
        }
    }

    /// The reply naming the device's assignment and where it was last seen.
    pub(super) async fn view(&self, device_id: &str, a: &Assignment, changed: bool) -> AdminResult {
        Ok(RegistryOk::Assignment(AssignmentView {
            device_id: device_id.to_owned(),
            gateway_id: a.gateway_id.clone(),
            epoch: a.epoch,
            changed,
            last_seen: self.store.last_seen(device_id).await.map_err(internal)?,
        }))
    }
}

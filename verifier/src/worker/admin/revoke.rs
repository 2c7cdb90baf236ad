//! `revoke`: forget the key an onboarded device logs in with. The device
//! is refused at its next login and must be onboarded again, which
//! registers its new key.

use super::{internal, parse_uuid, AdminResult};
use crate::store::EnrollmentStore;
use crate::worker::serve::Served;
use protocol::admin::AdminOk;
use protocol::{AdminErrorCode, ErrorBody};
use tracing::info;

pub(super) async fn apply<S: EnrollmentStore>(worker: &Served<S>, uuid: &str) -> AdminResult {
    let id = parse_uuid(uuid)?;
    if !worker
        .store
        .revoke_device_key(&id)
        .await
        .map_err(internal)?
    {
        return Err(ErrorBody::new(
            AdminErrorCode::NotFound,
            format!("{} is not enrolled or has no key", id.key()),
        ));
    }
    worker.flush().await.map_err(internal)?;
    info!(target: "audit", uuid = %id.key(), "device key revoked");
    Ok(AdminOk::KeyRevoked {
        uuid: id.key().to_owned(),
    })
}

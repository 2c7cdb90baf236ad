//! `remove`: forget one device, so it can no longer be verified.

use super::{internal, parse_uuid, AdminResult};
use crate::store::EnrollmentStore;
use crate::worker::serve::Served;
use protocol::admin::AdminOk;
use protocol::{AdminErrorCode, ErrorBody};
use tracing::info;

pub(super) async fn apply<S: EnrollmentStore>(worker: &Served<S>, uuid: &str) -> AdminResult {
    let id = parse_uuid(uuid)?;
    if !worker.store.remove(&id).await.map_err(internal)? {
        return Err(ErrorBody::new(
            AdminErrorCode::NotFound,
            format!("{} is not enrolled", id.key()),
        ));
    }
    worker.flush().await.map_err(internal)?;
    info!(uuid = %id.key(), "device removed");
    Ok(AdminOk::Removed {
        uuid: id.key().to_owned(),
    })
}

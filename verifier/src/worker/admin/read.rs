//! `show` and `list`: the admin operations that only read, so they change
//! nothing and wait for no flush.

use super::{internal, parse_uuid, AdminResult};
use crate::store::{EnrollmentStore, Page};
use crate::worker::serve::Served;
use protocol::admin::{AdminOk, MAX_LIST_PAGE};
use protocol::{AdminErrorCode, ErrorBody};

/// Whether one device is enrolled, since when, where it may onboard, and
/// its keys.
pub(super) async fn show<S: EnrollmentStore>(worker: &Served<S>, uuid: &str) -> AdminResult {
    let id = parse_uuid(uuid)?;
    match worker.store.get(&id).await.map_err(internal)? {
        Some(e) => Ok(AdminOk::Device {
            uuid: id.key().to_owned(),
            enrolled_at_ms: e.enrolled_at_ms,
            device_key: e.device_key,
            ssids: e.ssids,
            pending_key: e.pending_key,
        }),
        None => Err(ErrorBody::new(
            AdminErrorCode::NotFound,
            format!("{} is not enrolled", id.key()),
        )),
    }
}

/// One page of enrolled UUIDs after the cursor `after`.
pub(super) async fn list<S: EnrollmentStore>(
    worker: &Served<S>,
    after: Option<&str>,
    limit: usize,
) -> AdminResult {
    let Page { uuids, next } = worker
        .store
        .list(after, limit.clamp(1, MAX_LIST_PAGE))
        .await
        .map_err(internal)?;
    Ok(AdminOk::List { uuids, next })
}

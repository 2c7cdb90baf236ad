//! `show` and `list`: the admin operations that only read, so they change
//! nothing and wait for no flush.

use super::{internal, parse_uuid, AdminResult};
use crate::worker::serve::Served;
use protocol::admin::{AdminOk, MAX_LIST_PAGE};
use protocol::{AdminErrorCode, ErrorBody};

/// Whether one device is enrolled, and since when.
pub(super) fn show(worker: &Served, uuid: &str) -> AdminResult {
    let id = parse_uuid(uuid)?;
    match worker.store.get(&id).map_err(internal)? {
        Some(e) => Ok(AdminOk::Device {
            uuid: id.key().to_owned(),
            enrolled_at_ms: e.enrolled_at_ms,
        }),
        None => Err(ErrorBody::new(
            AdminErrorCode::NotFound,
            format!("{} is not enrolled", id.key()),
        )),
    }
}

/// One page of enrolled UUIDs after the cursor `after`.
pub(super) fn list(worker: &Served, after: Option<&str>, limit: usize) -> AdminResult {
    let (uuids, next) = worker
        .store
        .list(after, limit.clamp(1, MAX_LIST_PAGE))
        .map_err(internal)?;
    Ok(AdminOk::List { uuids, next })
}

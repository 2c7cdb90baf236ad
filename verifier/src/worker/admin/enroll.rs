//! `enroll`: one device's pass_tmp, created, kept if it is the same, and
//! replaced only when asked to.

use super::{bad, internal, parse_uuid, AdminResult};
use crate::store::{EnrollOutcome, EnrollmentStore};
use crate::worker::serve::Served;
use protocol::admin::AdminOk;
use protocol::onboarding::check_pass_tmp;
use protocol::{AdminErrorCode, ErrorBody};
use tracing::info;

pub(super) async fn apply<S: EnrollmentStore>(
    worker: &Served<S>,
    uuid: &str,
    pass_tmp: &str,
    replace: bool,
) -> AdminResult {
    let id = parse_uuid(uuid)?;
    check_pass_tmp(pass_tmp).map_err(|e| bad(format!("pass_tmp {e}")))?;
    let outcome = worker
        .store
        .enroll(&id, pass_tmp, replace)
        .await
        .map_err(internal)?;
    if outcome == EnrollOutcome::Conflict {
        return Err(ErrorBody::new(
            AdminErrorCode::AlreadyEnrolled,
            format!(
                "{} is enrolled with another pass_tmp; use --replace to change it",
                id.key()
            ),
        ));
    }
    worker.flush().await.map_err(internal)?;
    info!(uuid = %id.key(), ?outcome, "device enrolled");
    Ok(AdminOk::Enrolled {
        uuid: id.key().to_owned(),
        created: outcome == EnrollOutcome::Created,
    })
}

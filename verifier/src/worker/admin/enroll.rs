//! `enroll`: one device's pass_tmp and the SSIDs it may onboard at,
//! created, kept if they are the same, and replaced only when asked to.

use super::{bad, internal, parse_uuid, AdminResult};
use crate::store::{normalize_ssids, EnrollOutcome, EnrollRow, Enrollment, EnrollmentStore};
use crate::worker::serve::Served;
use protocol::admin::{AdminOk, MAX_DEVICE_SSIDS};
use protocol::onboarding::{check_pass_tmp, check_ssid};
use protocol::{AdminErrorCode, ErrorBody};
use tracing::info;

pub(super) async fn apply<S: EnrollmentStore>(
    worker: &Served<S>,
    uuid: &str,
    pass_tmp: &str,
    ssids: &[String],
    replace: bool,
) -> AdminResult {
    let id = parse_uuid(uuid)?;
    check_pass_tmp(pass_tmp).map_err(|e| bad(format!("pass_tmp {e}")))?;
    check_ssids(ssids).map_err(bad)?;
    let row = EnrollRow {
        uuid: id.clone(),
        pass_tmp: pass_tmp.to_owned(),
        ssids: normalize_ssids(ssids),
    };
    let outcome = worker
        .store
        .enroll_at(&row, replace)
        .await
        .map_err(internal)?;
    if outcome == EnrollOutcome::Conflict {
        let stored = worker.store.get(&id).await.map_err(internal)?;
        return Err(ErrorBody::new(
            AdminErrorCode::AlreadyEnrolled,
            format!(
                "{} is {}; use --replace to change it",
                id.key(),
                conflict(stored.as_ref(), &row)
            ),
        ));
    }
    worker.flush().await.map_err(internal)?;
    info!(uuid = %id.key(), ?outcome, ssids = ?row.ssids, "device enrolled");
    Ok(AdminOk::Enrolled {
        uuid: id.key().to_owned(),
        created: outcome == EnrollOutcome::Created,
    })
}

/// An enrollment's SSIDs, as an admin gave them: each a valid SSID, and
/// at most [`MAX_DEVICE_SSIDS`].
pub(super) fn check_ssids(ssids: &[String]) -> Result<(), String> {
    if ssids.len() > MAX_DEVICE_SSIDS {
        return Err(format!(
            "a device is enrolled for at most {MAX_DEVICE_SSIDS} SSIDs, not {}",
            ssids.len()
        ));
    }
    for ssid in ssids {
        check_ssid(ssid).map_err(|e| format!("ssid {ssid:?} {e}"))?;
    }
    Ok(())
}

/// What a refused re-enrollment differs in from what is stored.
pub(super) fn conflict(stored: Option<&Enrollment>, row: &EnrollRow) -> &'static str {
    match stored {
        Some(e) if e.pass_tmp == row.pass_tmp => "already enrolled for other SSIDs",
        _ => "already enrolled with another pass_tmp",
    }
}

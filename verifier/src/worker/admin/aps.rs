//! `ap register`, `ap remove`, `ap list`: the APs the verifier answers.
//! Each registered AP has its own credential (only its SHA-256 is stored)
//! and serves the SSIDs it was registered for; the platform broker admits
//! it and confines it to its own topics and SSIDs from this record.

use super::{bad, internal, AdminResult};
use crate::store::{ApRecord, EnrollmentStore};
use crate::worker::serve::Served;
use protocol::admin::{AdminOk, ApView, MAX_AP_SSIDS};
use protocol::{now_ms, AdminErrorCode, ErrorBody, Segment};
use tracing::info;

/// Registers `ap_id`, or changes its SSIDs and credential.
pub(super) async fn register<S: EnrollmentStore>(
    worker: &Served<S>,
    ap_id: &str,
    ssids: Vec<String>,
    credential_sha256: &str,
) -> AdminResult {
    Segment::parse(ap_id).map_err(|e| bad(format!("ap_id {ap_id:?} {e}")))?;
    if ssids.is_empty() || ssids.len() > MAX_AP_SSIDS {
        return Err(bad(format!(
            "an AP serves 1 to {MAX_AP_SSIDS} SSIDs, not {}",
            ssids.len()
        )));
    }
    for ssid in &ssids {
        Segment::parse(ssid).map_err(|e| bad(format!("ssid {ssid:?} {e}")))?;
    }
    let hash = credential_sha256.to_ascii_lowercase();
    if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad("credential_sha256 must be 64 hex digits"));
    }
    let mut ssids = ssids;
    ssids.sort();
    ssids.dedup();
    let record = ApRecord {
        ssids: ssids.clone(),
        credential_sha256: hash,
        registered_ms: now_ms(),
    };
    let created = worker
        .store
        .put_ap(ap_id, &record)
        .await
        .map_err(internal)?;
    worker.flush().await.map_err(internal)?;
    info!(target: "audit", ap_id, ?ssids, created, "AP registered");
    Ok(AdminOk::ApRegistered {
        ap_id: ap_id.to_owned(),
        ssids,
        created,
    })
}

/// Removes `ap_id`: its credential is refused from then on.
pub(super) async fn remove<S: EnrollmentStore>(worker: &Served<S>, ap_id: &str) -> AdminResult {
    if !worker.store.remove_ap(ap_id).await.map_err(internal)? {
        return Err(ErrorBody::new(
            AdminErrorCode::NotFound,
            format!("no AP {ap_id:?} is registered"),
        ));
    }
    worker.flush().await.map_err(internal)?;
    info!(target: "audit", ap_id, "AP removed");
    Ok(AdminOk::ApRemoved {
        ap_id: ap_id.to_owned(),
    })
}

/// Every registered AP, without credentials.
pub(super) async fn list<S: EnrollmentStore>(worker: &Served<S>) -> AdminResult {
    let aps = worker.store.aps().await.map_err(internal)?;
    Ok(AdminOk::Aps {
        aps: aps
            .into_iter()
            .map(|(ap_id, r)| ApView {
                ap_id,
                ssids: r.ssids,
                registered_ms: r.registered_ms,
            })
            .collect(),
    })
}

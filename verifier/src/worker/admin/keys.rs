//! A device's login key, as an admin manages it: `revoke` forgets it (the
//! device is refused at its next login and must be onboarded again, which
//! registers its new key); `register-key` sets it for a device whose key
//! pair was made at the factory, so that it logs in without onboarding;
//! `approve-key` makes the key a device onboarded with after a factory
//! reset, kept pending under `rekey = "admin"`, its login key.

use super::{bad, internal, parse_uuid, AdminResult};
use crate::store::{EnrollmentStore, KeyOutcome};
use crate::worker::serve::Served;
use protocol::admin::AdminOk;
use protocol::{AdminErrorCode, ErrorBody};
use tracing::info;

pub(super) async fn revoke<S: EnrollmentStore>(worker: &Served<S>, uuid: &str) -> AdminResult {
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

/// Makes the device's pending key its login key: the old key is refused
/// from its next login on.
pub(super) async fn approve<S: EnrollmentStore>(worker: &Served<S>, uuid: &str) -> AdminResult {
    let id = parse_uuid(uuid)?;
    if !worker
        .store
        .approve_pending_key(&id)
        .await
        .map_err(internal)?
    {
        return Err(ErrorBody::new(
            AdminErrorCode::NotFound,
            format!(
                "{} is not enrolled or has no key waiting for approval",
                id.key()
            ),
        ));
    }
    worker.flush().await.map_err(internal)?;
    let device_key = worker
        .store
        .get(&id)
        .await
        .map_err(internal)?
        .and_then(|e| e.device_key)
        .unwrap_or_default();
    info!(target: "audit", uuid = %id.key(), %device_key, "pending device key approved by an admin");
    Ok(AdminOk::KeyApproved {
        uuid: id.key().to_owned(),
        device_key,
    })
}

/// Registers `device_key` (an Ed25519 public key, hex) as the device's
/// login key, unless it has another one.
pub(super) async fn register<S: EnrollmentStore>(
    worker: &Served<S>,
    uuid: &str,
    device_key: &str,
) -> AdminResult {
    let id = parse_uuid(uuid)?;
    let key = device_key.to_ascii_lowercase();
    if protocol::crypto::check_device_public_hex(&key).is_err() {
        return Err(bad(
            "device_key must be an Ed25519 public key, 64 hex digits",
        ));
    }
    let outcome = worker
        .store
        .set_device_key(&id, &key)
        .await
        .map_err(internal)?;
    let created = match outcome {
        KeyOutcome::Registered => true,
        KeyOutcome::Unchanged => false,
        KeyOutcome::Conflict => {
            return Err(ErrorBody::new(
                AdminErrorCode::AlreadyEnrolled,
                format!("{} has another login key; revoke it first", id.key()),
            ))
        }
        KeyOutcome::NotEnrolled => {
            return Err(ErrorBody::new(
                AdminErrorCode::NotFound,
                format!("{} is not enrolled", id.key()),
            ))
        }
        // set_device_key is first come: it neither replaces nor defers.
        KeyOutcome::Replaced | KeyOutcome::Pending => {
            return Err(ErrorBody::new(
                AdminErrorCode::Internal,
                format!("the store answered {outcome:?} to a first-come key registration"),
            ))
        }
    };
    worker.flush().await.map_err(internal)?;
    info!(target: "audit", uuid = %id.key(), created, "device key registered by an admin");
    Ok(AdminOk::KeyRegistered {
        uuid: id.key().to_owned(),
        created,
    })
}

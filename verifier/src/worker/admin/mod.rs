//! Admin requests on `verifier/admin/request`: decoded on the serve loop,
//! then applied one at a time by their own task, and answered on
//! `verifier/admin/reply` only once the change is flushed. This file only
//! queues and dispatches; each operation has its own file.

mod aps;
mod enroll;
mod import;
mod keys;
mod read;
mod remove;

use super::serve::{publish, Served};
use crate::store::{EnrollmentStore, StoreError};
use bus::{Message, Outbox};
use protocol::admin::{
    AdminOk, AdminOp, AdminOutcome, AdminReply, AdminRequest, MAX_ADMIN_PAYLOAD,
};
use protocol::{topics, AdminErrorCode, DeviceUuid, ErrorBody};
use tokio::sync::mpsc;
use tracing::{error, warn};

/// The admin task's inbox.
pub(super) type Queue = mpsc::Sender<AdminRequest>;

/// What an operation answers: its result, or the error to reply with.
type AdminResult = Result<AdminOk, ErrorBody<AdminErrorCode>>;

/// Decodes an admin request and queues it for the admin task. A request
/// that does not decode is answered `bad_request` at once, if it carries a
/// request id to answer to.
pub(super) async fn submit(outbox: &Outbox, queue: &Queue, msg: &Message) {
    match protocol::decode::decode_limited::<AdminRequest>(&msg.payload, MAX_ADMIN_PAYLOAD) {
        Ok(req) => {
            if queue.send(req).await.is_err() {
                warn!("admin queue closed; request dropped");
            }
        }
        Err(e) => {
            warn!(topic = %msg.topic, error = %e, "malformed admin request");
            if let Some(request_id) = peek_request_id(&msg.payload) {
                let reply = error_reply(request_id, AdminErrorCode::BadRequest, e.to_string());
                publish(outbox, topics::VERIFIER_ADMIN_REPLY, &reply);
            }
        }
    }
}

pub(super) async fn admin_loop<S: EnrollmentStore>(
    worker: Served<S>,
    mut rx: mpsc::Receiver<AdminRequest>,
) {
    while let Some(req) = rx.recv().await {
        let request_id = req.request_id.clone();
        let outcome = match apply_admin(&worker, req.op).await {
            Ok(ok) => AdminOutcome::Ok(ok),
            Err(body) => AdminOutcome::Error(body),
        };
        let reply = AdminReply {
            request_id,
            outcome,
        };
        publish(&worker.outbox, topics::VERIFIER_ADMIN_REPLY, &reply);
    }
}

async fn apply_admin<S: EnrollmentStore>(worker: &Served<S>, op: AdminOp) -> AdminResult {
    match op {
        AdminOp::Enroll {
            uuid,
            pass_tmp,
            replace,
            ssids,
        } => enroll::apply(worker, &uuid, &pass_tmp, &ssids, replace).await,
        AdminOp::Import { rows } => import::apply(worker, rows).await,
        AdminOp::Remove { uuid } => remove::apply(worker, &uuid).await,
        AdminOp::Show { uuid } => read::show(worker, &uuid).await,
        AdminOp::List { after, limit } => read::list(worker, after.as_deref(), limit).await,
        AdminOp::RevokeKey { uuid } => keys::revoke(worker, &uuid).await,
        AdminOp::ApproveKey { uuid } => keys::approve(worker, &uuid).await,
        AdminOp::RegisterKey { uuid, device_key } => {
            keys::register(worker, &uuid, &device_key).await
        }
        AdminOp::ApRegister {
            ap_id,
            ssids,
            credential_sha256,
        } => aps::register(worker, &ap_id, ssids, &credential_sha256).await,
        AdminOp::ApRemove { ap_id } => aps::remove(worker, &ap_id).await,
        AdminOp::ApList => aps::list(worker).await,
    }
}

fn bad(message: impl Into<String>) -> ErrorBody<AdminErrorCode> {
    ErrorBody::new(AdminErrorCode::BadRequest, message)
}

fn internal(e: StoreError) -> ErrorBody<AdminErrorCode> {
    error!(error = %e, "verifier store failure");
    ErrorBody::new(AdminErrorCode::Internal, e.to_string())
}

fn parse_uuid(uuid: &str) -> Result<DeviceUuid, ErrorBody<AdminErrorCode>> {
    DeviceUuid::parse(uuid).map_err(|e| bad(format!("uuid {uuid:?} {e}")))
}

fn peek_request_id(payload: &[u8]) -> Option<String> {
    protocol::decode::decode_limited::<serde_json::Value>(payload, MAX_ADMIN_PAYLOAD)
        .ok()?
        .get("request_id")?
        .as_str()
        .filter(|id| !id.is_empty() && id.len() <= 64)
        .map(str::to_owned)
}

fn error_reply(request_id: String, code: AdminErrorCode, message: String) -> AdminReply {
    AdminReply {
        request_id,
        outcome: AdminOutcome::Error(ErrorBody::new(code, message)),
    }
}

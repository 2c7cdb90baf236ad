//! Devices' access requests on `wlan/+/access/request`, as the verifier
//! sees them (secure mode): each is remembered, and any AP's question
//! that arrived before it is answered now. The broker lets a device put
//! only its own UUID in a request, so what is remembered is what that
//! device asked.

use super::onboarding::Onboarding;
use super::release;
use super::requests::RequestKey;
use super::serve::Served;
use crate::store::EnrollmentStore;
use protocol::crypto::handshake_id;
use protocol::decode;
use protocol::onboarding::AccessRequest;
use std::time::Instant;
use tracing::debug;

pub(super) async fn on_access_request<S: EnrollmentStore>(
    worker: &Served<S>,
    onboarding: &mut Onboarding,
    ssid: &str,
    payload: &[u8],
) {
    let checked = decode::<AccessRequest>(payload).and_then(|req| {
        let uuid = req.validate(ssid)?;
        Ok((req, uuid))
    });
    let (req, uuid) = match checked {
        Ok(ok) => ok,
        // The AP answers the device; nothing to remember.
        Err(e) => return debug!(error = %e, "malformed access request not remembered"),
    };
    let (Some(handshake), Some(commit)) = (req.spake2.as_deref(), req.commit.as_deref()) else {
        return debug!(uuid = %uuid, "access request without a handshake and a commitment in secure mode not remembered");
    };
    let key = RequestKey::new(&uuid, handshake_id(handshake));
    onboarding
        .requests
        .record(key, ssid, handshake, commit, Instant::now());
    for question in onboarding.parked.take(&key) {
        release::resume(worker, onboarding, question).await;
    }
}

//! What leaves the AP once a request is decided: the answer to the device,
//! and the outcome the platform counts in its metrics.

use crate::shared::Shared;
use protocol::onboarding::{AccessOutcome, AccessResponse, OutcomeReport};
use protocol::{topics, DeviceUuid};
use std::time::Duration;
use tracing::warn;

pub(crate) async fn publish(shared: &Shared, uuid: &DeviceUuid, resp: &AccessResponse) {
    if let Err(e) = shared
        .bus
        .publish_json(topics::access_response(uuid.as_str()), resp)
        .await
    {
        warn!(uuid = %uuid, error = %e, "could not answer the device");
    }
}

/// Tells the platform how a request ended, for its metrics. Sent once per
/// answer the AP decided; a repeat of a recent answer is not reported.
pub(crate) async fn report(
    shared: &Shared,
    uuid: &DeviceUuid,
    outcome: AccessOutcome,
    elapsed: Duration,
) {
    let report = OutcomeReport {
        uuid: uuid.as_str().to_owned(),
        outcome,
        latency_ms: u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
    };
    if let Err(e) = shared
        .bus
        .publish_json(topics::ap_outcome(&shared.config.ap_id), &report)
        .await
    {
        warn!(uuid = %uuid, error = %e, "could not report the outcome");
    }
}

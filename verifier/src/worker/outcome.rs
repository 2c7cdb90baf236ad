//! The APs' outcome reports on `ap/+/outcome`: counted in the metrics,
//! never answered, and trusted for nothing else. In particular they move
//! no lockout: any AP can send one, so the verifier counts attempts from
//! its own releases and the devices' own proofs instead.

use super::serve::Served;
use protocol::decode;
use protocol::onboarding::{AccessOutcome, OutcomeReport};
use std::time::Duration;
use tracing::warn;

/// Counts an AP's report of how an access request ended.
pub(super) fn record_outcome<S>(worker: &Served<S>, ap_id: &str, payload: &[u8]) {
    match decode::<OutcomeReport>(payload).and_then(|r| r.validate().map(|_| r)) {
        Ok(report) => {
            worker
                .metrics
                .onboarding(report.outcome, Duration::from_millis(report.latency_ms));
            if let AccessOutcome::Refused(code) = report.outcome {
                warn!(target: "audit", uuid = %report.uuid, ap_id = %ap_id.escape_debug(), %code, "access attempt failed (as the AP reports it)");
            }
        }
        Err(e) => {
            warn!(ap_id = %ap_id.escape_debug(), error = %e, "malformed outcome report ignored")
        }
    }
}

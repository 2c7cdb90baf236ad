//! The APs' outcome reports on `ap/+/outcome`: counted in the metrics,
//! never answered. A `granted` report also clears the UUID's secure-mode
//! attempts.

use super::serve::Served;
use protocol::decode;
use protocol::onboarding::{AccessOutcome, OutcomeReport};
use std::time::Duration;
use tracing::warn;

/// Counts an AP's report of how an access request ended. The AP decides
/// the outcome; the verifier is where the platform hears of it.
pub(super) fn record_outcome<S>(worker: &Served<S>, ap_id: &str, payload: &[u8]) {
    match decode::<OutcomeReport>(payload).and_then(|r| r.validate().map(|_| r)) {
        Ok(report) => {
            worker
                .metrics
                .onboarding(report.outcome, Duration::from_millis(report.latency_ms));
            match report.outcome {
                AccessOutcome::Granted => {
                    if let Some(g) = &worker.guard {
                        g.granted(&report.uuid);
                    }
                }
                AccessOutcome::Refused(code) => {
                    warn!(target: "audit", uuid = %report.uuid, ap_id = %ap_id.escape_debug(), %code, "access attempt failed");
                }
            }
        }
        Err(e) => {
            warn!(ap_id = %ap_id.escape_debug(), error = %e, "malformed outcome report ignored")
        }
    }
}

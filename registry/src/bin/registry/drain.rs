//! `registry drain`: the one command that loops. The registry moves at
//! most a batch of devices per request, so this asks again until none
//! remain, pacing the batches to `--rate`, with a progress bar.

use crate::render;
use indicatif::{ProgressBar, ProgressStyle};
use protocol::registry_admin::{RegistryErrorCode, RegistryOk, RegistryOp, MAX_DRAIN_BATCH};
use registry::{RegistryClient, RegistryClientError};
use std::time::{Duration, Instant};

/// Drains in batches, pacing them to `rate` devices/s, with a progress bar.
pub async fn run(
    client: &RegistryClient,
    gateway: String,
    to: Option<String>,
    rate: Option<u32>,
    json: bool,
) -> Result<(), RegistryClientError> {
    let started = Instant::now();
    let batch = rate.map_or(MAX_DRAIN_BATCH, |r| (r as usize).clamp(1, MAX_DRAIN_BATCH));
    let bar = if json {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(0)
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} draining {msg} [{bar:30}] {pos}/{len} devices ({per_sec})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message(gateway.clone());
    let mut moved = 0u64;
    loop {
        let batch_started = Instant::now();
        let op = RegistryOp::Drain {
            gateway_id: gateway.clone(),
            to: to.clone(),
            limit: batch,
        };
        let report = match client.request(op).await? {
            RegistryOk::Drained(r) => r,
            other => {
                bar.abandon();
                render::print(&other, json);
                return Ok(());
            }
        };
        moved += report.moved;
        bar.set_length(moved + report.remaining);
        bar.set_position(moved);
        if report.remaining == 0 || report.moved == 0 {
            bar.finish_and_clear();
            render::drained(&gateway, moved, report.remaining, started.elapsed(), json);
            if report.remaining > 0 {
                return Err(RegistryClientError::Refused(protocol::ErrorBody::new(
                    RegistryErrorCode::NoGateway,
                    "no gateway could take the remaining devices",
                )));
            }
            return Ok(());
        }
        if let Some(r) = rate {
            let due = Duration::from_secs_f64(report.moved as f64 / f64::from(r.max(1)));
            tokio::time::sleep(due.saturating_sub(batch_started.elapsed())).await;
        }
    }
}

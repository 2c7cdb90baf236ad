//! `life-N`: one device at a time, the whole life on an idle platform.

use anyhow::{Context, Result};
use device_sim::fleet::{self, FleetStats, Phase};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

use super::platform::{Platform, Setup};
use super::report::{lat, Outcome};
use super::rtt::rtt;

/// `life`: one device at a time on an idle platform, the whole life from
/// the access request to connected on its gateway.
pub async fn life(setup: &Setup, n: usize, seed: u64) -> Result<Outcome> {
    let p = Platform::start(setup, &["gw-1", "gw-2"], true)?;
    let devices = p.enroll(n, seed)?;
    let floor = rtt(&p, 1000).await?;
    let mut config = p.fleet_config(devices, 1)?;
    config.hold = Some(Duration::ZERO);
    let report = fleet::run(config, FleetStats::new(n), CancellationToken::new()).await;
    let e2e = lat(&report, Phase::EndToEnd)
        .cloned()
        .context("no device connected")?;
    Ok(Outcome {
        mode: setup.mode,
        table: Vec::new(),
        scenario: format!("life-{n}"),
        devices: n,
        figures: vec![
            ("whole life p50 ms".into(), e2e.p50_ms),
            ("whole life p90 ms".into(), e2e.p90_ms),
            ("whole life p99 ms".into(), e2e.p99_ms),
        ],
        ratios: vec![("whole life p50".into(), e2e.p50_ms / floor.p50_ms)],
        rtt: floor,
        fleet: Some(report),
    })
}

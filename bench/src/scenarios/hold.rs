//! `hold-N`: what idle connected devices cost the platform in memory.

use anyhow::{bail, Context, Result};
use device_sim::fleet::{self, FleetStats};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

use super::platform::{Platform, Setup};
use super::report::Outcome;
use super::rtt::rtt;

/// `hold-N`: N devices connected and idle; the platform's RSS per device.
pub async fn hold(setup: &Setup, n: usize, seed: u64) -> Result<Outcome> {
    let p = Platform::start(setup, &["gw-1", "gw-2"], true)?;
    let devices = p.enroll(n, seed)?;
    let floor = rtt(&p, 1000).await?;
    let before = p.broker.rss_bytes().context("no RSS for the platform")?;
    let stop = CancellationToken::new();
    let stats = FleetStats::new(n);
    let task = tokio::spawn(fleet::run(
        p.fleet_config(devices, 256)?,
        stats.clone(),
        stop.clone(),
    ));
    let all = n as u64;
    if !stats
        .wait_until(Duration::from_secs(120), |s| s.snapshot().connected == all)
        .await
    {
        bail!("not all devices connected: {:?}", stats.snapshot());
    }
    // Let onboarding's transient connections close and queues drain.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = p.broker.rss_bytes().context("no RSS for the platform")?;
    stop.cancel();
    let report = task.await?;
    let per_device = after.saturating_sub(before) as f64 / n as f64;
    Ok(Outcome {
        mode: setup.mode,
        table: Vec::new(),
        scenario: format!("hold-{n}"),
        devices: n,
        figures: vec![
            ("platform RSS before, MiB".into(), before as f64 / 1048576.0),
            ("platform RSS holding, MiB".into(), after as f64 / 1048576.0),
            ("platform RSS per device, KiB".into(), per_device / 1024.0),
            ("connected".into(), report.connected as f64),
        ],
        ratios: Vec::new(),
        rtt: floor,
        fleet: Some(report),
    })
}

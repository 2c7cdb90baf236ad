//! `onboard-N`: N devices from nothing to connected on a gateway.

use anyhow::{Context, Result};
use device_sim::fleet::{self, FleetStats, Phase};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

use super::platform::{Platform, Setup};
use super::report::{lat, Outcome};
use super::rtt::rtt;

/// `onboard-N`: N devices from nothing to connected on a gateway.
pub async fn onboard(
    setup: &Setup,
    n: usize,
    concurrency: usize,
    rate: Option<f64>,
    seed: u64,
) -> Result<Outcome> {
    let p = Platform::start(setup, &["gw-1", "gw-2"], true)?;
    let devices = p.enroll(n, seed)?;
    let floor = rtt(&p, 1000).await?;
    let mut config = p.fleet_config(devices, concurrency)?;
    config.rate = rate;
    config.hold = Some(Duration::ZERO);
    let stats = FleetStats::new(n);
    let cpu = |proc: Option<&harness::Proc>| proc.and_then(harness::Proc::cpu_ms);
    let (platform_cpu, ap_cpu) = (cpu(Some(&p.broker)), cpu(p.ap.as_ref()));
    let report = fleet::run(config, stats, CancellationToken::new()).await;
    // CPU per onboarded device: the platform process (broker, verifier,
    // registry, gateways) and the AP's, over the fleet's run only.
    let per_device = |before: Option<f64>, after: Option<f64>| match (before, after) {
        (Some(b), Some(a)) if report.connected > 0 => (a - b) / report.connected as f64,
        _ => f64::NAN,
    };
    let platform_ms = per_device(platform_cpu, cpu(Some(&p.broker)));
    let ap_ms = per_device(ap_cpu, cpu(p.ap.as_ref()));
    let e2e = lat(&report, Phase::EndToEnd)
        .cloned()
        .context("no device connected")?;
    let access = lat(&report, Phase::Access)
        .cloned()
        .context("no access latency")?;
    Ok(Outcome {
        mode: setup.mode,
        table: Vec::new(),
        scenario: format!("onboard-{n}"),
        devices: n,
        figures: vec![
            ("devices/s".into(), report.throughput_per_s),
            ("connected".into(), report.connected as f64),
            ("failed".into(), report.failed as f64),
            ("end-to-end p50 ms".into(), e2e.p50_ms),
            ("end-to-end p99 ms".into(), e2e.p99_ms),
            ("access p50 ms".into(), access.p50_ms),
            ("platform CPU ms/device".into(), platform_ms),
            ("AP CPU ms/device".into(), ap_ms),
            (
                "platform peak RSS MiB".into(),
                p.broker.rss_bytes().unwrap_or(0) as f64 / 1048576.0,
            ),
        ],
        ratios: vec![
            ("end-to-end p50".into(), e2e.p50_ms / floor.p50_ms),
            ("access p50".into(), access.p50_ms / floor.p50_ms),
        ],
        rtt: floor,
        fleet: Some(report),
    })
}

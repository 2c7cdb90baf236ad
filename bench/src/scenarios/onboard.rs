//! `onboard-N`: N devices from nothing to connected on a gateway.

use anyhow::{Context, Result};
use device_sim::fleet::{self, FleetStats, Phase};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

use super::cpu::CpuMeter;
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
    // CPU per onboarded device over the fleet's run only: the platform
    // process (broker, verifier, registry, gateways), the AP's, and the
    // fleet's (this process).
    let meter = CpuMeter::start(&p);
    let report = fleet::run(config, stats, CancellationToken::new()).await;
    let cpu = meter.figures(&p, report.connected.max(1) as usize);
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
            (
                "platform peak RSS MiB".into(),
                p.broker.rss_bytes().unwrap_or(0) as f64 / 1048576.0,
            ),
        ]
        .into_iter()
        .chain(cpu)
        .collect(),
        ratios: vec![
            ("end-to-end p50".into(), e2e.p50_ms / floor.p50_ms),
            ("access p50".into(), access.p50_ms / floor.p50_ms),
        ],
        rtt: floor,
        fleet: Some(report),
    })
}

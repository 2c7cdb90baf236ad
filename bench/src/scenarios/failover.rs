//! `failover-N`: a gateway process killed under its devices.

use anyhow::Result;
use device_sim::fleet::Phase;
use protocol::registry_admin::RegistryOp;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

use super::cpu::CpuMeter;
use super::platform::Setup;
use super::report::{histogram, lat, percentiles, Outcome};
use super::standby::fleet_on_gw1_with_gw2_standing_by;
use super::stranded::wait_all_on;

/// `failover-N`: N devices on gw-1's process; kill -9 it; the time until
/// all N are connected elsewhere. A probe times registry requests
/// meanwhile, to show the registry stays responsive.
pub async fn failover(setup: &Setup, n: usize, seed: u64) -> Result<Outcome> {
    let (mut p, stop, stats, task, floor) =
        fleet_on_gw1_with_gw2_standing_by(setup, n, seed).await?;

    let client = p.registry().await?;
    let probing = CancellationToken::new();
    let probe = {
        let probing = probing.clone();
        tokio::spawn(async move {
            let mut h = histogram()?;
            let mut errors = 0u64;
            while !probing.is_cancelled() {
                let t = Instant::now();
                match client.request(RegistryOp::Gateways).await {
                    Ok(_) => h.saturating_record(t.elapsed().as_micros().max(1) as u64),
                    Err(_) => errors += 1,
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            anyhow::Ok((percentiles(&h), errors))
        })
    };
    let meter = CpuMeter::start(&p);
    let t0 = Instant::now();
    if let Some(gw) = p.gateway("gw-1") {
        gw.kill()?;
    }
    let all = n as u64;
    wait_all_on(&p, &stats, "gw-2", all).await;
    let took = t0.elapsed();
    let on_gw2 = stats.on_gateway("gw-2");
    let cpu = meter.figures(&p, n);
    probing.cancel();
    let (registry_latency, probe_errors) = probe.await??;
    stop.cancel();
    let report = task.await?;
    let (move_p50, move_p99) =
        lat(&report, Phase::Move).map_or((f64::NAN, f64::NAN), |m| (m.p50_ms, m.p99_ms));
    Ok(Outcome {
        mode: setup.mode,
        table: Vec::new(),
        scenario: format!("failover-{n}"),
        devices: n,
        figures: vec![
            ("all re-homed, s".into(), took.as_secs_f64()),
            (
                "lost (not on gw-2)".into(),
                (n as u64).saturating_sub(on_gw2) as f64,
            ),
            ("move p50 ms".into(), move_p50),
            ("move p99 ms".into(), move_p99),
            ("connections lost".into(), report.losses as f64),
            ("refused connects".into(), report.refusals as f64),
            (
                "registry request p50 ms during failover".into(),
                registry_latency.p50_ms,
            ),
            (
                "registry request p99 ms during failover".into(),
                registry_latency.p99_ms,
            ),
            (
                "registry request max ms during failover".into(),
                registry_latency.max_ms,
            ),
            ("registry requests failed".into(), probe_errors as f64),
        ]
        .into_iter()
        .chain(cpu)
        .collect(),
        ratios: vec![("move p50".into(), move_p50 / floor.p50_ms)],
        rtt: floor,
        fleet: Some(report),
    })
}

//! `drain-N`: a whole gateway's devices moved by `registry drain`.

use anyhow::Result;
use device_sim::fleet::Phase;
use std::time::Instant;

use super::cpu::CpuMeter;
use super::platform::{run, strings, Setup};
use super::report::{lat, Outcome};
use super::standby::fleet_on_gw1_with_gw2_standing_by;
use super::stranded::wait_all_on;

/// `drain-N`: N devices on gw-1, `registry drain gw-1 --to gw-2`, the time
/// until all N are connected to gw-2.
pub async fn drain(setup: &Setup, n: usize, seed: u64) -> Result<Outcome> {
    let (p, stop, stats, task, floor) = fleet_on_gw1_with_gw2_standing_by(setup, n, seed).await?;

    let mut args = strings(&[
        "drain",
        "--gateway",
        "gw-1",
        "--to",
        "gw-2",
        "--broker",
        &p.addr,
        "--json",
        "--timeout",
        "120",
    ]);
    args.extend(p.client_args("admin", false)?);
    let meter = CpuMeter::start(&p);
    let t0 = Instant::now();
    let cli = tokio::task::spawn_blocking(move || run("registry", &args).map(|_| t0.elapsed()));
    let all = n as u64;
    wait_all_on(&p, &stats, "gw-2", all).await;
    let took = t0.elapsed();
    let on_gw2 = stats.on_gateway("gw-2");
    let cli_done = cli.await??;
    let cpu = meter.figures(&p, n);
    stop.cancel();
    let report = task.await?;
    let (move_p50, move_p99) =
        lat(&report, Phase::Move).map_or((f64::NAN, f64::NAN), |m| (m.p50_ms, m.p99_ms));
    Ok(Outcome {
        mode: setup.mode,
        table: Vec::new(),
        scenario: format!("drain-{n}"),
        devices: n,
        figures: vec![
            ("all moved, s".into(), took.as_secs_f64()),
            ("drain CLI returned, s".into(), cli_done.as_secs_f64()),
            ("moves".into(), report.moves as f64),
            (
                "lost (not on gw-2)".into(),
                all.saturating_sub(on_gw2) as f64,
            ),
            ("move p50 ms".into(), move_p50),
            ("move p99 ms".into(), move_p99),
            ("refusals".into(), report.refusals as f64),
        ]
        .into_iter()
        .chain(cpu)
        .collect(),
        ratios: vec![("move p50".into(), move_p50 / floor.p50_ms)],
        rtt: floor,
        fleet: Some(report),
    })
}

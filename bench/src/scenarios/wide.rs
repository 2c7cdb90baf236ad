//! `wide-N`: N devices onboarded past one process: several `broker
//! gateway` processes hold them, and several `device-sim fleet --slice`
//! processes run them, so that no process comes near its 20,000 open
//! files and no address pair near its ~28,000 ephemeral ports.

use anyhow::{bail, Context, Result};
use protocol::registry_admin::{RegistryOk, RegistryOp};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::platform::{path_str, spawn, strings, Platform, Setup};
use super::report::{Outcome, MIB};
use super::rtt::rtt;

/// Devices per gateway process and per fleet process at most: well under
/// the 19,000 connections a process is allowed here.
pub const PER_PROCESS: usize = 12_500;

/// How long each fleet slice holds its devices after its last one
/// connected, so that every slice's devices are connected at once.
const HOLD: &str = "45s";

/// How long the whole onboarding may take.
const DEADLINE: Duration = Duration::from_secs(900);

/// One process's figures over the run.
#[derive(Default, Clone)]
struct Usage {
    cpu_ms: f64,
    peak_rss: u64,
}

/// `wide-N` with `gateways` gateway processes and `fleets` fleet
/// processes (0: N / [`PER_PROCESS`], rounded up).
pub async fn wide(
    setup: &Setup,
    n: usize,
    gateways: usize,
    fleets: usize,
    seed: u64,
) -> Result<Outcome> {
    let per = |k: usize| if k == 0 { n.div_ceil(PER_PROCESS) } else { k };
    let (gateways, fleets) = (per(gateways).max(1), per(fleets).max(1));
    let mut p = Platform::start(setup, &[], true)?;
    let ids: Vec<String> = (1..=gateways).map(|i| format!("gw-{i}")).collect();
    for id in &ids {
        p.spawn_gateway(id)?;
    }
    for id in &ids {
        p.wait_alive(id).await?;
    }
    p.enroll(n, seed)?;
    let floor = rtt(&p, 1000).await?;
    let manifest = p.dir.path().join("fleet.csv");

    let mut slices = Vec::new();
    let t0 = Instant::now();
    for i in 1..=fleets {
        let json = p.dir.path().join(format!("fleet-{i}.json"));
        let mut args = strings(&[
            "fleet",
            "--manifest",
            path_str(&manifest)?,
            "--ssid",
            super::platform::SSID,
            "--auto-confirm",
            "--slice",
            &format!("{i}/{fleets}"),
            "--duration",
            HOLD,
            "--quiet",
            "--json",
            path_str(&json)?,
            "--broker",
            &p.addr,
            "--mqtt",
            &setup.mqtt_arg(),
        ]);
        args.extend(p.device_args()?);
        let proc = spawn(p.dir.path(), &format!("fleet-{i}"), "device-sim", &args)?;
        slices.push((proc, json, Usage::default()));
    }

    // Until every slice has exited: each process's CPU and peak memory,
    // and the most devices connected to the gateways at once.
    let registry = p.registry().await?;
    let mut peak_connected = 0u64;
    let mut platform = Usage::default();
    let mut gateway_usage = vec![Usage::default(); p.gateways.len()];
    let mut ap = Usage::default();
    let sample = |proc: &harness::Proc, u: &mut Usage| {
        if let Some(cpu) = proc.cpu_ms() {
            u.cpu_ms = cpu;
        }
        u.peak_rss = u.peak_rss.max(proc.rss_bytes().unwrap_or(0));
    };
    loop {
        sample(&p.broker, &mut platform);
        for (gw, u) in p.gateways.iter().zip(gateway_usage.iter_mut()) {
            sample(gw, u);
        }
        if let Some(a) = &p.ap {
            sample(a, &mut ap);
        }
        let mut running = 0;
        for (proc, _, u) in slices.iter_mut() {
            if proc.wait_exit(Duration::ZERO)?.is_none() {
                sample(proc, u);
                running += 1;
            }
        }
        if let Ok(RegistryOk::Gateways { gateways }) = registry.request(RegistryOp::Gateways).await
        {
            peak_connected = peak_connected.max(gateways.iter().map(|g| g.connected).sum());
        }
        if running == 0 {
            break;
        }
        if t0.elapsed() > DEADLINE {
            bail!("the fleets did not finish in {DEADLINE:?}:\n{}", p.tails());
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    registry.close().await;

    let mut connected = 0u64;
    let mut failed = 0u64;
    let mut slowest = 0f64;
    let mut e2e_p99 = 0f64;
    let mut figures = Vec::new();
    let mut errors: std::collections::BTreeMap<String, u64> = Default::default();
    for (i, (proc, json, u)) in slices.iter().enumerate() {
        let report = read_report(json).with_context(|| proc.tail())?;
        let field = |k: &str| report.get(k).and_then(serde_json::Value::as_f64);
        connected += field("connected").unwrap_or(0.0) as u64;
        failed += field("failed").unwrap_or(0.0) as u64;
        slowest = slowest.max(field("elapsed_s").unwrap_or(0.0));
        let p99 = report
            .pointer("/latency/end_to_end/p99_ms")
            .and_then(serde_json::Value::as_f64)
            .unwrap_or(f64::NAN);
        e2e_p99 = e2e_p99.max(p99);
        if let Some(map) = report.get("errors").and_then(serde_json::Value::as_object) {
            for (code, count) in map {
                *errors.entry(code.clone()).or_default() += count.as_u64().unwrap_or(0);
            }
        }
        let rss = field("peak_rss_bytes").map_or(u.peak_rss, |b| b as u64);
        figures.push((format!("fleet-{} CPU s", i + 1), u.cpu_ms / 1000.0));
        figures.push((format!("fleet-{} peak RSS MiB", i + 1), rss as f64 / MIB));
    }
    let mut head = vec![
        ("devices/s".into(), connected as f64 / slowest.max(1e-9)),
        ("connected".into(), connected as f64),
        ("failed".into(), failed as f64),
        ("most connected at once".into(), peak_connected as f64),
        ("slowest slice, s".into(), slowest),
        ("end-to-end p99 ms (worst slice)".into(), e2e_p99),
        ("gateway processes".into(), gateways as f64),
        ("fleet processes".into(), fleets as f64),
        ("platform CPU s".into(), platform.cpu_ms / 1000.0),
        (
            "platform peak RSS MiB".into(),
            platform.peak_rss as f64 / MIB,
        ),
        ("AP CPU s".into(), ap.cpu_ms / 1000.0),
        ("AP peak RSS MiB".into(), ap.peak_rss as f64 / MIB),
    ];
    for (gw, u) in p.gateways.iter().zip(&gateway_usage) {
        head.push((format!("{} CPU s", gw.name()), u.cpu_ms / 1000.0));
        head.push((
            format!("{} peak RSS MiB", gw.name()),
            u.peak_rss as f64 / MIB,
        ));
    }
    head.extend(figures);
    let table = errors
        .iter()
        .map(|(code, count)| format!("   failed {code}: {count}"))
        .collect();
    if connected < n as u64 {
        println!("{}", p.tails());
        for (proc, _, _) in &slices {
            println!("--- {}:\n{}", proc.name(), proc.tail());
        }
    }
    Ok(Outcome {
        mode: setup.mode,
        table,
        scenario: format!("wide-{n}"),
        devices: n,
        figures: head,
        ratios: Vec::new(),
        rtt: floor,
        fleet: None,
    })
}

fn read_report(path: &PathBuf) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("no fleet report at {}", path.display()))?;
    Ok(serde_json::from_str(&text)?)
}

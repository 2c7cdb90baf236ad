//! `scale-out-N`: N devices onboarded through workers running as their own
//! processes on Mosquitto and PostgreSQL (the scale-out topology of
//! docs/SCALING.md), once with one instance of each worker and once with
//! two, in the same run: the same-run ratio of their throughputs, and each
//! process's CPU. Walkthrough mode: Mosquitto has no hook for the secure
//! mode's per-device logins.

use anyhow::{bail, Context, Result};
use bus::BusOptions;
use device_sim::fleet::{self, FleetConfig, FleetStats};
use device_sim::manifest;
use harness::{Mosquitto, Postgres, Proc};
use protocol::registry_admin::{RegistryOk, RegistryOp};
use registry::RegistryClient;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

use super::platform::{path_str, run, spawn, spawn_logging, strings, Setup};
use super::report::{Mode, Outcome};
use super::rtt::rtt_via;

const SSID: &str = "home-wifi";
const STARTUP: Duration = Duration::from_secs(30);

/// The workers' logs: their start-up lines, not a line per device.
const WORKER_LOG: &str =
    "warn,verifier::worker=info,registry::worker=info,registry::worker::state=warn";

/// Mosquitto, PostgreSQL, `instances` verifiers and registries, two
/// gateways and an AP, each its own process.
struct Stack {
    dir: tempfile::TempDir,
    pg: Postgres,
    mqtt: Mosquitto,
    workers: Vec<Proc>,
    others: Vec<Proc>,
}

impl Stack {
    fn start(instances: usize) -> Result<Stack> {
        let dir = tempfile::Builder::new()
            .prefix("platform-bench-scale-out-")
            .disable_cleanup(std::env::var_os("BENCH_KEEP").is_some())
            .tempdir()?;
        let pg_dir = dir.path().join("pg");
        let mqtt_dir = dir.path().join("mqtt");
        std::fs::create_dir_all(&pg_dir)?;
        std::fs::create_dir_all(&mqtt_dir)?;
        let pg = Postgres::start(&pg_dir)?;
        pg.create_db("platform")?;
        let url = pg.url("platform");
        let mqtt = Mosquitto::start(&mqtt_dir)?;
        let addr = mqtt.address();
        let key = dir.path().join("verifier-store.key");
        let mut workers = Vec::new();
        for i in 0..instances {
            let common = strings(&["serve", "--walkthrough", "--broker", &addr, "--store", &url]);
            let mut args = common.clone();
            args.extend(strings(&[
                "--store-key",
                path_str(&key)?,
                "--instance",
                &format!("v{i}"),
            ]));
            let mut v = spawn_logging(
                dir.path(),
                &format!("verifier-{i}"),
                "verifier",
                &args,
                WORKER_LOG,
            )?;
            v.wait_for("verifier serving", STARTUP)?;
            workers.push(v);
            let mut args = common;
            args.extend(strings(&["--instance", &format!("r{i}")]));
            let mut r = spawn_logging(
                dir.path(),
                &format!("registry-{i}"),
                "registry",
                &args,
                WORKER_LOG,
            )?;
            r.wait_for("registry serving", STARTUP)?;
            workers.push(r);
        }
        let mut others = Vec::new();
        for gw in ["gw-1", "gw-2"] {
            let listen = format!("127.0.0.1:{}", harness::free_port()?);
            let args = strings(&[
                "gateway",
                "--id",
                gw,
                "--listen",
                &listen,
                "--platform",
                &addr,
                "--walkthrough",
            ]);
            let mut g = spawn(dir.path(), gw, "broker", &args)?;
            g.wait_for("gateway listening", STARTUP)?;
            others.push(g);
        }
        let args = strings(&[
            "--broker",
            &addr,
            "--ssid",
            SSID,
            "--password",
            "bench password",
            "--auto-confirm",
            "--walkthrough",
        ]);
        let mut ap = spawn(dir.path(), "ap", "ap-sim", &args)?;
        ap.wait_for("AP serving", STARTUP)?;
        others.push(ap);
        Ok(Stack {
            dir,
            pg,
            mqtt,
            workers,
            others,
        })
    }

    fn opts(&self, name: &str) -> Result<BusOptions> {
        Ok(BusOptions::new(
            &self.mqtt.address(),
            format!("{name}-{:08x}", fastrand::u32(..)),
        )?
        .with_credentials("admin", ""))
    }

    async fn wait_gateways(&self) -> Result<()> {
        let client =
            RegistryClient::connect(self.opts("bench-admin")?, Duration::from_secs(10)).await?;
        let deadline = Instant::now() + STARTUP;
        loop {
            if let Ok(RegistryOk::Gateways { gateways }) =
                client.request(RegistryOp::Gateways).await
            {
                if gateways.iter().filter(|g| g.alive).count() == 2 {
                    client.close().await;
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                bail!("the gateways never came alive");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// CPU ms of every process (workers summed by kind), and this one's.
    fn cpu(&self) -> Vec<(String, f64)> {
        let mut by: Vec<(String, f64)> = Vec::new();
        let mut add = |name: &str, ms: Option<f64>| {
            let ms = ms.unwrap_or(0.0);
            match by.iter_mut().find(|(n, _)| n == name) {
                Some((_, v)) => *v += ms,
                None => by.push((name.to_owned(), ms)),
            }
        };
        for p in &self.workers {
            let kind = if p.name().starts_with("verifier") {
                "verifiers"
            } else {
                "registries"
            };
            add(kind, p.cpu_ms());
        }
        for p in &self.others {
            let kind = if p.name().starts_with("gw") {
                "gateways"
            } else {
                "AP"
            };
            add(kind, p.cpu_ms());
        }
        add("mosquitto", self.mqtt.pid().and_then(harness::cpu_ms));
        add("postgresql", self.pg.pid().and_then(harness::cpu_ms_tree));
        add("fleet", harness::cpu_ms(std::process::id()));
        by
    }
}

/// One configuration's run: devices/s, the rtt floor, CPU ms per device
/// by process kind.
struct Measured {
    per_s: f64,
    floor_p50_ms: f64,
    cpu_per_device: Vec<(String, f64)>,
    failed: u64,
}

async fn measure(
    instances: usize,
    n: usize,
    concurrency: usize,
    seed: u64,
    setup: &Setup,
) -> Result<Measured> {
    let stack = Stack::start(instances)?;
    let devices = manifest::generate(n, seed);
    let file = stack.dir.path().join("fleet.csv");
    manifest::write(&file, &devices)?;
    run(
        "verifier",
        &strings(&[
            "import",
            path_str(&file)?,
            "--broker",
            &stack.mqtt.address(),
            "--walkthrough",
        ]),
    )?;
    stack.wait_gateways().await?;
    let floor = rtt_via(|name| stack.opts(name), 500).await?;
    let mut config = FleetConfig::new(stack.mqtt.address(), devices, SSID);
    config.concurrency = concurrency;
    config.hold = Some(Duration::ZERO);
    if !setup.mqtt.is_empty() {
        config.mqtt = setup.mqtt.clone();
    }
    let stats = FleetStats::new(n);
    let before = stack.cpu();
    let report = fleet::run(config, stats, CancellationToken::new()).await;
    let after = stack.cpu();
    let done = report.connected.max(1) as f64;
    let cpu_per_device = after
        .iter()
        .map(|(name, ms)| {
            let was = before
                .iter()
                .find(|(b, _)| b == name)
                .map_or(0.0, |(_, v)| *v);
            (name.clone(), (ms - was) / done)
        })
        .collect();
    if report.connected == 0 {
        bail!("no device connected");
    }
    Ok(Measured {
        per_s: report.throughput_per_s,
        floor_p50_ms: floor.p50_ms,
        cpu_per_device,
        failed: report.failed,
    })
}

/// `scale-out-N`: one instance of each worker, then two, on fresh stacks
/// in the same run.
pub async fn scale_out(setup: &Setup, n: usize, concurrency: usize, seed: u64) -> Result<Outcome> {
    if !Postgres::available() || !Mosquitto::available() {
        bail!("scale-out needs Debian's mosquitto and postgresql packages");
    }
    let one = measure(1, n, concurrency, seed, setup)
        .await
        .context("one instance of each worker")?;
    let two = measure(2, n, concurrency, seed + 1, setup)
        .await
        .context("two instances of each worker")?;
    let mut figures = vec![
        ("devices/s, 1 instance".into(), one.per_s),
        ("devices/s, 2 instances".into(), two.per_s),
        ("failed, 1 instance".into(), one.failed as f64),
        ("failed, 2 instances".into(), two.failed as f64),
        ("rtt floor p50 ms, 2 instances".into(), two.floor_p50_ms),
    ];
    for (label, m) in [("1 instance", &one), ("2 instances", &two)] {
        for (name, ms) in &m.cpu_per_device {
            figures.push((format!("{name} CPU ms/device, {label}"), *ms));
        }
    }
    let floor = device_sim::report::Percentiles {
        count: 500,
        p50_ms: one.floor_p50_ms,
        ..Default::default()
    };
    Ok(Outcome {
        mode: Mode::Walkthrough,
        table: Vec::new(),
        scenario: format!("scale-out-{n} (Mosquitto + PostgreSQL)"),
        devices: n,
        figures,
        ratios: vec![(
            "devices/s, 2 instances over 1 (not the rtt floor)".into(),
            two.per_s / one.per_s.max(f64::MIN_POSITIVE),
        )],
        rtt: floor,
        fleet: None,
    })
}

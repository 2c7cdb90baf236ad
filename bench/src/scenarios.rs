//! The benchmark scenarios. Each starts a fresh platform from the release
//! binaries, measures the `rtt` floor on it, runs the flow, and prints the
//! figures and the same-run ratio of the flow to the floor.

use crate::procs::{free_port, run, spawn, Proc};
use anyhow::{bail, Context, Result};
use bus::{Bus, BusOptions};
use device_sim::fleet::{self, FleetConfig, FleetStats, Phase};
use device_sim::manifest;
use device_sim::report::{FleetReport, Percentiles};
use hdrhistogram::Histogram;
use protocol::registry_admin::RegistryOp;
use registry::RegistryClient;
use serde::Serialize;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

const SSID: &str = "bench-wifi";
const STARTUP: Duration = Duration::from_secs(30);

/// A platform for one run, in its own scratch directory.
pub struct Platform {
    pub dir: tempfile::TempDir,
    pub addr: String,
    pub broker: Proc,
    pub ap: Option<Proc>,
    pub gateways: Vec<Proc>,
}

impl Platform {
    /// The platform broker with the verifier and registry, and `gateways`
    /// (ids) in the same process; with an AP for [`SSID`] if `ap`.
    pub fn start(gateways: &[&str], ap: bool) -> Result<Platform> {
        Self::start_with(gateways, ap, false)
    }

    /// With `broker_only`, the platform broker alone: no worker, no gateway.
    pub fn start_with(gateways: &[&str], ap: bool, broker_only: bool) -> Result<Platform> {
        let dir = tempfile::Builder::new()
            .prefix("platform-bench-")
            .disable_cleanup(std::env::var_os("BENCH_KEEP").is_some())
            .tempdir()?;
        let port = free_port()?;
        let addr = format!("127.0.0.1:{port}");
        // Top-level keys first: after a [table] they would belong to it.
        let mut toml = String::from(if gateways.is_empty() {
            "gateways = []\n"
        } else {
            ""
        });
        toml.push_str(&format!(
            "[platform]\nlisten = \"{addr}\"\nmax_connections = 19000\n\
             [metrics]\nlisten = \"127.0.0.1:0\"\n"
        ));
        for id in gateways {
            toml.push_str(&format!(
                "[[gateways]]\nid = \"{id}\"\nlisten = \"127.0.0.1:{}\"\n",
                free_port()?
            ));
        }
        let config = dir.path().join("platform.toml");
        std::fs::write(&config, toml)?;
        let data = dir.path().join("data");
        let mut args = vec![
            "--config",
            path_str(&config)?,
            "--data-dir",
            path_str(&data)?,
        ];
        if broker_only {
            args.push("--broker-only");
        }
        let mut broker = spawn(dir.path(), "platform", "broker", &args)?;
        broker.wait_for("platform ready", STARTUP)?;
        let ap = if ap {
            let mut ap = spawn(
                dir.path(),
                "ap",
                "ap-sim",
                &[
                    "--broker",
                    &addr,
                    "--ssid",
                    SSID,
                    "--password",
                    "bench password",
                    "--auto-confirm",
                ],
            )?;
            ap.wait_for("AP serving", STARTUP)?;
            Some(ap)
        } else {
            None
        };
        Ok(Platform {
            dir,
            addr,
            broker,
            ap,
            gateways: Vec::new(),
        })
    }

    /// The last lines of every process's log, for errors.
    pub fn tails(&self) -> String {
        std::iter::once(&self.broker)
            .chain(self.ap.iter())
            .chain(self.gateways.iter())
            .map(|proc| format!("--- {}:\n{}", proc.name, proc.tail()))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// A gateway as its own process (so it can be killed, and so its
    /// connections count against its own open-file limit).
    pub fn spawn_gateway(&mut self, id: &str) -> Result<()> {
        let listen = format!("127.0.0.1:{}", free_port()?);
        let mut gw = spawn(
            self.dir.path(),
            id,
            "broker",
            &[
                "gateway",
                "--id",
                id,
                "--listen",
                &listen,
                "--platform",
                &self.addr,
                "--max-connections",
                "19000",
            ],
        )?;
        gw.wait_for("gateway listening", STARTUP)?;
        self.gateways.push(gw);
        Ok(())
    }

    pub fn gateway(&mut self, id: &str) -> Option<&mut Proc> {
        self.gateways.iter_mut().find(|g| g.name == id)
    }

    /// `n` identities, enrolled through `verifier import`.
    pub fn enroll(&self, n: usize, seed: u64) -> Result<Vec<manifest::Identity>> {
        let devices = manifest::generate(n, seed);
        let file = self.dir.path().join("fleet.csv");
        manifest::write(&file, &devices)?;
        run(
            "verifier",
            &["import", path_str(&file)?, "--broker", &self.addr],
        )?;
        Ok(devices)
    }

    pub async fn registry(&self) -> Result<RegistryClient> {
        let opts = BusOptions::new(&self.addr, format!("bench-admin-{:08x}", fastrand::u32(..)))?
            .with_credentials("admin", "");
        Ok(RegistryClient::connect(opts, Duration::from_secs(10)).await?)
    }

    /// Waits until the registry sees `id` alive.
    pub async fn wait_alive(&self, id: &str) -> Result<()> {
        let client = self.registry().await?;
        let deadline = Instant::now() + STARTUP;
        loop {
            if let protocol::registry_admin::RegistryOk::Gateways { gateways } =
                client.request(RegistryOp::Gateways).await?
            {
                if gateways.iter().any(|g| g.gateway_id == id && g.alive) {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                bail!("{id} never came alive");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn path_str(p: &Path) -> Result<&str> {
    p.to_str().context("a non-UTF-8 temp path")
}

/// The floor: QoS 1 request/response round trips between two clients
/// through the platform broker, with no worker in the path.
pub async fn rtt(broker: &str, samples: usize) -> Result<Percentiles> {
    let stop = CancellationToken::new();
    let _stop = stop.clone().drop_guard();
    let tag = format!("{:08x}", fastrand::u32(..));
    let req_topic = format!("bench/{tag}/request");
    let rep_topic = format!("bench/{tag}/reply");
    let opts = |id: &str| {
        BusOptions::new(broker, format!("{id}-{tag}")).map(|o| o.with_credentials("bench", ""))
    };
    let (responder, mut requests) = Bus::connect(
        opts("rtt-responder")?,
        vec![req_topic.clone()],
        stop.clone(),
    );
    let (requester, mut replies) = Bus::connect(
        opts("rtt-requester")?,
        vec![rep_topic.clone()],
        stop.clone(),
    );
    responder.ready(Duration::from_secs(10)).await?;
    requester.ready(Duration::from_secs(10)).await?;
    let echo = {
        let rep_topic = rep_topic.clone();
        tokio::spawn(async move {
            while let Some(msg) = requests.recv().await {
                if responder
                    .publish(rep_topic.clone(), msg.payload.to_vec())
                    .await
                    .is_err()
                {
                    break;
                }
            }
        })
    };
    let mut h = histogram()?;
    for i in 0..samples + samples / 10 {
        let t = Instant::now();
        requester
            .publish(req_topic.clone(), i.to_le_bytes().to_vec())
            .await?;
        tokio::time::timeout(Duration::from_secs(5), replies.recv())
            .await
            .context("no rtt reply within 5 s")?
            .context("rtt client closed")?;
        // The first tenth warms up connections and caches.
        if i >= samples / 10 {
            h.saturating_record(t.elapsed().as_micros().max(1) as u64);
        }
    }
    echo.abort();
    Ok(percentiles(&h))
}

/// Microseconds, 1 µs to 10 min, 3 significant digits.
fn histogram() -> Result<Histogram<u64>> {
    Ok(Histogram::new_with_bounds(1, 600_000_000, 3)?)
}

fn percentiles(h: &Histogram<u64>) -> Percentiles {
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    Percentiles {
        count: h.len(),
        p50_ms: ms(0.5),
        p90_ms: ms(0.9),
        p99_ms: ms(0.99),
        max_ms: h.max() as f64 / 1000.0,
        curve: Vec::new(),
    }
}

/// What every scenario prints at the end, and writes with --json.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub scenario: String,
    pub devices: usize,
    pub rtt: Percentiles,
    /// The scenario's headline figures, by name.
    pub figures: Vec<(String, f64)>,
    /// The flow over the floor, same run.
    pub ratios: Vec<(String, f64)>,
    pub fleet: Option<FleetReport>,
}

impl Outcome {
    pub fn print(&self) {
        println!("== {} ({} devices)", self.scenario, self.devices);
        println!(
            "   rtt floor: p50 {:.3} ms, p99 {:.3} ms ({} samples)",
            self.rtt.p50_ms, self.rtt.p99_ms, self.rtt.count
        );
        for (name, v) in &self.figures {
            println!("   {name}: {v:.3}");
        }
        for (name, v) in &self.ratios {
            println!("   ratio {name}: {v:.1}x the rtt floor");
        }
    }
}

fn fleet_config(p: &Platform, devices: Vec<manifest::Identity>, concurrency: usize) -> FleetConfig {
    let mut config = FleetConfig::new(&p.addr, devices, SSID);
    config.concurrency = concurrency;
    config
}

fn lat(report: &FleetReport, phase: Phase) -> Option<&Percentiles> {
    report.latency.get(phase.name())
}

/// `onboard-N`: N devices from nothing to connected on a gateway.
pub async fn onboard(
    n: usize,
    concurrency: usize,
    rate: Option<f64>,
    seed: u64,
) -> Result<Outcome> {
    let p = Platform::start(&["gw-1", "gw-2"], true)?;
    let devices = p.enroll(n, seed)?;
    let floor = rtt(&p.addr, 1000).await?;
    let mut config = fleet_config(&p, devices, concurrency);
    config.rate = rate;
    config.hold = Some(Duration::ZERO);
    let stats = FleetStats::new(n);
    let report = fleet::run(config, stats, CancellationToken::new()).await;
    let e2e = lat(&report, Phase::EndToEnd)
        .cloned()
        .context("no device connected")?;
    let access = lat(&report, Phase::Access)
        .cloned()
        .context("no access latency")?;
    Ok(Outcome {
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
        ],
        ratios: vec![
            ("end-to-end p50".into(), e2e.p50_ms / floor.p50_ms),
            ("access p50".into(), access.p50_ms / floor.p50_ms),
        ],
        rtt: floor,
        fleet: Some(report),
    })
}

/// Starts a fleet in the background and waits until all of it is on
/// `gateway`.
async fn fleet_on(
    p: &Platform,
    n: usize,
    seed: u64,
    gateway: &str,
    stop: &CancellationToken,
) -> Result<(Arc<FleetStats>, tokio::task::JoinHandle<FleetReport>)> {
    let devices = p.enroll(n, seed)?;
    let config = fleet_config(p, devices, 256);
    let stats = FleetStats::new(n);
    let task = tokio::spawn(fleet::run(config, stats.clone(), stop.clone()));
    let all = n as u64;
    if !stats
        .wait_until(Duration::from_secs(120), |s| s.on_gateway(gateway) == all)
        .await
    {
        bail!(
            "only {} of {n} devices reached {gateway}: {:?}",
            stats.on_gateway(gateway),
            stats.snapshot()
        );
    }
    Ok((stats, task))
}

/// The start of `drain` and `failover`: gw-1 and gw-2 as their own
/// processes, all N devices on gw-1, gw-2 alive and empty, and the floor.
async fn fleet_on_gw1_with_gw2_standing_by(
    n: usize,
    seed: u64,
) -> Result<(
    Platform,
    CancellationToken,
    Arc<FleetStats>,
    tokio::task::JoinHandle<FleetReport>,
    Percentiles,
)> {
    let mut p = Platform::start(&[], true)?;
    p.spawn_gateway("gw-1")?;
    p.wait_alive("gw-1").await?;
    let stop = CancellationToken::new();
    let (stats, task) = fleet_on(&p, n, seed, "gw-1", &stop).await?;
    p.spawn_gateway("gw-2")?;
    p.wait_alive("gw-2").await?;
    let floor = rtt(&p.addr, 1000).await?;
    Ok((p, stop, stats, task, floor))
}

/// `drain-N`: N devices on gw-1, `registry drain gw-1 --to gw-2`, the time
/// until all N are connected to gw-2.
pub async fn drain(n: usize, seed: u64) -> Result<Outcome> {
    let (p, stop, stats, task, floor) = fleet_on_gw1_with_gw2_standing_by(n, seed).await?;

    let t0 = Instant::now();
    let addr = p.addr.clone();
    let cli = tokio::task::spawn_blocking(move || {
        let out = run(
            "registry",
            &[
                "drain",
                "--gateway",
                "gw-1",
                "--to",
                "gw-2",
                "--broker",
                &addr,
                "--json",
                "--timeout",
                "120",
            ],
        );
        out.map(|_| t0.elapsed())
    });
    let all = n as u64;
    let moved = stats
        .wait_until(Duration::from_secs(120), |s| s.on_gateway("gw-2") == all)
        .await;
    let took = t0.elapsed();
    let on_gw2 = stats.on_gateway("gw-2");
    let cli_done = cli.await??;
    stop.cancel();
    let report = task.await?;
    if !moved {
        bail!(
            "only {on_gw2} of {n} devices reached gw-2: {:?}\n{}",
            stats.snapshot(),
            p.tails()
        );
    }
    let mv = lat(&report, Phase::Move)
        .cloned()
        .context("no moves measured")?;
    Ok(Outcome {
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
            ("move p50 ms".into(), mv.p50_ms),
            ("move p99 ms".into(), mv.p99_ms),
            ("refusals".into(), report.refusals as f64),
        ],
        ratios: vec![("move p50".into(), mv.p50_ms / floor.p50_ms)],
        rtt: floor,
        fleet: Some(report),
    })
}

/// `failover-N`: N devices on gw-1's process; kill -9 it; the time until
/// all N are connected elsewhere. A probe times registry requests
/// meanwhile, to show the registry stays responsive.
pub async fn failover(n: usize, seed: u64) -> Result<Outcome> {
    let (mut p, stop, stats, task, floor) = fleet_on_gw1_with_gw2_standing_by(n, seed).await?;

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
    let t0 = Instant::now();
    if let Some(gw) = p.gateway("gw-1") {
        gw.kill();
    }
    let all = n as u64;
    let rehomed = stats
        .wait_until(Duration::from_secs(120), |s| s.on_gateway("gw-2") == all)
        .await;
    let took = t0.elapsed();
    probing.cancel();
    let (registry_latency, probe_errors) = probe.await??;
    stop.cancel();
    let report = task.await?;
    if !rehomed {
        bail!(
            "only {} of {n} devices reached gw-2",
            report.on_gateway.get("gw-2").unwrap_or(&0)
        );
    }
    let mv = lat(&report, Phase::Move)
        .cloned()
        .context("no moves measured")?;
    Ok(Outcome {
        scenario: format!("failover-{n}"),
        devices: n,
        figures: vec![
            ("all re-homed, s".into(), took.as_secs_f64()),
            ("move p50 ms".into(), mv.p50_ms),
            ("move p99 ms".into(), mv.p99_ms),
            ("connections lost".into(), report.losses as f64),
            ("refused connects".into(), report.refusals as f64),
            (
                "registry request p50 ms during failover".into(),
                registry_latency.p50_ms,
            ),
            (
                "registry request max ms during failover".into(),
                registry_latency.max_ms,
            ),
            ("registry requests failed".into(), probe_errors as f64),
        ],
        ratios: vec![("move p50".into(), mv.p50_ms / floor.p50_ms)],
        rtt: floor,
        fleet: Some(report),
    })
}

/// `hold-N`: N devices connected and idle; the platform's RSS per device.
pub async fn hold(n: usize, seed: u64) -> Result<Outcome> {
    let p = Platform::start(&["gw-1", "gw-2"], true)?;
    let devices = p.enroll(n, seed)?;
    let floor = rtt(&p.addr, 1000).await?;
    let before = p.broker.rss_bytes().context("no RSS for the platform")?;
    let stop = CancellationToken::new();
    let stats = FleetStats::new(n);
    let task = tokio::spawn(fleet::run(
        fleet_config(&p, devices, 256),
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

/// `life`: one device at a time on an idle platform, the whole life from
/// the access request to connected on its gateway.
pub async fn life(n: usize, seed: u64) -> Result<Outcome> {
    let p = Platform::start(&["gw-1", "gw-2"], true)?;
    let devices = p.enroll(n, seed)?;
    let floor = rtt(&p.addr, 1000).await?;
    let mut config = fleet_config(&p, devices, 1);
    config.hold = Some(Duration::ZERO);
    let report = fleet::run(config, FleetStats::new(n), CancellationToken::new()).await;
    let e2e = lat(&report, Phase::EndToEnd)
        .cloned()
        .context("no device connected")?;
    Ok(Outcome {
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

/// `rtt`: the floor alone, on a platform broker with no workers.
pub async fn rtt_only(samples: usize) -> Result<Outcome> {
    let p = Platform::start_with(&[], false, true)?;
    let floor = rtt(&p.addr, samples).await?;
    Ok(Outcome {
        scenario: "rtt".into(),
        devices: 0,
        figures: vec![
            ("round trip p50 ms".into(), floor.p50_ms),
            ("round trip p99 ms".into(), floor.p99_ms),
            ("round trip max ms".into(), floor.max_ms),
        ],
        ratios: Vec::new(),
        rtt: floor,
        fleet: None,
    })
}

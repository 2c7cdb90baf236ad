//! The benchmark scenarios. Each starts a fresh platform from the release
//! binaries, measures the `rtt` floor on it, runs the flow, and prints the
//! figures and the same-run ratio of the flow to the floor.

use crate::procs::{free_port, rss_bytes_of, run, spawn, Proc};
use anyhow::{bail, Context, Result};
use bus::{Bus, BusOptions};
use device_sim::fleet::{self, FleetConfig, FleetStats, Phase};
use device_sim::manifest;
use device_sim::report::{FleetReport, Percentiles};
use hdrhistogram::Histogram;
use protocol::crypto::PlatformPublicKey;
use protocol::registry_admin::{RegistryOk, RegistryOp};
use registry::RegistryClient;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

const SSID: &str = "bench-wifi";
const STARTUP: Duration = Duration::from_secs(30);

/// The platform's security mode for a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// The default: every client logs in (admin, ap and gateway with the
    /// platform's bootstrap tokens, devices as themselves), the topic ACL,
    /// SPAKE2 onboarding, signed assignments.
    #[default]
    Secure,
    /// `[security] mode = "walkthrough"`, clients with `--walkthrough`:
    /// plaintext, no logins, no signatures. For comparison only.
    Walkthrough,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Secure => "secure",
            Mode::Walkthrough => "walkthrough",
        }
    }
}

/// How every platform of a run is configured.
#[derive(Debug, Clone, Default)]
pub struct Setup {
    pub mode: Mode,
    /// `[platform] segment_size` for the platform broker [default: the
    /// built-in one]. Below the default `max_payload_size` (256 KiB),
    /// `max_payload_size` is lowered to it, which the config requires.
    pub segment_size: Option<usize>,
    /// `[platform] segment_count` [default: the built-in one].
    pub segment_count: Option<usize>,
}

/// The built-in `[platform] max_payload_size`.
const DEFAULT_MAX_PAYLOAD: usize = 256 * 1024;

/// A platform for one run, in its own scratch directory.
pub struct Platform {
    pub dir: tempfile::TempDir,
    pub addr: String,
    pub mode: Mode,
    pub broker: Proc,
    pub ap: Option<Proc>,
    pub gateways: Vec<Proc>,
}

impl Platform {
    /// The platform broker with the verifier and registry, and `gateways`
    /// (ids) in the same process; with an AP for [`SSID`] if `ap`.
    pub fn start(setup: &Setup, gateways: &[&str], ap: bool) -> Result<Platform> {
        Self::start_with(setup, gateways, ap, false)
    }

    /// With `broker_only`, the platform broker alone: no worker, no gateway.
    pub fn start_with(
        setup: &Setup,
        gateways: &[&str],
        ap: bool,
        broker_only: bool,
    ) -> Result<Platform> {
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
            "[platform]\nlisten = \"{addr}\"\nmax_connections = 19000\n"
        ));
        if let Some(size) = setup.segment_size {
            toml.push_str(&format!("segment_size = {size}\n"));
            if size < DEFAULT_MAX_PAYLOAD {
                toml.push_str(&format!("max_payload_size = {size}\n"));
            }
        }
        if let Some(count) = setup.segment_count {
            toml.push_str(&format!("segment_count = {count}\n"));
        }
        toml.push_str("[metrics]\nlisten = \"127.0.0.1:0\"\n");
        if setup.mode == Mode::Walkthrough {
            toml.push_str("[security]\nmode = \"walkthrough\"\n");
        }
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
        let mut p = Platform {
            dir,
            addr,
            mode: setup.mode,
            broker,
            ap: None,
            gateways: Vec::new(),
        };
        if ap {
            let mut args = strings(&[
                "--broker",
                &p.addr,
                "--ssid",
                SSID,
                "--password",
                "bench password",
                "--auto-confirm",
            ]);
            args.extend(p.client_args("ap", true)?);
            let mut ap = spawn(p.dir.path(), "ap", "ap-sim", &args)?;
            ap.wait_for("AP serving", STARTUP)?;
            p.ap = Some(ap);
        }
        Ok(p)
    }

    /// The broker's `--data-dir`.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn token_file(&self, role: &str) -> PathBuf {
        self.data_dir()
            .join("credentials")
            .join(format!("{role}.token"))
    }

    fn key_file(&self) -> PathBuf {
        self.data_dir().join("platform.key.pub")
    }

    /// Secure mode: the bootstrap password of `role` (admin, ap, gateway),
    /// which the platform wrote on start. Walkthrough: empty.
    pub fn token(&self, role: &str) -> Result<String> {
        if self.mode == Mode::Walkthrough {
            return Ok(String::new());
        }
        let path = self.token_file(role);
        Ok(std::fs::read_to_string(&path)
            .with_context(|| format!("no {role} credential at {}", path.display()))?
            .trim()
            .to_owned())
    }

    /// Secure mode: the platform's public key. Walkthrough: None.
    pub fn platform_key(&self) -> Result<Option<PlatformPublicKey>> {
        if self.mode == Mode::Walkthrough {
            return Ok(None);
        }
        let path = self.key_file();
        let hex = std::fs::read_to_string(&path)
            .with_context(|| format!("no platform key at {}", path.display()))?;
        Ok(Some(
            PlatformPublicKey::from_hex(&hex)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?,
        ))
    }

    /// The flags a client binary needs to log in as `role`, and, with
    /// `key`, to check the platform's signatures; `--walkthrough` in
    /// walkthrough mode.
    pub fn client_args(&self, role: &str, key: bool) -> Result<Vec<String>> {
        if self.mode == Mode::Walkthrough {
            return Ok(strings(&["--walkthrough"]));
        }
        let mut args = strings(&["--password-file", path_str(&self.token_file(role))?]);
        if key {
            args.extend(strings(&[
                "--platform-key-file",
                path_str(&self.key_file())?,
            ]));
        }
        Ok(args)
    }

    /// Options for a raw admin client (admin may publish and subscribe to
    /// anything), with a unique client id.
    pub fn admin_opts(&self, prefix: &str) -> Result<BusOptions> {
        self.admin_opts_as(format!("{prefix}-{:08x}", fastrand::u32(..)))
    }

    /// [`Platform::admin_opts`] with exactly `client_id`.
    pub fn admin_opts_as(&self, client_id: String) -> Result<BusOptions> {
        Ok(BusOptions::new(&self.addr, client_id)?.with_credentials("admin", self.token("admin")?))
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
        let mut args = strings(&[
            "gateway",
            "--id",
            id,
            "--listen",
            &listen,
            "--platform",
            &self.addr,
            "--max-connections",
            "19000",
        ]);
        args.extend(self.client_args("gateway", true)?);
        let mut gw = spawn(self.dir.path(), id, "broker", &args)?;
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
        let mut args = strings(&["import", path_str(&file)?, "--broker", &self.addr]);
        args.extend(self.client_args("admin", false)?);
        run("verifier", &args)?;
        Ok(devices)
    }

    pub async fn registry(&self) -> Result<RegistryClient> {
        let opts = self.admin_opts("bench-admin")?;
        Ok(RegistryClient::connect(opts, Duration::from_secs(10)).await?)
    }

    /// Waits until the registry sees `id` alive.
    pub async fn wait_alive(&self, id: &str) -> Result<()> {
        let client = self.registry().await?;
        let deadline = Instant::now() + STARTUP;
        loop {
            if let RegistryOk::Gateways { gateways } = client.request(RegistryOp::Gateways).await? {
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

    /// A fleet of `devices` on this platform, in its mode.
    pub fn fleet_config(
        &self,
        devices: Vec<manifest::Identity>,
        concurrency: usize,
    ) -> Result<FleetConfig> {
        let mut config = FleetConfig::new(&self.addr, devices, SSID);
        config.concurrency = concurrency;
        config.platform_key = self.platform_key()?;
        Ok(config)
    }
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| (*a).to_owned()).collect()
}

fn path_str(p: &Path) -> Result<&str> {
    p.to_str().context("a non-UTF-8 temp path")
}

/// The floor: QoS 1 request/response round trips between two clients
/// through the platform broker, with no worker in the path. Both clients
/// log in as admin, the one role the ACL lets use any topic.
pub async fn rtt(p: &Platform, samples: usize) -> Result<Percentiles> {
    let stop = CancellationToken::new();
    let _stop = stop.clone().drop_guard();
    let tag = format!("{:08x}", fastrand::u32(..));
    let req_topic = format!("bench/{tag}/request");
    let rep_topic = format!("bench/{tag}/reply");
    let (responder, mut requests) = Bus::connect(
        p.admin_opts("rtt-responder")?,
        vec![req_topic.clone()],
        stop.clone(),
    );
    let (requester, mut replies) = Bus::connect(
        p.admin_opts("rtt-requester")?,
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
    pub mode: Mode,
    pub devices: usize,
    pub rtt: Percentiles,
    /// The scenario's headline figures, by name.
    pub figures: Vec<(String, f64)>,
    /// The flow over the floor, same run.
    pub ratios: Vec<(String, f64)>,
    pub fleet: Option<FleetReport>,
    /// Lines printed before the figures (the soak's tables).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub table: Vec<String>,
}

impl Outcome {
    pub fn print(&self) {
        println!(
            "== {} ({} devices, {} mode)",
            self.scenario,
            self.devices,
            self.mode.name()
        );
        for line in &self.table {
            println!("{line}");
        }
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

fn lat(report: &FleetReport, phase: Phase) -> Option<&Percentiles> {
    report.latency.get(phase.name())
}

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
    let report = fleet::run(config, stats, CancellationToken::new()).await;
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
    let config = p.fleet_config(devices, 256)?;
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
    setup: &Setup,
    n: usize,
    seed: u64,
) -> Result<(
    Platform,
    CancellationToken,
    Arc<FleetStats>,
    tokio::task::JoinHandle<FleetReport>,
    Percentiles,
)> {
    let mut p = Platform::start(setup, &[], true)?;
    p.spawn_gateway("gw-1")?;
    p.wait_alive("gw-1").await?;
    let stop = CancellationToken::new();
    let (stats, task) = fleet_on(&p, n, seed, "gw-1", &stop).await?;
    p.spawn_gateway("gw-2")?;
    p.wait_alive("gw-2").await?;
    let floor = rtt(&p, 1000).await?;
    Ok((p, stop, stats, task, floor))
}

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
    let t0 = Instant::now();
    let cli = tokio::task::spawn_blocking(move || run("registry", &args).map(|_| t0.elapsed()));
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
        mode: setup.mode,
        table: Vec::new(),
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

/// `rtt`: the floor alone, on a platform broker with no workers.
pub async fn rtt_only(setup: &Setup, samples: usize) -> Result<Outcome> {
    let p = Platform::start_with(setup, &[], false, true)?;
    let floor = rtt(&p, samples).await?;
    Ok(Outcome {
        mode: setup.mode,
        table: Vec::new(),
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

/// What `soak` runs.
#[derive(Debug, Clone)]
pub struct SoakOptions {
    /// Fresh devices per wave (all at once on the platform at most).
    pub n: usize,
    /// Waves start until this much time has passed.
    pub duration: Duration,
    /// How long each wave stays connected (and is remapped) once settled.
    pub hold: Duration,
    /// Remaps per second while a wave is connected.
    pub remap_rate: f64,
    /// How often the platform's RSS is sampled.
    pub sample_every: Duration,
    /// Some(P): a fixed pool of P devices, enrolled once, of which each
    /// wave re-onboards the next N (as after a factory reset), so the
    /// stores stop growing and what still grows is not data. None: N
    /// fresh devices every wave.
    pub pool: Option<usize>,
}

/// One RSS sample of the soak.
struct Sample {
    at: Duration,
    rss: u64,
    gateways_rss: Vec<u64>,
    onboarded: u64,
    remaps: u64,
    waves: u64,
}

/// One finished wave of the soak.
struct Wave {
    at: Duration,
    connected: u64,
    failed: u64,
    remaps: u64,
    moves: u64,
    e2e_p50_ms: f64,
    /// The platform's RSS once the wave's devices are gone.
    rss: u64,
}

const MIB: f64 = 1048576.0;

/// Counters the soak's tasks share.
#[derive(Default)]
struct SoakCounts {
    onboarded: AtomicU64,
    remaps: AtomicU64,
    remap_errors: AtomicU64,
    waves: AtomicU64,
}

/// `soak`: the platform with gw-1 and gw-2 as processes and an AP, for
/// `duration`: waves of N fresh devices (enrolled, onboarded, held while
/// the registry remaps them between gw-1 and gw-2, then stopped), with
/// the platform broker's RSS sampled throughout, to tell flat memory from
/// growth.
pub async fn soak(setup: &Setup, o: &SoakOptions, seed: u64) -> Result<Outcome> {
    if o.n == 0 || o.n > 2000 {
        bail!("soak: N must be 1 to 2000 devices per wave (got {})", o.n);
    }
    if o.pool.is_some_and(|pool| pool < o.n) {
        bail!("soak: --pool must hold at least the N devices of a wave");
    }
    let mut p = Platform::start(setup, &[], true)?;
    p.spawn_gateway("gw-1")?;
    p.spawn_gateway("gw-2")?;
    p.wait_alive("gw-1").await?;
    p.wait_alive("gw-2").await?;
    let floor = rtt(&p, 1000).await?;
    let counts = Arc::new(SoakCounts::default());
    let t0 = Instant::now();
    let done = CancellationToken::new();
    let _done = done.clone().drop_guard();

    let sampler = {
        let pid = p.broker.pid();
        let gw_pids: Vec<u32> = p.gateways.iter().map(Proc::pid).collect();
        let counts = counts.clone();
        let done = done.clone();
        let every = o.sample_every;
        tokio::spawn(async move {
            let mut samples = Vec::new();
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            println!(
                "-- soak: platform broker RSS every {every:?} (gw-1 / gw-2 RSS MiB in brackets)"
            );
            println!(
                "   {:>8} {:>9} {:>14} {:>9} {:>6}",
                "elapsed", "RSS MiB", "onboarded", "remaps", "waves"
            );
            loop {
                tokio::select! {
                    _ = done.cancelled() => break,
                    _ = tick.tick() => {}
                }
                let s = Sample {
                    at: t0.elapsed(),
                    rss: rss_bytes_of(pid).unwrap_or(0),
                    gateways_rss: gw_pids
                        .iter()
                        .map(|&g| rss_bytes_of(g).unwrap_or(0))
                        .collect(),
                    onboarded: counts.onboarded.load(Ordering::Relaxed),
                    remaps: counts.remaps.load(Ordering::Relaxed),
                    waves: counts.waves.load(Ordering::Relaxed),
                };
                println!("{}", sample_row(&s));
                samples.push(s);
            }
            samples
        })
    };

    // The devices of the wave now connected; the remapper moves them.
    let connected: Arc<Mutex<Vec<String>>> = Arc::default();
    let remapper = {
        let client = p.registry().await?;
        let connected = connected.clone();
        let counts = counts.clone();
        let done = done.clone();
        let period = Duration::from_secs_f64(1.0 / o.remap_rate.max(0.01));
        let enabled = o.remap_rate > 0.0;
        tokio::spawn(async move {
            let mut rng = fastrand::Rng::with_seed(seed);
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = done.cancelled() => break,
                    _ = tick.tick(), if enabled => {}
                }
                let device = {
                    let devices = connected.lock().unwrap_or_else(|e| e.into_inner());
                    if devices.is_empty() {
                        continue;
                    }
                    devices[rng.usize(..devices.len())].clone()
                };
                match remap_to_other(&client, &device).await {
                    Ok(true) => counts.remaps.fetch_add(1, Ordering::Relaxed),
                    Ok(false) | Err(_) => counts.remap_errors.fetch_add(1, Ordering::Relaxed),
                };
            }
            client.close().await;
        })
    };

    let pool = match o.pool {
        Some(size) => tokio::task::block_in_place(|| p.enroll(size, seed))?,
        None => Vec::new(),
    };
    let mut waves = Vec::new();
    let mut failures = Vec::new();
    let mut wave_no = 0u64;
    while t0.elapsed() < o.duration {
        wave_no += 1;
        let devices = if pool.is_empty() {
            // A fresh, distinct fleet every wave.
            tokio::task::block_in_place(|| {
                p.enroll(o.n, seed.wrapping_mul(1_000_003).wrapping_add(wave_no))
            })?
        } else {
            // The next N of the pool, wrapping around.
            let from = (wave_no as usize - 1) * o.n;
            (from..from + o.n)
                .map(|i| pool[i % pool.len()].clone())
                .collect()
        };
        let ids: Vec<String> = devices.iter().map(|d| d.uuid.clone()).collect();
        let remaps_before = counts.remaps.load(Ordering::Relaxed);
        let stop = CancellationToken::new();
        let stats = FleetStats::new(o.n);
        let task = tokio::spawn(fleet::run(
            p.fleet_config(devices, 256)?,
            stats.clone(),
            stop.clone(),
        ));
        if !stats
            .wait_until(Duration::from_secs(120), |s| s.settled())
            .await
        {
            failures.push(format!(
                "wave {wave_no} did not settle in 120 s: {:?}",
                stats.snapshot()
            ));
        }
        *connected.lock().unwrap_or_else(|e| e.into_inner()) = ids;
        tokio::time::sleep(o.hold).await;
        connected.lock().unwrap_or_else(|e| e.into_inner()).clear();
        stop.cancel();
        let report = task.await?;
        // Let the devices' disconnects reach the broker and the registry.
        tokio::time::sleep(Duration::from_secs(1)).await;
        counts
            .onboarded
            .fetch_add(report.connected, Ordering::Relaxed);
        counts.waves.fetch_add(1, Ordering::Relaxed);
        let wave = Wave {
            at: t0.elapsed(),
            connected: report.connected,
            failed: report.failed,
            remaps: counts.remaps.load(Ordering::Relaxed) - remaps_before,
            moves: report.moves,
            e2e_p50_ms: lat(&report, Phase::EndToEnd).map_or(0.0, |l| l.p50_ms),
            rss: p.broker.rss_bytes().unwrap_or(0),
        };
        if report.failed > 0 {
            failures.push(format!(
                "wave {wave_no}: {} failed {:?}",
                report.failed, report.errors
            ));
        }
        waves.push(wave);
    }
    let elapsed = t0.elapsed();
    done.cancel();
    let _ = remapper.await;
    let mut samples = sampler.await?;
    samples.push(Sample {
        at: elapsed,
        rss: p.broker.rss_bytes().unwrap_or(0),
        gateways_rss: p
            .gateways
            .iter()
            .map(|g| g.rss_bytes().unwrap_or(0))
            .collect(),
        onboarded: counts.onboarded.load(Ordering::Relaxed),
        remaps: counts.remaps.load(Ordering::Relaxed),
        waves: counts.waves.load(Ordering::Relaxed),
    });
    let floor_end = rtt(&p, 1000).await?;

    let mut table = vec![format!(
        "   RSS every {:?} (platform broker; gw-1 / gw-2 in brackets):",
        o.sample_every
    )];
    table.push(format!(
        "   {:>8} {:>9} {:>14} {:>9} {:>6}",
        "elapsed", "RSS MiB", "onboarded", "remaps", "waves"
    ));
    table.extend(samples.iter().map(sample_row));
    table.push("   per wave (RSS once the wave's devices are gone):".into());
    table.push(format!(
        "   {:>5} {:>8} {:>9} {:>7} {:>7} {:>7} {:>10} {:>9}",
        "wave", "at", "connected", "failed", "remaps", "moves", "e2e p50", "RSS MiB"
    ));
    for (i, w) in waves.iter().enumerate() {
        table.push(format!(
            "   {:>5} {:>7.0}s {:>9} {:>7} {:>7} {:>7} {:>8.1}ms {:>9.1}",
            i + 1,
            w.at.as_secs_f64(),
            w.connected,
            w.failed,
            w.remaps,
            w.moves,
            w.e2e_p50_ms,
            w.rss as f64 / MIB
        ));
    }
    table.extend(failures.iter().take(20).map(|f| format!("   ! {f}")));

    let first = waves.first().context("no wave ran")?;
    let last = waves.last().context("no wave ran")?;
    let per_wave = |from: usize| -> f64 {
        // Least squares of wave-end RSS over wave number, from wave `from`.
        let pts: Vec<(f64, f64)> = waves
            .iter()
            .enumerate()
            .skip(from)
            .map(|(i, w)| (i as f64, w.rss as f64))
            .collect();
        slope(&pts)
    };
    let total_devices = counts.onboarded.load(Ordering::Relaxed);
    let growth = last.rss as f64 - first.rss as f64;
    let later_waves = (waves.len() as f64 - 1.0).max(1.0);
    let enrolled = o.pool.unwrap_or(waves.len() * o.n);
    let figures = vec![
        ("waves".into(), waves.len() as f64),
        ("devices onboarded".into(), total_devices as f64),
        ("devices enrolled".into(), enrolled as f64),
        (
            "devices failed".into(),
            waves.iter().map(|w| w.failed).sum::<u64>() as f64,
        ),
        (
            "remaps".into(),
            counts.remaps.load(Ordering::Relaxed) as f64,
        ),
        (
            "remap requests refused or failed".into(),
            counts.remap_errors.load(Ordering::Relaxed) as f64,
        ),
        (
            "moves seen by devices".into(),
            waves.iter().map(|w| w.moves).sum::<u64>() as f64,
        ),
        (
            "platform RSS at start (after wave 1), MiB".into(),
            first.rss as f64 / MIB,
        ),
        (
            "platform RSS at end (after last wave), MiB".into(),
            last.rss as f64 / MIB,
        ),
        (
            "platform RSS peak sample, MiB".into(),
            samples.iter().map(|s| s.rss).max().unwrap_or(0) as f64 / MIB,
        ),
        (
            "growth per wave, (end - start) / (waves - 1), KiB".into(),
            growth / later_waves / 1024.0,
        ),
        (
            "growth per wave, least squares over all waves, KiB".into(),
            per_wave(0) / 1024.0,
        ),
        (
            "growth per wave, least squares over the second half, KiB".into(),
            per_wave(waves.len() / 2) / 1024.0,
        ),
        (
            "growth per device onboarded after wave 1, bytes".into(),
            growth / (total_devices.saturating_sub(first.connected).max(1)) as f64,
        ),
        ("first wave end-to-end p50 ms".into(), first.e2e_p50_ms),
        ("last wave end-to-end p50 ms".into(), last.e2e_p50_ms),
        ("rtt floor p50 ms at the end".into(), floor_end.p50_ms),
        ("soak ran, s".into(), elapsed.as_secs_f64()),
    ];
    Ok(Outcome {
        scenario: match o.pool {
            Some(size) => format!("soak-{}x{}-pool{size}", o.n, waves.len()),
            None => format!("soak-{}x{}", o.n, waves.len()),
        },
        mode: setup.mode,
        devices: total_devices as usize,
        rtt: floor,
        figures,
        ratios: vec![(
            "last wave end-to-end p50".into(),
            last.e2e_p50_ms / floor_end.p50_ms,
        )],
        fleet: None,
        table,
    })
}

fn sample_row(s: &Sample) -> String {
    let gws: Vec<String> = s
        .gateways_rss
        .iter()
        .map(|r| format!("{:.1}", *r as f64 / MIB))
        .collect();
    format!(
        "   {:>7.0}s {:>9.1} {:>14} {:>9} {:>6}   [{}]",
        s.at.as_secs_f64(),
        s.rss as f64 / MIB,
        s.onboarded,
        s.remaps,
        s.waves,
        gws.join(" / ")
    )
}

/// The least-squares slope of `pts` (0 with fewer than two).
fn slope(pts: &[(f64, f64)]) -> f64 {
    let n = pts.len() as f64;
    if pts.len() < 2 {
        return 0.0;
    }
    let mx = pts.iter().map(|p| p.0).sum::<f64>() / n;
    let my = pts.iter().map(|p| p.1).sum::<f64>() / n;
    let sxy: f64 = pts.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let sxx: f64 = pts.iter().map(|p| (p.0 - mx).powi(2)).sum();
    if sxx == 0.0 {
        0.0
    } else {
        sxy / sxx
    }
}

/// Remaps `device` to the gateway it is not assigned to; true if the
/// registry moved it.
async fn remap_to_other(client: &RegistryClient, device: &str) -> Result<bool> {
    let RegistryOk::Assignment(now) = client
        .request(RegistryOp::Show {
            device_id: device.to_owned(),
        })
        .await?
    else {
        bail!("show answered something else");
    };
    let to = if now.gateway_id == "gw-1" {
        "gw-2"
    } else {
        "gw-1"
    };
    match client
        .request(RegistryOp::Remap {
            device_id: device.to_owned(),
            gateway_id: to.to_owned(),
        })
        .await?
    {
        RegistryOk::Assignment(a) => Ok(a.changed),
        _ => bail!("remap answered something else"),
    }
}

/// One phase of [`topics`]: what each emulated device does.
#[derive(Clone, Copy)]
enum TopicsPhase {
    /// Connects with a new client id and disconnects.
    Connect,
    /// Also subscribes to its four `device/{uuid}/…` filters.
    Subscribe,
    /// Also receives three messages on them, as a device does.
    Receive,
    /// [`TopicsPhase::Receive`] again with the previous phase's ids and topics.
    Again,
    /// No client: one message on its own `device/{uuid}/presence`, which
    /// only a wildcard filter (`device/+/presence`, the registry's) matches.
    Wildcard,
}

/// A device's filters on the platform broker (device-sim's link), and the
/// sizes of what it receives there: a challenge, an access response, an
/// assignment (rough secure-mode sizes).
fn device_filters(uuid: &str) -> Vec<String> {
    ["access/response", "access/challenge", "confirm", "gateway"]
        .iter()
        .map(|t| format!("device/{uuid}/{t}"))
        .collect()
}
const DEVICE_MESSAGES: [(&str, usize); 3] = [
    ("access/challenge", 200),
    ("access/response", 300),
    ("gateway", 600),
];

/// `topics-N`: what rumqttd keeps per distinct client id, topic filter,
/// message and topic, on a broker-only platform (no verifier, no registry,
/// no sled) with raw admin clients emulating N devices' use of the
/// platform broker, phase by phase: the broker's RSS growth per device.
pub async fn topics(setup: &Setup, n: usize, seed: u64) -> Result<Outcome> {
    let p = Platform::start_with(setup, &[], false, true)?;
    let floor = rtt(&p, 1000).await?;
    let stop = CancellationToken::new();
    let _stop = stop.clone().drop_guard();
    let (publisher, _) = Bus::connect(p.admin_opts("topics-pub")?, Vec::new(), stop.clone());
    publisher.ready(Duration::from_secs(10)).await?;
    let (watcher, mut presence) = Bus::connect(
        p.admin_opts("topics-presence")?,
        vec!["device/+/presence".into()],
        stop.clone(),
    );
    watcher.ready(Duration::from_secs(10)).await?;
    let seen = Arc::new(AtomicU64::new(0));
    {
        let seen = seen.clone();
        tokio::spawn(async move {
            while presence.recv().await.is_some() {
                seen.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    let tag = format!("{:08x}", fastrand::u32(..));
    let settle = || tokio::time::sleep(Duration::from_secs(2));
    settle().await;
    let rss = |p: &Platform| p.broker.rss_bytes().context("no RSS for the platform");
    let start = rss(&p)?;
    let mut before = start;
    let mut figures = Vec::new();
    let mut table = vec![format!(
        "   {:<62} {:>10} {:>12}",
        "phase (each of N emulated devices)", "RSS MiB", "bytes/device"
    )];
    let phases = [
        (TopicsPhase::Connect, "a new client id: connect, disconnect"),
        (
            TopicsPhase::Subscribe,
            "a new id + its 4 device/{uuid}/… filters",
        ),
        (
            TopicsPhase::Receive,
            "a new id + 4 filters + 3 messages received (1.1 KiB in all)",
        ),
        (
            TopicsPhase::Again,
            "the same ids, filters and messages again",
        ),
        (
            TopicsPhase::Wildcard,
            "1 message on a new topic under device/+/presence",
        ),
    ];
    let mut previous: Vec<manifest::Identity> = Vec::new();
    for (i, (phase, what)) in phases.iter().enumerate() {
        let devices = match phase {
            TopicsPhase::Again => previous.clone(),
            _ => manifest::generate(n, seed.wrapping_mul(31).wrapping_add(i as u64)),
        };
        // Again: the previous phase's client ids.
        let id_phase = match phase {
            TopicsPhase::Again => i.saturating_sub(1),
            _ => i,
        };
        let gate = Arc::new(tokio::sync::Semaphore::new(32));
        let mut tasks = tokio::task::JoinSet::new();
        let seen_before = seen.load(Ordering::Relaxed);
        for (k, d) in devices.iter().enumerate() {
            let permit = gate.clone().acquire_owned().await?;
            let uuid = d.uuid.clone();
            let publisher = publisher.clone();
            let phase = *phase;
            match phase {
                TopicsPhase::Wildcard => {
                    publisher
                        .publish(format!("device/{uuid}/presence"), vec![b'p'; 120])
                        .await?;
                    drop(permit);
                }
                _ => {
                    let opts = p.admin_opts_as(format!("emu-{id_phase}-{k}-{tag}"))?;
                    tasks.spawn(async move {
                        let r = emulate(opts, &publisher, &uuid, phase).await;
                        drop(permit);
                        r
                    });
                }
            }
        }
        while let Some(r) = tasks.join_next().await {
            r??;
        }
        if matches!(phase, TopicsPhase::Wildcard) {
            let all = seen_before + n as u64;
            let deadline = Instant::now() + Duration::from_secs(30);
            while seen.load(Ordering::Relaxed) < all && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        settle().await;
        let after = rss(&p)?;
        let per = (after as f64 - before as f64) / n as f64;
        table.push(format!(
            "   {:<62} {:>10.1} {:>12.0}",
            what,
            after as f64 / MIB,
            per
        ));
        figures.push((format!("{what}, bytes/device"), per));
        before = after;
        previous = devices;
    }
    figures.push(("platform RSS at start, MiB".into(), start as f64 / MIB));
    figures.push(("platform RSS at end, MiB".into(), before as f64 / MIB));
    Ok(Outcome {
        scenario: format!("topics-{n}"),
        mode: setup.mode,
        devices: n,
        rtt: floor,
        figures,
        ratios: Vec::new(),
        fleet: None,
        table,
    })
}

/// One emulated device of [`topics`]: connect as admin with its own
/// client id, subscribe, have `publisher` send it its messages, receive
/// them, disconnect.
async fn emulate(opts: BusOptions, publisher: &Bus, uuid: &str, phase: TopicsPhase) -> Result<()> {
    let filters = match phase {
        TopicsPhase::Connect | TopicsPhase::Wildcard => Vec::new(),
        _ => device_filters(uuid),
    };
    let stop = CancellationToken::new();
    let (bus, mut inbox) = Bus::connect(opts, filters, stop.clone());
    bus.ready(Duration::from_secs(10)).await?;
    if matches!(phase, TopicsPhase::Receive | TopicsPhase::Again) {
        for (topic, size) in DEVICE_MESSAGES {
            publisher
                .publish(format!("device/{uuid}/{topic}"), vec![b'm'; size])
                .await?;
        }
        for _ in DEVICE_MESSAGES {
            tokio::time::timeout(Duration::from_secs(10), inbox.recv())
                .await
                .context("an emulated device got no message within 10 s")?
                .context("closed")?;
        }
    }
    let mut state = bus.watch_state();
    stop.cancel();
    let _ = tokio::time::timeout(
        Duration::from_secs(5),
        state.wait_for(|s| *s == bus::LinkState::Closed),
    )
    .await;
    Ok(())
}

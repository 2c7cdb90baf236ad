//! The shared setup of every scenario: the platform for one run, as the
//! release binaries started as processes on free ports in a scratch
//! directory, and the clients and fleets that talk to it.

use anyhow::{bail, Context, Result};
use bus::BusOptions;
use device_sim::fleet::{self, FleetConfig, FleetStats};
use device_sim::manifest;
use device_sim::report::FleetReport;
use harness::{Proc, Spawn};
use protocol::crypto::PlatformPublicKey;
use protocol::layout;
use protocol::registry_admin::{RegistryOk, RegistryOp};
use registry::RegistryClient;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

use super::report::Mode;

pub(crate) const SSID: &str = "bench-wifi";
const STARTUP: Duration = Duration::from_secs(30);

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
    /// The MQTT version(s) of the simulated devices: device i speaks the
    /// (i mod n)-th (`device-sim fleet --mqtt`). Empty: 3.1.1.
    pub mqtt: Vec<bus::MqttVersion>,
}

impl Setup {
    /// The devices' MQTT versions as `device-sim --mqtt` takes them.
    pub fn mqtt_arg(&self) -> String {
        let versions: Vec<String> = self.mqtt.iter().map(|v| v.to_string()).collect();
        if versions.is_empty() {
            "3.1.1".into()
        } else {
            versions.join(",")
        }
    }
}

/// The built-in `[platform] max_payload_size`.
const DEFAULT_MAX_PAYLOAD: usize = 256 * 1024;

/// A platform for one run, in its own scratch directory.
pub struct Platform {
    pub dir: tempfile::TempDir,
    pub addr: String,
    pub mode: Mode,
    /// The devices' MQTT versions ([`Setup::mqtt`]).
    pub mqtt: Vec<bus::MqttVersion>,
    /// TLS mode: whom every client trusts, the platform's CA
    /// (DATA_DIR/ca.pem, which the platform wrote on start). None in
    /// plaintext.
    pub ca: Option<tls::ClientTls>,
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
        let port = harness::free_port()?;
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
        match setup.mode {
            // TLS is the default in secure mode: nothing to say.
            Mode::SecureTls => {}
            Mode::SecurePlaintext => toml.push_str("[tls]\nenabled = false\n"),
            Mode::Walkthrough => toml.push_str("[security]\nmode = \"walkthrough\"\n"),
        }
        for id in gateways {
            toml.push_str(&format!(
                "[[gateways]]\nid = \"{id}\"\nlisten = \"127.0.0.1:{}\"\n",
                harness::free_port()?
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
        let ca = if setup.mode.tls() {
            let path = layout::ca_file(&data);
            let pem = std::fs::read(&path)
                .with_context(|| format!("the platform wrote no CA at {}", path.display()))?;
            Some(tls::ClientTls::from_pem(&pem, &path.display().to_string())?)
        } else {
            None
        };
        let mut p = Platform {
            dir,
            addr,
            mode: setup.mode,
            mqtt: setup.mqtt.clone(),
            ca,
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
            if p.mode.secure() {
                // Each AP is its own identity, registered for its SSIDs.
                let credential = p.dir.path().join("ap-1.token");
                p.run_admin(
                    "verifier",
                    &[
                        "ap",
                        "add",
                        "--id",
                        "ap-1",
                        "--ssid",
                        SSID,
                        "--out",
                        path_str(&credential)?,
                    ],
                )?;
                args.extend(p.credential_args(&credential, true)?);
            } else {
                args.extend(p.client_args("ap", true)?);
            }
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
        layout::token_file(&layout::credentials_dir(&self.data_dir()), role)
    }

    fn key_file(&self) -> PathBuf {
        layout::public_key_file(&self.data_dir())
    }

    /// Secure mode: the bootstrap password of `role` (admin, ap, gateway),
    /// which the platform wrote on start. Walkthrough: empty.
    pub fn token(&self, role: &str) -> Result<String> {
        if !self.mode.secure() {
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
        if !self.mode.secure() {
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

    /// The flags a client binary needs to reach the platform (see
    /// [`Platform::transport_args`]), to log in as `role`, and, with
    /// `key`, to check the platform's signatures; `--walkthrough` in
    /// walkthrough mode.
    pub fn client_args(&self, role: &str, key: bool) -> Result<Vec<String>> {
        self.credential_args(&self.token_file(role), key)
    }

    /// Runs admin CLI `program` (`verifier`, `registry`) with `args`
    /// against this platform, logged in as its admin; returns its stdout.
    pub fn run_admin(&self, program: &str, args: &[&str]) -> Result<String> {
        let mut all = strings(args);
        all.extend(strings(&["--broker", &self.addr]));
        all.extend(self.client_args("admin", false)?);
        run(program, &all)
    }

    /// [`Platform::client_args`] with the password in `credential`: an
    /// AP's or a gateway's own, made when it was registered.
    pub fn credential_args(&self, credential: &Path, key: bool) -> Result<Vec<String>> {
        let mut args = self.transport_args()?;
        if !self.mode.secure() {
            return Ok(args);
        }
        args.extend(strings(&["--password-file", path_str(credential)?]));
        if key {
            args.extend(strings(&[
                "--platform-key-file",
                path_str(&self.key_file())?,
            ]));
        }
        Ok(args)
    }

    /// How a client binary (and `broker gateway`) talks to this platform:
    /// over TLS trusting its CA (`--cafile DATA_DIR/ca.pem`), `--plaintext`
    /// to a platform with `[tls] enabled = false`, or `--walkthrough`.
    pub fn transport_args(&self) -> Result<Vec<String>> {
        Ok(match self.mode {
            Mode::SecureTls => strings(&["--cafile", path_str(&self.ca_file())?]),
            Mode::SecurePlaintext => strings(&["--plaintext"]),
            Mode::Walkthrough => strings(&["--walkthrough"]),
        })
    }

    /// The flags `device-sim` needs for this platform: its transport and,
    /// in secure mode, the platform's key. Devices log in as themselves.
    pub fn device_args(&self) -> Result<Vec<String>> {
        let mut args = self.transport_args()?;
        if self.mode.secure() {
            args.extend(strings(&[
                "--platform-key-file",
                path_str(&self.key_file())?,
            ]));
        }
        Ok(args)
    }

    /// The platform's CA certificate, which it wrote on start (TLS mode).
    pub fn ca_file(&self) -> PathBuf {
        layout::ca_file(&self.data_dir())
    }

    /// TLS mode: a client configuration trusting the platform's CA, with
    /// a session cache of its own (one per client identity). None in
    /// plaintext.
    pub fn client_tls(&self) -> Option<bus::TlsConfig> {
        self.ca.as_ref().map(tls::ClientTls::config)
    }

    /// Options for a raw admin client (admin may publish and subscribe to
    /// anything), with a unique client id.
    pub fn admin_opts(&self, prefix: &str) -> Result<BusOptions> {
        self.admin_opts_as(format!("{prefix}-{:08x}", fastrand::u32(..)))
    }

    /// [`Platform::admin_opts`] with exactly `client_id`.
    pub fn admin_opts_as(&self, client_id: String) -> Result<BusOptions> {
        Ok(BusOptions::new(&self.addr, client_id)?
            .with_credentials("admin", self.token("admin")?)
            .with_tls(self.client_tls()))
    }

    /// The last lines of every process's log, for errors.
    pub fn tails(&self) -> String {
        std::iter::once(&self.broker)
            .chain(self.ap.iter())
            .chain(self.gateways.iter())
            .map(|proc| format!("--- {}:\n{}", proc.name(), proc.tail()))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// A gateway as its own process (so it can be killed, and so its
    /// connections count against its own open-file limit).
    pub fn spawn_gateway(&mut self, id: &str) -> Result<()> {
        let listen = format!("127.0.0.1:{}", harness::free_port()?);
        if self.mode.secure() {
            // The registry believes only registered gateways.
            let credential = self.dir.path().join(format!("gateway-{id}.token"));
            self.run_admin(
                "registry",
                &[
                    "gateway",
                    "add",
                    "--id",
                    id,
                    "--address",
                    &listen,
                    "--out",
                    path_str(&credential)?,
                ],
            )?;
        }
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
        let credential = self.dir.path().join(format!("gateway-{id}.token"));
        args.extend(self.credential_args(&credential, true)?);
        if self.mode.tls() {
            // `registry gateway add --out FILE` wrote the certificate the
            // platform's CA issued for the gateway's address, and its key,
            // next to FILE (FILE.crt, FILE.key).
            args.extend(strings(&[
                "--cert",
                path_str(&credential.with_extension("crt"))?,
                "--key",
                path_str(&credential.with_extension("key"))?,
            ]));
        }
        let mut gw = spawn(self.dir.path(), id, "broker", &args)?;
        gw.wait_for("gateway listening", STARTUP)?;
        self.gateways.push(gw);
        Ok(())
    }

    pub fn gateway(&mut self, id: &str) -> Option<&mut Proc> {
        self.gateways.iter_mut().find(|g| g.name() == id)
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
        config.tls = self.ca.clone();
        config.concurrency = concurrency;
        config.platform_key = self.platform_key()?;
        if !self.mqtt.is_empty() {
            config.mqtt = self.mqtt.clone();
        }
        Ok(config)
    }
}

pub(crate) fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| (*a).to_owned()).collect()
}

pub(crate) fn path_str(p: &Path) -> Result<&str> {
    p.to_str().context("a non-UTF-8 temp path")
}

/// A release binary of the platform: next to this one (target/release).
fn bin(name: &str) -> Result<PathBuf> {
    harness::beside_current_exe(name)
        .context("build the release binaries first: cargo build --release --workspace --bins")
}

/// Starts the release binary `program args…` as `name`, its output in
/// `dir/{name}.log`.
pub(crate) fn spawn<S: AsRef<OsStr>>(
    dir: &Path,
    name: &str,
    program: &str,
    args: &[S],
) -> Result<Proc> {
    spawn_logging(
        dir,
        name,
        program,
        args,
        "warn,broker=info,ap_sim=info,rumqttd=off",
    )
}

/// [`spawn`] with `log` as its RUST_LOG, unless BENCH_LOG says otherwise.
pub(crate) fn spawn_logging<S: AsRef<OsStr>>(
    dir: &Path,
    name: &str,
    program: &str,
    args: &[S],
    log: &str,
) -> Result<Proc> {
    let proc = Spawn::new(bin(program)?)
        .args(args)
        .env(
            "RUST_LOG",
            std::env::var("BENCH_LOG").unwrap_or_else(|_| log.into()),
        )
        .env("NO_COLOR", "1")
        .start(dir, name)?;
    Ok(proc)
}

/// Runs the release binary `program args…` to completion; its output on
/// failure.
pub(crate) fn run<S: AsRef<OsStr>>(program: &str, args: &[S]) -> Result<String> {
    Ok(harness::run(&bin(program)?, args)?)
}

/// Starts a fleet in the background and waits until all of it is on
/// `gateway`.
pub(crate) async fn fleet_on(
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

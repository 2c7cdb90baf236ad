//! Reliability (issue 5): the platform as a real `broker` process, killed
//! with SIGKILL or stopped with SIGTERM in the middle of work. Whatever an
//! admin was told is done survives, and every device ends up home without
//! a manual step. The platform runs in its default secure mode: its
//! signing key and credentials must survive the crash as its stores do.
//!
//! These tests run the workspace's `broker` binary. `cargo test -p
//! platform-tests` does not build another package's binaries, so the first
//! test to need it runs `cargo build -p broker --bin broker` into the same
//! target dir (a no-op when it is fresh). `PLATFORM_BROKER_BIN=/path` skips
//! that and uses the given binary. The processes log at `info` into the
//! test's temp dir (their last lines are shown on failure);
//! `DURABILITY_LOG` sets their RUST_LOG, `DURABILITY_KEEP=1` keeps the dir.

use ap_sim::{ApConfig, Network};
use bus::BusOptions;
use device_sim::fleet::{self, FleetConfig, FleetStats};
use device_sim::manifest::{self, Identity};
use harness::{Proc, WorkspaceBin};
use platform_tests::{unique_id, SSID, WIFI_PASSWORD};
use protocol::admin::{AdminOk, AdminOp, ImportRow};
use protocol::crypto::PlatformPublicKey;
use protocol::layout;
use protocol::registry_admin::{GatewayView, RegistryOk, RegistryOp};
use registry::RegistryClient;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use verifier::AdminClient;

/// Devices in the fleet that lives through a SIGKILL of the platform.
const FLEET_DEFAULT: usize = 300;

/// The kill -9 fleet's size: 300 in CI; `DURABILITY_FLEET=2000` for the
/// big run.
fn fleet_size() -> usize {
    std::env::var("DURABILITY_FLEET")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(FLEET_DEFAULT)
}
/// Devices on the gateway that is killed.
const ON_DOOMED_GATEWAY: usize = 100;

/// The crashed gateway's devices: 100 in CI; `DURABILITY_FLEET` for the
/// big run.
fn on_doomed_gateway() -> usize {
    std::env::var("DURABILITY_FLEET")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(ON_DOOMED_GATEWAY)
}
/// How long anything may take to start, or to settle after a crash.
const STARTUP: Duration = Duration::from_secs(30);
const SETTLE: Duration = Duration::from_secs(60);
/// An admin request unanswered this long counts as not acknowledged.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(3);

// ---------------------------------------------------------------- config

/// The platform's config file: the platform broker on `port`, the
/// in-process gateways on the given fixed ports (so a restarted platform
/// serves them at the same addresses), metrics on a free port.
///
/// The one place the tests of this module write a config: when the
/// platform grows a section (e.g. `[security]`), add it here. Logins are
/// chosen in [`Platform::login`], and the `broker gateway` flags in
/// [`Platform::spawn_gateway`].
fn platform_toml(port: u16, gateways: &[(&str, u16)]) -> String {
    // Top-level keys first: after a [table] they would belong to it.
    let mut toml = String::new();
    if gateways.is_empty() {
        toml.push_str("gateways = []\n");
    }
    toml.push_str(&format!(
        "[platform]\nlisten = \"127.0.0.1:{port}\"\n\
         [metrics]\nlisten = \"127.0.0.1:0\"\n"
    ));
    for (id, port) in gateways {
        toml.push_str(&format!(
            "[[gateways]]\nid = \"{id}\"\nlisten = \"127.0.0.1:{port}\"\n"
        ));
    }
    // No [security] section: the default secure mode, as operators run
    // it. Its key and bootstrap passwords live in the data dir and must
    // survive the crash as the stores do.
    toml
}

/// How a client logs in to the platform as a role (`admin`, `ap`,
/// `gateway`): the bootstrap password the platform wrote into its data dir,
/// over TLS trusting the CA it wrote there. The one place this module
/// picks credentials.
#[derive(Clone)]
struct Login {
    addr: String,
    role: &'static str,
    password: String,
    tls: tls::ClientTls,
}

impl Login {
    fn opts(&self) -> BusOptions {
        BusOptions::new(&self.addr, unique_id(&format!("dur-{}", self.role)))
            .unwrap()
            .with_credentials(self.role, self.password.clone())
            .with_tls(Some(self.tls.config()))
    }
}

/// Why an admin client is not served. A broker that refuses a login drops
/// the connection without a CONNACK, which looks like a timeout.
fn no_admin(addr: &str, e: impl std::fmt::Display) -> String {
    format!(
        "no admin connection to the platform at {addr}: {e} \
         (refused by its login rules? see Platform::login and platform_toml)"
    )
}

// ------------------------------------------------------------- processes

/// The workspace's `broker` binary, next to this test's own profile dir
/// and built once per test run.
static BROKER: WorkspaceBin = WorkspaceBin::new("broker", "broker", "PLATFORM_BROKER_BIN");

fn free_port() -> u16 {
    harness::free_port().unwrap()
}

/// `broker args…` as a child process, its output in `dir/{name}.log`;
/// SIGKILLed on drop so a failing test leaves nothing behind.
fn spawn_broker_proc(dir: &Path, name: &str, args: &[&str]) -> Proc {
    let bin = BROKER.path().unwrap_or_else(|e| panic!("{e}"));
    harness::Spawn::new(bin)
        .args(args)
        .env(
            "RUST_LOG",
            std::env::var("DURABILITY_LOG").unwrap_or_else(|_| "info,rumqttd=off".into()),
        )
        .env("NO_COLOR", "1")
        .tail_lines(15)
        .start(dir, name)
        .unwrap_or_else(|e| panic!("{e:?}"))
}

/// Waits until `proc` logs `line`. The wait blocks, so it hands this
/// worker's other tasks (a running fleet, admin writers) to the runtime.
fn wait_for(proc: &mut Proc, line: &str, timeout: Duration) {
    tokio::task::block_in_place(|| proc.wait_for(line, timeout)).unwrap_or_else(|e| panic!("{e}"))
}

/// The platform as processes: `broker` over a data dir that outlives
/// restarts, plus `broker gateway` processes.
struct Platform {
    dir: tempfile::TempDir,
    port: u16,
    broker: Option<Proc>,
    gateways: Vec<Proc>,
    starts: usize,
}

impl Platform {
    /// Starts `broker` with `in_process` gateways (on fixed free ports).
    async fn start(in_process: &[&str]) -> Platform {
        platform_tests::init_tracing();
        let dir = tempfile::Builder::new()
            .prefix("durability-")
            .disable_cleanup(std::env::var_os("DURABILITY_KEEP").is_some())
            .tempdir()
            .unwrap();
        let port = free_port();
        let gateways: Vec<(&str, u16)> = in_process.iter().map(|id| (*id, free_port())).collect();
        std::fs::write(
            dir.path().join("platform.toml"),
            platform_toml(port, &gateways),
        )
        .unwrap();
        let mut p = Platform {
            dir,
            port,
            broker: None,
            gateways: Vec::new(),
            starts: 0,
        };
        p.spawn_broker().await;
        p
    }

    /// (Re)starts `broker` on the same port, config and data dir.
    async fn spawn_broker(&mut self) {
        assert!(self.broker.is_none(), "the platform is still running");
        self.starts += 1;
        let config = self.dir.path().join("platform.toml");
        let data = self.data();
        let mut broker = spawn_broker_proc(
            self.dir.path(),
            &format!("platform-{}", self.starts),
            &[
                "--config",
                config.to_str().unwrap(),
                "--data-dir",
                data.to_str().unwrap(),
            ],
        );
        wait_for(&mut broker, "platform ready", STARTUP);
        self.broker = Some(broker);
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The platform's `--data-dir`: stores, signing key, credentials.
    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Where the platform keeps the bootstrap password of `role`.
    fn token_file(&self, role: &str) -> PathBuf {
        layout::token_file(&layout::credentials_dir(&self.data()), role)
    }

    /// The public half of the platform's signing key, which devices, APs
    /// and gateways are configured with.
    fn key_file(&self) -> PathBuf {
        layout::public_key_file(&self.data())
    }

    /// The platform's CA certificate, which every client trusts
    /// (`--cafile`); the platform writes it on first start.
    fn ca_file(&self) -> PathBuf {
        layout::ca_file(&self.data())
    }

    /// Whom this process's clients trust: the platform's CA.
    fn tls(&self) -> tls::ClientTls {
        let file = self.ca_file();
        let pem =
            std::fs::read(&file).unwrap_or_else(|e| panic!("no CA at {}: {e}", file.display()));
        tls::ClientTls::from_pem(&pem, &file.display().to_string()).unwrap()
    }

    /// How a client logs in as `role`; the platform must have started
    /// once (it writes the passwords on first start).
    fn login(&self, role: &'static str) -> Login {
        let file = self.token_file(role);
        let password = std::fs::read_to_string(&file)
            .unwrap_or_else(|e| panic!("no {role} password at {}: {e}", file.display()));
        Login {
            addr: self.addr(),
            role,
            password: password.trim().to_owned(),
            tls: self.tls(),
        }
    }

    fn platform_key(&self) -> PlatformPublicKey {
        let file = self.key_file();
        let hex = std::fs::read_to_string(&file)
            .unwrap_or_else(|e| panic!("no platform key at {}: {e}", file.display()));
        PlatformPublicKey::from_hex(&hex).unwrap()
    }

    fn broker(&mut self) -> &mut Proc {
        self.broker.as_mut().expect("the platform is not running")
    }

    /// SIGKILL of the platform process.
    fn kill9(&mut self) {
        self.broker().kill().unwrap();
        self.broker = None;
    }

    /// `broker gateway --id ID` as its own process, pointed at the platform
    /// (which it trusts by its CA), serving devices over TLS with the
    /// certificate it got at registration.
    async fn spawn_gateway(&mut self, id: &str) {
        let listen = format!("127.0.0.1:{}", free_port());
        let (password, cert, cert_key) = self.register_gateway(id, &listen).await;
        let addr = self.addr();
        let key = self.key_file();
        let ca = self.ca_file();
        let mut gw = spawn_broker_proc(
            self.dir.path(),
            id,
            &[
                "gateway",
                "--id",
                id,
                "--listen",
                &listen,
                "--platform",
                &addr,
                "--password-file",
                password.to_str().unwrap(),
                "--platform-key-file",
                key.to_str().unwrap(),
                "--cafile",
                ca.to_str().unwrap(),
                "--cert",
                cert.to_str().unwrap(),
                "--key",
                cert_key.to_str().unwrap(),
            ],
        );
        wait_for(&mut gw, "gateway listening", STARTUP);
        self.gateways.push(gw);
    }

    /// Registers gateway `id` at `address`, as an admin does before
    /// starting it (the registry believes only registered gateways), with
    /// a certificate request for its TLS key, and writes its credential,
    /// certificate and key where `broker gateway` reads them by default:
    /// the three files.
    async fn register_gateway(&self, id: &str, address: &str) -> (PathBuf, PathBuf, PathBuf) {
        let registry = self.registry().await;
        let registered =
            platform_tests::register_gateway_with_certificate(&registry, id, address).await;
        registry.close().await;
        let credentials = layout::credentials_dir(&self.data());
        let files = (
            layout::gateway_token_file(&credentials, id),
            layout::gateway_cert_file(&credentials, id),
            layout::gateway_key_file(&credentials, id),
        );
        storage::write_secret(&files.0, &format!("{}\n", registered.credential)).unwrap();
        storage::write_secret(&files.1, &registered.chain_pem).unwrap();
        storage::write_secret(&files.2, &registered.key_pem).unwrap();
        files
    }

    fn gateway(&mut self, id: &str) -> &mut Proc {
        self.gateways
            .iter_mut()
            .find(|g| g.name() == id)
            .expect("no such gateway process")
    }

    async fn admin(&self) -> AdminClient {
        AdminClient::connect(self.login("admin").opts(), ADMIN_TIMEOUT)
            .await
            .unwrap_or_else(|e| panic!("{}", no_admin(&self.addr(), e)))
    }

    async fn registry(&self) -> RegistryClient {
        RegistryClient::connect(self.login("admin").opts(), ADMIN_TIMEOUT)
            .await
            .unwrap_or_else(|e| panic!("{}", no_admin(&self.addr(), e)))
    }

    /// Waits until the registry sees every one of `ids` alive.
    async fn wait_alive(&self, ids: &[&str]) {
        let client = self.registry().await;
        let deadline = Instant::now() + STARTUP;
        loop {
            if let Ok(gateways) = gateways(&client).await {
                if ids
                    .iter()
                    .all(|id| gateways.get(*id).is_some_and(|g| g.alive))
                {
                    break;
                }
            }
            assert!(
                Instant::now() < deadline,
                "{ids:?} did not all come alive:\n{}",
                self.tails()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        client.close().await;
    }

    /// An AP for [`SSID`] that confirms every verified device, in this
    /// test process.
    async fn start_ap(&self, stop: &CancellationToken) -> ap_sim::Ap {
        let mut config = ApConfig::new(
            self.addr(),
            "ap-1",
            vec![Network {
                ssid: SSID.into(),
                password: WIFI_PASSWORD.into(),
            }],
        );
        config.tls = Some(self.tls().config());
        config.auto_confirm = true;
        // The platform's bootstrap AP: ap-1 serving home-wifi, its own
        // credential in the data dir.
        let credential = layout::ap_token_file(&layout::credentials_dir(&self.data()), "ap-1");
        config.password = std::fs::read_to_string(&credential)
            .unwrap_or_else(|e| panic!("{}: {e}", credential.display()))
            .trim()
            .to_owned();
        config.platform_key = Some(self.platform_key());
        ap_sim::start(config, stop.clone()).await.unwrap()
    }

    fn fleet_config(&self, devices: Vec<Identity>) -> FleetConfig {
        let mut config = FleetConfig::new(self.addr(), devices, SSID);
        config.tls = Some(self.tls());
        // Devices log in as themselves with their pass_tmp and believe
        // only answers signed with this key.
        config.platform_key = Some(self.platform_key());
        // Half the fleet speaks MQTT 5: every fault here is survived by
        // both kinds of device.
        config.mqtt = vec![bus::MqttVersion::V311, bus::MqttVersion::V5];
        config.concurrency = 64;
        // A device waiting for its AP while the platform restarts keeps
        // asking; it gives up only after this.
        config.answer_timeout = SETTLE;
        config.hold = None;
        config
    }

    /// `n` devices enrolled, assigned to `gateway` and running as a fleet
    /// in this process; returns once all of them are connected there.
    async fn fleet_on(&self, gateway: &str, n: usize, seed: u64) -> RunningFleet {
        let devices = manifest::generate(n, seed);
        let admin = self.admin().await;
        import(&admin, &devices).await;
        admin.close().await;
        let client = self.registry().await;
        for d in &devices {
            client
                .request(RegistryOp::Assign {
                    device_id: d.uuid.clone(),
                    gateway_id: gateway.into(),
                })
                .await
                .unwrap();
        }
        client.close().await;
        let fleet = self.start_fleet(devices);
        assert!(
            fleet
                .stats
                .wait_until(SETTLE, |s| s.on_gateway(gateway) == n as u64)
                .await,
            "the devices did not all reach {gateway}: {:?}\n{}",
            fleet.stats.snapshot(),
            self.tails()
        );
        fleet
    }

    /// `devices` (enrolled already) running as a fleet in this process.
    fn start_fleet(&self, devices: Vec<Identity>) -> RunningFleet {
        let stats = FleetStats::new(devices.len());
        let stop = CancellationToken::new();
        let task = tokio::spawn(fleet::run(
            self.fleet_config(devices.clone()),
            stats.clone(),
            stop.clone(),
        ));
        RunningFleet {
            devices,
            stats,
            stop,
            task,
        }
    }

    /// The last lines of every process's log, for failures.
    fn tails(&self) -> String {
        self.broker
            .iter()
            .chain(self.gateways.iter())
            .map(|p| format!("--- {} (pid {}):\n{}", p.name(), p.pid(), p.tail()))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// A fleet started by [`Platform::fleet_on`].
struct RunningFleet {
    devices: Vec<Identity>,
    stats: Arc<FleetStats>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<device_sim::report::FleetReport>,
}

impl RunningFleet {
    /// Stops the fleet and returns its report.
    async fn end(self) -> device_sim::report::FleetReport {
        self.stop.cancel();
        self.task.await.unwrap()
    }

    /// Stops the fleet; no device may have failed.
    async fn finish(self) {
        let report = self.end().await;
        assert_eq!(report.failed, 0, "{:?}", report.errors);
    }
}

// ------------------------------------------------------------ admin work

async fn gateways(client: &RegistryClient) -> Result<HashMap<String, GatewayView>, String> {
    match client.request(RegistryOp::Gateways).await {
        Ok(RegistryOk::Gateways { gateways }) => Ok(gateways
            .into_iter()
            .map(|g| (g.gateway_id.clone(), g))
            .collect()),
        other => Err(format!("{other:?}")),
    }
}

/// Enrolls `devices` with `import` batches of 100; returns the UUIDs the
/// verifier acknowledged.
async fn import(admin: &AdminClient, devices: &[Identity]) -> Vec<String> {
    let mut acked = Vec::new();
    for (b, batch) in devices.chunks(100).enumerate() {
        let rows = batch
            .iter()
            .enumerate()
            .map(|(i, d)| ImportRow {
                line: (b * 100 + i + 1) as u64,
                uuid: d.uuid.clone(),
                pass_tmp: d.pass_tmp.clone(),
                ssids: d.ssids.clone(),
            })
            .collect();
        match admin.request(AdminOp::Import { rows }).await.unwrap() {
            AdminOk::Imported(report) => {
                assert!(report.rejected.is_empty(), "{report:?}");
                acked.extend(batch.iter().map(|d| d.uuid.to_lowercase()));
            }
            other => panic!("{other:?}"),
        }
    }
    acked
}

/// Every UUID the verifier has, page by page.
async fn enrolled(admin: &AdminClient) -> HashSet<String> {
    let mut all = HashSet::new();
    let mut after = None;
    loop {
        match admin
            .request(AdminOp::List {
                after: after.clone(),
                limit: protocol::admin::MAX_LIST_PAGE,
            })
            .await
            .unwrap()
        {
            AdminOk::List { uuids, next } => {
                all.extend(uuids);
                match next {
                    Some(n) => after = Some(n),
                    None => return all,
                }
            }
            other => panic!("{other:?}"),
        }
    }
}

async fn show(client: &RegistryClient, device_id: &str) -> Option<(String, u64)> {
    match client
        .request(RegistryOp::Show {
            device_id: device_id.into(),
        })
        .await
    {
        Ok(RegistryOk::Assignment(a)) => Some((a.gateway_id, a.epoch)),
        Ok(other) => panic!("{other:?}"),
        Err(_) => None,
    }
}

/// What admin writers were told is done, and how many of their requests
/// got no answer.
#[derive(Default)]
struct Acks {
    enrollments: Vec<String>,
    /// (device, gateway, epoch), in the order acknowledged.
    assignments: Vec<(String, String, u64)>,
    unanswered: usize,
    refused: usize,
}

type SharedAcks = Arc<Mutex<Acks>>;

/// Enrolls fresh devices one at a time until `stop`, recording every
/// acknowledgement. `pause` between requests.
async fn enroller(login: Login, acks: SharedAcks, pause: Duration, stop: CancellationToken) {
    let admin = AdminClient::connect(login.opts(), ADMIN_TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("{}", no_admin(&login.addr, e)));
    while !stop.is_cancelled() {
        let uuid = platform_tests::new_uuid();
        let op = AdminOp::Enroll {
            uuid: uuid.clone(),
            pass_tmp: format!("pt-{}", &uuid[..8]),
            replace: false,
            ssids: Vec::new(),
        };
        match admin.request(op).await {
            Ok(AdminOk::Enrolled { .. }) => acks.lock().unwrap().enrollments.push(uuid),
            Ok(other) => panic!("{other:?}"),
            Err(verifier::ClientError::NoAnswer(_)) => acks.lock().unwrap().unanswered += 1,
            Err(_) => acks.lock().unwrap().refused += 1,
        }
        tokio::time::sleep(pause).await;
    }
    admin.close().await;
}

/// Sends `op(i)` to the registry for i = 0, 1, … until `stop`, recording
/// every acknowledged assignment.
async fn assigner(
    login: Login,
    acks: SharedAcks,
    pause: Duration,
    stop: CancellationToken,
    op: impl Fn(usize) -> RegistryOp,
) {
    let client = RegistryClient::connect(login.opts(), ADMIN_TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("{}", no_admin(&login.addr, e)));
    let mut i = 0;
    while !stop.is_cancelled() {
        match client.request(op(i)).await {
            Ok(RegistryOk::Assignment(a)) => {
                acks.lock()
                    .unwrap()
                    .assignments
                    .push((a.device_id, a.gateway_id, a.epoch))
            }
            Ok(other) => panic!("{other:?}"),
            Err(registry::RegistryClientError::NoAnswer(_)) => acks.lock().unwrap().unanswered += 1,
            Err(_) => acks.lock().unwrap().refused += 1,
        }
        i += 1;
        tokio::time::sleep(pause).await;
    }
    client.close().await;
}

/// Every acknowledged enrollment is enrolled.
async fn assert_enrollments_kept(p: &Platform, acked: &[String]) {
    let admin = p.admin().await;
    let have = enrolled(&admin).await;
    admin.close().await;
    let lost: Vec<_> = acked
        .iter()
        .filter(|u| !have.contains(&u.to_lowercase()))
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged enrollments lost, e.g. {:?}",
        lost.len(),
        acked.len(),
        &lost[..lost.len().min(5)]
    );
}

/// Every acknowledged assignment is there, or was superseded by a later
/// change (a greater epoch). With `exact`, nothing may have moved since.
async fn assert_assignments_kept(p: &Platform, acked: &[(String, String, u64)], exact: bool) {
    let client = p.registry().await;
    let mut now = HashMap::new();
    for (device, _, _) in acked {
        if !now.contains_key(device) {
            now.insert(device.clone(), show(&client, device).await);
        }
    }
    client.close().await;
    for (device, gateway, epoch) in acked {
        let found = now[device].as_ref();
        let kept = found.is_some_and(|(g, e)| {
            if exact {
                (g, e) == (gateway, epoch)
            } else {
                e > epoch || (e == epoch && g == gateway)
            }
        });
        assert!(
            kept,
            "acknowledged {device} -> {gateway} at epoch {epoch}, now {found:?}"
        );
    }
}

// ----------------------------------------------------------------- tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_mid_fleet_loses_nothing_acknowledged() {
    let fleet_n = fleet_size();
    let t0 = Instant::now();
    // gw-1 lives in the platform process and dies with it; gw-2 is its
    // own process and rides the crash out.
    let mut p = Platform::start(&["gw-1"]).await;
    p.spawn_gateway("gw-2").await;
    p.wait_alive(&["gw-1", "gw-2"]).await;
    let stop = CancellationToken::new();
    let _ap = p.start_ap(&stop).await;

    let devices = manifest::generate(fleet_n, 5);
    let admin = p.admin().await;
    let fleet_enrolled = import(&admin, &devices).await;
    admin.close().await;

    let fleet = p.start_fleet(devices.clone());
    let stats = fleet.stats.clone();

    // Admin work in flight across the crash: enrollments of other devices,
    // and remaps of the fleet's.
    let acks = SharedAcks::default();
    let writers_stop = CancellationToken::new();
    let mut writers = JoinSet::new();
    writers.spawn(enroller(
        p.login("admin"),
        acks.clone(),
        Duration::from_millis(10),
        writers_stop.clone(),
    ));
    let ids: Vec<String> = devices.iter().map(|d| d.uuid.clone()).collect();
    writers.spawn(assigner(
        p.login("admin"),
        acks.clone(),
        Duration::from_millis(10),
        writers_stop.clone(),
        // In power-on order, so most asked-for devices have an assignment.
        move |i| RegistryOp::Remap {
            device_id: ids[i % ids.len()].clone(),
            gateway_id: if i % 2 == 0 { "gw-1" } else { "gw-2" }.into(),
        },
    ));

    let third = (fleet_n / 3) as u64;
    let midway = stats
        .wait_until(SETTLE, |s| {
            s.snapshot().connected >= third && acks.lock().unwrap().assignments.len() >= 5
        })
        .await;
    assert!(
        midway,
        "the fleet never got a third of the way: {:?}\n{}",
        stats.snapshot(),
        p.tails()
    );
    let (enrolled_before, remapped_before) = {
        let a = acks.lock().unwrap();
        (a.enrollments.len(), a.assignments.len())
    };
    let at_kill = stats.snapshot();
    p.kill9();
    let killed = Instant::now();
    eprintln!(
        "kill9: SIGKILL of the platform with {}/{fleet_n} devices connected, {} joined, \
         {enrolled_before} enrollments (besides the fleet's) and {remapped_before} remaps \
         acknowledged so far",
        at_kill.connected, at_kill.joined
    );

    p.spawn_broker().await;
    let restarted = Instant::now();
    eprintln!(
        "kill9: platform restarted in {} ms",
        killed.elapsed().as_millis()
    );
    p.wait_alive(&["gw-1", "gw-2"]).await;
    // Let the writers get through the restart and on with their work,
    // then stop them: what they were told is done must all be there.
    let before = {
        let a = acks.lock().unwrap();
        a.enrollments.len() + a.assignments.len()
    };
    let writers_resumed = stats
        .wait_until(Duration::from_secs(15), |_| {
            let a = acks.lock().unwrap();
            a.enrollments.len() + a.assignments.len() >= before + 20
        })
        .await;
    writers_stop.cancel();
    while writers.join_next().await.transpose().unwrap().is_some() {}
    assert!(
        writers_resumed,
        "admin requests were not answered after the restart:\n{}",
        p.tails()
    );
    let acks = std::mem::take(&mut *acks.lock().unwrap());

    let mut all_enrollments = fleet_enrolled;
    all_enrollments.extend(acks.enrollments.iter().cloned());
    assert_enrollments_kept(&p, &all_enrollments).await;
    assert_assignments_kept(&p, &acks.assignments, false).await;

    // Every device ends joined and connected on the gateway the registry
    // has for it: per gateway, the devices on it are the devices assigned
    // to it, and they are all of them.
    let client = p.registry().await;
    let deadline = restarted + SETTLE;
    let mut last = String::new();
    let homed = loop {
        let s = stats.snapshot();
        let on = |g: &str| stats.on_gateway(g);
        if s.joined == fleet_n as u64 && on("gw-1") + on("gw-2") == fleet_n as u64 {
            if let Ok(views) = gateways(&client).await {
                let assigned = |g: &str| views.get(g).map_or(0, |v| v.assigned);
                if assigned("gw-1") == on("gw-1") && assigned("gw-2") == on("gw-2") {
                    break true;
                }
                last = format!(
                    "assigned gw-1 {} gw-2 {}, connected gw-1 {} gw-2 {}",
                    assigned("gw-1"),
                    assigned("gw-2"),
                    on("gw-1"),
                    on("gw-2")
                );
            }
        }
        // A device that failed has given up for good: no point waiting.
        if s.failed > 0 || Instant::now() > deadline {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let settled_in = restarted.elapsed();
    client.close().await;
    let snapshot = stats.snapshot();
    let (on_gw1, on_gw2) = (stats.on_gateway("gw-1"), stats.on_gateway("gw-2"));
    let report = fleet.end().await;
    assert!(
        homed,
        "not every device got home ({:.1} s after the restart, limit {SETTLE:?}): \
         {snapshot:?} {last}; errors {:?}\n{}",
        settled_in.as_secs_f64(),
        report.errors,
        p.tails()
    );
    assert_eq!(report.failed, 0, "{:?}", report.errors);
    eprintln!(
        "kill9: {fleet_n} devices joined and home {} ms after the restart \
         (gw-1 {}, gw-2 {}; {} losses, {} refusals, {} redirects); \
         {} enrollments and {} remaps acknowledged in all, all kept \
         ({} requests unanswered, {} refused); {:.1} s in all",
        settled_in.as_millis(),
        on_gw1,
        on_gw2,
        snapshot.losses,
        snapshot.refusals,
        snapshot.redirects,
        all_enrollments.len(),
        acks.assignments.len(),
        acks.unanswered,
        acks.refused,
        t0.elapsed().as_secs_f64()
    );
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_crash_rehomes_its_devices() {
    // gw-2 in the platform process; gw-1, which dies, its own process.
    let mut p = Platform::start(&["gw-2"]).await;
    p.spawn_gateway("gw-1").await;
    p.wait_alive(&["gw-1", "gw-2"]).await;
    let stop = CancellationToken::new();
    let _ap = p.start_ap(&stop).await;

    let doomed = on_doomed_gateway();
    let fleet = p.fleet_on("gw-1", doomed, 6).await;
    let stats = &fleet.stats;
    let all = doomed as u64;

    p.gateway("gw-1").kill().unwrap();
    let killed = Instant::now();
    let rehomed = stats
        .wait_until(Duration::from_secs(30), |s| s.on_gateway("gw-2") == all)
        .await;
    let took = killed.elapsed();
    let snapshot = stats.snapshot();
    assert!(
        rehomed,
        "only {} of {all} devices re-homed to gw-2 within 30 s: {snapshot:?}\n{}",
        stats.on_gateway("gw-2"),
        p.tails()
    );
    eprintln!(
        "gateway crash: {all} devices re-homed from gw-1 to gw-2 {} ms after SIGKILL of gw-1 \
         ({} losses, {} refusals)",
        took.as_millis(),
        snapshot.losses,
        snapshot.refusals
    );

    // The registry agrees: gw-1 is dead, and holds nobody.
    let client = p.registry().await;
    let views = gateways(&client).await.unwrap();
    assert!(!views["gw-1"].alive, "{:?}", views["gw-1"]);
    assert_eq!(views["gw-1"].assigned, 0, "{:?}", views["gw-1"]);
    assert_eq!(views["gw-2"].assigned, all, "{:?}", views["gw-2"]);
    client.close().await;
    fleet.finish().await;
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_keeps_acknowledged_work() {
    let mut p = Platform::start(&["gw-1", "gw-2"]).await;
    p.wait_alive(&["gw-1", "gw-2"]).await;

    // Several admins at once, with no pause: at any moment some request is
    // in flight.
    let acks = SharedAcks::default();
    let writers_stop = CancellationToken::new();
    let mut writers = JoinSet::new();
    for _ in 0..3 {
        writers.spawn(enroller(
            p.login("admin"),
            acks.clone(),
            Duration::ZERO,
            writers_stop.clone(),
        ));
    }
    for w in 0..2 {
        writers.spawn(assigner(
            p.login("admin"),
            acks.clone(),
            Duration::ZERO,
            writers_stop.clone(),
            move |i| RegistryOp::Assign {
                device_id: format!("term-{w}-{i}"),
                gateway_id: if i % 2 == 0 { "gw-1" } else { "gw-2" }.into(),
            },
        ));
    }
    let busy = async {
        loop {
            {
                let a = acks.lock().unwrap();
                if a.enrollments.len() >= 50 && a.assignments.len() >= 50 {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    assert!(
        tokio::time::timeout(STARTUP, busy).await.is_ok(),
        "the admins got too few answers:\n{}",
        p.tails()
    );

    p.broker().sigterm().unwrap();
    let termed = Instant::now();
    let status =
        tokio::task::block_in_place(|| p.broker().wait_exit(Duration::from_secs(20))).unwrap();
    let took = termed.elapsed();
    assert!(
        status.is_some_and(|s| s.success()),
        "after SIGTERM the platform {}:\n{}",
        match status {
            Some(s) => format!("exited with {s}"),
            None => "did not exit within 20 s".into(),
        },
        p.tails()
    );
    writers_stop.cancel();
    while writers.join_next().await.transpose().unwrap().is_some() {}
    p.broker = None;
    let acks = std::mem::take(&mut *acks.lock().unwrap());

    p.spawn_broker().await;
    assert_enrollments_kept(&p, &acks.enrollments).await;
    assert_assignments_kept(&p, &acks.assignments, true).await;
    eprintln!(
        "graceful shutdown: exit 0 {} ms after SIGTERM; {} enrollments and {} assignments \
         acknowledged, all kept ({} requests unanswered, {} refused)",
        took.as_millis(),
        acks.enrollments.len(),
        acks.assignments.len(),
        acks.unanswered,
        acks.refused
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_whose_redirect_died_with_the_platform_still_happens() {
    // Both gateways are their own processes and ride the crash out. The
    // devices sit on gw-2; while the platform is down their assignments
    // change to gw-1 in the registry's store (as a remap acknowledged the
    // instant before a crash whose redirects never left). Nothing but
    // gw-2's agent, re-syncing with the restarted registry, can tell them.
    const N: usize = 20;
    let mut p = Platform::start(&[]).await;
    p.spawn_gateway("gw-1").await;
    p.spawn_gateway("gw-2").await;
    p.wait_alive(&["gw-1", "gw-2"]).await;
    let stop = CancellationToken::new();
    let _ap = p.start_ap(&stop).await;
    let fleet = p.fleet_on("gw-2", N, 8).await;
    let stats = &fleet.stats;

    p.kill9();
    {
        let store = registry::Store::open(&p.data().join("registry")).unwrap();
        for d in &fleet.devices {
            let id = d.uuid.to_lowercase();
            let now = store.assignment(&id).unwrap().expect("assigned");
            store
                .set_assignment(&id, "gw-1", now.epoch + 1, Some("gw-2"), "remap")
                .unwrap();
        }
        store.flush().await.unwrap();
    }
    p.spawn_broker().await;
    let restarted = Instant::now();
    let moved = stats
        .wait_until(SETTLE, |s| s.on_gateway("gw-1") == N as u64)
        .await;
    assert!(
        moved,
        "devices still on gw-2 after the restart: {:?} (gw-1 {}, gw-2 {})\n{}",
        stats.snapshot(),
        stats.on_gateway("gw-1"),
        stats.on_gateway("gw-2"),
        p.tails()
    );
    eprintln!(
        "stray devices: {N} moved gw-2 -> gw-1 {} ms after the restart",
        restarted.elapsed().as_millis()
    );
    fleet.finish().await;
    stop.cancel();
}

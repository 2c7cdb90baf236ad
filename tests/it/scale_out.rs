//! Past one process (issue 15): the workers as their own processes, two of
//! each, on engines operators already run. Mosquitto 2 is the platform
//! broker, PostgreSQL the store, with two `verifier serve`, two `registry
//! serve` and two `broker gateway` processes, in walkthrough mode
//! (Mosquitto has no hook for per-device logins). A fleet onboards while an
//! admin remaps and an enroller enrolls; one verifier and one registry are
//! killed with SIGKILL in the middle, and restarted. Then:
//! - every enrollment the verifier acknowledged is in PostgreSQL;
//! - every remap the registry acknowledged is in PostgreSQL, at its epoch;
//! - every device joined, and is connected to the gateway PostgreSQL
//!   assigns it;
//! - no device was told two gateways at one epoch, and everything a device
//!   was told is what the audit log records at that epoch.
//!
//! Mosquitto and PostgreSQL come from Debian's packages (`.ci/run`
//! installs them). Without them the test is skipped, unless
//! `PLATFORM_REQUIRE_SERVICES=1`, which makes that a failure. The
//! processes' logs are in the test's temp dir; `SCALE_OUT_KEEP=1` keeps it,
//! `SCALE_OUT_FLEET=N` sets the fleet's size.

use ap_sim::{ApConfig, Network};
use bus::BusOptions;
use device_sim::fleet::{self, FleetConfig, FleetStats};
use device_sim::manifest::{self, Identity};
use harness::{Mosquitto, Postgres, Proc, WorkspaceBin};
use platform_tests::{unique_id, SSID, WIFI_PASSWORD};
use protocol::admin::{AdminOp, ImportRow};
use protocol::registry_admin::{RegistryOk, RegistryOp};
use registry::RegistryClient;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use verifier::AdminClient;

static BROKER: WorkspaceBin = WorkspaceBin::new("broker", "broker", "PLATFORM_BROKER_BIN");
static VERIFIER: WorkspaceBin = WorkspaceBin::new("verifier", "verifier", "PLATFORM_VERIFIER_BIN");
static REGISTRY: WorkspaceBin = WorkspaceBin::new("registry", "registry", "PLATFORM_REGISTRY_BIN");

const FLEET_DEFAULT: usize = 2000;
const STARTUP: Duration = Duration::from_secs(60);
const SETTLE: Duration = Duration::from_secs(120);
const ADMIN_TIMEOUT: Duration = Duration::from_secs(3);
const DB: &str = "platform";
/// The admin (name, password) the HTTP auth endpoint is started with.
const HTTP_ADMIN: (&str, &str) = ("ops", "ops password");
/// The secret the HTTP auth endpoint's callers send (`--auth-secret-file`).
const HTTP_SECRET: &str = "scale-out-http-auth-secret-0123456789abcdef";

/// POSTs `body` to `path` on `addr` as EMQX's HTTP authenticator does,
/// and answers the reply's JSON body.
fn post(addr: &str, path: &str, body: &str) -> serde_json::Value {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Authorization: Bearer {HTTP_SECRET}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    let (head, json) = reply.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    serde_json::from_str(json.trim()).unwrap_or_else(|e| panic!("{e}: {json}"))
}

fn fleet_size() -> usize {
    std::env::var("SCALE_OUT_FLEET")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(FLEET_DEFAULT)
}

/// Whether Mosquitto and PostgreSQL are here; a failure if they must be.
fn services() -> bool {
    let here = Mosquitto::available() && Postgres::available();
    if !here {
        assert!(
            std::env::var("PLATFORM_REQUIRE_SERVICES").as_deref() != Ok("1"),
            "mosquitto or PostgreSQL is not installed, and PLATFORM_REQUIRE_SERVICES=1"
        );
        eprintln!("skipped: mosquitto or PostgreSQL not installed");
    }
    here
}

fn spawn(bin: &WorkspaceBin, dir: &Path, name: &str, args: &[String]) -> Proc {
    let path = bin.path().unwrap_or_else(|e| panic!("{e}"));
    harness::Spawn::new(path)
        .args(args)
        .env(
            "RUST_LOG",
            std::env::var("SCALE_OUT_LOG")
                .unwrap_or_else(|_| "info,rumqttd=off,tokio_postgres=warn".into()),
        )
        .env("NO_COLOR", "1")
        .tail_lines(20)
        .start(dir, name)
        .unwrap_or_else(|e| panic!("{e:?}"))
}

fn wait_for(proc: &mut Proc, line: &str) {
    tokio::task::block_in_place(|| proc.wait_for(line, STARTUP)).unwrap_or_else(|e| panic!("{e}"))
}

/// Mosquitto, PostgreSQL and the worker processes.
struct ScaleOut {
    dir: tempfile::TempDir,
    pg: Postgres,
    mqtt: Mosquitto,
    url: String,
    verifiers: Vec<Proc>,
    registries: Vec<Proc>,
    gateways: Vec<Proc>,
    starts: usize,
}

impl ScaleOut {
    fn start() -> ScaleOut {
        platform_tests::init_tracing();
        let dir = tempfile::Builder::new()
            .prefix("scale-out-")
            .disable_cleanup(std::env::var_os("SCALE_OUT_KEEP").is_some())
            .tempdir()
            .unwrap();
        for sub in ["pg", "mqtt", "logs"] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        let pg = Postgres::start(&dir.path().join("pg")).unwrap();
        pg.create_db(DB).unwrap();
        let url = pg.url(DB);
        let mqtt = Mosquitto::start(&dir.path().join("mqtt")).unwrap();
        ScaleOut {
            dir,
            pg,
            mqtt,
            url,
            verifiers: Vec::new(),
            registries: Vec::new(),
            gateways: Vec::new(),
            starts: 0,
        }
    }

    fn logs(&self) -> std::path::PathBuf {
        self.dir.path().join("logs")
    }

    fn common(&self) -> Vec<String> {
        vec![
            "serve".into(),
            "--walkthrough".into(),
            "--broker".into(),
            self.mqtt.address(),
            "--store".into(),
            self.url.clone(),
        ]
    }

    /// A verifier instance; with `auth`, also serving HTTP auth there, with
    /// the admin [`HTTP_ADMIN`] and the secret [`HTTP_SECRET`].
    fn spawn_verifier(&mut self, instance: &str, auth: Option<&str>) {
        self.starts += 1;
        let mut args = self.common();
        let key = self.dir.path().join("verifier-store.key");
        let data = self.dir.path().join(format!("verifier-{instance}"));
        args.extend([
            "--store-key".into(),
            key.display().to_string(),
            "--data-dir".into(),
            data.display().to_string(),
            "--instance".into(),
            instance.into(),
        ]);
        if let Some(addr) = auth {
            let hash = protocol::crypto::sha256_hex(HTTP_ADMIN.1);
            let secret = self.dir.path().join("http-auth.secret");
            std::fs::write(&secret, format!("{HTTP_SECRET}\n")).unwrap();
            args.extend([
                "--auth-listen".into(),
                addr.into(),
                "--auth-secret-file".into(),
                secret.display().to_string(),
                "--admin".into(),
                format!("{}={hash}", HTTP_ADMIN.0),
            ]);
        }
        let name = format!("verifier-{instance}-{}", self.starts);
        let mut p = spawn(&VERIFIER, &self.logs(), &name, &args);
        wait_for(&mut p, "verifier serving");
        self.verifiers.push(p);
    }

    fn spawn_registry(&mut self, instance: &str) {
        self.starts += 1;
        let mut args = self.common();
        args.extend(["--instance".into(), instance.into()]);
        let name = format!("registry-{instance}-{}", self.starts);
        let mut p = spawn(&REGISTRY, &self.logs(), &name, &args);
        wait_for(&mut p, "registry serving");
        self.registries.push(p);
    }

    fn spawn_gateway(&mut self, id: &str) {
        let listen = format!("127.0.0.1:{}", harness::free_port().unwrap());
        let args: Vec<String> = [
            "gateway",
            "--id",
            id,
            "--listen",
            &listen,
            "--platform",
            &self.mqtt.address(),
            "--walkthrough",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let mut p = spawn(&BROKER, &self.logs(), id, &args);
        wait_for(&mut p, "gateway listening");
        self.gateways.push(p);
    }

    /// SIGKILL of the first live process whose name starts with `prefix`.
    fn kill9(procs: &mut Vec<Proc>, prefix: &str) -> String {
        let i = procs
            .iter()
            .position(|p| p.name().starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix} process"));
        let mut p = procs.remove(i);
        p.kill().unwrap();
        p.name().to_owned()
    }

    /// AP `ap-1` for [`SSID`], in this process, confirming every device.
    async fn start_ap(&self, stop: &CancellationToken) -> ap_sim::Ap {
        let mut ap = ApConfig::new(
            self.mqtt.address(),
            "ap-1",
            vec![Network {
                ssid: SSID.into(),
                password: WIFI_PASSWORD.into(),
            }],
        );
        ap.auto_confirm = true;
        ap_sim::start(ap, stop.clone()).await.unwrap()
    }

    /// A walkthrough fleet of `devices` on Mosquitto, `concurrency` at
    /// once, that stays until stopped.
    fn fleet_config(&self, devices: Vec<Identity>, concurrency: usize) -> FleetConfig {
        let mut config = FleetConfig::new(self.mqtt.address(), devices, SSID);
        config.concurrency = concurrency;
        config.answer_timeout = SETTLE;
        config.hold = None;
        config
    }

    fn opts(&self, role: &str) -> BusOptions {
        BusOptions::new(&self.mqtt.address(), unique_id(&format!("so-{role}")))
            .unwrap()
            .with_credentials(role, "")
    }

    async fn admin(&self) -> AdminClient {
        AdminClient::connect(self.opts("admin"), ADMIN_TIMEOUT)
            .await
            .unwrap()
    }

    async fn registry(&self) -> RegistryClient {
        RegistryClient::connect(self.opts("admin"), ADMIN_TIMEOUT)
            .await
            .unwrap()
    }

    fn psql(&self, sql: &str) -> Vec<Vec<String>> {
        self.pg
            .psql(DB, sql)
            .unwrap()
            .lines()
            .filter(|l| !l.is_empty())
            .map(|l| l.split('|').map(str::to_owned).collect())
            .collect()
    }

    /// Device -> gateway, as PostgreSQL assigns it now.
    fn assignments(&self) -> HashMap<String, (String, u64)> {
        self.psql("SELECT device_id, gateway_id, epoch FROM registry_assignments")
            .into_iter()
            .map(|r| (r[0].clone(), (r[1].clone(), r[2].parse().unwrap())))
            .collect()
    }

    fn tails(&self) -> String {
        self.verifiers
            .iter()
            .chain(&self.registries)
            .chain(&self.gateways)
            .map(|p| format!("--- {} (pid {}):\n{}", p.name(), p.pid(), p.tail()))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// What admins were told is done.
#[derive(Default)]
struct Acks {
    enrollments: Vec<String>,
    /// (device, gateway, epoch) of each acknowledged remap.
    remaps: Vec<(String, String, u64)>,
    unanswered: usize,
}

async fn import(admin: &AdminClient, devices: &[Identity]) {
    let rows = devices
        .iter()
        .enumerate()
        .map(|(i, d)| ImportRow {
            line: i as u64 + 1,
            uuid: d.uuid.clone(),
            pass_tmp: d.pass_tmp.clone(),
        })
        .collect();
    let report = admin.import(rows, |_, _| {}).await.unwrap();
    assert!(report.rejected.is_empty(), "{report:?}");
}

/// Enrolls fresh UUIDs one at a time until `stop`, recording each one the
/// verifier acknowledged.
async fn enroller(admin: AdminClient, acks: Arc<Mutex<Acks>>, stop: CancellationToken) {
    while !stop.is_cancelled() {
        let uuid = platform_tests::new_uuid();
        let op = AdminOp::Enroll {
            uuid: uuid.clone(),
            pass_tmp: format!("pt-{}", &uuid[..8]),
            replace: false,
        };
        match admin.request(op).await {
            Ok(_) => acks.lock().unwrap().enrollments.push(uuid.to_lowercase()),
            Err(_) => acks.lock().unwrap().unanswered += 1,
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    admin.close().await;
}

/// Remaps each of `devices`, once it has an assignment, to the other
/// gateway, recording each acknowledged remap; an unanswered request (its
/// registry killed) is asked again.
async fn remapper(
    client: RegistryClient,
    devices: Vec<String>,
    acks: Arc<Mutex<Acks>>,
    stop: CancellationToken,
) {
    let other = |gw: &str| if gw == "gw-1" { "gw-2" } else { "gw-1" };
    for device in devices {
        loop {
            if stop.is_cancelled() {
                client.close().await;
                return;
            }
            let shown = client
                .request(RegistryOp::Show {
                    device_id: device.clone(),
                })
                .await;
            let Ok(RegistryOk::Assignment(a)) = shown else {
                // Not assigned yet, or no answer: ask again shortly.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let to = other(&a.gateway_id).to_owned();
            match client
                .request(RegistryOp::Remap {
                    device_id: device.clone(),
                    gateway_id: to.clone(),
                })
                .await
            {
                Ok(RegistryOk::Assignment(done)) => {
                    assert_eq!(done.gateway_id, to);
                    acks.lock()
                        .unwrap()
                        .remaps
                        .push((device.clone(), to, done.epoch));
                    break;
                }
                Ok(other) => panic!("{other:?}"),
                Err(_) => {
                    acks.lock().unwrap().unanswered += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_of_each_worker_on_mosquitto_and_postgresql_survive_sigkill_while_a_fleet_onboards() {
    if !services() {
        return;
    }
    let n = fleet_size();
    let t0 = Instant::now();
    let mut so = ScaleOut::start();
    let auth = format!("127.0.0.1:{}", harness::free_port().unwrap());
    so.spawn_verifier("a", None);
    so.spawn_verifier("b", Some(&auth));
    so.spawn_registry("a");
    so.spawn_registry("b");
    // The endpoint an external broker's hook calls, as EMQX's HTTP
    // authenticator would (body `{"clientid":"${clientid}",…}`).
    let ok = post(
        &auth,
        "/emqx/auth",
        &format!(
            r#"{{"clientid":"ops-1","username":"{}","password":"{}","peerhost":"127.0.0.1"}}"#,
            HTTP_ADMIN.0, HTTP_ADMIN.1
        ),
    );
    assert_eq!(ok["result"], "allow", "{ok}");
    assert_eq!(ok["is_superuser"], true, "{ok}");
    let bad = post(
        &auth,
        "/emqx/auth",
        &format!(
            r#"{{"clientid":"ops-1","username":"{}","password":"wrong"}}"#,
            HTTP_ADMIN.0
        ),
    );
    assert_eq!(bad["result"], "deny", "{bad}");
    so.spawn_gateway("gw-1");
    so.spawn_gateway("gw-2");

    eprintln!(
        "scale-out: processes up in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    let devices = manifest::generate(n, 15);
    let admin = so.admin().await;
    import(&admin, &devices).await;
    admin.close().await;
    // Wait for both gateways to be alive to both registries: a device
    // query answered meanwhile could only be `no_gateway`.
    let client = so.registry().await;
    let deadline = Instant::now() + STARTUP;
    loop {
        let alive = match client.request(RegistryOp::Gateways).await {
            Ok(RegistryOk::Gateways { gateways }) => gateways.iter().filter(|g| g.alive).count(),
            _ => 0,
        };
        if alive == 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "gateways not alive:\n{}",
            so.tails()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    client.close().await;
    eprintln!(
        "scale-out: enrolled, gateways alive at {:.1} s",
        t0.elapsed().as_secs_f64()
    );

    let stop = CancellationToken::new();
    let ap = so.start_ap(&stop).await;

    let acks = Arc::new(Mutex::new(Acks::default()));
    let writers = CancellationToken::new();
    let enroll_task = tokio::spawn(enroller(so.admin().await, acks.clone(), writers.clone()));
    let remapped: Vec<String> = devices.iter().take(200).map(|d| d.uuid.clone()).collect();
    let remap_task = tokio::spawn(remapper(
        so.registry().await,
        remapped.clone(),
        acks.clone(),
        writers.clone(),
    ));

    let stats = FleetStats::new(n);
    let mut config = so.fleet_config(devices.clone(), 100);
    config.mqtt = vec![bus::MqttVersion::V311, bus::MqttVersion::V5];
    let fleet_stop = CancellationToken::new();
    let started = Instant::now();
    let fleet_task = tokio::spawn(fleet::run(config, stats.clone(), fleet_stop.clone()));

    // In the middle: one verifier and one registry die, then come back.
    assert!(
        stats
            .wait_until(SETTLE, |s| s.snapshot().joined >= (n as u64) / 3)
            .await,
        "a third of the fleet did not join: {:?}\n{}",
        stats.snapshot(),
        so.tails()
    );
    let killed_at = stats.snapshot();
    let v = ScaleOut::kill9(&mut so.verifiers, "verifier-a");
    let r = ScaleOut::kill9(&mut so.registries, "registry-a");
    eprintln!("SIGKILLed {v} and {r} at {killed_at:?}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    so.spawn_verifier("a", None);
    so.spawn_registry("a");

    assert!(
        stats
            .wait_until(SETTLE, |s| s.snapshot().connected >= n as u64)
            .await,
        "the fleet did not all connect: {:?}\nerrors: {:?}\n{}",
        stats.snapshot(),
        stats
            .placements()
            .values()
            .filter(|w| !w.starts_with("on "))
            .take(5)
            .collect::<Vec<_>>(),
        so.tails()
    );
    let onboarded_in = started.elapsed();
    // The remaps finish (each device has an assignment by now).
    tokio::time::timeout(SETTLE, remap_task)
        .await
        .expect("the remaps did not finish")
        .unwrap();
    writers.cancel();
    enroll_task.await.unwrap();

    // Every device settles on the gateway PostgreSQL assigns it.
    let deadline = Instant::now() + SETTLE;
    let (assigned, away) = loop {
        let assigned = so.assignments();
        let placements = stats.placements();
        let away: Vec<(String, String, String)> = devices
            .iter()
            .filter_map(|d| {
                let want = assigned.get(&d.uuid).map(|(g, _)| format!("on {g}"));
                let now = placements.get(&d.uuid).cloned().unwrap_or_default();
                (want.as_deref() != Some(now.as_str()))
                    .then(|| (d.uuid.clone(), format!("{want:?}"), now))
            })
            .collect();
        if away.is_empty() || Instant::now() > deadline {
            break (assigned, away);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(
        away.is_empty(),
        "{} devices not on their assigned gateway, e.g. {:?}\n{}",
        away.len(),
        &away[..away.len().min(5)],
        so.tails()
    );

    fleet_stop.cancel();
    let report = fleet_task.await.unwrap();
    assert_eq!(report.failed, 0, "{:?}", report.errors);
    stop.cancel();
    drop(ap);

    // Every acknowledged enrollment is in PostgreSQL.
    let acks = acks.lock().unwrap();
    let stored: HashSet<String> = so
        .psql("SELECT uuid FROM verifier_enrollments")
        .into_iter()
        .map(|r| r[0].clone())
        .collect();
    let lost: Vec<&String> = acks
        .enrollments
        .iter()
        .filter(|u| !stored.contains(*u))
        .collect();
    assert!(lost.is_empty(), "acknowledged enrollments lost: {lost:?}");
    for d in &devices {
        assert!(
            stored.contains(&d.uuid.to_lowercase()),
            "{} not enrolled",
            d.uuid
        );
    }

    // Every acknowledged remap is in the audit log at its epoch, and the
    // 200 remapped devices all were.
    let audit: BTreeMap<(String, u64), String> = so
        .psql("SELECT device_id, epoch, to_gateway FROM registry_audit")
        .into_iter()
        .map(|r| ((r[0].clone(), r[1].parse().unwrap()), r[2].clone()))
        .collect();
    assert_eq!(acks.remaps.len(), remapped.len());
    for (device, gateway, epoch) in &acks.remaps {
        assert_eq!(
            audit.get(&(device.clone(), *epoch)),
            Some(gateway),
            "acknowledged remap of {device} to {gateway} at epoch {epoch} not recorded"
        );
    }
    // Each device's epochs are 1, 2, … with no gap, and its assignment is
    // the last of them.
    let mut per_device: HashMap<&str, Vec<u64>> = HashMap::new();
    for (device, epoch) in audit.keys() {
        per_device.entry(device).or_default().push(*epoch);
    }
    for (device, (gateway, epoch)) in &assigned {
        let epochs = per_device.get(device.as_str()).cloned().unwrap_or_default();
        assert_eq!(epochs, (1..=*epoch).collect::<Vec<_>>(), "{device}");
        assert_eq!(audit.get(&(device.clone(), *epoch)), Some(gateway));
    }
    // No device was told two gateways at one epoch, nor anything the
    // audit log does not record.
    assert!(
        stats.contradictions().is_empty(),
        "devices told two gateways at one epoch: {:?}",
        stats.contradictions()
    );
    let told = stats.told_assignments();
    let unrecorded: Vec<&(String, u64, String)> = told
        .iter()
        .filter(|(d, e, g)| audit.get(&(d.clone(), *e)) != Some(g))
        .collect();
    assert!(
        unrecorded.is_empty(),
        "devices told assignments the store does not record: {:?}",
        &unrecorded[..unrecorded.len().min(5)]
    );
    let moved = acks.remaps.len();
    eprintln!(
        "scale-out: {n} devices onboarded in {:.1} s across the SIGKILL of {v} and {r}; \
         {moved} remaps and {} enrollments acknowledged, {} admin requests unanswered; \
         {} answers checked against the audit log; fleet: {:?}",
        onboarded_in.as_secs_f64(),
        acks.enrollments.len(),
        acks.unanswered,
        told.len(),
        stats.snapshot()
    );
}

/// The faults of the issue's *Bad input and faults*: PostgreSQL stopped
/// for a few seconds under load (the workers answer `unavailable`, never a
/// wrong answer, and recover), and the broker restarted (every worker
/// subscribes again, and the fleet still ends up home).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn workers_answer_unavailable_while_postgresql_is_down_and_resubscribe_after_a_broker_restart(
) {
    if !services() {
        return;
    }
    let n = 600;
    let mut so = ScaleOut::start();
    so.spawn_verifier("a", None);
    so.spawn_registry("a");
    so.spawn_registry("b");
    so.spawn_gateway("gw-1");
    so.spawn_gateway("gw-2");
    let devices = manifest::generate(n, 16);
    let admin = so.admin().await;
    import(&admin, &devices).await;
    admin.close().await;

    let stop = CancellationToken::new();
    let _ap = so.start_ap(&stop).await;
    let stats = FleetStats::new(n);
    let config = so.fleet_config(devices.clone(), 40);
    let fleet_stop = CancellationToken::new();
    let fleet_task = tokio::spawn(fleet::run(config, stats.clone(), fleet_stop.clone()));

    // PostgreSQL down for 3 s with a third of the fleet in.
    assert!(
        stats
            .wait_until(SETTLE, |s| s.snapshot().joined >= (n as u64) / 3)
            .await
    );
    tokio::task::block_in_place(|| so.pg.stop()).unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    tokio::task::block_in_place(|| so.pg.resume()).unwrap();
    // The broker restarted with two thirds in.
    assert!(
        stats
            .wait_until(SETTLE, |s| s.snapshot().joined >= 2 * (n as u64) / 3)
            .await,
        "{:?}\n{}",
        stats.snapshot(),
        so.tails()
    );
    tokio::task::block_in_place(|| {
        so.mqtt.stop().unwrap();
        std::thread::sleep(Duration::from_secs(1));
        so.mqtt.resume().unwrap();
    });
    assert!(
        stats
            .wait_until(SETTLE, |s| s.snapshot().connected >= n as u64)
            .await,
        "the fleet did not all connect after the faults: {:?}\n{}",
        stats.snapshot(),
        so.tails()
    );
    fleet_stop.cancel();
    let report = fleet_task.await.unwrap();
    assert_eq!(report.failed, 0, "{:?}", report.errors);
    stop.cancel();

    // Meanwhile the workers said `unavailable`, and no device was told
    // anything the store does not record.
    let logs: String = so
        .verifiers
        .iter()
        .chain(&so.registries)
        .map(|p| std::fs::read_to_string(p.log()).unwrap_or_default())
        .collect();
    assert!(
        logs.contains("unavailable"),
        "no worker logged the store as unavailable:\n{}",
        so.tails()
    );
    let audit: HashSet<(String, u64, String)> = so
        .psql("SELECT device_id, epoch, to_gateway FROM registry_audit")
        .into_iter()
        .map(|r| (r[0].clone(), r[1].parse().unwrap(), r[2].clone()))
        .collect();
    for told in stats.told_assignments() {
        assert!(audit.contains(&told), "{told:?} told but not recorded");
    }
    assert!(stats.contradictions().is_empty());
    // Every worker subscribed again after the broker's restart.
    for p in so
        .verifiers
        .iter()
        .chain(&so.registries)
        .chain(&so.gateways)
    {
        let log = std::fs::read_to_string(p.log()).unwrap_or_default();
        assert!(
            log.contains("subscribed again after a reconnect"),
            "{} shows no second subscription after the broker restart:\n{}",
            p.name(),
            p.tail()
        );
    }
}

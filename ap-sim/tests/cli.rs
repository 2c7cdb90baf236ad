//! The `ap-sim` binary: several APs from one `--aps` file in one process,
//! against a real platform, and the errors a bad file gives.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use broker::{Config, Platform, StartOptions};
use bus::BusOptions;
use device_sim::{DeviceConfig, DeviceEvent};
use protocol::admin::AdminOp;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use verifier::AdminClient;

const AP_SIM: &str = env!("CARGO_BIN_EXE_ap-sim");

const TWO_APS: &str = "\
[[ap]]
id = \"cli-ap-1\"
ssid = \"factory-a\"
password = \"password of network a\"

[[ap]]
id = \"cli-ap-2\"
ssid = \"factory-b\"
password = \"password of network b\"
";

/// A child process that is killed when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn ap_sim(args: &[&str]) -> Output {
    Command::new(AP_SIM)
        .args(args)
        .env_remove("AP_WIFI_PASSWORD")
        .output()
        .unwrap()
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

/// The platform (broker + verifier) on free ports, no gateways, in the
/// default secure mode: MQTT over TLS.
async fn platform(dir: &Path) -> Platform {
    let mut config = Config::default();
    config.platform.listen = "127.0.0.1:0".parse().unwrap();
    config.metrics.listen = "127.0.0.1:0".parse().unwrap();
    config.registry.enabled = false;
    config.gateways.clear();
    Platform::start(&config, dir, StartOptions::default())
        .await
        .unwrap()
}

fn token(dir: &Path, role: &str) -> String {
    std::fs::read_to_string(dir.join("credentials").join(format!("{role}.token")))
        .unwrap()
        .trim()
        .to_owned()
}

/// A TLS configuration for one client of the platform on `dir`, trusting
/// the CA it wrote there.
fn tls(dir: &Path) -> bus::TlsConfig {
    cli::client_tls(&protocol::layout::ca_file(dir))
        .unwrap()
        .config()
}

fn platform_key(dir: &Path) -> protocol::crypto::PlatformPublicKey {
    let hex = std::fs::read_to_string(dir.join("platform.key.pub")).unwrap();
    protocol::crypto::PlatformPublicKey::from_hex(&hex).unwrap()
}

async fn admin(dir: &Path, broker: &str, op: AdminOp) {
    let opts = BusOptions::new(
        broker,
        format!("ap-sim-test-{}", protocol::crypto::random_b64(6)),
    )
    .unwrap()
    .with_credentials("admin", token(dir, "admin"))
    .with_tls(Some(tls(dir)));
    let admin = AdminClient::connect(opts, Duration::from_secs(10))
        .await
        .unwrap();
    admin.request(op).await.unwrap();
    admin.close().await;
}

async fn enroll(dir: &Path, broker: &str, uuid: &str, pass_tmp: &str) {
    let op = AdminOp::Enroll {
        uuid: uuid.into(),
        pass_tmp: pass_tmp.into(),
        replace: false,
        ssids: Vec::new(),
    };
    admin(dir, broker, op).await;
}

/// Registers AP `ap_id` for `ssid`, as `verifier ap add` does: the
/// verifier releases pass_tmp only to an AP registered for the device's
/// SSID, and the AP logs in with the credential returned.
async fn register_ap(dir: &Path, broker: &str, ap_id: &str, ssid: &str) -> String {
    let credential = protocol::crypto::random_b64(24);
    let op = AdminOp::ApRegister {
        ap_id: ap_id.into(),
        ssids: vec![ssid.into()],
        credential_sha256: protocol::crypto::sha256_hex(&credential),
    };
    admin(dir, broker, op).await;
    credential
}

async fn onboard(
    dir: &Path,
    broker: &str,
    uuid: &str,
    pass_tmp: &str,
    ssid: &str,
) -> device_sim::Joined {
    let mut config = DeviceConfig::new(broker, uuid, pass_tmp, ssid);
    config.tls = Some(tls(dir));
    config.platform_key = Some(platform_key(dir));
    config.auto_confirm = true;
    config.answer_timeout = Duration::from_secs(20);
    let (tx, _rx) = mpsc::unbounded_channel::<DeviceEvent>();
    device_sim::onboard(&config, &tx, None, &CancellationToken::new())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_process_serves_two_aps_with_their_own_networks() {
    let dir = tempfile::tempdir().unwrap();
    let platform = platform(dir.path()).await;
    let broker = platform.broker_addr().to_string();
    let file = write(dir.path(), "aps.toml", TWO_APS);
    // Secure mode, the default: each AP is registered, and logs in as
    // itself with its own credential, found where an admin wrote it
    // (`verifier ap add --out data/credentials/ap/ID.token`, from the
    // directory ap-sim runs in).
    let run_dir = dir.path().join("run");
    for (id, ssid) in [("cli-ap-1", "factory-a"), ("cli-ap-2", "factory-b")] {
        let credential = register_ap(dir.path(), &broker, id, ssid).await;
        let file = protocol::layout::ap_token_file(
            &run_dir.join(protocol::layout::DEFAULT_CREDENTIALS_DIR),
            id,
        );
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, credential).unwrap();
    }
    let mut child = Command::new(AP_SIM)
        .current_dir(&run_dir)
        .args(["--aps", &file, "--auto-confirm", "--broker", &broker])
        // The verifier's signature is checked with the platform's key,
        // and the platform proves who it is with a certificate its CA
        // signed.
        .arg("--platform-key-file")
        .arg(dir.path().join("platform.key.pub"))
        .arg("--cafile")
        .arg(protocol::layout::ca_file(dir.path()))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let _child = Proc(child);
    let (tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let next_line = |what: &str| {
        lines
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("ap-sim printed no {what}"))
    };
    let mut serving = vec![next_line("serving line"), next_line("serving line")];
    serving.sort();
    assert_eq!(
        serving,
        [
            format!("[ap cli-ap-1] serving SSID \"factory-a\" on {broker}"),
            format!("[ap cli-ap-2] serving SSID \"factory-b\" on {broker}"),
        ]
    );

    let (a, b) = (
        "6f1c2b8e-0b5d-4a8f-9e8c-00000000000a",
        "6f1c2b8e-0b5d-4a8f-9e8c-00000000000b",
    );
    enroll(dir.path(), &broker, a, "pt-a").await;
    enroll(dir.path(), &broker, b, "pt-b").await;
    let joined_a = onboard(dir.path(), &broker, a, "pt-a", "factory-a").await;
    assert_eq!(
        (joined_a.ssid.as_str(), joined_a.password.as_str()),
        ("factory-a", "password of network a")
    );
    let joined_b = onboard(dir.path(), &broker, b, "pt-b", "factory-b").await;
    assert_eq!(
        (joined_b.ssid.as_str(), joined_b.password.as_str()),
        ("factory-b", "password of network b")
    );

    // Each device was served by the AP of its network.
    let mut sent = Vec::new();
    while sent.len() < 2 {
        let line = next_line("answer line");
        if line.contains("sent the password") {
            sent.push(line);
        }
    }
    assert!(
        sent[0].starts_with(&format!("[ap cli-ap-1] sent the password to {a}")),
        "{sent:?}"
    );
    assert!(
        sent[1].starts_with(&format!("[ap cli-ap-2] sent the password to {b}")),
        "{sent:?}"
    );
    platform.stop().await.unwrap();
}

#[test]
fn a_bad_aps_file_exits_2_naming_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "dup-id.toml",
            TWO_APS.replace("cli-ap-2", "cli-ap-1"),
            ":7: AP id \"cli-ap-1\" is already used by the AP at line 1",
        ),
        (
            "dup-ssid.toml",
            TWO_APS.replace("factory-b", "factory-a"),
            ":8: SSID \"factory-a\" is already served by AP \"cli-ap-1\" (line 1)",
        ),
        (
            "bad-ssid.toml",
            TWO_APS.replace("factory-b", "factory/b"),
            ":8: SSID \"factory/b\"",
        ),
        (
            "bad-id.toml",
            TWO_APS.replace("cli-ap-2", "cli+ap"),
            ":7: AP id \"cli+ap\"",
        ),
        (
            "unknown-key.toml",
            TWO_APS.replace("ssid = \"factory-b\"", "sid = \"factory-b\""),
            ":8: unknown field `sid`",
        ),
        ("empty.toml", String::new(), ":1: no APs"),
    ];
    for (name, text, expected) in cases {
        let file = write(dir.path(), name, &text);
        let out = ap_sim(&["--aps", &file, "--broker", "127.0.0.1:1"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {stderr}");
        assert!(
            stderr.contains(&format!("{file}{expected}")),
            "{name}: {stderr}"
        );
    }
    let missing = dir.path().join("missing.toml");
    let out = ap_sim(&["--aps", missing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read"));
}

#[test]
fn aps_conflicts_with_the_single_ap_flags() {
    for extra in [
        &["--ssid", "x"][..],
        &["--ap-id", "ap-9"],
        &["--password", "long enough password"],
    ] {
        let mut args = vec!["--aps", "whatever.toml"];
        args.extend_from_slice(extra);
        let out = ap_sim(&args);
        assert_eq!(out.status.code(), Some(2), "{extra:?}");
    }
    // Neither --aps nor --ssid: a usage error too.
    assert_eq!(ap_sim(&[]).status.code(), Some(2));
}

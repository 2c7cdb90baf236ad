//! The `broker` binary as an operator runs it: config handling, signals,
//! and durability across `kill -9`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use std::time::{Duration, Instant};

mod common;

use common::{free_port, platform_toml, spawn_broker, spawn_platform, BROKER};

/// A sibling CLI (verifier, registry), built beside this binary by
/// `cargo test --workspace`.
fn sibling_bin(name: &str) -> PathBuf {
    let path = Path::new(BROKER).with_file_name(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.exists(),
        "{} not built; run the tests with `cargo test --workspace`",
        path.display()
    );
    path
}

/// The registry CLI against the walkthrough platform on `port`
/// ([`spawn_platform`]): plaintext.
fn registry_cli(port: u16, args: &[&str]) -> Output {
    Command::new(sibling_bin("registry"))
        .args(["--walkthrough", "--broker", &format!("127.0.0.1:{port}")])
        .args(["--timeout", "10"])
        .args(args)
        .output()
        .unwrap()
}

/// The verifier CLI against the walkthrough platform on `port`.
fn verifier(port: u16, args: &[&str]) -> Output {
    Command::new(sibling_bin("verifier"))
        .args(["--walkthrough", "--broker", &format!("127.0.0.1:{port}")])
        .args(["--timeout", "10"])
        .args(args)
        .output()
        .unwrap()
}

fn uuid(n: u32) -> String {
    format!("00000000-0000-4000-8000-{n:012x}")
}

#[test]
fn default_config_is_printed_and_valid() {
    let out = Command::new(BROKER).arg("default-config").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    // MQTT over TLS on 8883, the default.
    assert!(text.contains("listen = \"127.0.0.1:8883\""), "{text}");
    assert!(text.contains("[tls]\n"), "{text}");
    let config = broker::config::Config::from_toml(&text, "default-config").unwrap();
    assert!(config.tls_enabled(), "{config:?}");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("default.toml");
    std::fs::write(&file, &text).unwrap();
    let check = Command::new(BROKER)
        .arg("check-config")
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
}

#[test]
fn a_bad_config_key_or_value_is_a_clear_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    for (text, named) in [
        (
            "[platform]\nlisten_adress = \"127.0.0.1:1\"\n",
            "listen_adress",
        ),
        (
            "[platform]\nmax_connections = 0\n",
            "platform.max_connections",
        ),
        ("[platform]\nlisten = \"not an address\"\n", "listen"),
        ("[verifer]\n", "verifer"),
    ] {
        let file = dir.path().join("bad.toml");
        std::fs::write(&file, text).unwrap();
        let out = Command::new(BROKER)
            .args([
                "--config",
                file.to_str().unwrap(),
                "--data-dir",
                dir.path().to_str().unwrap(),
            ])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{text:?}: {stderr}");
        assert!(
            stderr.contains(named),
            "{text:?} should name {named}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[test]
fn an_enrollment_the_cli_reported_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut broker = spawn_platform(dir.path(), port);
    for n in 0..20 {
        let out = verifier(
            port,
            &[
                "enroll",
                "--uuid",
                &uuid(n),
                "--pass-tmp",
                &format!("pt-{n}"),
            ],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // No grace: SIGKILL right after the last acknowledgement.
    broker.kill().unwrap();

    let port = free_port();
    let mut broker = spawn_platform(dir.path(), port);
    for n in 0..20 {
        let out = verifier(port, &["show", "--uuid", &uuid(n)]);
        assert!(
            out.status.success(),
            "{} lost: {}",
            uuid(n),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    broker.kill().unwrap();
}

#[test]
fn sigterm_drains_flushes_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut broker = spawn_platform(dir.path(), port);
    let out = verifier(port, &["enroll", "--uuid", &uuid(7), "--pass-tmp", "pt"]);
    assert!(out.status.success());
    broker.sigterm().unwrap();
    let status = broker.wait_exit(Duration::from_secs(15)).unwrap();
    assert!(status.is_some(), "broker did not exit after SIGTERM");
    assert_eq!(status.and_then(|s| s.code()), Some(0));

    let port = free_port();
    let mut broker = spawn_platform(dir.path(), port);
    assert!(verifier(port, &["show", "--uuid", &uuid(7)])
        .status
        .success());
    broker.kill().unwrap();
}

#[test]
fn a_second_platform_on_the_same_data_dir_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut first = spawn_platform(dir.path(), port);
    let config = dir.path().join("second.toml");
    std::fs::write(&config, platform_toml(free_port())).unwrap();
    let out = Command::new(BROKER)
        .args([
            "--config",
            config.to_str().unwrap(),
            "--data-dir",
            dir.path().to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("another verifier"), "{stderr}");
    first.kill().unwrap();
}

#[test]
fn registry_cli_exit_codes_and_json_and_kill_9_durability() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut broker = spawn_platform(dir.path(), port);
    // The gateways announce themselves just after the verifier is up.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = registry_cli(port, &["--json", "gateways"]);
        let text = String::from_utf8_lossy(&out.stdout);
        if text.matches("\"alive\": true").count() == 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "gateways did not come up: {text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = registry_cli(port, &["assign", "--device", "cli-1", "--gateway", "gw-1"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = registry_cli(port, &["remap", "--device", "cli-1", "--gateway", "gw-404"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown_gateway"));
    let out = registry_cli(port, &["remap", "--device", "cli-1", "--gateway", "gw-2"]);
    assert_eq!(out.status.code(), Some(0));
    let out = registry_cli(port, &["show", "--device", "nobody"]);
    assert_eq!(out.status.code(), Some(1));

    // Reported done, then SIGKILL: the assignment is still there.
    broker.kill().unwrap();
    let port = free_port();
    let mut broker = spawn_platform(dir.path(), port);
    let out = registry_cli(port, &["--json", "show", "--device", "cli-1"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("\"gateway_id\": \"gw-2\"") && text.contains("\"epoch\": 2"),
        "{text}"
    );
    broker.kill().unwrap();
}

/// Secrets at rest: whatever the platform writes in its data dir (sled's
/// files, the signing key, the credentials) is its owner's only.
#[cfg(unix)]
#[test]
fn the_data_dir_is_private_0700_and_its_files_0600() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = free_port();
    let config = dir.path().join("secure.toml");
    std::fs::write(
        &config,
        format!(
            "[platform]\nlisten = \"127.0.0.1:{port}\"\n\
             [metrics]\nlisten = \"127.0.0.1:0\"\n\
             [[gateways]]\nid = \"gw-1\"\nlisten = \"127.0.0.1:0\"\n"
        ),
    )
    .unwrap();
    let mut broker = spawn_broker(
        dir.path(),
        "platform",
        &[
            "--config",
            config.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
        ],
        "platform ready",
    );
    broker.sigterm().unwrap();
    broker.wait_exit(Duration::from_secs(15)).unwrap();
    fn walk(path: &std::path::Path, seen: &mut Vec<(std::path::PathBuf, u32, bool)>) {
        let meta = std::fs::symlink_metadata(path).unwrap();
        seen.push((
            path.to_owned(),
            meta.permissions().mode() & 0o777,
            meta.is_dir(),
        ));
        if meta.is_dir() {
            for entry in std::fs::read_dir(path).unwrap() {
                walk(&entry.unwrap().path(), seen);
            }
        }
    }
    let mut seen = Vec::new();
    walk(&data, &mut seen);
    assert!(seen.iter().any(|(p, _, _)| p.ends_with("platform.key")));
    assert!(seen.iter().any(|(p, _, _)| p.ends_with("ca.key")));
    assert!(
        seen.iter().any(|(p, _, _)| p.ends_with("conf")),
        "sled wrote nothing?"
    );
    for (path, mode, is_dir) in seen {
        let want = if is_dir { 0o700 } else { 0o600 };
        assert_eq!(mode, want, "{} is {mode:o}", path.display());
    }
}

/// A platform in the default secure mode on `port`, its data dir
/// `dir/data`: MQTT over TLS, its CA in `dir/data/ca.pem`.
fn spawn_secure_platform(dir: &Path, port: u16) -> harness::Proc {
    let config = dir.join("secure.toml");
    std::fs::write(
        &config,
        format!(
            "[platform]\nlisten = \"127.0.0.1:{port}\"\n\
             [metrics]\nlisten = \"127.0.0.1:0\"\n\
             [[gateways]]\nid = \"gw-1\"\nlisten = \"127.0.0.1:0\"\n"
        ),
    )
    .unwrap();
    let data = dir.join("data");
    spawn_broker(
        dir,
        "secure",
        &[
            "--config",
            config.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
        ],
        "platform ready",
    )
}

/// `program --broker 127.0.0.1:PORT args…` (with `--timeout 10` unless
/// `args` has one), run in `cwd`, with `env` set: (exit code, stdout,
/// stderr).
fn admin_cli(
    program: &str,
    cwd: &Path,
    env: &[(&str, &Path)],
    port: u16,
    args: &[&str],
) -> (Option<i32>, String, String) {
    let mut cmd = Command::new(sibling_bin(program));
    cmd.current_dir(cwd)
        .args(["--broker", &format!("127.0.0.1:{port}")])
        .args(args)
        .env_remove("PLATFORM_CAFILE")
        .env_remove("PLATFORM_PLAINTEXT");
    if !args.contains(&"--timeout") {
        cmd.args(["--timeout", "10"]);
    }
    for (var, value) in env {
        cmd.env(var, value);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The admin CLIs against the default secure mode, over TLS: run where
/// the platform's data dir is `data/`, they find its CA and the admin's
/// credential by themselves; elsewhere they are given the CA (`--cafile`
/// or PLATFORM_CAFILE). Without it, with another CA, or in plaintext, they
/// are not served, and say why.
#[test]
fn the_admin_clis_trust_the_platform_by_its_ca() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut broker = spawn_secure_platform(dir.path(), port);
    let data = dir.path().join("data");
    let ca = data.join("ca.pem");
    let admin_token = data.join("credentials").join("admin.token");
    assert!(ca.exists(), "no CA in the data dir");

    // Where the data dir is data/: the defaults.
    let (code, _, stderr) = admin_cli(
        "verifier",
        dir.path(),
        &[],
        port,
        &["enroll", "--uuid", &uuid(1), "--pass-tmp", "pt-1"],
    );
    assert_eq!(code, Some(0), "{stderr}");
    let (code, stdout, stderr) =
        admin_cli("registry", dir.path(), &[], port, &["--json", "gateways"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("\"gw-1\""), "{stdout}");

    // Elsewhere: the CA and the credential given.
    let elsewhere = tempfile::tempdir().unwrap();
    let given = [
        "--cafile",
        ca.to_str().unwrap(),
        "--password-file",
        admin_token.to_str().unwrap(),
    ];
    let enrolled = uuid(1);
    let show = |extra: &[&str], env: &[(&str, &Path)]| {
        let args = [extra, &["show", "--uuid", &enrolled][..]].concat();
        admin_cli("verifier", elsewhere.path(), env, port, &args)
    };
    let (code, _, stderr) = show(&given, &[]);
    assert_eq!(code, Some(0), "--cafile: {stderr}");
    let (code, _, stderr) = show(&given[2..], &[("PLATFORM_CAFILE", ca.as_path())]);
    assert_eq!(code, Some(0), "PLATFORM_CAFILE: {stderr}");
    let (code, _, stderr) = admin_cli(
        "registry",
        elsewhere.path(),
        &[],
        port,
        &[&given[..], &["gateways"]].concat(),
    );
    assert_eq!(code, Some(0), "registry --cafile: {stderr}");

    // No CA where the default points: the file is named, with the way out.
    let (code, _, stderr) = show(&given[2..], &[]);
    assert_ne!(code, Some(0), "served without a CA: {stderr}");
    assert!(
        stderr.contains("data/ca.pem") && stderr.contains("--cafile"),
        "{stderr}"
    );
    // Another CA: the platform did not prove who it is.
    let stranger = elsewhere.path().join("stranger.pem");
    std::fs::write(
        &stranger,
        tls::Ca::generate("a stranger's CA").unwrap().cert_pem(),
    )
    .unwrap();
    let (code, _, stderr) = show(
        &[
            "--cafile",
            stranger.to_str().unwrap(),
            "--password-file",
            admin_token.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(code, Some(3), "{stderr}");
    assert!(
        stderr.contains(&format!("127.0.0.1:{port}")) && stderr.contains("did not prove who it is"),
        "{stderr}"
    );
    // Plaintext to a TLS listener: no connection.
    let (code, _, stderr) = show(&["--plaintext", "--timeout", "2"], &[]);
    assert_eq!(code, Some(3), "{stderr}");
    assert!(stderr.contains("no connection"), "{stderr}");
    broker.kill().unwrap();
}

/// The admin CLIs, each with a command that needs the platform.
const ADMIN_CLIS: [(&str, &str); 2] = [("verifier", "list"), ("registry", "gateways")];

/// A loopback port nobody listens on.
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn an_unreachable_platform_exits_3_with_a_message_over_tls_and_plaintext() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    // A CA no platform uses: enough for a client to start TLS with, which
    // is all an unreachable platform lets it do.
    let some_ca = tls::Ca::generate("a CA no platform uses").unwrap();
    std::fs::write(&ca, some_ca.cert_pem()).unwrap();
    for (program, command) in ADMIN_CLIS {
        for transport in [&["--cafile", ca.to_str().unwrap()][..], &["--plaintext"]] {
            let args = [transport, &["--timeout", "1", command]].concat();
            let (code, _, stderr) = admin_cli(program, dir.path(), &[], closed_port(), &args);
            assert_eq!(code, Some(3), "{program} {args:?}: {stderr}");
            assert!(stderr.contains("no connection"), "{program}: {stderr}");
        }
    }
}

#[test]
fn a_missing_ca_file_is_named_with_the_way_out_and_exits_2() {
    // The default --cafile is data/ca.pem, relative to where it runs.
    let dir = tempfile::tempdir().unwrap();
    for (program, command) in ADMIN_CLIS {
        let args = ["--timeout", "1", command];
        let (code, _, stderr) = admin_cli(program, dir.path(), &[], closed_port(), &args);
        // An unreadable input file, as in every binary: not an outage.
        assert_eq!(code, Some(2), "{program}: {stderr}");
        for needed in ["data/ca.pem", "--cafile", "--plaintext"] {
            assert!(stderr.contains(needed), "{program}, {needed}: {stderr}");
        }
        assert!(!stderr.contains("panicked"), "{program}: {stderr}");
    }
}

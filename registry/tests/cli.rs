//! The `registry` admin CLI's contract with scripts: help and exit codes;
//! and `registry serve` as an operator starts it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;
use std::time::Duration;

const REGISTRY: &str = env!("CARGO_BIN_EXE_registry");

/// The platform, for a `registry serve` to connect to.
static BROKER: harness::WorkspaceBin =
    harness::WorkspaceBin::new("broker", "broker", "PLATFORM_BROKER_BIN");

const STARTUP: Duration = Duration::from_secs(60);

#[test]
fn help_lists_every_command() {
    let out = Command::new(REGISTRY).arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for cmd in [
        "assign", "remap", "drain", "undrain", "show", "gateways", "history", "serve", "--json",
    ] {
        assert!(text.contains(cmd), "--help does not mention {cmd}: {text}");
    }
}

#[test]
fn a_bad_command_line_exits_2() {
    let out = Command::new(REGISTRY)
        .args(["remap", "--device", "d"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn serve_without_walkthrough_is_the_secure_mode_and_needs_the_signing_key() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(REGISTRY)
        .args(["serve", "--plaintext", "--broker", "127.0.0.1:1"])
        .arg("--store")
        .arg(dir.path().join("registry"))
        .arg("--signing-key")
        .arg(dir.path().join("platform.key"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot read the signing key"), "{err}");
    assert!(err.contains("--walkthrough"), "{err}");
}

/// A walkthrough platform on a free port, its data and log under `dir`;
/// the address it serves MQTT on.
fn platform(dir: &Path) -> (harness::Proc, String) {
    let port = harness::free_port().unwrap();
    let data = dir.join("platform");
    std::fs::create_dir_all(&data).unwrap();
    let config = dir.join("platform.toml");
    std::fs::write(
        &config,
        format!(
            "[platform]\nlisten = \"127.0.0.1:{port}\"\n\
             [metrics]\nlisten = \"127.0.0.1:0\"\n\
             [[gateways]]\nid = \"gw-1\"\nlisten = \"127.0.0.1:0\"\n\
             [security]\nmode = \"walkthrough\"\n"
        ),
    )
    .unwrap();
    let mut broker = harness::Spawn::new(BROKER.path().unwrap())
        .arg("--config")
        .arg(&config)
        .arg("--data-dir")
        .arg(&data)
        .env("RUST_LOG", "info,rumqttd=off")
        .env("NO_COLOR", "1")
        .start(dir, "platform")
        .unwrap();
    broker.wait_for("platform ready", STARTUP).unwrap();
    (broker, format!("127.0.0.1:{port}"))
}

/// Secrets at rest, as with `broker`: a sled store dir left readable by
/// others, with a file in it, is tightened at start, and the files sled
/// then writes there are the owner's only.
#[cfg(unix)]
#[test]
fn serve_keeps_its_store_private_0700_and_its_files_0600() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let (_platform, broker) = platform(dir.path());
    let store = dir.path().join("data").join("registry");
    std::fs::create_dir_all(&store).unwrap();
    std::fs::write(store.join("left-over"), "from before").unwrap();
    std::fs::set_permissions(&store, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(
        store.join("left-over"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let mut registry = harness::Spawn::new(REGISTRY)
        .args(["serve", "--walkthrough", "--broker", &broker])
        .arg("--store")
        .arg(&store)
        .env("RUST_LOG", "warn,registry=info")
        .env("NO_COLOR", "1")
        .start(dir.path(), "registry")
        .unwrap();
    registry.wait_for("registry serving", STARTUP).unwrap();

    let mut seen = Vec::new();
    let mut todo = vec![store.clone()];
    while let Some(path) = todo.pop() {
        let meta = std::fs::symlink_metadata(&path).unwrap();
        if meta.is_dir() {
            for entry in std::fs::read_dir(&path).unwrap() {
                todo.push(entry.unwrap().path());
            }
        }
        seen.push((path, meta.permissions().mode() & 0o777, meta.is_dir()));
    }
    for name in ["left-over", "conf"] {
        assert!(
            seen.iter().any(|(p, _, _)| p.ends_with(name)),
            "no {name} in {seen:?}"
        );
    }
    for (path, mode, is_dir) in seen {
        let want = if is_dir { 0o700 } else { 0o600 };
        assert_eq!(mode, want, "{} is {mode:o}", path.display());
    }
    registry.sigterm().unwrap();
    registry.wait_exit(Duration::from_secs(20)).unwrap();
}

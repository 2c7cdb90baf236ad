//! The `verifier` admin CLI's contract with scripts: help and exit codes;
//! and `verifier serve` as an operator starts it: what it refuses to
//! start with, and what it leaves in its data dir.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

const VERIFIER: &str = env!("CARGO_BIN_EXE_verifier");

/// The platform, for a `verifier serve` to connect to.
static BROKER: harness::WorkspaceBin =
    harness::WorkspaceBin::new("broker", "broker", "PLATFORM_BROKER_BIN");

const STARTUP: Duration = Duration::from_secs(60);

#[test]
fn help_lists_every_command() {
    let out = Command::new(VERIFIER).arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for cmd in ["serve", "enroll", "import", "remove", "show", "list"] {
        assert!(text.contains(cmd), "--help does not mention {cmd}: {text}");
    }
}

#[test]
fn a_bad_command_line_exits_2() {
    let out = Command::new(VERIFIER)
        .args(["enroll", "--uuid"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn serve_without_walkthrough_is_the_secure_mode_and_needs_the_signing_key() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(VERIFIER)
        .args(["serve", "--plaintext", "--broker", "127.0.0.1:1"])
        .arg("--data-dir")
        .arg(dir.path())
        .arg("--signing-key")
        .arg(dir.path().join("platform.key"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot read the signing key"), "{err}");
    assert!(err.contains("--walkthrough"), "{err}");
}

#[test]
fn serve_refuses_a_store_that_is_not_postgres() {
    let out = Command::new(VERIFIER)
        .args(["serve", "--walkthrough", "--store", "mysql://x/y"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("postgres://"), "{err}");
}

/// `verifier serve --walkthrough` with `args`, against no broker: for what
/// it refuses before it connects.
fn serve_refused(data: &Path, args: &[&str]) -> Output {
    Command::new(VERIFIER)
        .args(["serve", "--walkthrough", "--broker", "127.0.0.1:1"])
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn serve_refuses_an_auth_listen_off_loopback_unless_told() {
    let dir = tempfile::tempdir().unwrap();
    for addr in ["0.0.0.0:8090", "192.0.2.1:8090", "[::]:8090"] {
        let out = serve_refused(dir.path(), &["--auth-listen", addr]);
        assert!(!out.status.success(), "{addr}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("is not a loopback address"), "{addr}: {err}");
        assert!(err.contains("--auth-listen-public"), "{addr}: {err}");
    }
    // Told: past the rule, to the bind. 192.0.2.1 (TEST-NET-1) is on no
    // interface here, so nothing listens off loopback.
    let out = serve_refused(
        dir.path(),
        &["--auth-listen", "192.0.2.1:0", "--auth-listen-public"],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot listen on 192.0.2.1:0"), "{err}");
    assert!(!err.contains("not a loopback"), "{err}");
    // The opt-in means nothing without an endpoint.
    let out = serve_refused(dir.path(), &["--auth-listen-public"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn serve_needs_a_usable_auth_secret_file_when_one_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("given.secret");
    let file_arg = file.to_str().unwrap();
    let args = [
        "--auth-listen",
        "127.0.0.1:0",
        "--auth-secret-file",
        file_arg,
    ];
    let out = serve_refused(&dir.path().join("data"), &args);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--auth-secret-file"), "{err}");
    assert!(!file.exists(), "a named file is not made");
    std::fs::write(&file, "guessable\n").unwrap();
    let out = serve_refused(&dir.path().join("data"), &args);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("shorter than 32 characters"), "{err}");
}

/// One POST to the HTTP auth endpoint at `addr`, with `auth` (header lines
/// ending in CRLF): the status code and the body.
fn post(addr: &str, auth: &str, body: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "POST /emqx/auth HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n{auth}\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    let (head, json) = reply.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, json.to_owned())
}

/// Every path under `root`, its mode and whether it is a directory.
#[cfg(unix)]
fn modes(root: &Path) -> Vec<(std::path::PathBuf, u32, bool)> {
    use std::os::unix::fs::PermissionsExt;
    let mut seen = Vec::new();
    let mut todo = vec![root.to_owned()];
    while let Some(path) = todo.pop() {
        let meta = std::fs::symlink_metadata(&path).unwrap();
        if meta.is_dir() {
            for entry in std::fs::read_dir(&path).unwrap() {
                todo.push(entry.unwrap().path());
            }
        }
        seen.push((path, meta.permissions().mode() & 0o777, meta.is_dir()));
    }
    seen
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

/// Secrets at rest, as with `broker`: a data dir left readable by others,
/// with a file in it, is tightened at start, and what `verifier serve`
/// writes there (sled's files, the store key, the HTTP auth secret it
/// makes on first start) is its owner's only. The secret made is the one
/// its endpoint then takes.
#[cfg(unix)]
#[test]
fn serve_keeps_its_data_dir_private_and_makes_the_http_auth_secret_there() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let (_platform, broker) = platform(dir.path());
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("left-over"), "from before").unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(
        data.join("left-over"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let auth = format!("127.0.0.1:{}", harness::free_port().unwrap());
    let admin = protocol::crypto::sha256_hex("ops password");
    let mut verifier = harness::Spawn::new(VERIFIER)
        .args(["serve", "--walkthrough", "--broker", &broker])
        .arg("--data-dir")
        .arg(&data)
        .args(["--auth-listen", &auth, "--admin", &format!("ops={admin}")])
        .env("RUST_LOG", "warn,verifier=info")
        .env("NO_COLOR", "1")
        .start(dir.path(), "verifier")
        .unwrap();
    verifier.wait_for("HTTP auth serving", STARTUP).unwrap();

    let secret_file = data.join("http-auth.secret");
    let log = std::fs::read_to_string(verifier.log()).unwrap();
    assert!(
        log.contains("HTTP auth secret created") && log.contains(secret_file.to_str().unwrap()),
        "{log}"
    );
    let secret = std::fs::read_to_string(&secret_file).unwrap();
    let secret = secret.trim();
    assert_eq!(secret.len(), 64, "32 random bytes, hex");
    let login = r#"{"clientid":"ops-1","username":"ops","password":"ops password"}"#;
    let (status, reply) = post(&auth, &format!("Authorization: Bearer {secret}\r\n"), login);
    assert_eq!(status, 200, "{reply}");
    assert!(reply.contains(r#""result":"allow""#), "{reply}");
    let (status, _) = post(&auth, "", login);
    assert_eq!(status, 401);

    let seen = modes(&data);
    for name in ["left-over", "http-auth.secret", "verifier.key", "conf"] {
        assert!(
            seen.iter().any(|(p, _, _)| p.ends_with(name)),
            "no {name} in {seen:?}"
        );
    }
    for (path, mode, is_dir) in seen {
        let want = if is_dir { 0o700 } else { 0o600 };
        assert_eq!(mode, want, "{} is {mode:o}", path.display());
    }
    verifier.sigterm().unwrap();
    verifier.wait_exit(Duration::from_secs(20)).unwrap();
}

//! The flow driven through the real `mosquitto_pub` / `mosquitto_sub`
//! binaries, exactly as the README walkthrough does it (walkthrough mode,
//! plaintext), and against the default secure mode, over TLS with the
//! platform's CA (`--cafile DATA_DIR/ca.pem`).

use platform_tests::*;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

fn mosquitto_available() {
    let found = Command::new("mosquitto_pub")
        .arg("--help")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    assert!(
        found.is_ok(),
        "mosquitto_pub not found: install Debian's mosquitto-clients (apt-get install -y mosquitto-clients)"
    );
}

/// Publishes `request` with mosquitto_pub until mosquitto_sub, subscribed
/// to `response_topic`, prints an answer; returns that line. Re-publishing
/// covers the moment before mosquitto_sub's SUBACK, without sleeping.
fn request_by_hand(p: &TestPlatform, response_topic: &str, request: &str) -> String {
    let port = p.addr.port().to_string();
    let sub = Command::new("mosquitto_sub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-u",
            "me",
            "-q",
            "1",
            "-C",
            "1",
            "-W",
            "20",
            "-t",
            response_topic,
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = sub.id();
    let deadline = Instant::now() + Duration::from_secs(20);
    let output = std::thread::spawn(move || sub.wait_with_output().unwrap());
    while !output.is_finished() && Instant::now() < deadline {
        let status = Command::new("mosquitto_pub")
            .args(["-h", "127.0.0.1", "-p", &port, "-u", "me", "-q", "1"])
            .args(["-t", &protocol::topics::access_request(SSID), "-m", request])
            .status()
            .unwrap();
        assert!(status.success(), "mosquitto_pub failed");
        std::thread::sleep(Duration::from_millis(300));
    }
    let out = output.join().unwrap();
    assert!(
        out.status.success(),
        "mosquitto_sub (pid {pid}) got no answer"
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn onboarding_by_hand_with_mosquitto_clients() {
    mosquitto_available();
    let p = TestPlatform::start().await;
    let uuid = new_uuid();
    p.enroll(&uuid, "hunter2").await;
    let stop = CancellationToken::new();
    let _ap = p.start_ap(p.ap_config("ap-m", true), &stop).await;
    let topic = protocol::topics::access_response(&uuid);

    let ok = format!(r#"{{"uuid":"{uuid}","ssid":"{SSID}","pass_tmp":"hunter2"}}"#);
    let p2 = &p;
    let line = tokio::task::block_in_place(|| request_by_hand(p2, &topic, &ok));
    assert_eq!(
        line.trim(),
        format!(r#"{{"uuid":"{uuid}","ssid":"{SSID}","password":"{WIFI_PASSWORD}"}}"#)
    );

    let wrong = format!(r#"{{"uuid":"{uuid}","ssid":"{SSID}","pass_tmp":"guess"}}"#);
    let line = tokio::task::block_in_place(|| request_by_hand(p2, &topic, &wrong));
    assert!(line.contains(r#""code":"pass_tmp_mismatch""#), "{line}");
    assert!(!line.contains("password"), "{line}");

    let stranger = new_uuid();
    let unknown = format!(r#"{{"uuid":"{stranger}","ssid":"{SSID}","pass_tmp":"x"}}"#);
    let topic = protocol::topics::access_response(&stranger);
    let line = tokio::task::block_in_place(|| request_by_hand(p2, &topic, &unknown));
    assert!(line.contains(r#""code":"unknown_device""#), "{line}");
    stop.cancel();
}

/// The platform's CA file, which mosquitto clients are given with
/// `--cafile` when the platform serves TLS.
fn cafile(p: &TestPlatform) -> String {
    protocol::layout::ca_file(p.dir.path())
        .to_str()
        .unwrap()
        .to_owned()
}

/// `--cafile` and the platform's CA, when it serves TLS.
fn tls_args(p: &TestPlatform) -> Vec<String> {
    match p.tls() {
        Some(_) => vec!["--cafile".into(), cafile(p)],
        None => Vec::new(),
    }
}

/// `mosquitto_sub -d` with `args`, to its end (at most 10 s): what it
/// printed, stdout and stderr.
fn mosquitto_sub_debug(p: &TestPlatform, args: &[&str]) -> String {
    let port = p.addr.port().to_string();
    let out = Command::new("mosquitto_sub")
        .args(["-d", "-h", "127.0.0.1", "-p", &port, "-t", "x", "-C", "1"])
        .args(["-W", "10"])
        .args(tls_args(p))
        .args(args)
        .output()
        .unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_sub_prints_why_it_was_refused() {
    mosquitto_available();
    let p = TestPlatform::start_config(
        secure_test_config(),
        broker::StartOptions { broker_only: true },
    )
    .await;
    let admin = p.token("admin");
    let uuid = new_uuid();
    let p2 = &p;
    for (args, code, why) in [
        (
            vec!["-u", "admin", "-P", "wrong"],
            "CONNACK (4)",
            "a wrong password",
        ),
        (
            vec!["-u", "admin", "-P", &admin, "-i", &uuid],
            "CONNACK (5)",
            "a role user with a device's id",
        ),
        (vec![], "CONNACK (5)", "no login in secure mode"),
        (
            vec!["-u", "admin", "-P", &admin, "-i", "a+b"],
            "CONNACK (2)",
            "a client id with +",
        ),
    ] {
        let printed = tokio::task::block_in_place(|| mosquitto_sub_debug(p2, &args));
        assert!(printed.contains(code), "{why}: expected {code}:\n{printed}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn walkthrough_mode_needs_no_username() {
    mosquitto_available();
    let p = TestPlatform::start_with(broker::StartOptions { broker_only: true }).await;
    let port = p.addr.port().to_string();
    let topic = protocol::topics::device_confirm(&new_uuid());
    let got = tokio::task::block_in_place(|| {
        publish_until_received(&topic, "no -u needed", &[], |_| {
            vec!["-h", "127.0.0.1", "-p", &port]
        })
    });
    assert_eq!(got, "no -u needed", "mosquitto without -u");
}

/// mosquitto_sub on `topic` with `login` (at `target(0)`), and
/// mosquitto_pub of `message` with `login` to each `target(i)` in turn,
/// until mosquitto_sub prints it (it may not have subscribed yet); what it
/// printed.
fn publish_until_received<'a>(
    topic: &str,
    message: &str,
    login: &[&str],
    target: impl Fn(usize) -> Vec<&'a str>,
) -> String {
    let sub = Command::new("mosquitto_sub")
        .args(target(0))
        .args(["-q", "1", "-C", "1", "-W", "20", "-t", topic])
        .args(login)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = sub.id();
    let output = std::thread::spawn(move || sub.wait_with_output().unwrap());
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut i = 0;
    while !output.is_finished() && Instant::now() < deadline {
        let to = target(i);
        let args = [&to[..], login, &["-q", "1", "-t", topic, "-m", message]].concat();
        let (code, printed) = run("mosquitto_pub", &args);
        assert_eq!(code, Some(0), "mosquitto_pub {to:?}: {printed}");
        i += 1;
        std::thread::sleep(Duration::from_millis(300));
    }
    let out = output.join().unwrap();
    assert!(
        out.status.success(),
        "mosquitto_sub (pid {pid}) got nothing"
    );
    let printed = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert_eq!(printed, message);
    printed
}

/// `program args…` to its end: (exit code, stdout and stderr).
fn run(program: &str, args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), printed)
}

/// The default secure mode, by hand: an admin's mosquitto_sub and
/// mosquitto_pub, given the platform's CA, talk to the platform over TLS,
/// by its address or by `localhost` (which the certificate names too).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_clients_with_the_platforms_ca_talk_over_tls() {
    mosquitto_available();
    let p = TestPlatform::start_config(
        secure_test_config(),
        broker::StartOptions { broker_only: true },
    )
    .await;
    assert!(p.tls().is_some(), "the default mode serves TLS");
    let port = p.addr.port().to_string();
    let (ca, admin) = (cafile(&p), p.token("admin"));
    let topic = protocol::topics::ap_prompt("ap-1");
    let login = ["-u", "admin", "-P", &admin, "--cafile", &ca];
    tokio::task::block_in_place(|| {
        publish_until_received(&topic, "over TLS", &login, |i| {
            let host = ["127.0.0.1", "localhost"][i % 2];
            vec!["-h", host, "-p", &port]
        })
    });
}

/// A mosquitto client without the platform's CA gets nothing from a TLS
/// listener: without --cafile it speaks plaintext, and its CONNECT is
/// answered with nothing and the connection closed; trusting another CA,
/// it refuses the platform's certificate. The listener counts both, and
/// still serves a client with the right CA.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_clients_without_the_platforms_ca_get_nothing_over_tls() {
    mosquitto_available();
    let p = TestPlatform::start_config(
        secure_test_config(),
        broker::StartOptions { broker_only: true },
    )
    .await;
    let metrics = p.metrics_addr().unwrap();
    let failures = |reason: &str| {
        format!(r#"platform_tls_handshake_failures_total{{broker="platform",reason="{reason}"}}"#)
    };
    let before = crate::metrics::scrape(metrics).await;
    let count = |text: &str, reason: &str| crate::metrics::value(text, &failures(reason)).unwrap();
    let port = p.addr.port().to_string();
    let admin = p.token("admin");
    let stranger = p.dir.path().join("stranger-ca.pem");
    std::fs::write(
        &stranger,
        tls::Ca::generate("a stranger's CA").unwrap().cert_pem(),
    )
    .unwrap();
    let stranger = stranger.to_str().unwrap();
    let target = ["-h", "127.0.0.1", "-p", &port, "-u", "admin", "-P", &admin];
    let publish = |extra: &[&str]| {
        let args = [&target[..], extra, &["-t", "x/y", "-m", "m"]].concat();
        tokio::task::block_in_place(|| run("mosquitto_pub", &args))
    };

    // Plaintext: no CONNACK, the connection closed.
    let (code, printed) = publish(&[]);
    assert_ne!(
        code,
        Some(0),
        "a plaintext mosquitto_pub published: {printed}"
    );
    let args = [&target[..], &["-d", "-t", "x/y", "-C", "1", "-W", "3"]].concat();
    let (code, printed) = tokio::task::block_in_place(|| run("mosquitto_sub", &args));
    assert_ne!(code, Some(0), "{printed}");
    assert!(printed.contains("sending CONNECT"), "{printed}");
    assert!(!printed.contains("received CONNACK"), "{printed}");
    // Another CA: the client will not have the platform's certificate.
    let (code, printed) = publish(&["--cafile", stranger]);
    assert_ne!(code, Some(0), "published trusting another CA: {printed}");
    assert!(printed.contains("TLS error"), "{printed}");

    // Counted by the listener (an alert, a moment after the client left).
    let (not_tls, alert) = (failures("not_tls"), failures("alert"));
    crate::metrics::wait_for_at_least(
        metrics,
        &[
            (&not_tls, count(&before, "not_tls") + 2.0),
            (&alert, count(&before, "alert") + 1.0),
        ],
    )
    .await;
    let (code, printed) = publish(&["--cafile", &cafile(&p)]);
    assert_eq!(code, Some(0), "with the platform's CA: {printed}");
}

/// T26, by hand: a server holding gateway gw-9's certificate and key (as
/// its operator does) where the platform is looked for. `mosquitto_pub`
/// given the platform's CA refuses it, by `localhost` or by `127.0.0.1`,
/// and sends it no login.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t26_mosquitto_clients_do_not_take_a_gateways_certificate_for_the_platform() {
    mosquitto_available();
    let p = TestPlatform::start_config(secure_test_config(), broker::StartOptions::default()).await;
    let gw9 = crate::transport::issued_gateway_certificate(&p).await;
    let impostor = crate::transport::Impostor::serve(&gw9.chain_pem, &gw9.key_pem).await;
    let (ca, admin) = (cafile(&p), p.token("admin"));
    let port = impostor.addr.port().to_string();
    for host in ["localhost", "127.0.0.1"] {
        let args = [
            "-h", host, "-p", &port, "--cafile", &ca, "-u", "admin", "-P", &admin, "-t", "x/y",
            "-m", "m",
        ];
        let (code, printed) = tokio::task::block_in_place(|| run("mosquitto_pub", &args));
        assert_ne!(
            code,
            Some(0),
            "mosquitto_pub -h {host} took gw-9's certificate for the platform's: {printed}"
        );
        assert!(
            printed.contains("TLS error") || printed.contains("certificate verify failed"),
            "{printed}"
        );
    }
    assert!(!impostor.heard(&admin), "the admin's token went to gw-9");
}

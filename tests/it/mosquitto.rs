//! The flow driven through the real `mosquitto_pub` / `mosquitto_sub`
//! binaries, exactly as the README walkthrough does it.

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

/// `mosquitto_sub -d` with `args`, to its end (at most 10 s): what it
/// printed, stdout and stderr.
fn mosquitto_sub_debug(p: &TestPlatform, args: &[&str]) -> String {
    let port = p.addr.port().to_string();
    let out = Command::new("mosquitto_sub")
        .args(["-d", "-h", "127.0.0.1", "-p", &port, "-t", "x", "-C", "1"])
        .args(["-W", "10"])
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
    let sub = Command::new("mosquitto_sub")
        .args(["-h", "127.0.0.1", "-p", &port, "-q", "1", "-C", "1"])
        .args(["-W", "20", "-t", &topic])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = sub.id();
    let output = std::thread::spawn(move || sub.wait_with_output().unwrap());
    // Re-published until mosquitto_sub has it: it may not have subscribed
    // yet.
    let deadline = Instant::now() + Duration::from_secs(20);
    tokio::task::block_in_place(|| {
        while !output.is_finished() && Instant::now() < deadline {
            let status = Command::new("mosquitto_pub")
                .args(["-h", "127.0.0.1", "-p", &port, "-q", "1"])
                .args(["-t", &topic, "-m", "no -u needed"])
                .status()
                .unwrap();
            assert!(status.success(), "mosquitto_pub without -u failed");
            std::thread::sleep(Duration::from_millis(300));
        }
    });
    let out = output.join().unwrap();
    assert!(
        out.status.success(),
        "mosquitto_sub (pid {pid}) without -u got nothing"
    );
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim(),
        "no -u needed"
    );
}

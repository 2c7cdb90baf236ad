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

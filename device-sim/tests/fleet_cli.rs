//! The `device-sim manifest` and `device-sim fleet` commands as a user runs
//! them: two fleet processes, each with its slice of one manifest, against
//! one platform, each writing its report as text, JSON and SVG.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use platform_tests::*;
use std::process::Command;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const DEVICE_SIM: &str = env!("CARGO_BIN_EXE_device-sim");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_fleet_processes_share_one_manifest_and_report() {
    let p = TestPlatform::start().await;
    let stop = CancellationToken::new();
    let _ap = p.start_ap(p.ap_config("ap-1", true), &stop).await;
    let dir = p.dir.path();
    let manifest = dir.join("fleet.csv");

    let out = Command::new(DEVICE_SIM)
        .args(["manifest", "--count", "12", "--seed", "9", "--out"])
        .arg(&manifest)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    for d in device_sim::manifest::read(&manifest).unwrap() {
        p.enroll(&d.uuid, &d.pass_tmp).await;
    }

    let fleets: Vec<_> = (1..=2)
        .map(|i| {
            let mut cmd = tokio::process::Command::new(DEVICE_SIM);
            cmd.args([
                "fleet",
                "--walkthrough",
                "--ssid",
                SSID,
                "--auto-confirm",
                "--duration",
                "0s",
            ])
            .args(["--broker", &p.broker(), "--slice", &format!("{i}/2")])
            .arg("--manifest")
            .arg(&manifest)
            .arg("--json")
            .arg(dir.join(format!("r{i}.json")))
            .arg("--plot")
            .arg(dir.join(format!("r{i}.svg")))
            .kill_on_drop(true);
            cmd.output()
        })
        .collect();
    for (i, fleet) in fleets.into_iter().enumerate() {
        let out = tokio::time::timeout(Duration::from_secs(60), fleet)
            .await
            .expect("a fleet process did not finish")
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains("fleet report: 6 devices"), "{stdout}");
        assert!(stdout.contains("connected 6  failed 0"), "{stdout}");
        let n = i + 1;
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join(format!("r{n}.json"))).unwrap())
                .unwrap();
        assert_eq!(json["devices"], 6);
        assert_eq!(json["connected"], 6);
        assert_eq!(json["latency"]["end_to_end"]["count"], 6);
        let svg = std::fs::read_to_string(dir.join(format!("r{n}.svg"))).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("Latency by phase (6 devices)"));
    }
}

/// The default secure mode: a fleet process trusts the platform by its
/// CA (`--cafile`), and its devices onboard and reach their gateways over
/// TLS; without the CA it stops before connecting, naming the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_process_onboards_over_tls_with_the_platforms_ca() {
    let p = TestPlatform::start_config(secure_test_config(), Default::default()).await;
    assert!(p.tls().is_some(), "the default mode serves TLS");
    let stop = CancellationToken::new();
    let _ap = p.start_ap(p.ap_config("ap-1", true), &stop).await;
    let dir = p.dir.path();
    let manifest = dir.join("fleet.csv");
    let devices = device_sim::manifest::generate(6, 11);
    device_sim::manifest::write(&manifest, &devices).unwrap();
    for d in &devices {
        p.enroll(&d.uuid, &d.pass_tmp).await;
    }
    let fleet = |cwd: &std::path::Path, extra: &[&std::ffi::OsStr]| {
        let mut cmd = tokio::process::Command::new(DEVICE_SIM);
        cmd.current_dir(cwd)
            .args([
                "fleet",
                "--ssid",
                SSID,
                "--auto-confirm",
                "--duration",
                "0s",
            ])
            .args(["--broker", &p.broker()])
            .arg("--manifest")
            .arg(&manifest)
            .arg("--platform-key-file")
            .arg(protocol::layout::public_key_file(dir))
            .args(extra)
            .env_remove("PLATFORM_CAFILE")
            .kill_on_drop(true);
        cmd.output()
    };
    let ca = protocol::layout::ca_file(dir);
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        fleet(dir, &["--cafile".as_ref(), ca.as_os_str()]),
    )
    .await
    .expect("the fleet process did not finish")
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("connected 6  failed 0"), "{stdout}");

    // Where no data/ca.pem is, and none given: a usage error naming it.
    let elsewhere = tempfile::tempdir().unwrap();
    let out = tokio::time::timeout(Duration::from_secs(60), fleet(elsewhere.path(), &[]))
        .await
        .expect("the fleet process did not finish")
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("data/ca.pem"), "{stderr}");
    stop.cancel();
}

#[test]
fn a_bad_manifest_or_slice_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.csv");
    std::fs::write(&bad, "uuid,pass_tmp\nnot-a-uuid,x\n").unwrap();
    let out = Command::new(DEVICE_SIM)
        .args(["fleet", "--ssid", "s", "--manifest"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 2"), "{err}");

    let out = Command::new(DEVICE_SIM)
        .args(["fleet", "--ssid", "s", "--slice", "3/2", "--manifest"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("1 <= I <= N"));
}

//! `device_sim::fleet`: small fleets against a real platform, with the
//! report's counts, phases, JSON and plot checked.

use device_sim::fleet::{self, FleetConfig, FleetStats};
use device_sim::manifest::{self, Identity};
use platform_tests::*;
use protocol::registry_admin::{RegistryOk, RegistryOp};
use std::collections::HashSet;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

fn fleet_config(p: &TestPlatform, devices: Vec<Identity>) -> FleetConfig {
    let mut config = p.fleet_config(devices);
    config.concurrency = 8;
    config.answer_timeout = Duration::from_secs(20);
    config.hold = Some(Duration::ZERO);
    config
}

async fn enroll_all(p: &TestPlatform, devices: &[Identity]) {
    for d in devices {
        p.enroll(&d.uuid, &d.pass_tmp).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_report_counts_every_outcome_and_phase() {
    let p = TestPlatform::start().await;
    let stop = CancellationToken::new();
    let _ap = p.start_ap(p.ap_config("ap-1", true), &stop).await;
    let devices = manifest::generate(30, 42);
    // 26 enrolled as generated, 3 with another pass_tmp, 1 not at all.
    enroll_all(&p, &devices[..26]).await;
    for d in &devices[26..29] {
        p.enroll(&d.uuid, "not-what-the-device-has").await;
    }

    let stats = FleetStats::new(devices.len());
    let report = tokio::time::timeout(
        Duration::from_secs(60),
        fleet::run(fleet_config(&p, devices), stats, CancellationToken::new()),
    )
    .await
    .expect("the fleet did not settle");

    assert_eq!(report.devices, 30);
    assert_eq!(
        (report.joined, report.connected, report.failed),
        (26, 26, 4)
    );
    assert_eq!(
        report.errors.get("pass_tmp_mismatch"),
        Some(&3),
        "{:?}",
        report.errors
    );
    assert_eq!(
        report.errors.get("unknown_device"),
        Some(&1),
        "{:?}",
        report.errors
    );
    assert_eq!(report.errors.values().sum::<u64>(), 4);
    for phase in ["access", "query", "connect", "end_to_end"] {
        let l = &report.latency[phase];
        assert!(l.count >= 26, "{phase}: {l:?}");
        assert!(
            l.p50_ms > 0.0 && l.p50_ms <= l.p90_ms && l.p90_ms <= l.p99_ms && l.p99_ms <= l.max_ms,
            "{phase}: {l:?}"
        );
    }
    assert_eq!(report.latency["end_to_end"].count, 26);
    assert_eq!(
        report.on_gateway.values().sum::<u64>(),
        26,
        "{:?}",
        report.on_gateway
    );
    assert!(report.throughput_per_s > 0.0);
    assert!(report.peak_rss_bytes.is_some_and(|b| b > 1 << 20));

    let text = report.to_string();
    assert!(
        text.contains("joined 26  assigned 26  connected 26  failed 4"),
        "{text}"
    );
    assert!(text.contains("failed with pass_tmp_mismatch: 3"), "{text}");

    let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
    assert_eq!(json["connected"], 26);
    assert_eq!(json["errors"]["unknown_device"], 1);
    assert_eq!(json["latency"]["end_to_end"]["count"], 26);
    assert!(json["latency"]["query"]["p99_ms"].as_f64().unwrap() > 0.0);

    let svg = p.dir.path().join("fleet.svg");
    report.plot_svg(&svg).unwrap();
    let drawn = std::fs::read_to_string(&svg).unwrap();
    assert!(drawn.starts_with("<svg"), "not an SVG");
    for label in [
        "Latency by phase (30 devices)",
        "end_to_end p50",
        "Devices connected over time",
    ] {
        assert!(drawn.contains(label), "{label:?} missing from the plot");
    }
    // The timeline has one point per connected device, plus the origin.
    assert_eq!(report.completions.len(), 26);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slices_of_one_manifest_run_side_by_side() {
    let p = TestPlatform::start().await;
    let stop = CancellationToken::new();
    let _ap = p.start_ap(p.ap_config("ap-1", true), &stop).await;
    let devices = manifest::generate(20, 7);
    enroll_all(&p, &devices).await;

    let runs: Vec<_> = (1..=2)
        .map(|i| {
            let slice = manifest::slice(&devices, i, 2).to_vec();
            tokio::spawn(fleet::run(
                fleet_config(&p, slice.clone()),
                FleetStats::new(slice.len()),
                CancellationToken::new(),
            ))
        })
        .collect();
    let mut connected = Vec::new();
    for run in runs {
        let report = tokio::time::timeout(Duration::from_secs(60), run)
            .await
            .expect("a fleet did not settle")
            .unwrap();
        connected.push(report.connected);
    }
    assert_eq!(connected, [10, 10]);

    let registry = p.registry().await;
    let mut assigned = HashSet::new();
    for d in &devices {
        if let RegistryOk::Assignment(a) = registry
            .request(RegistryOp::Show {
                device_id: d.uuid.clone(),
            })
            .await
            .unwrap()
        {
            assigned.insert(a.device_id);
        }
    }
    assert_eq!(
        assigned.len(),
        20,
        "every device of both slices has a gateway"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixed_fleet_follows_a_drain_and_counts_the_moves() {
    let p = TestPlatform::start().await;
    let stop = CancellationToken::new();
    let _ap = p.start_ap(p.ap_config("ap-1", true), &stop).await;
    let devices = manifest::generate(24, 11);
    enroll_all(&p, &devices).await;

    let mut config = fleet_config(&p, devices);
    config.hold = None;
    // Half MQTT 5 (moved by DISCONNECT), half 3.1.1 (by notice).
    config.mqtt = vec![bus::MqttVersion::V311, bus::MqttVersion::V5];
    let stats = FleetStats::new(24);
    let fleet_stop = CancellationToken::new();
    let task = tokio::spawn(fleet::run(config, stats.clone(), fleet_stop.clone()));
    assert!(
        stats
            .wait_until(Duration::from_secs(60), |s| s.settled())
            .await
    );
    let on_gw1 = stats.on_gateway("gw-1");
    assert_eq!(on_gw1 + stats.on_gateway("gw-2"), 24);
    assert!(on_gw1 > 0, "the hashed policy put nobody on gw-1");

    let registry = p.registry().await;
    registry
        .request(RegistryOp::Drain {
            gateway_id: "gw-1".into(),
            to: Some("gw-2".into()),
            limit: 1000,
        })
        .await
        .unwrap();
    assert!(
        stats
            .wait_until(Duration::from_secs(30), |s| s.on_gateway("gw-2") == 24)
            .await,
        "not all devices reached gw-2: {:?}",
        stats.snapshot()
    );
    fleet_stop.cancel();
    let report = task.await.unwrap();
    assert_eq!(report.moves, on_gw1);
    assert_eq!(report.redirects, on_gw1);
    assert_eq!(report.failed, 0);
    assert_eq!(report.latency["move"].count, on_gw1);
}

//! A gateway process killed with SIGKILL while devices sit on it: every
//! device ends up on a live gateway, and the dead one cannot be chosen.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use bus::BusOptions;
use device_sim::gateway::{stay_homed, HomeConfig, HomeEvent};
use protocol::registry_admin::{RegistryErrorCode, RegistryOk, RegistryOp};
use registry::{RegistryClient, RegistryClientError};

use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

mod common;

use common::{free_port, platform_toml, spawn_broker};
/// Devices on the gateway that dies. FAILOVER_DEVICES raises it for a
/// measurement run (`cargo test --release -p broker --test failover -- --nocapture`).
fn device_count() -> usize {
    std::env::var("FAILOVER_DEVICES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(30)
}

async fn gateway_alive(client: &RegistryClient, id: &str) -> bool {
    match client.request(RegistryOp::Gateways).await.unwrap() {
        RegistryOk::Gateways { gateways } => gateways.iter().any(|g| g.gateway_id == id && g.alive),
        _ => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_of_a_killed_gateway_fail_over() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let platform_addr = format!("127.0.0.1:{port}");
    let config = dir.path().join("p.toml");
    std::fs::write(&config, platform_toml(port)).unwrap();
    let mut platform = spawn_broker(
        dir.path(),
        "platform",
        &[
            "--config",
            config.to_str().unwrap(),
            "--data-dir",
            dir.path().to_str().unwrap(),
        ],
        "platform ready",
    );
    let gw_listen = format!("127.0.0.1:{}", free_port());
    let mut gateway = spawn_broker(
        dir.path(),
        "gw-9",
        &[
            "gateway",
            "--id",
            "gw-9",
            "--listen",
            &gw_listen,
            "--platform",
            &platform_addr,
            "--walkthrough",
        ],
        "gateway listening",
    );

    let opts = BusOptions::new(&platform_addr, "failover-admin").unwrap();
    let client = RegistryClient::connect(opts, Duration::from_secs(10))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !gateway_alive(&client, "gw-9").await {
        assert!(Instant::now() < deadline, "gw-9 never came up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let devices = device_count();
    let stop = CancellationToken::new();
    let (tx, mut events) = mpsc::unbounded_channel();
    for n in 0..devices {
        let id = format!("fo-{n}");
        client
            .request(RegistryOp::Assign {
                device_id: id.clone(),
                gateway_id: "gw-9".into(),
            })
            .await
            .unwrap();
        let config = HomeConfig::new(&platform_addr, &id);
        let tx = tx.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let (dtx, mut drx) = mpsc::unbounded_channel();
            let relay = tokio::spawn(async move {
                while let Some(e) = drx.recv().await {
                    let _ = tx.send((id.clone(), e));
                }
            });
            let _ = stay_homed(&config, &dtx, &stop).await;
            drop(dtx);
            let _ = relay.await;
        });
    }
    let mut on_gw9 = std::collections::HashSet::new();
    while on_gw9.len() < devices {
        let (id, e) = tokio::time::timeout(Duration::from_secs(20), events.recv())
            .await
            .unwrap()
            .unwrap();
        if matches!(e, HomeEvent::Connected { ref gateway_id, .. } if gateway_id == "gw-9") {
            on_gw9.insert(id);
        }
    }

    gateway.kill().unwrap();
    let killed = Instant::now();
    let mut rehomed = std::collections::HashMap::new();
    while rehomed.len() < devices {
        let (id, e) = tokio::time::timeout(Duration::from_secs(30), events.recv())
            .await
            .expect("devices did not all fail over")
            .unwrap();
        if let HomeEvent::Connected { gateway_id, .. } = e {
            assert_ne!(gateway_id, "gw-9", "{id} was sent back to the dead gateway");
            rehomed.insert(id, gateway_id);
        }
    }
    eprintln!(
        "{devices} devices re-homed {:.0} ms after SIGKILL of gw-9",
        killed.elapsed().as_secs_f64() * 1000.0
    );
    assert!(rehomed.values().all(|g| g == "gw-1" || g == "gw-2"));

    // The dead gateway is a clear error for an admin, and changes nothing.
    match client
        .request(RegistryOp::Remap {
            device_id: "fo-0".into(),
            gateway_id: "gw-9".into(),
        })
        .await
    {
        Err(RegistryClientError::Refused(body)) => {
            assert_eq!(body.code, RegistryErrorCode::GatewayDead)
        }
        other => panic!("{other:?}"),
    }
    match client
        .request(RegistryOp::Show {
            device_id: "fo-0".into(),
        })
        .await
        .unwrap()
    {
        RegistryOk::Assignment(a) => assert_eq!(Some(&a.gateway_id), rehomed.get("fo-0")),
        other => panic!("{other:?}"),
    }
    stop.cancel();
    client.close().await;
    platform.kill().unwrap();
}

//! Gateway assignment: allocation, remap with redirect, refusal of a moved
//! offline device, drain, persistence, bad input.

use broker::StartOptions;
use device_sim::gateway::{HomeEvent, KnownGateway};
use platform_tests::*;
use protocol::gateway::{GatewayAnswer, GatewayErrorCode, GatewayQuery};
use protocol::registry_admin::{RegistryErrorCode, RegistryOk, RegistryOp};
use protocol::{decode, topics};
use registry::{Policy, RegistryClientError};

async fn show(p: &TestPlatform, device: &str) -> (String, u64) {
    let client = p.registry().await;
    let ok = client
        .request(RegistryOp::Show {
            device_id: device.into(),
        })
        .await
        .unwrap();
    client.close().await;
    match ok {
        RegistryOk::Assignment(a) => (a.gateway_id, a.epoch),
        other => panic!("{other:?}"),
    }
}

fn refused_code(r: Result<RegistryOk, RegistryClientError>) -> RegistryErrorCode {
    match r {
        Err(RegistryClientError::Refused(body)) => body.code,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn hashed_policy_assigns_stably_and_the_device_connects() {
    let p = TestPlatform::start().await;
    let mut dev = p.home("dev-hashed-1", None);
    let (gw, from) = dev.connected(10).await;
    assert_eq!(from, None);
    let candidates = [
        registry::policy::Candidate {
            gateway_id: "gw-1",
            weight: 1,
            assigned: 0,
        },
        registry::policy::Candidate {
            gateway_id: "gw-2",
            weight: 1,
            assigned: 0,
        },
    ];
    assert_eq!(
        Some(gw.as_str()),
        Policy::Hashed.choose("dev-hashed-1", &candidates)
    );
    assert_eq!(show(&p, "dev-hashed-1").await, (gw, 1));
    dev.stop.cancel();
}

#[tokio::test]
async fn least_loaded_policy_balances() {
    let mut config = test_config();
    config.registry.policy = Policy::LeastLoaded;
    let p = TestPlatform::start_config(config, StartOptions::default()).await;
    let mut counts = std::collections::HashMap::new();
    for n in 0..6 {
        let mut dev = p.home(&format!("ll-{n}"), None);
        let (gw, _) = dev.connected(10).await;
        *counts.entry(gw).or_insert(0) += 1;
        dev.stop.cancel();
    }
    assert_eq!(counts.get("gw-1"), Some(&3), "{counts:?}");
    assert_eq!(counts.get("gw-2"), Some(&3), "{counts:?}");
}

#[tokio::test]
async fn static_policy_answers_unassigned_until_an_admin_assigns() {
    let mut config = test_config();
    config.registry.policy = Policy::Static;
    let p = TestPlatform::start_config(config, StartOptions::default()).await;
    let mut dev = p.home("static-1", None);
    let refused = dev
        .until(10, |e| matches!(e, HomeEvent::QueryRefused { .. }))
        .await;
    assert!(
        matches!(
            refused,
            HomeEvent::QueryRefused {
                code: GatewayErrorCode::Unassigned,
                ..
            }
        ),
        "{refused:?}"
    );
    let client = p.registry().await;
    client
        .request(RegistryOp::Assign {
            device_id: "static-1".into(),
            gateway_id: "gw-2".into(),
        })
        .await
        .unwrap();
    // The device retries with backoff and lands where the admin put it.
    assert_eq!(dev.connected(15).await.0, "gw-2");
    dev.stop.cancel();
}

#[tokio::test]
async fn unknown_devices_are_refused_when_configured() {
    let mut config = test_config();
    config.registry.allow_unknown = false;
    let p = TestPlatform::start_config(config, StartOptions::default()).await;
    let (bus, mut inbox, _t) = p.client(&[topics::device_gateway("stranger")]).await;
    bus.publish_json(
        topics::REGISTRY_QUERY,
        &GatewayQuery {
            device_id: "stranger".into(),
            device_key: None,
        },
    )
    .await
    .unwrap();
    match decode::<GatewayAnswer>(&next_message(&mut inbox, 5).await.payload).unwrap() {
        GatewayAnswer::Refused(r) => assert_eq!(r.error.code, GatewayErrorCode::Unassigned),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn remap_of_a_connected_device_redirects_it() {
    let p = TestPlatform::start().await;
    let mut dev = p.home("remap-1", None);
    let (first, _) = dev.connected(10).await;
    let target = other_gateway(&first);
    let client = p.registry().await;
    let ok = client
        .request(RegistryOp::Remap {
            device_id: "remap-1".into(),
            gateway_id: target.into(),
        })
        .await
        .unwrap();
    assert!(
        matches!(ok, RegistryOk::Assignment(ref a) if a.changed && a.epoch == 2),
        "{ok:?}"
    );
    // The notice carried the assignment: the device went straight to its
    // new gateway, without asking the registry.
    dev.moves_without_asking(&first, target, 2).await;
    // The history shows both steps.
    match client
        .request(RegistryOp::History {
            device_id: "remap-1".into(),
        })
        .await
        .unwrap()
    {
        RegistryOk::History { entries, .. } => {
            assert_eq!(
                entries
                    .iter()
                    .map(|e| e.reason.as_str())
                    .collect::<Vec<_>>(),
                ["policy", "remap"]
            );
        }
        other => panic!("{other:?}"),
    }
    dev.stop.cancel();
}

#[tokio::test]
async fn a_device_moved_while_offline_is_refused_by_its_old_gateway_and_moves() {
    let p = TestPlatform::start().await;
    let mut dev = p.home("offline-1", None);
    let known = match dev
        .until(10, |e| matches!(e, HomeEvent::Connected { .. }))
        .await
    {
        HomeEvent::Connected {
            gateway_id,
            address,
            epoch,
            ..
        } => KnownGateway {
            gateway_id,
            address,
            epoch,
            token: None,
        },
        _ => unreachable!(),
    };
    dev.stop.cancel();
    dev.task.await.unwrap().unwrap();

    let target = other_gateway(&known.gateway_id);
    let client = p.registry().await;
    client
        .request(RegistryOp::Remap {
            device_id: "offline-1".into(),
            gateway_id: target.into(),
        })
        .await
        .unwrap();

    // Back online, it tries the gateway it remembers first.
    let mut dev = p.home("offline-1", Some(known.clone()));
    let refused = dev
        .until(10, |e| matches!(e, HomeEvent::Refused { .. }))
        .await;
    assert!(
        matches!(refused, HomeEvent::Refused { ref gateway_id, .. } if *gateway_id == known.gateway_id),
        "{refused:?}"
    );
    let (now, _) = dev.connected(10).await;
    assert_eq!(now, target);
    dev.stop.cancel();
}

#[tokio::test]
async fn drain_moves_every_device_and_refuses_new_ones() {
    let p = TestPlatform::start().await;
    let client = p.registry().await;
    let mut devices = Vec::new();
    for n in 0..20 {
        let id = format!("drain-{n}");
        client
            .request(RegistryOp::Assign {
                device_id: id.clone(),
                gateway_id: "gw-1".into(),
            })
            .await
            .unwrap();
        let mut dev = p.home(&id, None);
        assert_eq!(dev.connected(10).await.0, "gw-1");
        devices.push(dev);
    }
    let report = client
        .request(RegistryOp::Drain {
            gateway_id: "gw-1".into(),
            to: None,
            limit: 7,
        })
        .await
        .unwrap();
    assert!(
        matches!(report, RegistryOk::Drained(ref r) if r.moved == 7 && r.remaining == 13),
        "{report:?}"
    );
    loop {
        match client
            .request(RegistryOp::Drain {
                gateway_id: "gw-1".into(),
                to: Some("gw-2".into()),
                limit: 7,
            })
            .await
            .unwrap()
        {
            RegistryOk::Drained(r) if r.remaining == 0 => break,
            RegistryOk::Drained(_) => {}
            other => panic!("{other:?}"),
        }
    }
    for dev in &mut devices {
        assert_eq!(
            dev.connected(10).await,
            ("gw-2".to_string(), Some("gw-1".to_string()))
        );
    }
    // A draining gateway takes no new devices.
    let mut fresh = p.home("after-drain", None);
    assert_eq!(fresh.connected(10).await.0, "gw-2");
    match client.request(RegistryOp::Gateways).await.unwrap() {
        RegistryOk::Gateways { gateways } => {
            let gw1 = gateways.iter().find(|g| g.gateway_id == "gw-1").unwrap();
            assert!(gw1.draining && gw1.assigned == 0, "{gw1:?}");
        }
        other => panic!("{other:?}"),
    }
    for dev in devices.iter().chain(std::iter::once(&fresh)) {
        dev.stop.cancel();
    }
}

#[tokio::test]
async fn assignments_survive_a_restart() {
    let mut p = TestPlatform::start().await;
    let client = p.registry().await;
    client
        .request(RegistryOp::Assign {
            device_id: "keep-1".into(),
            gateway_id: "gw-2".into(),
        })
        .await
        .unwrap();
    client
        .request(RegistryOp::Remap {
            device_id: "keep-1".into(),
            gateway_id: "gw-1".into(),
        })
        .await
        .unwrap();
    client.close().await;
    p.restart().await;
    assert_eq!(show(&p, "keep-1").await, ("gw-1".to_string(), 2));
    let mut dev = p.home("keep-1", None);
    assert_eq!(dev.connected(10).await.0, "gw-1");
    dev.stop.cancel();
}

#[tokio::test]
async fn bad_input_and_bad_targets_change_nothing() {
    let p = TestPlatform::start().await;
    let client = p.registry().await;
    client
        .request(RegistryOp::Assign {
            device_id: "bad-1".into(),
            gateway_id: "gw-1".into(),
        })
        .await
        .unwrap();

    assert_eq!(
        refused_code(
            client
                .request(RegistryOp::Remap {
                    device_id: "bad-1".into(),
                    gateway_id: "gw-404".into()
                })
                .await
        ),
        RegistryErrorCode::UnknownGateway
    );
    assert_eq!(
        refused_code(
            client
                .request(RegistryOp::Remap {
                    device_id: "nobody".into(),
                    gateway_id: "gw-2".into()
                })
                .await
        ),
        RegistryErrorCode::NotFound
    );
    assert_eq!(
        refused_code(
            client
                .request(RegistryOp::Assign {
                    device_id: "bad-1".into(),
                    gateway_id: "gw-2".into()
                })
                .await
        ),
        RegistryErrorCode::AlreadyAssigned
    );
    assert_eq!(
        refused_code(
            client
                .request(RegistryOp::Assign {
                    device_id: "a/b#".into(),
                    gateway_id: "gw-2".into()
                })
                .await
        ),
        RegistryErrorCode::BadRequest
    );
    assert_eq!(show(&p, "bad-1").await, ("gw-1".to_string(), 1));

    // A refused drain leaves the gateway open.
    assert_eq!(
        refused_code(
            client
                .request(RegistryOp::Drain {
                    gateway_id: "gw-1".into(),
                    to: Some("gw-1".into()),
                    limit: 10
                })
                .await
        ),
        RegistryErrorCode::BadRequest
    );
    match client.request(RegistryOp::Gateways).await.unwrap() {
        RegistryOk::Gateways { gateways } => {
            assert!(gateways.iter().all(|g| !g.draining), "{gateways:?}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        refused_code(
            client
                .request(RegistryOp::Assign {
                    device_id: "gateway-agent".into(),
                    gateway_id: "gw-1".into()
                })
                .await
        ),
        RegistryErrorCode::BadRequest
    );

    // Malformed queries get bad_request where the device id is usable, and
    // a flood of garbage on every registry topic crashes nothing.
    let (bus, mut inbox, _t) = p.client(&[topics::device_gateway("dev-x")]).await;
    bus.publish(
        topics::REGISTRY_QUERY,
        br#"{"device_id":"dev-x","extra":{"deep":[[[[1]]]]},"n":"#.to_vec(),
    )
    .await
    .unwrap();
    bus.publish(topics::REGISTRY_QUERY, br#"{"device_id":5}"#.to_vec())
        .await
        .unwrap();
    bus.publish(
        topics::REGISTRY_QUERY,
        br#"{"device_id":"dev-x","bogus":1}"#.to_vec(),
    )
    .await
    .unwrap();
    match decode::<GatewayAnswer>(&next_message(&mut inbox, 5).await.payload).unwrap() {
        GatewayAnswer::Assigned(a) => assert_eq!(a.device_id, "dev-x"),
        other => panic!("unknown fields are tolerated: {other:?}"),
    }
    for topic in [
        topics::REGISTRY_QUERY.to_string(),
        topics::REGISTRY_SYNC.to_string(),
        topics::REGISTRY_ADMIN_REQUEST.to_string(),
        topics::gateway_status("gw-1"),
        topics::gateway_presence("gw-1"),
        topics::gateway_assign("gw-1"),
        topics::gateway_notify("gw-1"),
    ] {
        for i in 0..200 {
            let junk: Vec<u8> = match i % 4 {
                0 => Vec::new(),
                1 => vec![0xff, 0x00, 0xfe],
                2 => b"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[".to_vec(),
                _ => br#"{"gateway_id":"gw-1","alive":"yes","device_id":[1],"add":"x"}"#.to_vec(),
            };
            bus.publish(topic.clone(), junk).await.unwrap();
        }
    }
    assert_eq!(show(&p, "bad-1").await, ("gw-1".to_string(), 1));
    let mut dev = p.home("bad-1", None);
    assert_eq!(dev.connected(10).await.0, "gw-1");
    dev.stop.cancel();
}

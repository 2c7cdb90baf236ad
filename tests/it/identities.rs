//! Issue 12: every AP, gateway and device is its own identity. Each attack
//! is tried with the credential of one AP, of one gateway, or with none,
//! against the secure default mode; docs/SECURITY.md names these tests in
//! its threat table (T10–T20).

use platform_tests::*;
use protocol::gateway::{GatewayAnswer, GatewayStatus, PresenceReport};
use protocol::logins::{ap_login, gateway_login};
use protocol::registry_admin::{RegistryOk, RegistryOp};
use protocol::topics;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

async fn secure() -> TestPlatform {
    TestPlatform::start_config(secure_test_config(), broker::StartOptions::default()).await
}

async fn gateways(p: &TestPlatform) -> Vec<protocol::registry_admin::GatewayView> {
    let registry = p.registry().await;
    let RegistryOk::Gateways { gateways } = registry.request(RegistryOp::Gateways).await.unwrap()
    else {
        panic!("not a gateway list")
    };
    registry.close().await;
    gateways
}

/// T11: an AP's credential cannot confirm another AP's prompt, nor read
/// it; the AP's own identity (its user's session) and an admin can.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t11_an_ap_cannot_read_or_confirm_another_aps_prompt() {
    let p = secure().await;
    let stop = CancellationToken::new();
    let victim = p.ap_config("ap-victim", false);
    let _victim = p.start_ap(victim, &stop).await;
    let mut rogue = p.ap_config("ap-rogue", false);
    rogue.networks[0].ssid = "rogue-wifi".into();
    let rogue_credential = p.register_ap(&rogue).await;
    let rogue_user = ap_login("ap-rogue");

    let reads = Session::open(
        &p,
        &rogue_user,
        &rogue_user,
        &rogue_credential,
        &[topics::ap_prompt("ap-victim")],
    )
    .await;
    assert!(reads.ready.is_err(), "another AP's prompts were readable");
    drop(reads);
    let writer = Session::open(&p, &rogue_user, &rogue_user, &rogue_credential, &[]).await;
    writer.ready.clone().unwrap();
    writer
        .bus
        .publish(
            topics::ap_confirm("ap-victim"),
            format!(r#"{{"uuid":"{}","accept":true}}"#, new_uuid()).into_bytes(),
        )
        .await
        .unwrap();
    assert!(
        writer.cut_off(5).await,
        "an AP confirmed another AP's prompt"
    );
    // Its own prompts it may answer, as its user's session.
    let own = Session::open(
        &p,
        &format!("{rogue_user}.phone"),
        &rogue_user,
        &rogue_credential,
        &[topics::ap_prompt("ap-rogue")],
    )
    .await;
    own.ready.clone().unwrap();
    own.bus
        .publish(
            topics::ap_confirm("ap-rogue"),
            br#"{"uuid":"x","accept":false}"#.to_vec(),
        )
        .await
        .unwrap();
    assert!(!own.cut_off(2).await, "an AP may confirm its own prompts");
    stop.cancel();
}

/// T12: one gateway's credential cannot announce another gateway, nor move
/// its own address: the registry keeps the registered addresses, and
/// signs assignments only to them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t12_a_gateway_cannot_rewrite_any_gateways_address() {
    let p = secure().await;
    p.wait_gateways_alive(2).await;
    let before = gateways(&p).await;
    let credential = p.register_gateway("gw-evil", "127.0.0.1:9").await;
    let user = gateway_login("gw-evil");
    let evil = "203.0.113.66:1883";
    for (target, what) in [("gw-2", "another gateway"), ("gw-evil", "its own")] {
        let s = Session::open(&p, &user, &user, &credential, &[]).await;
        s.ready.clone().unwrap();
        let status = GatewayStatus {
            gateway_id: target.into(),
            alive: true,
            address: Some(evil.into()),
            weight: Some(1000),
        };
        s.bus
            .publish_json(topics::gateway_status(target), &status)
            .await
            .unwrap();
        if target == "gw-2" {
            assert!(s.cut_off(5).await, "{what}'s status was publishable");
        } else {
            // Its own status is allowed; its claims are not believed.
            assert!(!s.cut_off(1).await);
        }
    }
    // Nothing the registry tells changed, and no answer names the address.
    let after = gateways(&p).await;
    for g in &after {
        assert_ne!(g.address, evil, "{} moved to the attacker", g.gateway_id);
    }
    for g in &before {
        let now = after.iter().find(|a| a.gateway_id == g.gateway_id).unwrap();
        assert_eq!((&now.address, now.weight), (&g.address, g.weight));
    }
    let evil_now = after.iter().find(|g| g.gateway_id == "gw-evil").unwrap();
    assert_eq!(evil_now.address, "127.0.0.1:9");
    // With the attacker's gateway removed, devices are sent to the
    // registered gateways, at their registered addresses.
    let registry = p.registry().await;
    registry
        .request(RegistryOp::GatewayRemove {
            gateway_id: "gw-evil".into(),
        })
        .await
        .unwrap();
    registry.close().await;
    let uuid = new_uuid();
    p.enroll(&uuid, "pass-tmp-1").await;
    let mut device = p.home_secure(&uuid, "pass-tmp-1");
    let (gw, _) = device.connected(10).await;
    assert!(before.iter().any(|g| g.gateway_id == gw), "{gw}");
    device.stop.cancel();
}

/// T18: a device asks the registry only for itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t18_a_device_queries_the_registry_only_for_itself() {
    let p = secure().await;
    let me = new_uuid();
    let other = new_uuid();
    p.enroll(&me, "pass-me-1").await;
    p.enroll(&other, "pass-other-1").await;
    let login = protocol::crypto::device_login(&me, "pass-me-1");
    let s = Session::open(&p, &me, &me, &login, &[topics::device_gateway(&me)]).await;
    s.ready.clone().unwrap();
    s.bus
        .publish(
            topics::REGISTRY_QUERY,
            format!(r#"{{"device_id":"{other}"}}"#).into_bytes(),
        )
        .await
        .unwrap();
    assert!(s.cut_off(5).await, "a device asked for another device");
    let registry = p.registry().await;
    assert!(
        registry
            .request(RegistryOp::Show {
                device_id: other.clone()
            })
            .await
            .is_err(),
        "a gateway was allocated to a device that did not ask"
    );
    registry.close().await;
    // For itself it is answered.
    let mut s = Session::open(&p, &me, &me, &login, &[topics::device_gateway(&me)]).await;
    s.ready.clone().unwrap();
    s.bus
        .publish(
            topics::REGISTRY_QUERY,
            format!(r#"{{"device_id":"{me}"}}"#).into_bytes(),
        )
        .await
        .unwrap();
    let answer = next_message(&mut s.inbox, 10).await;
    let answer: GatewayAnswer = protocol::decode(&answer.payload).unwrap();
    assert!(matches!(answer, GatewayAnswer::Assigned(_)), "{answer:?}");
}

/// T19: a gateway's presence reports are believed only about valid ids of
/// devices assigned to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t19_made_up_presence_changes_nothing() {
    let p = secure().await;
    p.wait_gateways_alive(2).await;
    let credential = p.register_gateway("gw-chatty", "127.0.0.1:9").await;
    let user = gateway_login("gw-chatty");
    let s = Session::open(&p, &user, &user, &credential, &[]).await;
    s.ready.clone().unwrap();
    let report = PresenceReport {
        online: (0..1000)
            .map(|i| format!("made-up-{i}"))
            .chain(["bad/id".to_owned(), "#".to_owned()])
            .collect(),
        offline: Vec::new(),
    };
    s.bus
        .publish_json(topics::gateway_presence("gw-chatty"), &report)
        .await
        .unwrap();
    assert!(!s.cut_off(1).await);
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    while std::time::Instant::now() < deadline {
        let chatty = gateways(&p)
            .await
            .into_iter()
            .find(|g| g.gateway_id == "gw-chatty")
            .unwrap();
        assert_eq!(chatty.connected, 0, "made-up devices counted as connected");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// T20: nobody takes another identity's client id, an admin included: a
/// worker's, an AP's, a gateway's, a device's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t20_no_login_takes_another_identitys_client_id() {
    let p = secure().await;
    let admin = p.token("admin");
    let ap = p.token("ap/ap-1");
    let gw_credential = p.register_gateway("gw-x", "127.0.0.1:9").await;
    let uuid = new_uuid();
    for (client_id, user, password) in [
        ("registry", "admin", admin.as_str()),
        ("verifier", "admin", &admin),
        ("gateway.gw-1", "admin", &admin),
        ("ap.ap-1", "admin", &admin),
        (uuid.as_str(), "admin", &admin),
        ("registry", "ap.ap-1", &ap),
        ("ap.ap-2", "ap.ap-1", &ap),
        ("gateway.gw-1", "gateway.gw-x", &gw_credential),
    ] {
        let s = Session::open(&p, client_id, user, password, &[]).await;
        let refusal = s.ready.clone().unwrap_err();
        assert!(
            refusal.contains("NotAuthorized"),
            "{user} as {client_id}: {refusal}"
        );
    }
    // The platform's own clients are still serving.
    let registry = p.registry().await;
    registry.request(RegistryOp::Gateways).await.unwrap();
    registry.close().await;
}

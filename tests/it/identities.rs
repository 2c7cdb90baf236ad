//! Issue 12: every AP, gateway and device is its own identity. Each attack
//! is tried with the credential of one AP, of one gateway, or with none,
//! against the secure default mode; docs/SECURITY.md names these tests in
//! its threat table (T10–T22).

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

/// Device `me`, logged in with `key` and listening for its gateway
/// answers, that has asked the registry for `device_id`'s gateway.
async fn querying(
    p: &TestPlatform,
    key: &protocol::crypto::DeviceKey,
    me: &str,
    device_id: &str,
) -> Session {
    let s = Session::open(
        p,
        me,
        me,
        &device_token(key, me),
        &[topics::device_gateway(me)],
    )
    .await;
    s.ready.clone().unwrap();
    s.bus
        .publish(
            topics::REGISTRY_QUERY,
            format!(r#"{{"device_id":"{device_id}"}}"#).into_bytes(),
        )
        .await
        .unwrap();
    s
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
    let mut device = p.home_secure(&uuid).await;
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
    let key = p.device_key(&me).await;
    let s = querying(&p, &key, &me, &other).await;
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
    let mut s = querying(&p, &key, &me, &me).await;
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
    // Reports at the cap (each id is checked), and one over it (dropped).
    let cap = protocol::gateway::MAX_PRESENCE_IDS;
    for chunk in 0..2 {
        let online = (0..cap - 2)
            .map(|i| format!("made-up-{chunk}-{i}"))
            .chain(["bad/id".to_owned(), "#".to_owned()])
            .collect();
        report(&s, "gw-chatty", online, Vec::new()).await;
    }
    let over_cap = (0..=cap).map(|i| format!("made-up-{i}")).collect();
    report(&s, "gw-chatty", over_cap, Vec::new()).await;
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

/// Logs in as registered gateway `gateway_id` and says it is alive.
async fn gateway_session(p: &TestPlatform, gateway_id: &str, credential: &str) -> Session {
    let user = gateway_login(gateway_id);
    let s = Session::open(p, &user, &user, credential, &[]).await;
    s.ready.clone().unwrap();
    let status = GatewayStatus {
        gateway_id: gateway_id.into(),
        alive: true,
        address: None,
        weight: None,
    };
    s.bus
        .publish_json(topics::gateway_status(gateway_id), &status)
        .await
        .unwrap();
    s
}

async fn report(s: &Session, gateway_id: &str, online: Vec<String>, offline: Vec<String>) {
    s.bus
        .publish_json(
            topics::gateway_presence(gateway_id),
            &PresenceReport { online, offline },
        )
        .await
        .unwrap();
}

/// Waits until the registry counts `n` devices connected to each gateway.
async fn wait_connected(p: &TestPlatform, want: &[(&str, u64)]) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let now = gateways(p).await;
        let got: Vec<(&str, u64)> = want
            .iter()
            .map(|(gw, _)| {
                let g = now.iter().find(|g| g.gateway_id == *gw);
                (*gw, g.map_or(0, |g| g.connected))
            })
            .collect();
        if got == want {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "connected {got:?}, expected {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn show(p: &TestPlatform, device_id: &str) -> protocol::registry_admin::AssignmentView {
    let registry = p.registry().await;
    let op = RegistryOp::Show {
        device_id: device_id.into(),
    };
    let RegistryOk::Assignment(view) = registry.request(op).await.unwrap() else {
        panic!("not an assignment")
    };
    registry.close().await;
    view
}

/// The record counts of the stopped platform's registry store.
fn registry_counts(p: &TestPlatform) -> registry::store::RecordCounts {
    registry::Store::open(&p.dir.path().join("registry"))
        .unwrap()
        .counts()
}

/// T19, offline: a gateway's offline reports, with thousands of made-up
/// ids, add nothing to the registry's store and change no real device's
/// record, its own or another gateway's; a report longer than the cap is
/// dropped whole. Each report is audited once and counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t19_made_up_offline_presence_grows_nothing() {
    let mut p = secure().await;
    let honest_credential = p.register_gateway("gw-honest", "127.0.0.1:9").await;
    let chatty_credential = p.register_gateway("gw-chatty", "127.0.0.1:10").await;
    // Two real devices, each assigned to one of the gateways and reported
    // online by it.
    let (victim, own) = (new_uuid(), new_uuid());
    {
        let honest = gateway_session(&p, "gw-honest", &honest_credential).await;
        let chatty = gateway_session(&p, "gw-chatty", &chatty_credential).await;
        p.wait_gateways_alive(4).await;
        let registry = p.registry().await;
        for (device, gw) in [(&victim, "gw-honest"), (&own, "gw-chatty")] {
            let op = RegistryOp::Assign {
                device_id: device.clone(),
                gateway_id: gw.into(),
            };
            registry.request(op).await.unwrap();
        }
        registry.close().await;
        report(&honest, "gw-honest", vec![victim.clone()], Vec::new()).await;
        report(&chatty, "gw-chatty", vec![own.clone()], Vec::new()).await;
        wait_connected(&p, &[("gw-honest", 1), ("gw-chatty", 1)]).await;
    }
    p.stop().await;
    let before = registry_counts(&p);
    assert_eq!(before.last_seen, 2, "{before:?}");
    p.restart().await;

    // The registry forgot who is connected: the gateways say it again.
    let honest = gateway_session(&p, "gw-honest", &honest_credential).await;
    let chatty = gateway_session(&p, "gw-chatty", &chatty_credential).await;
    report(&honest, "gw-honest", vec![victim.clone()], Vec::new()).await;
    report(&chatty, "gw-chatty", vec![own.clone()], Vec::new()).await;
    wait_connected(&p, &[("gw-honest", 1), ("gw-chatty", 1)]).await;
    let victim_before = show(&p, &victim).await;

    // Made-up ids, another gateway's device and garbage, in reports at
    // the cap; then one report over it.
    const REPORTS: usize = 8;
    let cap = protocol::gateway::MAX_PRESENCE_IDS;
    for _ in 0..REPORTS {
        let offline = (0..cap - 3)
            .map(|_| new_uuid())
            .chain([victim.clone(), "bad/id".into(), "#".into()])
            .collect();
        report(&chatty, "gw-chatty", Vec::new(), offline).await;
    }
    let over_cap = (0..=cap).map(|_| new_uuid()).collect();
    report(&chatty, "gw-chatty", Vec::new(), over_cap).await;
    // Its own device leaving is believed; the registry takes one
    // gateway's reports in order, so every report before it was handled.
    report(&chatty, "gw-chatty", Vec::new(), vec![own.clone()]).await;
    wait_connected(&p, &[("gw-honest", 1), ("gw-chatty", 0)]).await;
    assert!(!chatty.cut_off(1).await);
    let metrics = crate::metrics::scrape(p.metrics_addr().unwrap()).await;
    drop(honest);
    drop(chatty);

    p.stop().await;
    let after = registry_counts(&p);
    assert_eq!(after, before, "the registry's store grew");
    p.restart().await;
    assert_eq!(show(&p, &victim).await, victim_before);
    let own_seen = show(&p, &own).await.last_seen.unwrap();
    assert_eq!(
        (own_seen.gateway_id.as_str(), own_seen.online),
        ("gw-chatty", false)
    );
    let value = |series: &str| crate::metrics::value(&metrics, series);
    assert_eq!(
        value("platform_presence_ids_ignored_total"),
        Some((REPORTS * cap) as f64)
    );
    for (reason, n) in [
        ("too_many_ids", 1.0),
        ("rate_limited", 0.0),
        ("malformed", 0.0),
    ] {
        assert_eq!(
            value(&format!(
                r#"platform_presence_reports_dropped_total{{reason="{reason}"}}"#
            )),
            Some(n),
            "{reason}"
        );
    }
}

/// T19, floods: a gateway's presence reports beyond its rate (a burst,
/// then so many a second) are dropped unread and counted; the flood costs
/// no other gateway its reports, and the gateway is heard again once its
/// rate allows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t19_a_presence_flood_is_rate_limited_per_gateway() {
    let p = secure().await;
    let honest_credential = p.register_gateway("gw-honest", "127.0.0.1:9").await;
    let chatty_credential = p.register_gateway("gw-chatty", "127.0.0.1:10").await;
    let honest = gateway_session(&p, "gw-honest", &honest_credential).await;
    let chatty = gateway_session(&p, "gw-chatty", &chatty_credential).await;
    p.wait_gateways_alive(4).await;
    let (victim, own) = (new_uuid(), new_uuid());
    let registry = p.registry().await;
    for (device, gw) in [(&victim, "gw-honest"), (&own, "gw-chatty")] {
        let op = RegistryOp::Assign {
            device_id: device.clone(),
            gateway_id: gw.into(),
        };
        registry.request(op).await.unwrap();
    }
    registry.close().await;
    // Five bursts' worth, sent far faster than the rate refills them.
    for _ in 0..5000 {
        report(&chatty, "gw-chatty", Vec::new(), Vec::new()).await;
    }
    let addr = p.metrics_addr().unwrap();
    crate::metrics::wait_for_at_least(
        addr,
        &[(
            r#"platform_presence_reports_dropped_total{reason="rate_limited"}"#,
            1.0,
        )],
    )
    .await;
    report(&honest, "gw-honest", vec![victim.clone()], Vec::new()).await;
    wait_connected(&p, &[("gw-honest", 1)]).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        report(&chatty, "gw-chatty", vec![own.clone()], Vec::new()).await;
        if gateways(&p)
            .await
            .iter()
            .any(|g| g.gateway_id == "gw-chatty" && g.connected == 1)
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the gateway was never heard again"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
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

/// T14: strangers failing a device's logins lock nothing out. A login is a
/// token signed by the device's own key: a wrong one is refused (CONNACK
/// 4) and counts toward nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t14_strangers_failing_logins_lock_no_device_out() {
    let p = secure().await;
    let uuid = new_uuid();
    p.enroll(&uuid, "pass-tmp-1").await;
    let key = p.device_key(&uuid).await;
    for i in 0..10 {
        let s = Session::open(&p, &uuid, &uuid, &format!("wrong-{i}"), &[]).await;
        assert!(
            s.ready
                .as_ref()
                .unwrap_err()
                .contains("BadUserNamePassword"),
            "{:?}",
            s.ready
        );
    }
    let s = Session::open(&p, &uuid, &uuid, &device_token(&key, &uuid), &[]).await;
    s.ready.clone().expect("the device itself was locked out");
}

/// T15: a device login leaves nothing to test offline (it is a signature
/// by the device's own key, not a function of pass_tmp), and a captured
/// one cannot be replayed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t15_a_captured_device_login_cannot_be_replayed() {
    let p = secure().await;
    let uuid = new_uuid();
    p.enroll(&uuid, "pass-tmp-1").await;
    let key = p.device_key(&uuid).await;
    let token = device_token(&key, &uuid);
    assert!(!token.contains("pass-tmp-1"));
    let first = Session::open(&p, &uuid, &uuid, &token, &[]).await;
    first.ready.clone().unwrap();
    drop(first);
    let replay = Session::open(&p, &uuid, &uuid, &token, &[]).await;
    assert!(
        replay
            .ready
            .as_ref()
            .unwrap_err()
            .contains("BadUserNamePassword"),
        "a replayed token was accepted: {:?}",
        replay.ready
    );
}

/// T16: before it is onboarded a device connects with no credential, on a
/// session of its own (`UUID.SESSION`), and may only onboard; a second
/// connection with the same client id does not kick off the first, and a
/// stranger's session for the same UUID holds nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t16_an_onboarding_device_is_confined_and_not_kicked_off() {
    let p = secure().await;
    let uuid = new_uuid();
    p.enroll(&uuid, "pass-tmp-1").await;
    let onboarding = protocol::logins::ONBOARDING_USER;
    let session = protocol::logins::onboarding_client_id(&uuid);
    let first = Session::open(
        &p,
        &session,
        onboarding,
        "",
        &[topics::access_response(&uuid)],
    )
    .await;
    first.ready.clone().unwrap();
    let second = Session::open(&p, &session, onboarding, "", &[]).await;
    assert!(
        second.ready.as_ref().unwrap_err().contains("NotAuthorized"),
        "{:?}",
        second.ready
    );
    assert!(
        !first.cut_off(1).await,
        "the onboarding device was kicked off"
    );
    // Another session for the same UUID, in another case: its own.
    let other = protocol::logins::onboarding_client_id(&uuid.to_ascii_uppercase());
    let beside = Session::open(&p, &other, onboarding, "", &[]).await;
    beside.ready.clone().unwrap();
    // It may not ask the registry, nor read its gateway answers.
    first
        .bus
        .publish(
            topics::REGISTRY_QUERY,
            format!(r#"{{"device_id":"{uuid}"}}"#).into_bytes(),
        )
        .await
        .unwrap();
    assert!(
        first.cut_off(5).await,
        "an onboarding device queried the registry"
    );
    drop(first);
    let reads = Session::open(
        &p,
        &protocol::logins::onboarding_client_id(&uuid),
        onboarding,
        "",
        &[topics::device_gateway(&uuid)],
    )
    .await;
    assert!(
        reads.ready.is_err(),
        "an onboarding device read its gateway answers"
    );
    // The bare UUID is the onboarded device's own client id: refused.
    let bare = Session::open(&p, &uuid, onboarding, "", &[]).await;
    assert!(bare
        .ready
        .as_ref()
        .unwrap_err()
        .contains("BadUserNamePassword"));
    // Not enrolled: admitted all the same, so that nobody learns which
    // UUIDs are enrolled (its proof fails as a wrong pass_tmp does:
    // trust::an_unknown_uuid_looks_like_a_wrong_pass_tmp).
    let stranger = protocol::logins::onboarding_client_id(&new_uuid());
    let s = Session::open(&p, &stranger, onboarding, "", &[]).await;
    s.ready.clone().unwrap();
}

/// T10: each identity has its own credential, and removing the identity
/// refuses that credential from the next CONNECT on (CONNACK 4), while
/// the other identities keep theirs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t10_a_removed_identity_is_refused_from_then_on() {
    let p = secure().await;
    let ap = p.ap_config("ap-leaving", false);
    let ap_credential = p.register_ap(&ap).await;
    let ap_user = ap_login("ap-leaving");
    let gw_credential = p.register_gateway("gw-leaving", "127.0.0.1:9").await;
    let gw_user = gateway_login("gw-leaving");
    let uuid = new_uuid();
    p.enroll(&uuid, "pass-tmp-1").await;
    let key = p.device_key(&uuid).await;

    let ap_in = Session::open(&p, &ap_user, &ap_user, &ap_credential, &[]).await;
    ap_in.ready.clone().unwrap();
    let gw_in = Session::open(&p, &gw_user, &gw_user, &gw_credential, &[]).await;
    gw_in.ready.clone().unwrap();
    let device_in = Session::open(&p, &uuid, &uuid, &device_token(&key, &uuid), &[]).await;
    device_in.ready.clone().unwrap();
    // One identity's credential is not another's.
    let swapped = Session::open(&p, "ap.ap-1", "ap.ap-1", &ap_credential, &[]).await;
    assert!(
        swapped
            .ready
            .as_ref()
            .unwrap_err()
            .contains("BadUserNamePassword"),
        "{:?}",
        swapped.ready
    );
    drop((ap_in, gw_in, device_in, swapped));

    let admin = p.admin().await;
    admin
        .request(protocol::admin::AdminOp::ApRemove {
            ap_id: "ap-leaving".into(),
        })
        .await
        .unwrap();
    admin
        .request(protocol::admin::AdminOp::RevokeKey { uuid: uuid.clone() })
        .await
        .unwrap();
    admin.close().await;
    let registry = p.registry().await;
    registry
        .request(RegistryOp::GatewayRemove {
            gateway_id: "gw-leaving".into(),
        })
        .await
        .unwrap();
    registry.close().await;

    for (client_id, user, password) in [
        (ap_user.as_str(), ap_user.as_str(), ap_credential),
        (gw_user.as_str(), gw_user.as_str(), gw_credential),
        (uuid.as_str(), uuid.as_str(), device_token(&key, &uuid)),
    ] {
        let s = Session::open(&p, client_id, user, &password, &[]).await;
        assert!(
            s.ready
                .as_ref()
                .is_err_and(|e| e.contains("BadUserNamePassword")),
            "{user} was let in after its removal: {:?}",
            s.ready
        );
    }
    // The bootstrap AP still logs in with its own credential.
    let kept = Session::open(&p, "ap.ap-1", "ap.ap-1", &p.token("ap/ap-1"), &[]).await;
    kept.ready.clone().unwrap();
}

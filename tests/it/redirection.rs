//! How a gateway moves a device off: MQTT 5 server redirection (a
//! DISCONNECT or CONNACK with reason 0x9C or 0x9D and a Server Reference,
//! MQTT 5 §4.11) for MQTT 5 devices, the notice on the redirect topic for
//! 3.1.1 devices, and for both, the gateway closing the connection of a
//! device that stays.

use bus::MqttVersion;
use device_sim::gateway::{HomeEvent, KnownGateway};
use platform_tests::raw::{read_packet, subscribe, v5_connect, v5_props, Connect};
use platform_tests::*;
use protocol::gateway::{Redirect, RedirectReason, REDIRECT_PROPERTY};
use protocol::registry_admin::{RegistryOk, RegistryOp};
use std::io::Write;
use std::time::{Duration, Instant};

/// An admin's registry request that must succeed.
async fn admin(p: &TestPlatform, op: RegistryOp) -> RegistryOk {
    p.registry().await.request(op).await.unwrap()
}

async fn remap(p: &TestPlatform, device_id: &str, gateway_id: &str) {
    let op = RegistryOp::Remap {
        device_id: device_id.into(),
        gateway_id: gateway_id.into(),
    };
    let ok = admin(p, op).await;
    assert!(
        matches!(ok, RegistryOk::Assignment(ref a) if a.changed),
        "{ok:?}"
    );
}

async fn assign(p: &TestPlatform, device_id: &str, gateway_id: &str) {
    let op = RegistryOp::Assign {
        device_id: device_id.into(),
        gateway_id: gateway_id.into(),
    };
    let ok = admin(p, op).await;
    assert!(matches!(ok, RegistryOk::Assignment(_)), "{ok:?}");
}

async fn drain(p: &TestPlatform, gateway_id: &str, to: &str) {
    let op = RegistryOp::Drain {
        gateway_id: gateway_id.into(),
        to: Some(to.into()),
        limit: 100_000,
    };
    let ok = admin(p, op).await;
    assert!(matches!(ok, RegistryOk::Drained(_)), "{ok:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mqtt5_device_is_moved_by_disconnect_0x9c_on_a_remap_and_0x9d_on_a_drain() {
    let p = TestPlatform::start().await;
    let mut config = p.home_config("v5-mover");
    config.mqtt = MqttVersion::V5;
    let mut dev = HomedDevice::spawn(config);
    let (first, _) = dev.connected(10).await;
    let second = other_gateway(&first);

    remap(&p, "v5-mover", second).await;
    let by = dev.moves_without_asking(&first, second, 2).await;
    let expected = format!(
        "DISCONNECT 0x9C UseAnotherServer, server reference {}",
        p.gateway_address(second)
    );
    assert_eq!(by.as_deref(), Some(expected.as_str()));

    drain(&p, second, &first).await;
    let by = dev.moves_without_asking(second, &first, 3).await;
    let expected = format!(
        "DISCONNECT 0x9D ServerMoved, server reference {}",
        p.gateway_address(&first)
    );
    assert_eq!(by.as_deref(), Some(expected.as_str()));
    dev.stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secure_mqtt5_device_moves_on_the_signed_assignment_its_disconnect_carries() {
    let p = TestPlatform::start_config(secure_test_config(), broker::StartOptions::default()).await;
    let uuid = new_uuid();
    p.enroll(&uuid, "pass-tmp-5").await;
    let mut config = p.home_secure_config(&uuid).await;
    config.mqtt = MqttVersion::V5;
    let mut dev = HomedDevice::spawn(config);
    let (first, _) = dev.connected(10).await;
    let second = other_gateway(&first);
    remap(&p, &uuid, second).await;
    let by = dev.moves_without_asking(&first, second, 2).await;
    assert!(by.is_some_and(|b| b.starts_with("DISCONNECT 0x9C")));
    dev.stop.cancel();
}

/// A 3.1.1 CONNECT by hand as `client_id`: clean session, keep alive 30,
/// no login.
fn v4_connect(client_id: &str) -> Vec<u8> {
    Connect {
        username: None,
        ..Connect::v4(client_id)
    }
    .packet()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redirecting_disconnect_and_connack_carry_the_server_reference_and_the_notice() {
    let p = TestPlatform::start().await;
    let device = unique_id("raw-v5");
    assign(&p, &device, "gw-1").await;
    let gw1 = p.dialer_at(p.gateway_address("gw-1").parse().unwrap());
    let gw2 = p.gateway_address("gw-2");
    let d = device.clone();
    let mut s = tokio::task::spawn_blocking(move || {
        let mut s = gw1.connect().unwrap();
        s.write_all(&v5_connect(&d, &[])).unwrap();
        let (first, body) = read_packet(&mut s).unwrap();
        assert_eq!((first, body[1]), (0x20, 0), "gw-1 refused its device");
        s
    })
    .await
    .unwrap();
    remap(&p, &device, "gw-2").await;
    let d = device.clone();
    let expected_address = gw2.clone();
    let s = tokio::task::spawn_blocking(move || {
        // The DISCONNECT: 0x9C, where to, and the notice with the signed
        // (here: unsigned, walkthrough) assignment.
        let (first, body) = read_packet(&mut s).unwrap();
        assert_eq!((first, body[0]), (0xE0, 0x9C), "{body:?}");
        let props = v5_props(&body[1..]).unwrap();
        assert_eq!(
            props.server_reference.as_deref(),
            Some(expected_address.as_str())
        );
        let notice = props
            .user_properties
            .iter()
            .find(|(k, _)| k == REDIRECT_PROPERTY)
            .map(|(_, v)| protocol::decode::<Redirect>(v.as_bytes()).unwrap())
            .expect("no notice");
        assert_eq!(
            (notice.device_id.as_str(), notice.reason, notice.epoch),
            (d.as_str(), RedirectReason::Remapped, 2)
        );
        assert_eq!(notice.carried().unwrap().address, expected_address);
        // Then the gateway closes the connection.
        assert!(read_until_closed(&mut s).unwrap().is_empty());
        s
    })
    .await
    .unwrap();
    drop(s);
    // Back at the old gateway: CONNACK 0x9C with the Server Reference
    // (MQTT 5), CONNACK 5 (3.1.1).
    let gw1 = p.dialer_at(p.gateway_address("gw-1").parse().unwrap());
    let d = device.clone();
    tokio::task::spawn_blocking(move || {
        let mut s = gw1.connect().unwrap();
        s.write_all(&v5_connect(&d, &[])).unwrap();
        let (first, body) = read_packet(&mut s).unwrap();
        assert_eq!((first, body[1]), (0x20, 0x9C), "{body:?}");
        let props = v5_props(&body[2..]).unwrap();
        assert_eq!(props.server_reference.as_deref(), Some(gw2.as_str()));
        let mut s = gw1.connect().unwrap();
        s.write_all(&v4_connect(&d)).unwrap();
        assert_eq!(read_packet(&mut s).unwrap(), (0x20, vec![0, 5]));
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_311_device_that_ignores_its_notice_is_disconnected_by_its_old_gateway() {
    let mut config = test_config();
    for g in &mut config.gateways {
        g.close_after_notice_ms = 1500;
    }
    let p = TestPlatform::start_config(config, broker::StartOptions::default()).await;
    let device = unique_id("stayer");
    assign(&p, &device, "gw-1").await;
    let gw1 = p.dialer_at(p.gateway_address("gw-1").parse().unwrap());
    let d = device.clone();
    let mut s = tokio::task::spawn_blocking(move || {
        let mut s = gw1.connect().unwrap();
        s.write_all(&v4_connect(&d)).unwrap();
        assert_eq!(read_packet(&mut s).unwrap(), (0x20, vec![0, 0]));
        s.write_all(&subscribe(
            1,
            &protocol::topics::device_redirect(&d),
            1,
            None,
        ))
        .unwrap();
        assert_eq!(read_packet(&mut s).unwrap(), (0x90, vec![0, 1, 1]));
        s
    })
    .await
    .unwrap();
    remap(&p, &device, "gw-2").await;
    let closed = tokio::task::spawn_blocking(move || {
        // The notice arrives; the device acknowledges it and stays.
        let (first, body) = read_packet(&mut s).unwrap();
        assert_eq!(first & 0xF0, 0x30, "not the notice");
        let topic_len = usize::from(u16::from_be_bytes([body[0], body[1]]));
        let pkid = [body[2 + topic_len], body[3 + topic_len]];
        s.write_all(&[0x40, 2, pkid[0], pkid[1]]).unwrap();
        let notice: Redirect = protocol::decode(&body[4 + topic_len..]).unwrap();
        assert_eq!(notice.reason, RedirectReason::Remapped);
        // Keep the connection busy so no keep-alive is what ends it.
        let noticed = Instant::now();
        loop {
            if s.write_all(&[0xC0, 0]).is_err() {
                break;
            }
            match read_packet(&mut s) {
                Ok((0xD0, _)) => std::thread::sleep(Duration::from_millis(500)),
                _ => break,
            }
            assert!(
                noticed.elapsed() < Duration::from_secs(10),
                "still connected 10 s after the notice"
            );
        }
        noticed.elapsed()
    })
    .await
    .unwrap();
    assert!(
        closed >= Duration::from_millis(1400),
        "closed after only {closed:?}"
    );
}

/// How gateway `address` answers a CONNECT as device `device_id` with
/// `password`: Ok once admitted, else the CONNACK code as rumqttc names
/// it (a close without one fails the test).
async fn gateway_login(
    p: &TestPlatform,
    address: &str,
    device_id: &str,
    password: &str,
) -> Result<(), String> {
    let stop = tokio_util::sync::CancellationToken::new();
    let opts = p
        .options_at(address, device_id)
        .with_credentials(device_id, password);
    let (bus, _inbox) = bus::Bus::connect(opts, Vec::new(), stop.clone());
    let result = bus.ready_once(Duration::from_secs(5)).await;
    let state = bus.state();
    stop.cancel();
    match (result, state) {
        (Ok(()), _) => Ok(()),
        (Err(_), bus::LinkState::Refused(code)) => Err(code),
        (Err(e), other) => panic!("not refused with a CONNACK: {e} ({other:?})"),
    }
}

/// Issue 24 (6): what a gateway receives is a credential nowhere else.
/// The registry hands a moved device's old gateway its signed assignment
/// to the new one, in the redirect notice. Holding it, the old gateway
/// tries to log in at the new gateway as the device: the assignment alone,
/// the assignment with a login token of the attacker's own key, the
/// assignment rekeyed to that key. Each is a bad login (CONNACK 4), and
/// the device, whose key the assignment names, logs in there on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_gateway_cannot_log_in_as_a_moved_device() {
    use device_sim::login::DeviceLogin;
    use protocol::gateway::RedirectBatch;

    let p = TestPlatform::start_config(secure_test_config(), broker::StartOptions::default()).await;
    let uuid = new_uuid();
    p.enroll(&uuid, "pass-tmp-6").await;
    assign(&p, &uuid, "gw-1").await;
    let mut dev = HomedDevice::spawn(p.home_secure_config(&uuid).await);
    assert_eq!(dev.connected(10).await.0, "gw-1");

    // Exactly what gw-1's agent receives from the registry.
    let (_bus, mut notify, _stop) = p.client(&[protocol::topics::gateway_notify("gw-1")]).await;
    remap(&p, &uuid, "gw-2").await;
    let batch: RedirectBatch =
        protocol::decode(&next_message(&mut notify, 10).await.payload).unwrap();
    let assignment = batch
        .redirects
        .into_iter()
        .find(|r| r.device_id == uuid)
        .and_then(|r| r.assignment)
        .expect("the redirect notice carries the signed assignment");
    assert_eq!(assignment.gateway_id, "gw-2");
    dev.moves_without_asking("gw-1", "gw-2", 2).await;

    let gw2 = p.gateway_address("gw-2");
    let alone = String::from_utf8(protocol::encode(&assignment)).unwrap();
    let thief = DeviceLogin::new(&uuid, protocol::crypto::DeviceKey::generate());
    let own_token = thief.gateway_password(&alone);
    let mut rekeyed = assignment.clone();
    rekeyed.device_key = Some(thief.public_hex());
    let rekeyed = thief.gateway_password(&String::from_utf8(protocol::encode(&rekeyed)).unwrap());
    for (password, what) in [
        (alone.as_str(), "the assignment alone"),
        (
            own_token.as_str(),
            "the assignment and a token of another key",
        ),
        (rekeyed.as_str(), "the assignment rekeyed to another key"),
    ] {
        assert_eq!(
            gateway_login(&p, &gw2, &uuid, password).await,
            Err("BadUserNamePassword".to_owned()),
            "{what}"
        );
    }
    dev.stop.cancel();
    dev.task.await.unwrap().unwrap();

    // The device itself logs in at gw-2 on that same assignment, without
    // asking the registry: its own key signs the login.
    let mut config = p.home_secure_config(&uuid).await;
    config.last_known = Some(KnownGateway {
        gateway_id: "gw-2".into(),
        address: gw2.clone(),
        epoch: 2,
        token: Some(alone),
    });
    let mut dev = HomedDevice::spawn(config);
    let first = dev
        .until(10, |e| {
            matches!(
                e,
                HomeEvent::Connected { .. }
                    | HomeEvent::Assigned { .. }
                    | HomeEvent::Refused { .. }
            )
        })
        .await;
    assert!(
        matches!(first, HomeEvent::Connected { ref gateway_id, epoch: 2, .. } if gateway_id == "gw-2"),
        "{first:?}"
    );
    // A drain moves it back on an assignment that names its key too.
    drain(&p, "gw-2", "gw-1").await;
    dev.moves_without_asking("gw-2", "gw-1", 3).await;
    dev.stop.cancel();
}

/// A device whose registry record has no key yet (assigned by an admin,
/// or from before the key was recorded) holds an assignment that names
/// none: its gateway refuses it as a bad login, the device asks the
/// registry again, its query brings its key, and it connects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyless_assignment_is_refused_and_the_device_asks_again() {
    use protocol::gateway::{GatewayAnswer, GatewayQuery};

    let p = TestPlatform::start_config(secure_test_config(), broker::StartOptions::default()).await;
    let uuid = new_uuid();
    p.enroll(&uuid, "pass-tmp-7").await;
    let key = p.device_key(&uuid).await;
    assign(&p, &uuid, "gw-1").await;
    // The answer to a query without a key, as a device of an older
    // release asks: signed, and naming no key.
    let mut s = Session::open(
        &p,
        &uuid,
        &uuid,
        &device_token(&key, &uuid),
        &[protocol::topics::device_gateway(&uuid)],
    )
    .await;
    s.ready.clone().unwrap();
    s.bus
        .publish_json(
            protocol::topics::REGISTRY_QUERY,
            &GatewayQuery {
                device_id: uuid.clone(),
                device_key: None,
            },
        )
        .await
        .unwrap();
    let answer = next_message(&mut s.inbox, 10).await.payload;
    let keyless = match protocol::decode::<GatewayAnswer>(&answer).unwrap() {
        GatewayAnswer::Assigned(a) => a,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        (keyless.gateway_id.as_str(), &keyless.device_key),
        ("gw-1", &None)
    );

    let mut config = p.home_secure_config(&uuid).await;
    config.last_known = Some(KnownGateway {
        gateway_id: "gw-1".into(),
        address: p.gateway_address("gw-1"),
        epoch: keyless.epoch,
        token: Some(String::from_utf8(answer.to_vec()).unwrap()),
    });
    let mut dev = HomedDevice::spawn(config);
    let first = dev
        .until(10, |e| {
            matches!(e, HomeEvent::Connected { .. } | HomeEvent::Refused { .. })
        })
        .await;
    assert!(
        matches!(first, HomeEvent::Refused { ref gateway_id, ref reason }
            if gateway_id == "gw-1" && reason.contains("BadUserNamePassword")),
        "{first:?}"
    );
    let asked = dev
        .until(10, |e| {
            matches!(e, HomeEvent::Assigned { .. } | HomeEvent::Connected { .. })
        })
        .await;
    assert!(
        matches!(asked, HomeEvent::Assigned { ref gateway_id, .. } if gateway_id == "gw-1"),
        "{asked:?}"
    );
    let (gw, _) = dev.connected(10).await;
    assert_eq!(gw, "gw-1");
    dev.stop.cancel();
}

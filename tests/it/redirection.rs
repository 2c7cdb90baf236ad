//! How a gateway moves a device off: MQTT 5 server redirection (a
//! DISCONNECT or CONNACK with reason 0x9C or 0x9D and a Server Reference,
//! MQTT 5 §4.11) for MQTT 5 devices, the notice on the redirect topic for
//! 3.1.1 devices, and for both, the gateway closing the connection of a
//! device that stays.

use bus::MqttVersion;
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

//! Hostile input: floods of malformed messages on every subscribed topic,
//! and hostile connects against rumqttd's known listener-poisoning path.

use ap_sim::ApEvent;
use device_sim::DeviceEvent;
use platform_tests::*;
use protocol::admin::{AdminOk, AdminOp};
use protocol::onboarding::Confirm;
use protocol::topics;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

fn malformed(i: usize) -> Vec<u8> {
    match i % 8 {
        0 => Vec::new(),
        1 => b"not json at all".to_vec(),
        2 => vec![0xff, 0xfe, 0x00, 0x80],
        3 => "[".repeat(10_000).into_bytes(),
        4 => br#"{"uuid":5,"ssid":[],"pass_tmp":{},"request_id":7,"accept":"yes","op":1}"#.to_vec(),
        5 => format!(r#"{{"uuid":"{}"}}"#, "a".repeat(20_000)).into_bytes(),
        6 => br#"{"unknown":"fields","only":true}"#.to_vec(),
        _ => br##"{"uuid":"../#","ssid":"x/+","pass_tmp":"","request_id":"","ap_id":"a/+/#","op":"enroll"}"##.to_vec(),
    }
}

#[tokio::test]
async fn a_thousand_malformed_messages_per_topic_crash_nothing() {
    let p = TestPlatform::start().await;
    let stop = CancellationToken::new();
    let mut ap = p.start_ap(p.ap_config("ap-f", true), &stop).await;
    let admin = p.admin().await;

    // A device parked at its own prompt, so its topics are live too.
    let uuid = new_uuid();
    p.enroll(&uuid, "pt").await;
    let mut device = OnboardingDevice::spawn(p.device_config(&uuid, "pt", false));
    device
        .until(10, |e| matches!(e, DeviceEvent::Prompt { .. }))
        .await;

    let subscribed = [
        topics::access_request(SSID),
        topics::VERIFY_REQUEST.to_string(),
        topics::VERIFIER_ADMIN_REQUEST.to_string(),
        topics::verify_response("ap-f"),
        topics::ap_confirm("ap-f"),
        topics::access_response(&uuid),
        topics::device_confirm(&uuid),
        topics::VERIFIER_ADMIN_REPLY.to_string(),
    ];
    let (bus, _inbox, _t) = p.client(&[]).await;
    for topic in &subscribed {
        for i in 0..1000 {
            bus.publish(topic.clone(), malformed(i)).await.unwrap();
        }
    }

    // The parked device still takes a valid confirmation, published after
    // the flood on the same connection, so it is read after all of it.
    bus.publish_json(topics::device_confirm(&uuid), &Confirm { accept: true })
        .await
        .unwrap();
    let joined = tokio::time::timeout(Duration::from_secs(60), device.task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(joined.password, WIFI_PASSWORD);

    // A fresh device onboards right after, through the same AP and verifier.
    let fresh = new_uuid();
    admin
        .request(AdminOp::Enroll {
            uuid: fresh.clone(),
            pass_tmp: "pt2".into(),
            replace: false,
        })
        .await
        .unwrap();
    assert_eq!(
        onboard(p.device_config(&fresh, "pt2", true))
            .await
            .unwrap()
            .password,
        WIFI_PASSWORD
    );

    // And state is unchanged: exactly the two enrolled devices.
    match admin
        .request(AdminOp::List {
            after: None,
            limit: 1000,
        })
        .await
        .unwrap()
    {
        AdminOk::List { uuids, .. } => assert_eq!(uuids.len(), 2, "{uuids:?}"),
        other => panic!("{other:?}"),
    }
    // No garbage got as far as a prompt: only the two real devices did.
    let mut prompted = Vec::new();
    while let Ok(event) = ap.events.try_recv() {
        if let ApEvent::Prompt { uuid, .. } = event {
            prompted.push(uuid);
        }
    }
    prompted.sort();
    let mut expected = vec![uuid, fresh];
    expected.sort();
    assert_eq!(prompted, expected);
    stop.cancel();
}

/// An MQTT 3.1.1 CONNECT (or, with `level` 5, an MQTT 5 one) by hand, so
/// the test controls every byte.
fn connect_packet(client_id: &str, username: Option<&str>, level: u8) -> Vec<u8> {
    let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', level];
    body.push(if username.is_some() {
        0b1000_0010
    } else {
        0b0000_0010
    });
    body.extend_from_slice(&[0, 30]);
    if level == 5 {
        body.extend_from_slice(&[5, 0x11, 0, 0, 0, 60]); // properties: session expiry
    }
    for field in std::iter::once(client_id).chain(username) {
        body.extend_from_slice(&(field.len() as u16).to_be_bytes());
        body.extend_from_slice(field.as_bytes());
    }
    let mut packet = vec![0x10, body.len() as u8];
    packet.extend(body);
    packet
}

/// Sends `bytes` as the first packet; returns the broker's first bytes
/// back (empty if it just closed the connection).
fn first_answer(addr: std::net::SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let _ = s.write_all(bytes);
    let mut buf = [0u8; 4];
    match s.read(&mut buf) {
        Ok(n) => buf[..n].to_vec(),
        Err(_) => Vec::new(),
    }
}

#[tokio::test]
async fn hostile_connects_do_not_brick_the_listener() {
    let p = TestPlatform::start().await;
    let addr = p.addr;
    tokio::task::spawn_blocking(move || {
        // Client ids rumqttd's router would refuse, each reconnecting in a
        // loop with the same id: the path that poisons its listener mutex.
        for id in ["bad/id", "wild+card", "hash#", "$SYS", "mid$dle"] {
            for _ in 0..20 {
                let answer = first_answer(addr, &connect_packet(id, Some("me"), 4));
                assert!(answer.is_empty(), "{id:?} got a CONNACK: {answer:?}");
            }
        }
        // No username at all.
        assert!(first_answer(addr, &connect_packet("no-login", None, 4)).is_empty());
        // MQTT 5 with properties on the 3.1.1 listener.
        assert_ne!(
            first_answer(addr, &connect_packet("v5-client", Some("me"), 5)),
            vec![0x20, 2, 0, 0]
        );
        // Garbage as the first packet.
        assert!(first_answer(addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").is_empty());
        assert!(first_answer(addr, &[0xff; 64]).is_empty());
        // A legitimate client is still served.
        assert_eq!(
            first_answer(addr, &connect_packet("good-client", Some("me"), 4)),
            vec![0x20, 2, 0, 0]
        );
    })
    .await
    .unwrap();

    // And the whole flow still works.
    let stop = CancellationToken::new();
    let _ap = p.start_ap(p.ap_config("ap-h", true), &stop).await;
    let uuid = new_uuid();
    p.enroll(&uuid, "pt").await;
    assert_eq!(
        onboard(p.device_config(&uuid, "pt", true))
            .await
            .unwrap()
            .password,
        WIFI_PASSWORD
    );
    stop.cancel();
}

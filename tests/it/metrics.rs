//! The platform's Prometheus endpoint: counts recorded where things happen
//! (the AP's outcome reports, the verifier, the registry), read back over
//! plain HTTP as a scraper would.

use bus::Bus;
use device_sim::DeviceError;
use platform_tests::*;
use protocol::gateway::{GatewayAnswer, Presence};
use protocol::registry_admin::{RegistryOk, RegistryOp};
use protocol::{decode, topics, AccessErrorCode};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

/// One HTTP/1.1 GET over a plain socket, read to the close it asks for:
/// (status, head, body).
async fn http_get(addr: SocketAddr, path: &str) -> (u16, String, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
    let mut raw = String::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_string(&mut raw))
        .await
        .expect("no response in time")
        .unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("no end of head");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("no status");
    (status, head.to_owned(), body.to_owned())
}

pub(crate) async fn scrape(addr: SocketAddr) -> String {
    let (status, head, body) = http_get(addr, "/metrics").await;
    assert_eq!(status, 200, "{head}");
    body
}

/// The value of one series, e.g. `platform_remaps_total` or
/// `platform_onboardings_total{outcome="granted"}`.
pub(crate) fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// Scrapes until every series has its value: counts recorded by another
/// process's message arrive a moment after the device's answer.
pub(crate) async fn wait_for(addr: SocketAddr, expected: &[(&str, f64)]) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let text = scrape(addr).await;
        if expected
            .iter()
            .all(|(series, want)| value(&text, series) == Some(*want))
        {
            return text;
        }
        if std::time::Instant::now() > deadline {
            let got: Vec<_> = expected.iter().map(|(s, _)| (s, value(&text, s))).collect();
            panic!("expected {expected:?}, got {got:?} in\n{text}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Scrapes until every series is at least its value: for counts that
/// others may raise too, recorded a moment after what the test saw (the
/// server takes a client's alert after the client has given up).
pub(crate) async fn wait_for_at_least(addr: SocketAddr, expected: &[(&str, f64)]) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let text = scrape(addr).await;
        if expected
            .iter()
            .all(|(series, want)| value(&text, series).is_some_and(|v| v >= *want))
        {
            return text;
        }
        if std::time::Instant::now() > deadline {
            let got: Vec<_> = expected.iter().map(|(s, _)| (s, value(&text, s))).collect();
            panic!("expected at least {expected:?}, got {got:?} in\n{text}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn assert_series(text: &str, series: &str, want: f64) {
    assert_eq!(value(text, series), Some(want), "{series} in\n{text}");
}

/// A device connected to its gateway broker, reporting its presence as
/// device-sim does.
struct OnGateway {
    bus: Bus,
    inbox: tokio::sync::mpsc::Receiver<bus::Message>,
    link: CancellationToken,
}

impl OnGateway {
    async fn connect(p: &TestPlatform, address: &str, device_id: &str) -> Self {
        let link = CancellationToken::new();
        let opts = p.options_at(address, device_id);
        let (bus, inbox) =
            Bus::connect(opts, vec![topics::device_redirect(device_id)], link.clone());
        // A gateway may hear of the assignment just after the device: the
        // client retries until admitted.
        bus.ready(Duration::from_secs(10)).await.unwrap();
        bus.publish_json(
            topics::device_presence(device_id),
            &Presence { online: true },
        )
        .await
        .unwrap();
        OnGateway { bus, inbox, link }
    }

    async fn leave(self, device_id: &str) {
        self.bus
            .publish_json(
                topics::device_presence(device_id),
                &Presence { online: false },
            )
            .await
            .unwrap();
        self.link.cancel();
    }
}

#[tokio::test]
async fn the_endpoint_counts_onboardings_queries_and_a_remap() {
    let p = TestPlatform::start().await;
    let addr = p.metrics_addr().expect("metrics are on in the test config");

    // Onboarding: three granted, one wrong pass_tmp, one unknown device.
    let granted: Vec<String> = (0..3).map(|_| new_uuid()).collect();
    for uuid in &granted {
        p.enroll(uuid, "factory-secret").await;
    }
    let mismatch = new_uuid();
    p.enroll(&mismatch, "right").await;
    let stop = CancellationToken::new();
    let _ap = p.start_ap(p.ap_config("ap-metrics", true), &stop).await;
    for uuid in &granted {
        let joined = onboard(p.device_config(uuid, "factory-secret", true))
            .await
            .unwrap();
        assert_eq!(joined.password, WIFI_PASSWORD);
    }
    for (uuid, code) in [
        (&mismatch, AccessErrorCode::PassTmpMismatch),
        (&new_uuid(), AccessErrorCode::UnknownDevice),
    ] {
        match onboard(p.device_config(uuid, "wrong", true)).await {
            Err(DeviceError::Refused { code: got, .. }) => assert_eq!(got, code),
            other => panic!("expected {code}, got {other:?}"),
        }
    }
    let text = wait_for(
        addr,
        &[
            (r#"platform_onboardings_total{outcome="granted"}"#, 3.0),
            (
                r#"platform_onboardings_total{outcome="pass_tmp_mismatch"}"#,
                1.0,
            ),
            (
                r#"platform_onboardings_total{outcome="unknown_device"}"#,
                1.0,
            ),
            ("platform_onboarding_duration_seconds_count", 5.0),
        ],
    )
    .await;
    assert_series(
        &text,
        r#"platform_onboardings_total{outcome="rejected"}"#,
        0.0,
    );
    assert_series(
        &text,
        r#"platform_verifications_total{outcome="found"}"#,
        4.0,
    );
    assert_series(
        &text,
        r#"platform_verifications_total{outcome="unknown_device"}"#,
        1.0,
    );
    assert_series(
        &text,
        r#"platform_verifications_total{outcome="bad_request"}"#,
        0.0,
    );
    // One flush per enrollment.
    assert_series(
        &text,
        r#"platform_store_flush_duration_seconds_count{store="verifier"}"#,
        4.0,
    );
    stop.cancel();

    // Gateway queries: one too malformed to answer, then three devices.
    // The registry handles them in order, so once the three are answered
    // the malformed one is counted too.
    let (bus, mut answers, _t) = p.client(&["device/+/gateway".to_owned()]).await;
    bus.publish(topics::REGISTRY_QUERY, br#"{"device":"nobody"}"#.to_vec())
        .await
        .unwrap();
    let devices = ["metrics-dev-a", "metrics-dev-b", "metrics-dev-c"];
    for d in devices {
        bus.publish(
            topics::REGISTRY_QUERY,
            format!(r#"{{"device_id":"{d}"}}"#).into_bytes(),
        )
        .await
        .unwrap();
    }
    let mut home: HashMap<String, (String, String)> = HashMap::new();
    while home.len() < devices.len() {
        let msg = next_message(&mut answers, 10).await;
        match decode::<GatewayAnswer>(&msg.payload).unwrap() {
            GatewayAnswer::Assigned(a) => {
                home.insert(a.device_id, (a.gateway_id, a.address));
            }
            other => panic!("unexpected answer {other:?}"),
        }
    }
    let text = scrape(addr).await;
    assert_series(
        &text,
        r#"platform_gateway_queries_total{outcome="assigned"}"#,
        3.0,
    );
    assert_series(
        &text,
        r#"platform_gateway_queries_total{outcome="refused"}"#,
        1.0,
    );
    assert_series(&text, "platform_query_duration_seconds_count", 3.0);
    assert_series(&text, r#"platform_assignments_total{reason="policy"}"#, 3.0);

    // Two devices connect to their gateways and say so.
    let (a, b) = (devices[0], devices[1]);
    let (gw_a, addr_a) = home[a].clone();
    let (gw_b, addr_b) = home[b].clone();
    let on_a = OnGateway::connect(&p, &addr_a, a).await;
    let _on_b = OnGateway::connect(&p, &addr_b, b).await;
    let connected = |gw: &str| format!(r#"platform_gateway_connected_devices{{gateway="{gw}"}}"#);
    let mut expected: HashMap<String, f64> =
        HashMap::from([("gw-1".into(), 0.0), ("gw-2".into(), 0.0)]);
    *expected.get_mut(&gw_a).unwrap() += 1.0;
    *expected.get_mut(&gw_b).unwrap() += 1.0;
    let series: Vec<(String, f64)> = expected.iter().map(|(g, n)| (connected(g), *n)).collect();
    let want: Vec<(&str, f64)> = series.iter().map(|(s, n)| (s.as_str(), *n)).collect();
    wait_for(addr, &want).await;

    // An admin moves device a: its old gateway is asked to redirect it.
    let other = if gw_a == "gw-1" { "gw-2" } else { "gw-1" };
    let admin = p.registry().await;
    let reply = admin
        .request(RegistryOp::Remap {
            device_id: a.into(),
            gateway_id: other.into(),
        })
        .await
        .unwrap();
    assert!(matches!(reply, RegistryOk::Assignment(v) if v.changed));
    admin.close().await;
    // Counted before the reply went out.
    let text = scrape(addr).await;
    assert_series(&text, "platform_remaps_total", 1.0);
    assert_series(&text, r#"platform_assignments_total{reason="remap"}"#, 1.0);
    assert_series(
        &text,
        &format!(r#"platform_redirects_total{{gateway="{gw_a}"}}"#),
        1.0,
    );
    assert_eq!(
        value(
            &text,
            &format!(r#"platform_redirects_total{{gateway="{other}"}}"#)
        ),
        Some(0.0)
    );
    assert!(
        value(
            &text,
            r#"platform_store_flush_duration_seconds_count{store="registry"}"#
        )
        .is_some_and(|n| n >= 2.0),
        "{text}"
    );

    // The device follows its redirect: it leaves, asks again, moves.
    let mut on_a = on_a;
    let notice = next_message(&mut on_a.inbox, 10).await;
    assert_eq!(notice.topic, topics::device_redirect(a));
    on_a.leave(a).await;
    bus.publish(
        topics::REGISTRY_QUERY,
        format!(r#"{{"device_id":"{a}"}}"#).into_bytes(),
    )
    .await
    .unwrap();
    let new_address = loop {
        let msg = next_message(&mut answers, 10).await;
        if let GatewayAnswer::Assigned(v) = decode::<GatewayAnswer>(&msg.payload).unwrap() {
            if v.device_id == a {
                assert_eq!(v.gateway_id, other);
                break v.address;
            }
        }
    };
    let _on_a = OnGateway::connect(&p, &new_address, a).await;
    *expected.get_mut(&gw_a).unwrap() -= 1.0;
    *expected.get_mut(other).unwrap() += 1.0;
    let series: Vec<(String, f64)> = expected.iter().map(|(g, n)| (connected(g), *n)).collect();
    let mut want: Vec<(&str, f64)> = series.iter().map(|(s, n)| (s.as_str(), *n)).collect();
    want.push((r#"platform_gateway_queries_total{outcome="assigned"}"#, 4.0));
    want.push(("platform_query_duration_seconds_count", 4.0));
    wait_for(addr, &want).await;

    // Only /metrics is served.
    for path in ["/", "/metric", "/metrics/x", "/favicon.ico"] {
        let (status, head, _) = http_get(addr, path).await;
        assert_eq!(status, 404, "{path}: {head}");
    }
    let (_, head, _) = http_get(addr, "/metrics").await;
    // Header names are case-insensitive (hyper writes them in lower case).
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/openmetrics-text"),
        "{head}"
    );
}

#[tokio::test]
async fn malformed_outcome_reports_are_ignored() {
    let p = TestPlatform::start().await;
    let addr = p.metrics_addr().unwrap();
    let (bus, _inbox, _t) = p.client(&[]).await;
    let uuid = new_uuid();
    for payload in [
        "not json".to_owned(),
        r#"{"uuid":"x","outcome":"granted","latency_ms":1}"#.to_owned(),
        format!(r#"{{"uuid":"{uuid}","outcome":"sort_of","latency_ms":1}}"#),
        format!(r#"{{"uuid":"{uuid}","outcome":"granted","latency_ms":-4}}"#),
        format!(r#"{{"uuid":"{uuid}","outcome":"granted","latency_ms":12}}"#),
    ] {
        bus.publish(topics::ap_outcome("ap-x"), payload.into_bytes())
            .await
            .unwrap();
    }
    // Only the last one counts, and the verifier still answers.
    wait_for(
        addr,
        &[
            (r#"platform_onboardings_total{outcome="granted"}"#, 1.0),
            ("platform_onboarding_duration_seconds_count", 1.0),
        ],
    )
    .await;
    p.enroll(&uuid, "pt").await;
}

#[tokio::test]
async fn a_disabled_endpoint_is_not_served() {
    let mut config = test_config();
    config.metrics.enabled = false;
    let p = TestPlatform::start_config(config, Default::default()).await;
    assert_eq!(p.metrics_addr(), None);
}

/// MQTT 3.1.1 CONNECT (clean session, keep-alive 60 s, username "me") and
/// SUBSCRIBE (QoS 0) packets, as bytes.
fn connect_and_subscribe(client_id: &str, filter: &str) -> Vec<u8> {
    let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 4, 0b1000_0010, 0, 60];
    for field in [client_id, "me"] {
        body.extend_from_slice(&(field.len() as u16).to_be_bytes());
        body.extend_from_slice(field.as_bytes());
    }
    let mut out = vec![0x10, body.len() as u8];
    out.extend(body);
    let mut sub = vec![0, 1, 0, filter.len() as u8];
    sub.extend_from_slice(filter.as_bytes());
    sub.push(0);
    out.extend([0x82, sub.len() as u8]);
    out.extend(sub);
    out
}

/// rumqttd keeps a few segments of each filter's log; upstream, a
/// subscriber that fell behind the oldest one was moved to it and silently
/// missed what was dropped. Here it is disconnected, so that its client
/// resubscribes and its application retries, and the broker counts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_falls_behind_the_log_is_disconnected_and_counted() {
    const PAYLOAD: usize = 16 * 1024;
    const MESSAGES: usize = 1500; // 24 MiB: far more than the socket buffers and 3 segments of 1 MiB
    let p = TestPlatform::start_with(broker::StartOptions { broker_only: true }).await;
    let metrics = p.metrics_addr().expect("metrics are on in the test config");
    let mut slow = TcpStream::connect(p.addr).await.unwrap();
    slow.write_all(&connect_and_subscribe("slow-reader", "lag/test"))
        .await
        .unwrap();
    // CONNACK (4 bytes) and SUBACK (5 bytes), then it stops reading.
    let mut acks = [0u8; 9];
    slow.read_exact(&mut acks).await.unwrap();
    assert_eq!((acks[0], acks[3], acks[4]), (0x20, 0, 0x90), "{acks:?}");

    let stop = CancellationToken::new();
    let opts = p.bus_options("fast-writer").with_credentials("me", "");
    let (writer, _inbox) = Bus::connect(opts, Vec::new(), stop.clone());
    writer.ready(Duration::from_secs(5)).await.unwrap();
    for i in 0..MESSAGES {
        let mut payload = format!("{i:08}").into_bytes();
        payload.resize(PAYLOAD, b'.');
        writer.publish("lag/test", payload).await.unwrap();
    }
    // Let the writer's publishes all reach the router.
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Now it reads: part of the stream, then the broker closes it, instead
    // of serving on past the gap.
    let mut received = Vec::new();
    let closed =
        tokio::time::timeout(Duration::from_secs(30), slow.read_to_end(&mut received)).await;
    assert!(
        closed.is_ok(),
        "the lagging subscriber was never disconnected"
    );
    let whole = MESSAGES * (PAYLOAD + "lag/test".len() + 5);
    assert!(
        received.len() < whole,
        "it got everything ({} bytes): nothing was dropped, the test proves nothing",
        received.len()
    );
    let text = wait_for(
        metrics,
        &[(
            "platform_broker_lagged_disconnects_total{broker=\"platform\"}",
            1.0,
        )],
    )
    .await;
    let skipped = value(
        &text,
        "platform_broker_lagged_messages_total{broker=\"platform\"}",
    )
    .unwrap();
    assert!(skipped >= 1.0, "{text}");
    stop.cancel();
}

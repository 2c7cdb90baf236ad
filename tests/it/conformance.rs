//! MQTT conformance of the platform's listeners, clause by clause, for
//! what users rely on: through `mosquitto_pub`/`mosquitto_sub` where a
//! stock client shows it, and through raw packets where the clause is
//! about bytes a client library would not send (walkthrough mode, the
//! broker alone, plaintext). Each test names the clause of MQTT 3.1.1
//! (OASIS, 2014) or MQTT 5.0 (2019) it checks.

use platform_tests::raw::{
    packet, publish, put_str, read_packet, subscribe, v5_connect, v5_props, varint, Connect,
};
use platform_tests::*;
use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

async fn broker_only() -> TestPlatform {
    TestPlatform::start_with(broker::StartOptions { broker_only: true }).await
}

/// Runs a mosquitto client against the platform broker; its output.
fn mosquitto(p: &TestPlatform, program: &str, args: &[&str]) -> Output {
    let port = p.addr.port().to_string();
    Command::new(program)
        .args(["-h", "127.0.0.1", "-p", &port])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e} (install Debian's mosquitto-clients)"))
}

/// `mosquitto_sub` in the background, as `args` say; join for its stdout.
fn sub_in_background(p: &TestPlatform, args: &[&str]) -> std::thread::JoinHandle<(String, String)> {
    let port = p.addr.port().to_string();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let child = Command::new("mosquitto_sub")
        .args(["-h", "127.0.0.1", "-p", &port])
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mosquitto_sub (install Debian's mosquitto-clients)");
    std::thread::spawn(move || {
        let out = child.wait_with_output().unwrap();
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
}

/// Publishes with mosquitto_pub; panics if it fails.
fn pub_ok(p: &TestPlatform, args: &[&str]) {
    let out = mosquitto(p, "mosquitto_pub", args);
    assert!(
        out.status.success(),
        "mosquitto_pub {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Time for a background mosquitto_sub to have subscribed.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(500)).await;
}

/// A raw session: CONNECT sent, CONNACK read and returned.
fn raw_connect(p: &TestPlatform, connect: &Connect) -> (RawStream, (u8, Vec<u8>)) {
    let mut s = p.dialer().connect().unwrap();
    s.write_all(&connect.packet()).unwrap();
    let ack = read_packet(&mut s).expect("no CONNACK");
    (s, ack)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_1_2_10_keep_alive_0_turns_the_keep_alive_off() {
    let p = broker_only().await;
    let p2 = &p;
    tokio::task::block_in_place(|| {
        let (mut s, ack) = raw_connect(
            p2,
            &Connect {
                keep_alive: 0,
                ..Connect::v4("ka0")
            },
        );
        assert_eq!(ack, (0x20, vec![0, 0]), "keep alive 0 refused");
        // Silent for longer than any keep-alive the broker could infer,
        // then still served.
        std::thread::sleep(Duration::from_secs(2));
        s.write_all(&[0xC0, 0]).unwrap();
        assert_eq!(read_packet(&mut s).unwrap(), (0xD0, vec![]), "no PINGRESP");
    });
    // And a stock client library (rumqttc) with keep alive 0.
    let stop = tokio_util::sync::CancellationToken::new();
    let mut opts = p.bus_options(unique_id("ka0-lib"));
    opts.keep_alive = Duration::ZERO;
    let (bus, mut inbox) = bus::Bus::connect(opts, vec!["conf/ka".into()], stop.clone());
    bus.ready(Duration::from_secs(5)).await.unwrap();
    bus.publish("conf/ka", b"x".to_vec()).await.unwrap();
    assert_eq!(&next_message(&mut inbox, 5).await.payload[..], b"x");
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_1_2_2_an_unsupported_protocol_level_gets_connack_1_then_the_close() {
    let p = broker_only().await;
    let p2 = &p;
    tokio::task::block_in_place(|| {
        let mqtt31 = packet(
            0x10,
            [
                &[0, 6][..],
                b"MQIsdp",
                &[3, 0b0000_0010, 0, 30, 0, 3, b'v', b'3', b'1'],
            ]
            .concat(),
        );
        let level6 = Connect {
            level: 6,
            ..Connect::v4("lvl6")
        }
        .packet();
        for (what, bytes) in [("MQTT 3.1", mqtt31), ("level 6", level6)] {
            let mut s = p2.dialer().connect().unwrap();
            s.write_all(&bytes).unwrap();
            assert_eq!(
                read_packet(&mut s).unwrap(),
                (0x20, vec![0, 1]),
                "{what}: not CONNACK 1"
            );
            assert!(read_until_closed(&mut s).unwrap().is_empty(), "{what}");
        }
        // What a stock MQTT 3.1 client prints.
        let out = mosquitto(
            p2,
            "mosquitto_pub",
            &["-V", "mqttv31", "-t", "t", "-m", "x"],
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("unacceptable protocol version"),
            "mosquitto_pub -V mqttv31: {stderr}"
        );
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_1_3_1_a_zero_length_client_id_needs_a_clean_session() {
    let p = broker_only().await;
    let p2 = &p;
    tokio::task::block_in_place(|| {
        // Clean session: accepted, and the session works.
        let (mut s, ack) = raw_connect(p2, &Connect::v4(""));
        assert_eq!(ack, (0x20, vec![0, 0]));
        s.write_all(&subscribe(1, "conf/empty-id", 0, None))
            .unwrap();
        assert_eq!(read_packet(&mut s).unwrap(), (0x90, vec![0, 1, 0]));
        s.write_all(&publish("conf/empty-id", b"me")).unwrap();
        let (first, body) = read_packet(&mut s).unwrap();
        assert_eq!(first, 0x30);
        assert!(body.ends_with(b"me"));
        // Persistent session: CONNACK 2, then the close (3.1.1); MQTT 5
        // answers 0x85 (§3.1.3.1 there too).
        let (mut s, ack) = raw_connect(
            p2,
            &Connect {
                clean_session: false,
                ..Connect::v4("")
            },
        );
        assert_eq!(ack, (0x20, vec![0, 2]));
        assert!(read_until_closed(&mut s).unwrap().is_empty());
        let (_, (first, body)) = raw_connect(
            p2,
            &Connect {
                clean_session: false,
                level: 5,
                ..Connect::v4("")
            },
        );
        assert_eq!((first, &body[..2]), (0x20, &[0, 0x85][..]));
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_3_1_3_retained_messages_reach_later_subscribers_until_cleared() {
    let p = broker_only().await;
    let p2 = &p;
    tokio::task::block_in_place(|| {
        pub_ok(p2, &["-r", "-q", "1", "-t", "conf/kept", "-m", "first"]);
        pub_ok(p2, &["-r", "-q", "1", "-t", "conf/kept", "-m", "second"]);
        // A later subscriber gets the last one, flagged retained.
        let out = mosquitto(
            p2,
            "mosquitto_sub",
            &["-t", "conf/#", "-F", "%r %t %p", "-C", "1", "-W", "5"],
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "1 conf/kept second"
        );
        // A zero-length retained PUBLISH clears it.
        pub_ok(p2, &["-r", "-q", "1", "-t", "conf/kept", "-n"]);
        let out = mosquitto(
            p2,
            "mosquitto_sub",
            &["-t", "conf/#", "-F", "%r %t %p", "-W", "2"],
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "",
            "not cleared"
        );
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s4_3_qos_is_the_lower_of_published_and_granted_and_qos_2_arrives_once() {
    let p = broker_only().await;
    let sub2 = sub_in_background(&p, &["-t", "conf/q", "-q", "2", "-F", "%q %p", "-W", "3"]);
    let sub1 = sub_in_background(&p, &["-t", "conf/q", "-q", "1", "-F", "%q %p", "-W", "3"]);
    settle().await;
    pub_ok(&p, &["-q", "2", "-t", "conf/q", "-m", "two"]);
    pub_ok(&p, &["-q", "0", "-t", "conf/q", "-m", "zero"]);
    let (out2, _) = sub2.join().unwrap();
    let (out1, _) = sub1.join().unwrap();
    // QoS 2 end to end, exactly once; a QoS 0 publish stays QoS 0.
    assert_eq!(out2.lines().collect::<Vec<_>>(), ["2 two", "0 zero"]);
    // Downgraded to the subscription's QoS 1, and never upgraded.
    assert_eq!(out1.lines().collect::<Vec<_>>(), ["1 two", "0 zero"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_3_5_overlapping_subscriptions_get_the_message_at_their_highest_qos() {
    let p = broker_only().await;
    let p2 = &p;
    tokio::task::block_in_place(|| {
        let (mut s, _) = raw_connect(p2, &Connect::v4("overlap"));
        s.write_all(&subscribe(1, "conf/ov/#", 2, None)).unwrap();
        assert_eq!(read_packet(&mut s).unwrap(), (0x90, vec![0, 1, 2]));
        s.write_all(&subscribe(2, "conf/ov/+", 1, None)).unwrap();
        assert_eq!(read_packet(&mut s).unwrap(), (0x90, vec![0, 2, 1]));
        pub_ok(p2, &["-q", "2", "-t", "conf/ov/a", "-m", "m"]);
        // One copy per matching subscription (which §3.3.5 allows), one of
        // them at QoS 2, the highest; each acknowledged as its QoS asks.
        let (mut qos, mut released) = (Vec::new(), 0);
        while qos.len() < 2 || released < qos.iter().filter(|q| **q == 2).count() {
            let (first, body) = read_packet(&mut s).unwrap();
            match first & 0xF0 {
                0x30 => {
                    let q = (first >> 1) & 3;
                    qos.push(q);
                    let pkid = [body[2 + 9], body[2 + 9 + 1]];
                    let ack = if q == 1 { 0x40 } else { 0x50 };
                    s.write_all(&[ack, 2, pkid[0], pkid[1]]).unwrap();
                }
                0x60 => {
                    s.write_all(&[0x70, 2, body[0], body[1]]).unwrap();
                    released += 1;
                }
                other => panic!("unexpected packet type {other:#x}"),
            }
        }
        qos.sort_unstable();
        assert_eq!(qos, [1, 2]);
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s4_7_2_wildcards_do_not_match_topics_starting_with_dollar() {
    let p = broker_only().await;
    let sub = sub_in_background(
        &p,
        &["-t", "#", "-t", "+/conf-dollar", "-F", "%t", "-W", "3"],
    );
    settle().await;
    pub_ok(&p, &["-t", "$x/conf-dollar", "-m", "hidden"]);
    pub_ok(&p, &["-t", "y/conf-dollar", "-m", "seen"]);
    let (out, _) = sub.join().unwrap();
    let topics: Vec<&str> = out.lines().filter(|t| t.contains("conf-dollar")).collect();
    assert!(!topics.is_empty(), "nothing matched: {out}");
    assert!(topics.iter().all(|t| *t == "y/conf-dollar"), "{topics:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s4_4_a_persistent_session_gets_what_it_missed_and_what_it_did_not_ack() {
    let p = broker_only().await;
    let p2 = &p;
    tokio::task::block_in_place(|| {
        let persistent = Connect {
            clean_session: false,
            ..Connect::v4("conf-persistent")
        };
        let (mut s, ack) = raw_connect(p2, &persistent);
        assert_eq!(ack.0, 0x20);
        s.write_all(&subscribe(1, "conf/redeliver", 1, None))
            .unwrap();
        assert_eq!(read_packet(&mut s).unwrap(), (0x90, vec![0, 1, 1]));
        // Received, never acknowledged, then the connection drops.
        pub_ok(p2, &["-q", "1", "-t", "conf/redeliver", "-m", "unacked"]);
        let (first, body) = read_packet(&mut s).unwrap();
        assert_eq!(first & 0xF6, 0x32, "not a QoS 1 PUBLISH");
        assert!(body.ends_with(b"unacked"));
        drop(s);
        std::thread::sleep(Duration::from_millis(300));
        // Published while it is offline.
        pub_ok(p2, &["-q", "1", "-t", "conf/redeliver", "-m", "offline"]);
        // Back with its session: it is present, and both arrive, the
        // unacknowledged one first (§4.4). (rumqttd re-reads them from its
        // log: the DUP flag is not set and the packet id is new, which
        // §4.4 and §3.3.1.1 ask for and which no client here relies on.)
        let (mut s, ack) = raw_connect(p2, &persistent);
        assert_eq!(ack, (0x20, vec![1, 0]), "no session present");
        let mut got = Vec::new();
        for _ in 0..2 {
            let (first, body) = read_packet(&mut s).unwrap();
            assert_eq!(first & 0xF0, 0x30);
            let payload = String::from_utf8_lossy(&body[2 + 14 + 2..]).into_owned();
            got.push(payload);
            s.write_all(&[0x40, 2, body[16], body[17]]).unwrap();
        }
        assert_eq!(got, ["unacked", "offline"]);
        // Leave clean, so the session does not outlive the test.
        let (mut s, _) = raw_connect(p2, &Connect::v4("conf-persistent"));
        s.write_all(&[0xE0, 0]).unwrap();
    });
}

// ---------------------------------------------------------------------
// MQTT 5 on the same listener.
// ---------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt5_and_311_clients_share_a_topic_and_properties_stay_with_v5() {
    let p = broker_only().await;
    let v4 = sub_in_background(
        &p,
        &["-V", "mqttv311", "-t", "conf/mixed", "-F", "%p", "-W", "3"],
    );
    let v5 = sub_in_background(
        &p,
        &["-V", "mqttv5", "-t", "conf/mixed", "-F", "%p %P", "-W", "3"],
    );
    settle().await;
    pub_ok(
        &p,
        &[
            "-V",
            "mqttv5",
            "-q",
            "1",
            "-t",
            "conf/mixed",
            "-m",
            "from-v5",
            "-D",
            "publish",
            "user-property",
            "k",
            "v",
            "-D",
            "publish",
            "content-type",
            "text/plain",
        ],
    );
    pub_ok(&p, &["-V", "mqttv311", "-t", "conf/mixed", "-m", "from-v4"]);
    let (v4, _) = v4.join().unwrap();
    let (v5, _) = v5.join().unwrap();
    assert_eq!(v4.lines().collect::<Vec<_>>(), ["from-v5", "from-v4"]);
    let v5: Vec<&str> = v5.lines().map(str::trim).collect();
    assert_eq!(v5, ["from-v5 k:v", "from-v4"], "the v5 subscriber's view");
}

/// An MQTT 5 PUBLISH at QoS 0 with `props`.
fn v5_publish_with(topic: &str, props: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    put_str(&mut body, topic.as_bytes());
    body.extend(varint(props.len()));
    body.extend_from_slice(props);
    body.extend_from_slice(payload);
    packet(0x30, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt5_bad_input_gets_a_reason_code_and_the_listener_keeps_serving() {
    let p = broker_only().await;
    let p2 = &p;
    tokio::task::block_in_place(|| {
        let dialer = p2.dialer();
        // CONNECTs: an unknown property id, a property cut short, and one
        // over the largest packet the broker takes: CONNACK 0x81, 0x81,
        // 0x95 (§3.2.2.2), then the close.
        // (The large one announces 300 KiB and sends its start: the
        // broker answers before reading the rest.)
        let mut too_large = vec![0x10];
        too_large.extend(varint(300 * 1024));
        too_large.extend_from_slice(&[0, 4, b'M', b'Q', b'T', b'T', 5, 0b0000_0010, 0, 30, 0]);
        for (what, bytes, code) in [
            ("unknown property 0x7F", v5_connect("c1", &[0x7F, 0]), 0x81),
            ("property cut short", v5_connect("c2", &[0x11, 0, 0]), 0x81),
            ("too large", too_large, 0x95),
        ] {
            let mut s = dialer.connect().unwrap();
            let _ = s.write_all(&bytes);
            let (first, body) = read_packet(&mut s).unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!((first, body.get(1).copied()), (0x20, Some(code)), "{what}");
            assert!(read_until_closed(&mut s).is_ok(), "{what}: not closed");
        }
        // After CONNECT: a PUBLISH with an unknown property, and topic
        // aliases 0 and past the maximum the CONNACK announced: a
        // DISCONNECT with 0x81 (malformed) or 0x94 (topic alias invalid).
        for (what, bytes, code) in [
            (
                "unknown property",
                v5_publish_with("conf/v5", &[0x7F, 1], b"x"),
                0x81,
            ),
            (
                "topic alias 0",
                v5_publish_with("conf/v5", &[0x23, 0, 0], b"x"),
                0x94,
            ),
            // Only a server sends these; upstream rumqttd panicked.
            ("a CONNACK", packet(0x20, vec![0, 0, 0]), 0x81),
            ("an UNSUBACK", packet(0xB0, vec![0, 1, 0, 0]), 0x81),
            (
                "topic alias 65535",
                v5_publish_with("conf/v5", &[0x23, 0xFF, 0xFF], b"x"),
                0x94,
            ),
        ] {
            let mut s = dialer.connect().unwrap();
            s.write_all(&v5_connect(&what.replace(' ', "-"), &[]))
                .unwrap();
            let (first, body) = read_packet(&mut s).unwrap();
            assert_eq!((first, body[1]), (0x20, 0), "{what}: CONNECT refused");
            s.write_all(&bytes).unwrap();
            let (first, body) = read_packet(&mut s).unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!((first, body.first().copied()), (0xE0, Some(code)), "{what}");
            assert!(read_until_closed(&mut s).is_ok(), "{what}: not closed");
        }
        // The CONNACK's properties decode (and carry no Server Reference
        // here: nobody was moved).
        let mut s = dialer.connect().unwrap();
        s.write_all(&v5_connect("props", &[])).unwrap();
        let (_, body) = read_packet(&mut s).unwrap();
        assert_eq!(v5_props(&body[2..]).unwrap().server_reference, None);
    });
    // A stock client is still served, in either version.
    let p2 = &p;
    tokio::task::block_in_place(|| {
        for version in ["mqttv5", "mqttv311"] {
            pub_ok(
                p2,
                &["-V", version, "-q", "1", "-t", "conf/after", "-m", "ok"],
            );
        }
    });
}

//! Hostile input: floods of malformed messages on every subscribed topic,
//! and hostile connects against rumqttd's known listener-poisoning path.

use ap_sim::ApEvent;
use device_sim::DeviceEvent;
use platform_tests::raw::{packet, put_str, v5_publish, Connect};
use platform_tests::*;
use protocol::admin::{AdminOk, AdminOp};
use protocol::onboarding::Confirm;
use protocol::topics;
use std::io::{Read, Write};
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
    // The flood is more than a topic's log holds (3 MiB): a subscriber
    // that fell behind it is disconnected and resubscribes, and may miss
    // what came meanwhile, so the user presses again until it joins, as a
    // user whose device did not react would.
    let confirming = {
        let bus = bus.clone();
        let topic = topics::device_confirm(&uuid);
        tokio::spawn(async move {
            loop {
                bus.publish_json(topic.clone(), &Confirm { accept: true })
                    .await
                    .unwrap();
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        })
    };
    let joined = tokio::time::timeout(Duration::from_secs(60), device.task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    confirming.abort();
    assert_eq!(joined.password, WIFI_PASSWORD);

    // A fresh device onboards right after, through the same AP and verifier.
    let fresh = new_uuid();
    admin
        .request(AdminOp::Enroll {
            uuid: fresh.clone(),
            pass_tmp: "pt2".into(),
            replace: false,
            ssids: Vec::new(),
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
fn first_answer(dialer: &Dialer, bytes: &[u8]) -> Vec<u8> {
    let mut s = dialer.connect().unwrap();
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
    let dialer = p.dialer();
    tokio::task::spawn_blocking(move || {
        let addr = &dialer;
        // Client ids rumqttd's router would refuse, each reconnecting in a
        // loop with the same id: the path that poisons its listener mutex.
        // They are refused before the router sees them: CONNACK 2.
        for id in ["bad/id", "wild+card", "hash#", "$SYS", "mid$dle"] {
            for _ in 0..20 {
                let answer = first_answer(addr, &connect_packet(id, Some("me"), 4));
                assert_eq!(answer, CONNACK_IDENTIFIER_REJECTED, "{id:?}");
            }
        }
        // No username at all: walkthrough mode admits it.
        assert_eq!(
            first_answer(addr, &connect_packet("no-login", None, 4)),
            CONNACK_ACCEPTED
        );
        // MQTT 5 with properties: accepted, with an MQTT 5 CONNACK
        // (reason 0, then properties).
        let answer = first_answer(addr, &connect_packet("v5-client", Some("me"), 5));
        assert_eq!(
            (answer[0], answer[2], answer[3]),
            (0x20, 0, 0),
            "{answer:?}"
        );
        assert!(answer[1] > 2, "no properties: {answer:?}");
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

// ---------------------------------------------------------------------
// T8: hostile connects. Each attack runs against its own broker, then a
// legitimate client must still connect, subscribe and get a message.
// ---------------------------------------------------------------------

/// How long a legitimate client may take to be served after an attack.
const SERVED_WITHIN: Duration = Duration::from_secs(5);

const CONNACK_ACCEPTED: [u8; 4] = [0x20, 2, 0, 0];
const CONNACK_IDENTIFIER_REJECTED: [u8; 4] = [0x20, 2, 0, 2];
const CONNACK_BAD_LOGIN: [u8; 4] = [0x20, 2, 0, 4];
const CONNACK_NOT_AUTHORIZED: [u8; 4] = [0x20, 2, 0, 5];
const DISCONNECT: [u8; 2] = [0xE0, 0];

/// A raw client: connects (over TLS if `dialer` says so), sends CONNECT,
/// and returns the stream if the broker accepted it (CONNACK 0), or None
/// if it refused or closed.
fn open_session(dialer: &Dialer, connect: &Connect) -> Option<RawStream> {
    let mut s = dialer.connect().unwrap();
    s.write_all(&connect.packet()).ok()?;
    let mut ack = [0u8; 4];
    s.read_exact(&mut ack).ok()?;
    (ack == CONNACK_ACCEPTED).then_some(s)
}

/// A legitimate client: who it logs in as, and a topic it may use.
#[derive(Clone)]
struct Legit {
    client_id: Option<String>,
    login: Option<(String, String)>,
    topic: String,
}

impl Legit {
    /// Walkthrough mode admits any client with a username, on any topic.
    fn walkthrough(client_id: Option<&str>) -> Self {
        Legit {
            client_id: client_id.map(str::to_owned),
            login: None,
            topic: topics::device_confirm(&new_uuid()),
        }
    }

    /// Secure mode, even with the broker alone: the bootstrap admin, on an
    /// AP's confirm topic.
    fn secure_admin(p: &TestPlatform) -> Self {
        Legit {
            client_id: None,
            login: Some(("admin".into(), p.token("admin"))),
            topic: topics::ap_confirm("ap-1"),
        }
    }

    /// Secure mode: the bootstrap AP `ap-1`, with the credential the
    /// platform created in its data dir, on its own confirm topic (which
    /// the ACL lets an AP both publish and subscribe to).
    fn secure_ap(p: &TestPlatform) -> Self {
        let token = p.token("ap/ap-1");
        assert!(
            !token.is_empty(),
            "secure mode writes the bootstrap AP's credential"
        );
        Legit {
            client_id: None,
            login: Some((protocol::logins::ap_login("ap-1"), token)),
            topic: topics::ap_confirm("ap-1"),
        }
    }

    /// Options as `client_id`, which for an AP is a named session of its
    /// identity (its client ids must belong to its username); over TLS
    /// when the platform serves it.
    fn options(&self, p: &TestPlatform, client_id: String) -> bus::BusOptions {
        match &self.login {
            Some((user, password)) => p
                .bus_options(format!("{user}.{client_id}"))
                .with_credentials(user, password),
            None => p.bus_options(client_id),
        }
    }
}

/// A legitimate client (in walkthrough mode) can still connect, subscribe
/// and receive a message within [`SERVED_WITHIN`], under `client_id` (a
/// fresh one if None). `after` names the attack for the failure message.
async fn assert_serves_legitimate_clients(p: &TestPlatform, client_id: Option<&str>, after: &str) {
    assert_serves(p, &Legit::walkthrough(client_id), after).await;
}

async fn assert_serves(p: &TestPlatform, legit: &Legit, after: &str) {
    let stop = CancellationToken::new();
    let topic = legit.topic.clone();
    let id = legit
        .client_id
        .clone()
        .unwrap_or_else(|| unique_id("legit-sub"));
    let (subscriber, mut inbox) =
        bus::Bus::connect(legit.options(p, id), vec![topic.clone()], stop.clone());
    let (publisher, _) = bus::Bus::connect(
        legit.options(p, unique_id("legit-pub")),
        Vec::new(),
        stop.clone(),
    );
    for (who, bus) in [("subscriber", &subscriber), ("publisher", &publisher)] {
        if let Err(e) = bus.ready(SERVED_WITHIN).await {
            panic!("after {after}: a legitimate {who} is not served: {e}");
        }
    }
    publisher
        .publish(topic.clone(), b"still served".to_vec())
        .await
        .unwrap();
    let msg = tokio::time::timeout(SERVED_WITHIN, inbox.recv())
        .await
        .unwrap_or_else(|_| panic!("after {after}: the subscriber got nothing"))
        .expect("inbox closed");
    assert_eq!(msg.topic, topic, "after {after}");
    assert_eq!(&msg.payload[..], b"still served", "after {after}");
    stop.cancel();
}

/// The broker alone, with room for `max_connections` clients.
async fn broker_with_max_connections(max_connections: usize) -> TestPlatform {
    let mut config = test_config();
    config.platform.max_connections = max_connections;
    TestPlatform::start_config(config, broker::StartOptions { broker_only: true }).await
}

async fn broker_only() -> TestPlatform {
    TestPlatform::start_with(broker::StartOptions { broker_only: true }).await
}

/// The listener an attack runs against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Listener {
    /// Walkthrough mode: plaintext MQTT, any username admitted.
    Plaintext,
    /// Secure mode, the default: MQTT over TLS only, logins checked.
    Tls,
}

/// The attackers' side of a [`Target`]: where they connect and how they
/// log in, so that what refuses them is the attack, not a missing login.
/// (Sent to the blocking threads the attacks run on.)
#[derive(Clone)]
struct Attacker {
    dialer: Dialer,
    username: String,
    password: Option<String>,
    /// What the legitimate client's ids start with ([`Legit::options`]):
    /// an attacker that is to take a legitimate id takes it whole.
    id_prefix: String,
}

impl Attacker {
    /// A CONNECT as `client_id` with the target's login.
    fn connect<'a>(&'a self, client_id: &'a str) -> Connect<'a> {
        Connect {
            username: Some(&self.username),
            password: self.password.as_deref().map(str::as_bytes),
            ..Connect::v4(client_id)
        }
    }

    /// The client id a legitimate client asks for as `name`.
    fn id(&self, name: &str) -> String {
        format!("{}{name}", self.id_prefix)
    }

    fn first_answer(&self, bytes: &[u8]) -> Vec<u8> {
        first_answer(&self.dialer, bytes)
    }

    fn open_session(&self, connect: &Connect) -> Option<RawStream> {
        open_session(&self.dialer, connect)
    }
}

/// A broker alone (no workers, no gateways) to attack, and the
/// legitimate client that must still be served after each attack.
struct Target {
    p: TestPlatform,
    attacker: Attacker,
    legit: Legit,
}

impl Target {
    async fn start(listener: Listener, max_connections: Option<usize>) -> Target {
        let mut config = match listener {
            Listener::Plaintext => test_config(),
            Listener::Tls => secure_test_config(),
        };
        if let Some(max) = max_connections {
            config.platform.max_connections = max;
        }
        let p =
            TestPlatform::start_config(config, broker::StartOptions { broker_only: true }).await;
        assert_eq!(
            p.tls().is_some(),
            listener == Listener::Tls,
            "{listener:?}: TLS is served in secure mode only"
        );
        let (username, password, legit) = match listener {
            Listener::Plaintext => ("me".to_owned(), None, Legit::walkthrough(None)),
            Listener::Tls => {
                let legit = Legit::secure_admin(&p);
                let (user, token) = legit.login.clone().unwrap();
                (user, Some(token), legit)
            }
        };
        let id_prefix = match &legit.login {
            Some((user, _)) => format!("{user}."),
            None => String::new(),
        };
        let attacker = Attacker {
            dialer: p.dialer(),
            username,
            password,
            id_prefix,
        };
        Target { p, attacker, legit }
    }

    /// A legitimate client is served, under the id it asks for as `name`
    /// (a fresh one if None).
    async fn assert_serves(&self, name: Option<&str>, after: &str) {
        let legit = Legit {
            client_id: name.map(str::to_owned),
            ..self.legit.clone()
        };
        assert_serves(&self.p, &legit, after).await;
    }
}

#[tokio::test]
async fn t8_refused_ids_reconnecting_concurrently_do_not_brick_the_listener() {
    refused_ids_reconnecting_concurrently(Listener::Plaintext).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t8_refused_ids_reconnecting_concurrently_do_not_brick_the_listener_over_tls() {
    refused_ids_reconnecting_concurrently(Listener::Tls).await;
}

async fn refused_ids_reconnecting_concurrently(listener: Listener) {
    // The path rumqttd poisons its listener on: a client id its router
    // refuses, reconnecting with the same id. Here several clients race
    // on each id at once, with and without a login, and half of them hang
    // up without waiting for the answer.
    let target = Target::start(listener, None).await;
    let attacker = target.attacker.clone();
    tokio::task::spawn_blocking(move || {
        let attackers: Vec<_> = ["a/b", "wild+card", "hash#", "#", "+", "/", "$SYS/x"]
            .into_iter()
            .flat_map(|id| [(id, true), (id, true), (id, false), (id, false)])
            .map(|(id, login)| {
                let attacker = attacker.clone();
                std::thread::spawn(move || {
                    let connect = if login {
                        attacker.connect(id)
                    } else {
                        Connect {
                            username: None,
                            ..Connect::v4(id)
                        }
                    };
                    for round in 0..25 {
                        if round % 2 == 0 {
                            let answer = attacker.first_answer(&connect.packet());
                            assert_ne!(answer, CONNACK_ACCEPTED, "{id:?} (login {login}) accepted");
                        } else {
                            let mut s = attacker.dialer.connect().unwrap();
                            let _ = s.write_all(&connect.packet());
                        }
                    }
                })
            })
            .collect();
        for a in attackers {
            a.join().unwrap();
        }
    })
    .await
    .unwrap();
    target
        .assert_serves(None, "refused ids reconnecting concurrently")
        .await;
}

#[tokio::test]
async fn t8_connections_over_max_connections_are_refused_and_the_listener_recovers() {
    connections_over_max_connections(Listener::Plaintext).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t8_connections_over_max_connections_are_refused_and_the_listener_recovers_over_tls() {
    connections_over_max_connections(Listener::Tls).await;
}

async fn connections_over_max_connections(listener: Listener) {
    const MAX: usize = 20;
    let target = Target::start(listener, Some(MAX)).await;
    let attacker = target.attacker.clone();
    let held = tokio::task::spawn_blocking(move || {
        let mut held = Vec::new();
        let mut refused = 0;
        for i in 0..MAX + 15 {
            let id = attacker.id(&format!("filler-{i}"));
            let mut s = attacker.dialer.connect().unwrap();
            s.write_all(&attacker.connect(&id).packet()).unwrap();
            let mut ack = [0u8; 4];
            s.read_exact(&mut ack).unwrap();
            if ack == CONNACK_ACCEPTED {
                held.push(s);
            } else {
                // Refused with a CONNACK (3, server unavailable), not a
                // silent close.
                assert_eq!(ack, [0x20, 2, 0, 3], "filler-{i}");
                refused += 1;
            }
        }
        // The startup probe may still hold a slot for a moment.
        assert!(
            (MAX - 1..=MAX).contains(&held.len()),
            "{} accepted with max_connections {MAX}",
            held.len()
        );
        assert_eq!(held.len() + refused, MAX + 15);
        held
    })
    .await
    .unwrap();

    // Full: a legitimate client must wait, not crash anything. Then the
    // fillers leave (half politely, half by dropping the socket) and it
    // is served.
    for (i, mut s) in held.into_iter().enumerate() {
        if i % 2 == 0 {
            let _ = s.write_all(&DISCONNECT);
        }
    }
    target
        .assert_serves(None, "connections over max_connections")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t8_thousands_of_connects_over_the_limit_while_clients_keep_working() {
    // The broker full, then 2,000 more CONNECTs (a tenth of them one id,
    // retried) from 8 threads at once, while a legitimate publisher and
    // subscriber that got in first keep exchanging messages.
    const MAX: usize = 30;
    const OVER: usize = 2000;
    let p = broker_with_max_connections(MAX).await;
    let dialer = p.dialer();
    let stop = CancellationToken::new();
    let topic = topics::device_confirm(&new_uuid());
    let legit = Legit::walkthrough(None);
    let (subscriber, mut inbox) = bus::Bus::connect(
        legit.options(&p, unique_id("legit-sub")),
        vec![topic.clone()],
        stop.clone(),
    );
    let (publisher, _) = bus::Bus::connect(
        legit.options(&p, unique_id("legit-pub")),
        Vec::new(),
        stop.clone(),
    );
    subscriber.ready(SERVED_WITHIN).await.unwrap();
    publisher.ready(SERVED_WITHIN).await.unwrap();
    let fill = dialer.clone();
    let fillers = tokio::task::spawn_blocking(move || {
        (0..MAX)
            .filter_map(|i| open_session(&fill, &Connect::v4(&format!("filler-{i}"))))
            .collect::<Vec<RawStream>>()
    })
    .await
    .unwrap();
    assert!(
        fillers.len() >= MAX - 3,
        "only {} fillers got in",
        fillers.len()
    );

    let flood = tokio::task::spawn_blocking(move || {
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let dialer = dialer.clone();
                std::thread::spawn(move || {
                    let mut accepted = 0;
                    for i in 0..OVER / 8 {
                        let id = if i % 10 == 0 {
                            "one-id-again".to_owned()
                        } else {
                            format!("flood-{t}-{i}")
                        };
                        accepted += usize::from(open_session(&dialer, &Connect::v4(&id)).is_some());
                    }
                    accepted
                })
            })
            .collect();
        threads
            .into_iter()
            .map(|t| t.join().unwrap())
            .sum::<usize>()
    });
    let mut exchanged = 0;
    while !flood.is_finished() {
        publisher
            .publish(topic.clone(), format!("m{exchanged}").into_bytes())
            .await
            .unwrap();
        let msg = tokio::time::timeout(SERVED_WITHIN, inbox.recv())
            .await
            .unwrap_or_else(|_| panic!("message {exchanged} not delivered during the flood"))
            .unwrap();
        assert_eq!(msg.payload, format!("m{exchanged}").into_bytes());
        exchanged += 1;
    }
    let accepted = flood.await.unwrap();
    assert_eq!(accepted, 0, "connections accepted over max_connections");
    assert!(exchanged > 0);
    drop(fillers);
    assert_serves_legitimate_clients(&p, None, "2,000 connects over max_connections").await;
    assert_serves_legitimate_clients(
        &p,
        Some("one-id-again"),
        "2,000 connects over max_connections (the retried id)",
    )
    .await;
    stop.cancel();
}

#[tokio::test]
async fn t8_a_client_retrying_its_id_while_the_broker_is_full_does_not_brick_the_listener() {
    retrying_its_id_while_the_broker_is_full(Listener::Plaintext).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t8_a_client_retrying_its_id_while_the_broker_is_full_does_not_brick_the_listener_over_tls()
{
    retrying_its_id_while_the_broker_is_full(Listener::Tls).await;
}

async fn retrying_its_id_while_the_broker_is_full(listener: Listener) {
    // A device that finds the broker full retries with the same client id,
    // as every device does. rumqttd keeps a last-will sender per client id;
    // a connection the router refuses for want of room leaves its sender
    // behind, and the next CONNECT with that id finds it.
    const MAX: usize = 20;
    let target = Target::start(listener, Some(MAX)).await;
    let attacker = target.attacker.clone();
    tokio::task::spawn_blocking(move || {
        let held: Vec<RawStream> = (0..MAX + 5)
            .filter_map(|i| {
                let id = attacker.id(&format!("filler-{i}"));
                attacker.open_session(&attacker.connect(&id))
            })
            .collect();
        assert!(held.len() <= MAX);
        let retrying = attacker.id("retrying-device");
        for _ in 0..3 {
            assert!(
                attacker
                    .open_session(&attacker.connect(&retrying))
                    .is_none(),
                "accepted over max_connections"
            );
        }
        for mut s in held {
            let _ = s.write_all(&DISCONNECT);
        }
    })
    .await
    .unwrap();
    target
        .assert_serves(None, "a full broker retried by one id")
        .await;
    target
        .assert_serves(
            Some("retrying-device"),
            "a full broker retried by one id (that id itself)",
        )
        .await;
}

#[tokio::test]
async fn t8_mqtt5_publishes_with_properties_reach_v4_subscribers_without_them() {
    let p = broker_only().await;
    let dialer = p.dialer();
    // A subscriber already in place sees whatever gets through, and must
    // keep working afterwards.
    let stop = CancellationToken::new();
    let topic = topics::device_confirm(&new_uuid());
    let (subscriber, mut inbox) = bus::Bus::connect(
        p.bus_options(unique_id("v4-sub")),
        vec![topic.clone()],
        stop.clone(),
    );
    subscriber.ready(SERVED_WITHIN).await.unwrap();

    let t = topic.clone();
    tokio::task::spawn_blocking(move || {
        // A whole MQTT 5 session: CONNECT with properties, then PUBLISH
        // with properties (the second sets topic alias 7, the third uses
        // it with an empty topic), on one socket.
        let mut s = dialer.connect().unwrap();
        let mut bytes = Connect {
            level: 5,
            ..Connect::v4("v5-client")
        }
        .packet();
        bytes.extend(v5_publish(&t, b"from v5"));
        bytes.extend(v5_publish("", b"alias only"));
        bytes.extend_from_slice(&DISCONNECT);
        let _ = s.write_all(&bytes);
        let mut answer = [0u8; 4];
        s.read_exact(&mut answer).unwrap();
        assert_eq!(
            (answer[0], answer[3]),
            (0x20, 0),
            "a v5 CONNECT was refused"
        );

        // A 3.1.1 session that then speaks MQTT 5: PUBLISHes with
        // properties, one with a topic and one with only a topic alias.
        let mut s = open_session(&dialer, &Connect::v4("v4-then-v5")).expect("v4 CONNECT refused");
        let _ = s.write_all(&v5_publish(&t, b"v5 framing"));
        let _ = s.write_all(&v5_publish("", b"alias only"));
        let _ = s.write_all(&DISCONNECT);
    })
    .await
    .unwrap();

    // The subscriber is still connected and gets the next real message.
    let (publisher, _) =
        bus::Bus::connect(p.bus_options(unique_id("v4-pub")), Vec::new(), stop.clone());
    publisher.ready(SERVED_WITHIN).await.unwrap();
    publisher
        .publish(topic.clone(), b"real".to_vec())
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + SERVED_WITHIN;
    let mut got = Vec::new();
    loop {
        let msg = tokio::time::timeout_at(deadline, inbox.recv())
            .await
            .expect("the v4 subscriber stopped receiving after MQTT 5 traffic")
            .expect("inbox closed");
        if &msg.payload[..] == b"real" {
            break;
        }
        got.push(msg.payload.to_vec());
    }
    // The v5 PUBLISH arrived as 3.1.1, its properties dropped, payload
    // intact; it came before everything the other session sent.
    assert_eq!(
        got.first().map(Vec::as_slice),
        Some(&b"from v5"[..]),
        "{got:?}"
    );
    assert_eq!(subscriber.state(), bus::LinkState::Ready);
    stop.cancel();
    assert_serves_legitimate_clients(&p, None, "MQTT 5 CONNECT and PUBLISH with properties").await;
}

#[tokio::test]
async fn t8_garbage_first_packets_do_not_brick_the_listener() {
    garbage_first_packets(Listener::Plaintext).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t8_garbage_first_packets_do_not_brick_the_listener_over_tls() {
    garbage_first_packets(Listener::Tls).await;
}

async fn garbage_first_packets(listener: Listener) {
    let target = Target::start(listener, None).await;
    let attacker = target.attacker.clone();
    let mut publish_first = Vec::new();
    put_str(&mut publish_first, b"device/x/confirm");
    publish_first.extend_from_slice(br#"{"accept":true}"#);
    let mut subscribe_first = vec![0, 1];
    put_str(&mut subscribe_first, b"#");
    subscribe_first.push(1);
    let mut truncated = attacker.connect("truncated").packet();
    truncated.truncate(truncated.len() - 3);
    let firsts: Vec<(&str, Vec<u8>)> = vec![
        ("PUBLISH before CONNECT", packet(0x30, publish_first)),
        ("SUBSCRIBE before CONNECT", packet(0x82, subscribe_first)),
        ("PINGREQ before CONNECT", vec![0xC0, 0]),
        ("DISCONNECT before CONNECT", DISCONNECT.to_vec()),
        (
            "MQTT 3.1 (MQIsdp)",
            packet(
                0x10,
                [
                    &[0, 6][..],
                    b"MQIsdp",
                    &[3, 0b1000_0010, 0, 30, 0, 1, b'x', 0, 2, b'm', b'e'],
                ]
                .concat(),
            ),
        ),
        (
            "protocol level 7",
            Connect {
                level: 7,
                ..attacker.connect("lvl7")
            }
            .packet(),
        ),
        (
            "persistent session with an empty id",
            Connect {
                clean_session: false,
                ..attacker.connect("")
            }
            .packet(),
        ),
        ("strings longer than the packet", truncated),
        (
            "a remaining length of five bytes",
            vec![0x10, 0xff, 0xff, 0xff, 0xff, 0x01],
        ),
        ("reserved packet type 0", vec![0x00, 0]),
        ("reserved packet type 15", vec![0xF0, 0]),
        ("NUL bytes", vec![0; 32]),
        (
            "TLS ClientHello",
            vec![0x16, 0x03, 0x01, 0x00, 0xa5, 0x01, 0x00],
        ),
    ];
    let blocking = attacker.clone();
    tokio::task::spawn_blocking(move || {
        for (what, bytes) in &firsts {
            let answer = blocking.first_answer(bytes);
            assert_ne!(answer, CONNACK_ACCEPTED, "{what}: accepted");
        }
    })
    .await
    .unwrap();

    // Slow and half-open clients, still open while the legitimate client
    // connects: a CONNECT announcing 256 MB, half a CONNECT, and nothing.
    let mut open = Vec::new();
    for bytes in [
        vec![0x10, 0xff, 0xff, 0xff, 0x7f],
        attacker
            .connect("half")
            .packet()
            .into_iter()
            .take(7)
            .collect(),
        Vec::new(),
    ] {
        let mut s = attacker.dialer.connect().unwrap();
        s.write_all(&bytes).unwrap();
        open.push(s);
    }
    target.assert_serves(None, "garbage first packets").await;
    drop(open);
}

#[tokio::test]
async fn t8_wills_on_wildcard_and_system_topics_do_not_break_the_router() {
    wills_on_wildcard_and_system_topics(Listener::Plaintext).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t8_wills_on_wildcard_and_system_topics_do_not_break_the_router_over_tls() {
    wills_on_wildcard_and_system_topics(Listener::Tls).await;
}

async fn wills_on_wildcard_and_system_topics(listener: Listener) {
    // A client whose last will targets a filter, not a topic, vanishes
    // without DISCONNECT so the broker publishes the will.
    let target = Target::start(listener, None).await;
    let attacker = target.attacker.clone();
    tokio::task::spawn_blocking(move || {
        for (i, topic) in ["a/+/b", "#", "device/+/confirm", "$SYS/x", "", "a//b"]
            .into_iter()
            .enumerate()
        {
            let id = attacker.id(&format!("will-{i}"));
            let connect = Connect {
                will: Some((topic, b"{\"accept\":true}")),
                ..attacker.connect(&id)
            };
            // Accepted or refused, either is fine; the socket then drops.
            drop(attacker.open_session(&connect));
        }
    })
    .await
    .unwrap();
    target.assert_serves(None, "wills on wildcard topics").await;
}

#[tokio::test]
async fn t8_one_valid_id_reconnecting_200_times_does_not_brick_the_listener() {
    one_valid_id_reconnecting_200_times(Listener::Plaintext).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t8_one_valid_id_reconnecting_200_times_does_not_brick_the_listener_over_tls() {
    one_valid_id_reconnecting_200_times(Listener::Tls).await;
}

async fn one_valid_id_reconnecting_200_times(listener: Listener) {
    let target = Target::start(listener, None).await;
    let attacker = target.attacker.clone();
    tokio::task::spawn_blocking(move || {
        // Keeping the previous connection open while the next connects
        // makes the broker take the session over; the others leave with a
        // DISCONNECT or by dropping the socket, and every third asks for a
        // persistent session.
        let id = attacker.id("flapping-device");
        let mut previous: Option<RawStream> = None;
        for round in 0..200 {
            let connect = Connect {
                clean_session: round % 3 != 0,
                ..attacker.connect(&id)
            };
            let mut s = attacker
                .open_session(&connect)
                .unwrap_or_else(|| panic!("round {round}: the reconnect was refused"));
            match round % 4 {
                0 => {
                    let _ = s.write_all(&DISCONNECT);
                }
                1 => drop(s),
                _ => previous = Some(s),
            }
        }
        drop(previous);
    })
    .await
    .unwrap();
    target
        .assert_serves(None, "one id reconnecting 200 times")
        .await;
    target
        .assert_serves(
            Some("flapping-device"),
            "one id reconnecting 200 times (that id itself)",
        )
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t8_secure_mode_login_floods_do_not_brick_the_listener() {
    // The default mode: the auth handler checks every login before the
    // router sees the client. More failed logins than max_connections, the
    // right password with ids the router refuses, and one id reconnecting
    // with a wrong and then the right password; all over TLS.
    const MAX: usize = 20;
    let mut config = secure_test_config();
    config.platform.max_connections = MAX;
    let p = TestPlatform::start_config(config, broker::StartOptions { broker_only: true }).await;
    assert!(p.tls().is_some(), "the default mode serves TLS");
    let legit = Legit::secure_admin(&p);
    let (user, token) = legit.login.clone().unwrap();
    let dialer = p.dialer();
    tokio::task::spawn_blocking(move || {
        let uuid = new_uuid();
        let refused = |what: &str, connect: &Connect| {
            let answer = first_answer(&dialer, &connect.packet());
            assert_ne!(answer, CONNACK_ACCEPTED, "{what}: accepted");
        };
        for i in 0..MAX + 10 {
            let id = format!("intruder-{i}");
            let attempt = Connect::v4(&id);
            match i % 4 {
                0 => refused(
                    "a wrong role password",
                    &Connect {
                        username: Some(&user),
                        password: Some(b"wrong"),
                        ..attempt
                    },
                ),
                1 => refused(
                    "a role without a password",
                    &Connect {
                        username: Some("admin"),
                        ..attempt
                    },
                ),
                2 => refused(
                    "a device UUID with a wrong password",
                    &Connect {
                        client_id: &uuid,
                        username: Some(&uuid),
                        password: Some(b"not-the-hmac"),
                        ..attempt
                    },
                ),
                _ => refused("a walkthrough login", &attempt),
            }
        }
        for id in ["a/b", "wild+card", "hash#", "$SYS"] {
            for _ in 0..10 {
                refused(
                    "the right password with a bad client id",
                    &Connect {
                        username: Some(&user),
                        password: Some(token.as_bytes()),
                        ..Connect::v4(id)
                    },
                );
            }
        }
        let flapping = Connect {
            username: Some(&user),
            ..Connect::v4("ap-flapping")
        };
        for _ in 0..100 {
            refused(
                "a wrong password",
                &Connect {
                    password: Some(b"guess"),
                    ..flapping
                },
            );
        }
        for round in 0..50 {
            let right = Connect {
                password: Some(token.as_bytes()),
                ..flapping
            };
            let mut s = open_session(&dialer, &right)
                .unwrap_or_else(|| panic!("round {round}: the right password was refused"));
            let _ = s.write_all(&DISCONNECT);
        }
    })
    .await
    .unwrap();
    assert_serves(&p, &legit, "login floods in secure mode").await;
}

// ---------------------------------------------------------------------
// The topic ACL, raced: what a client sends in one TCP segment is read in
// one batch; a batch whose read fails part-way must not leave unchecked
// packets for the router to deliver.
// ---------------------------------------------------------------------

/// A QoS 0 PUBLISH by hand, `retain` set or not.
fn publish_qos0(topic: &str, payload: &[u8], retain: bool) -> Vec<u8> {
    let mut body = Vec::new();
    put_str(&mut body, topic.as_bytes());
    body.extend_from_slice(payload);
    packet(if retain { 0x31 } else { 0x30 }, body)
}

/// A PUBLISH header announcing 256 MiB, over any `max_payload_size`: the
/// read fails on the header alone.
const OVERSIZED_HEADER: [u8; 5] = [0x30, 0xff, 0xff, 0xff, 0x7f];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forbidden_publish_before_a_malformed_header_is_never_delivered() {
    // The interleaving: in ONE write, as many allowed PUBLISHes as fill a
    // read batch (max_inflight), then a PUBLISH the client's ACL forbids,
    // then a header that fails the read. The allowed batch is handed to
    // the router; the forbidden PUBLISH starts the next batch, whose read
    // fails before any check ran. Appended to the router's buffer as it
    // was read, it stayed there for the first batch's notification to
    // deliver. Repeated, as it is a race with the router's thread.
    const ROUNDS: usize = 40;
    let config = secure_test_config();
    let batch = config.platform.max_inflight;
    // With its verifier, which keeps the APs an AP logs in as.
    let p = TestPlatform::start_config(config, broker::StartOptions::default()).await;
    let legit = Legit::secure_ap(&p);
    let (user, token) = legit.login.clone().unwrap();
    let forbidden = [
        topics::REGISTRY_ADMIN_REQUEST.to_string(),
        topics::device_gateway(&new_uuid()),
    ];
    // An admin sees every topic: whatever gets through, it receives.
    let (admin, mut inbox, admin_stop) = p.client(&forbidden).await;

    let dialer = p.dialer();
    let attack_topics = forbidden.clone();
    tokio::task::spawn_blocking(move || {
        for round in 0..ROUNDS {
            let id = format!("{user}.race-{round}");
            let mut s = open_session(
                &dialer,
                &Connect {
                    username: Some(&user),
                    password: Some(token.as_bytes()),
                    ..Connect::v4(&id)
                },
            )
            .unwrap_or_else(|| panic!("round {round}: the AP login was refused"));
            let allowed = topics::ap_confirm("ap-1");
            let mut bytes = Vec::new();
            for i in 0..batch {
                bytes.extend(publish_qos0(&allowed, format!("ok {i}").as_bytes(), false));
            }
            let target = &attack_topics[round % attack_topics.len()];
            bytes.extend(publish_qos0(target, b"{\"smuggled\":true}", false));
            bytes.extend_from_slice(&OVERSIZED_HEADER);
            s.write_all(&bytes).unwrap();
            // The broker closes the connection: the read failed.
            let closed = read_until_closed(&mut s);
            assert!(
                closed.is_ok(),
                "round {round}: the broker did not close the connection: {closed:?}"
            );
        }
    })
    .await
    .unwrap();

    // Every attack connection is closed, so whatever it got through is
    // ahead of these in the router; each forbidden topic's messages reach
    // the admin in order. The sentinels are the "generous wait".
    for topic in &forbidden {
        admin
            .publish(topic.clone(), b"sentinel".to_vec())
            .await
            .unwrap();
    }
    let mut sentinels = 0;
    while sentinels < forbidden.len() {
        let msg = next_message(&mut inbox, 20).await;
        assert_eq!(
            String::from_utf8_lossy(&msg.payload),
            "sentinel",
            "a PUBLISH the ACL forbids was delivered on {}",
            msg.topic
        );
        sentinels += 1;
    }
    admin_stop.cancel();
    assert_serves(&p, &legit, "ACL races with malformed headers").await;
}

// ---------------------------------------------------------------------
// Refusals are CONNACK codes, and retained messages are an admin's.
// ---------------------------------------------------------------------

/// Reads until the broker closes `s` (true) or 3 s pass (false).
fn closed_by_broker(mut s: RawStream) -> bool {
    read_until_closed(&mut s).is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_refusal_is_answered_with_its_connack_code() {
    let p = TestPlatform::start_config(secure_test_config(), broker::StartOptions::default()).await;
    let legit = Legit::secure_ap(&p);
    let (user, token) = legit.login.clone().unwrap();
    let dialer = p.dialer();
    tokio::task::spawn_blocking(move || {
        let uuid = new_uuid();
        let ap = Connect {
            username: Some(&user),
            password: Some(token.as_bytes()),
            ..Connect::v4("ap.ap-1.codes")
        };
        for (what, connect, answer) in [
            ("the AP's login", ap, CONNACK_ACCEPTED),
            (
                "a client id the router would refuse",
                Connect {
                    client_id: "ap/../x",
                    ..ap
                },
                CONNACK_IDENTIFIER_REJECTED,
            ),
            (
                "a wrong password",
                Connect {
                    password: Some(b"guess"),
                    ..ap
                },
                CONNACK_BAD_LOGIN,
            ),
            (
                "an unknown user",
                Connect {
                    username: Some("nobody"),
                    ..ap
                },
                CONNACK_BAD_LOGIN,
            ),
            (
                "a device that is not enrolled",
                Connect {
                    client_id: &uuid,
                    username: Some(&uuid),
                    password: Some(b"not-the-hmac"),
                    ..ap
                },
                CONNACK_BAD_LOGIN,
            ),
            (
                "no login in secure mode",
                Connect {
                    username: None,
                    password: None,
                    ..ap
                },
                CONNACK_NOT_AUTHORIZED,
            ),
            (
                "a role user with a device's id",
                Connect {
                    client_id: &uuid,
                    ..ap
                },
                CONNACK_NOT_AUTHORIZED,
            ),
            (
                "a device with another client id",
                Connect {
                    client_id: "not-its-id",
                    username: Some(&uuid),
                    password: Some(b"x"),
                    ..ap
                },
                CONNACK_NOT_AUTHORIZED,
            ),
        ] {
            assert_eq!(first_answer(&dialer, &connect.packet()), answer, "{what}");
        }
    })
    .await
    .unwrap();
    assert_serves(&p, &legit, "refusals with CONNACK codes").await;
}

/// An admin's raw session on a secure platform.
fn admin_session(p: &TestPlatform, client_id: &str) -> RawStream {
    let token = p.token("admin");
    open_session(
        &p.dialer(),
        &Connect {
            username: Some("admin"),
            password: Some(token.as_bytes()),
            ..Connect::v4(client_id)
        },
    )
    .expect("the admin login was refused")
}

/// A fresh admin subscriber to `filter`: the retained messages it is
/// given, up to the live `sentinel` an admin then publishes there.
async fn retained_before_sentinel(
    p: &TestPlatform,
    filter: &str,
    sentinel_topic: &str,
) -> Vec<String> {
    let (bus, mut inbox, stop) = p.client(&[filter.to_owned()]).await;
    bus.publish(sentinel_topic, b"sentinel".to_vec())
        .await
        .unwrap();
    let mut retained = Vec::new();
    loop {
        let msg = next_message(&mut inbox, 20).await;
        if &msg.payload[..] == b"sentinel" {
            break;
        }
        retained.push(format!(
            "{} {}",
            msg.topic,
            String::from_utf8_lossy(&msg.payload)
        ));
    }
    stop.cancel();
    retained
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_an_admin_may_retain_on_the_platform() {
    let p = TestPlatform::start_config(secure_test_config(), broker::StartOptions::default()).await;
    let legit = Legit::secure_ap(&p);
    let (user, token) = legit.login.clone().unwrap();
    let topic = topics::ap_confirm("ap-1");
    let dialer = p.dialer();
    let (t, id) = (topic.clone(), format!("{user}.retain"));
    tokio::task::spawn_blocking(move || {
        let ap = Connect {
            username: Some(&user),
            password: Some(token.as_bytes()),
            ..Connect::v4(&id)
        };
        // The AP may publish on its confirm topic, but not retain there.
        let mut s = open_session(&dialer, &ap).expect("the AP login was refused");
        s.write_all(&publish_qos0(&t, b"live", false)).unwrap();
        s.write_all(&publish_qos0(&t, b"retained by the AP", true))
            .unwrap();
        assert!(
            closed_by_broker(s),
            "a retained PUBLISH by the AP was let through"
        );
        // Nor leave a retained last will.
        let with_will = Connect {
            will: Some((&t, b"the AP's retained will")),
            will_retain: true,
            ..ap
        };
        assert_eq!(
            first_answer(&dialer, &with_will.packet()),
            CONNACK_NOT_AUTHORIZED
        );
        // A last will that does not retain is still fine (and, left with
        // a DISCONNECT, not published).
        let plain_will = Connect {
            will: Some((&t, b"a will")),
            ..ap
        };
        let mut s = open_session(&dialer, &plain_will).expect("a plain will was refused");
        s.write_all(&DISCONNECT).unwrap();
        assert!(closed_by_broker(s));
    })
    .await
    .unwrap();
    let kept = retained_before_sentinel(&p, &topic, &topic).await;
    assert!(kept.is_empty(), "kept for the AP: {kept:?}");

    // An admin's retained message is kept and given to new subscribers.
    let admin_topic = topics::ap_prompt("ap-1");
    let mut admin = admin_session(&p, &unique_id("admin-retain"));
    admin
        .write_all(&publish_qos0(&admin_topic, b"retained by an admin", true))
        .unwrap();
    admin.write_all(&DISCONNECT).unwrap();
    assert!(closed_by_broker(admin));
    let kept = retained_before_sentinel(&p, &admin_topic, &admin_topic).await;
    assert_eq!(kept, vec![format!("{admin_topic} retained by an admin")]);
    // An empty PUBLISH without the retain flag does not clear it.
    let (bus, _inbox, stop) = p.client(&[]).await;
    bus.publish(admin_topic.clone(), Vec::new()).await.unwrap();
    stop.cancel();
    bus.closed(SERVED_WITHIN).await;
    let kept = retained_before_sentinel(&p, &admin_topic, &admin_topic).await;
    assert_eq!(kept, vec![format!("{admin_topic} retained by an admin")]);
    assert_serves(&p, &legit, "retained publishes and wills").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_retained_store_is_capped_even_for_an_admin() {
    use broker::embedded::MAX_RETAINED_COUNT;
    let p = TestPlatform::start_config(
        secure_test_config(),
        broker::StartOptions { broker_only: true },
    )
    .await;
    let prefix = unique_id("cap");
    let mut admin = admin_session(&p, &unique_id("admin-cap"));
    let mut bytes = Vec::new();
    for i in 0..MAX_RETAINED_COUNT {
        bytes.extend(publish_qos0(&format!("{prefix}/{i}"), b"kept", true));
    }
    // Over the cap: delivered, not retained.
    bytes.extend(publish_qos0(&format!("{prefix}/over"), b"not kept", true));
    admin.write_all(&bytes).unwrap();
    admin.write_all(&DISCONNECT).unwrap();
    assert!(closed_by_broker(admin));

    let over = format!("{prefix}/over");
    assert!(retained_before_sentinel(&p, &over, &over).await.is_empty());
    let last = format!("{prefix}/{}", MAX_RETAINED_COUNT - 1);
    assert_eq!(
        retained_before_sentinel(&p, &last, &last).await,
        vec![format!("{last} kept")]
    );
    // Clearing one (an empty retained PUBLISH) makes room for another.
    let mut admin = admin_session(&p, &unique_id("admin-cap"));
    admin
        .write_all(&publish_qos0(&format!("{prefix}/0"), b"", true))
        .unwrap();
    admin
        .write_all(&publish_qos0(&over, b"kept now", true))
        .unwrap();
    admin.write_all(&DISCONNECT).unwrap();
    assert!(closed_by_broker(admin));
    assert_eq!(
        retained_before_sentinel(&p, &over, &over).await,
        vec![format!("{over} kept now")]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_may_not_retain_on_its_gateway() {
    // Walkthrough mode: the gateway admits its assigned devices without a
    // signed assignment, and still refuses them a retained PUBLISH.
    let p = TestPlatform::start().await;
    let uuid = new_uuid();
    let mut device = p.home(&uuid, None);
    let (gw, _) = device.connected(10).await;
    device.stop.cancel();
    let _ = device.task.await;
    let addr: std::net::SocketAddr = p
        .gateways()
        .iter()
        .find(|(id, _)| *id == gw)
        .map(|(_, a)| a.parse().unwrap())
        .unwrap();
    let presence = topics::device_presence(&uuid);
    let dialer = p.dialer_at(addr);
    tokio::task::spawn_blocking(move || {
        let connect = Connect::v4(&uuid);
        let mut s = open_session(&dialer, &connect).expect("the assigned device was refused");
        s.write_all(&publish_qos0(&presence, br#"{"online":true}"#, true))
            .unwrap();
        assert!(
            closed_by_broker(s),
            "a retained PUBLISH on a gateway was let through"
        );
        // Its connection without retain still works.
        let mut s = open_session(&dialer, &connect).expect("the device was refused after");
        s.write_all(&publish_qos0(&presence, br#"{"online":true}"#, false))
            .unwrap();
        s.write_all(&DISCONNECT).unwrap();
    })
    .await
    .unwrap();
}

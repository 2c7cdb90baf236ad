//! MQTT over TLS, the default secure mode's only transport: what a TLS
//! listener does with clients that do not speak TLS (or say nothing),
//! what a client that does not trust the server is told, and sessions
//! resumed by clients that keep their TLS configuration, and stalled
//! handshakes from one address that hold up no other. Counted in
//! `platform_tls_handshakes_total` and
//! `platform_tls_handshake_failures_total`, read as a scraper would.

use crate::metrics::{scrape, value, wait_for, wait_for_at_least};
use bus::{Bus, BusError, LinkState};
use platform_tests::*;
use protocol::topics;
use std::io::Write;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

/// The handshake deadline (`platform.connection_timeout_ms`) of the
/// platform that silence is tried on: short, so that silence is cut well
/// before a read here gives up (3 s), and long enough for a handshake on
/// a busy machine.
const DEADLINE_MS: u16 = 1000;

/// A secure platform, its broker alone; TLS handshakes cut after
/// `deadline_ms` if given.
async fn tls_broker(deadline_ms: Option<u16>) -> TestPlatform {
    let mut config = secure_test_config();
    if let Some(ms) = deadline_ms {
        config.platform.connection_timeout_ms = ms;
    }
    let p = TestPlatform::start_config(config, broker::StartOptions { broker_only: true }).await;
    assert!(p.tls().is_some(), "secure mode serves TLS");
    p
}

fn failures(broker: &str, reason: &str) -> String {
    format!(r#"platform_tls_handshake_failures_total{{broker="{broker}",reason="{reason}"}}"#)
}

fn handshakes(broker: &str, kind: &str) -> String {
    format!(r#"platform_tls_handshakes_total{{broker="{broker}",kind="{kind}"}}"#)
}

/// The platform broker's handshake counts now, by series.
async fn counts(metrics: SocketAddr, series: &[String]) -> Vec<f64> {
    let text = scrape(metrics).await;
    series
        .iter()
        .map(|s| value(&text, s).unwrap_or_else(|| panic!("no {s} in\n{text}")))
        .collect()
}

/// A plaintext MQTT 3.1.1 CONNECT, as a client without TLS sends it.
fn plaintext_connect(client_id: &str) -> Vec<u8> {
    let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 4, 0b0000_0010, 0, 30];
    body.extend_from_slice(&(client_id.len() as u16).to_be_bytes());
    body.extend_from_slice(client_id.as_bytes());
    let mut packet = vec![0x10, body.len() as u8];
    packet.extend(body);
    packet
}

/// An admin client of `p` is served: it subscribes, publishes, and gets
/// its own message back.
async fn assert_admin_served(p: &TestPlatform, after: &str) {
    let topic = topics::ap_prompt("ap-1");
    let (bus, mut inbox, stop) = p.client(std::slice::from_ref(&topic)).await;
    bus.publish(topic.clone(), b"served".to_vec())
        .await
        .unwrap();
    let msg = next_message(&mut inbox, 10).await;
    assert_eq!(
        (msg.topic.as_str(), &msg.payload[..]),
        (topic.as_str(), &b"served"[..]),
        "after {after}"
    );
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_listener_answers_plaintext_garbage_and_silence_with_nothing_and_counts_them() {
    let p = tls_broker(Some(DEADLINE_MS)).await;
    let metrics = p.metrics_addr().unwrap();
    let series: Vec<String> = ["not_tls", "timeout", "error"]
        .iter()
        .map(|r| failures("platform", r))
        .collect();
    let before = counts(metrics, &series).await;
    let plain = Dialer {
        addr: p.addr,
        tls: None,
        gateway: None,
    };
    tokio::task::spawn_blocking(move || {
        for (what, bytes) in [
            // A plaintext client: its CONNECT gets no CONNACK.
            ("a plaintext CONNECT", plaintext_connect("plain-client")),
            // Bytes that are neither TLS nor MQTT.
            (
                "random bytes",
                vec![0x9c, 0x3e, 0x71, 0x05, 0xd2, 0x48, 0xaf, 0x13, 0x6b, 0xe0],
            ),
            // A TLS handshake record that holds garbage.
            (
                "a garbage handshake record",
                vec![0x16, 3, 1, 0, 5, 1, 2, 3, 4, 5],
            ),
        ] {
            let mut s = plain.connect().unwrap();
            s.write_all(&bytes).unwrap();
            let answer = read_until_closed(&mut s);
            assert!(
                matches!(&answer, Ok(bytes) if bytes.is_empty()),
                "{what}: not closed unanswered: {answer:?}"
            );
        }
        // A client that connects and sends nothing is closed once the
        // handshake deadline passes (reads here give up after 3 s).
        let mut silent = plain.connect().unwrap();
        let answer = read_until_closed(&mut silent);
        assert!(
            matches!(&answer, Ok(bytes) if bytes.is_empty()),
            "a silent client was not closed after {DEADLINE_MS} ms: {answer:?}"
        );
    })
    .await
    .unwrap();
    let want: Vec<(&str, f64)> = vec![
        (&series[0], before[0] + 2.0),
        (&series[1], before[1] + 1.0),
        (&series[2], before[2] + 1.0),
    ];
    wait_for(metrics, &want).await;

    // A client that finishes the handshake and then sends no CONNECT is
    // closed too (rumqttd's own wait for CONNECT, as long again).
    let dialer = p.dialer();
    tokio::task::spawn_blocking(move || {
        let mut s = dialer.connect().expect("a TLS client was refused");
        let answer = read_until_closed(&mut s);
        assert!(
            matches!(&answer, Ok(bytes) if bytes.is_empty()),
            "a TLS client without CONNECT was not closed: {answer:?}"
        );
    })
    .await
    .unwrap();
    // And the listener still serves.
    assert_admin_served(&p, "plaintext, garbage and silence").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_handshakes_from_one_address_do_not_delay_an_admin_from_another() {
    // Handshakes are cut after 20 s: the admin below must be served long
    // before any staller is cut to make room for it.
    let p = tls_broker(Some(20_000)).await;
    let metrics = p.metrics_addr().unwrap();
    let cut = [
        failures("platform", "timeout"),
        failures("platform", "source_busy"),
    ];
    let before = counts(metrics, &cut).await;
    // 200 clients from 127.0.0.2 that each send a handshake record's
    // first byte and stall: far more than the listener's turns
    // (tls::HANDSHAKES_AT_ONCE), all from one address.
    let mut stallers = Vec::new();
    for _ in 0..200 {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        let mut tcp = socket.connect(p.addr).await.unwrap();
        tcp.write_all(&[0x16]).await.unwrap();
        stallers.push(tcp);
    }
    // An admin from 127.0.0.1: TLS, CONNECT and CONNACK, a round trip.
    let started = Instant::now();
    tokio::time::timeout(
        Duration::from_secs(8),
        assert_admin_served(&p, "200 stalled handshakes from 127.0.0.2"),
    )
    .await
    .expect("the admin from 127.0.0.1 waited behind 127.0.0.2's stalled handshakes");
    let took = started.elapsed();
    assert_eq!(
        counts(metrics, &cut).await,
        before,
        "stallers were cut before the admin was served ({took:?})"
    );
    drop(stallers);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_trusts_another_ca_is_told_at_once_which_broker_failed() {
    let p = tls_broker(None).await;
    let metrics = p.metrics_addr().unwrap();
    let alerts = [failures("platform", "alert")];
    let before = counts(metrics, &alerts).await;
    let stranger = tls::ClientTls::from_pem(
        tls::Ca::generate("a stranger's CA")
            .unwrap()
            .cert_pem()
            .as_bytes(),
        "stranger.pem",
    )
    .unwrap();
    let stop = CancellationToken::new();
    let opts = bus::BusOptions::new(&p.broker(), unique_id("trusts-a-stranger"))
        .unwrap()
        .with_credentials("admin", p.token("admin"))
        .with_tls(Some(stranger.config()));
    let (bus, _inbox) = Bus::connect(opts, Vec::new(), stop.clone());
    // Far longer than a refusal takes: a timeout here is the failure.
    match bus.ready(Duration::from_secs(60)).await {
        Err(BusError::Untrusted { addr, reason }) => {
            assert_eq!(addr, p.broker());
            assert!(
                reason.contains("not signed by a CA this client trusts"),
                "{reason}"
            );
        }
        other => panic!("expected Untrusted, got {other:?}"),
    }
    assert!(
        matches!(bus.state(), LinkState::Untrusted(_)),
        "{:?}",
        bus.state()
    );
    stop.cancel();
    // The client said why with an alert, and the listener counted it.
    wait_for_at_least(metrics, &[(&alerts[0], before[0] + 1.0)]).await;

    // A device that trusts the stranger does not onboard, and says why.
    let mut device = p.device_config(&new_uuid(), "pt", true);
    device.tls = Some(stranger.config());
    match onboard(device).await {
        Err(device_sim::DeviceError::Bus(BusError::Untrusted { addr, .. })) => {
            assert_eq!(addr, p.broker())
        }
        other => panic!("expected Untrusted, got {other:?}"),
    }
    assert_admin_served(&p, "clients that trust another CA").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_that_does_not_name_the_host_is_not_trusted() {
    // Certificates name the listener's address and `tls.names`; with no
    // names, `localhost` is not one of them.
    let mut config = secure_test_config();
    config.tls.names.clear();
    let p = TestPlatform::start_config(config, broker::StartOptions { broker_only: true }).await;
    let stop = CancellationToken::new();
    let by_name = format!("localhost:{}", p.addr.port());
    let opts = p
        .options_at(&by_name, unique_id("by-name"))
        .with_credentials("admin", p.token("admin"));
    let (bus, _inbox) = Bus::connect(opts, Vec::new(), stop.clone());
    match bus.ready(Duration::from_secs(60)).await {
        Err(BusError::Untrusted { addr, reason }) => {
            assert_eq!(addr, by_name);
            assert!(reason.contains("does not name the host"), "{reason}");
        }
        other => panic!("expected Untrusted, got {other:?}"),
    }
    stop.cancel();
    // By its address, the same CA is trusted.
    assert_admin_served(&p, "a connection by an unnamed host").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plaintext_client_of_a_tls_listener_gets_no_connack() {
    let p = tls_broker(None).await;
    let stop = CancellationToken::new();
    let opts = bus::BusOptions::new(&p.broker(), unique_id("plaintext"))
        .unwrap()
        .with_credentials("admin", p.token("admin"));
    let (bus, _inbox) = Bus::connect(opts, Vec::new(), stop.clone());
    let result = bus.ready_once(Duration::from_secs(10)).await;
    assert!(result.is_err(), "a plaintext client was served");
    assert!(
        matches!(bus.state(), LinkState::Down(_)),
        "closed without a CONNACK: {:?}",
        bus.state()
    );
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_keeps_its_tls_configuration_resumes_its_session() {
    let p = tls_broker(None).await;
    let metrics = p.metrics_addr().unwrap();
    let series = [
        handshakes("platform", "full"),
        handshakes("platform", "resumed"),
    ];
    let admin = p.token("admin");
    let session = |config: &bus::TlsConfig| {
        let stop = CancellationToken::new();
        let opts = bus::BusOptions::new(&p.broker(), unique_id("resumer"))
            .unwrap()
            .with_credentials("admin", &admin)
            .with_tls(Some(config.clone()));
        let (bus, _inbox) = Bus::connect(opts, Vec::new(), stop.clone());
        async move {
            bus.ready(Duration::from_secs(10)).await.unwrap();
            // A round trip, so that the session ticket the server sent
            // after the handshake has been read.
            bus.publish(topics::ap_prompt("ap-1"), b"x".to_vec())
                .await
                .unwrap();
            stop.cancel();
            bus.closed(Duration::from_secs(5)).await;
        }
    };
    let mine = p.tls_config().unwrap();
    let start = counts(metrics, &series).await;
    session(&mine).await;
    let want = [start[0] + 1.0, start[1]];
    wait_for(metrics, &[(&series[0], want[0]), (&series[1], want[1])]).await;
    // The same configuration again: its session is resumed, each time.
    for n in 1..=2 {
        session(&mine).await;
        wait_for(
            metrics,
            &[(&series[0], want[0]), (&series[1], want[1] + f64::from(n))],
        )
        .await;
    }
    // Another client's configuration has nothing to resume.
    session(&p.tls_config().unwrap()).await;
    wait_for(
        metrics,
        &[(&series[0], want[0] + 1.0), (&series[1], want[1] + 2.0)],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_that_comes_back_resumes_its_tls_sessions() {
    // The whole platform: the device asks the registry on the platform
    // broker for its gateway, then connects there; every listener of the
    // process shares its ticket keys.
    let p = TestPlatform::start_config(secure_test_config(), broker::StartOptions::default()).await;
    let metrics = p.metrics_addr().unwrap();
    let uuid = new_uuid();
    p.enroll(&uuid, "pt").await;
    let brokers: Vec<String> = std::iter::once("platform".to_owned())
        .chain(p.gateways().iter().map(|(id, _)| format!("gateway-{id}")))
        .collect();
    let resumed: Vec<String> = brokers.iter().map(|b| handshakes(b, "resumed")).collect();
    // Only this device keeps a TLS configuration across connections (every
    // other client here makes a new one), so only it can resume.
    let total = |v: Vec<f64>| v.iter().sum::<f64>();
    let on = |v: &[f64], gateway: &str| {
        let i = brokers
            .iter()
            .position(|b| *b == format!("gateway-{gateway}"))
            .unwrap();
        v[i]
    };
    let start = counts(metrics, &resumed).await;
    let mut device = p.home_secure(&uuid).await;
    let (first, _) = device.connected(20).await;
    device.stop.cancel();
    let _ = device.task.await;
    // Its first connection to its gateway is a full handshake: a session
    // the device made with the platform at the same address is not offered
    // to a gateway (though every listener here would take its ticket), a
    // gateway proves its own id.
    let once = counts(metrics, &resumed).await;
    assert_eq!(
        on(&once, &first),
        on(&start, &first),
        "the device resumed the platform's session on gateway {first}"
    );
    // Back again: it resumes on the platform and on its gateway.
    let mut device = p.home_secure(&uuid).await;
    let (again, _) = device.connected(20).await;
    assert_eq!(again, first, "the device moved");
    device.stop.cancel();
    let _ = device.task.await;
    let twice = counts(metrics, &resumed).await;
    assert!(
        on(&twice, &first) > on(&once, &first) && total(twice.clone()) >= total(once.clone()) + 2.0,
        "the device that came back did not resume both its sessions: \
         {start:?} -> {once:?} -> {twice:?} resumed on {brokers:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_registered_with_a_certificate_request_is_issued_one_for_its_id_and_a_device_verifies_it(
) {
    let p = TestPlatform::start_config(secure_test_config(), broker::StartOptions::default()).await;
    let ca = std::fs::read_to_string(protocol::layout::ca_file(p.dir.path())).unwrap();
    let registry = p.registry().await;
    let listen: SocketAddr = format!("127.0.0.1:{}", harness::free_port().unwrap())
        .parse()
        .unwrap();
    let registered =
        register_gateway_with_certificate(&registry, "gw-9", &listen.to_string()).await;
    tls::verify_chain(&ca, &registered.chain_pem, "gw-9.gateway.invalid").unwrap();
    // Not its address, not the platform's names, not another gateway.
    for not_it in ["127.0.0.1", "localhost", "gw-1.gateway.invalid"] {
        assert!(
            tls::verify_chain(&ca, &registered.chain_pem, not_it).is_err(),
            "gw-9's certificate verifies as {not_it}"
        );
    }
    // The names are the platform's, whatever the request asks for.
    let (request, _key) = tls::request(&["evil.example".into(), "localhost".into()]).unwrap();
    let answer = registry
        .request(protocol::registry_admin::RegistryOp::GatewayRegister {
            gateway_id: "gw-10".into(),
            address: "127.0.0.1:10".into(),
            weight: 1,
            credential_sha256: Some(protocol::crypto::sha256_hex("gw-10's credential")),
            certificate_request: Some(request),
        })
        .await
        .unwrap();
    let chain = match answer {
        protocol::registry_admin::RegistryOk::GatewayRegistered {
            certificate: Some(chain),
            ..
        } => chain,
        other => panic!("{other:?}"),
    };
    tls::verify_chain(&ca, &chain, "gw-10.gateway.invalid").unwrap();
    for not_it in ["evil.example", "localhost", "127.0.0.1"] {
        assert!(tls::verify_chain(&ca, &chain, not_it).is_err(), "{not_it}");
    }
    // Junk is refused, and registers nothing.
    let junk = registry
        .request(protocol::registry_admin::RegistryOp::GatewayRegister {
            gateway_id: "gw-11".into(),
            address: "127.0.0.1:11".into(),
            weight: 1,
            credential_sha256: None,
            certificate_request: Some("not a request".into()),
        })
        .await;
    assert!(junk.is_err(), "{junk:?}");
    match registry
        .request(protocol::registry_admin::RegistryOp::Gateways)
        .await
        .unwrap()
    {
        protocol::registry_admin::RegistryOk::Gateways { gateways } => {
            assert!(
                !gateways.iter().any(|g| g.gateway_id == "gw-11"),
                "{gateways:?}"
            )
        }
        other => panic!("{other:?}"),
    }

    // gw-9 runs with what it was issued, as `broker gateway --cert --key`
    // does, and a device assigned to it connects: verified by its id.
    let cert = p.dir.path().join("gw-9.crt");
    let key = p.dir.path().join("gw-9.key");
    std::fs::write(&cert, &registered.chain_pem).unwrap();
    std::fs::write(&key, &registered.key_pem).unwrap();
    let stop = CancellationToken::new();
    let gw = broker::gateway::start(
        &broker::config::GatewaySection {
            id: "gw-9".into(),
            listen,
            advertise: None,
            weight: 1,
            close_after_notice_ms: broker::config::DEFAULT_CLOSE_AFTER_NOTICE_MS,
        },
        &broker::config::BrokerSettings::default(),
        &p.broker(),
        &broker::gateway::GatewaySecurity {
            login: (
                protocol::logins::gateway_login("gw-9"),
                registered.credential.clone(),
            ),
            platform_key: p.platform_key(),
            platform_tls: p.tls(),
        },
        broker::gateway::Served {
            tls: Some(broker::certs::gateway_listener(&cert, &key).unwrap()),
            ..Default::default()
        },
        stop.clone(),
    )
    .await
    .unwrap();
    let uuid = new_uuid();
    p.enroll(&uuid, "pt").await;
    let assigned = registry
        .request(protocol::registry_admin::RegistryOp::Assign {
            device_id: uuid.clone(),
            gateway_id: "gw-9".into(),
        })
        .await
        .unwrap();
    assert!(
        matches!(
            assigned,
            protocol::registry_admin::RegistryOk::Assignment(_)
        ),
        "{assigned:?}"
    );
    let mut device = p.home_secure(&uuid).await;
    let (on, _) = device.connected(30).await;
    assert_eq!(on, "gw-9");
    device.stop.cancel();
    let _ = device.task.await;
    stop.cancel();
    gw.join().await;
    registry.close().await;
}

/// A server with a certificate and its key, as whoever holds them can run
/// one: it answers any CONNECT with a CONNACK and keeps what it was sent.
pub(crate) struct Impostor {
    pub addr: SocketAddr,
    heard: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    stop: CancellationToken,
}

impl Impostor {
    pub(crate) async fn serve(chain_pem: &str, key_pem: &str) -> Impostor {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let server = tls::ServerTls::new(
            chain_pem,
            key_pem,
            "the impostor's certificate",
            tls::ServerTls::tickets().unwrap(),
        )
        .unwrap();
        let acceptor = server.acceptor(Duration::from_secs(10));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let heard = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let stop = CancellationToken::new();
        let (ears, token) = (heard.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                let tcp = tokio::select! {
                    _ = token.cancelled() => return,
                    accepted = listener.accept() => match accepted {
                        Ok((tcp, _)) => tcp,
                        Err(_) => return,
                    },
                };
                let (acceptor, ears) = (acceptor.clone(), ears.clone());
                tokio::spawn(async move {
                    let Ok((mut stream, _)) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut buf = [0u8; 4096];
                    let mut answered = false;
                    while let Ok(n) = stream.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        ears.lock().unwrap().extend_from_slice(&buf[..n]);
                        if !answered && buf[0] >> 4 == 1 {
                            answered = true;
                            if stream.write_all(&[0x20, 2, 0, 0]).await.is_err() {
                                break;
                            }
                        }
                    }
                });
            }
        });
        Impostor { addr, heard, stop }
    }

    /// Whether `secret` is in anything a client sent it.
    pub(crate) fn heard(&self, secret: &str) -> bool {
        let heard = self.heard.lock().unwrap();
        heard.windows(secret.len()).any(|w| w == secret.as_bytes())
    }
}

impl Drop for Impostor {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// A gateway's certificate, issued the real way (a registration with a
/// certificate request), and the gateway id it was issued for.
pub(crate) async fn issued_gateway_certificate(p: &TestPlatform) -> RegisteredGateway {
    let registry = p.registry().await;
    let registered = register_gateway_with_certificate(&registry, "gw-9", "127.0.0.1:8886").await;
    registry.close().await;
    registered
}

/// A TLS handshake with `config` to `addr`, as a client of it completes
/// one: Ok, or why not.
fn handshake(config: bus::TlsConfig, addr: SocketAddr) -> Result<(), String> {
    let mut tcp = std::net::TcpStream::connect(addr).map_err(|e| e.to_string())?;
    let mut conn = rustls::ClientConnection::new(
        config,
        rustls::pki_types::ServerName::IpAddress(addr.ip().into()),
    )
    .map_err(|e| e.to_string())?;
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// T26: a gateway's operator runs a server with the certificate and key
/// the platform issued the gateway, where the platform is looked for (by
/// `localhost` or by the platform's IP). The platform's clients do not
/// take it for the platform, nor a device for another gateway, and none
/// sends it a login; `openssl s_client` checking either name refuses it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t26_a_gateways_certificate_does_not_prove_the_platform_or_another_gateway() {
    let p = TestPlatform::start_config(secure_test_config(), broker::StartOptions::default()).await;
    let gw9 = issued_gateway_certificate(&p).await;
    let impostor = Impostor::serve(&gw9.chain_pem, &gw9.key_pem).await;
    let admin = p.token("admin");
    for host in ["localhost", "127.0.0.1"] {
        let at = format!("{host}:{}", impostor.addr.port());
        let stop = CancellationToken::new();
        let opts = p
            .options_at(&at, unique_id("fooled"))
            .with_credentials("admin", &admin);
        let (bus, _inbox) = Bus::connect(opts, Vec::new(), stop.clone());
        match bus.ready(Duration::from_secs(60)).await {
            Err(BusError::Untrusted { reason, .. }) => {
                assert!(reason.contains("does not name the host"), "{reason}")
            }
            other => panic!("gw-9's certificate was taken for the platform at {at}: {other:?}"),
        }
        stop.cancel();
    }
    // A device verifies a gateway by the id its assignment names: gw-9's
    // certificate is gw-9's (the check works), and not gw-1's.
    let device = p.tls().unwrap().device();
    let (gw1, gw9_config) = (
        device.gateway("gw-1").unwrap(),
        device.gateway("gw-9").unwrap(),
    );
    let addr = impostor.addr;
    let (as_gw1, as_gw9) =
        tokio::task::spawn_blocking(move || (handshake(gw1, addr), handshake(gw9_config, addr)))
            .await
            .unwrap();
    assert!(
        as_gw1
            .as_ref()
            .is_err_and(|e| e.contains("not valid for name")),
        "gw-9's certificate was taken for gw-1's: {as_gw1:?}"
    );
    as_gw9.unwrap();
    // openssl, checking the platform's name or address, refuses it; given
    // the gateway's name, it verifies.
    let ca = protocol::layout::ca_file(p.dir.path());
    let connect = impostor.addr.to_string();
    let s_client = |check: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(["s_client", "-connect", &connect, "-CAfile"])
            .arg(&ca)
            .args(["-verify_return_error", "-brief"])
            .args(check)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    for check in [
        &["-verify_hostname", "localhost"][..],
        &["-verify_ip", "127.0.0.1"],
        &["-verify_hostname", "gw-1.gateway.invalid"],
    ] {
        let (ok, said) = tokio::task::block_in_place(|| s_client(check));
        assert!(!ok, "openssl {check:?} verified gw-9's certificate: {said}");
    }
    let (ok, said) =
        tokio::task::block_in_place(|| s_client(&["-verify_hostname", "gw-9.gateway.invalid"]));
    assert!(ok, "openssl did not verify gw-9 by its name: {said}");
    assert!(!impostor.heard(&admin), "the admin's token went to gw-9");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_platform_without_tls_issues_no_gateway_certificate_and_says_so() {
    let p = TestPlatform::start().await; // walkthrough: plaintext, no CA
    assert!(p.tls().is_none());
    let (request, _key) = tls::request(&["127.0.0.1".into()]).unwrap();
    let registry = p.registry().await;
    let answer = registry
        .request(protocol::registry_admin::RegistryOp::GatewayRegister {
            gateway_id: "gw-9".into(),
            address: "127.0.0.1:9".into(),
            weight: 1,
            credential_sha256: None,
            certificate_request: Some(request),
        })
        .await;
    match answer {
        Err(registry::RegistryClientError::Refused(body)) => {
            assert!(body.message.contains("no gateway certificates"), "{body:?}")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    registry.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secure_mode_with_tls_off_serves_plaintext_logins_and_all() {
    let mut config = secure_test_config();
    config.tls.enabled = false;
    let p = TestPlatform::start_config(config, broker::StartOptions { broker_only: true }).await;
    assert!(p.tls().is_none(), "tls.enabled = false serves no TLS");
    assert!(p.platform_key().is_some(), "still secure mode");
    // A plaintext admin is served (logins are still checked) ...
    assert_admin_served(&p, "starting with tls.enabled = false").await;
    let stop = CancellationToken::new();
    let opts = p
        .bus_options(unique_id("wrong-password"))
        .with_credentials("admin", "wrong");
    let (bus, _inbox) = Bus::connect(opts, Vec::new(), stop.clone());
    assert!(
        matches!(
            bus.ready_once(Duration::from_secs(10)).await,
            Err(BusError::Refused { .. })
        ),
        "a wrong password was not refused with a CONNACK"
    );
    stop.cancel();
    // ... and a TLS hello gets no handshake.
    let tls = tls::ClientTls::from_pem(
        tls::Ca::generate("any CA").unwrap().cert_pem().as_bytes(),
        "any.pem",
    )
    .unwrap();
    let dialer = Dialer {
        addr: p.addr,
        tls: Some(tls),
        gateway: None,
    };
    let hello = tokio::task::spawn_blocking(move || dialer.connect().map(|_| ()))
        .await
        .unwrap();
    assert!(
        hello.is_err(),
        "a plaintext listener finished a TLS handshake"
    );
}

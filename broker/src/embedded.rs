//! rumqttd 0.20, embedded and fenced.
//!
//! What this module guards against, all checked in rumqttd's source:
//! - `Broker::start()` blocks forever and cannot be stopped, so the broker
//!   runs on its own thread for the life of the process.
//! - `Config::default()` is unusable (`max_connections` 0, tiny segments),
//!   so every field is set from [`BrokerSettings`].
//! - A listener configured as v4 speaks MQTT 3.1.1 and MQTT 5, each
//!   client in the version its CONNECT names (a patch); upstream's v5
//!   support broke 3.1.1 subscribers of a v5 PUBLISH with properties,
//!   which the patch fixes by dropping the properties for them. Other
//!   protocol levels get CONNACK 1.
//! - A client id the router refuses (`+ $ # /`) that reconnects with the
//!   same id can poison a mutex in the listener and brick it. The auth
//!   handler refuses such ids (CONNACK 2) before the router sees them;
//!   the refusal happens before rumqttd registers the connection's will
//!   handler, so answering it with a CONNACK leaves that path untouched.
//!   (rumqttd is patched to ask the handler about every CONNECT, with or
//!   without a login, and to write its verdict as the CONNACK's code;
//!   upstream refused a CONNECT without a login and closed refused ones
//!   without a CONNACK.)
//! - Over `max_connections` the router refuses a connection without a
//!   CONNACK; that path is the router's, not the auth handler's, and is
//!   fenced in the vendored crate (`vendor/rumqttd/PATCHES.md`).
//! - The retained store has no bound upstream; it is capped here at
//!   [`MAX_RETAINED_COUNT`] messages and [`MAX_RETAINED_BYTES`] (a patch),
//!   so that not even an admin can exhaust the broker's memory with it.
//! - With `dynamic_filters` off, a PUBLISH to a topic nobody subscribes to
//!   disconnects the publisher; it is on, which costs a commit log per such
//!   topic (bounded by `segment_size * segment_count`).

use crate::admission::{admit, AclRequest, Admission, Moved, Verdict, INTERNAL_USER};
use crate::config::BrokerSettings;
use metrics::{BrokerLag, BrokerTls};
use rumqttd::{
    AcceptHandler, AuthVerdict, ConnectionSettings, LaggedHandler, RouterConfig, ServerSettings,
    Sessions,
};
use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;
use tracing::{error, warn};

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot start the broker thread: {0}")]
    Thread(std::io::Error),
    #[error("the broker did not start listening on {0} within 5 s")]
    NotListening(SocketAddr),
    #[error("TLS: {0}")]
    Tls(tls::TlsError),
}

/// The accept hook of a TLS listener: the handshake, within `timeout`,
/// counted; a failure is logged once, with the peer and the reason, and
/// the connection dropped.
fn tls_handshake(name: &str, t: ListenerTls, timeout: Duration) -> AcceptHandler {
    let acceptor = t.server.acceptor(timeout);
    let counters = t.counters;
    let broker: Arc<str> = name.into();
    Arc::new(move |tcp, peer| {
        let acceptor = acceptor.clone();
        let counters = counters.clone();
        let broker = broker.clone();
        Box::pin(async move {
            match acceptor.accept(tcp).await {
                Ok((stream, resumed)) => {
                    if resumed {
                        counters.resumed.inc();
                    } else {
                        counters.full.inc();
                    }
                    Some(Box::new(stream) as Box<dyn rumqttd::N>)
                }
                Err((failure, reason)) => {
                    counters.failed(failure.label());
                    warn!(broker = %broker, %peer, failure = failure.label(), "TLS handshake failed: {reason}");
                    None
                }
            }
        })
    })
}

/// At most this many retained messages per broker. The platform's own
/// traffic retains nothing (what a client must know on connect is sent
/// again on every connect: snapshots, announcements), so retained messages
/// are only what an admin (or, in walkthrough mode, anyone) stores by hand.
/// rumqttd also walks every retained message on every SUBSCRIBE, so the
/// count bounds that walk as well as the memory.
pub const MAX_RETAINED_COUNT: usize = 1024;

/// At most this many bytes of retained messages (topics and payloads) per
/// broker, or two of the largest payload the broker accepts if that is
/// more, so that one message of any allowed size can still be retained.
pub const MAX_RETAINED_BYTES: usize = 16 * 1024 * 1024;

/// A listener's TLS: what it serves, and where its handshakes are counted.
#[derive(Debug, Clone)]
pub struct ListenerTls {
    pub server: tls::ServerTls,
    pub counters: BrokerTls,
}

/// A running embedded broker. It lives until the process exits.
#[derive(Debug, Clone)]
pub struct EmbeddedBroker {
    name: String,
    addr: SocketAddr,
    internal_password: String,
    /// How this process's own clients verify the listener: the served
    /// certificate, pinned. None: plaintext.
    internal_tls: Option<tls::ClientTls>,
    /// Its clients' connections, to close one.
    sessions: Sessions,
}

impl EmbeddedBroker {
    /// Starts a broker on `settings.listen` and returns once it accepts
    /// connections. Port 0 picks a free port; [`EmbeddedBroker::addr`] tells which.
    /// Subscribers it disconnects for falling behind its logs are counted
    /// in `lag`. With `tls`, the listener serves MQTT over TLS only.
    pub fn start(
        name: &str,
        settings: &BrokerSettings,
        admission: Arc<dyn Admission>,
        lag: BrokerLag,
        tls: Option<ListenerTls>,
    ) -> Result<Self, BrokerError> {
        // Bind once ourselves: a port in use becomes a clear error here,
        // not a log line on a thread nobody watches; port 0 becomes real.
        let probe = TcpListener::bind(settings.listen).map_err(|source| BrokerError::Bind {
            addr: settings.listen,
            source,
        })?;
        let addr = probe.local_addr().map_err(|source| BrokerError::Bind {
            addr: settings.listen,
            source,
        })?;
        drop(probe);

        // The OS RNG: whoever guesses this password is every in-process worker.
        let internal_password = protocol::crypto::random_b64(32);
        let internal_tls = match &tls {
            Some(t) => {
                Some(tls::ClientTls::pinned(t.server.chain_pem()).map_err(BrokerError::Tls)?)
            }
            None => None,
        };
        let sessions = Sessions::default();
        let mut config = rumqttd_config(name, addr, settings, admission, &internal_password, lag);
        if let Some(server) = config.v4.as_mut().and_then(|v4| v4.get_mut(name)) {
            server.connections.sessions = Some(sessions.clone());
        }
        if let Some(t) = tls {
            let timeout = Duration::from_millis(settings.connection_timeout_ms.into());
            if let Some(server) = config.v4.as_mut().and_then(|v4| v4.get_mut(name)) {
                server.connections.on_accept = Some(tls_handshake(name, t, timeout));
            }
        }
        let thread_name = format!("broker-{name}");
        std::thread::Builder::new()
            .name(thread_name)
            .spawn(move || {
                let mut broker = rumqttd::Broker::new(config);
                if let Err(e) = broker.start() {
                    error!(error = %e, "embedded broker stopped");
                }
            })
            .map_err(BrokerError::Thread)?;

        wait_listening(addr, &internal_password, internal_tls.as_ref())?;
        Ok(EmbeddedBroker {
            name: name.to_owned(),
            addr,
            internal_password,
            internal_tls,
            sessions,
        })
    }

    /// The connections of this broker's clients, by client id: what lets
    /// the process close one (a gateway, a device it moved away).
    pub fn sessions(&self) -> &Sessions {
        &self.sessions
    }

    /// How this process's own clients reach the listener: TLS pinned to
    /// the certificate it serves, or None for plaintext.
    pub fn internal_tls(&self) -> Option<&tls::ClientTls> {
        self.internal_tls.as_ref()
    }

    /// Credentials for this process's own clients of this broker.
    pub fn internal_login(&self) -> (&str, &str) {
        (INTERNAL_USER, &self.internal_password)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

/// The broker is up once it completes an MQTT handshake: CONNECT,
/// CONNACK (accepted), DISCONNECT. A bare TCP connect would race the
/// listener's bind and make rumqttd log a failed handshake.
fn wait_listening(
    addr: SocketAddr,
    password: &str,
    tls: Option<&tls::ClientTls>,
) -> Result<(), BrokerError> {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if handshake(addr, password, tls).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Err(BrokerError::NotListening(addr))
}

fn handshake(
    addr: SocketAddr,
    password: &str,
    tls: Option<&tls::ClientTls>,
) -> std::io::Result<()> {
    use std::io::{Read, Write};
    const CLIENT_ID: &[u8] = b"platform-startup-probe";
    let mut packet = vec![0x10, 0];
    packet.extend_from_slice(&[0, 4, b'M', b'Q', b'T', b'T', 4, 0b1100_0010, 0, 10]);
    for field in [CLIENT_ID, INTERNAL_USER.as_bytes(), password.as_bytes()] {
        packet.extend_from_slice(&(field.len() as u16).to_be_bytes());
        packet.extend_from_slice(field);
    }
    packet[1] = (packet.len() - 2) as u8;
    let mut tcp = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500))?;
    tcp.set_read_timeout(Some(Duration::from_secs(1)))?;
    let mut session = match tls {
        Some(tls) => Some(tls::blocking_session(tls, addr.ip()).map_err(std::io::Error::other)?),
        None => None,
    };
    let mut stream: Box<dyn ReadWrite + '_> = match session.as_mut() {
        Some(session) => Box::new(rustls::Stream::new(session, &mut tcp)),
        None => Box::new(&mut tcp),
    };
    stream.write_all(&packet)?;
    let mut connack = [0u8; 4];
    stream.read_exact(&mut connack)?;
    stream.write_all(&[0xE0, 0])?;
    stream.flush()?;
    if connack == [0x20, 2, 0, 0] {
        Ok(())
    } else {
        Err(std::io::Error::other(format!(
            "unexpected CONNACK {connack:?}"
        )))
    }
}

trait ReadWrite: std::io::Read + std::io::Write {}
impl<T: std::io::Read + std::io::Write> ReadWrite for T {}

fn rumqttd_config(
    name: &str,
    addr: SocketAddr,
    s: &BrokerSettings,
    admission: Arc<dyn Admission>,
    internal_password: &str,
    lag: BrokerLag,
) -> rumqttd::Config {
    let broker_name = name.to_owned();
    let acl_admission = admission.clone();
    let disconnect_admission = admission.clone();
    let mut connections = ConnectionSettings {
        connection_timeout_ms: s.connection_timeout_ms,
        max_payload_size: s.max_payload_size,
        max_inflight_count: s.max_inflight,
        auth: None,
        external_auth: None,
        dynamic_filters: true,
        // Only an admitted client reaches the ACL, so a username of
        // INTERNAL_USER has shown the internal password.
        acl: Some(Arc::new(
            move |client_id: &str, username: &str, request: &AclRequest| {
                username == INTERNAL_USER || acl_admission.allow(client_id, username, request)
            },
        )),
        // Called once per admitted connection; as in the ACL, only this
        // process's own clients were admitted as INTERNAL_USER.
        on_disconnect: Some(Arc::new(move |client_id: &str, username: &str| {
            if username != INTERNAL_USER {
                disconnect_admission.disconnected(client_id);
            }
        })),
        // Set by the caller for a TLS listener.
        on_accept: None,
        // Set by the caller.
        sessions: None,
    };
    let internal_password: Arc<str> = internal_password.into();
    connections.set_auth_verdict_handler(
        move |client_id: String, login: Option<(String, String)>| {
            let admission = admission.clone();
            let internal_password = internal_password.clone();
            async move {
                if !admit(&client_id) {
                    return AuthVerdict::IdentifierRejected;
                }
                let login = login.as_ref().map(|(u, p)| (u.as_str(), p.as_str()));
                if let Some((INTERNAL_USER, password)) = login {
                    let ok = password.as_bytes().ct_eq(internal_password.as_bytes());
                    return AuthVerdict::from(bool::from(ok));
                }
                match admit_with_grace(&*admission, &client_id, login).await {
                    Verdict::NotAuthorized => match admission.moved(&client_id) {
                        Some(Moved { address, permanent }) => AuthVerdict::Moved {
                            permanent,
                            server_reference: Some(address),
                        },
                        None => AuthVerdict::NotAuthorized,
                    },
                    verdict => connack(verdict),
                }
            }
        },
    );
    let server = ServerSettings {
        name: name.to_owned(),
        listen: addr,
        tls: None,
        next_connection_delay_ms: 0,
        connections,
    };
    rumqttd::Config {
        id: 0,
        router: RouterConfig {
            max_connections: s.max_connections,
            max_outgoing_packet_count: 200,
            max_segment_size: s.segment_size,
            max_segment_count: s.segment_count,
            custom_segment: None,
            initialized_filters: None,
            shared_subscriptions_strategy: Default::default(),
            max_retained_count: Some(MAX_RETAINED_COUNT),
            max_retained_bytes: Some(MAX_RETAINED_BYTES.max(2 * s.max_payload_size)),
            // A subscriber the router cut off for falling behind its log
            // (a patch) is counted; it reconnects and resubscribes.
            on_lagged: LaggedHandler(Some(Arc::new(move |client_id, filter, skipped| {
                lag.disconnects.inc();
                lag.messages.inc_by(skipped);
                warn!(broker = %broker_name, client_id, filter, skipped, "subscriber fell behind the broker's log; disconnected it so that it resubscribes");
            }))),
        },
        v4: Some(HashMap::from([(name.to_owned(), server)])),
        v5: None,
        ws: None,
        cluster: None,
        console: None,
        bridge: None,
        prometheus: None,
        metrics: None,
    }
}

/// Asks `admission`, and if it refuses and offers a grace, asks again each
/// time the answer may have changed, until it accepts, the grace is over,
/// or it offers none any more.
async fn admit_with_grace(
    admission: &dyn Admission,
    client_id: &str,
    login: Option<(&str, &str)>,
) -> Verdict {
    let verdict = admission.admit(client_id, login);
    if verdict == Verdict::Accept {
        return verdict;
    }
    let Some((grace, changed)) = admission.grace(client_id, login) else {
        return verdict;
    };
    let deadline = tokio::time::Instant::now() + grace;
    loop {
        let notified = changed.notified();
        let verdict = admission.admit(client_id, login);
        if verdict == Verdict::Accept || admission.grace(client_id, login).is_none() {
            return verdict;
        }
        if tokio::time::timeout_at(deadline, notified).await.is_err() {
            return admission.admit(client_id, login);
        }
    }
}

/// The CONNACK a verdict is written as.
fn connack(verdict: Verdict) -> AuthVerdict {
    match verdict {
        Verdict::Accept => AuthVerdict::Accept,
        Verdict::BadLogin => AuthVerdict::BadUserNamePassword,
        Verdict::NotAuthorized => AuthVerdict::NotAuthorized,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admission::AdmitAll;

    #[test]
    fn a_port_in_use_is_a_clear_error() {
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let settings = BrokerSettings {
            listen: taken.local_addr().unwrap(),
            ..BrokerSettings::default()
        };
        let err = EmbeddedBroker::start(
            "t",
            &settings,
            Arc::new(AdmitAll),
            BrokerLag::default(),
            None,
        )
        .unwrap_err();
        assert!(matches!(err, BrokerError::Bind { .. }), "{err}");
    }

    /// Admits by client id, and counts how often each admitted one is
    /// reported disconnected.
    #[derive(Default)]
    struct Counting {
        disconnected: std::sync::Mutex<HashMap<String, usize>>,
    }

    impl Admission for Counting {
        fn admit(&self, client_id: &str, login: Option<(&str, &str)>) -> Verdict {
            match (client_id, login) {
                ("policy-refused", _) => Verdict::NotAuthorized,
                (_, Some((_, "wrong"))) => Verdict::BadLogin,
                _ => Verdict::Accept,
            }
        }

        fn allow(&self, _client_id: &str, _username: &str, request: &AclRequest) -> bool {
            !request.topic.starts_with("forbidden/")
        }

        fn disconnected(&self, client_id: &str) {
            *self
                .disconnected
                .lock()
                .unwrap()
                .entry(client_id.to_owned())
                .or_default() += 1;
        }
    }

    fn put(buf: &mut Vec<u8>, field: &[u8]) {
        buf.extend_from_slice(&(field.len() as u16).to_be_bytes());
        buf.extend_from_slice(field);
    }

    /// A CONNECT by hand (remaining length < 128).
    fn connect(client_id: &str, login: Option<(&str, &str)>, keep_alive: u16) -> Vec<u8> {
        let flags = if login.is_some() { 0b1100_0010 } else { 0b10 };
        let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 4, flags];
        body.extend_from_slice(&keep_alive.to_be_bytes());
        put(&mut body, client_id.as_bytes());
        if let Some((user, password)) = login {
            put(&mut body, user.as_bytes());
            put(&mut body, password.as_bytes());
        }
        let mut packet = vec![0x10, body.len() as u8];
        packet.extend(body);
        packet
    }

    /// Connects and sends `bytes`; the socket and the CONNACK's code (None:
    /// closed without one).
    fn open(addr: SocketAddr, bytes: &[u8]) -> (std::net::TcpStream, Option<u8>) {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        s.write_all(bytes).unwrap();
        let mut ack = [0u8; 4];
        let code = s.read_exact(&mut ack).ok().map(|()| {
            assert_eq!(&ack[..3], &[0x20, 2, 0], "not a CONNACK: {ack:?}");
            ack[3]
        });
        (s, code)
    }

    /// Blocks until the broker closes `s`.
    fn until_closed(mut s: std::net::TcpStream) {
        use std::io::Read;
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
    }

    /// Every device login is right.
    struct AnyDevice;

    impl crate::security::Directory for AnyDevice {
        fn device(&self, _uuid: &protocol::DeviceUuid) -> Option<crate::security::Enrolled> {
            Some(crate::security::Enrolled::Unkeyed)
        }
        fn ap(&self, _ap_id: &str) -> Option<verifier::ApRecord> {
            None
        }
    }

    #[test]
    fn a_device_login_while_the_verifier_starts_waits_for_it() {
        use crate::security::{Mode, PlatformAuth, Role};
        let users = HashMap::from([(
            "admin".to_owned(),
            (Role::Admin, protocol::crypto::sha256_hex("token")),
        )]);
        let auth = Arc::new(PlatformAuth::new(Mode::Secure, users, Arc::default()));
        let settings = BrokerSettings {
            listen: "127.0.0.1:0".parse().unwrap(),
            ..BrokerSettings::default()
        };
        let broker =
            EmbeddedBroker::start("t", &settings, auth.clone(), BrokerLag::default(), None)
                .unwrap();
        let addr = broker.addr();
        // A role user's wrong password is answered at once.
        let (_, code) = open(addr, &connect("cli", Some(("admin", "guess")), 30));
        assert_eq!(code, Some(4));
        // A device waits, and is admitted once the verifier serves.
        let uuid = protocol::DeviceUuid::new_random();
        let id = uuid.as_str().to_owned();
        let device = std::thread::spawn(move || {
            open(
                addr,
                &connect(
                    &protocol::logins::onboarding_client_id(&id),
                    Some((protocol::logins::ONBOARDING_USER, "")),
                    30,
                ),
            )
            .1
        });
        std::thread::sleep(Duration::from_millis(300));
        assert!(!device.is_finished(), "answered before the verifier served");
        let directory: Arc<dyn crate::security::Directory> = Arc::new(AnyDevice);
        auth.set_directory(&directory);
        assert_eq!(device.join().unwrap(), Some(0));
    }

    #[test]
    fn verdicts_are_connack_codes_and_each_admitted_connection_ends_once() {
        use std::io::Write;
        let admission = Arc::new(Counting::default());
        let settings = BrokerSettings {
            listen: "127.0.0.1:0".parse().unwrap(),
            ..BrokerSettings::default()
        };
        let broker = EmbeddedBroker::start(
            "t",
            &settings,
            admission.clone(),
            BrokerLag::default(),
            None,
        )
        .unwrap();
        let addr = broker.addr();
        let login = Some(("me", "right"));

        // Refusals: CONNACK 2, 4 and 5, then the broker closes; none of
        // them was admitted, so none is reported disconnected.
        for (id, login, code) in [
            ("bad/id", login, 2),
            ("wrong-password", Some(("me", "wrong")), 4),
            ("policy-refused", login, 5),
        ] {
            let (s, got) = open(addr, &connect(id, login, 30));
            assert_eq!(got, Some(code), "{id}");
            until_closed(s);
        }
        // The internal login needs the internal password.
        let (s, got) = open(addr, &connect("x", Some((INTERNAL_USER, "guess")), 30));
        assert_eq!(got, Some(4));
        until_closed(s);

        // Admitted connections, each ending another way.
        let (mut s, got) = open(addr, &connect("polite", login, 30));
        assert_eq!(got, Some(0));
        s.write_all(&[0xE0, 0]).unwrap();
        until_closed(s);
        let (s, got) = open(addr, &connect("no-login", None, 30));
        assert_eq!(got, Some(0), "a CONNECT without a username is asked about");
        drop(s);
        let (first, got) = open(addr, &connect("twin", login, 30));
        assert_eq!(got, Some(0));
        let (second, got) = open(addr, &connect("twin", login, 30));
        assert_eq!(got, Some(0));
        until_closed(first);
        drop(second);
        let (mut s, got) = open(addr, &connect("acl-refused", login, 30));
        assert_eq!(got, Some(0));
        let mut publish = vec![0x30, 0];
        put(&mut publish, b"forbidden/x");
        publish[1] = (publish.len() - 2) as u8;
        s.write_all(&publish).unwrap();
        until_closed(s);
        // Keep alive 0 turns the keep-alive off (3.1.1 §3.1.2.10): the
        // connection is accepted, and lives until the client goes.
        let (mut s, got) = open(addr, &connect("keep-alive-0", login, 0));
        assert_eq!(got, Some(0));
        s.write_all(&[0xE0, 0]).unwrap();
        until_closed(s);

        let expected: HashMap<String, usize> = [
            ("polite", 1),
            ("no-login", 1),
            ("twin", 2),
            ("acl-refused", 1),
            ("keep-alive-0", 1),
        ]
        .into_iter()
        .map(|(id, n)| (id.to_owned(), n))
        .collect();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let seen = admission.disconnected.lock().unwrap().clone();
            if seen == expected {
                break;
            }
            let total: usize = seen.values().sum();
            assert!(
                total <= 6 && Instant::now() < deadline,
                "disconnects {seen:?}, expected {expected:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        // One more connection, reported last: nothing above was reported twice.
        let (mut s, got) = open(addr, &connect("last", login, 30));
        assert_eq!(got, Some(0));
        s.write_all(&[0xE0, 0]).unwrap();
        until_closed(s);
        let deadline = Instant::now() + Duration::from_secs(5);
        while !admission.disconnected.lock().unwrap().contains_key("last") {
            assert!(
                Instant::now() < deadline,
                "the last client was not reported"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        let mut seen = admission.disconnected.lock().unwrap().clone();
        assert_eq!(seen.remove("last"), Some(1));
        assert_eq!(seen, expected);
    }

    /// A TLS listener with a certificate from a test CA, counting into
    /// `metrics`; a short handshake deadline.
    fn tls_broker(metrics: &metrics::Metrics) -> EmbeddedBroker {
        let ca = tls::Ca::generate("test CA").unwrap();
        let issued = ca.issue_server(&["127.0.0.1".into()]).unwrap();
        let server = tls::ServerTls::new(
            &issued.chain_pem,
            &issued.key_pem,
            "test",
            tls::ServerTls::tickets().unwrap(),
        )
        .unwrap();
        let settings = BrokerSettings {
            listen: "127.0.0.1:0".parse().unwrap(),
            connection_timeout_ms: 500,
            ..BrokerSettings::default()
        };
        let tls = ListenerTls {
            server,
            counters: metrics.broker_tls("t"),
        };
        EmbeddedBroker::start(
            "t",
            &settings,
            Arc::new(AdmitAll),
            BrokerLag::default(),
            Some(tls),
        )
        .unwrap()
    }

    fn failures(metrics: &metrics::Metrics, reason: &str) -> u64 {
        let text = metrics.encode().unwrap();
        let series =
            format!("platform_tls_handshake_failures_total{{broker=\"t\",reason=\"{reason}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&series))
            .map_or(0, |v| v.trim().parse().unwrap())
    }

    #[test]
    fn every_handshake_failure_has_its_counter() {
        for failure in tls::HandshakeFailure::ALL {
            assert!(
                metrics::HANDSHAKE_FAILURE_REASONS.contains(&failure.label()),
                "{failure:?} is counted nowhere"
            );
        }
        assert_eq!(
            tls::HandshakeFailure::ALL.len(),
            metrics::HANDSHAKE_FAILURE_REASONS.len()
        );
    }

    #[test]
    fn a_tls_listener_answers_no_plaintext_times_out_silence_and_keeps_serving() {
        use std::io::Write;
        let metrics = metrics::Metrics::new();
        let broker = tls_broker(&metrics);
        let addr = broker.addr();
        let pinned = broker.internal_tls().unwrap().clone();
        let (_, password) = broker.internal_login();

        // Plaintext MQTT gets no CONNACK: the connection is closed.
        let (s, code) = open(addr, &connect("plain", Some(("me", "pw")), 30));
        assert_eq!(code, None, "a plaintext CONNECT was answered");
        until_closed(s);
        // Random bytes, likewise.
        let mut garbage = std::net::TcpStream::connect(addr).unwrap();
        garbage.write_all(&[0x47, 0x45, 0x54, 0x20, 0x2f]).unwrap();
        until_closed(garbage);
        // A silent client does not hold up anyone else: a real client
        // completes its handshake while it waits...
        let started = Instant::now();
        let silent = std::net::TcpStream::connect(addr).unwrap();
        silent
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        handshake(addr, password, Some(&pinned)).unwrap();
        assert!(started.elapsed() < Duration::from_millis(400));
        // ...and it is closed at the deadline.
        until_closed(silent);
        assert!(started.elapsed() >= Duration::from_millis(450));
        // A hundred of each at once, and the listener still serves.
        let mut clients: Vec<_> = (0..100)
            .map(|_| std::net::TcpStream::connect(addr).unwrap())
            .collect();
        for c in &mut clients {
            c.write_all(&connect("flood", None, 30)).unwrap();
        }
        handshake(addr, password, Some(&pinned)).unwrap();

        let deadline = Instant::now() + Duration::from_secs(5);
        while failures(&metrics, "not_tls") < 102 || failures(&metrics, "timeout") < 1 {
            assert!(
                Instant::now() < deadline,
                "not counted: not_tls {}, timeout {}",
                failures(&metrics, "not_tls"),
                failures(&metrics, "timeout")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        drop(clients);
    }
}

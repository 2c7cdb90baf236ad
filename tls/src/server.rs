//! A listener's side: its configuration, and the handshake every accepted
//! connection goes through before MQTT is read from it.

use crate::client::certs;
use crate::sources::Sources;
use crate::{provider, TlsError, HANDSHAKES_PER_SOURCE};
use rustls::server::{ProducesTickets, ServerSessionMemoryCache};
use rustls::ServerConfig;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// Sessions a listener keeps for clients that resume without a ticket
/// (TLS 1.2 session ids); tickets need no server memory at all.
const SESSION_CACHE: usize = 1024;

/// What a listener serves: its certificate chain and key.
#[derive(Clone)]
pub struct ServerTls {
    config: Arc<ServerConfig>,
    chain_pem: String,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerTls { … }")
    }
}

impl ServerTls {
    /// Serves `chain_pem` (the server's certificate first) with `key_pem`,
    /// both read from `origin`. Session tickets come from `tickets`: share
    /// one among listeners that may resume each other's sessions.
    pub fn new(
        chain_pem: &str,
        key_pem: &str,
        origin: &str,
        tickets: Arc<dyn ProducesTickets>,
    ) -> Result<Self, TlsError> {
        let rustls_err = |source| TlsError::Rustls {
            origin: origin.to_owned(),
            source,
        };
        let chain = certs(chain_pem.as_bytes(), origin)?;
        let key = rustls_pemfile::private_key(&mut key_pem.as_bytes())
            .map_err(|source| TlsError::Pem {
                origin: origin.to_owned(),
                source,
            })?
            .ok_or_else(|| TlsError::NoKey {
                origin: origin.to_owned(),
            })?;
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(rustls_err)?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(rustls_err)?;
        config.ticketer = tickets;
        config.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE);
        // One is enough: a client spends one ticket per reconnect, and
        // gets a new one each time.
        config.send_tls13_tickets = 1;
        Ok(ServerTls {
            config: Arc::new(config),
            chain_pem: chain_pem.to_owned(),
        })
    }

    /// Session tickets with keys of their own (ChaCha20-Poly1305, rotated
    /// every 6 hours), for [`ServerTls::new`].
    pub fn tickets() -> Result<Arc<dyn ProducesTickets>, TlsError> {
        rustls::crypto::ring::Ticketer::new().map_err(|source| TlsError::Rustls {
            origin: "session tickets".into(),
            source,
        })
    }

    /// The chain served, PEM: what the platform's own clients pin.
    pub fn chain_pem(&self) -> &str {
        &self.chain_pem
    }

    /// Handshakes that must finish within `timeout`, at most
    /// [`HANDSHAKES_AT_ONCE`] at a time through the returned acceptor and
    /// its clones (one listener's), and at most [`HANDSHAKES_PER_SOURCE`]
    /// of them from one source address.
    pub fn acceptor(&self, timeout: Duration) -> Acceptor {
        Acceptor {
            acceptor: TlsAcceptor::from(self.config.clone()),
            timeout,
            turn_wait: TURN_WAIT,
            gate: Arc::new(Semaphore::new(HANDSHAKES_AT_ONCE)),
            sources: Sources::default(),
        }
    }
}

/// Why a handshake failed, as a metric label says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeFailure {
    /// The client did not finish in time (it may have sent nothing).
    Timeout,
    /// The client sent something that is not TLS (plaintext MQTT, say).
    NotTls,
    /// The client ended the handshake with an alert, typically because it
    /// does not trust the server's certificate.
    Alert,
    /// The client closed the connection before the handshake ended.
    Closed,
    /// The client's address already had [`HANDSHAKES_PER_SOURCE`]
    /// handshakes under way, and this one's turn did not come in time.
    SourceBusy,
    /// Anything else rustls refused.
    Error,
}

impl HandshakeFailure {
    /// Every reason, for whoever counts them by label.
    pub const ALL: [HandshakeFailure; 6] = [
        HandshakeFailure::Timeout,
        HandshakeFailure::NotTls,
        HandshakeFailure::Alert,
        HandshakeFailure::Closed,
        HandshakeFailure::SourceBusy,
        HandshakeFailure::Error,
    ];

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            HandshakeFailure::Timeout => "timeout",
            HandshakeFailure::NotTls => "not_tls",
            HandshakeFailure::Alert => "alert",
            HandshakeFailure::Closed => "closed",
            HandshakeFailure::SourceBusy => "source_busy",
            HandshakeFailure::Error => "error",
        }
    }
}

/// Handshakes one listener runs at a time; the others wait their turn.
///
/// A listener runs on one thread. Ten thousand devices reconnecting at once
/// (a gateway failing over) would otherwise all be mid-handshake together,
/// each getting a slice of that thread in turn: every handshake then takes
/// about as long as all of them, passes the client's timeout and is retried,
/// and the connections already up (an admin's request, say) wait behind
/// the whole crowd. Taken in turn, the first finish in milliseconds, none
/// is wasted, and the thread's queue stays short.
///
/// Turns are shared per source address ([`HANDSHAKES_PER_SOURCE`]), so
/// that clients which start a handshake and stall, all from one address,
/// hold a few turns and not every one.
pub const HANDSHAKES_AT_ONCE: usize = 64;

/// How long a connection waits for its turn: first its address's
/// ([`HANDSHAKES_PER_SOURCE`]), then the listener's. The client gives up
/// sooner; this bounds what a crowd of abandoned connections can hold.
const TURN_WAIT: Duration = Duration::from_secs(30);

/// Runs the server's handshake on accepted connections.
#[derive(Clone)]
pub struct Acceptor {
    acceptor: TlsAcceptor,
    timeout: Duration,
    /// [`TURN_WAIT`]; shorter in tests.
    turn_wait: Duration,
    gate: Arc<Semaphore>,
    sources: Sources,
}

impl Acceptor {
    /// This acceptor with a shorter wait for a turn, for tests that see
    /// it run out.
    #[cfg(test)]
    fn with_turn_wait(mut self, turn_wait: Duration) -> Self {
        self.turn_wait = turn_wait;
        self
    }

    /// The handshake on an accepted connection, and whether it resumed an
    /// earlier session; on failure, why, with a reason for the log.
    pub async fn accept(
        &self,
        tcp: TcpStream,
    ) -> Result<(TlsStream<TcpStream>, bool), (HandshakeFailure, String)> {
        let first_byte = async {
            // A TLS connection starts with a handshake record (0x16).
            // Anything else is answered with nothing and closed, and says
            // what it was: most often a plaintext MQTT client.
            let mut first = [0u8; 1];
            match tcp.peek(&mut first).await {
                Ok(0) => {
                    return Err((
                        HandshakeFailure::Closed,
                        "closed before the handshake".into(),
                    ))
                }
                Ok(_) if first[0] != 0x16 => {
                    let what = if first[0] >> 4 == 1 {
                        "plaintext MQTT (a CONNECT) on a TLS listener".to_owned()
                    } else {
                        format!("not TLS (first byte 0x{:02x})", first[0])
                    };
                    return Err((HandshakeFailure::NotTls, what));
                }
                Ok(_) => {}
                Err(e) => return Err((HandshakeFailure::Closed, e.to_string())),
            }
            Ok(())
        };
        // The first byte has its deadline; then the connection waits its
        // turn, which does not count against the handshake's own.
        match tokio::time::timeout(self.timeout, first_byte).await {
            Ok(Ok(())) => {}
            Ok(Err(failure)) => return Err(failure),
            Err(_) => {
                return Err((
                    HandshakeFailure::Timeout,
                    format!("nothing sent within {:?}", self.timeout),
                ))
            }
        }
        let peer = tcp
            .peer_addr()
            .map_err(|e| (HandshakeFailure::Closed, e.to_string()))?;
        // Its address's turn first, then the listener's, both within one
        // wait: an address with HANDSHAKES_PER_SOURCE handshakes under way
        // queues behind them and holds none of the listener's turns.
        let share = self.sources.share(peer);
        let deadline = tokio::time::Instant::now() + self.turn_wait;
        let closing = || (HandshakeFailure::Error, "listener closing".to_owned());
        let _own_turn = match tokio::time::timeout_at(deadline, share.gate.acquire()).await {
            Ok(Ok(permit)) => permit,
            Ok(Err(_)) => return Err(closing()),
            Err(_) => {
                return Err((
                    HandshakeFailure::SourceBusy,
                    format!(
                        "its address had {HANDSHAKES_PER_SOURCE} handshakes under way \
                         and no turn came within {:?}",
                        self.turn_wait
                    ),
                ))
            }
        };
        let _turn = match tokio::time::timeout_at(deadline, self.gate.acquire()).await {
            Ok(Ok(permit)) => permit,
            Ok(Err(_)) => return Err(closing()),
            Err(_) => {
                return Err((
                    HandshakeFailure::Timeout,
                    format!("no turn to handshake within {:?}", self.turn_wait),
                ))
            }
        };
        let handshake = async {
            let stream = self.acceptor.accept(tcp).await.map_err(classify)?;
            let resumed =
                stream.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
            Ok((stream, resumed))
        };
        match tokio::time::timeout(self.timeout, handshake).await {
            Ok(result) => result,
            Err(_) => Err((
                HandshakeFailure::Timeout,
                format!("no handshake within {:?}", self.timeout),
            )),
        }
    }
}

fn classify(e: std::io::Error) -> (HandshakeFailure, String) {
    let rustls = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    match rustls {
        Some(rustls::Error::AlertReceived(alert)) => (
            HandshakeFailure::Alert,
            format!(
                "the client ended the handshake: {alert:?} (does it trust this platform's CA?)"
            ),
        ),
        Some(other) => (HandshakeFailure::Error, other.to_string()),
        None if e.kind() == std::io::ErrorKind::UnexpectedEof => (
            HandshakeFailure::Closed,
            "closed during the handshake".into(),
        ),
        None => (HandshakeFailure::Closed, e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{describe_failure, Ca, ClientTls};
    use rustls::pki_types::ServerName;
    use std::net::SocketAddr;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    type Outcomes = tokio::sync::mpsc::UnboundedReceiver<Result<(), HandshakeFailure>>;

    /// A listener that answers every handshake's outcome on a channel.
    async fn listener(tls: &ServerTls) -> (SocketAddr, Outcomes) {
        listener_with(tls.acceptor(Duration::from_millis(300))).await
    }

    async fn listener_with(acceptor: Acceptor) -> (SocketAddr, Outcomes) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    match acceptor.accept(tcp).await {
                        Ok((mut stream, _)) => {
                            let mut buf = [0u8; 4];
                            if stream.read_exact(&mut buf).await.is_ok() {
                                let _ = stream.write_all(&buf).await;
                                let _ = stream.flush().await;
                            }
                            let _ = tx.send(Ok(()));
                        }
                        Err((kind, _)) => {
                            let _ = tx.send(Err(kind));
                        }
                    }
                });
            }
        });
        (addr, rx)
    }

    fn served(ca: &Ca) -> ServerTls {
        let issued = ca.issue_server(&["127.0.0.1".into()]).unwrap();
        ServerTls::new(
            &issued.chain_pem,
            &issued.key_pem,
            "test",
            ServerTls::tickets().unwrap(),
        )
        .unwrap()
    }

    /// A TCP connection to `addr` from `source` (any of 127.0.0.0/8 on
    /// Linux's loopback).
    async fn dial_from(source: [u8; 4], addr: SocketAddr) -> std::io::Result<TcpStream> {
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.bind(SocketAddr::from((source, 0)))?;
        socket.connect(addr).await
    }

    /// Clients from `source` that each send a handshake record's first
    /// byte and then nothing.
    async fn stallers(source: [u8; 4], addr: SocketAddr, n: usize) -> Vec<TcpStream> {
        let mut stallers = Vec::new();
        for _ in 0..n {
            let mut tcp = dial_from(source, addr).await.unwrap();
            tcp.write_all(&[0x16]).await.unwrap();
            stallers.push(tcp);
        }
        stallers
    }

    async fn connect(
        addr: SocketAddr,
        config: Arc<rustls::ClientConfig>,
    ) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
        let tcp = TcpStream::connect(addr).await?;
        let name = ServerName::try_from("127.0.0.1").unwrap();
        let mut stream = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await?;
        stream.write_all(b"ping").await?;
        let mut buf = [0u8; 4];
        stream.read_exact(&mut buf).await?;
        assert_eq!(&buf, b"ping");
        Ok(stream)
    }

    #[tokio::test]
    async fn a_client_that_trusts_the_ca_connects_and_resumes() {
        let ca = Ca::generate("test CA").unwrap();
        let tls = served(&ca);
        let (addr, mut outcomes) = listener(&tls).await;
        let client = ClientTls::from_pem(ca.cert_pem().as_bytes(), "ca.pem").unwrap();
        let config = client.config();
        let first = connect(addr, config.clone()).await.unwrap();
        assert_eq!(
            first.get_ref().1.handshake_kind(),
            Some(rustls::HandshakeKind::Full)
        );
        drop(first);
        let second = connect(addr, config).await.unwrap();
        assert_eq!(
            second.get_ref().1.handshake_kind(),
            Some(rustls::HandshakeKind::Resumed),
            "a reconnect with the same configuration resumes"
        );
        // Another client (its own configuration) has nothing to resume.
        let other = connect(addr, client.config()).await.unwrap();
        assert_eq!(
            other.get_ref().1.handshake_kind(),
            Some(rustls::HandshakeKind::Full)
        );
        for _ in 0..3 {
            assert_eq!(outcomes.recv().await, Some(Ok(())));
        }
        // The platform's own clients pin the served certificate.
        let pinned = ClientTls::pinned(tls.chain_pem()).unwrap();
        connect(addr, pinned.config()).await.unwrap();
    }

    #[tokio::test]
    async fn a_server_the_client_does_not_trust_is_named_and_the_server_counts_the_alert() {
        let ca = Ca::generate("test CA").unwrap();
        let (addr, mut outcomes) = listener(&served(&ca)).await;
        let stranger = Ca::generate("another CA").unwrap();
        let client = ClientTls::from_pem(stranger.cert_pem().as_bytes(), "ca.pem").unwrap();
        let err = connect(addr, client.config()).await.unwrap_err();
        let reason = describe_failure(&err).expect("a TLS failure");
        assert!(
            reason.contains("not signed by a CA this client trusts"),
            "{reason}"
        );
        assert_eq!(outcomes.recv().await, Some(Err(HandshakeFailure::Alert)));
        let pinned = ClientTls::pinned(&served(&ca).chain_pem).unwrap();
        assert!(
            connect(addr, pinned.config()).await.is_err(),
            "pinned to another certificate"
        );
    }

    #[tokio::test]
    async fn a_hello_for_a_name_the_certificate_does_not_hold_fails_and_says_so() {
        let ca = Ca::generate("test CA").unwrap();
        let (addr, mut outcomes) = listener(&served(&ca)).await;
        let client = ClientTls::from_pem(ca.cert_pem().as_bytes(), "ca.pem").unwrap();
        let tcp = TcpStream::connect(addr).await.unwrap();
        let name = ServerName::try_from("unknown.example").unwrap();
        let err = tokio_rustls::TlsConnector::from(client.config())
            .connect(name, tcp)
            .await
            .unwrap_err();
        let reason = describe_failure(&err).expect("a TLS failure");
        assert!(reason.contains("does not name the host"), "{reason}");
        assert_eq!(outcomes.recv().await, Some(Err(HandshakeFailure::Alert)));
    }

    #[tokio::test]
    async fn plaintext_silence_and_garbage_are_refused_and_the_listener_goes_on() {
        let ca = Ca::generate("test CA").unwrap();
        let (addr, mut outcomes) = listener(&served(&ca)).await;
        // A plaintext MQTT CONNECT gets nothing back, and the connection closes.
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        tcp.write_all(&[0x10, 0x0c, 0, 4, b'M', b'Q', b'T', b'T', 4, 2, 0, 30, 0, 0])
            .await
            .unwrap();
        let mut rest = Vec::new();
        // Closed unread, the socket may be reset rather than shut.
        if tcp.read_to_end(&mut rest).await.is_ok() {
            assert!(rest.is_empty(), "answered {rest:?}");
        }
        assert_eq!(outcomes.recv().await, Some(Err(HandshakeFailure::NotTls)));
        // A client that connects and sends nothing is timed out.
        let silent = TcpStream::connect(addr).await.unwrap();
        assert_eq!(outcomes.recv().await, Some(Err(HandshakeFailure::Timeout)));
        drop(silent);
        // A handshake record that is garbage.
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        tcp.write_all(&[0x16, 3, 1, 0, 5, 1, 2, 3, 4, 5])
            .await
            .unwrap();
        assert_eq!(outcomes.recv().await, Some(Err(HandshakeFailure::Error)));
        // The listener still serves.
        let client = ClientTls::from_pem(ca.cert_pem().as_bytes(), "ca.pem").unwrap();
        connect(addr, client.config()).await.unwrap();
        assert_eq!(outcomes.recv().await, Some(Ok(())));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_crowd_over_the_turns_is_served_in_turn_and_stallers_give_their_turn_back() {
        let ca = Ca::generate("test CA").unwrap();
        let (addr, mut outcomes) = listener(&served(&ca)).await;
        let client = ClientTls::from_pem(ca.cert_pem().as_bytes(), "ca.pem").unwrap();
        // Every turn taken by a client that starts a handshake and stalls,
        // each address holding its share.
        let mut held = Vec::new();
        for source in 0..HANDSHAKES_AT_ONCE / HANDSHAKES_PER_SOURCE {
            let ip = [127, 0, 1, source as u8];
            held.extend(stallers(ip, addr, HANDSHAKES_PER_SOURCE).await);
        }
        // Three times as many real clients as turns, all at once: each
        // waits for a turn (the stallers' end at their deadline) and
        // connects; none is refused.
        let mut crowd = tokio::task::JoinSet::new();
        for _ in 0..3 * HANDSHAKES_AT_ONCE {
            let config = client.config();
            crowd.spawn(async move { connect(addr, config).await.map(|_| ()) });
        }
        while let Some(done) = crowd.join_next().await {
            done.unwrap().unwrap();
        }
        let (mut ok, mut timed_out) = (0, 0);
        for _ in 0..4 * HANDSHAKES_AT_ONCE {
            match outcomes.recv().await.unwrap() {
                Ok(()) => ok += 1,
                Err(HandshakeFailure::Timeout) => timed_out += 1,
                Err(other) => panic!("{other:?}"),
            }
        }
        assert_eq!(
            (ok, timed_out),
            (3 * HANDSHAKES_AT_ONCE, HANDSHAKES_AT_ONCE)
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stalled_handshakes_from_one_address_do_not_delay_a_client_from_another() {
        let ca = Ca::generate("test CA").unwrap();
        // A deadline far longer than the client below may take: its
        // handshake must not wait for any staller to be cut.
        let acceptor = served(&ca).acceptor(Duration::from_secs(20));
        let (addr, mut outcomes) = listener_with(acceptor).await;
        let _stallers = stallers([127, 0, 0, 2], addr, 200).await;
        let client = ClientTls::from_pem(ca.cert_pem().as_bytes(), "ca.pem").unwrap();
        let started = std::time::Instant::now();
        tokio::time::timeout(Duration::from_secs(3), connect(addr, client.config()))
            .await
            .expect("a client from 127.0.0.1 waited behind 127.0.0.2's stallers")
            .unwrap();
        assert!(started.elapsed() < Duration::from_secs(3));
        // Its outcome is the first: no staller had been cut to make room.
        assert_eq!(outcomes.recv().await, Some(Ok(())));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_address_over_its_share_waits_for_its_own_turns_and_is_counted_when_none_comes() {
        let ca = Ca::generate("test CA").unwrap();
        let client = ClientTls::from_pem(ca.cert_pem().as_bytes(), "ca.pem").unwrap();
        // Handshakes cut after 2 s; a turn not come within 200 ms is
        // given up: the stallers over the share give up long before the
        // ones that hold it are cut.
        let acceptor = served(&ca)
            .acceptor(Duration::from_secs(2))
            .with_turn_wait(Duration::from_millis(200));
        let (addr, mut outcomes) = listener_with(acceptor).await;
        let over = 12;
        let _stallers = stallers([127, 0, 0, 3], addr, HANDSHAKES_PER_SOURCE + over).await;
        let mut seen = Vec::new();
        for _ in 0..over {
            seen.push(outcomes.recv().await.unwrap());
        }
        assert_eq!(seen, vec![Err(HandshakeFailure::SourceBusy); over]);
        // The listener's other turns are free: another address connects.
        connect(addr, client.config()).await.unwrap();
        // And the share's holders are cut at the handshake's deadline
        // (on a slow machine, possibly before the client's outcome comes).
        let mut rest = Vec::new();
        for _ in 0..=HANDSHAKES_PER_SOURCE {
            rest.push(outcomes.recv().await.unwrap());
        }
        rest.sort_by_key(|outcome| outcome.is_err());
        let mut want = vec![Err(HandshakeFailure::Timeout); HANDSHAKES_PER_SOURCE];
        want.insert(0, Ok(()));
        assert_eq!(rest, want);
    }
}

use crate::session::{self, Client, Event, EventLoop, MqttVersion};
use crate::Backoff;
use bytes::Bytes;
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("invalid broker address {0:?}: expected HOST:PORT")]
    InvalidAddress(String),
    #[error("no connection to the broker at {addr} within {timeout:?}{}", last.as_ref().map(|l| format!(" (last attempt: {l})")).unwrap_or_default())]
    Timeout {
        addr: String,
        timeout: Duration,
        /// Why the last attempt failed, if one did.
        last: Option<String>,
    },
    /// A CONNACK refusal: the broker answered no.
    #[error("the broker at {addr} refused the connection: {reason}")]
    Refused { addr: String, reason: String },
    /// The one attempt [`Bus::ready_once`] allows failed without an
    /// answer: no TCP connection, a closed or timed-out handshake.
    #[error("the broker at {addr} could not be reached: {reason}")]
    Unreachable { addr: String, reason: String },
    #[error("the broker at {addr} did not prove who it is: {reason}")]
    Untrusted { addr: String, reason: String },
    #[error("the MQTT client is closed")]
    Closed,
    #[error("{0}")]
    Config(String),
}

/// How to reach the broker and who to be there.
#[derive(Debug, Clone)]
pub struct BusOptions {
    pub host: String,
    pub port: u16,
    pub client_id: String,
    /// rumqttd calls the platform's auth handler only when the CONNECT
    /// carries a login, so every platform client sends one.
    pub username: String,
    pub password: String,
    pub keep_alive: Duration,
    /// Largest packet sent or received. rumqttc's default is 10 KiB,
    /// too small for admin import batches.
    pub max_packet_size: usize,
    /// Messages buffered between the network task and the consumer. When
    /// full, the network task waits: backpressure, not loss.
    pub inbox_capacity: usize,
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
    /// How long one connection attempt may take, from the TCP connect
    /// through the TLS handshake to the CONNACK. Whole seconds, at least 1
    /// (rumqttc's unit).
    pub connect_timeout: Duration,
    /// Published by the broker if this client vanishes without a DISCONNECT.
    pub last_will: Option<(String, Vec<u8>)>,
    /// Where a fresh password comes from at every connect, for a login that
    /// is good only once (a device's signed token). None: `password`,
    /// every time.
    pub password_source: Option<PasswordSource>,
    /// MQTT over TLS with this configuration; None: plaintext. Keep one
    /// configuration per client identity across its connections: its
    /// session cache is what lets a reconnect resume.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// The MQTT version to speak: 3.1.1 by default.
    pub mqtt: MqttVersion,
}

/// Makes the password of one CONNECT.
#[derive(Clone)]
pub struct PasswordSource(Arc<dyn Fn() -> String + Send + Sync>);

impl PasswordSource {
    pub fn new(source: impl Fn() -> String + Send + Sync + 'static) -> Self {
        PasswordSource(Arc::new(source))
    }

    fn next(&self) -> String {
        (self.0)()
    }
}

impl std::fmt::Debug for PasswordSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PasswordSource(…)")
    }
}

impl BusOptions {
    /// Options for `addr` ("host:port") with the platform's defaults.
    pub fn new(addr: &str, client_id: impl Into<String>) -> Result<Self, BusError> {
        let (host, port) = addr
            .rsplit_once(':')
            .and_then(|(h, p)| Some((h, p.parse::<u16>().ok()?)))
            .filter(|(h, p)| !h.is_empty() && *p != 0)
            .ok_or_else(|| BusError::InvalidAddress(addr.to_owned()))?;
        Ok(BusOptions {
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            port,
            client_id: client_id.into(),
            username: "anonymous".into(),
            password: String::new(),
            keep_alive: Duration::from_secs(30),
            max_packet_size: 256 * 1024,
            inbox_capacity: 1024,
            backoff_base: Duration::from_millis(100),
            backoff_cap: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            last_will: None,
            password_source: None,
            tls: None,
            mqtt: MqttVersion::V311,
        })
    }

    pub fn with_credentials(
        mut self,
        username: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        self.username = username.into();
        self.password = password.into();
        self
    }

    /// A fresh password from `source` at every connect and reconnect,
    /// presented as `username`.
    pub fn with_password_source(
        mut self,
        username: impl Into<String>,
        source: PasswordSource,
    ) -> Self {
        self.username = username.into();
        self.password = source.next();
        self.password_source = Some(source);
        self
    }

    /// MQTT over TLS with `config`, or plaintext with None.
    pub fn with_tls(mut self, config: Option<Arc<rustls::ClientConfig>>) -> Self {
        self.tls = config;
        self
    }

    pub fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// One message received on a subscribed filter.
#[derive(Debug, Clone)]
pub struct Message {
    pub topic: String,
    pub payload: Bytes,
}

/// Where the link to the broker stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkState {
    /// Not connected yet, or reconnecting after a loss.
    Connecting,
    /// Connected, and every filter is subscribed.
    Ready,
    /// The broker answered the CONNECT with a refusal; retrying continues.
    Refused(String),
    /// The server's TLS certificate did not verify, or it does not speak
    /// TLS: a configuration error, not a network fault. Retrying continues
    /// (the operator may be fixing it), each failure logged.
    Untrusted(String),
    /// The connection failed or was lost (refused without a CONNACK,
    /// unreachable, closed); retrying continues after a backoff.
    Down(String),
    /// MQTT 5: the server closed the connection with a DISCONNECT that
    /// says why (a gateway moving the client: 0x9C use another server,
    /// 0x9D server moved) and maybe where to; retrying continues after a
    /// backoff, as for [`LinkState::Down`].
    Moved(ServerMove),
    /// Shut down.
    Closed,
}

/// An MQTT 5 server's DISCONNECT, as [`LinkState::Moved`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerMove {
    /// The reason code: 0x9C use another server, 0x9D server moved, or any
    /// other a server may close with.
    pub reason_code: u8,
    /// The reason code's name, for logs.
    pub reason: String,
    /// Where to connect instead, if the server said.
    pub server_reference: Option<String>,
    pub user_properties: Vec<(String, String)>,
}

impl ServerMove {
    /// The value of the user property `name`, if the DISCONNECT has one.
    pub fn user_property(&self, name: &str) -> Option<&str> {
        self.user_properties
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A connected MQTT client. Cheap to clone; all clones share one connection.
#[derive(Clone)]
pub struct Bus {
    client: Client,
    state: watch::Receiver<LinkState>,
    addr: Arc<str>,
}

impl Bus {
    /// Starts connecting in the background and returns at once. `filters`
    /// are subscribed at QoS 1 on every (re)connect; messages on them arrive
    /// on the returned receiver. The connection closes when `shutdown` is
    /// cancelled, after flushing what was already published.
    pub fn connect(
        opts: BusOptions,
        filters: Vec<String>,
        shutdown: CancellationToken,
    ) -> (Bus, mpsc::Receiver<Message>) {
        let (client, eventloop) = session::new(&opts);

        let (state_tx, state) = watch::channel(LinkState::Connecting);
        let (inbox_tx, inbox) = mpsc::channel(opts.inbox_capacity.max(1));
        let addr: Arc<str> = opts.addr().into();
        let driver = Driver {
            client: client.clone(),
            relogin: opts
                .password_source
                .clone()
                .map(|source| (opts.username.clone(), source)),
            filters,
            state_tx,
            inbox_tx,
            backoff: Backoff::new(opts.backoff_base, opts.backoff_cap),
            client_id: opts.client_id,
            addr: addr.clone(),
            connects: 0,
        };
        tokio::spawn(driver.run(eventloop, shutdown));
        (
            Bus {
                client,
                state,
                addr,
            },
            inbox,
        )
    }

    /// [`Bus::connect`], and with `ready_timeout`, [`Bus::ready`]: how a
    /// worker starts. If the link does not become ready, `link` is
    /// cancelled, so that nothing keeps reconnecting behind the error.
    /// Without a timeout it returns at once, and the link keeps trying in
    /// the background.
    pub async fn connect_ready(
        opts: BusOptions,
        filters: Vec<String>,
        link: CancellationToken,
        ready_timeout: Option<Duration>,
    ) -> Result<(Bus, mpsc::Receiver<Message>), BusError> {
        let (bus, inbox) = Bus::connect(opts, filters, link.clone());
        if let Some(timeout) = ready_timeout {
            if let Err(e) = bus.ready(timeout).await {
                link.cancel();
                return Err(e);
            }
        }
        Ok((bus, inbox))
    }

    /// Waits until connected and subscribed. Fails at once if the broker
    /// refuses us, and after `timeout` if it cannot be reached.
    pub async fn ready(&self, timeout: Duration) -> Result<(), BusError> {
        self.wait_ready(timeout, false).await
    }

    /// Like [`Bus::ready`], but the first failed attempt is an error:
    /// for a connection that is worth only one try, such as a device's to
    /// a gateway that may refuse it.
    pub async fn ready_once(&self, timeout: Duration) -> Result<(), BusError> {
        self.wait_ready(timeout, true).await
    }

    async fn wait_ready(
        &self,
        timeout: Duration,
        first_failure_is_final: bool,
    ) -> Result<(), BusError> {
        let mut state = self.state.clone();
        let refused = |reason| BusError::Refused {
            addr: self.addr.to_string(),
            reason,
        };
        let mut last = None;
        let wait = async {
            loop {
                let now = state.borrow_and_update().clone();
                if let LinkState::Down(reason) = &now {
                    last = Some(reason.clone());
                }
                match now {
                    LinkState::Ready => return Ok(()),
                    LinkState::Refused(reason) => return Err(refused(reason)),
                    LinkState::Untrusted(reason) => {
                        return Err(BusError::Untrusted {
                            addr: self.addr.to_string(),
                            reason,
                        })
                    }
                    LinkState::Down(reason) if first_failure_is_final => {
                        return Err(BusError::Unreachable {
                            addr: self.addr.to_string(),
                            reason: hint(&reason),
                        })
                    }
                    LinkState::Moved(m) if first_failure_is_final => {
                        return Err(refused(format!("{} (MQTT 5 DISCONNECT)", m.reason)))
                    }
                    LinkState::Closed => return Err(BusError::Closed),
                    LinkState::Connecting | LinkState::Down(_) | LinkState::Moved(_) => {}
                }
                state.changed().await.map_err(|_| BusError::Closed)?;
            }
        };
        let result = tokio::time::timeout(timeout, wait).await;
        result.map_err(|_| BusError::Timeout {
            addr: self.addr.to_string(),
            timeout,
            last: last.map(|reason| hint(&reason)),
        })?
    }

    /// Waits, at most `timeout`, until the link is [`LinkState::Closed`]
    /// after its shutdown token was cancelled: what was published before
    /// has then been sent, followed by a DISCONNECT.
    pub async fn closed(&self, timeout: Duration) {
        let mut state = self.state.clone();
        let _ = tokio::time::timeout(timeout, state.wait_for(|s| *s == LinkState::Closed)).await;
    }

    pub fn state(&self) -> LinkState {
        self.state.borrow().clone()
    }

    /// A receiver that sees every change of [`LinkState`].
    pub fn watch_state(&self) -> watch::Receiver<LinkState> {
        self.state.clone()
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Publishes at QoS 1. Returns once the message is queued for the
    /// network task; while disconnected it waits in the queue.
    pub async fn publish(
        &self,
        topic: impl Into<String>,
        payload: Vec<u8>,
    ) -> Result<(), BusError> {
        self.client
            .publish(topic.into(), payload)
            .await
            .map_err(|_| BusError::Closed)
    }

    pub async fn publish_json<T: Serialize>(
        &self,
        topic: impl Into<String>,
        msg: &T,
    ) -> Result<(), BusError> {
        self.publish(topic, protocol::encode(msg)).await
    }
}

struct Driver {
    client: Client,
    /// Who to log in as again, with a fresh password, before a reconnect.
    relogin: Option<(String, PasswordSource)>,
    filters: Vec<String>,
    state_tx: watch::Sender<LinkState>,
    inbox_tx: mpsc::Sender<Message>,
    backoff: Backoff,
    client_id: String,
    addr: Arc<str>,
    /// CONNACKs so far: past the first, a SUBACK is a resubscription.
    connects: u32,
}

impl Driver {
    async fn run(mut self, mut eventloop: EventLoop, shutdown: CancellationToken) {
        loop {
            let event = tokio::select! {
                _ = shutdown.cancelled() => break,
                ev = eventloop.poll() => ev,
            };
            match event {
                Ok(Event::ConnAck) => self.on_connack(),
                Ok(Event::SubAck { refused: true }) => {
                    warn!(client_id = %self.client_id, "broker refused a subscription");
                    self.state_tx
                        .send_replace(LinkState::Refused("subscription refused".into()));
                }
                Ok(Event::SubAck { refused: false }) => {
                    if self.connects > 1 && self.state_tx.borrow().clone() != LinkState::Ready {
                        info!(client_id = %self.client_id, broker = %self.addr, filters = self.filters.len(), "subscribed again after a reconnect");
                    }
                    self.state_tx.send_replace(LinkState::Ready);
                }
                Ok(Event::Publish(msg)) => {
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = self.inbox_tx.send(msg) => {}
                    }
                }
                Ok(Event::DisconnectSent | Event::Other) => {}
                Err(fault) => {
                    let (state, e) = (fault.state, fault.error);
                    let delay = self.backoff.next_delay();
                    // The first is the caller's to report (`ready` fails
                    // with it); a link that keeps trying says so each time.
                    if let LinkState::Untrusted(reason) = &state {
                        if self.backoff.attempts() > 1 {
                            warn!(client_id = %self.client_id, broker = %self.addr, ?delay, "TLS: the broker did not prove who it is: {reason}");
                        }
                    }
                    self.state_tx.send_replace(state);
                    if self.backoff.attempts() <= 1 {
                        info!(client_id = %self.client_id, broker = %self.addr, error = %e, ?delay, "MQTT connection lost; reconnecting");
                    } else {
                        debug!(client_id = %self.client_id, broker = %self.addr, error = %e, ?delay, "MQTT reconnect failed");
                    }
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(delay) => {}
                    }
                    if let Some((username, source)) = &self.relogin {
                        eventloop.set_credentials(username, source.next());
                    }
                }
            }
        }
        self.flush_and_close(eventloop).await;
    }

    fn on_connack(&mut self) {
        self.backoff.reset();
        self.connects = self.connects.saturating_add(1);
        debug!(client_id = %self.client_id, broker = %self.addr, "MQTT connected");
        if self.filters.is_empty() {
            self.state_tx.send_replace(LinkState::Ready);
            return;
        }
        if let Err(e) = self.client.try_subscribe_all(&self.filters) {
            warn!(client_id = %self.client_id, error = %e, "could not queue subscriptions");
        }
    }

    /// Sends what is queued, then a DISCONNECT, so that a clean shutdown
    /// loses no message that callers already handed over.
    async fn flush_and_close(self, mut eventloop: EventLoop) {
        if self.state_tx.borrow().clone() == LinkState::Ready {
            self.client.try_disconnect();
            let flush = async {
                while let Ok(ev) = eventloop.poll().await {
                    if matches!(ev, Event::DisconnectSent) {
                        break;
                    }
                }
            };
            let _ = tokio::time::timeout(Duration::from_secs(2), flush).await;
        }
        self.state_tx.send_replace(LinkState::Closed);
    }
}

/// A failed attempt, with what it most likely means when the broker
/// closed the connection before any CONNACK: a plaintext client at a TLS
/// listener gets exactly that.
fn hint(reason: &str) -> String {
    if reason.contains("closed by peer") || reason.contains("reset by peer") {
        format!("{reason}; the broker closed the connection before any CONNACK, as a TLS listener does to a plaintext client")
    } else {
        reason.to_owned()
    }
}

/// Why a TLS failure is the server's identity, not the network: its
/// certificate did not verify, or it did not answer in TLS. None for a
/// network error during the handshake.
pub(crate) fn untrusted(e: &rumqttc::TlsError) -> Option<String> {
    use rumqttc::TlsError as E;
    match e {
        E::Io(io) => {
            let rustls = io.get_ref()?.downcast_ref::<rustls::Error>()?;
            Some(tls::describe(rustls))
        }
        E::DNSName(_) => Some(format!(
            "{e}: the host is not a name a certificate can hold"
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse() {
        let o = BusOptions::new("127.0.0.1:1883", "c").unwrap();
        assert_eq!((o.host.as_str(), o.port), ("127.0.0.1", 1883));
        let o = BusOptions::new("[::1]:1884", "c").unwrap();
        assert_eq!((o.host.as_str(), o.port), ("::1", 1884));
        for bad in ["", "host", "host:", ":1883", "host:0", "host:99999"] {
            assert!(BusOptions::new(bad, "c").is_err(), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn a_link_that_never_gets_ready_is_cancelled_not_left_retrying() {
        // A port nobody listens on: bound, then released.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let opts = BusOptions::new(&format!("127.0.0.1:{port}"), "c").unwrap();
        let link = CancellationToken::new();
        let result = Bus::connect_ready(
            opts,
            vec!["t".into()],
            link.clone(),
            Some(Duration::from_millis(300)),
        )
        .await;
        assert!(matches!(result, Err(BusError::Timeout { .. })));
        assert!(link.is_cancelled());
    }
}

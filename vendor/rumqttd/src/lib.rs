// PATCH(platform): upstream warnings, silenced so that ours stay visible.
#![allow(dead_code, unknown_lints, mismatched_lifetime_syntaxes)]
use std::fmt;
use std::future::IntoFuture;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::{collections::HashMap, path::Path};

use serde::{Deserialize, Serialize};
use tracing_subscriber::{
    filter::EnvFilter,
    fmt::{
        format::{Format, Pretty},
        Layer,
    },
    layer::Layered,
    reload::Handle,
    Registry,
};

pub use link::alerts;
pub use link::local;
pub use link::meters;
// PATCH(platform): closing a connection from outside.
pub use link::sessions::{Kick, Sessions};
pub use router::{Alert, Forward, IncomingMeter, Meter, Notification, OutgoingMeter, Router};
use segments::Storage;
pub use server::{Broker, LinkType, Server};

pub use self::router::shared_subs::Strategy;

mod link;
pub mod protocol;
mod router;
mod segments;
mod server;

pub type ConnectionId = usize;
pub type RouterId = usize;
pub type NodeId = usize;
pub type Topic = String;
pub type Filter = String;
pub type TopicId = usize;
pub type Offset = (u64, u64);
pub type Cursor = (u64, u64);

pub type ClientId = String;
pub type AuthUser = String;
pub type AuthPass = String;
/// PATCH(platform): called for every CONNECT, with its login if it
/// carries one (upstream called it only with a login and refused a CONNECT
/// without one); the [`AuthVerdict`] it returns is the CONNACK's code.
pub type AuthHandler = Arc<
    dyn Fn(
            ClientId,
            Option<(AuthUser, AuthPass)>,
        ) -> Pin<Box<dyn std::future::Future<Output = AuthVerdict> + Send>>
        + Send
        + Sync,
>;

/// PATCH(platform): an auth handler's answer to a CONNECT. A refusal is
/// written as a CONNACK with its code before the connection closes
/// (upstream closed it without one, so a client could not tell a refusal
/// from a network fault). Only codes that MQTT 3.1.1 and 5 both have,
/// and [`AuthVerdict::Moved`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthVerdict {
    Accept,
    /// MQTT 5: CONNACK 0x9C (use another server) or, `permanent`, 0x9D
    /// (server moved), with the Server Reference if there is one; a 3.1.1
    /// client gets CONNACK 5 (not authorized), its nearest code.
    Moved {
        permanent: bool,
        server_reference: Option<String>,
    },
    /// CONNACK 2 (MQTT 5: 0x85), identifier rejected.
    IdentifierRejected,
    /// CONNACK 4 (MQTT 5: 0x86), bad user name or password.
    BadUserNamePassword,
    /// CONNACK 5 (MQTT 5: 0x87), not authorized.
    NotAuthorized,
}

impl AuthVerdict {
    /// The CONNACK code of a refusal; None for [`AuthVerdict::Accept`].
    pub fn refusal(&self) -> Option<protocol::ConnectReturnCode> {
        use protocol::ConnectReturnCode as Code;
        match self {
            AuthVerdict::Accept => None,
            AuthVerdict::Moved {
                permanent: false, ..
            } => Some(Code::UseAnotherServer),
            AuthVerdict::Moved {
                permanent: true, ..
            } => Some(Code::ServerMoved),
            AuthVerdict::IdentifierRejected => Some(Code::ClientIdentifierNotValid),
            AuthVerdict::BadUserNamePassword => Some(Code::BadUserNamePassword),
            AuthVerdict::NotAuthorized => Some(Code::NotAuthorized),
        }
    }

    /// PATCH(platform): where a [`AuthVerdict::Moved`] client should go.
    pub fn server_reference(&self) -> Option<&str> {
        match self {
            AuthVerdict::Moved {
                server_reference, ..
            } => server_reference.as_deref(),
            _ => None,
        }
    }
}

/// PATCH(platform): upstream's yes/no handlers: no is a bad login.
impl From<bool> for AuthVerdict {
    fn from(accept: bool) -> Self {
        if accept {
            AuthVerdict::Accept
        } else {
            AuthVerdict::BadUserNamePassword
        }
    }
}

/// PATCH(platform): what a client asks to do with a topic, for [`AclHandler`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AclAction {
    /// PUBLISH, or a last will to be published for the client.
    Publish,
    /// SUBSCRIBE to a filter.
    Subscribe,
}

/// PATCH(platform): what the ACL is asked about one PUBLISH, SUBSCRIBE
/// filter or last will. It borrows from the packet: asking costs no copy.
#[derive(Debug, Clone, Copy)]
pub struct AclRequest<'a> {
    pub action: AclAction,
    /// The topic, or for a SUBSCRIBE the filter.
    pub topic: &'a str,
    /// The payload of a PUBLISH or last will; empty for a SUBSCRIBE.
    pub payload: &'a [u8],
    /// The retain flag of a PUBLISH or last will; false for a SUBSCRIBE.
    pub retain: bool,
}

/// PATCH(platform): a topic ACL. Called with (client id as sent in
/// CONNECT, username or "" without a login, request) for every PUBLISH,
/// every SUBSCRIBE filter and the last will; `false` disconnects the
/// client before the router sees the packet (a refused will refuses the
/// CONNECT with CONNACK 5).
pub type AclHandler = Arc<dyn Fn(&str, &str, &AclRequest) -> bool + Send + Sync>;

/// PATCH(platform): called once with (client id as sent in CONNECT,
/// username or "") when a connection its auth admitted ends, however it
/// ends (DISCONNECT, a network error, a takeover by the same client id, a
/// refusal by the router or the ACL). It runs on the listener's runtime:
/// it must not block.
pub type DisconnectHandler = Arc<dyn Fn(&str, &str) + Send + Sync>;

/// PATCH(platform): what an accepted socket becomes before MQTT is read
/// from it (a TLS handshake, say), asked with the socket and its peer's
/// address in the connection's own task, so that a slow or failed
/// handshake holds up no other accept. `None` drops the connection: the
/// handler has logged and counted why, and must bound its own time.
pub type AcceptHandler = Arc<
    dyn Fn(
            tokio::net::TcpStream,
            SocketAddr,
        ) -> Pin<Box<dyn std::future::Future<Output = Option<Box<dyn N>>> + Send>>
        + Send
        + Sync,
>;

/// PATCH(platform): the stream an [`AcceptHandler`] hands back.
pub use link::network::N;

/// PATCH(platform): called with (client id, filter, messages skipped)
/// when the router disconnects a subscriber that fell behind the head of
/// a commit log: the messages it had not read were dropped with their
/// segment. Called on the router's thread: it must not block.
#[derive(Clone, Default)]
pub struct LaggedHandler(pub Option<Arc<dyn Fn(&str, &str, u64) + Send + Sync>>);

impl std::fmt::Debug for LaggedHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "LaggedHandler(set)"
        } else {
            "LaggedHandler(none)"
        })
    }
}

#[derive(Debug, Default, Serialize, Deserialize, Clone)]
pub struct Config {
    pub id: usize,
    pub router: RouterConfig,
    pub v4: Option<HashMap<String, ServerSettings>>,
    pub v5: Option<HashMap<String, ServerSettings>>,
    pub ws: Option<HashMap<String, ServerSettings>>,
    pub cluster: Option<ClusterSettings>,
    pub console: Option<ConsoleSettings>,
    pub bridge: Option<BridgeConfig>,
    pub prometheus: Option<PrometheusSetting>,
    pub metrics: Option<HashMap<MetricType, MetricSettings>>,
}

#[derive(Debug, Serialize, Deserialize, Clone)]
pub struct PrometheusSetting {
    #[deprecated(note = "Use listen instead")]
    port: Option<u16>,
    listen: Option<SocketAddr>,
    // How frequently to update metrics
    interval: u64,
}

// TODO: Change names without _ until config-rs issue is resolved
// https://github.com/mehcode/config-rs/issues/369
#[derive(Debug, Serialize, Deserialize, Clone)]
#[serde(untagged)]
pub enum TlsConfig {
    Rustls {
        capath: Option<String>,
        certpath: String,
        keypath: String,
    },
    NativeTls {
        pkcs12path: String,
        pkcs12pass: String,
    },
}

impl TlsConfig {
    // Returns true only if all of the file paths inside `TlsConfig` actually exists on file system.
    // NOTE: This doesn't verify if certificate files are in required format or not.
    pub fn validate_paths(&self) -> bool {
        match self {
            TlsConfig::Rustls {
                capath,
                certpath,
                keypath,
            } => {
                let ca = capath.is_none() || capath.as_ref().is_some_and(|v| Path::new(v).exists());

                ca && [certpath, keypath].iter().all(|v| Path::new(v).exists())
            }
            TlsConfig::NativeTls { pkcs12path, .. } => Path::new(pkcs12path).exists(),
        }
    }
}

#[derive(Debug, Serialize, Deserialize, Clone)]
pub struct ServerSettings {
    pub name: String,
    pub listen: SocketAddr,
    pub tls: Option<TlsConfig>,
    pub next_connection_delay_ms: u64,
    pub connections: ConnectionSettings,
}

impl ServerSettings {
    pub fn set_auth_handler<F, O>(&mut self, auth_fn: F)
    where
        F: Fn(ClientId, AuthUser, AuthPass) -> O + Send + Sync + 'static,
        O: IntoFuture<Output = bool> + 'static,
        O::IntoFuture: Send,
    {
        self.connections.set_auth_handler(auth_fn)
    }
}

#[derive(Debug, Serialize, Deserialize, Clone)]
pub struct BridgeConfig {
    pub name: String,
    pub addr: String,
    pub qos: u8,
    pub sub_path: Filter,
    pub reconnection_delay: u64,
    pub ping_delay: u64,
    pub connections: ConnectionSettings,
    #[serde(default)]
    pub transport: Transport,
}

#[derive(Serialize, Deserialize, Clone)]
pub struct ConnectionSettings {
    pub connection_timeout_ms: u16,
    pub max_payload_size: usize,
    pub max_inflight_count: usize,
    pub auth: Option<HashMap<String, String>>,
    #[serde(skip)]
    pub external_auth: Option<AuthHandler>,
    #[serde(default)]
    pub dynamic_filters: bool,
    /// PATCH(platform): see [`AclHandler`]. None allows everything.
    #[serde(skip)]
    pub acl: Option<AclHandler>,
    /// PATCH(platform): see [`DisconnectHandler`].
    #[serde(skip)]
    pub on_disconnect: Option<DisconnectHandler>,
    /// PATCH(platform): see [`AcceptHandler`]. None reads MQTT from the
    /// socket itself (or through `tls`, upstream's file-based TLS).
    #[serde(skip)]
    pub on_accept: Option<AcceptHandler>,
    /// PATCH(platform): see [`Sessions`]. None: connections cannot be
    /// closed from outside.
    #[serde(skip)]
    pub sessions: Option<Sessions>,
}

impl ConnectionSettings {
    /// PATCH(platform): upstream's handler, adapted to [`AuthHandler`]: a
    /// CONNECT without a login is refused (CONNACK 4) without asking it,
    /// and its `false` is CONNACK 4.
    pub fn set_auth_handler<F, O>(&mut self, auth_fn: F)
    where
        F: Fn(ClientId, AuthUser, AuthPass) -> O + Send + Sync + 'static,
        O: IntoFuture<Output = bool> + 'static,
        O::IntoFuture: Send,
    {
        let auth_fn = Arc::new(auth_fn);
        self.external_auth = Some(Arc::new(move |client_id, login| {
            let auth_fn = auth_fn.clone();
            Box::pin(async move {
                match login {
                    Some((username, password)) => {
                        AuthVerdict::from(auth_fn(client_id, username, password).await)
                    }
                    None => AuthVerdict::BadUserNamePassword,
                }
            })
        }));
    }

    /// PATCH(platform): an auth handler that is also asked about a
    /// CONNECT without a login, and whose verdict is the CONNACK's code.
    pub fn set_auth_verdict_handler<F, O>(&mut self, auth_fn: F)
    where
        F: Fn(ClientId, Option<(AuthUser, AuthPass)>) -> O + Send + Sync + 'static,
        O: IntoFuture<Output = AuthVerdict> + 'static,
        O::IntoFuture: Send,
    {
        self.external_auth = Some(Arc::new(move |client_id, login| {
            Box::pin(auth_fn(client_id, login).into_future())
        }));
    }
}

impl fmt::Debug for ConnectionSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionSettings")
            .field("connection_timeout_ms", &self.connection_timeout_ms)
            .field("max_payload_size", &self.max_payload_size)
            .field("max_inflight_count", &self.max_inflight_count)
            .field("auth", &self.auth)
            .field("external_auth", &self.external_auth.is_some())
            .field("dynamic_filters", &self.dynamic_filters)
            // PATCH(platform): the ACL and the disconnect hook, shown
            // like external_auth.
            .field("acl", &self.acl.is_some())
            .field("on_disconnect", &self.on_disconnect.is_some())
            .field("on_accept", &self.on_accept.is_some())
            .field("sessions", &self.sessions)
            .finish()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterSettings {
    /// Id with which this node connects to other nodes of the mesh
    pub node_id: NodeId,
    /// Address on which this broker is listening for mesh connections
    pub listen: String,
    /// Address of clusters that this node has to initiate connection
    pub seniors: Vec<(ConnectionId, String)>,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct RouterConfig {
    pub max_connections: usize,
    pub max_outgoing_packet_count: u64,
    pub max_segment_size: usize,
    pub max_segment_count: usize,
    pub custom_segment: Option<HashMap<String, SegmentConfig>>,
    pub initialized_filters: Option<Vec<Filter>>,
    // defaults to Round Robin
    #[serde(default)]
    pub shared_subscriptions_strategy: Strategy,
    /// PATCH(platform): at most this many retained messages are kept; a
    /// retained PUBLISH to a new topic beyond it is delivered but not
    /// retained. None: no limit (upstream).
    #[serde(default)]
    pub max_retained_count: Option<usize>,
    /// PATCH(platform): at most this many bytes (topics and payloads) of
    /// retained messages are kept, as for `max_retained_count`.
    #[serde(default)]
    pub max_retained_bytes: Option<usize>,
    /// PATCH(platform): see [`LaggedHandler`].
    #[serde(skip)]
    pub on_lagged: LaggedHandler,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct SegmentConfig {
    pub max_segment_size: usize,
    pub max_segment_count: usize,
}

type ReloadHandle = Handle<EnvFilter, Layered<Layer<Registry, Pretty, Format<Pretty>>, Registry>>;

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct ConsoleSettings {
    pub listen: String,
    #[serde(skip)]
    filter_handle: Option<ReloadHandle>,
}

impl ConsoleSettings {
    pub fn set_filter_reload_handle(&mut self, handle: ReloadHandle) {
        self.filter_handle.replace(handle);
    }
}

#[derive(Debug, Serialize, Deserialize, Clone, Default)]
pub enum Transport {
    #[serde(rename = "tcp")]
    #[default]
    Tcp,
    #[serde(rename = "tls")]
    Tls {
        ca: PathBuf,
        client_auth: Option<ClientAuth>,
    },
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ClientAuth {
    certs: PathBuf,
    key: PathBuf,
}

#[derive(Debug, Serialize, Deserialize, Clone, Hash, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum MetricType {
    Meters,
    Alerts,
}

#[derive(Debug, Serialize, Deserialize, Clone)]
pub struct MetricSettings {
    push_interval: u64,
}

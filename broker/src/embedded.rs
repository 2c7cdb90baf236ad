//! rumqttd 0.20, embedded and fenced.
//!
//! What this module guards against, all checked in rumqttd's source:
//! - `Broker::start()` blocks forever and cannot be stopped, so the broker
//!   runs on its own thread for the life of the process.
//! - `Config::default()` is unusable (`max_connections` 0, tiny segments),
//!   so every field is set from [`BrokerSettings`].
//! - MQTT v5 is incomplete (a v5 PUBLISH with properties breaks v4
//!   subscribers), so only a v4 (MQTT 3.1.1) listener is configured.
//! - A client id the router refuses (`+ $ # /`) that reconnects with the
//!   same id can poison a mutex in the listener and brick it. The auth
//!   handler refuses such ids before the router sees them. rumqttd calls
//!   the handler only when CONNECT carries a login, and refuses a CONNECT
//!   without one, so every client must send a username.
//! - The retained store has no bound upstream; it is capped here at
//!   [`MAX_RETAINED_COUNT`] messages and [`MAX_RETAINED_BYTES`] (a patch),
//!   so that not even an admin can exhaust the broker's memory with it.
//! - With `dynamic_filters` off, a PUBLISH to a topic nobody subscribes to
//!   disconnects the publisher; it is on, which costs a commit log per such
//!   topic (bounded by `segment_size * segment_count`).

use crate::admission::{admit, AclAction, Admission, INTERNAL_USER};
use crate::config::BrokerSettings;
use rumqttd::{ConnectionSettings, RouterConfig, ServerSettings};
use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;
use tracing::error;

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

/// A running embedded broker. It lives until the process exits.
#[derive(Debug, Clone)]
pub struct EmbeddedBroker {
    name: String,
    addr: SocketAddr,
    internal_password: String,
}

impl EmbeddedBroker {
    /// Starts a broker on `settings.listen` and returns once it accepts
    /// connections. Port 0 picks a free port; [`EmbeddedBroker::addr`] tells which.
    pub fn start(
        name: &str,
        settings: &BrokerSettings,
        admission: Arc<dyn Admission>,
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

        let internal_password = format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..));
        let config = rumqttd_config(name, addr, settings, admission, internal_password.clone());
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

        wait_listening(addr, &internal_password)?;
        Ok(EmbeddedBroker {
            name: name.to_owned(),
            addr,
            internal_password,
        })
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
fn wait_listening(addr: SocketAddr, password: &str) -> Result<(), BrokerError> {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if handshake(addr, password).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Err(BrokerError::NotListening(addr))
}

fn handshake(addr: SocketAddr, password: &str) -> std::io::Result<()> {
    use std::io::{Read, Write};
    const CLIENT_ID: &[u8] = b"platform-startup-probe";
    let mut packet = vec![0x10, 0];
    packet.extend_from_slice(&[0, 4, b'M', b'Q', b'T', b'T', 4, 0b1100_0010, 0, 10]);
    for field in [CLIENT_ID, INTERNAL_USER.as_bytes(), password.as_bytes()] {
        packet.extend_from_slice(&(field.len() as u16).to_be_bytes());
        packet.extend_from_slice(field);
    }
    packet[1] = (packet.len() - 2) as u8;
    let mut stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500))?;
    stream.set_read_timeout(Some(Duration::from_secs(1)))?;
    stream.write_all(&packet)?;
    let mut connack = [0u8; 4];
    stream.read_exact(&mut connack)?;
    stream.write_all(&[0xE0, 0])?;
    if connack == [0x20, 2, 0, 0] {
        Ok(())
    } else {
        Err(std::io::Error::other(format!(
            "unexpected CONNACK {connack:?}"
        )))
    }
}

fn rumqttd_config(
    name: &str,
    addr: SocketAddr,
    s: &BrokerSettings,
    admission: Arc<dyn Admission>,
    internal_password: String,
) -> rumqttd::Config {
    let acl_admission = admission.clone();
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
            move |client_id: &str, username: &str, topic: &str, action: AclAction| {
                username == INTERNAL_USER || acl_admission.allow(client_id, username, topic, action)
            },
        )),
    };
    connections.set_auth_handler(
        move |client_id: String, username: String, password: String| {
            let checked = admit(&client_id, &username);
            let internal = username == INTERNAL_USER;
            let internal_ok =
                internal && bool::from(password.as_bytes().ct_eq(internal_password.as_bytes()));
            let admission = admission.clone();
            async move {
                if !checked || internal {
                    return checked && internal_ok;
                }
                if admission.admit(&client_id, &username, &password) {
                    return true;
                }
                let Some((grace, changed)) = admission.grace() else {
                    return false;
                };
                let deadline = tokio::time::Instant::now() + grace;
                loop {
                    let notified = changed.notified();
                    if admission.admit(&client_id, &username, &password) {
                        return true;
                    }
                    if tokio::time::timeout_at(deadline, notified).await.is_err() {
                        return admission.admit(&client_id, &username, &password);
                    }
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
        let err = EmbeddedBroker::start("t", &settings, Arc::new(AdmitAll)).unwrap_err();
        assert!(matches!(err, BrokerError::Bind { .. }), "{err}");
    }
}

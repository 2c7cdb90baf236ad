//! rumqttc's MQTT 3.1.1 and MQTT 5 clients behind one interface, so that
//! [`crate::Bus`] drives either with one loop. rumqttc has a client per
//! version (`rumqttc` and `rumqttc::v5`), with types of the same shape
//! but no trait in common; this file is the only place that tells them
//! apart.

use crate::client::{untrusted, BusOptions, LinkState, Message, ServerMove};
use bytes::Bytes;
use rumqttc::v5;
use rumqttc::{NetworkOptions, QoS, TlsConfiguration, Transport};

/// The MQTT version a client speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MqttVersion {
    /// MQTT 3.1.1, what the platform's own workers speak.
    #[default]
    V311,
    /// MQTT 5: a gateway moves such a client with a DISCONNECT that
    /// carries its new address (server redirection, MQTT 5 §4.11).
    V5,
}

impl std::str::FromStr for MqttVersion {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "3.1.1" | "311" | "4" => Ok(MqttVersion::V311),
            "5" | "5.0" => Ok(MqttVersion::V5),
            other => Err(format!("{other:?}: expected 3.1.1 or 5")),
        }
    }
}

impl std::fmt::Display for MqttVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            MqttVersion::V311 => "3.1.1",
            MqttVersion::V5 => "5",
        })
    }
}

/// The handle that publishes and subscribes.
#[derive(Clone)]
pub(crate) enum Client {
    V311(rumqttc::AsyncClient),
    V5(v5::AsyncClient),
}

/// The event loop that owns the connection. One per connection, for its
/// whole life, moved once into its driver task: the 450-byte difference
/// between the variants costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
pub(crate) enum EventLoop {
    V311(rumqttc::EventLoop),
    V5(v5::EventLoop),
}

/// What [`EventLoop::poll`] saw, as far as the bus cares.
pub(crate) enum Event {
    ConnAck,
    /// A SUBACK; `refused` if any filter was refused.
    SubAck {
        refused: bool,
    },
    Publish(Message),
    /// The DISCONNECT of a clean shutdown went out.
    DisconnectSent,
    Other,
}

/// A failed poll: the link's new state, and the error, for the log.
pub(crate) struct Fault {
    pub(crate) state: LinkState,
    pub(crate) error: String,
}

/// A client and its event loop for `opts`.
pub(crate) fn new(opts: &BusOptions) -> (Client, EventLoop) {
    let mut net = NetworkOptions::new();
    net.set_tcp_nodelay(true);
    net.set_connection_timeout(opts.connect_timeout.as_secs().max(1));
    let transport = opts
        .tls
        .as_ref()
        .map(|config| Transport::tls_with_config(TlsConfiguration::Rustls(config.clone())));
    match opts.mqtt {
        MqttVersion::V311 => {
            let mut mqtt =
                rumqttc::MqttOptions::new(opts.client_id.clone(), opts.host.clone(), opts.port);
            mqtt.set_keep_alive(opts.keep_alive)
                .set_clean_session(true)
                .set_credentials(opts.username.clone(), opts.password.clone())
                .set_max_packet_size(opts.max_packet_size, opts.max_packet_size)
                .set_request_channel_capacity(1024)
                .set_inflight(256);
            if let Some(t) = transport {
                mqtt.set_transport(t);
            }
            if let Some((topic, payload)) = &opts.last_will {
                mqtt.set_last_will(rumqttc::LastWill::new(
                    topic,
                    payload.clone(),
                    QoS::AtLeastOnce,
                    false,
                ));
            }
            let (client, mut eventloop) = rumqttc::AsyncClient::new(mqtt, 1024);
            eventloop.set_network_options(net);
            (Client::V311(client), EventLoop::V311(eventloop))
        }
        MqttVersion::V5 => {
            let mut mqtt =
                v5::MqttOptions::new(opts.client_id.clone(), opts.host.clone(), opts.port);
            let max = u32::try_from(opts.max_packet_size).unwrap_or(u32::MAX);
            mqtt.set_keep_alive(opts.keep_alive)
                .set_clean_start(true)
                .set_credentials(opts.username.clone(), opts.password.clone())
                .set_max_packet_size(Some(max))
                .set_request_channel_capacity(1024)
                .set_outgoing_inflight_upper_limit(256)
                .set_connection_timeout(opts.connect_timeout.as_secs().max(1))
                .set_network_options(net);
            if let Some(t) = transport {
                mqtt.set_transport(t);
            }
            if let Some((topic, payload)) = &opts.last_will {
                mqtt.set_last_will(v5::mqttbytes::v5::LastWill::new(
                    topic,
                    payload.clone(),
                    v5::mqttbytes::QoS::AtLeastOnce,
                    false,
                    None,
                ));
            }
            let (client, eventloop) = v5::AsyncClient::new(mqtt, 1024);
            (Client::V5(client), EventLoop::V5(eventloop))
        }
    }
}

/// The client is closed: the event loop is gone.
pub(crate) struct Closed;

impl Client {
    /// Publishes at QoS 1, waiting for room in the request queue.
    pub(crate) async fn publish(&self, topic: String, payload: Vec<u8>) -> Result<(), Closed> {
        match self {
            Client::V311(c) => c
                .publish(topic, QoS::AtLeastOnce, false, payload)
                .await
                .map_err(|_| Closed),
            Client::V5(c) => c
                .publish(topic, v5::mqttbytes::QoS::AtLeastOnce, false, payload)
                .await
                .map_err(|_| Closed),
        }
    }

    /// Queues a SUBSCRIBE of every filter at QoS 1.
    pub(crate) fn try_subscribe_all(&self, filters: &[String]) -> Result<(), String> {
        match self {
            Client::V311(c) => c
                .try_subscribe_many(
                    filters
                        .iter()
                        .map(|f| rumqttc::SubscribeFilter::new(f.clone(), QoS::AtLeastOnce)),
                )
                .map_err(|e| e.to_string()),
            Client::V5(c) => c
                .try_subscribe_many(filters.iter().map(|f| {
                    v5::mqttbytes::v5::Filter::new(f.clone(), v5::mqttbytes::QoS::AtLeastOnce)
                }))
                .map_err(|e| e.to_string()),
        }
    }

    /// Queues a DISCONNECT.
    pub(crate) fn try_disconnect(&self) {
        let _ = match self {
            Client::V311(c) => c.try_disconnect().map_err(|_| Closed),
            Client::V5(c) => c.try_disconnect().map_err(|_| Closed),
        };
    }
}

impl EventLoop {
    pub(crate) async fn poll(&mut self) -> Result<Event, Fault> {
        match self {
            EventLoop::V311(el) => match el.poll().await {
                Ok(ev) => Ok(v311_event(ev)),
                Err(e) => Err(v311_fault(e)),
            },
            EventLoop::V5(el) => match el.poll().await {
                Ok(ev) => Ok(v5_event(ev)),
                Err(e) => {
                    // rumqttc keeps a server DISCONNECT among its events
                    // and reports only its reason code: its Server
                    // Reference and user properties are read from there.
                    let moved = el.state.events.drain(..).find_map(|ev| match ev {
                        v5::Event::Incoming(v5::mqttbytes::v5::Packet::Disconnect(d)) => {
                            Some(server_move(d))
                        }
                        _ => None,
                    });
                    Err(v5_fault(e, moved))
                }
            },
        }
    }

    /// The login of the next connection attempt.
    pub(crate) fn set_credentials(&mut self, username: &str, password: String) {
        match self {
            EventLoop::V311(el) => {
                el.mqtt_options.set_credentials(username, password);
            }
            EventLoop::V5(el) => {
                el.options.set_credentials(username, password);
            }
        }
    }
}

fn v311_event(ev: rumqttc::Event) -> Event {
    use rumqttc::{Event as E, Packet as P};
    match ev {
        E::Incoming(P::ConnAck(_)) => Event::ConnAck,
        E::Incoming(P::SubAck(ack)) => Event::SubAck {
            refused: ack
                .return_codes
                .iter()
                .any(|c| matches!(c, rumqttc::SubscribeReasonCode::Failure)),
        },
        E::Incoming(P::Publish(p)) => Event::Publish(Message {
            topic: p.topic,
            payload: p.payload,
        }),
        E::Outgoing(rumqttc::Outgoing::Disconnect) => Event::DisconnectSent,
        _ => Event::Other,
    }
}

fn v5_event(ev: v5::Event) -> Event {
    use v5::mqttbytes::v5::{Packet as P, SubscribeReasonCode as Code};
    use v5::Event as E;
    match ev {
        E::Incoming(P::ConnAck(_)) => Event::ConnAck,
        E::Incoming(P::SubAck(ack)) => Event::SubAck {
            refused: ack
                .return_codes
                .iter()
                .any(|c| !matches!(c, Code::Success(_))),
        },
        E::Incoming(P::Publish(p)) => Event::Publish(Message {
            topic: String::from_utf8_lossy(&p.topic).into_owned(),
            payload: Bytes::from(p.payload.to_vec()),
        }),
        E::Outgoing(rumqttc::Outgoing::Disconnect) => Event::DisconnectSent,
        _ => Event::Other,
    }
}

fn v311_fault(e: rumqttc::ConnectionError) -> Fault {
    let state = match &e {
        rumqttc::ConnectionError::ConnectionRefused(code) => {
            LinkState::Refused(format!("{code:?}"))
        }
        rumqttc::ConnectionError::Tls(tls) => match untrusted(tls) {
            Some(reason) => LinkState::Untrusted(reason),
            None => LinkState::Down(e.to_string()),
        },
        other => LinkState::Down(other.to_string()),
    };
    Fault {
        state,
        error: e.to_string(),
    }
}

fn v5_fault(e: v5::ConnectionError, moved: Option<ServerMove>) -> Fault {
    let state = match (&e, moved) {
        (_, Some(moved)) => LinkState::Moved(moved),
        (v5::ConnectionError::ConnectionRefused(code), None) => {
            LinkState::Refused(format!("{code:?}"))
        }
        (v5::ConnectionError::Tls(tls), None) => match untrusted(tls) {
            Some(reason) => LinkState::Untrusted(reason),
            None => LinkState::Down(e.to_string()),
        },
        (other, None) => LinkState::Down(other.to_string()),
    };
    Fault {
        state,
        error: e.to_string(),
    }
}

fn server_move(d: v5::mqttbytes::v5::Disconnect) -> ServerMove {
    let (server_reference, user_properties) = match d.properties {
        Some(p) => (p.server_reference, p.user_properties),
        None => (None, Vec::new()),
    };
    ServerMove {
        reason_code: d.reason_code as u8,
        reason: format!("{:?}", d.reason_code),
        server_reference,
        user_properties,
    }
}

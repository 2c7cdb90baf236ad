use crate::link::local::{LinkError, LinkRx, LinkTx};
use crate::link::network;
use crate::link::network::Network;
use crate::local::LinkBuilder;
use crate::protocol::{
    ConnAck, ConnAckProperties, Connect, ConnectReturnCode, Disconnect, DisconnectProperties,
    DisconnectReasonCode, Login, Packet, Protocol,
};
use crate::router::{Event, Notification};
// PATCH(platform): the topic ACL's types, the auth verdict and the
// disconnect hook.
use crate::{
    AclAction, AclHandler, AclRequest, ConnectionId, ConnectionSettings, DisconnectHandler, Kick,
};

use flume::{RecvError, SendError, Sender, TrySendError};
use std::cmp::min;
use std::collections::VecDeque;
use std::io;
use std::sync::Arc;
use std::time::Duration;
use subtle::ConstantTimeEq;
use tokio::time::error::Elapsed;
use tokio::{select, time};
use tracing::{trace, Span};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("I/O")]
    Io(#[from] io::Error),
    #[error("Zero keep alive")]
    ZeroKeepAlive,
    #[error("Not connect packet")]
    NotConnectPacket(Packet),
    #[error("Network {0}")]
    Network(#[from] network::Error),
    #[error("Timeout")]
    Timeout(#[from] Elapsed),
    #[error("Channel send error")]
    Send(#[from] SendError<(ConnectionId, Event)>),
    #[error("Channel recv error")]
    Recv(#[from] RecvError),
    #[error("Got new session, disconnecting old one")]
    SessionEnd,
    #[error("Persistent session requires valid client id")]
    InvalidClientId,
    #[error("Unexpected router message")]
    NotConnectionAck,
    #[error("ConnAck error {0}")]
    ConnectionAck(String),
    #[error("Authentication error")]
    InvalidAuth,
    #[error("Channel try send error")]
    TrySend(#[from] TrySendError<(ConnectionId, Event)>),
    #[error("Link error = {0}")]
    Link(#[from] LinkError),
    /// PATCH(platform): the ACL refused a PUBLISH or SUBSCRIBE.
    #[error("Not authorized: {0}")]
    NotAuthorized(String),
    /// PATCH(platform): the CONNECT was refused with this CONNACK code
    /// and, for an MQTT 5 client, this Server Reference (already written
    /// to the client).
    #[error("Connect refused: {0:?}")]
    ConnectRefused(ConnectReturnCode, Option<String>),
    /// PATCH(platform): the application closed the connection
    /// ([`crate::Sessions::kick`]).
    #[error("Closed by the application: {0:?}")]
    Kicked(DisconnectReasonCode),
    /// PATCH(platform): an MQTT 5 client sent a packet that does not
    /// decode; it got a DISCONNECT with this reason code.
    #[error("Malformed packet from an MQTT 5 client: {0:?}")]
    Malformed(DisconnectReasonCode),
}

/// Orchestrates between Router and Network.
pub struct RemoteLink<P> {
    connect: Connect,
    pub(crate) connection_id: ConnectionId,
    network: Network<P>,
    link_tx: LinkTx,
    link_rx: LinkRx,
    notifications: VecDeque<Notification>,
    pub(crate) will_delay_interval: u32,
    /// PATCH(platform): the ACL with this client's id and username.
    acl: Option<(AclHandler, String, String)>,
    /// PATCH(platform): the batch just read, checked against the ACL
    /// before any of it reaches the buffer shared with the router.
    batch: VecDeque<Packet>,
}

impl<P: Protocol> RemoteLink<P> {
    pub async fn new(
        router_tx: Sender<(ConnectionId, Event)>,
        tenant_id: Option<String>,
        mut network: Network<P>,
        connect_packet: Packet,
        dynamic_filters: bool,
        assigned_client_id: Option<String>,
        acl: Option<AclHandler>,
    ) -> Result<RemoteLink<P>, Error> {
        let Packet::Connect(connect, props, lastwill, lastwill_props, login) = connect_packet
        else {
            return Err(Error::NotConnectPacket(connect_packet));
        };
        // PATCH(platform): keep who this is for the ACL.
        let acl = acl.map(|acl| {
            let username = login.map(|l| l.username).unwrap_or_default();
            (acl, connect.client_id.clone(), username)
        });

        // Register this connection with the router. Router replys with ack which if ok will
        // start the link. Router can sometimes reject the connection (ex max connection limit)
        let client_id = assigned_client_id.as_ref().unwrap_or(&connect.client_id);
        let clean_session = connect.clean_session;

        let topic_alias_max = props.as_ref().and_then(|p| p.topic_alias_max);
        let session_expiry = props
            .as_ref()
            .and_then(|p| p.session_expiry_interval)
            .unwrap_or(0);

        let delay_interval = lastwill_props
            .as_ref()
            .and_then(|f| f.delay_interval)
            .unwrap_or(0);

        // The Server delays publishing the Client’s Will Message until
        // the Will Delay Interval has passed or the Session ends, whichever happens first
        let will_delay_interval = min(session_expiry, delay_interval);

        let built = LinkBuilder::new(client_id, router_tx)
            .tenant_id(tenant_id)
            .clean_session(clean_session)
            .last_will(lastwill)
            .last_will_properties(lastwill_props)
            .dynamic_filters(dynamic_filters)
            .topic_alias_max(topic_alias_max.unwrap_or(0))
            .build();
        // PATCH(platform): the router refused the connection (over
        // `max_connections`): CONNACK 3, server unavailable (MQTT 5: 0x89,
        // server busy), then the close; upstream closed it without a
        // CONNACK, which a client cannot tell from a network fault.
        let (link_tx, link_rx, notification) = match built {
            Ok(link) => link,
            Err(e) => {
                let _ = refuse(&mut network, ConnectReturnCode::ServerBusy, None).await;
                return Err(e.into());
            }
        };

        let id = link_rx.id();
        Span::current().record("connection_id", id);

        if let Some(mut packet) = notification.into() {
            if let Packet::ConnAck(_ack, props) = &mut packet {
                let mut new_props = props.clone().unwrap_or_default();
                new_props.assigned_client_identifier = assigned_client_id;
                *props = Some(new_props);
                network.write(packet).await?;
            }
        }

        Ok(RemoteLink {
            connect,
            connection_id: id,
            network,
            link_tx,
            link_rx,
            // PATCH(platform): starts small and grows on demand (upstream: 100).
            notifications: VecDeque::with_capacity(8),
            will_delay_interval,
            acl,
            // PATCH(platform): see RemoteLink::batch.
            batch: VecDeque::new(),
        })
    }

    /// PATCH(platform): the first packet among `packets` the ACL refuses.
    fn refused<'a>(&self, packets: impl Iterator<Item = &'a Packet>) -> Option<String> {
        let (acl, client_id, username) = self.acl.as_ref()?;
        for packet in packets {
            match packet {
                Packet::Publish(publish, _) => {
                    let request = AclRequest {
                        action: AclAction::Publish,
                        topic: std::str::from_utf8(&publish.topic).unwrap_or(""),
                        payload: &publish.payload,
                        retain: publish.retain,
                    };
                    if !acl(client_id, username, &request) {
                        let retained = if publish.retain { "retained " } else { "" };
                        return Some(format!("{retained}publish to {:?}", request.topic));
                    }
                }
                Packet::Subscribe(subscribe, _) => {
                    for filter in &subscribe.filters {
                        let request = AclRequest {
                            action: AclAction::Subscribe,
                            topic: &filter.path,
                            payload: &[],
                            retain: false,
                        };
                        if !acl(client_id, username, &request) {
                            return Some(format!("subscribe to {:?}", filter.path));
                        }
                    }
                }
                _ => {}
            }
        }
        None
    }

    /// PATCH(platform): the MQTT version the connection speaks.
    pub fn version(&self) -> u8 {
        self.network.version()
    }

    /// PATCH(platform): `e`, a failed read; an MQTT 5 client whose packet
    /// did not decode first gets a DISCONNECT saying why.
    async fn malformed(&mut self, e: network::Error) -> Error {
        let Some(reason) = disconnect_reason(&e) else {
            return e.into();
        };
        if self.network.version() != 5 {
            return e.into();
        }
        let disconnect = Disconnect {
            reason_code: reason,
        };
        let _ = self
            .network
            .write(Packet::Disconnect(disconnect, None))
            .await;
        Error::Malformed(reason)
    }

    /// PATCH(platform): `kicks` closes the connection from outside
    /// ([`crate::Sessions`]); never fires if None.
    pub async fn start(&mut self, kicks: Option<flume::Receiver<Kick>>) -> Result<(), Error> {
        self.network.set_keepalive(self.connect.keep_alive);
        let kicked = async {
            match kicks {
                Some(kicks) => kicks.recv_async().await.ok(),
                None => None,
            }
        };
        tokio::pin!(kicked);
        let mut kicks_open = true;

        // Note:
        // Shouldn't result in bounded queue deadlocks because of blocking n/w send
        loop {
            select! {
                // PATCH(platform): closed by the application: an MQTT 5
                // client first gets its DISCONNECT (reason, Server
                // Reference, user properties); 3.1.1 has none to send.
                kick = &mut kicked, if kicks_open => {
                    let Some(kick) = kick else {
                        kicks_open = false;
                        continue;
                    };
                    if self.network.version() == 5 {
                        let props = DisconnectProperties {
                            session_expiry_interval: None,
                            reason_string: None,
                            user_properties: kick.user_properties,
                            server_reference: kick.server_reference,
                        };
                        let disconnect = Disconnect { reason_code: kick.reason };
                        self.network.write(Packet::Disconnect(disconnect, Some(props))).await?;
                    }
                    return Err(Error::Kicked(kick.reason));
                }
                o = self.network.read() => {
                    // PATCH(platform): an MQTT 5 client is told why a
                    // packet it sent is refused (0x81 malformed, 0x95
                    // too large) before the connection closes.
                    let packet = match o {
                        Ok(packet) => packet,
                        Err(e) => return Err(self.malformed(e).await),
                    };
                    // PATCH(platform): read the whole batch into a queue of
                    // its own and check it against the ACL; only a batch
                    // read without error and allowed whole reaches the
                    // buffer the router drains. Appended first, a batch
                    // that failed mid-read (a malformed header after a
                    // forbidden PUBLISH) left unchecked packets there for
                    // a DeviceData still queued to deliver. A read error or
                    // a refusal discards the whole batch and disconnects.
                    // (readv's limit now bounds a batch, not the buffer.)
                    self.batch.clear();
                    self.batch.push_back(packet);
                    if let Err(e) = self.network.readv(&mut self.batch) {
                        self.batch.clear();
                        return Err(self.malformed(e).await);
                    }
                    if let Some(what) = self.refused(self.batch.iter()) {
                        self.batch.clear();
                        return Err(Error::NotAuthorized(what));
                    }
                    let len = {
                        let mut buffer = self.link_tx.buffer();
                        buffer.extend(self.batch.drain(..));
                        buffer.len()
                    };

                    trace!("Packets read from network, count = {}", len);
                    self.link_tx.notify().await?;
                }
                // Receive from router when previous when state isn't in collision
                // due to previously received data request
                o = self.link_rx.exchange(&mut self.notifications) => {
                    o?;
                    let mut packets = VecDeque::new();
                    let mut unscheduled = false;

                    for notif in self.notifications.drain(..) {
                        if let Some(packet) = notif.into() {
                            packets.push_back(packet);
                        } else {
                            unscheduled = true;
                        }

                    }
                    self.network.writev(packets).await?;
                    if unscheduled {
                        self.link_rx.wake().await?;
                    }
                }
            }
        }
    }
}

/// PATCH(platform): an admitted CONNECT. Dropping it (when the
/// connection ends, however it ends) calls the disconnect hook, once.
pub struct Admitted {
    hook: Option<(DisconnectHandler, String, String)>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        if let Some((hook, client_id, username)) = self.hook.take() {
            hook(&client_id, &username);
        }
    }
}

/// PATCH(platform): writes a CONNACK refusing the CONNECT with `code`; the
/// caller then closes the connection.
/// An MQTT 5 client also gets `server_reference` (3.1.1 has no properties).
async fn refuse<P: Protocol>(
    network: &mut Network<P>,
    code: ConnectReturnCode,
    server_reference: Option<String>,
) -> Result<(), Error> {
    let ack = ConnAck {
        session_present: false,
        code,
    };
    let props = server_reference.map(|server_reference| ConnAckProperties {
        server_reference: Some(server_reference),
        ..ConnAckProperties::default()
    });
    network.write(Packet::ConnAck(ack, props)).await?;
    Ok(())
}

/// PATCH(platform): the MQTT 5 reason code for a packet that failed to
/// decode; None for an I/O error or a timeout (nothing to tell).
fn disconnect_reason(e: &network::Error) -> Option<DisconnectReasonCode> {
    use crate::protocol::Error as P;
    match e {
        network::Error::Protocol(P::PayloadSizeLimitExceeded(_)) => {
            Some(DisconnectReasonCode::PacketTooLarge)
        }
        network::Error::Protocol(_) => Some(DisconnectReasonCode::MalformedPacket),
        _ => None,
    }
}

/// PATCH(platform): the CONNACK code for a CONNECT that failed to decode:
/// an unknown protocol level is 1 (3.1.1 §3.1.2.2; written in the 3.1.1
/// format, which a 3.1 client reads too); an MQTT 5 client's malformed or
/// oversized CONNECT is 0x81 or 0x95 (MQTT 5 §3.2.2.2). None: close without
/// a CONNACK (a wrong protocol name, 3.1.1 §3.1.2.1; a 3.1.1 client's
/// malformed CONNECT, 3.1.1 §4.8).
fn connect_refusal<P: Protocol>(
    network: &Network<P>,
    e: &network::Error,
) -> Option<ConnectReturnCode> {
    use crate::protocol::Error as P;
    match e {
        network::Error::Protocol(P::InvalidProtocolLevel(_)) => {
            Some(ConnectReturnCode::RefusedProtocolVersion)
        }
        network::Error::Protocol(P::InvalidProtocol) => None,
        _ if network.version() != 5 => None,
        _ => match disconnect_reason(e)? {
            DisconnectReasonCode::PacketTooLarge => Some(ConnectReturnCode::PacketTooLarge),
            _ => Some(ConnectReturnCode::MalformedPacket),
        },
    }
}

/// Read MQTT connect packet from network and verify it.
/// authentication and checks are done here.
/// PATCH(platform): a refusal by auth or by the ACL (of the last will)
/// is written as a CONNACK; the [`Admitted`] returned with the packet
/// lives as long as the connection.
pub async fn mqtt_connect<P>(
    config: Arc<ConnectionSettings>,
    network: &mut Network<P>,
) -> Result<(Packet, Admitted), Error>
where
    P: Protocol,
{
    // Wait for MQTT connect packet and error out if it's not received in time to prevent
    // DOS attacks by filling total connections that the server can handle with idle open
    // connections which results in server rejecting new connections
    let connection_timeout_ms = config.connection_timeout_ms.into();
    let packet = time::timeout(Duration::from_millis(connection_timeout_ms), async {
        let packet = network.read().await?;
        Ok::<_, network::Error>(packet)
    })
    .await?;
    // PATCH(platform): a CONNECT that does not decode is answered with
    // its CONNACK code where the spec has one.
    let packet = match packet {
        Ok(packet) => packet,
        Err(e) => {
            if let Some(code) = connect_refusal(network, &e) {
                refuse(network, code, None).await?;
            }
            return Err(e.into());
        }
    };

    let (connect, _props, login) = match packet {
        Packet::Connect(ref connect, ref props, _, _, ref login) => (connect, props, login),
        packet => return Err(Error::NotConnectPacket(packet)),
    };

    Span::current().record("client_id", &connect.client_id);

    // PATCH(platform): an empty client id needs a clean session (3.1.1
    // §3.1.3.1), checked before the auth handler, whose refusal would
    // otherwise be a different code (upstream checked it after).
    if connect.client_id.is_empty() && !connect.clean_session {
        refuse(network, ConnectReturnCode::ClientIdentifierNotValid, None).await?;
        return Err(Error::InvalidClientId);
    }

    // PATCH(platform): a refusal is answered with its CONNACK code.
    if let Err(e) = handle_auth(config.clone(), login.as_ref(), &connect.client_id).await {
        if let Error::ConnectRefused(code, server_reference) = &e {
            refuse(network, *code, server_reference.clone()).await?;
        }
        return Err(e);
    }
    let username = login.as_ref().map(|l| l.username.as_str()).unwrap_or("");
    // PATCH(platform): admitted from here on, whatever happens next.
    let admitted = Admitted {
        hook: config
            .on_disconnect
            .clone()
            .map(|hook| (hook, connect.client_id.clone(), username.to_owned())),
    };

    // PATCH(platform): a last will the client may not publish itself
    // refuses the CONNECT (CONNACK 5).
    if let (Some(acl), Packet::Connect(_, _, Some(will), _, _)) = (&config.acl, &packet) {
        let request = AclRequest {
            action: AclAction::Publish,
            topic: std::str::from_utf8(&will.topic).unwrap_or(""),
            payload: &will.message,
            retain: will.retain,
        };
        if !acl(&connect.client_id, username, &request) {
            refuse(network, ConnectReturnCode::NotAuthorized, None).await?;
            return Err(Error::NotAuthorized(format!(
                "last will on {:?}",
                request.topic
            )));
        }
    }

    // PATCH(platform): keep alive 0 turns the keep-alive off (3.1.1
    // §3.1.2.10, MQTT 5 §3.1.2.10); upstream closed the connection without
    // a CONNACK. A dead peer is still found by TCP, and a silent client
    // costs a connection, as an idle one with a long keep-alive does.
    // (The empty client id check moved before the auth handler.)

    // Ok((connect, props, lastwill, lastwill_props))
    // PATCH(platform): with the connection's Admitted.
    Ok((packet, admitted))
}

async fn handle_auth(
    config: Arc<ConnectionSettings>,
    login: Option<&Login>,
    client_id: &str,
) -> Result<(), Error> {
    if config.auth.is_none() && config.external_auth.is_none() {
        return Ok(());
    }

    // PATCH(platform): the external handler decides about a CONNECT with
    // or without a login, and its verdict is the CONNACK's code; static
    // auth's refusals are CONNACK 4 (upstream: no CONNACK at all).
    let bad_login = Error::ConnectRefused(ConnectReturnCode::BadUserNamePassword, None);
    if let Some(auth) = &config.external_auth {
        let login = login.map(|l| (l.username.clone(), l.password.clone()));
        let verdict = auth(client_id.to_owned(), login).await;
        return match verdict.refusal() {
            None => Ok(()),
            Some(code) => Err(Error::ConnectRefused(
                code,
                verdict.server_reference().map(str::to_owned),
            )),
        };
    }

    // if authentication is configured and connect packet doesn't have login details
    // return an error
    let Some(login) = login else {
        return Err(bad_login);
    };

    let username = &login.username;
    let password = &login.password;

    if let Some(pairs) = &config.auth {
        if let Some(stored_password) = pairs.get(username) {
            if stored_password.as_bytes().ct_eq(password.as_bytes()).into() {
                return Ok(());
            }
        }

        // PATCH(platform): CONNACK 4 (upstream: InvalidAuth, no CONNACK).
        return Err(bad_login);
    }

    // PATCH(platform): as above.
    Err(bad_login)
}

#[cfg(test)]
mod tests {
    use std::{collections::HashMap, sync::Arc};

    use crate::{protocol::Login, ConnectionSettings};

    use super::handle_auth;

    fn config() -> ConnectionSettings {
        ConnectionSettings {
            connection_timeout_ms: 0,
            max_payload_size: 0,
            max_inflight_count: 0,
            auth: None,
            external_auth: None,
            dynamic_filters: false,
            // PATCH(platform): the fields the ACL, the disconnect hook and
            // the accept hook added; these tests use none of them.
            acl: None,
            on_disconnect: None,
            on_accept: None,
            sessions: None,
        }
    }

    fn login() -> Login {
        Login {
            username: "u".to_owned(),
            password: "p".to_owned(),
        }
    }

    #[tokio::test]
    async fn no_login_no_auth() {
        let cfg = Arc::new(config());
        let r = handle_auth(cfg, None, "").await;
        assert!(r.is_ok());
    }

    #[tokio::test]
    async fn some_login_no_auth() {
        let cfg = Arc::new(config());
        let login = login();
        let r = handle_auth(cfg, Some(&login), "").await;
        assert!(r.is_ok());
    }

    #[tokio::test]
    async fn login_matches_static_auth() {
        let login = login();
        let mut map = HashMap::<String, String>::new();
        map.insert(login.username.clone(), login.password.clone());

        let mut cfg = config();
        cfg.auth = Some(map);

        let r = handle_auth(Arc::new(cfg), Some(&login), "").await;
        assert!(r.is_ok());
    }

    #[tokio::test]
    async fn login_fails_static_no_external() {
        let login = login();
        let mut map = HashMap::<String, String>::new();
        map.insert("wrong".to_owned(), "wrong".to_owned());

        let mut cfg = config();
        cfg.auth = Some(map);

        let r = handle_auth(Arc::new(cfg), Some(&login), "").await;
        assert!(r.is_err());
    }

    #[tokio::test]
    async fn login_fails_static_matches_external() {
        let login = login();

        let mut map = HashMap::<String, String>::new();
        map.insert("wrong".to_owned(), "wrong".to_owned());

        let dynamic = |_: String, _: String, _: String| async { true };

        let mut cfg = config();
        cfg.auth = Some(map);
        cfg.set_auth_handler(dynamic);

        let r = handle_auth(Arc::new(cfg), Some(&login), "").await;
        assert!(r.is_ok());
    }

    #[tokio::test]
    async fn login_fails_static_fails_external() {
        let login = login();

        let mut map = HashMap::<String, String>::new();
        map.insert("wrong".to_owned(), "wrong".to_owned());

        let dynamic = |_: String, _: String, _: String| async { false };

        let mut cfg = config();
        cfg.auth = Some(map);
        cfg.set_auth_handler(dynamic);

        let r = handle_auth(Arc::new(cfg), Some(&login), "").await;
        assert!(r.is_err());
    }

    // PATCH(platform): the verdict handler is asked without a login too,
    // and its refusal carries its code.
    #[tokio::test]
    async fn a_verdict_handler_decides_with_or_without_a_login() {
        use crate::protocol::ConnectReturnCode;
        use crate::AuthVerdict;
        let mut cfg = config();
        cfg.set_auth_verdict_handler(
            |client_id: String, login: Option<(String, String)>| async move {
                match (client_id.as_str(), login) {
                    ("anonymous", None) => AuthVerdict::Accept,
                    (_, None) => AuthVerdict::NotAuthorized,
                    ("bad/id", Some(_)) => AuthVerdict::IdentifierRejected,
                    (_, Some((_, password))) if password == "p" => AuthVerdict::Accept,
                    (_, Some(_)) => AuthVerdict::BadUserNamePassword,
                }
            },
        );
        let cfg = Arc::new(cfg);
        let code = |r: Result<(), super::Error>| match r {
            Ok(()) => None,
            Err(super::Error::ConnectRefused(code, _)) => Some(code),
            Err(e) => panic!("{e}"),
        };
        assert_eq!(
            code(handle_auth(cfg.clone(), None, "anonymous").await),
            None
        );
        assert_eq!(
            code(handle_auth(cfg.clone(), None, "c").await),
            Some(ConnectReturnCode::NotAuthorized)
        );
        assert_eq!(
            code(handle_auth(cfg.clone(), Some(&login()), "c").await),
            None
        );
        assert_eq!(
            code(handle_auth(cfg.clone(), Some(&login()), "bad/id").await),
            Some(ConnectReturnCode::ClientIdentifierNotValid)
        );
        let wrong = Login {
            password: "x".to_owned(),
            ..login()
        };
        assert_eq!(
            code(handle_auth(cfg, Some(&wrong), "c").await),
            Some(ConnectReturnCode::BadUserNamePassword)
        );
    }

    #[tokio::test]
    async fn external_auth_clousre_or_fnptr_type_check_or_fail_compile() {
        let closure = |_: String, _: String, _: String| async { false };
        async fn fnptr(_: String, _: String, _: String) -> bool {
            true
        }

        let mut cfg = config();
        cfg.set_auth_handler(closure);
        cfg.set_auth_handler(fnptr);
    }
}

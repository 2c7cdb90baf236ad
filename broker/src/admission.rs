//! Who may connect to an embedded broker, and what an admitted client may
//! publish and subscribe to: the question every broker of the platform
//! asks at CONNECT and on every PUBLISH, SUBSCRIBE and last will. The
//! platform broker answers it by role (`security`), a gateway broker by
//! its assigned devices (`gateway`); `embedded` only asks.

use protocol::check_client_id;
pub use rumqttd::{AclAction, AclRequest};
use std::sync::Arc;
use std::time::Duration;
use tracing::warn;

/// The answer to a CONNECT. A refusal reaches the client as the CONNACK's
/// return code, so that a device can tell a refusal from a network fault,
/// and a wrong secret from a policy that will not let it in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Accept,
    /// CONNACK 4, bad user name or password: the login is wrong (a wrong
    /// password, an unknown user, a device not enrolled or with a wrong
    /// login, a bad signed assignment). Trying again will not help.
    BadLogin,
    /// CONNACK 5, not authorized: the login is right, or absent, but this
    /// client may not connect here now (a policy refusal, a device not or
    /// no longer assigned to this gateway, a locked-out device).
    NotAuthorized,
}

/// Who may connect, beyond the checks every broker makes ([`admit`]).
/// The platform admits by role; a gateway admits only the devices
/// assigned to it.
///
/// Every method is called on a broker's listener runtime and must not
/// block.
pub trait Admission: Send + Sync + 'static {
    /// `login` is the CONNECT's (username, password), None if it carried
    /// no username.
    fn admit(&self, client_id: &str, login: Option<(&str, &str)>) -> Verdict;

    /// The topic ACL for an admitted client (never asked for this
    /// process's own clients): one PUBLISH, SUBSCRIBE filter or last will,
    /// with its payload and retain flag. `username` is "" for a client
    /// that connected without one. The default allows everything.
    fn allow(&self, _client_id: &str, _username: &str, _request: &AclRequest) -> bool {
        true
    }

    /// A client that [`Admission::admit`] refused may wait this long for
    /// the answer to change, re-asked whenever the returned `Notify` fires:
    /// a device told its gateway by the registry can race the registry's
    /// note to that gateway; a device that logs in while the platform
    /// starts can race the verifier. None: refuse at once.
    fn grace(
        &self,
        _client_id: &str,
        _login: Option<(&str, &str)>,
    ) -> Option<(Duration, Arc<tokio::sync::Notify>)> {
        None
    }

    /// A connection that [`Admission::admit`] accepted has ended, for
    /// whatever reason (DISCONNECT, a lost network, a takeover by a newer
    /// connection with the same client id, a refusal by the router or the
    /// ACL). Called exactly once per accepted CONNECT, with the client id
    /// it was admitted under, and never for this process's own clients:
    /// what lets an admission count the live connections of an identity.
    /// The default does nothing.
    fn disconnected(&self, _client_id: &str) {}

    /// Where a client that [`Admission::admit`] refused as
    /// [`Verdict::NotAuthorized`] has moved, if this admission knows: an
    /// MQTT 5 client then gets CONNACK 0x9C (use another server) or 0x9D
    /// (server moved) with that Server Reference instead; a 3.1.1 client
    /// still gets CONNACK 5. The default knows of no move.
    fn moved(&self, _client_id: &str) -> Option<Moved> {
        None
    }
}

/// Where a refused client went ([`Admission::moved`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Moved {
    /// Its new server, "host:port".
    pub address: String,
    /// For good (a drain: CONNACK 0x9D), not just this once (a remap: 0x9C).
    pub permanent: bool,
}

/// Admits every well-formed client, with or without a login.
pub struct AdmitAll;

impl Admission for AdmitAll {
    fn admit(&self, _client_id: &str, _login: Option<(&str, &str)>) -> Verdict {
        Verdict::Accept
    }
}

/// The username of this process's own clients of its brokers (the startup
/// probe, a gateway's agent). Its password is random per broker and never
/// leaves the process.
pub const INTERNAL_USER: &str = "platform-internal";

/// The check every broker makes before a CONNECT may reach rumqttd's
/// router, which would refuse such a client id in a way that can brick
/// its listener. False: refuse with CONNACK 2 (identifier rejected).
///
/// An empty client id is admitted: rumqttd then assigns `rumqtt-<uuid>`
/// (mosquitto_pub and mosquitto_sub send an empty id by default).
pub fn admit(client_id: &str) -> bool {
    if client_id.is_empty() {
        return true;
    }
    if let Err(e) = check_client_id(client_id) {
        warn!(client_id = %client_id.escape_debug(), reason = %e, "connection refused: bad client id");
        return false;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admit_refuses_what_the_router_would() {
        assert!(admit("device-1"));
        assert!(admit(""), "mosquitto clients send an empty id");
        for id in ["a/b", "a+", "#", "$sys", "x$y"] {
            assert!(!admit(id), "{id:?} admitted");
        }
    }
}

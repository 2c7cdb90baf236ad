//! Who may connect to an embedded broker, and what an admitted client may
//! publish and subscribe to: the question every broker of the platform
//! asks at CONNECT and on every PUBLISH, SUBSCRIBE and last will. The
//! platform broker answers it by role (`security`), a gateway broker by
//! its assigned devices (`gateway`); `embedded` only asks.

use protocol::check_client_id;
pub use rumqttd::AclAction;
use std::sync::Arc;
use std::time::Duration;
use tracing::warn;

/// Who may connect, beyond the checks every broker makes (a client id
/// rumqttd accepts, a username). The platform admits everyone; a gateway
/// admits only the devices assigned to it.
pub trait Admission: Send + Sync + 'static {
    fn admit(&self, client_id: &str, username: &str, password: &str) -> bool;

    /// The topic ACL for an admitted client (never asked for this
    /// process's own clients). The default allows everything.
    fn allow(&self, _client_id: &str, _username: &str, _topic: &str, _action: AclAction) -> bool {
        true
    }

    /// A refused client may wait this long for the answer to change,
    /// re-asked whenever the returned `Notify` fires: a device told its
    /// gateway by the registry can race the registry's note to that
    /// gateway. None: refuse at once.
    fn grace(&self) -> Option<(Duration, Arc<tokio::sync::Notify>)> {
        None
    }
}

/// Admits every well-formed client.
pub struct AdmitAll;

impl Admission for AdmitAll {
    fn admit(&self, _client_id: &str, _username: &str, _password: &str) -> bool {
        true
    }
}

/// The username of this process's own clients of its brokers (the startup
/// probe, a gateway's agent). Its password is random per broker and never
/// leaves the process.
pub const INTERNAL_USER: &str = "platform-internal";

/// The checks every broker makes before a CONNECT may reach rumqttd's
/// router.
///
/// An empty client id is admitted: rumqttd then assigns `rumqtt-<uuid>`
/// (mosquitto_pub and mosquitto_sub send an empty id by default).
pub fn admit(client_id: &str, username: &str) -> bool {
    if client_id.is_empty() {
        return !username.is_empty();
    }
    if let Err(e) = check_client_id(client_id) {
        warn!(client_id = %client_id.escape_debug(), reason = %e, "connection refused: bad client id");
        return false;
    }
    if username.is_empty() {
        warn!(client_id, "connection refused: no username");
        return false;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admit_refuses_what_the_router_would() {
        assert!(admit("device-1", "u"));
        assert!(admit("", "u"), "mosquitto clients send an empty id");
        for id in ["a/b", "a+", "#", "$sys", "x$y"] {
            assert!(!admit(id, "u"), "{id:?} admitted");
        }
        assert!(!admit("ok", ""));
    }
}

//! PATCH(platform): the live connections of a listener, by client id, so
//! that the application embedding the broker can close one.
//!
//! Upstream has no way to end a client's connection from outside: a
//! gateway that moved a device away could only ask it to leave. With
//! [`Sessions`] set in a listener's `ConnectionSettings`, every connection
//! that starts registers itself under its client id (a newer connection
//! with the same id replaces the entry; a link removes only its own), and
//! [`Sessions::kick`] ends it: an MQTT 5 client first gets a DISCONNECT
//! with the kick's reason code and properties (MQTT 5 §4.11 server
//! redirection), a 3.1.1 client, whose version has no server DISCONNECT,
//! just sees the connection close.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::protocol::DisconnectReasonCode;

/// Why and where to a connection is closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kick {
    /// The DISCONNECT's reason code (MQTT 5 clients only).
    pub reason: DisconnectReasonCode,
    /// MQTT 5 Server Reference: where the client should connect instead.
    pub server_reference: Option<String>,
    /// MQTT 5 user properties of the DISCONNECT.
    pub user_properties: Vec<(String, String)>,
}

struct Entry {
    serial: u64,
    version: u8,
    kick: flume::Sender<Kick>,
}

/// The registry; cheap to clone, all clones share it.
#[derive(Clone, Default)]
pub struct Sessions {
    live: Arc<Mutex<HashMap<String, Entry>>>,
    serial: Arc<AtomicU64>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions")
            .field("live", &self.len())
            .finish()
    }
}

impl Sessions {
    /// The MQTT version (4 or 5) of `client_id`'s connection, if it has one.
    pub fn version(&self, client_id: &str) -> Option<u8> {
        self.lock().get(client_id).map(|e| e.version)
    }

    /// Closes `client_id`'s connection as `kick` says. Returns the MQTT
    /// version of the connection it closes, or None if the client has none.
    pub fn kick(&self, client_id: &str, kick: Kick) -> Option<u8> {
        let entry = self.lock().remove(client_id)?;
        // A link that ended meanwhile has dropped its receiver: nothing
        // left to close.
        entry.kick.try_send(kick).ok()?;
        Some(entry.version)
    }

    /// How many connections are registered.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Registers a connection that has started; the guard removes it.
    pub(crate) fn register(&self, client_id: &str, version: u8) -> Registered {
        let serial = self.serial.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = flume::bounded(1);
        self.lock().insert(
            client_id.to_owned(),
            Entry {
                serial,
                version,
                kick: tx,
            },
        );
        Registered {
            sessions: self.clone(),
            client_id: client_id.to_owned(),
            serial,
            kicks: rx,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A registered connection; dropped when it ends, it removes its entry
/// unless a newer connection with the same client id replaced it.
pub(crate) struct Registered {
    sessions: Sessions,
    client_id: String,
    serial: u64,
    pub(crate) kicks: flume::Receiver<Kick>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        let mut live = self.sessions.lock();
        if live.get(&self.client_id).map(|e| e.serial) == Some(self.serial) {
            live.remove(&self.client_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kick() -> Kick {
        Kick {
            reason: DisconnectReasonCode::UseAnotherServer,
            server_reference: Some("127.0.0.1:1".into()),
            user_properties: vec![],
        }
    }

    #[test]
    fn a_newer_connection_replaces_an_older_and_only_its_own_end_removes_it() {
        let sessions = Sessions::default();
        let old = sessions.register("dev", 4);
        let new = sessions.register("dev", 5);
        assert_eq!(sessions.version("dev"), Some(5));
        drop(old);
        assert_eq!(
            sessions.version("dev"),
            Some(5),
            "the old link removed the new"
        );
        assert_eq!(sessions.kick("dev", kick()), Some(5));
        assert_eq!(new.kicks.try_recv().unwrap(), kick());
        assert!(sessions.is_empty());
        assert_eq!(sessions.kick("dev", kick()), None);
        drop(new);
        assert!(sessions.is_empty());
    }

    #[test]
    fn a_kick_for_an_ended_link_closes_nothing() {
        let sessions = Sessions::default();
        drop(sessions.register("dev", 4));
        assert_eq!(sessions.kick("dev", kick()), None);
    }
}

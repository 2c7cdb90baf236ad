//! Whom a gateway broker admits: the devices the registry assigned to it,
//! each (in secure mode) with its signed assignment to this gateway, and
//! confined to its own topics. A device not (or no longer) assigned here
//! is refused with CONNACK 5 (not authorized: "moved away", ask the
//! registry again); a bad signed assignment with CONNACK 4.

use crate::admission::{AclRequest, Admission, Verdict};
use protocol::crypto::PlatformPublicKey;
use protocol::decode;
use protocol::gateway::{AssignUpdate, GatewayAssigned, GATEWAY_AGENT_CLIENT_ID};
use protocol::topics::{Level, Owner, Topic};
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tracing::{debug, warn};

/// The devices this gateway admits, as the registry last told it.
#[derive(Default)]
pub(super) struct Assigned {
    id: String,
    /// Secure mode: a device must log in with its signed assignment to
    /// this gateway (username = client id = device id, password = the
    /// registry's answer as JSON), and may use only its own topics.
    key: Option<PlatformPublicKey>,
    /// False until the first snapshot: admit nobody before knowing.
    synced: AtomicBool,
    pub(super) devices: RwLock<HashSet<String>>,
    /// Fired on every change, for connects waiting out their grace.
    changed: Arc<tokio::sync::Notify>,
}

/// How long a device the gateway does not know yet may wait at connect for
/// the registry's note about it, which can trail the registry's answer to
/// the device by a few milliseconds.
const ADMISSION_GRACE: Duration = Duration::from_millis(250);

impl Assigned {
    /// Admits nobody until the registry's first snapshot.
    pub(super) fn new(id: &str, key: Option<PlatformPublicKey>) -> Self {
        Assigned {
            id: id.to_owned(),
            key,
            ..Assigned::default()
        }
    }

    pub(super) fn apply(&self, update: AssignUpdate) {
        let mut devices = self.devices.write().unwrap_or_else(|e| e.into_inner());
        if update.reset {
            devices.clear();
            self.synced.store(true, Ordering::Release);
        }
        for d in update.remove {
            devices.remove(&d);
        }
        devices.extend(update.add);
        drop(devices);
        self.changed.notify_waiters();
    }

    pub(super) fn forget(&self, device_id: &str) {
        self.devices
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(device_id);
    }
}

impl Assigned {
    /// The signed-assignment check of secure mode.
    fn token_ok(&self, client_id: &str, login: Option<(&str, &str)>) -> bool {
        let Some(key) = &self.key else {
            return true;
        };
        let (username, password) = login.unwrap_or_default();
        if username != client_id {
            warn!(target: "audit", client_id, username, gateway_id = %self.id, "gateway connect refused: username is not the client id");
            return false;
        }
        let checked = decode::<GatewayAssigned>(password.as_bytes())
            .map_err(|e| e.to_string())
            .and_then(|a| {
                a.verify_for_gateway(key, client_id, &self.id, protocol::now_ms())
                    .map_err(|e| e.to_string())
            });
        match checked {
            Ok(()) => true,
            Err(reason) => {
                warn!(target: "audit", client_id, gateway_id = %self.id, %reason, "gateway connect refused: no valid signed assignment");
                false
            }
        }
    }
}

impl Admission for Assigned {
    fn admit(&self, client_id: &str, login: Option<(&str, &str)>) -> Verdict {
        let ok = client_id != GATEWAY_AGENT_CLIENT_ID
            && self.synced.load(Ordering::Acquire)
            && self
                .devices
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .contains(client_id);
        if !ok {
            debug!(client_id, "device not assigned here: refused at connect");
            return Verdict::NotAuthorized;
        }
        if self.token_ok(client_id, login) {
            Verdict::Accept
        } else {
            Verdict::BadLogin
        }
    }

    /// A device may not retain: only this gateway's agent, which the ACL
    /// never asks about, has anything to say to later subscribers. Secure
    /// mode: a device publishes and subscribes only under
    /// `device/{its id}/`.
    fn allow(&self, client_id: &str, _username: &str, request: &AclRequest) -> bool {
        let (topic, action) = (request.topic, request.action);
        if request.retain {
            warn!(target: "audit", client_id, topic, ?action, gateway_id = %self.id, "retained message refused by the gateway ACL");
            return false;
        }
        if self.key.is_none() {
            return true;
        }
        let own =
            Topic::parse(topic).is_some_and(|t| t.owner() == Owner::Device(Level::Id(client_id)));
        if !own {
            warn!(target: "audit", client_id, topic, ?action, gateway_id = %self.id, "refused by the gateway ACL");
        }
        own
    }

    fn grace(
        &self,
        _client_id: &str,
        _login: Option<(&str, &str)>,
    ) -> Option<(Duration, Arc<tokio::sync::Notify>)> {
        Some((ADMISSION_GRACE, self.changed.clone()))
    }
}

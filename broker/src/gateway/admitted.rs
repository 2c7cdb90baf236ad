//! Whom a gateway broker admits: the devices the registry assigned to it,
//! each (in secure mode) with its gateway login ([`GatewayLogin`]: its
//! signed assignment to this gateway, naming the device's key, and a
//! fresh token signed by that key), and confined to its own topics. A
//! device not (or no longer) assigned here is refused with CONNACK 5 (not
//! authorized: "moved away", ask the registry again), an MQTT 5 device the
//! gateway redirected with CONNACK 0x9C or 0x9D and its new gateway as
//! Server Reference; a bad login with CONNACK 4: a bad or keyless
//! assignment, an assignment alone (what a device's old gateway got in its
//! redirect notice), a token not signed by the assignment's key, too far
//! from this gateway's clock, or seen before.

use crate::admission::{AclRequest, Admission, Moved, Verdict};
use protocol::crypto::{LoginNonce, PlatformPublicKey};
use protocol::decode;
use protocol::gateway::{AssignUpdate, GATEWAY_AGENT_CLIENT_ID};
use protocol::gateway_login::GatewayLogin;
use protocol::topics::{Level, Owner, Topic};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tracing::{debug, warn};
use verifier::auth::{SeenTokens, LOGIN_SKEW};

/// The devices this gateway admits, as the registry last told it.
#[derive(Default)]
pub(super) struct Assigned {
    id: String,
    /// Secure mode: a device must log in with its gateway login to this
    /// gateway (username = client id = device id, password =
    /// [`GatewayLogin`] as JSON), and may use only its own topics.
    key: Option<PlatformPublicKey>,
    /// The nonces of the gateway logins admitted within the skew: each
    /// token opens one connection.
    seen: SeenTokens,
    /// False until the first snapshot: admit nobody before knowing.
    synced: AtomicBool,
    pub(super) devices: RwLock<HashSet<String>>,
    /// Devices the registry removed from this gateway, and when: refused
    /// at once, without waiting for a note that is not coming.
    removed: Mutex<HashMap<String, Instant>>,
    /// Fired on every change, for connects waiting out their grace.
    changed: Arc<tokio::sync::Notify>,
    /// Where the devices redirected away from here went, as their notices
    /// said, for an MQTT 5 device's CONNACK. At most [`MAX_REMOVALS`].
    moved: Mutex<HashMap<String, Moved>>,
    /// The epoch of the last change applied per device, so that a change
    /// an instance of the registry announced late, after a newer one from
    /// another instance, is ignored. At most [`MAX_REMOVALS`].
    epochs: Mutex<HashMap<String, u64>>,
}

/// How long a device the gateway does not know yet may wait at connect for
/// the registry's note about it, which can trail the registry's answer to
/// the device by a few milliseconds.
const ADMISSION_GRACE: Duration = Duration::from_millis(250);

/// How long a device with a valid signed assignment to this gateway, which
/// the gateway has neither been told of nor told to remove, waits for the
/// registry's note. The registry publishes the note before it answers the
/// device, but the note travels on the agent's link, which a drain of
/// thousands of devices fills with large updates, while each answer takes
/// a short path of its own: the device can arrive seconds first. Refused
/// then, it would ask the registry again and come back, adding load to a
/// move that is slow already.
const SIGNED_GRACE: Duration = Duration::from_secs(5);

/// How long a removal is remembered: as long as a signed assignment stays
/// valid (the registry's answer TTL is one hour).
const REMOVAL_MEMORY: Duration = Duration::from_secs(3600);

/// Removals remembered at most; beyond, the oldest are forgotten (their
/// devices then wait out [`SIGNED_GRACE`] before the refusal).
const MAX_REMOVALS: usize = 200_000;

impl Assigned {
    /// Admits nobody until the registry's first snapshot.
    pub(super) fn new(id: &str, key: Option<PlatformPublicKey>) -> Self {
        Assigned {
            id: id.to_owned(),
            key,
            ..Assigned::default()
        }
    }

    pub(super) fn apply(&self, mut update: AssignUpdate) {
        self.drop_stale(&mut update);
        let mut devices = self.devices.write().unwrap_or_else(|e| e.into_inner());
        if update.reset {
            devices.clear();
            self.synced.store(true, Ordering::Release);
        }
        let mut removed = self.removed.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if removed.len() + update.remove.len() > MAX_REMOVALS {
            removed.retain(|_, at| now.duration_since(*at) < REMOVAL_MEMORY);
            if removed.len() + update.remove.len() > MAX_REMOVALS {
                removed.clear();
            }
        }
        for d in update.remove {
            devices.remove(&d);
            removed.insert(d, now);
        }
        let mut moved = self.moved.lock().unwrap_or_else(|e| e.into_inner());
        for d in &update.add {
            removed.remove(d);
            moved.remove(d);
        }
        drop(moved);
        drop(removed);
        devices.extend(update.add);
        drop(devices);
        self.changed.notify_waiters();
    }

    /// Drops the changes older than the last one applied to their device,
    /// and records the epochs of the rest.
    fn drop_stale(&self, update: &mut AssignUpdate) {
        let Some((add_epochs, remove_epochs)) = update.epochs() else {
            return;
        };
        let mut last = self.epochs.lock().unwrap_or_else(|e| e.into_inner());
        if last.len() + update.epochs.len() > MAX_REMOVALS {
            last.clear();
        }
        let mut keep = |device: &String, epoch: u64| match last.get(device) {
            Some(seen) if *seen > epoch => {
                debug!(device_id = %device, epoch, newer = *seen, "stale assignment change ignored");
                false
            }
            _ => {
                last.insert(device.clone(), epoch);
                true
            }
        };
        let add: Vec<String> = update
            .add
            .iter()
            .zip(add_epochs)
            .filter(|(d, e)| keep(d, **e))
            .map(|(d, _)| d.clone())
            .collect();
        let remove: Vec<String> = update
            .remove
            .iter()
            .zip(remove_epochs)
            .filter(|(d, e)| keep(d, **e))
            .map(|(d, _)| d.clone())
            .collect();
        update.add = add;
        update.remove = remove;
        update.epochs.clear();
    }

    /// Whether the registry removed `device_id` from this gateway within
    /// [`REMOVAL_MEMORY`] and has not added it back since.
    fn recently_removed(&self, device_id: &str) -> bool {
        self.removed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(device_id)
            .is_some_and(|at| at.elapsed() < REMOVAL_MEMORY)
    }

    /// Stops admitting `device_id`; with `to`, remembers where it went.
    pub(super) fn forget(&self, device_id: &str, to: Option<Moved>) {
        self.devices
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(device_id);
        if let Some(to) = to {
            let mut moved = self.moved.lock().unwrap_or_else(|e| e.into_inner());
            if moved.len() >= MAX_REMOVALS {
                moved.clear();
            }
            moved.insert(device_id.to_owned(), to);
        }
    }

    /// Whether the gateway admits `device_id` now.
    pub(super) fn admits(&self, device_id: &str) -> bool {
        self.devices
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains(device_id)
    }
}

impl Assigned {
    /// The login check of secure mode, spending the token's nonce: a
    /// valid gateway login whose token this gateway has not seen.
    fn login_ok(&self, client_id: &str, login: Option<(&str, &str)>) -> bool {
        let reason = match self.verify_login(client_id, login) {
            Ok(None) => return true,
            Ok(Some(nonce)) if self.seen.first_use(nonce) => return true,
            Ok(Some(_)) => "the login token was used before".to_owned(),
            Err(reason) => reason,
        };
        warn!(target: "audit", client_id, gateway_id = %self.id, %reason, "gateway connect refused: no valid gateway login");
        false
    }

    /// Whether the login is a valid gateway login of `client_id` here
    /// (always, in walkthrough mode: None); its token's nonce, not yet
    /// spent.
    fn verify_login(
        &self,
        client_id: &str,
        login: Option<(&str, &str)>,
    ) -> Result<Option<LoginNonce>, String> {
        let Some(key) = &self.key else {
            return Ok(None);
        };
        let (username, password) = login.unwrap_or_default();
        if username != client_id {
            return Err(format!("username {username:?} is not the client id"));
        }
        let skew = u64::try_from(LOGIN_SKEW.as_millis()).unwrap_or(u64::MAX);
        let login = decode::<GatewayLogin>(password.as_bytes())
            .map_err(|e| format!("not a gateway login: {e}"))?;
        login
            .verify(key, client_id, &self.id, protocol::now_ms(), skew)
            .map(Some)
            .map_err(|e| e.to_string())
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
        if self.login_ok(client_id, login) {
            Verdict::Accept
        } else {
            Verdict::BadLogin
        }
    }

    fn moved(&self, client_id: &str) -> Option<Moved> {
        self.moved
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(client_id)
            .cloned()
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

    /// A device the registry removed from here is refused at once. One
    /// that shows a valid gateway login here may wait [`SIGNED_GRACE`]
    /// for the registry's note (its nonce is spent only when it is
    /// admitted); any other, as in walkthrough mode, [`ADMISSION_GRACE`].
    fn grace(
        &self,
        client_id: &str,
        login: Option<(&str, &str)>,
    ) -> Option<(Duration, Arc<tokio::sync::Notify>)> {
        if self.recently_removed(client_id) {
            return None;
        }
        let wait = if self.key.is_some() && self.verify_login(client_id, login).is_ok() {
            SIGNED_GRACE
        } else {
            ADMISSION_GRACE
        };
        Some((wait, self.changed.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::crypto::{login_nonce, DeviceKey, PlatformKey};
    use protocol::gateway::GatewayAssigned;

    fn assignment(
        key: &PlatformKey,
        device: &str,
        gateway: &str,
        device_key: Option<&DeviceKey>,
    ) -> GatewayAssigned {
        let mut a = GatewayAssigned {
            device_id: device.into(),
            gateway_id: gateway.into(),
            address: "127.0.0.1:1885".into(),
            epoch: 2,
            device_key: device_key.map(DeviceKey::public_hex),
            expires_ms: None,
            sig: None,
        };
        a.sign(key, protocol::now_ms() + 60_000);
        a
    }

    /// A fresh gateway login of the device holding `device_key`.
    fn login(key: &PlatformKey, device_key: &DeviceKey, device: &str, gateway: &str) -> String {
        let a = assignment(key, device, gateway, Some(device_key));
        let login = GatewayLogin::new(device_key, a, protocol::now_ms(), &login_nonce()).unwrap();
        String::from_utf8(protocol::encode(&login)).unwrap()
    }

    fn wait(gw: &Assigned, device: &str, password: &str) -> Option<Duration> {
        gw.grace(device, Some((device, password))).map(|(d, _)| d)
    }

    #[test]
    fn a_change_older_than_the_last_one_applied_to_its_device_is_ignored() {
        let gw = Assigned::new("gw-1", None);
        gw.apply(AssignUpdate {
            reset: true,
            ..AssignUpdate::default()
        });
        // Registry instance B moved dev-1 away at epoch 2 (remove), and
        // that arrives before instance A's add at epoch 1.
        gw.apply(AssignUpdate {
            remove: vec!["dev-1".into()],
            epochs: vec![2],
            ..AssignUpdate::default()
        });
        gw.apply(AssignUpdate {
            add: vec!["dev-1".into(), "dev-2".into()],
            epochs: vec![1, 1],
            ..AssignUpdate::default()
        });
        assert!(!gw.admits("dev-1"), "the stale add is ignored");
        assert!(gw.admits("dev-2"), "the rest of the update applies");
        // A newer add applies; an update without epochs always applies.
        gw.apply(AssignUpdate {
            add: vec!["dev-1".into()],
            epochs: vec![3],
            ..AssignUpdate::default()
        });
        assert!(gw.admits("dev-1"));
        gw.apply(AssignUpdate {
            remove: vec!["dev-1".into()],
            ..AssignUpdate::default()
        });
        assert!(!gw.admits("dev-1"));
    }

    #[test]
    fn a_signed_device_waits_for_its_note_and_a_removed_one_is_refused_at_once() {
        let key = PlatformKey::generate();
        let device_key = DeviceKey::generate();
        let gw = Assigned::new("gw-2", Some(key.public()));
        gw.apply(AssignUpdate {
            reset: true,
            ..AssignUpdate::default()
        });
        let token = login(&key, &device_key, "dev-1", "gw-2");
        // Not told of it yet: refused for now, with time for the note.
        assert_eq!(
            gw.admit("dev-1", Some(("dev-1", &token))),
            Verdict::NotAuthorized
        );
        assert_eq!(wait(&gw, "dev-1", &token), Some(SIGNED_GRACE));
        // A login for another gateway, or none: the short grace.
        let elsewhere = login(&key, &device_key, "dev-1", "gw-1");
        assert_eq!(wait(&gw, "dev-1", &elsewhere), Some(ADMISSION_GRACE));
        assert_eq!(wait(&gw, "dev-1", "junk"), Some(ADMISSION_GRACE));
        // The note comes: admitted, the login waited for included.
        gw.apply(AssignUpdate {
            add: vec!["dev-1".into()],
            ..AssignUpdate::default()
        });
        assert_eq!(gw.admit("dev-1", Some(("dev-1", &token))), Verdict::Accept);
        // Moved away: refused at once, whatever it shows.
        gw.apply(AssignUpdate {
            remove: vec!["dev-1".into()],
            ..AssignUpdate::default()
        });
        let fresh = login(&key, &device_key, "dev-1", "gw-2");
        assert_eq!(
            gw.admit("dev-1", Some(("dev-1", &fresh))),
            Verdict::NotAuthorized
        );
        assert_eq!(wait(&gw, "dev-1", &fresh), None);
        // Added back: admitted again.
        gw.apply(AssignUpdate {
            add: vec!["dev-1".into()],
            ..AssignUpdate::default()
        });
        assert_eq!(gw.admit("dev-1", Some(("dev-1", &fresh))), Verdict::Accept);
    }

    #[test]
    fn only_a_fresh_login_signed_by_the_assigned_key_is_admitted_once() {
        let key = PlatformKey::generate();
        let device_key = DeviceKey::generate();
        let gw = Assigned::new("gw-2", Some(key.public()));
        gw.apply(AssignUpdate {
            reset: true,
            add: vec!["dev-1".into()],
            ..AssignUpdate::default()
        });
        let admit = |password: &str| gw.admit("dev-1", Some(("dev-1", password)));
        // The assignment alone, as the old gateway got it in the redirect
        // notice: a bad login.
        let alone = assignment(&key, "dev-1", "gw-2", Some(&device_key));
        let alone = String::from_utf8(protocol::encode(&alone)).unwrap();
        assert_eq!(admit(&alone), Verdict::BadLogin);
        // Signed by any other key, or with an assignment naming no key.
        let thief = DeviceKey::generate();
        let a = assignment(&key, "dev-1", "gw-2", Some(&device_key));
        let stolen = GatewayLogin::new(&thief, a, protocol::now_ms(), &login_nonce()).unwrap();
        assert_eq!(
            admit(&String::from_utf8(protocol::encode(&stolen)).unwrap()),
            Verdict::BadLogin
        );
        let keyless = assignment(&key, "dev-1", "gw-2", None);
        let keyless =
            GatewayLogin::new(&device_key, keyless, protocol::now_ms(), &login_nonce()).unwrap();
        assert_eq!(
            admit(&String::from_utf8(protocol::encode(&keyless)).unwrap()),
            Verdict::BadLogin
        );
        // The device's own: once.
        let own = login(&key, &device_key, "dev-1", "gw-2");
        assert_eq!(admit(&own), Verdict::Accept);
        assert_eq!(admit(&own), Verdict::BadLogin, "a replayed login");
        assert_eq!(
            admit(&login(&key, &device_key, "dev-1", "gw-2")),
            Verdict::Accept
        );
    }
}

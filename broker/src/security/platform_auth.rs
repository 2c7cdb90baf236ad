//! The platform broker's admission (who may connect) and its topic ACL
//! (what each may publish and subscribe to), by role: admin, ap and
//! gateway users by password; devices by their login, checked against the
//! verifier's store, with the login lockout.

use super::acl;
use super::settings::{Mode, Role, SecuritySection};
use crate::admission::{AclRequest, Admission, Verdict};
use protocol::crypto::{ct_eq, sha256_hex};
use protocol::DeviceUuid;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;
use tracing::{info, warn};
use verifier::Lockout;

/// Checks a device's login; the verifier's store implements it.
pub trait DeviceDirectory: Send + Sync + 'static {
    /// Whether `password` is the login of enrolled device `uuid`.
    fn login_ok(&self, uuid: &DeviceUuid, password: &str) -> bool;
}

impl DeviceDirectory for verifier::Store {
    fn login_ok(&self, uuid: &DeviceUuid, password: &str) -> bool {
        match self.get(uuid) {
            Ok(Some(e)) => ct_eq(
                &protocol::crypto::device_login(uuid.as_str(), &e.pass_tmp),
                password,
            ),
            Ok(None) => false,
            Err(e) => {
                warn!(error = %e, "cannot read the verifier store for a login");
                false
            }
        }
    }
}

/// The platform broker's admission and ACL.
pub struct PlatformAuth {
    mode: Mode,
    /// Failed device logins per UUID: a login is derived from pass_tmp, so
    /// it is a guessing oracle and gets the same lockout as onboarding.
    logins: Lockout,
    users: HashMap<String, (Role, String)>,
    /// Set once the verifier's store is open; devices are refused before
    /// and after it. Weak: the broker thread outlives a stopped platform,
    /// and must not keep the verifier's database open (and locked).
    devices: OnceLock<Weak<dyn DeviceDirectory>>,
    /// Fired when `devices` is set: a device login that arrived while the
    /// platform was starting waits for it (see [`VERIFIER_GRACE`]).
    devices_set: Arc<tokio::sync::Notify>,
}

/// How long a device login that arrives before the verifier serves waits
/// for it, instead of being refused: the broker listens before the
/// verifier starts, and a device refused then would give up (a refusal is
/// final to it) where the platform only needed a moment. A client gives
/// up on its own after as long (bus: 5 s for the CONNACK).
const VERIFIER_GRACE: Duration = Duration::from_secs(5);

enum Who {
    Role(Role),
    Device,
}

impl PlatformAuth {
    pub fn new(mode: Mode, users: HashMap<String, (Role, String)>) -> Self {
        let defaults = SecuritySection::default();
        PlatformAuth {
            mode,
            logins: Lockout::new(
                defaults.max_failures,
                std::time::Duration::from_secs(defaults.lockout_secs),
            ),
            users,
            devices: OnceLock::new(),
            devices_set: Arc::default(),
        }
    }

    /// The lockout policy for device logins.
    pub fn with_lockout(mut self, max_failures: u32, lockout: std::time::Duration) -> Self {
        self.logins = Lockout::new(max_failures, lockout);
        self
    }

    pub fn set_devices(&self, devices: &Arc<dyn DeviceDirectory>) {
        let _ = self.devices.set(Arc::downgrade(devices));
        self.devices_set.notify_waiters();
    }

    fn who(&self, username: &str) -> Who {
        match self.users.get(username) {
            Some((role, _)) => Who::Role(*role),
            None => Who::Device,
        }
    }
}

impl Admission for PlatformAuth {
    fn admit(&self, client_id: &str, login: Option<(&str, &str)>) -> Verdict {
        if self.mode == Mode::Walkthrough {
            return Verdict::Accept;
        }
        let username = login.map_or("", |(username, _)| username);
        let refuse = |verdict: Verdict, reason: &str| {
            warn!(target: "audit", client_id, username, reason, "platform connect refused");
            verdict
        };
        let Some((username, password)) = login else {
            return refuse(Verdict::NotAuthorized, "no login");
        };
        if let Some((role, hash)) = self.users.get(username) {
            if !ct_eq(&sha256_hex(password), hash) {
                return refuse(Verdict::BadLogin, "wrong password");
            }
            if DeviceUuid::parse(client_id).is_ok() {
                return refuse(
                    Verdict::NotAuthorized,
                    "a role user may not use a device's id",
                );
            }
            info!(target: "audit", client_id, username, role = role.name(), "connected");
            return Verdict::Accept;
        }
        let Ok(uuid) = DeviceUuid::parse(username) else {
            return refuse(Verdict::BadLogin, "unknown user");
        };
        if client_id != username {
            return refuse(
                Verdict::NotAuthorized,
                "a device must connect with its own id as client id",
            );
        }
        if self.logins.locked(uuid.key()).is_some() {
            return refuse(
                Verdict::NotAuthorized,
                "device locked out after failed logins",
            );
        }
        match self.devices.get().and_then(Weak::upgrade) {
            Some(d) if d.login_ok(&uuid, password) => {
                self.logins.clear(uuid.key());
                Verdict::Accept
            }
            Some(_) => {
                self.logins.fail(uuid.key());
                refuse(Verdict::BadLogin, "wrong device login or not enrolled")
            }
            None => refuse(Verdict::NotAuthorized, "the verifier is not serving yet"),
        }
    }

    /// A device login waits for the verifier while it is not serving yet.
    fn grace(
        &self,
        _client_id: &str,
        login: Option<(&str, &str)>,
    ) -> Option<(Duration, Arc<tokio::sync::Notify>)> {
        let device = login.is_some_and(|(user, _)| {
            !self.users.contains_key(user) && DeviceUuid::parse(user).is_ok()
        });
        (self.mode == Mode::Secure && device && self.devices.get().is_none())
            .then(|| (VERIFIER_GRACE, self.devices_set.clone()))
    }

    /// A retained PUBLISH or last will is an admin's alone.
    fn allow(&self, client_id: &str, username: &str, request: &AclRequest) -> bool {
        if self.mode == Mode::Walkthrough {
            return true;
        }
        let (topic, action, retain) = (request.topic, request.action, request.retain);
        let ok = match self.who(username) {
            Who::Role(Role::Admin) => true,
            _ if retain => false,
            Who::Role(Role::Ap) => acl::ap_may(topic, action),
            Who::Role(Role::Gateway) => acl::gateway_may(topic, action),
            Who::Device => acl::device_may(client_id, topic, action),
        };
        if !ok {
            warn!(target: "audit", client_id, username, topic, ?action, retain, "refused by the platform ACL");
        }
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::super::secrets::users_with_bootstrap;
    use super::*;

    const UUID: &str = "6f1c2b8e-0b5d-4a8f-9e8c-2b7d8e9f0a1b";

    #[test]
    fn bootstrap_credentials_are_created_once_and_hashed() {
        let dir = tempfile::tempdir().unwrap();
        let section = SecuritySection::default();
        let users = users_with_bootstrap(&section, dir.path()).unwrap();
        let token = std::fs::read_to_string(dir.path().join("admin.token")).unwrap();
        assert_eq!(users["admin"], (Role::Admin, sha256_hex(token.trim())));
        let again = users_with_bootstrap(&section, dir.path()).unwrap();
        assert_eq!(users, again);
        let auth = PlatformAuth::new(Mode::Secure, users);
        let token = token.trim();
        assert_eq!(auth.admit("cli-1", Some(("admin", token))), Verdict::Accept);
        assert_eq!(
            auth.admit("cli-1", Some(("admin", "guess"))),
            Verdict::BadLogin
        );
        assert_eq!(
            auth.admit(UUID, Some(("admin", token))),
            Verdict::NotAuthorized,
            "a device's id"
        );
        assert_eq!(auth.admit("x", Some(("nobody", ""))), Verdict::BadLogin);
        assert_eq!(
            auth.admit(UUID, Some((UUID, "x"))),
            Verdict::NotAuthorized,
            "no verifier yet"
        );
        assert_eq!(auth.admit("x", None), Verdict::NotAuthorized, "no login");
        let walkthrough = PlatformAuth::new(Mode::Walkthrough, Default::default());
        assert_eq!(walkthrough.admit("", None), Verdict::Accept);
    }
}

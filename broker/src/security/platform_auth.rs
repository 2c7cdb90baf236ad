//! The platform broker's admission: who may connect, as which identity.
//!
//! - an admin, by the password of a configured (or bootstrap) admin user;
//! - AP `A`, as `ap.A`, by the credential it was registered with (the
//!   verifier's store keeps its hash and its SSIDs);
//! - gateway `G`, as `gateway.G`, by the credential it was registered with
//!   (the registry keeps its hash: [`registry::GatewayLogins`]);
//! - a device, as its UUID, checked against the verifier's store.
//!
//! A client id must belong to its username ([`logins::client_id_belongs`]),
//! and nobody but its owner may take an identity's client id, so that no
//! login can kick another identity off and fire its last will. What each
//! may then publish and subscribe to is [`super::acl`].

use super::acl::{self, Who};
use super::settings::{Mode, Role, SecuritySection};
use crate::admission::{AclRequest, Admission, Verdict};
use protocol::crypto::{ct_eq, sha256_hex};
use protocol::logins::{self, Login};
use protocol::DeviceUuid;
use registry::GatewayLogins;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;
use tracing::{info, warn};
use verifier::{ApRecord, Lockout};

/// The identities the verifier keeps: enrolled devices and registered
/// APs. The verifier's store implements it; the broker asks it on its own
/// thread, so it answers synchronously.
pub trait Directory: Send + Sync + 'static {
    /// Whether `password` is the login of enrolled device `uuid`.
    fn login_ok(&self, uuid: &DeviceUuid, password: &str) -> bool;
    /// The registered AP `ap_id`.
    fn ap(&self, ap_id: &str) -> Option<ApRecord>;
}

impl Directory for verifier::Store {
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

    fn ap(&self, ap_id: &str) -> Option<ApRecord> {
        verifier::Store::ap(self, ap_id).unwrap_or_else(|e| {
            warn!(error = %e, ap_id, "cannot read the verifier store for an AP");
            None
        })
    }
}

/// The platform broker's admission and ACL.
pub struct PlatformAuth {
    mode: Mode,
    /// Failed device logins per UUID: a login is derived from pass_tmp, so
    /// it is a guessing oracle and gets the same lockout as onboarding.
    logins: Lockout,
    /// Admin users: name -> SHA-256 of the password.
    admins: HashMap<String, String>,
    /// Set once the verifier's store is open; devices and APs are refused
    /// before and after it. Weak: the broker thread outlives a stopped
    /// platform, and must not keep the verifier's database open (and
    /// locked).
    directory: OnceLock<Weak<dyn Directory>>,
    /// Fired when `directory` is set: a login that arrived while the
    /// platform was starting waits for it (see [`VERIFIER_GRACE`]).
    directory_set: Arc<tokio::sync::Notify>,
    /// The registered gateways' credentials, kept by the registry.
    gateways: Arc<GatewayLogins>,
}

/// How long a device or AP login that arrives before the verifier serves
/// waits for it, instead of being refused: the broker listens before the
/// verifier starts, and a device refused then would give up (a refusal is
/// final to it) where the platform only needed a moment. A client gives
/// up on its own after as long (bus: 5 s for the CONNACK).
const VERIFIER_GRACE: Duration = Duration::from_secs(5);

impl PlatformAuth {
    /// `users` are the admin users, name -> (role, SHA-256 of the
    /// password); `gateways` the registry's record of gateway credentials.
    pub fn new(
        mode: Mode,
        users: HashMap<String, (Role, String)>,
        gateways: Arc<GatewayLogins>,
    ) -> Self {
        let defaults = SecuritySection::default();
        PlatformAuth {
            mode,
            logins: Lockout::new(
                defaults.max_failures,
                Duration::from_secs(defaults.lockout_secs),
            ),
            admins: users
                .into_iter()
                .map(|(name, (Role::Admin, hash))| (name, hash))
                .collect(),
            directory: OnceLock::new(),
            directory_set: Arc::default(),
            gateways,
        }
    }

    /// The lockout policy for device logins.
    pub fn with_lockout(mut self, max_failures: u32, lockout: Duration) -> Self {
        self.logins = Lockout::new(max_failures, lockout);
        self
    }

    pub fn set_directory(&self, directory: &Arc<dyn Directory>) {
        let _ = self.directory.set(Arc::downgrade(directory));
        self.directory_set.notify_waiters();
    }

    fn directory(&self) -> Option<Arc<dyn Directory>> {
        self.directory.get().and_then(Weak::upgrade)
    }

    /// Who `username` is, for the ACL: the login was checked at CONNECT,
    /// so the name alone says which identity's rules apply.
    fn who<'a>(&self, username: &'a str) -> Who<'a> {
        match Login::parse(username) {
            Login::Named(name) if self.admins.contains_key(name) => Who::Admin,
            Login::Ap(ap_id) => Who::Ap(ap_id),
            Login::Gateway(gateway_id) => Who::Gateway(gateway_id),
            Login::Device(uuid) => Who::Device(uuid),
            Login::Onboarding | Login::Named(_) => Who::Nobody,
        }
    }

    fn admit_secure(&self, client_id: &str, username: &str, password: &str) -> Result<(), Refusal> {
        match Login::parse(username) {
            Login::Named(name) => {
                let Some(hash) = self.admins.get(name) else {
                    return Err(Refusal::bad("unknown user"));
                };
                if !ct_eq(&sha256_hex(password), hash) {
                    return Err(Refusal::bad("wrong password"));
                }
                if logins::reserved_client_id(client_id) {
                    return Err(Refusal::policy(
                        "an admin may not take a device's, an AP's, a gateway's or the platform's client id",
                    ));
                }
                Ok(())
            }
            Login::Ap(ap_id) => {
                let directory = self
                    .directory()
                    .ok_or(Refusal::policy("the verifier is not serving yet"))?;
                let record = directory
                    .ap(ap_id)
                    .ok_or(Refusal::bad("no such AP is registered"))?;
                if !ct_eq(&sha256_hex(password), &record.credential_sha256) {
                    return Err(Refusal::bad("wrong AP credential"));
                }
                Self::own_client_id(username, client_id)
            }
            Login::Gateway(gateway_id) => {
                let hash = self
                    .gateways
                    .credential_sha256(gateway_id)
                    .ok_or(Refusal::bad("no such gateway is registered"))?;
                if !ct_eq(&sha256_hex(password), &hash) {
                    return Err(Refusal::bad("wrong gateway credential"));
                }
                Self::own_client_id(username, client_id)
            }
            Login::Device(_) => self.admit_device(client_id, username, password),
            Login::Onboarding => Err(Refusal::bad("unknown user")),
        }
    }

    fn own_client_id(username: &str, client_id: &str) -> Result<(), Refusal> {
        if logins::client_id_belongs(username, client_id) {
            Ok(())
        } else {
            Err(Refusal::policy(
                "the client id must be the username, or the username and a session name",
            ))
        }
    }

    fn admit_device(&self, client_id: &str, username: &str, password: &str) -> Result<(), Refusal> {
        let uuid = DeviceUuid::parse(username).map_err(|_| Refusal::bad("unknown user"))?;
        if client_id != username {
            return Err(Refusal::policy(
                "a device must connect with its own id as client id",
            ));
        }
        if self.logins.locked(uuid.key()).is_some() {
            return Err(Refusal::policy("device locked out after failed logins"));
        }
        let directory = self
            .directory()
            .ok_or(Refusal::policy("the verifier is not serving yet"))?;
        if directory.login_ok(&uuid, password) {
            self.logins.clear(uuid.key());
            Ok(())
        } else {
            self.logins.fail(uuid.key());
            Err(Refusal::bad("wrong device login or not enrolled"))
        }
    }
}

/// Why a CONNECT is refused, and the CONNACK code that says so.
struct Refusal {
    verdict: Verdict,
    reason: &'static str,
}

impl Refusal {
    /// CONNACK 4: the login is wrong.
    fn bad(reason: &'static str) -> Self {
        Refusal {
            verdict: Verdict::BadLogin,
            reason,
        }
    }

    /// CONNACK 5: a known identity refused by policy.
    fn policy(reason: &'static str) -> Self {
        Refusal {
            verdict: Verdict::NotAuthorized,
            reason,
        }
    }
}

impl Admission for PlatformAuth {
    fn admit(&self, client_id: &str, login: Option<(&str, &str)>) -> Verdict {
        if self.mode == Mode::Walkthrough {
            return Verdict::Accept;
        }
        let Some((username, password)) = login else {
            warn!(target: "audit", client_id, reason = "no login", "platform connect refused");
            return Verdict::NotAuthorized;
        };
        match self.admit_secure(client_id, username, password) {
            Ok(()) => {
                info!(target: "audit", client_id, username, "connected");
                Verdict::Accept
            }
            Err(r) => {
                warn!(target: "audit", client_id, username, reason = r.reason, "platform connect refused");
                r.verdict
            }
        }
    }

    /// A device or AP login waits for the verifier while it is not serving
    /// yet.
    fn grace(
        &self,
        _client_id: &str,
        login: Option<(&str, &str)>,
    ) -> Option<(Duration, Arc<tokio::sync::Notify>)> {
        let needs_verifier = login
            .is_some_and(|(user, _)| matches!(Login::parse(user), Login::Device(_) | Login::Ap(_)));
        (self.mode == Mode::Secure && needs_verifier && self.directory.get().is_none())
            .then(|| (VERIFIER_GRACE, self.directory_set.clone()))
    }

    fn allow(&self, client_id: &str, username: &str, request: &AclRequest) -> bool {
        if self.mode == Mode::Walkthrough {
            return true;
        }
        let who = self.who(username);
        let ssids = |ap_id: &str| {
            self.directory()
                .and_then(|d| d.ap(ap_id))
                .map(|r| r.ssids)
                .unwrap_or_default()
        };
        let ok = acl::may(&who, client_id, request, ssids);
        if !ok {
            warn!(target: "audit", client_id, username, topic = request.topic, action = ?request.action, retain = request.retain, "refused by the platform ACL");
        }
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::super::secrets::users_with_bootstrap;
    use super::*;

    const UUID: &str = "6f1c2b8e-0b5d-4a8f-9e8c-2b7d8e9f0a1b";

    struct Aps;
    impl Directory for Aps {
        fn login_ok(&self, _uuid: &DeviceUuid, _password: &str) -> bool {
            false
        }
        fn ap(&self, ap_id: &str) -> Option<ApRecord> {
            (ap_id == "ap-1").then(|| ApRecord {
                ssids: vec!["home".into()],
                credential_sha256: sha256_hex("ap-secret"),
                registered_ms: 0,
            })
        }
    }

    #[test]
    fn bootstrap_credentials_are_created_once_and_hashed() {
        let dir = tempfile::tempdir().unwrap();
        let section = SecuritySection::default();
        let users = users_with_bootstrap(&section, dir.path()).unwrap();
        let token = std::fs::read_to_string(dir.path().join("admin.token")).unwrap();
        assert_eq!(users["admin"], (Role::Admin, sha256_hex(token.trim())));
        let again = users_with_bootstrap(&section, dir.path()).unwrap();
        assert_eq!(users, again);
        let auth = PlatformAuth::new(Mode::Secure, users, Arc::default());
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
        let walkthrough = PlatformAuth::new(Mode::Walkthrough, Default::default(), Arc::default());
        assert_eq!(walkthrough.admit("", None), Verdict::Accept);
    }

    #[test]
    fn each_identity_logs_in_with_its_own_credential_and_client_ids() {
        let gateways = Arc::new(GatewayLogins::default());
        gateways.set("gw-1", Some(&sha256_hex("gw-secret")));
        let users = HashMap::from([("admin".to_owned(), (Role::Admin, sha256_hex("a")))]);
        let auth = PlatformAuth::new(Mode::Secure, users, gateways);
        let aps: Arc<dyn Directory> = Arc::new(Aps);
        auth.set_directory(&aps);

        assert_eq!(
            auth.admit("ap.ap-1", Some(("ap.ap-1", "ap-secret"))),
            Verdict::Accept
        );
        assert_eq!(
            auth.admit("ap.ap-1.phone", Some(("ap.ap-1", "ap-secret"))),
            Verdict::Accept
        );
        assert_eq!(
            auth.admit("ap.ap-1", Some(("ap.ap-1", "nope"))),
            Verdict::BadLogin
        );
        assert_eq!(
            auth.admit("ap.ap-2", Some(("ap.ap-2", "ap-secret"))),
            Verdict::BadLogin
        );
        assert_eq!(
            auth.admit("ap.ap-2", Some(("ap.ap-1", "ap-secret"))),
            Verdict::NotAuthorized,
            "another AP's client id"
        );
        assert_eq!(
            auth.admit("gateway.gw-1", Some(("gateway.gw-1", "gw-secret"))),
            Verdict::Accept
        );
        assert_eq!(
            auth.admit("gateway.gw-1", Some(("gateway.gw-1", "x"))),
            Verdict::BadLogin
        );
        assert_eq!(
            auth.admit("gateway.gw-2", Some(("gateway.gw-2", "gw-secret"))),
            Verdict::BadLogin
        );
        assert_eq!(
            auth.admit("registry", Some(("gateway.gw-1", "gw-secret"))),
            Verdict::NotAuthorized
        );
        for taken in ["registry", "verifier", "ap.ap-1", "gateway.gw-1", UUID] {
            assert_eq!(
                auth.admit(taken, Some(("admin", "a"))),
                Verdict::NotAuthorized,
                "an admin took {taken}"
            );
        }
        assert_eq!(
            auth.admit("admin-cli-1", Some(("admin", "a"))),
            Verdict::Accept
        );
    }
}

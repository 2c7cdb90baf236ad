//! The platform broker's admission: who may connect, as which identity,
//! and what each may then publish and subscribe to. The decisions are the
//! verifier's ([`verifier::auth`]), the same an external broker is served
//! over HTTP; this adapts them to rumqttd's questions ([`Admission`]):
//! the walkthrough mode, the verifier's store as it opens and closes, the
//! CONNACK code of each refusal, and the audit log of connects.
//!
//! Who is who: admins by the password of a configured (or bootstrap)
//! admin user; AP `A` as `ap.A` and gateway `G` as `gateway.G`, each by
//! the credential it was registered with; a device as its UUID with a
//! fresh token signed by the key it registered when it was onboarded (a
//! replay is refused); a device onboarding as
//! [`protocol::logins::ONBOARDING_USER`] with its UUID as client id.

use super::acl;
use super::settings::{Mode, Role};
use crate::admission::{AclRequest, Admission, Verdict};
use protocol::logins::Login;
use registry::GatewayLogins;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;
use tracing::{info, warn};
use verifier::auth::{Auth, Credentials, RefusalKind};
pub use verifier::auth::{Directory, Enrolled};

/// The platform broker's admission and ACL.
pub struct PlatformAuth {
    mode: Mode,
    /// The decisions, and what they remember (seen login tokens,
    /// onboarding holds and rates).
    auth: Auth,
    /// Set once the verifier's store is open; devices and APs are refused
    /// before and after it. Weak: the broker thread outlives a stopped
    /// platform, and must not keep the verifier's database open (and
    /// locked).
    directory: OnceLock<Weak<dyn Directory>>,
    /// Fired when `directory` is set: a login that arrived while the
    /// platform was starting waits for it (see [`VERIFIER_GRACE`]).
    directory_set: Arc<tokio::sync::Notify>,
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
        let admins = users
            .into_iter()
            .map(|(name, (Role::Admin, hash))| (name, hash))
            .collect();
        PlatformAuth {
            mode,
            auth: Auth::new(admins, gateways),
            directory: OnceLock::new(),
            directory_set: Arc::default(),
        }
    }

    pub fn set_directory(&self, directory: &Arc<dyn Directory>) {
        let _ = self.directory.set(Arc::downgrade(directory));
        self.directory_set.notify_waiters();
    }

    fn directory(&self) -> Option<Arc<dyn Directory>> {
        self.directory.get().and_then(Weak::upgrade)
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
        let credentials = Credentials {
            client_id,
            username,
            password,
        };
        let directory = self.directory();
        match self.auth.admit_sync(&credentials, directory.as_deref()) {
            Ok(_) => {
                info!(target: "audit", client_id, username, "connected");
                Verdict::Accept
            }
            Err(r) => {
                warn!(target: "audit", client_id, username, reason = r.reason, "platform connect refused");
                match r.kind {
                    RefusalKind::BadLogin | RefusalKind::Stranger => Verdict::BadLogin,
                    RefusalKind::NotAuthorized => Verdict::NotAuthorized,
                }
            }
        }
    }

    /// A connection that was onboarding ends: the device may connect again.
    fn disconnected(&self, client_id: &str) {
        if self.mode == Mode::Secure {
            self.auth.disconnected(client_id);
        }
    }

    /// A device or AP login waits for the verifier while it is not serving
    /// yet.
    fn grace(
        &self,
        _client_id: &str,
        login: Option<(&str, &str)>,
    ) -> Option<(Duration, Arc<tokio::sync::Notify>)> {
        let needs_verifier = login.is_some_and(|(user, _)| {
            matches!(
                Login::parse(user),
                Login::Device(_) | Login::Onboarding | Login::Ap(_)
            )
        });
        (self.mode == Mode::Secure && needs_verifier && self.directory.get().is_none())
            .then(|| (VERIFIER_GRACE, self.directory_set.clone()))
    }

    fn allow(&self, client_id: &str, username: &str, request: &AclRequest) -> bool {
        if self.mode == Mode::Walkthrough {
            return true;
        }
        let ssids = |ap_id: &str| {
            self.directory()
                .and_then(|d| d.ap(ap_id))
                .map(|r| r.ssids)
                .unwrap_or_default()
        };
        self.auth
            .allow(client_id, username, &acl::request(request), ssids)
    }
}

#[cfg(test)]
mod tests {
    use super::super::secrets::users_with_bootstrap;
    use super::super::settings::SecuritySection;
    use super::*;
    use protocol::crypto::sha256_hex;
    use protocol::DeviceUuid;
    use verifier::ApRecord;

    const UUID: &str = "6f1c2b8e-0b5d-4a8f-9e8c-2b7d8e9f0a1b";

    struct Aps;
    impl Directory for Aps {
        fn device(&self, _uuid: &DeviceUuid) -> Option<Enrolled> {
            None
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

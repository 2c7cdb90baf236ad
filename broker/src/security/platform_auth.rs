//! The platform broker's admission: who may connect, as which identity.
//!
//! - an admin, by the password of a configured (or bootstrap) admin user;
//! - AP `A`, as `ap.A`, by the credential it was registered with (the
//!   verifier's store keeps its hash and its SSIDs);
//! - gateway `G`, as `gateway.G`, by the credential it was registered with
//!   (the registry keeps its hash: [`registry::GatewayLogins`]);
//! - a device, as its UUID, with a fresh token signed by the key it
//!   registered when it was onboarded (nothing in it to test a guess of
//!   pass_tmp against, and a replay is refused);
//! - a device onboarding (before it has a key, or again), as
//!   [`logins::ONBOARDING_USER`] with its UUID as client id and no
//!   password: it may only onboard, and a second such connection does not
//!   kick off the first while it onboards.
//!
//! A client id must belong to its username ([`logins::client_id_belongs`]),
//! and nobody but its owner may take an identity's client id, so that no
//! login can kick another identity off and fire its last will. What each
//! may then publish and subscribe to is [`super::acl`].

use super::acl::{self, Who};
use super::settings::{Mode, Role};
use crate::admission::{AclAction, AclRequest, Admission, Verdict};
use protocol::crypto::{ct_eq, sha256_hex};
use protocol::logins::{self, Login};
use protocol::DeviceUuid;
use registry::GatewayLogins;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};
use tracing::{info, warn};
use verifier::ApRecord;

/// An enrolled device, as the broker needs to know it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enrolled {
    /// Enrolled, not onboarded yet: it has no login key.
    Unkeyed,
    /// Onboarded: the public key (hex) its logins are signed with.
    Keyed(String),
}

/// The identities the verifier keeps: enrolled devices and registered
/// APs. The verifier's store implements it; the broker asks it on its own
/// thread, so it answers synchronously.
pub trait Directory: Send + Sync + 'static {
    /// The enrolled device `uuid`, if it is enrolled.
    fn device(&self, uuid: &DeviceUuid) -> Option<Enrolled>;
    /// The registered AP `ap_id`.
    fn ap(&self, ap_id: &str) -> Option<ApRecord>;
}

impl Directory for verifier::Store {
    fn device(&self, uuid: &DeviceUuid) -> Option<Enrolled> {
        match self.get(uuid) {
            Ok(Some(e)) => Some(match e.device_key {
                Some(key) => Enrolled::Keyed(key),
                None => Enrolled::Unkeyed,
            }),
            Ok(None) => None,
            Err(e) => {
                warn!(error = %e, "cannot read the verifier store for a login");
                None
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
    /// Device login tokens already used: a replay is refused.
    seen_tokens: SeenTokens,
    /// Devices connected to onboard, since when: a second connection for
    /// one of them is refused while the first is young.
    onboarding: Mutex<HashMap<String, Instant>>,
    /// What each onboarding device may still publish.
    onboarding_rate: Mutex<HashMap<String, (f64, Instant)>>,
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

/// How far a device login token's time may be from the broker's clock.
const LOGIN_SKEW: Duration = Duration::from_secs(120);

/// How long a connection made to onboard keeps another connection for the
/// same device out: longer than an onboarding that waits for its user
/// (60 s), short enough that a connection left behind (a device that lost
/// its network) gives way.
const ONBOARDING_HOLD: Duration = Duration::from_secs(90);

/// What a device not onboarded yet may publish: a burst of this many
/// access requests and proofs, then one per [`ONBOARDING_REFILL`]. A real
/// device sends two per attempt and retries after a second or more.
const ONBOARDING_BURST: f64 = 10.0;
const ONBOARDING_REFILL: Duration = Duration::from_millis(500);

/// Devices tracked at most by the onboarding maps; beyond, the oldest
/// state is forgotten (a made-up UUID flood must not grow them).
const MAX_ONBOARDING: usize = 100_000;

/// The nonces of device login tokens seen within [`LOGIN_SKEW`]: a token
/// is good for one login, so one captured from a CONNECT cannot open
/// another connection. Two generations, each spanning twice the skew, so
/// that a nonce is remembered at least as long as its token is accepted.
#[derive(Default)]
struct SeenTokens {
    generations: Mutex<Generations>,
}

/// The nonces seen since `started`, and those of the generation before.
#[derive(Default)]
struct Generations {
    current: HashSet<[u8; 16]>,
    previous: HashSet<[u8; 16]>,
    started: Option<Instant>,
}

impl SeenTokens {
    /// True the first time `nonce` is seen.
    fn first_use(&self, nonce: [u8; 16]) -> bool {
        let now = Instant::now();
        let mut g = self.generations.lock().unwrap_or_else(|e| e.into_inner());
        match g.started {
            Some(at) if now.duration_since(at) < LOGIN_SKEW * 2 => {}
            _ => {
                g.previous = std::mem::take(&mut g.current);
                g.started = Some(now);
            }
        }
        if g.previous.contains(&nonce) {
            return false;
        }
        g.current.insert(nonce)
    }
}

impl PlatformAuth {
    /// `users` are the admin users, name -> (role, SHA-256 of the
    /// password); `gateways` the registry's record of gateway credentials.
    pub fn new(
        mode: Mode,
        users: HashMap<String, (Role, String)>,
        gateways: Arc<GatewayLogins>,
    ) -> Self {
        PlatformAuth {
            mode,
            seen_tokens: SeenTokens::default(),
            onboarding: Mutex::default(),
            onboarding_rate: Mutex::default(),
            admins: users
                .into_iter()
                .map(|(name, (Role::Admin, hash))| (name, hash))
                .collect(),
            directory: OnceLock::new(),
            directory_set: Arc::default(),
            gateways,
        }
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
            Login::Onboarding => Who::Onboarding,
            Login::Named(_) => Who::Nobody,
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
            Login::Onboarding => self.admit_onboarding(client_id),
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

    /// An onboarded device: a fresh token signed by its own key. Nothing in
    /// it derives from pass_tmp, and it cannot be guessed, so a wrong one is
    /// refused without counting toward any lockout: strangers cannot lock
    /// a device out by failing its logins.
    fn admit_device(&self, client_id: &str, username: &str, password: &str) -> Result<(), Refusal> {
        let uuid = DeviceUuid::parse(username).map_err(|_| Refusal::bad("unknown user"))?;
        if client_id != username {
            return Err(Refusal::policy(
                "a device must connect with its own id as client id",
            ));
        }
        let directory = self
            .directory()
            .ok_or(Refusal::policy("the verifier is not serving yet"))?;
        let key = match directory.device(&uuid) {
            Some(Enrolled::Keyed(key)) => key,
            Some(Enrolled::Unkeyed) => {
                return Err(Refusal::bad(
                    "the device has no login key yet: it onboards as `onboarding` first",
                ))
            }
            None => return Err(Refusal::bad("not enrolled")),
        };
        let skew = u64::try_from(LOGIN_SKEW.as_millis()).unwrap_or(u64::MAX);
        let nonce = protocol::crypto::verify_device_login(
            &key,
            username,
            password,
            protocol::now_ms(),
            skew,
        )
        .map_err(|_| Refusal::bad("not a login token signed by the device's key, or stale"))?;
        if !self.seen_tokens.first_use(nonce) {
            return Err(Refusal::bad("a login token used before"));
        }
        Ok(())
    }

    /// A device connects to onboard, and may do nothing else.
    /// While it does, another connection for it is refused rather than
    /// allowed to take it over (rumqttd would kick the first off).
    fn admit_onboarding(&self, client_id: &str) -> Result<(), Refusal> {
        let uuid = DeviceUuid::parse(client_id).map_err(|_| {
            Refusal::bad("an onboarding device connects with its UUID as client id")
        })?;
        let directory = self
            .directory()
            .ok_or(Refusal::policy("the verifier is not serving yet"))?;
        // An onboarded device may onboard again (a new network, or an
        // onboarding a platform crash cut short after its key was
        // registered): the session is confined all the same, and a proof
        // can only ever register the key the device already has.
        if directory.device(&uuid).is_none() {
            return Err(Refusal::bad("not enrolled"));
        }
        let now = Instant::now();
        let mut onboarding = self.onboarding.lock().unwrap_or_else(|e| e.into_inner());
        if onboarding
            .get(uuid.key())
            .is_some_and(|since| now.duration_since(*since) < ONBOARDING_HOLD)
        {
            return Err(Refusal::policy(
                "another connection of this device is onboarding",
            ));
        }
        if onboarding.len() >= MAX_ONBOARDING {
            onboarding.retain(|_, since| now.duration_since(*since) < ONBOARDING_HOLD);
        }
        onboarding.insert(uuid.key().to_owned(), now);
        Ok(())
    }

    /// Takes one publish from an onboarding device's allowance.
    fn onboarding_publish_allowed(&self, client_id: &str) -> bool {
        let now = Instant::now();
        let mut rates = self
            .onboarding_rate
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if rates.len() >= MAX_ONBOARDING {
            rates.clear();
        }
        let (tokens, last) = rates
            .entry(client_id.to_ascii_lowercase())
            .or_insert((ONBOARDING_BURST, now));
        let refilled = now.duration_since(*last).as_secs_f64() / ONBOARDING_REFILL.as_secs_f64();
        *tokens = (*tokens + refilled).min(ONBOARDING_BURST);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
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

    /// A connection that was onboarding ends: the device may connect again.
    fn disconnected(&self, client_id: &str) {
        if self.mode == Mode::Secure {
            if let Ok(uuid) = DeviceUuid::parse(client_id) {
                self.onboarding
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(uuid.key());
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
        let who = self.who(username);
        let ssids = |ap_id: &str| {
            self.directory()
                .and_then(|d| d.ap(ap_id))
                .map(|r| r.ssids)
                .unwrap_or_default()
        };
        let ok = acl::may(&who, client_id, request, ssids)
            && (who != Who::Onboarding
                || request.action != AclAction::Publish
                || self.onboarding_publish_allowed(client_id));
        if !ok {
            warn!(target: "audit", client_id, username, topic = request.topic, action = ?request.action, retain = request.retain, "refused by the platform ACL");
        }
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::super::secrets::users_with_bootstrap;
    use super::super::settings::SecuritySection;
    use super::*;

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

//! Who may connect, as which identity: the login decision, in three steps
//! (classify the username, fetch the one record it needs, verify the
//! password or token against it), so that the embedded broker fetches
//! synchronously from sled and the HTTP endpoint asynchronously from any
//! store.
//!
//! A client id must belong to its username ([`logins::client_id_belongs`]),
//! and nobody but its owner may take an identity's client id, so that no
//! login can kick another identity off and fire its last will.

use super::acl::{may, Action, Request, Who};
use super::directory::{Directory, Enrolled};
use super::holds::Holds;
use super::replay::SeenTokens;
use super::LOGIN_SKEW;
use crate::store::{ApRecord, EnrollmentStore};
use protocol::crypto::{ct_eq, sha256_hex};
use protocol::logins::{self, Login};
use protocol::DeviceUuid;
use registry::GatewayLogins;
use std::collections::HashMap;
use std::sync::Arc;
use tracing::{error, warn};

/// A CONNECT's login: its client id, username and password (empty when
/// it sent none). Its `Debug` never shows the password.
#[derive(Clone, Copy)]
pub struct Credentials<'a> {
    pub client_id: &'a str,
    pub username: &'a str,
    pub password: &'a str,
}

impl std::fmt::Debug for Credentials<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("client_id", &self.client_id)
            .field("username", &self.username)
            .field("password", &"<not shown>")
            .finish()
    }
}

/// How a refusal is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalKind {
    /// The login is wrong (the embedded broker's CONNACK 4).
    BadLogin,
    /// A known identity refused by policy (CONNACK 5).
    NotAuthorized,
    /// A username that is none of the platform's identities (CONNACK 4 on
    /// the embedded broker; an external broker may ask another
    /// authenticator).
    Stranger,
}

/// Why a login is refused, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct Refusal {
    pub kind: RefusalKind,
    pub reason: &'static str,
}

impl Refusal {
    fn bad(reason: &'static str) -> Self {
        Refusal {
            kind: RefusalKind::BadLogin,
            reason,
        }
    }

    fn policy(reason: &'static str) -> Self {
        Refusal {
            kind: RefusalKind::NotAuthorized,
            reason,
        }
    }
}

/// What a username claims, once every check that needs no record has
/// passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim<'a> {
    /// An admin, its password checked.
    Admin,
    /// A gateway, its credential checked.
    Gateway(&'a str),
    /// AP `ap_id`: needs its registration.
    Ap(&'a str),
    /// An onboarded device, its client id checked: needs its enrollment.
    Device(DeviceUuid),
    /// A device onboarding, by its client id (`UUID.SESSION`). Needs no
    /// record: whether a UUID is enrolled is not for a stranger to learn.
    Onboarding(DeviceUuid),
}

/// The one record a [`Claim`] needs checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup<'a> {
    Nothing,
    Ap(&'a str),
    Device(&'a DeviceUuid),
}

/// The record a [`Lookup`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    Nothing,
    Ap(Option<ApRecord>),
    Device(Option<Enrolled>),
}

impl Claim<'_> {
    pub fn lookup(&self) -> Lookup<'_> {
        match self {
            Claim::Admin | Claim::Gateway(_) | Claim::Onboarding(_) => Lookup::Nothing,
            Claim::Ap(ap_id) => Lookup::Ap(ap_id),
            Claim::Device(uuid) => Lookup::Device(uuid),
        }
    }
}

/// An admitted login: the identity whose ACL applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admitted {
    Admin,
    /// AP `ap_id`, serving `ssids` as registered when it logged in.
    Ap {
        ap_id: String,
        ssids: Vec<String>,
    },
    Gateway(String),
    /// An onboarded device, by its UUID as it logged in.
    Device(String),
    /// A device onboarding, by its client id (`UUID.SESSION`).
    Onboarding(String),
}

impl Admitted {
    /// Whose ACL applies.
    pub fn who(&self) -> Who<'_> {
        match self {
            Admitted::Admin => Who::Admin,
            Admitted::Ap { ap_id, .. } => Who::Ap(ap_id),
            Admitted::Gateway(id) => Who::Gateway(id),
            Admitted::Device(uuid) => Who::Device(uuid),
            Admitted::Onboarding(_) => Who::Onboarding,
        }
    }

    /// The SSIDs an AP serves (none for anyone else).
    pub fn ssids(&self) -> &[String] {
        match self {
            Admitted::Ap { ssids, .. } => ssids,
            _ => &[],
        }
    }
}

/// The platform's admission and ACL, for every broker that asks: the
/// admins' and gateways' credentials it holds, and what it remembers of
/// logins (seen token nonces, onboarding holds and rates). One per
/// process: the embedded broker's, or the HTTP endpoint's.
pub struct Auth {
    /// Admin users: name -> SHA-256 (hex) of the password.
    admins: HashMap<String, String>,
    /// The registered gateways' credentials, kept by the registry.
    gateways: Arc<GatewayLogins>,
    seen_tokens: SeenTokens,
    holds: Holds,
}

impl Auth {
    /// `admins`: name -> SHA-256 (hex) of the password; `gateways`: the
    /// registry's record of gateway credentials.
    pub fn new(admins: HashMap<String, String>, gateways: Arc<GatewayLogins>) -> Self {
        Auth {
            admins,
            gateways,
            seen_tokens: SeenTokens::default(),
            holds: Holds::default(),
        }
    }

    /// Step 1: what the username claims, with every check that needs no
    /// record (an admin's password, a gateway's credential, a device's
    /// client id).
    pub fn classify<'a>(&self, login: &Credentials<'a>) -> Result<Claim<'a>, Refusal> {
        let Credentials {
            client_id,
            username,
            password,
        } = *login;
        match Login::parse(username) {
            Login::Named(name) => {
                let Some(hash) = self.admins.get(name) else {
                    return Err(Refusal {
                        kind: RefusalKind::Stranger,
                        reason: "unknown user",
                    });
                };
                if !ct_eq(&sha256_hex(password), hash) {
                    return Err(Refusal::bad("wrong password"));
                }
                if logins::reserved_client_id(client_id) {
                    return Err(Refusal::policy(
                        "an admin may not take a device's, an AP's, a gateway's or the platform's client id",
                    ));
                }
                Ok(Claim::Admin)
            }
            Login::Ap(ap_id) => Ok(Claim::Ap(ap_id)),
            Login::Gateway(gateway_id) => {
                let hash = self
                    .gateways
                    .credential_sha256(gateway_id)
                    .ok_or(Refusal::bad("no such gateway is registered"))?;
                if !ct_eq(&sha256_hex(password), &hash) {
                    return Err(Refusal::bad("wrong gateway credential"));
                }
                own_client_id(username, client_id)?;
                Ok(Claim::Gateway(gateway_id))
            }
            Login::Device(_) => {
                let uuid = DeviceUuid::parse(username).map_err(|_| Refusal::bad("unknown user"))?;
                if client_id != username {
                    return Err(Refusal::policy(
                        "a device must connect with its own id as client id",
                    ));
                }
                Ok(Claim::Device(uuid))
            }
            Login::Onboarding => {
                let uuid = logins::onboarding_device(client_id)
                    .and_then(|uuid| DeviceUuid::parse(uuid).ok())
                    .ok_or(Refusal::bad(
                        "an onboarding device connects with client id UUID.SESSION (SESSION: its own random name)",
                    ))?;
                Ok(Claim::Onboarding(uuid))
            }
        }
    }

    /// Step 3: the password or token against the record [`Claim::lookup`]
    /// named. A device's token is then spent, and an onboarding device
    /// holds its UUID.
    pub fn verify(
        &self,
        login: &Credentials,
        claim: Claim,
        record: Record,
    ) -> Result<Admitted, Refusal> {
        match (claim, record) {
            (Claim::Admin, _) => Ok(Admitted::Admin),
            (Claim::Gateway(id), _) => Ok(Admitted::Gateway(id.to_owned())),
            (Claim::Ap(ap_id), Record::Ap(record)) => {
                let record = record.ok_or(Refusal::bad("no such AP is registered"))?;
                if !ct_eq(&sha256_hex(login.password), &record.credential_sha256) {
                    return Err(Refusal::bad("wrong AP credential"));
                }
                own_client_id(login.username, login.client_id)?;
                Ok(Admitted::Ap {
                    ap_id: ap_id.to_owned(),
                    ssids: record.ssids,
                })
            }
            (Claim::Device(_), Record::Device(enrolled)) => {
                self.verify_device(login, enrolled)?;
                Ok(Admitted::Device(login.username.to_owned()))
            }
            (Claim::Onboarding(_), _) => {
                // Any UUID may onboard, enrolled or not (an unknown one
                // fails its proof as a wrong pass_tmp does), as often as it
                // likes (a reset device onboards again), on as many
                // sessions as it likes: each is confined and rate-limited,
                // and none is another's, so a stranger's connection for a
                // device's UUID keeps nobody out. Only one connection at a
                // time may use one client id, rather than take it over (a
                // broker would kick the first off).
                if !self.holds.take(&login.client_id.to_ascii_lowercase()) {
                    return Err(Refusal::policy(
                        "another connection is onboarding with this client id",
                    ));
                }
                Ok(Admitted::Onboarding(login.client_id.to_owned()))
            }
            (Claim::Ap(_) | Claim::Device(_), _) => {
                error!("a login was checked against the wrong record");
                Err(Refusal::policy("the login could not be checked"))
            }
        }
    }

    /// An onboarded device: a fresh token signed by its own key. Nothing in
    /// it derives from pass_tmp, and it cannot be guessed, so a wrong one is
    /// refused without counting toward any lockout: strangers cannot lock
    /// a device out by failing its logins.
    fn verify_device(
        &self,
        login: &Credentials,
        enrolled: Option<Enrolled>,
    ) -> Result<(), Refusal> {
        let key = match enrolled {
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
            login.username,
            login.password,
            protocol::now_ms(),
            skew,
        )
        .map_err(|_| Refusal::bad("not a login token signed by the device's key, or stale"))?;
        if !self.seen_tokens.first_use(nonce) {
            return Err(Refusal::bad("a login token used before"));
        }
        Ok(())
    }

    /// The whole decision, reading records from `directory` (None: the
    /// verifier is not serving yet, and a login that needs a record is
    /// refused by policy).
    pub fn admit_sync(
        &self,
        login: &Credentials,
        directory: Option<&dyn Directory>,
    ) -> Result<Admitted, Refusal> {
        let claim = self.classify(login)?;
        let serving = || directory.ok_or(Refusal::policy("the verifier is not serving yet"));
        // An onboarding session needs no record, but nobody would answer
        // it before the verifier serves: it waits (the broker's grace) as
        // a device's login does.
        if matches!(claim, Claim::Onboarding(_)) {
            serving()?;
        }
        let record = match claim.lookup() {
            Lookup::Nothing => Record::Nothing,
            Lookup::Ap(ap_id) => Record::Ap(serving()?.ap(ap_id)),
            Lookup::Device(uuid) => Record::Device(serving()?.device(uuid)),
        };
        self.verify(login, claim, record)
    }

    /// The whole decision, reading records from `store`. A store that
    /// cannot be read refuses the login by policy: nothing is known of it.
    pub async fn admit_async<S: EnrollmentStore>(
        &self,
        login: &Credentials<'_>,
        store: &S,
    ) -> Result<Admitted, Refusal> {
        const UNREADABLE: Refusal = Refusal {
            kind: RefusalKind::NotAuthorized,
            reason: "the verifier cannot read its store just now",
        };
        let claim = self.classify(login)?;
        let record = match claim.lookup() {
            Lookup::Nothing => Record::Nothing,
            Lookup::Ap(ap_id) => Record::Ap(store.ap(ap_id).await.map_err(|e| {
                warn!(error = %e, ap_id, "cannot read the verifier store for an AP");
                UNREADABLE
            })?),
            Lookup::Device(uuid) => Record::Device(
                store
                    .get(uuid)
                    .await
                    .map_err(|e| {
                        warn!(error = %e, "cannot read the verifier store for a login");
                        UNREADABLE
                    })?
                    .map(|e| Enrolled::from_key(e.device_key)),
            ),
        };
        self.verify(login, claim, record)
    }

    /// Whose ACL applies to a client admitted as `username` (the login was
    /// checked at CONNECT, so the name alone says which).
    pub fn who<'a>(&self, username: &'a str) -> Who<'a> {
        match Login::parse(username) {
            Login::Named(name) if self.admins.contains_key(name) => Who::Admin,
            Login::Ap(ap_id) => Who::Ap(ap_id),
            Login::Gateway(gateway_id) => Who::Gateway(gateway_id),
            Login::Device(uuid) => Who::Device(uuid),
            Login::Onboarding => Who::Onboarding,
            Login::Named(_) => Who::Nobody,
        }
    }

    /// The topic ACL for a client admitted as `username` ([`may`]), and
    /// the onboarding rate; every refusal is audited. `ssids(ap_id)` are
    /// the SSIDs an AP is registered for.
    pub fn allow(
        &self,
        client_id: &str,
        username: &str,
        request: &Request,
        ssids: impl Fn(&str) -> Vec<String>,
    ) -> bool {
        let who = self.who(username);
        let ok = may(&who, client_id, request, ssids)
            && (who != Who::Onboarding
                || request.action != Action::Publish
                || self.holds.publish_allowed(client_id));
        if !ok {
            warn!(target: "audit", client_id, username, topic = request.topic, action = ?request.action, retain = request.retain, "refused by the platform ACL");
        }
        ok
    }

    /// A connection of `client_id` has ended: if it was onboarding, its
    /// client id is free again.
    pub fn disconnected(&self, client_id: &str) {
        if logins::onboarding_device(client_id).is_some() {
            self.holds.release(&client_id.to_ascii_lowercase());
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::crypto::{device_login_token, login_nonce, DeviceKey};

    const UUID: &str = "6f1c2b8e-0b5d-4a8f-9e8c-2b7d8e9f0a1b";

    struct Fixed {
        key: DeviceKey,
    }

    impl Directory for Fixed {
        fn device(&self, uuid: &DeviceUuid) -> Option<Enrolled> {
            (uuid.as_str() == UUID).then(|| Enrolled::Keyed(self.key.public_hex()))
        }
        fn ap(&self, ap_id: &str) -> Option<ApRecord> {
            (ap_id == "ap-1").then(|| ApRecord {
                ssids: vec!["home".into()],
                credential_sha256: sha256_hex("ap-secret"),
                registered_ms: 0,
            })
        }
    }

    fn login<'a>(client_id: &'a str, username: &'a str, password: &'a str) -> Credentials<'a> {
        Credentials {
            client_id,
            username,
            password,
        }
    }

    fn auth() -> Auth {
        let gateways = Arc::new(GatewayLogins::default());
        gateways.set("gw-1", Some(&sha256_hex("gw-secret")));
        Auth::new(
            HashMap::from([("admin".to_owned(), sha256_hex("a"))]),
            gateways,
        )
    }

    #[test]
    fn classify_settles_admins_and_gateways_and_names_the_record_for_the_rest() {
        let auth = auth();
        assert_eq!(auth.classify(&login("cli", "admin", "a")), Ok(Claim::Admin));
        assert_eq!(
            auth.classify(&login("x", "nobody", "")).map_err(|r| r.kind),
            Err(RefusalKind::Stranger)
        );
        assert_eq!(
            auth.classify(&login("gateway.gw-1", "gateway.gw-1", "gw-secret")),
            Ok(Claim::Gateway("gw-1"))
        );
        let ap = auth.classify(&login("ap.ap-1", "ap.ap-1", "?")).unwrap();
        assert_eq!(ap.lookup(), Lookup::Ap("ap-1"));
        let device = auth.classify(&login(UUID, UUID, "?")).unwrap();
        assert!(matches!(device.lookup(), Lookup::Device(u) if u.as_str() == UUID));
        assert_eq!(
            auth.classify(&login("other", UUID, "?"))
                .map_err(|r| r.kind),
            Err(RefusalKind::NotAuthorized),
            "a device's own client id is checked before any record"
        );
    }

    #[test]
    fn a_device_token_opens_one_connection_and_a_replay_is_refused() {
        let key = DeviceKey::generate();
        let token = device_login_token(&key, UUID, protocol::now_ms(), &login_nonce());
        let directory = Fixed { key };
        let auth = auth();
        let creds = login(UUID, UUID, &token);
        assert_eq!(
            auth.admit_sync(&creds, Some(&directory)),
            Ok(Admitted::Device(UUID.to_owned()))
        );
        assert_eq!(
            auth.admit_sync(&creds, Some(&directory))
                .map_err(|r| r.kind),
            Err(RefusalKind::BadLogin)
        );
        assert_eq!(
            auth.admit_sync(&login(UUID, UUID, "dk1.1.2.3"), None)
                .map_err(|r| r.kind),
            Err(RefusalKind::NotAuthorized),
            "no verifier yet"
        );
    }

    #[test]
    fn onboarding_sessions_hold_their_client_id_and_nobody_holds_the_uuid() {
        let directory = Fixed {
            key: DeviceKey::generate(),
        };
        let auth = auth();
        let session = format!("{UUID}.s1");
        let creds = login(&session, logins::ONBOARDING_USER, "");
        assert_eq!(
            auth.admit_sync(&creds, Some(&directory)),
            Ok(Admitted::Onboarding(session.clone()))
        );
        assert_eq!(
            auth.admit_sync(&creds, Some(&directory))
                .map_err(|r| r.kind),
            Err(RefusalKind::NotAuthorized),
            "the same client id, while the first is connected"
        );
        // Another session for the same UUID, in any case: not held.
        let upper = format!("{}.s2", UUID.to_uppercase());
        assert!(auth
            .admit_sync(
                &login(&upper, logins::ONBOARDING_USER, ""),
                Some(&directory)
            )
            .is_ok());
        auth.disconnected(&session.to_uppercase());
        assert!(auth.admit_sync(&creds, Some(&directory)).is_ok());
        // Not enrolled: admitted all the same (nobody learns which UUIDs
        // are), and confined to onboarding.
        let stranger = login("00000000-0000-4000-8000-000000000001.s1", "onboarding", "");
        assert!(auth.admit_sync(&stranger, Some(&directory)).is_ok());
        // The bare UUID is the onboarded device's own client id.
        assert_eq!(
            auth.admit_sync(&login(UUID, "onboarding", ""), Some(&directory))
                .map_err(|r| r.kind),
            Err(RefusalKind::BadLogin)
        );
    }

    #[test]
    fn an_ap_is_admitted_with_its_ssids() {
        let directory = Fixed {
            key: DeviceKey::generate(),
        };
        let auth = auth();
        assert_eq!(
            auth.admit_sync(
                &login("ap.ap-1.phone", "ap.ap-1", "ap-secret"),
                Some(&directory)
            ),
            Ok(Admitted::Ap {
                ap_id: "ap-1".into(),
                ssids: vec!["home".into()]
            })
        );
        assert_eq!(
            auth.admit_sync(&login("ap.ap-2", "ap.ap-1", "nope"), Some(&directory))
                .map_err(|r| r.kind),
            Err(RefusalKind::BadLogin),
            "a wrong credential is told before another AP's client id"
        );
        assert_eq!(
            auth.admit_sync(&login("ap.ap-2", "ap.ap-1", "ap-secret"), Some(&directory))
                .map_err(|r| r.kind),
            Err(RefusalKind::NotAuthorized)
        );
    }

    #[test]
    fn credentials_never_show_the_password() {
        let shown = format!("{:?}", login("c", "u", "hunter2"));
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}

//! How a device logs in to the platform broker in secure mode, decided
//! here and nowhere else.
//!
//! - Before it is onboarded, a device has no credential the platform
//!   knows: it connects as [`protocol::logins::ONBOARDING_USER`], with its
//!   UUID as client id and no password, and may only onboard
//!   ([`LinkLogin::Onboarding`]).
//! - At onboarding it registers the public half of its own key, and from
//!   then on logs in as its UUID with a fresh token signed by that key
//!   ([`LinkLogin::Key`]): nothing in it derives from pass_tmp, so a
//!   captured CONNECT leaves no guess to test, and the broker refuses a
//!   token it has seen, so it cannot be replayed. The bus asks for a new
//!   token at every connect ([`bus::PasswordSource`]).
//! - At its gateway it logs in as its UUID with its signed assignment
//!   there, which names its key, and a fresh token signed by that key for
//!   that gateway ([`GatewayLogin`], [`at_gateway`]): the assignment
//!   alone, which the device's old gateway sees in the redirect notice, is
//!   no login.

use bus::{BusError, BusOptions, PasswordSource};
use protocol::crypto::{device_login_token, login_nonce, DeviceKey};
use protocol::gateway::GatewayAssigned;
use protocol::gateway_login::GatewayLogin;
use protocol::logins::ONBOARDING_USER;
use protocol::now_ms;
use tracing::warn;

/// How a session logs in.
#[derive(Debug, Clone)]
pub enum LinkLogin {
    /// Walkthrough mode: any username and password.
    Plain { username: String, password: String },
    /// Secure mode, not onboarded yet: it may only onboard.
    Onboarding,
    /// Secure mode, onboarded: a fresh token from the device's key.
    Key(DeviceLogin),
}

impl LinkLogin {
    /// `opts` logging in this way.
    pub(crate) fn apply(&self, opts: BusOptions) -> BusOptions {
        match self {
            LinkLogin::Plain { username, password } => opts.with_credentials(username, password),
            LinkLogin::Onboarding => opts.with_credentials(ONBOARDING_USER, ""),
            LinkLogin::Key(login) => {
                let source = login.clone();
                opts.with_password_source(&login.uuid, PasswordSource::new(move || source.token()))
            }
        }
    }
}

/// What an onboarded device logs in with: its UUID and its own key.
/// Never printed whole.
#[derive(Clone)]
pub struct DeviceLogin {
    uuid: String,
    key: DeviceKey,
}

impl std::fmt::Debug for DeviceLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceLogin")
            .field("uuid", &self.uuid)
            .field("key", &self.key)
            .finish()
    }
}

impl DeviceLogin {
    pub fn new(uuid: impl Into<String>, key: DeviceKey) -> Self {
        DeviceLogin {
            uuid: uuid.into(),
            key,
        }
    }

    /// A fresh login token: good for one login.
    pub fn token(&self) -> String {
        device_login_token(&self.key, &self.uuid, now_ms(), &login_nonce())
    }

    /// The device's public key (hex), as its registry queries carry it.
    pub fn public_hex(&self) -> String {
        self.key.public_hex()
    }

    /// Whether `a` names this device's key: an assignment that does not
    /// is no use at a gateway.
    pub fn keyed(&self, a: &GatewayAssigned) -> bool {
        a.device_key.as_deref() == Some(self.public_hex().as_str())
    }

    /// A fresh gateway login with `assignment` (the registry's signed
    /// answer, as JSON): good for one login at the gateway it names.
    pub fn gateway_password(&self, assignment: &str) -> String {
        let made = protocol::decode::<GatewayAssigned>(assignment.as_bytes())
            .map_err(|e| e.to_string())
            .and_then(|a| {
                GatewayLogin::new(&self.key, a, now_ms(), &login_nonce()).map_err(|e| e.to_string())
            });
        match made {
            Ok(login) => String::from_utf8_lossy(&protocol::encode(&login)).into_owned(),
            Err(e) => {
                // The gateway refuses it, and the device asks the registry.
                warn!(device_id = %self.uuid, error = %e, "cannot make a gateway login");
                String::new()
            }
        }
    }
}

/// `opts` logging in to a gateway in secure mode, as `device_id` with its
/// signed `assignment` (JSON): with `login`, a fresh [`GatewayLogin`] at
/// every connect; without (a device with no key), the assignment alone,
/// which a secure gateway refuses.
pub(crate) fn at_gateway(
    opts: BusOptions,
    device_id: &str,
    assignment: &str,
    login: Option<&DeviceLogin>,
) -> BusOptions {
    match login {
        Some(login) => {
            let (login, assignment) = (login.clone(), assignment.to_owned());
            opts.with_password_source(
                device_id,
                PasswordSource::new(move || login.gateway_password(&assignment)),
            )
        }
        None => opts.with_credentials(device_id, assignment),
    }
}

/// Whether `e` is the broker saying no to who we are (CONNACK 4 or 5), as
/// opposed to not answering.
pub(crate) fn refused(e: &BusError, code: &str) -> bool {
    matches!(e, BusError::Refused { reason, .. } if reason.contains(code))
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::crypto::verify_device_login;

    const U: &str = "6f1c2b8e-0b5d-4a8f-9e8c-2b7d8e9f0a1b";

    #[test]
    fn every_token_is_fresh_and_verifies_with_the_device_key() {
        let key = DeviceKey::generate();
        let login = DeviceLogin::new(U, key.clone());
        let a = login.token();
        let b = login.token();
        assert_ne!(a, b, "a fresh nonce each time");
        for token in [a, b] {
            assert!(verify_device_login(&key.public_hex(), U, &token, now_ms(), 5_000).is_ok());
        }
        let other = DeviceKey::generate();
        assert!(
            verify_device_login(&other.public_hex(), U, &login.token(), now_ms(), 5_000).is_err()
        );
        assert!(!format!("{login:?}").contains(&key.seed_hex()));
    }

    #[test]
    fn every_gateway_password_is_fresh_and_verifies_only_at_its_gateway() {
        let platform = protocol::crypto::PlatformKey::generate();
        let key = DeviceKey::generate();
        let login = DeviceLogin::new(U, key.clone());
        let mut a = GatewayAssigned {
            device_id: U.into(),
            gateway_id: "gw-2".into(),
            address: "127.0.0.1:1884".into(),
            epoch: 2,
            device_key: Some(login.public_hex()),
            expires_ms: None,
            sig: None,
        };
        a.sign(&platform, now_ms() + 60_000);
        assert!(login.keyed(&a));
        assert!(!DeviceLogin::new(U, DeviceKey::generate()).keyed(&a));
        let json = String::from_utf8(protocol::encode(&a)).unwrap();
        let (p1, p2) = (login.gateway_password(&json), login.gateway_password(&json));
        assert_ne!(p1, p2, "a fresh nonce each time");
        for password in [p1, p2] {
            let g: GatewayLogin = protocol::decode(password.as_bytes()).unwrap();
            assert_eq!(g.assignment, a);
            let public = platform.public();
            assert!(g.verify(&public, U, "gw-2", now_ms(), 5_000).is_ok());
            assert!(g.verify(&public, U, "gw-1", now_ms(), 5_000).is_err());
        }
        assert_eq!(login.gateway_password("junk"), "");
    }
}

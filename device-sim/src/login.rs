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

use bus::{BusError, BusOptions, PasswordSource};
use protocol::crypto::{device_login_token, login_nonce, DeviceKey};
use protocol::logins::ONBOARDING_USER;
use protocol::now_ms;

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
}

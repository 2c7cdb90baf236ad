//! How a device logs in to the platform broker in secure mode, decided
//! here and nowhere else.
//!
//! Today the broker checks an HMAC of pass_tmp ([`PlatformLogin::PassTmpHmac`]).
//! A device also has its own key, registered with the platform at
//! onboarding, and can log in with a fresh token signed by it
//! ([`PlatformLogin::DeviceKeyToken`]), which leaves nothing to test a
//! guess of pass_tmp against. [`PLATFORM_LOGIN`] picks one: switch it once
//! the broker accepts device-key tokens.
//!
//! A token is good for one login, and a session's password is chosen when
//! the session opens ([`crate::DeviceConfig::link`],
//! [`crate::gateway::HomeConfig::link`]), and the bus's own reconnects
//! re-send it, which a broker that refuses a seen nonce will refuse.
//! Before switching, the bus must ask for a fresh password at each
//! connect (or the device open a new session when refused).

use protocol::crypto::{device_login, device_login_token, login_nonce, DeviceKey};
use protocol::now_ms;

/// The two ways a device can log in to the platform broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlatformLogin {
    /// HMAC-SHA256 of the UUID keyed by pass_tmp: fixed, so one captured
    /// CONNECT lets its holder test guesses of pass_tmp offline.
    PassTmpHmac,
    /// `dk1.{time}.{nonce}.{signature}` by the device's own key
    /// ([`device_login_token`]): fresh for every login. A device that
    /// holds no key yet (never onboarded) still logs in by pass_tmp.
    DeviceKeyToken,
}

/// The login devices use. The one switch.
pub const PLATFORM_LOGIN: PlatformLogin = PlatformLogin::PassTmpHmac;

/// What a device logs in to the platform broker with: its UUID, pass_tmp
/// and its own key. Never printed whole.
#[derive(Clone)]
pub struct DeviceLogin {
    uuid: String,
    pass_tmp: String,
    key: Option<DeviceKey>,
}

impl std::fmt::Debug for DeviceLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceLogin")
            .field("uuid", &self.uuid)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl DeviceLogin {
    pub fn new(
        uuid: impl Into<String>,
        pass_tmp: impl Into<String>,
        key: Option<DeviceKey>,
    ) -> Self {
        DeviceLogin {
            uuid: uuid.into(),
            pass_tmp: pass_tmp.into(),
            key,
        }
    }

    /// The password for the next login, as [`PLATFORM_LOGIN`] says. Ask
    /// again for every connection: a token is good for one login.
    pub fn password(&self) -> String {
        match (PLATFORM_LOGIN, self.key_token()) {
            (PlatformLogin::DeviceKeyToken, Some(token)) => token,
            _ => device_login(&self.uuid, &self.pass_tmp),
        }
    }

    /// A fresh device-key login token, whatever [`PLATFORM_LOGIN`] says
    /// (for whoever tries the broker's check of them); None without a key.
    pub fn key_token(&self) -> Option<String> {
        let key = self.key.as_ref()?;
        Some(device_login_token(
            key,
            &self.uuid,
            now_ms(),
            &login_nonce(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::crypto::verify_device_login;

    const U: &str = "6f1c2b8e-0b5d-4a8f-9e8c-2b7d8e9f0a1b";

    #[test]
    fn the_password_is_the_switched_login_and_tokens_verify() {
        let key = DeviceKey::generate();
        let login = DeviceLogin::new(U, "pass-1234", Some(key.clone()));
        match PLATFORM_LOGIN {
            PlatformLogin::PassTmpHmac => {
                assert_eq!(login.password(), device_login(U, "pass-1234"))
            }
            PlatformLogin::DeviceKeyToken => assert!(verify_device_login(
                &key.public_hex(),
                U,
                &login.password(),
                now_ms(),
                5_000
            )
            .is_ok()),
        }
        let a = login.key_token().unwrap();
        let b = login.key_token().unwrap();
        assert_ne!(a, b, "a fresh nonce each time");
        for token in [a, b] {
            assert!(verify_device_login(&key.public_hex(), U, &token, now_ms(), 5_000).is_ok());
        }
        let unkeyed = DeviceLogin::new(U, "pass-1234", None);
        assert_eq!(unkeyed.password(), device_login(U, "pass-1234"));
        assert_eq!(unkeyed.key_token(), None);
        assert!(!format!("{login:?}").contains("pass-1234"));
    }
}

//! How a device logs in to its gateway in secure mode: its signed
//! assignment to that gateway, which names the device's own key
//! ([`GatewayAssigned::device_key`]), and a fresh token signed by that
//! key over the device id, the gateway id, the time and a nonce.
//!
//! The assignment alone is not a login: the registry sends it to the old
//! gateway of a moved device (in the redirect notice), so a gateway holds
//! the assignments of every device moved off it. Only the device's key
//! makes a login of it. The token's signature domain, `gateway-login`, is
//! not the platform login's (`device-login`,
//! [`crate::crypto::device_login_token`]), so neither token opens the
//! other's broker; and it names one gateway, so a token a gateway saw
//! opens no other gateway.
//!
//! The MQTT login: username = client id = the device id, password =
//! [`GatewayLogin`] as JSON.

use crate::crypto::{
    b64, check_device_public_hex, split_login_token, verify_device_signature, CryptoError,
    DeviceKey, LoginNonce, PlatformPublicKey,
};
use crate::gateway::{AssignmentError, GatewayAssigned};
use serde::{Deserialize, Serialize};

/// The device's password at its gateway, as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayLogin {
    /// The registry's signed answer naming this gateway and the device's
    /// key.
    pub assignment: GatewayAssigned,
    /// `gk1.{ms}.{nonce}.{sig}` ([`gateway_login_token`]).
    pub token: String,
}

/// Why a gateway refuses a device's login.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GatewayLoginError {
    #[error(transparent)]
    Assignment(#[from] AssignmentError),
    #[error("the assignment names no device key")]
    NoDeviceKey,
    #[error("the assignment's device key is not a usable key")]
    BadDeviceKey,
    #[error("the login token is malformed")]
    Malformed,
    #[error("the login token's time is more than {0} ms from the gateway's")]
    Stale(u64),
    #[error("the login token is not signed by the device's key")]
    BadSignature,
}

const DOMAIN: &str = "gateway-login";
/// The token's version tag, so that a later format can be told apart.
const TAG: &str = "gk1";

fn signed_fields<'a>(
    device_id: &'a str,
    gateway_id: &'a str,
    at: &'a [u8; 8],
    nonce: &'a LoginNonce,
) -> [&'a [u8]; 4] {
    [device_id.as_bytes(), gateway_id.as_bytes(), at, nonce]
}

/// A fresh gateway login token of `device_id` at `gateway_id`:
/// `gk1.{now_ms}.{nonce}.{signature}`, the device key's signature over
/// the device id, the gateway id, the time and the nonce. Each login uses
/// a fresh nonce ([`crate::crypto::login_nonce`]).
pub fn gateway_login_token(
    key: &DeviceKey,
    device_id: &str,
    gateway_id: &str,
    now_ms: u64,
    nonce: &LoginNonce,
) -> Result<String, CryptoError> {
    let at = now_ms.to_be_bytes();
    let sig = key.sign(DOMAIN, &signed_fields(device_id, gateway_id, &at, nonce));
    Ok(format!("{TAG}.{now_ms}.{}.{sig}", b64(nonce)))
}

impl GatewayLogin {
    /// The login of the device that holds `key` at the gateway `assignment`
    /// names, made now with a fresh nonce.
    pub fn new(
        key: &DeviceKey,
        assignment: GatewayAssigned,
        now_ms: u64,
        nonce: &LoginNonce,
    ) -> Result<Self, CryptoError> {
        let token = gateway_login_token(
            key,
            &assignment.device_id,
            &assignment.gateway_id,
            now_ms,
            nonce,
        )?;
        Ok(GatewayLogin { assignment, token })
    }

    /// What gateway `gateway_id` checks at the CONNECT of `device_id`: the
    /// platform's valid signature on an assignment of this device to this
    /// gateway that names a device key, and a token signed by that key for
    /// this device and gateway, dated within `max_skew_ms` of `now_ms`.
    /// Returns the token's nonce, for the caller's replay check. The cheap
    /// checks come first, so a flood of garbage costs no curve operation.
    pub fn verify(
        &self,
        platform: &PlatformPublicKey,
        device_id: &str,
        gateway_id: &str,
        now_ms: u64,
        max_skew_ms: u64,
    ) -> Result<LoginNonce, GatewayLoginError> {
        let (at_ms, nonce, sig) = parse_token(&self.token)?;
        if now_ms.abs_diff(at_ms) > max_skew_ms {
            return Err(GatewayLoginError::Stale(max_skew_ms));
        }
        let device_key = self
            .assignment
            .device_key
            .as_deref()
            .ok_or(GatewayLoginError::NoDeviceKey)?;
        self.assignment
            .verify_for_gateway(platform, device_id, gateway_id, now_ms)?;
        check_device_public_hex(device_key).map_err(|_| GatewayLoginError::BadDeviceKey)?;
        let at = at_ms.to_be_bytes();
        verify_device_signature(
            device_key,
            DOMAIN,
            &signed_fields(device_id, gateway_id, &at, &nonce),
            sig,
        )
        .map_err(|_| GatewayLoginError::BadSignature)?;
        Ok(nonce)
    }
}

/// The token's time, nonce and signature (still base64).
fn parse_token(token: &str) -> Result<(u64, LoginNonce, &str), GatewayLoginError> {
    split_login_token(token, TAG).ok_or(GatewayLoginError::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{device_login_token, login_nonce, verify_device_login, PlatformKey};
    use crate::decode::{decode, encode};

    const D: &str = "6f1c2b8e-0b5d-4a8f-9e8c-2b7d8e9f0a1b";
    const NOW: u64 = 1_000_000;
    const SKEW: u64 = 120_000;

    fn assignment(
        platform: &PlatformKey,
        gateway_id: &str,
        device_key: Option<String>,
    ) -> GatewayAssigned {
        let mut a = GatewayAssigned {
            device_id: D.into(),
            gateway_id: gateway_id.into(),
            address: "127.0.0.1:1884".into(),
            epoch: 2,
            device_key,
            expires_ms: None,
            sig: None,
        };
        a.sign(platform, NOW + 3_600_000);
        a
    }

    #[test]
    fn a_login_verifies_only_with_the_assigned_key_at_its_gateway_in_time() {
        let platform = PlatformKey::generate();
        let public = platform.public();
        let device = DeviceKey::generate();
        let a = assignment(&platform, "gw-2", Some(device.public_hex()));
        let nonce = login_nonce();
        let login = GatewayLogin::new(&device, a.clone(), NOW, &nonce).unwrap();
        let login: GatewayLogin = decode(&encode(&login)).unwrap();
        assert_eq!(login.verify(&public, D, "gw-2", NOW, SKEW), Ok(nonce));
        assert_eq!(
            login.verify(&public, D, "gw-2", NOW + SKEW + 1, SKEW),
            Err(GatewayLoginError::Stale(SKEW))
        );
        // Another gateway, another device: the assignment says no.
        assert!(matches!(
            login.verify(&public, D, "gw-1", NOW, SKEW),
            Err(GatewayLoginError::Assignment(
                AssignmentError::OtherGateway(_)
            ))
        ));
        assert!(matches!(
            login.verify(&public, "other", "gw-2", NOW, SKEW),
            Err(GatewayLoginError::Assignment(AssignmentError::OtherDevice(
                _
            )))
        ));
        // Whoever holds the assignment but not the key (the old gateway
        // of a moved device) signs with a key of its own: refused.
        let thief = DeviceKey::generate();
        let stolen = GatewayLogin::new(&thief, a.clone(), NOW, &login_nonce()).unwrap();
        assert_eq!(
            stolen.verify(&public, D, "gw-2", NOW, SKEW),
            Err(GatewayLoginError::BadSignature)
        );
        // Nor can it put its own key in the assignment.
        let mut rekeyed = stolen.clone();
        rekeyed.assignment.device_key = Some(thief.public_hex());
        assert!(matches!(
            rekeyed.verify(&public, D, "gw-2", NOW, SKEW),
            Err(GatewayLoginError::Assignment(AssignmentError::BadSignature))
        ));
        // A token the device made for its old gateway opens no other.
        let a1 = assignment(&platform, "gw-1", Some(device.public_hex()));
        let for_gw1 = GatewayLogin::new(&device, a1, NOW, &login_nonce()).unwrap();
        let moved = GatewayLogin {
            assignment: a.clone(),
            token: for_gw1.token,
        };
        assert_eq!(
            moved.verify(&public, D, "gw-2", NOW, SKEW),
            Err(GatewayLoginError::BadSignature)
        );
    }

    #[test]
    fn an_assignment_without_a_key_or_a_platform_token_is_no_gateway_login() {
        let platform = PlatformKey::generate();
        let public = platform.public();
        let device = DeviceKey::generate();
        let keyless = assignment(&platform, "gw-2", None);
        let login = GatewayLogin::new(&device, keyless, NOW, &login_nonce()).unwrap();
        assert_eq!(
            login.verify(&public, D, "gw-2", NOW, SKEW),
            Err(GatewayLoginError::NoDeviceKey)
        );
        // The device's platform login token is not a gateway login, and a
        // gateway login token is not a platform login.
        let a = assignment(&platform, "gw-2", Some(device.public_hex()));
        let platform_token = device_login_token(&device, D, NOW, &login_nonce());
        let crossed = GatewayLogin {
            assignment: a.clone(),
            token: platform_token,
        };
        assert_eq!(
            crossed.verify(&public, D, "gw-2", NOW, SKEW),
            Err(GatewayLoginError::Malformed)
        );
        let gateway_token = GatewayLogin::new(&device, a.clone(), NOW, &login_nonce())
            .unwrap()
            .token;
        let as_platform = gateway_token.replacen("gk1", "dk1", 1);
        assert!(verify_device_login(&device.public_hex(), D, &as_platform, NOW, SKEW).is_err());
        let as_gateway =
            device_login_token(&device, D, NOW, &login_nonce()).replacen("dk1", "gk1", 1);
        let crossed = GatewayLogin {
            assignment: a.clone(),
            token: as_gateway,
        };
        assert_eq!(
            crossed.verify(&public, D, "gw-2", NOW, SKEW),
            Err(GatewayLoginError::BadSignature)
        );
        // The assignment alone, as it travels in a redirect notice, does
        // not decode as a login.
        assert!(decode::<GatewayLogin>(&encode(&a)).is_err());
        for junk in [
            "",
            "gk1",
            "gk1.1.2.3.4",
            "gk1.x.AAAA.AAAA",
            "gk1.1000000.AAAA.AAAA",
        ] {
            let bad = GatewayLogin {
                assignment: a.clone(),
                token: junk.into(),
            };
            assert_eq!(
                bad.verify(&public, D, "gw-2", NOW, SKEW),
                Err(GatewayLoginError::Malformed),
                "{junk}"
            );
        }
    }
}

//! Payloads of the Wi-Fi onboarding flow.
//!
//! Decoders are tolerant of unknown fields (a newer peer may add some) and
//! strict about the fields they need: use the `validate` methods after
//! [`crate::decode`] to turn strings into checked identifiers.

use crate::codes::{AccessErrorCode, ErrorBody};
use crate::decode::DecodeError;
use crate::ids::{check_segment, DeviceUuid};
use serde::{Deserialize, Serialize};

/// Longest pass_tmp accepted anywhere.
pub const MAX_PASS_TMP_LEN: usize = 128;
/// Longest SSID: 32 bytes, as in IEEE 802.11.
pub const MAX_SSID_LEN: usize = 32;

/// Device -> AP on `wlan/{ssid}/access/request`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessRequest {
    pub uuid: String,
    pub ssid: String,
    pub pass_tmp: String,
}

impl AccessRequest {
    /// Checks the fields; `topic_ssid` is the SSID the request was
    /// published under, which must match the payload's.
    pub fn validate(&self, topic_ssid: &str) -> Result<DeviceUuid, DecodeError> {
        let uuid = DeviceUuid::parse(&self.uuid).map_err(|e| DecodeError::field("uuid", e))?;
        check_ssid(&self.ssid).map_err(|e| DecodeError::field("ssid", e))?;
        if self.ssid != topic_ssid {
            return Err(DecodeError::field(
                "ssid",
                format!(
                    "{:?} differs from the topic's SSID {topic_ssid:?}",
                    self.ssid
                ),
            ));
        }
        check_pass_tmp(&self.pass_tmp).map_err(|e| DecodeError::field("pass_tmp", e))?;
        Ok(uuid)
    }
}

/// AP -> device on `device/{uuid}/access/response`, success.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessGranted {
    pub uuid: String,
    pub ssid: String,
    pub password: String,
}

/// AP -> device on `device/{uuid}/access/response`, failure. Carries no
/// password, by construction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessDenied {
    pub uuid: String,
    pub error: ErrorBody<AccessErrorCode>,
}

/// Either answer on `device/{uuid}/access/response`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum AccessResponse {
    Granted(AccessGranted),
    Denied(AccessDenied),
}

impl AccessResponse {
    pub fn denied(uuid: &str, code: AccessErrorCode, message: impl Into<String>) -> Self {
        AccessResponse::Denied(AccessDenied {
            uuid: uuid.to_owned(),
            error: ErrorBody::new(code, message),
        })
    }

    pub fn uuid(&self) -> &str {
        match self {
            AccessResponse::Granted(g) => &g.uuid,
            AccessResponse::Denied(d) => &d.uuid,
        }
    }
}

/// A user's answer to a prompt: on `device/{uuid}/confirm` for the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confirm {
    pub accept: bool,
}

/// AP -> verifier on `verifier/verify/request`: "what is this UUID's pass_tmp?"
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyRequest {
    /// Pairs the answer with the question when one AP has many in flight.
    pub request_id: String,
    /// Where to answer: `ap/{ap_id}/verify/response`.
    pub ap_id: String,
    pub uuid: String,
}

impl VerifyRequest {
    pub fn validate(&self) -> Result<DeviceUuid, DecodeError> {
        check_segment(&self.ap_id).map_err(|e| DecodeError::field("ap_id", e))?;
        check_request_id(&self.request_id)?;
        DeviceUuid::parse(&self.uuid).map_err(|e| DecodeError::field("uuid", e))
    }
}

/// Verifier -> AP on `ap/{ap_id}/verify/response`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyResponse {
    pub request_id: String,
    pub uuid: String,
    #[serde(flatten)]
    pub outcome: VerifyOutcome,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum VerifyOutcome {
    Found { pass_tmp: String },
    Failed { error: ErrorBody<AccessErrorCode> },
}

/// AP -> its user on `ap/{ap_id}/prompt`: "device UUID wants to join SSID".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApPrompt {
    pub uuid: String,
    pub ssid: String,
    /// Seconds the AP will wait for an answer before refusing with `timeout`.
    pub expires_in_secs: u64,
}

/// The AP's user -> AP on `ap/{ap_id}/confirm`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApConfirm {
    pub uuid: String,
    pub accept: bool,
}

/// How an access request ended: the device got the password, or an error
/// code. On the wire, `"granted"` or the [`AccessErrorCode`] itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AccessOutcome {
    Granted,
    Refused(AccessErrorCode),
}

impl AccessOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            AccessOutcome::Granted => "granted",
            AccessOutcome::Refused(code) => code.as_str(),
        }
    }
}

impl From<Result<(), AccessErrorCode>> for AccessOutcome {
    fn from(result: Result<(), AccessErrorCode>) -> Self {
        match result {
            Ok(()) => AccessOutcome::Granted,
            Err(code) => AccessOutcome::Refused(code),
        }
    }
}

impl Serialize for AccessOutcome {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for AccessOutcome {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        if text == "granted" {
            return Ok(AccessOutcome::Granted);
        }
        AccessErrorCode::parse(&text)
            .map(AccessOutcome::Refused)
            .ok_or_else(|| {
                serde::de::Error::unknown_variant(
                    &text,
                    &[
                        "granted",
                        "unknown_device",
                        "pass_tmp_mismatch",
                        "rejected",
                        "timeout",
                        "bad_request",
                    ],
                )
            })
    }
}

/// AP -> verifier on `ap/{ap_id}/outcome`, after each access response the
/// AP decided (not after a repeat of a recent answer): what the device was
/// told and how long the request took, for the platform's metrics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutcomeReport {
    pub uuid: String,
    pub outcome: AccessOutcome,
    /// From the AP receiving the request to its answer, in milliseconds;
    /// includes the wait for the AP's user.
    pub latency_ms: u64,
}

impl OutcomeReport {
    pub fn validate(&self) -> Result<DeviceUuid, DecodeError> {
        DeviceUuid::parse(&self.uuid).map_err(|e| DecodeError::field("uuid", e))
    }
}

pub fn check_ssid(ssid: &str) -> Result<(), String> {
    if ssid.len() > MAX_SSID_LEN {
        return Err(format!(
            "is {} bytes; an SSID has at most {MAX_SSID_LEN}",
            ssid.len()
        ));
    }
    check_segment(ssid).map_err(|e| e.to_string())
}

pub fn check_pass_tmp(pass_tmp: &str) -> Result<(), String> {
    if pass_tmp.is_empty() {
        return Err("must not be empty".into());
    }
    if pass_tmp.len() > MAX_PASS_TMP_LEN {
        return Err(format!(
            "is {} bytes; at most {MAX_PASS_TMP_LEN} are allowed",
            pass_tmp.len()
        ));
    }
    if pass_tmp.chars().any(char::is_control) {
        return Err("contains control characters".into());
    }
    Ok(())
}

/// A WPA2/WPA3 passphrase: 8 to 63 printable ASCII characters.
pub fn check_wifi_password(password: &str) -> Result<(), String> {
    if !(8..=63).contains(&password.len()) {
        return Err(format!(
            "is {} characters; a Wi-Fi passphrase has 8 to 63",
            password.len()
        ));
    }
    if !password.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Err("must be printable ASCII".into());
    }
    Ok(())
}

pub(crate) fn check_request_id(id: &str) -> Result<(), DecodeError> {
    if id.is_empty() || id.len() > 64 {
        return Err(DecodeError::field("request_id", "must be 1 to 64 bytes"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{decode, encode};

    const U: &str = "6f1c2b8e-0b5d-4a8f-9e8c-2b7d8e9f0a1b";

    #[test]
    fn access_response_wire_forms_match_the_contract() {
        let ok = AccessResponse::Granted(AccessGranted {
            uuid: U.into(),
            ssid: "home".into(),
            password: "secretpass".into(),
        });
        assert_eq!(
            String::from_utf8(encode(&ok)).unwrap(),
            format!(r#"{{"uuid":"{U}","ssid":"home","password":"secretpass"}}"#)
        );
        let no = AccessResponse::denied(U, AccessErrorCode::PassTmpMismatch, "nope");
        let text = String::from_utf8(encode(&no)).unwrap();
        assert_eq!(
            text,
            format!(r#"{{"uuid":"{U}","error":{{"code":"pass_tmp_mismatch","message":"nope"}}}}"#)
        );
        assert_eq!(decode::<AccessResponse>(text.as_bytes()).unwrap(), no);
        assert_eq!(decode::<AccessResponse>(&encode(&ok)).unwrap(), ok);
    }

    #[test]
    fn access_request_validation() {
        let req = AccessRequest {
            uuid: U.into(),
            ssid: "home".into(),
            pass_tmp: "p".into(),
        };
        assert!(req.validate("home").is_ok());
        assert!(req.validate("other").is_err());
        let bad = AccessRequest {
            pass_tmp: String::new(),
            ..req.clone()
        };
        assert!(bad.validate("home").is_err());
        let bad = AccessRequest {
            uuid: "x".into(),
            ..req
        };
        assert!(bad.validate("home").is_err());
    }

    #[test]
    fn verify_response_round_trips_both_outcomes() {
        for outcome in [
            VerifyOutcome::Found {
                pass_tmp: "p".into(),
            },
            VerifyOutcome::Failed {
                error: ErrorBody::new(AccessErrorCode::UnknownDevice, "no"),
            },
        ] {
            let msg = VerifyResponse {
                request_id: "r".into(),
                uuid: U.into(),
                outcome,
            };
            assert_eq!(decode::<VerifyResponse>(&encode(&msg)).unwrap(), msg);
        }
    }

    #[test]
    fn outcome_reports_use_the_access_codes() {
        let granted = OutcomeReport {
            uuid: U.into(),
            outcome: AccessOutcome::Granted,
            latency_ms: 45,
        };
        assert_eq!(
            String::from_utf8(encode(&granted)).unwrap(),
            format!(r#"{{"uuid":"{U}","outcome":"granted","latency_ms":45}}"#)
        );
        let refused: OutcomeReport = decode(
            format!(r#"{{"uuid":"{U}","outcome":"pass_tmp_mismatch","latency_ms":3}}"#).as_bytes(),
        )
        .unwrap();
        assert_eq!(
            refused.outcome,
            AccessOutcome::Refused(AccessErrorCode::PassTmpMismatch)
        );
        for code in AccessErrorCode::ALL {
            let outcome = AccessOutcome::Refused(code);
            let back: AccessOutcome = serde_json::from_slice(&encode(&outcome)).unwrap();
            assert_eq!(back, outcome);
        }
        assert!(decode::<OutcomeReport>(
            format!(r#"{{"uuid":"{U}","outcome":"maybe","latency_ms":3}}"#).as_bytes()
        )
        .is_err());
        assert!(decode::<OutcomeReport>(
            format!(r#"{{"uuid":"{U}","outcome":"granted","latency_ms":-1}}"#).as_bytes()
        )
        .is_err());
        let bad_uuid = OutcomeReport {
            uuid: "x".into(),
            ..granted
        };
        assert!(bad_uuid.validate().is_err());
    }

    #[test]
    fn unknown_fields_are_tolerated() {
        let r: Confirm = decode(br#"{"accept":true,"extra":[1,2]}"#).unwrap();
        assert!(r.accept);
    }
}

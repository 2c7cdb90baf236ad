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

/// Device -> AP and verifier on `wlan/{ssid}/access/request`. Walkthrough
/// mode sends `pass_tmp`; secure mode sends `spake2`, the device's
/// handshake message ([`crate::crypto::DeviceHandshake`]), and `commit`
/// ([`crate::crypto::handshake_commitment`]), and no pass_tmp.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessRequest {
    pub uuid: String,
    pub ssid: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub pass_tmp: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spake2: Option<String>,
    /// Secure mode: the device's commitment to this request, which only
    /// its own proof opens: the verifier judges no proof of anyone else's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
}

/// Longest base64 handshake message, session id, proof or sealed value.
pub const MAX_SEALED_LEN: usize = 1024;

fn check_b64_field(name: &'static str, value: &str) -> Result<(), DecodeError> {
    if value.is_empty() || value.len() > MAX_SEALED_LEN {
        return Err(DecodeError::field(
            name,
            format!("must be 1 to {MAX_SEALED_LEN} bytes"),
        ));
    }
    Ok(())
}

/// AP -> device on `device/{uuid}/access/challenge` (secure mode): the
/// verifier's handshake message and the session id, relayed by the AP,
/// with the platform's ticket for them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessChallenge {
    pub uuid: String,
    pub ssid: String,
    /// Which of the device's handshakes this answers:
    /// [`crate::crypto::handshake_tag`] of the request's `spake2`.
    pub request: String,
    pub session: String,
    pub spake2: String,
    /// The verifier's [`Ticket`] for this request, session and handshake
    /// message. A device answers no challenge without a valid one: anyone
    /// else's challenge would be a guess of pass_tmp tested against the
    /// device's proof, outside the verifier's throttle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket: Option<Ticket>,
}

impl AccessChallenge {
    pub fn validate(&self) -> Result<(), DecodeError> {
        check_b64_field("request", &self.request)?;
        check_b64_field("session", &self.session)?;
        check_b64_field("spake2", &self.spake2)?;
        match &self.ticket {
            Some(ticket) => ticket.validate(),
            None => Ok(()),
        }
    }
}

/// The platform's word that the verifier itself answered one of a
/// device's requests, for one AP to relay, until `expires_ms`: an Ed25519
/// signature over the UUID (lower case), SSID, AP id, request (the
/// handshake's tag), session, the verifier's handshake message and the
/// expiry. The AP passes it on in its challenge; the device checks it
/// against its own UUID, SSID and current handshake, so a handshake
/// message from anyone but the verifier is never answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ticket {
    pub ap_id: String,
    pub expires_ms: u64,
    pub sig: String,
}

const TICKET_DOMAIN: &str = "access-ticket";

/// What a [`Ticket`] vouches for, besides its AP and expiry.
#[derive(Debug, Clone, Copy)]
pub struct TicketFor<'a> {
    pub uuid: &'a str,
    pub ssid: &'a str,
    pub request: &'a str,
    pub session: &'a str,
    pub spake2: &'a str,
}

impl TicketFor<'_> {
    fn fields(&self, uuid: &str, ap_id: &str, expires: &[u8; 8]) -> Vec<Vec<u8>> {
        vec![
            uuid.as_bytes().to_vec(),
            self.ssid.as_bytes().to_vec(),
            ap_id.as_bytes().to_vec(),
            self.request.as_bytes().to_vec(),
            self.session.as_bytes().to_vec(),
            self.spake2.as_bytes().to_vec(),
            expires.to_vec(),
        ]
    }
}

impl Ticket {
    /// The verifier's side: a ticket for `ap_id` to relay `what`, valid
    /// until `expires_ms`.
    pub fn issue(
        key: &crate::crypto::PlatformKey,
        what: TicketFor<'_>,
        ap_id: &str,
        expires_ms: u64,
    ) -> Self {
        let uuid = what.uuid.to_ascii_lowercase();
        let fields = what.fields(&uuid, ap_id, &expires_ms.to_be_bytes());
        let refs: Vec<&[u8]> = fields.iter().map(Vec::as_slice).collect();
        Ticket {
            ap_id: ap_id.to_owned(),
            expires_ms,
            sig: key.sign(TICKET_DOMAIN, &refs),
        }
    }

    /// The device's side: is this the platform's ticket for this device,
    /// SSID, request, session and handshake message, and still valid at
    /// `now_ms`?
    pub fn check(
        &self,
        platform: &crate::crypto::PlatformPublicKey,
        what: TicketFor<'_>,
        now_ms: u64,
    ) -> Result<(), crate::crypto::CryptoError> {
        if now_ms >= self.expires_ms {
            return Err(crate::crypto::CryptoError::Stale("the ticket"));
        }
        let uuid = what.uuid.to_ascii_lowercase();
        let fields = what.fields(&uuid, &self.ap_id, &self.expires_ms.to_be_bytes());
        let refs: Vec<&[u8]> = fields.iter().map(Vec::as_slice).collect();
        platform.verify(TICKET_DOMAIN, &refs, &self.sig)
    }

    pub fn validate(&self) -> Result<(), DecodeError> {
        check_segment(&self.ap_id).map_err(|e| DecodeError::field("ticket.ap_id", e))?;
        check_b64_field("ticket.sig", &self.sig)
    }
}

/// Device -> verifier on `wlan/{ssid}/access/proof` (secure mode): proof
/// that the device derived the same key as the verifier, i.e. holds the
/// enrolled pass_tmp, with its own key to register.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessProof {
    pub uuid: String,
    pub session: String,
    pub proof: String,
    /// The request (handshake tag) whose challenge this answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
    /// The device's key for its later logins, vouched for by the
    /// handshake's key and sealed to the platform
    /// ([`crate::crypto::seal_enrollment`]): only the verifier opens it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enroll: Option<String>,
    /// Opens the request's `commit`: this proof is the requester's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opening: Option<String>,
}

impl AccessProof {
    pub fn validate(&self) -> Result<DeviceUuid, DecodeError> {
        check_b64_field("session", &self.session)?;
        check_b64_field("proof", &self.proof)?;
        if let Some(request) = &self.request {
            check_b64_field("request", request)?;
        }
        if let Some(enroll) = &self.enroll {
            check_b64_field("enroll", enroll)?;
        }
        if let Some(opening) = &self.opening {
            check_b64_field("opening", opening)?;
        }
        DeviceUuid::parse(&self.uuid).map_err(|e| DecodeError::field("uuid", e))
    }
}

/// What the sealed Wi-Fi password is bound to.
pub fn wifi_seal_context(uuid: &str, ssid: &str, session: &str) -> Vec<u8> {
    format!("wifi-password\0{uuid}\0{ssid}\0{session}").into_bytes()
}

/// What the session's Wi-Fi key, sealed to an AP, is bound to.
pub fn wifi_key_seal_context(uuid: &str, ap_id: &str, request_id: &str, session: &str) -> Vec<u8> {
    format!("wifi-key\0{uuid}\0{ap_id}\0{request_id}\0{session}").into_bytes()
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
        match &self.spake2 {
            Some(msg) => {
                if !self.pass_tmp.is_empty() {
                    return Err(DecodeError::field(
                        "pass_tmp",
                        "must be absent in a secure request",
                    ));
                }
                check_b64_field("spake2", msg)?;
                if let Some(commit) = &self.commit {
                    check_b64_field("commit", commit)?;
                }
            }
            None => {
                check_pass_tmp(&self.pass_tmp).map_err(|e| DecodeError::field("pass_tmp", e))?
            }
        }
        Ok(uuid)
    }
}

/// AP -> device on `device/{uuid}/access/response`, success. Walkthrough
/// mode sends `password`; secure mode sends `sealed`, the password sealed
/// with the handshake's key ([`crate::crypto::SessionKeys::seal_password`]
/// over [`wifi_seal_context`]), and the `session` it belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessGranted {
    pub uuid: String,
    pub ssid: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub password: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed: Option<String>,
}

/// AP -> device on `device/{uuid}/access/response`, failure. Carries no
/// password, by construction. In secure mode a device ends its onboarding
/// on a final code only if the refusal is the platform's (`sig`, for the
/// device's request) or bound to its session (`mac`, by the AP the
/// verifier handed the session's Wi-Fi key); any other is at most a
/// reason to ask again, so no AP, and nobody else, ends it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessDenied {
    pub uuid: String,
    pub error: ErrorBody<AccessErrorCode>,
    /// The request (handshake tag) refused, for `sig`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
    /// The session refused, for `mac`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    /// The platform's signature over UUID, request and code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sig: Option<String>,
    /// The session's refusal MAC ([`crate::crypto::WifiKey::refusal_mac`])
    /// over UUID, session and code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
}

const REFUSAL_DOMAIN: &str = "access-refusal";

impl AccessDenied {
    /// The verifier's final refusal of a device's request, signed.
    pub fn signed(
        key: &crate::crypto::PlatformKey,
        uuid: &str,
        request: &str,
        error: ErrorBody<AccessErrorCode>,
    ) -> Self {
        let lower = uuid.to_ascii_lowercase();
        let sig = key.sign(
            REFUSAL_DOMAIN,
            &[
                lower.as_bytes(),
                request.as_bytes(),
                error.code.as_str().as_bytes(),
            ],
        );
        AccessDenied {
            uuid: uuid.to_owned(),
            error,
            request: Some(request.to_owned()),
            session: None,
            sig: Some(sig),
            mac: None,
        }
    }

    /// The AP's final refusal of a session it was handed the key of.
    pub fn for_session(
        key: &crate::crypto::WifiKey,
        uuid: &str,
        session: &str,
        error: ErrorBody<AccessErrorCode>,
    ) -> Self {
        let lower = uuid.to_ascii_lowercase();
        let mac = key.refusal_mac(&[
            lower.as_bytes(),
            session.as_bytes(),
            error.code.as_str().as_bytes(),
        ]);
        AccessDenied {
            uuid: uuid.to_owned(),
            error,
            request: None,
            session: Some(session.to_owned()),
            sig: None,
            mac: Some(mac),
        }
    }

    /// Whether the platform signed this refusal for the device's request.
    pub fn signed_for(
        &self,
        platform: &crate::crypto::PlatformPublicKey,
        uuid: &str,
        request: &str,
    ) -> bool {
        let (Some(sig), Some(theirs)) = (&self.sig, &self.request) else {
            return false;
        };
        let lower = uuid.to_ascii_lowercase();
        theirs == request
            && platform
                .verify(
                    REFUSAL_DOMAIN,
                    &[
                        lower.as_bytes(),
                        request.as_bytes(),
                        self.error.code.as_str().as_bytes(),
                    ],
                    sig,
                )
                .is_ok()
    }

    /// Whether this refusal is bound to the device's session.
    pub fn bound_to(&self, key: &crate::crypto::WifiKey, uuid: &str, session: &str) -> bool {
        let (Some(mac), Some(theirs)) = (&self.mac, &self.session) else {
            return false;
        };
        let lower = uuid.to_ascii_lowercase();
        theirs == session
            && key.check_refusal_mac(
                &[
                    lower.as_bytes(),
                    session.as_bytes(),
                    self.error.code.as_str().as_bytes(),
                ],
                mac,
            )
    }
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
            request: None,
            session: None,
            sig: None,
            mac: None,
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

/// AP -> verifier on `verifier/verify/request`. Walkthrough mode: "what
/// is this UUID's pass_tmp?"; secure mode: "answer this device request,
/// which I will relay"
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyRequest {
    /// Pairs the answer with the question when one AP has many in flight.
    pub request_id: String,
    /// Where to answer: `ap/{ap_id}/verify/response`.
    pub ap_id: String,
    pub uuid: String,
    /// Secure mode: the AP's public key (base64 X25519) to seal the
    /// session's Wi-Fi key to, once the device has proved pass_tmp.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ap_key: Option<String>,
    /// Secure mode: the SSID the device asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssid: Option<String>,
    /// Secure mode: the device request this answers, its handshake's tag
    /// ([`crate::crypto::handshake_tag`]). The verifier answers only a
    /// request it saw the device make.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
}

impl VerifyRequest {
    pub fn validate(&self) -> Result<DeviceUuid, DecodeError> {
        check_segment(&self.ap_id).map_err(|e| DecodeError::field("ap_id", e))?;
        check_request_id(&self.request_id)?;
        if let Some(key) = &self.ap_key {
            check_b64_field("ap_key", key)?;
        }
        if let Some(ssid) = &self.ssid {
            check_ssid(ssid).map_err(|e| DecodeError::field("ssid", e))?;
        }
        if let Some(request) = &self.request {
            check_b64_field("request", request)?;
        }
        DeviceUuid::parse(&self.uuid).map_err(|e| DecodeError::field("uuid", e))
    }
}

/// Verifier -> AP on `ap/{ap_id}/verify/response`. In secure mode a
/// request gets two: its challenge (or a refusal), then, once the device
/// has answered it, the verdict on its proof.
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
    /// Walkthrough mode.
    Found { pass_tmp: String },
    /// Secure mode, first answer: the verifier's half of the handshake
    /// for the AP to relay to the device, with the platform's ticket.
    Challenge {
        session: String,
        spake2: String,
        ticket: Ticket,
    },
    /// Secure mode, second answer: the device proved pass_tmp. The
    /// session's Wi-Fi key sealed to the AP's key over
    /// [`wifi_key_seal_context`], and the platform's signature over the
    /// request id, UUID, AP id, session and the sealed value.
    Proved {
        session: String,
        sealed_key: String,
        sig: String,
    },
    /// Refused. In secure mode a final refusal of the device carries
    /// `denial`, the platform's signed refusal for the AP to pass on.
    Failed {
        error: ErrorBody<AccessErrorCode>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        denial: Option<AccessDenied>,
    },
}

impl VerifyOutcome {
    /// A refusal without a signed denial.
    pub fn failed(code: AccessErrorCode, message: impl Into<String>) -> Self {
        VerifyOutcome::Failed {
            error: ErrorBody::new(code, message),
            denial: None,
        }
    }
}

const VERIFY_DOMAIN: &str = "verify-response";

/// The fields a sealed Wi-Fi key's signature covers.
fn wifi_key_signed_fields<'a>(
    request_id: &'a str,
    uuid: &'a str,
    ap_id: &'a str,
    session: &'a str,
    sealed: &'a str,
) -> [&'a [u8]; 5] {
    [
        request_id.as_bytes(),
        uuid.as_bytes(),
        ap_id.as_bytes(),
        session.as_bytes(),
        sealed.as_bytes(),
    ]
}

/// Seals and signs the session's Wi-Fi key for the AP that relays it.
pub fn seal_wifi_key(
    key: &crate::crypto::PlatformKey,
    req: &VerifyRequest,
    ap_key: &str,
    session: &str,
    wifi: &crate::crypto::WifiKey,
) -> Result<VerifyOutcome, crate::crypto::CryptoError> {
    let sealed = crate::crypto::seal_to_ap(
        ap_key,
        &wifi.to_bytes(),
        &wifi_key_seal_context(&req.uuid, &req.ap_id, &req.request_id, session),
    )?;
    let sig = key.sign(
        VERIFY_DOMAIN,
        &wifi_key_signed_fields(&req.request_id, &req.uuid, &req.ap_id, session, &sealed),
    );
    Ok(VerifyOutcome::Proved {
        session: session.to_owned(),
        sealed_key: sealed,
        sig,
    })
}

/// Who a sealed Wi-Fi key is for: the AP's question and the session.
#[derive(Debug, Clone, Copy)]
pub struct SealedFor<'a> {
    pub request_id: &'a str,
    pub uuid: &'a str,
    pub ap_id: &'a str,
    pub session: &'a str,
}

/// The AP's side: checks the platform's signature, then opens the key.
pub fn open_wifi_key(
    platform: &crate::crypto::PlatformPublicKey,
    ap_key: &crate::crypto::ApKey,
    for_: SealedFor<'_>,
    sealed: &str,
    sig: &str,
) -> Result<crate::crypto::WifiKey, crate::crypto::CryptoError> {
    platform.verify(
        VERIFY_DOMAIN,
        &wifi_key_signed_fields(for_.request_id, for_.uuid, for_.ap_id, for_.session, sealed),
        sig,
    )?;
    let bytes = ap_key.open(
        sealed,
        &wifi_key_seal_context(for_.uuid, for_.ap_id, for_.request_id, for_.session),
    )?;
    crate::crypto::WifiKey::from_bytes(&bytes)
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
                        "too_many_attempts",
                        "unavailable",
                        "not_authorized",
                        "ssid_not_allowed",
                        "awaiting_approval",
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
            session: None,
            sealed: None,
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
            spake2: None,
            commit: None,
        };
        assert!(req.validate("home").is_ok());
        let secure = AccessRequest {
            pass_tmp: String::new(),
            spake2: Some("bXNn".into()),
            ..req.clone()
        };
        assert!(secure.validate("home").is_ok());
        let both = AccessRequest {
            pass_tmp: "p".into(),
            ..secure.clone()
        };
        assert!(both.validate("home").is_err(), "pass_tmp beside spake2");
        assert!(!String::from_utf8(encode(&secure))
            .unwrap()
            .contains("pass_tmp"));
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
            VerifyOutcome::failed(AccessErrorCode::Unavailable, "no"),
            VerifyOutcome::Challenge {
                session: "c2Vzcw".into(),
                spake2: "bXNn".into(),
                ticket: Ticket {
                    ap_id: "ap-1".into(),
                    expires_ms: 9,
                    sig: "c2ln".into(),
                },
            },
            VerifyOutcome::Proved {
                session: "c2Vzcw".into(),
                sealed_key: "a2V5".into(),
                sig: "c2ln".into(),
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

    fn what<'a>(uuid: &'a str, ssid: &'a str, request: &'a str) -> TicketFor<'a> {
        TicketFor {
            uuid,
            ssid,
            request,
            session: "c2Vzcw",
            spake2: "bXNn",
        }
    }

    #[test]
    fn a_ticket_checks_only_for_its_device_ssid_request_session_message_and_time() {
        let key = crate::crypto::PlatformKey::generate();
        let public = key.public();
        let upper = U.to_ascii_uppercase();
        let t = Ticket::issue(&key, what(&upper, "home", "req"), "ap-1", 2_000);
        assert!(t.validate().is_ok());
        assert_eq!(t.check(&public, what(U, "home", "req"), 1_999), Ok(()));
        assert!(
            t.check(&public, what(U, "home", "req"), 2_000).is_err(),
            "expired"
        );
        assert!(t.check(&public, what(U, "other", "req"), 0).is_err());
        assert!(t.check(&public, what(U, "home", "req2"), 0).is_err());
        let other_session = TicketFor {
            session: "b3RoZXI",
            ..what(U, "home", "req")
        };
        assert!(t.check(&public, other_session, 0).is_err());
        let other_message = TicketFor {
            spake2: "b3RoZXI",
            ..what(U, "home", "req")
        };
        assert!(
            t.check(&public, other_message, 0).is_err(),
            "an AP's own handshake message"
        );
        let other_uuid = "6f1c2b8e-0b5d-4a8f-9e8c-2b7d8e9f0a1c";
        assert!(t
            .check(&public, what(other_uuid, "home", "req"), 0)
            .is_err());
        let moved = Ticket {
            ap_id: "ap-2".into(),
            ..t.clone()
        };
        assert!(moved.check(&public, what(U, "home", "req"), 0).is_err());
        let longer = Ticket {
            expires_ms: 3_000,
            ..t.clone()
        };
        assert!(longer.check(&public, what(U, "home", "req"), 0).is_err());
        let stranger = crate::crypto::PlatformKey::generate().public();
        assert!(t.check(&stranger, what(U, "home", "req"), 0).is_err());
        // It travels inside a challenge and back unchanged.
        let challenge = AccessChallenge {
            uuid: U.into(),
            ssid: "home".into(),
            request: "req".into(),
            session: "c2Vzcw".into(),
            spake2: "bXNn".into(),
            ticket: Some(t.clone()),
        };
        assert!(challenge.validate().is_ok());
        let back: AccessChallenge = decode(&encode(&challenge)).unwrap();
        assert_eq!(back, challenge);
        let bad = AccessChallenge {
            ticket: Some(Ticket {
                ap_id: "a/b".into(),
                ..t
            }),
            ..challenge
        };
        assert!(bad.validate().is_err());
    }

    #[test]
    fn a_refusal_is_final_only_signed_for_the_request_or_bound_to_the_session() {
        let key = crate::crypto::PlatformKey::generate();
        let public = key.public();
        let error = ErrorBody::new(AccessErrorCode::PassTmpMismatch, "no");
        let signed = AccessDenied::signed(&key, U, "req", error.clone());
        assert!(signed.signed_for(&public, &U.to_ascii_uppercase(), "req"));
        assert!(!signed.signed_for(&public, U, "req2"), "another request");
        let stranger = crate::crypto::PlatformKey::generate().public();
        assert!(!signed.signed_for(&stranger, U, "req"));
        let recoded = AccessDenied {
            error: ErrorBody::new(AccessErrorCode::Rejected, "no"),
            ..signed.clone()
        };
        assert!(!recoded.signed_for(&public, U, "req"), "another code");
        let back: AccessResponse =
            decode(&encode(&AccessResponse::Denied(signed.clone()))).unwrap();
        assert_eq!(back, AccessResponse::Denied(signed));
        // An AP's, for a session whose Wi-Fi key it was handed.
        let wifi = crate::crypto::WifiKey::from_bytes(&[7u8; 32]).unwrap();
        let other = crate::crypto::WifiKey::from_bytes(&[8u8; 32]).unwrap();
        let bound = AccessDenied::for_session(&wifi, U, "sess", error);
        assert!(bound.bound_to(&wifi, U, "sess"));
        assert!(!bound.bound_to(&wifi, U, "sess2"));
        assert!(!bound.bound_to(&other, U, "sess"));
        assert!(!bound.signed_for(&public, U, "req"));
        let plain = AccessResponse::denied(U, AccessErrorCode::Rejected, "x");
        let AccessResponse::Denied(plain) = plain else {
            unreachable!()
        };
        assert!(!plain.bound_to(&wifi, U, "sess"));
        assert!(!plain.signed_for(&public, U, "req"));
    }

    #[test]
    fn unknown_fields_are_tolerated() {
        let r: Confirm = decode(br#"{"accept":true,"extra":[1,2]}"#).unwrap();
        assert!(r.accept);
    }
}

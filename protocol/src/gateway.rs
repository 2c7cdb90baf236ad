//! Payloads of gateway assignment: the device's query and answer, the
//! redirect notice, and the registry <-> gateway agent messages.

use crate::codes::ErrorBody;
use crate::decode::DecodeError;
use crate::ids::check_segment;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Device -> registry on `registry/query`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayQuery {
    pub device_id: String,
    /// Secure mode: the device's own Ed25519 public key (64 lowercase hex
    /// digits), the one it logs in to the platform with. The registry
    /// keeps it with the device's assignment and signs it into every
    /// assignment it gives the device ([`GatewayAssigned::device_key`]):
    /// a gateway admits the device only with a login signed by this key
    /// (`gateway_login`). Absent: walkthrough mode, or a device
    /// of an older release (its assignments name no key, and a secure
    /// gateway refuses them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_key: Option<String>,
}

impl GatewayQuery {
    pub fn validate(&self) -> Result<(), DecodeError> {
        check_device_id(&self.device_id).map_err(|e| DecodeError::field("device_id", e))?;
        if let Some(key) = &self.device_key {
            check_device_key(key).map_err(|e| DecodeError::field("device_key", e))?;
        }
        Ok(())
    }
}

/// A device key as a query carries it: a usable Ed25519 public key in its
/// one spelling, 64 lowercase hex digits ([`crate::crypto::DeviceKey::public_hex`]),
/// so that the registry can tell a new key from the one it holds by
/// comparing strings.
pub fn check_device_key(key: &str) -> Result<(), String> {
    if key.len() != 64 || !key.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err("must be 64 lowercase hex digits".into());
    }
    crate::crypto::check_device_public_hex(key).map_err(|e| e.to_string())
}

/// A device id must work as an MQTT client id and a topic level, and must
/// not be a gateway agent's.
pub fn check_device_id(device_id: &str) -> Result<(), String> {
    check_segment(device_id).map_err(|e| e.to_string())?;
    crate::check_client_id(device_id).map_err(|e| e.to_string())?;
    if device_id == GATEWAY_AGENT_CLIENT_ID {
        return Err(format!("{GATEWAY_AGENT_CLIENT_ID:?} is reserved"));
    }
    Ok(())
}

/// Why a device got no gateway. Device-facing and fixed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GatewayErrorCode {
    /// The device has no assignment and the policy gives none.
    Unassigned,
    /// No gateway is alive.
    NoGateway,
    BadRequest,
    /// The registry's store cannot be read or written right now: nothing
    /// was decided, ask again after a backoff.
    Unavailable,
}

impl fmt::Display for GatewayErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            GatewayErrorCode::Unassigned => "unassigned",
            GatewayErrorCode::NoGateway => "no_gateway",
            GatewayErrorCode::BadRequest => "bad_request",
            GatewayErrorCode::Unavailable => "unavailable",
        })
    }
}

/// Registry -> device on `device/{device_id}/gateway`, success.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayAssigned {
    pub device_id: String,
    pub gateway_id: String,
    /// "host:port" of the gateway's broker.
    pub address: String,
    /// Increases at each change of this device's assignment.
    pub epoch: u64,
    /// Secure mode: the device's own public key (hex), from its last
    /// query, signed with the rest: the key the device's gateway login
    /// must be signed with (`gateway_login`). None for a device
    /// that has not sent its key yet; a secure gateway refuses such an
    /// assignment, and the device asks the registry again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_key: Option<String>,
    /// Secure mode: when this answer stops being valid, in ms since the
    /// Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_ms: Option<u64>,
    /// Secure mode: the platform's Ed25519 signature over every field
    /// above ([`GatewayAssigned::sign`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sig: Option<String>,
}

/// Why a signed assignment is not to be trusted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AssignmentError {
    #[error("the assignment is not signed")]
    Unsigned,
    #[error("the assignment's signature is not the platform's")]
    BadSignature,
    #[error("the assignment expired")]
    Expired,
    #[error("the assignment is for device {0:?}")]
    OtherDevice(String),
    #[error("the assignment is for gateway {0:?}")]
    OtherGateway(String),
}

const ASSIGNMENT_DOMAIN: &str = "assignment";

impl GatewayAssigned {
    /// The signed fields; the device key, when there is one, last. The
    /// fields are length-prefixed ([`crate::crypto::PlatformKey::sign`]),
    /// so an assignment signed with a key never verifies without it.
    fn signed_fields(&self, expires_ms: u64) -> Vec<Vec<u8>> {
        let mut fields = vec![
            self.device_id.as_bytes().to_vec(),
            self.gateway_id.as_bytes().to_vec(),
            self.address.as_bytes().to_vec(),
            self.epoch.to_be_bytes().to_vec(),
            expires_ms.to_be_bytes().to_vec(),
        ];
        if let Some(key) = &self.device_key {
            fields.push(key.as_bytes().to_vec());
        }
        fields
    }

    /// Signs the answer, valid until `expires_ms`.
    pub fn sign(&mut self, key: &crate::crypto::PlatformKey, expires_ms: u64) {
        let fields = self.signed_fields(expires_ms);
        let refs: Vec<&[u8]> = fields.iter().map(Vec::as_slice).collect();
        self.expires_ms = Some(expires_ms);
        self.sig = Some(key.sign(ASSIGNMENT_DOMAIN, &refs));
    }

    /// Checks the signature, the expiry against `now_ms`, and that the
    /// answer is for `device_id`.
    pub fn verify(
        &self,
        key: &crate::crypto::PlatformPublicKey,
        device_id: &str,
        now_ms: u64,
    ) -> Result<(), AssignmentError> {
        let (Some(expires_ms), Some(sig)) = (self.expires_ms, self.sig.as_deref()) else {
            return Err(AssignmentError::Unsigned);
        };
        let fields = self.signed_fields(expires_ms);
        let refs: Vec<&[u8]> = fields.iter().map(Vec::as_slice).collect();
        key.verify(ASSIGNMENT_DOMAIN, &refs, sig)
            .map_err(|_| AssignmentError::BadSignature)?;
        if self.device_id != device_id {
            return Err(AssignmentError::OtherDevice(self.device_id.clone()));
        }
        if now_ms >= expires_ms {
            return Err(AssignmentError::Expired);
        }
        Ok(())
    }

    /// What a gateway checks at CONNECT: a valid signed assignment of
    /// `device_id` to `gateway_id`.
    pub fn verify_for_gateway(
        &self,
        key: &crate::crypto::PlatformPublicKey,
        device_id: &str,
        gateway_id: &str,
        now_ms: u64,
    ) -> Result<(), AssignmentError> {
        self.verify(key, device_id, now_ms)?;
        if self.gateway_id != gateway_id {
            return Err(AssignmentError::OtherGateway(self.gateway_id.clone()));
        }
        Ok(())
    }
}

/// Registry -> device on `device/{device_id}/gateway`, failure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayRefused {
    pub device_id: String,
    pub error: ErrorBody<GatewayErrorCode>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum GatewayAnswer {
    Assigned(GatewayAssigned),
    Refused(GatewayRefused),
}

impl GatewayAnswer {
    pub fn refused(device_id: &str, code: GatewayErrorCode, message: impl Into<String>) -> Self {
        GatewayAnswer::Refused(GatewayRefused {
            device_id: device_id.to_owned(),
            error: ErrorBody::new(code, message),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RedirectReason {
    Remapped,
    Draining,
    /// Sent by a gateway's agent, not the registry: after re-syncing with
    /// the registry it no longer admits this connected device (the
    /// device's move happened while the agent could not hear it). It knows
    /// no epoch (0); a device obeys it whatever its epoch.
    Revoked,
}

impl fmt::Display for RedirectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RedirectReason::Remapped => "remapped",
            RedirectReason::Draining => "draining",
            RedirectReason::Revoked => "revoked",
        })
    }
}

/// The MQTT 5 user property that carries a [`Redirect`], as JSON, in the
/// DISCONNECT (reason 0x9C or 0x9D) by which a gateway moves an MQTT 5
/// device; its Server Reference is the new gateway's address.
pub const REDIRECT_PROPERTY: &str = "redirect";

/// Gateway -> device on the gateway broker's `device/{device_id}/redirect`.
/// The registry sends these to the old gateway's agent in [`RedirectBatch`]es.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Redirect {
    pub device_id: String,
    pub reason: RedirectReason,
    /// The device's new assignment epoch.
    pub epoch: u64,
    /// The new assignment itself, as the registry would answer a query
    /// for it (signed in secure mode), so that the device moves without
    /// asking: one connection per moved device, not two, and no query
    /// storm on the registry in a drain. A device that cannot believe it
    /// (no signature, another device or epoch, expired) asks the registry
    /// as before. Absent from an agent's own revocations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignment: Option<GatewayAssigned>,
}

impl Redirect {
    /// The carried assignment, if it is this notice's: the same device
    /// and epoch. Its signature is the device's to check.
    pub fn carried(&self) -> Option<&GatewayAssigned> {
        self.assignment
            .as_ref()
            .filter(|a| a.device_id == self.device_id && a.epoch == self.epoch)
    }
}

/// Redirect notices per [`RedirectBatch`]: each carries a signed
/// assignment (under 1 KB with every id and the address at their limits),
/// so a chunk stays under [`MAX_ASSIGN_PAYLOAD`].
pub const REDIRECT_CHUNK: usize = 100;

/// Registry -> gateway agent on `gateway/{gateway_id}/notify`: the devices
/// the agent must stop admitting and redirect. One message carries up to
/// [`REDIRECT_CHUNK`] notices, so draining a gateway costs the registry a
/// few publishes rather than one per device.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RedirectBatch {
    #[serde(default)]
    pub redirects: Vec<Redirect>,
}

/// Device -> its gateway on `device/{device_id}/presence`; the device
/// leaves `{"online":false}` as its last will, so the gateway learns of
/// every disconnect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Presence {
    pub online: bool,
}

/// Gateway agent -> registry on `gateway/{gateway_id}/status`. The agent
/// publishes `alive: true` on every connect and leaves `alive: false` as
/// its last will.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayStatus {
    pub gateway_id: String,
    pub alive: bool,
    /// "host:port" devices connect to; absent in the last will.
    #[serde(default)]
    pub address: Option<String>,
    #[serde(default)]
    pub weight: Option<u32>,
}

/// Device ids per [`AssignUpdate`] message. At the 128-byte id limit a
/// chunk stays under [`MAX_ASSIGN_PAYLOAD`].
pub const ASSIGN_CHUNK: usize = 500;
/// Largest [`AssignUpdate`] a gateway agent decodes.
pub const MAX_ASSIGN_PAYLOAD: usize = 128 * 1024;

/// The client id a gateway's agent uses on its own broker. No device may
/// have it: the registry refuses it as a device id, and the gateway admits
/// it only with the internal credentials.
pub const GATEWAY_AGENT_CLIENT_ID: &str = "gateway-agent";

/// Registry -> gateway agent on `gateway/{gateway_id}/assign`: which devices
/// may connect. `reset` starts a snapshot (forget everything first).
///
/// A delta carries, in `epochs`, the epoch of each change: the new
/// assignment's, for an add and for a remove alike, `add` first, then
/// `remove`, in order. Several registry instances announce changes of one
/// device on their own links, so an older change can arrive after a newer
/// one; the agent applies a change only if it is not older than the last
/// one it applied for that device. A snapshot (and an update from a
/// registry that sends no epochs) applies unconditionally.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssignUpdate {
    #[serde(default)]
    pub reset: bool,
    #[serde(default)]
    pub add: Vec<String>,
    #[serde(default)]
    pub remove: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub epochs: Vec<u64>,
}

impl AssignUpdate {
    /// The epoch of each added device, then of each removed one, if the
    /// update carries one per change.
    pub fn epochs(&self) -> Option<(&[u64], &[u64])> {
        (self.epochs.len() == self.add.len() + self.remove.len() && !self.epochs.is_empty())
            .then(|| self.epochs.split_at(self.add.len()))
    }
}

/// Device ids per list of a [`PresenceReport`] at most: the gateway agent
/// reports in chunks of [`ASSIGN_CHUNK`], and the registry drops, unread,
/// a report with a longer list.
pub const MAX_PRESENCE_IDS: usize = ASSIGN_CHUNK;

/// Gateway agent -> registry on `gateway/{gateway_id}/presence`: devices
/// that connected to or left the gateway, each list at most
/// [`MAX_PRESENCE_IDS`] long.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceReport {
    #[serde(default)]
    pub online: Vec<String>,
    #[serde(default)]
    pub offline: Vec<String>,
}

/// Gateway agent -> registry on `registry/sync`: "send me my snapshot".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncRequest {
    pub gateway_id: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{decode, encode};

    #[test]
    fn gateway_answers_match_the_contract() {
        let ok = GatewayAnswer::Assigned(GatewayAssigned {
            device_id: "d1".into(),
            gateway_id: "gw-1".into(),
            address: "127.0.0.1:1884".into(),
            epoch: 3,
            device_key: None,
            expires_ms: None,
            sig: None,
        });
        assert_eq!(
            String::from_utf8(encode(&ok)).unwrap(),
            r#"{"device_id":"d1","gateway_id":"gw-1","address":"127.0.0.1:1884","epoch":3}"#
        );
        let no = GatewayAnswer::refused("d1", GatewayErrorCode::NoGateway, "none alive");
        let text = String::from_utf8(encode(&no)).unwrap();
        assert_eq!(
            text,
            r#"{"device_id":"d1","error":{"code":"no_gateway","message":"none alive"}}"#
        );
        assert_eq!(decode::<GatewayAnswer>(text.as_bytes()).unwrap(), no);
        let r = Redirect {
            device_id: "d1".into(),
            reason: RedirectReason::Draining,
            epoch: 4,
            assignment: None,
        };
        assert_eq!(
            String::from_utf8(encode(&r)).unwrap(),
            r#"{"device_id":"d1","reason":"draining","epoch":4}"#
        );
    }

    #[test]
    fn a_signed_assignment_verifies_only_unchanged_in_time_and_place() {
        let key = crate::crypto::PlatformKey::generate();
        let public = key.public();
        let mut a = GatewayAssigned {
            device_id: "d1".into(),
            gateway_id: "gw-1".into(),
            address: "127.0.0.1:1884".into(),
            epoch: 3,
            device_key: None,
            expires_ms: None,
            sig: None,
        };
        assert_eq!(a.verify(&public, "d1", 0), Err(AssignmentError::Unsigned));
        a.device_key = Some(crate::crypto::DeviceKey::generate().public_hex());
        a.sign(&key, 1_000);
        let a: GatewayAssigned = decode(&encode(&a)).unwrap();
        assert_eq!(a.verify(&public, "d1", 999), Ok(()));
        assert_eq!(a.verify_for_gateway(&public, "d1", "gw-1", 999), Ok(()));
        assert_eq!(
            a.verify(&public, "d1", 1_000),
            Err(AssignmentError::Expired)
        );
        assert!(matches!(
            a.verify(&public, "d2", 0),
            Err(AssignmentError::OtherDevice(_))
        ));
        assert!(matches!(
            a.verify_for_gateway(&public, "d1", "gw-2", 0),
            Err(AssignmentError::OtherGateway(_))
        ));
        for tamper in [
            |a: &mut GatewayAssigned| a.gateway_id = "gw-evil".into(),
            |a: &mut GatewayAssigned| a.address = "10.0.0.66:1883".into(),
            |a: &mut GatewayAssigned| a.epoch += 1,
            |a: &mut GatewayAssigned| a.expires_ms = Some(u64::MAX),
            |a: &mut GatewayAssigned| a.device_key = None,
            |a: &mut GatewayAssigned| a.device_key = Some("ab".repeat(32)),
        ] {
            let mut forged = a.clone();
            tamper(&mut forged);
            assert_eq!(
                forged.verify(&public, "d1", 0),
                Err(AssignmentError::BadSignature)
            );
        }
        let other = crate::crypto::PlatformKey::generate().public();
        assert_eq!(
            a.verify(&other, "d1", 0),
            Err(AssignmentError::BadSignature)
        );
    }

    #[test]
    fn a_full_assign_chunk_of_longest_ids_fits_the_decoder() {
        let longest = "d".repeat(crate::ids::MAX_SEGMENT_LEN);
        let update = AssignUpdate {
            reset: false,
            add: vec![longest; ASSIGN_CHUNK],
            remove: Vec::new(),
            epochs: vec![u64::MAX; ASSIGN_CHUNK],
        };
        let bytes = encode(&update);
        assert!(bytes.len() <= MAX_ASSIGN_PAYLOAD, "{} bytes", bytes.len());
        assert_eq!(
            crate::decode::decode_limited::<AssignUpdate>(&bytes, MAX_ASSIGN_PAYLOAD).unwrap(),
            update
        );
    }

    #[test]
    fn a_full_redirect_batch_of_longest_ids_fits_the_decoder() {
        let device_id = "d".repeat(crate::ids::MAX_SEGMENT_LEN);
        let mut assignment = GatewayAssigned {
            device_id: device_id.clone(),
            gateway_id: "g".repeat(crate::ids::MAX_SEGMENT_LEN),
            address: format!("{}:65535", "h".repeat(249)),
            epoch: u64::MAX,
            device_key: Some(crate::crypto::DeviceKey::generate().public_hex()),
            expires_ms: None,
            sig: None,
        };
        assignment.sign(&crate::crypto::PlatformKey::generate(), u64::MAX);
        let batch = RedirectBatch {
            redirects: vec![
                Redirect {
                    device_id,
                    reason: RedirectReason::Remapped,
                    epoch: u64::MAX,
                    assignment: Some(assignment),
                };
                REDIRECT_CHUNK
            ],
        };
        let bytes = encode(&batch);
        assert!(bytes.len() <= MAX_ASSIGN_PAYLOAD, "{} bytes", bytes.len());
        assert_eq!(
            crate::decode::decode_limited::<RedirectBatch>(&bytes, MAX_ASSIGN_PAYLOAD).unwrap(),
            batch
        );
    }

    #[test]
    fn query_validation() {
        let query = |device_id: &str, device_key: Option<String>| GatewayQuery {
            device_id: device_id.into(),
            device_key,
        };
        assert!(query("dev-1", None).validate().is_ok());
        for bad in ["", "a/b", "+", "x$y", GATEWAY_AGENT_CLIENT_ID] {
            assert!(query(bad, None).validate().is_err(), "{bad}");
        }
        let key = crate::crypto::DeviceKey::generate().public_hex();
        assert!(query("dev-1", Some(key.clone())).validate().is_ok());
        // One spelling, a full-order point: not upper case, not the
        // identity (a weak key), not short.
        let identity = format!("01{}", "00".repeat(31));
        for bad in [
            key.to_uppercase(),
            identity,
            key[..62].to_owned(),
            "".into(),
        ] {
            assert!(
                query("dev-1", Some(bad.clone())).validate().is_err(),
                "{bad}"
            );
        }
    }
}

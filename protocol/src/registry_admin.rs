//! Admin requests to the registry, and its replies.
//!
//! `registry/admin/request`: `{"request_id":"…","op":"remap","device_id":"…","gateway_id":"…"}`
//! `registry/admin/reply`: `{"request_id":"…","ok":{"kind":"assignment",…}}` or
//! `{"request_id":"…","error":{"code":"…","message":"…"}}`

use crate::codes::ErrorBody;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Most devices one drain request moves; the CLI loops for more.
pub const MAX_DRAIN_BATCH: usize = 5000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryRequest {
    pub request_id: String,
    #[serde(flatten)]
    pub op: RegistryOp,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum RegistryOp {
    /// Assign a device that has no assignment (or the same one again).
    Assign {
        device_id: String,
        gateway_id: String,
    },
    /// Move an assigned device to another gateway; its old gateway sends
    /// it a redirect notice.
    Remap {
        device_id: String,
        gateway_id: String,
    },
    /// Mark `gateway_id` draining (no new devices) and move up to `limit`
    /// of its devices to `to`, or by policy when `to` is absent.
    Drain {
        gateway_id: String,
        #[serde(default)]
        to: Option<String>,
        limit: usize,
    },
    /// Let a drained gateway take devices again.
    Undrain {
        gateway_id: String,
    },
    Show {
        device_id: String,
    },
    Gateways,
    History {
        device_id: String,
    },
    /// Register a gateway, or change a registered one: the address devices
    /// are sent to, its weight, and the SHA-256 of the credential its agent
    /// logs in with (the admin CLI makes the credential; it never crosses
    /// the network). With `certificate_request` (a PEM certificate
    /// request, whose key the admin CLI made and kept), the platform's CA
    /// issues the gateway's TLS certificate for the host of `address`.
    GatewayRegister {
        gateway_id: String,
        address: String,
        #[serde(default = "default_weight")]
        weight: u32,
        #[serde(default)]
        credential_sha256: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        certificate_request: Option<String>,
    },
    /// Remove a gateway: it is refused from then on, and its devices fail
    /// over when they next ask.
    GatewayRemove {
        gateway_id: String,
    },
}

fn default_weight() -> u32 {
    1
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RegistryErrorCode {
    BadRequest,
    /// No such device in the registry.
    NotFound,
    UnknownGateway,
    GatewayDead,
    /// `assign` on a device assigned elsewhere: use `remap`.
    AlreadyAssigned,
    NoGateway,
    /// The registry's store cannot be reached: nothing was changed; try
    /// again.
    Unavailable,
    /// Another registry instance changed one of these devices first:
    /// nothing was changed by this request; try again.
    Conflict,
    Internal,
}

impl fmt::Display for RegistryErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        f.write_str(&s)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryReply {
    pub request_id: String,
    #[serde(flatten)]
    pub outcome: RegistryOutcome,
}

impl crate::Correlated for RegistryReply {
    fn request_id(&self) -> &str {
        &self.request_id
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RegistryOutcome {
    Ok(RegistryOk),
    Error(ErrorBody<RegistryErrorCode>),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RegistryOk {
    Assignment(AssignmentView),
    Drained(DrainReport),
    Undrained {
        gateway_id: String,
    },
    Gateways {
        gateways: Vec<GatewayView>,
    },
    History {
        device_id: String,
        entries: Vec<AuditEntry>,
    },
    GatewayRegistered {
        gateway_id: String,
        address: String,
        weight: u32,
        created: bool,
        /// The certificate chain issued for `certificate_request` (PEM,
        /// the gateway's certificate, then the CA's).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        certificate: Option<String>,
    },
    GatewayRemoved {
        gateway_id: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssignmentView {
    pub device_id: String,
    pub gateway_id: String,
    pub epoch: u64,
    /// False when the request left the assignment as it was.
    pub changed: bool,
    #[serde(default)]
    pub last_seen: Option<LastSeen>,
}

/// Where a device was last seen connected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastSeen {
    pub gateway_id: String,
    pub at_ms: u64,
    /// Still connected there at the last report.
    pub online: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrainReport {
    pub gateway_id: String,
    pub moved: u64,
    /// Devices still assigned to the gateway after this batch.
    pub remaining: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayView {
    pub gateway_id: String,
    pub address: String,
    pub alive: bool,
    pub draining: bool,
    pub weight: u32,
    pub assigned: u64,
    pub connected: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub at_ms: u64,
    pub epoch: u64,
    #[serde(default)]
    pub from: Option<String>,
    pub to: String,
    /// assign, remap, drain, failover, policy
    pub reason: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{decode, encode};

    #[test]
    fn registry_messages_round_trip() {
        let req = RegistryRequest {
            request_id: "r".into(),
            op: RegistryOp::Drain {
                gateway_id: "gw-1".into(),
                to: None,
                limit: 100,
            },
        };
        assert_eq!(decode::<RegistryRequest>(&encode(&req)).unwrap(), req);
        let reply = RegistryReply {
            request_id: "r".into(),
            outcome: RegistryOutcome::Ok(RegistryOk::Drained(DrainReport {
                gateway_id: "gw-1".into(),
                moved: 3,
                remaining: 0,
            })),
        };
        assert_eq!(decode::<RegistryReply>(&encode(&reply)).unwrap(), reply);
        assert_eq!(RegistryErrorCode::GatewayDead.to_string(), "gateway_dead");
    }
}

//! Admin requests to the verifier, and its replies.
//!
//! `verifier/admin/request`: `{"request_id":"…","op":"enroll","uuid":"…","pass_tmp":"…","ssids":["…"]}`
//! (`ssids` optional: absent, any SSID)
//! `verifier/admin/reply`: `{"request_id":"…","ok":{"kind":"enrolled",…}}` or
//! `{"request_id":"…","error":{"code":"…","message":"…"}}`

use crate::codes::{AdminErrorCode, ErrorBody};
use serde::{Deserialize, Serialize};

/// An import batch may be this large; far above the 16 KiB of other messages.
pub const MAX_ADMIN_PAYLOAD: usize = 192 * 1024;
/// Rows per import batch, sized to stay well under [`MAX_ADMIN_PAYLOAD`].
pub const IMPORT_BATCH_ROWS: usize = 500;
/// Most UUIDs a `list` returns in one page.
pub const MAX_LIST_PAGE: usize = 1000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminRequest {
    pub request_id: String,
    #[serde(flatten)]
    pub op: AdminOp,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum AdminOp {
    /// Enroll one device. Re-enrolling with the same pass_tmp and SSIDs
    /// is a no-op; with another pass_tmp or other SSIDs it is refused
    /// unless `replace` is set.
    Enroll {
        uuid: String,
        pass_tmp: String,
        #[serde(default)]
        replace: bool,
        /// The SSIDs the device may onboard at, as the factory gave it
        /// them (at most [`MAX_DEVICE_SSIDS`]). Absent or empty: any SSID.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        ssids: Vec<String>,
    },
    /// One batch of a CSV import.
    Import {
        rows: Vec<ImportRow>,
    },
    Remove {
        uuid: String,
    },
    Show {
        uuid: String,
    },
    /// A page of enrolled UUIDs in key order, starting after `after`.
    List {
        #[serde(default)]
        after: Option<String>,
        #[serde(default = "default_list_limit")]
        limit: usize,
    },
    /// Forget the key an onboarded device logs in with: it is refused until
    /// it is onboarded again.
    RevokeKey {
        uuid: String,
    },
    /// Make a device's pending key (a new key it proved pass_tmp for while
    /// it had another, kept for an admin under `rekey = "admin"`) its
    /// login key: its old key is refused from then on.
    ApproveKey {
        uuid: String,
    },
    /// Register the public half (hex) of a key the device holds, as a
    /// factory that makes the device's key pair at manufacturing does: the
    /// device logs in with it without onboarding first. A device that has
    /// another key keeps it (revoke it first).
    RegisterKey {
        uuid: String,
        device_key: String,
    },
    /// Register an AP, or change a registered one: the SSIDs it serves and
    /// the SHA-256 of its credential. The admin CLI makes the credential;
    /// it never crosses the network.
    ApRegister {
        ap_id: String,
        ssids: Vec<String>,
        credential_sha256: String,
    },
    /// Remove an AP: it is refused from then on.
    ApRemove {
        ap_id: String,
    },
    /// Every registered AP.
    ApList,
}

fn default_list_limit() -> usize {
    MAX_LIST_PAGE
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportRow {
    /// Line number in the source file, for the rejection report.
    pub line: u64,
    pub uuid: String,
    pub pass_tmp: String,
    /// Where the device may onboard; absent or empty: any SSID (an old
    /// two-column manifest's rows).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ssids: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminReply {
    pub request_id: String,
    #[serde(flatten)]
    pub outcome: AdminOutcome,
}

impl crate::Correlated for AdminReply {
    fn request_id(&self) -> &str {
        &self.request_id
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdminOutcome {
    Ok(AdminOk),
    Error(ErrorBody<AdminErrorCode>),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AdminOk {
    Enrolled {
        uuid: String,
        created: bool,
    },
    Imported(ImportReport),
    Removed {
        uuid: String,
    },
    Device {
        uuid: String,
        enrolled_at_ms: u64,
        /// The public key it logs in with, once onboarded.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        device_key: Option<String>,
        /// Where it may onboard; empty: any SSID.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        ssids: Vec<String>,
        /// A new key waiting for `approve-key`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pending_key: Option<String>,
    },
    List {
        uuids: Vec<String>,
        next: Option<String>,
    },
    KeyRevoked {
        uuid: String,
    },
    /// The pending key is the device's login key now.
    KeyApproved {
        uuid: String,
        device_key: String,
    },
    KeyRegistered {
        uuid: String,
        created: bool,
    },
    ApRegistered {
        ap_id: String,
        ssids: Vec<String>,
        created: bool,
    },
    ApRemoved {
        ap_id: String,
    },
    Aps {
        aps: Vec<ApView>,
    },
}

/// A registered AP, as `ap list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApView {
    pub ap_id: String,
    pub ssids: Vec<String>,
    pub registered_ms: u64,
}

/// Most SSIDs one AP may be registered for.
pub const MAX_AP_SSIDS: usize = 64;
/// Most SSIDs one device may be enrolled for.
pub const MAX_DEVICE_SSIDS: usize = 16;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportReport {
    pub added: u64,
    /// Of `added`, those without an SSID: they may onboard at any SSID.
    #[serde(default)]
    pub added_any_ssid: u64,
    /// Already enrolled with the same pass_tmp and SSIDs.
    pub unchanged: u64,
    pub rejected: Vec<RejectedRow>,
}

impl ImportReport {
    pub fn merge(&mut self, other: ImportReport) {
        self.added += other.added;
        self.added_any_ssid += other.added_any_ssid;
        self.unchanged += other.unchanged;
        self.rejected.extend(other.rejected);
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectedRow {
    pub line: u64,
    pub uuid: String,
    pub reason: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{decode, encode};

    #[test]
    fn admin_messages_round_trip() {
        let req = AdminRequest {
            request_id: "r1".into(),
            op: AdminOp::Enroll {
                uuid: "u".into(),
                pass_tmp: "p".into(),
                replace: false,
                ssids: Vec::new(),
            },
        };
        let text = String::from_utf8(encode(&req)).unwrap();
        assert!(text.contains(r#""op":"enroll""#), "{text}");
        assert!(
            !text.contains("ssids"),
            "any SSID is sent as before: {text}"
        );
        assert_eq!(decode::<AdminRequest>(text.as_bytes()).unwrap(), req);

        let reply = AdminReply {
            request_id: "r1".into(),
            outcome: AdminOutcome::Ok(AdminOk::Imported(ImportReport {
                added: 2,
                added_any_ssid: 1,
                unchanged: 0,
                rejected: vec![RejectedRow {
                    line: 3,
                    uuid: "x".into(),
                    reason: "bad".into(),
                }],
            })),
        };
        assert_eq!(decode::<AdminReply>(&encode(&reply)).unwrap(), reply);
        let err = AdminReply {
            request_id: "r2".into(),
            outcome: AdminOutcome::Error(ErrorBody::new(AdminErrorCode::NotFound, "no")),
        };
        assert_eq!(decode::<AdminReply>(&encode(&err)).unwrap(), err);
    }

    #[test]
    fn ssids_are_optional_on_the_wire() {
        let old: AdminRequest = decode(
            br#"{"request_id":"r","op":"import","rows":[{"line":2,"uuid":"u","pass_tmp":"p"}]}"#,
        )
        .unwrap();
        let AdminOp::Import { rows } = old.op else {
            panic!("{old:?}")
        };
        assert!(rows[0].ssids.is_empty());
        let new: AdminRequest = decode(
            br#"{"request_id":"r","op":"enroll","uuid":"u","pass_tmp":"p","ssids":["a","b"]}"#,
        )
        .unwrap();
        assert!(matches!(new.op, AdminOp::Enroll { ref ssids, .. } if ssids == &["a", "b"]));
        let approve: AdminRequest =
            decode(br#"{"request_id":"r","op":"approve_key","uuid":"u"}"#).unwrap();
        assert_eq!(approve.op, AdminOp::ApproveKey { uuid: "u".into() });
    }

    #[test]
    fn list_defaults() {
        let req: AdminRequest = decode(br#"{"request_id":"r","op":"list"}"#).unwrap();
        assert_eq!(
            req.op,
            AdminOp::List {
                after: None,
                limit: MAX_LIST_PAGE
            }
        );
    }
}

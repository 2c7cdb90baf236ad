//! `[security]`: the mode, the role users and the limits, as the config
//! file spells them, and their validation.

use protocol::Segment;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Authentication by role, the topic ACL, sealed onboarding, signed
    /// assignments.
    #[default]
    Secure,
    /// Plaintext pass_tmp and Wi-Fi password, any client, any topic.
    Walkthrough,
}

/// What a configured user may do. Only admins are configured: every AP and
/// every gateway is its own identity, registered with its own credential
/// (`verifier ap add`, `registry gateway add`), so that no credential is
/// shared by a fleet of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Admin,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Admin => "admin",
        }
    }
}

/// One `[[security.users]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    /// The MQTT username.
    pub name: String,
    pub role: Role,
    /// SHA-256 of the password, 64 hex digits: `printf %s PASSWORD | sha256sum`.
    pub password_sha256: String,
}

/// One `[[security.aps]]` entry: an AP registered on the platform's first
/// start, so that a first AP needs no admin step. Its credential is written
/// to `DATA_DIR/credentials/ap/ID.token`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootstrapAp {
    pub id: String,
    pub ssids: Vec<String>,
}

/// `[security]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecuritySection {
    pub mode: Mode,
    /// The platform's Ed25519 key (hex seed), relative to the data dir;
    /// created on first start. Its public half goes next to it, `.pub`.
    pub signing_key_file: PathBuf,
    pub users: Vec<User>,
    /// Wrong proofs of a UUID's pass_tmp before its attempts are paced
    /// (nobody is locked out: docs/SECURITY.md, Guessing limits).
    pub max_failures: u32,
    /// The longest a paced UUID's next attempt waits, in seconds: the pace
    /// doubles from 1 s up to this.
    pub lockout_secs: u64,
    /// Verification requests each AP may make per second (burst: the same).
    pub ap_rate_per_sec: u32,
    /// APs registered on first start (when their credential file does not
    /// exist yet); others are registered with `verifier ap add`.
    pub aps: Vec<BootstrapAp>,
}

impl Default for SecuritySection {
    fn default() -> Self {
        SecuritySection {
            mode: Mode::Secure,
            signing_key_file: PathBuf::from(protocol::layout::SIGNING_KEY_FILE),
            users: Vec::new(),
            max_failures: 5,
            lockout_secs: 8,
            ap_rate_per_sec: 500,
            aps: vec![BootstrapAp {
                id: "ap-1".into(),
                ssids: vec!["home-wifi".into()],
            }],
        }
    }
}

impl SecuritySection {
    pub fn validate(&self) -> Result<(), String> {
        for (i, u) in self.users.iter().enumerate() {
            let h = &u.password_sha256;
            if h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(format!(
                    "users[{i}].password_sha256 must be 64 hex digits (printf %s PASSWORD | sha256sum)"
                ));
            }
            if !matches!(protocol::logins::Login::parse(&u.name), protocol::logins::Login::Named(n) if !n.is_empty())
            {
                return Err(format!(
                    "users[{i}].name {:?} must be non-empty, not a device UUID, not \"{}\", and not start with \"ap.\" or \"gateway.\"",
                    u.name,
                    protocol::logins::ONBOARDING_USER
                ));
            }
        }
        for (i, ap) in self.aps.iter().enumerate() {
            Segment::parse(&ap.id).map_err(|e| format!("aps[{i}].id {:?} {e}", ap.id))?;
            if ap.ssids.is_empty() {
                return Err(format!("aps[{i}].ssids must name at least one SSID"));
            }
            for ssid in &ap.ssids {
                Segment::parse(ssid).map_err(|e| format!("aps[{i}].ssids: {ssid:?} {e}"))?;
            }
        }
        if self.max_failures == 0 || self.ap_rate_per_sec == 0 {
            return Err("max_failures and ap_rate_per_sec must be at least 1".into());
        }
        Ok(())
    }
}

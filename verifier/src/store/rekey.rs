//! What a device that proves pass_tmp again, with a key other than the one
//! it has, gets: the `rekey` setting.

use serde::{Deserialize, Serialize};

/// Whether a device that lost its key (a factory reset) gets a new one by
/// onboarding again, or only once an admin approves it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rekey {
    /// A device that proves pass_tmp in a fresh onboarding replaces its
    /// key ([`super::EnrollmentStore::replace_device_key`]): whoever knows
    /// pass_tmp can take over the device's identity.
    #[default]
    Proof,
    /// The new key waits as the device's pending key
    /// ([`super::EnrollmentStore::set_pending_device_key`]) until
    /// `verifier approve-key`; the old key keeps working until then.
    Admin,
}

impl Rekey {
    /// The config and command-line spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Rekey::Proof => "proof",
            Rekey::Admin => "admin",
        }
    }
}

impl std::fmt::Display for Rekey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Rekey {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "proof" => Ok(Rekey::Proof),
            "admin" => Ok(Rekey::Admin),
            other => Err(format!(
                "{other:?} is not a rekey policy: \"proof\" or \"admin\""
            )),
        }
    }
}

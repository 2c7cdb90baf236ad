//! The identities the verifier keeps, as a login check needs them, read
//! synchronously: the platform broker asks on its own thread and must not
//! wait on a future. The sled [`Store`] answers from memory or the OS page
//! cache.

use crate::store::{ApRecord, Store};
use protocol::DeviceUuid;
use tracing::warn;

/// An enrolled device, as a login check needs to know it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enrolled {
    /// Enrolled, not onboarded yet: it has no login key.
    Unkeyed,
    /// Onboarded: the public key (hex) its logins are signed with.
    Keyed(String),
}

impl Enrolled {
    /// What an enrollment's `device_key` says.
    pub fn from_key(device_key: Option<String>) -> Self {
        match device_key {
            Some(key) => Enrolled::Keyed(key),
            None => Enrolled::Unkeyed,
        }
    }
}

/// Enrolled devices and registered APs, answered synchronously. A store
/// that cannot be read answers None (the login is refused as unknown) and
/// says why in the log.
pub trait Directory: Send + Sync + 'static {
    /// The enrolled device `uuid`, if it is enrolled.
    fn device(&self, uuid: &DeviceUuid) -> Option<Enrolled>;
    /// The registered AP `ap_id`.
    fn ap(&self, ap_id: &str) -> Option<ApRecord>;
}

impl Directory for Store {
    fn device(&self, uuid: &DeviceUuid) -> Option<Enrolled> {
        match self.get(uuid) {
            Ok(Some(e)) => Some(Enrolled::from_key(e.device_key)),
            Ok(None) => None,
            Err(e) => {
                warn!(error = %e, "cannot read the verifier store for a login");
                None
            }
        }
    }

    fn ap(&self, ap_id: &str) -> Option<ApRecord> {
        Store::ap(self, ap_id).unwrap_or_else(|e| {
            warn!(error = %e, ap_id, "cannot read the verifier store for an AP");
            None
        })
    }
}

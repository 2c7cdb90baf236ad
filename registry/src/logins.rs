//! The registered gateways' credentials, as the platform broker needs them
//! to admit a gateway's agent: gateway id -> SHA-256 of its credential.
//!
//! The registry owns the registrations (they are in its store) and keeps
//! this copy current as it registers and removes gateways; the broker,
//! in the same process, only reads it. A shared map rather than the
//! broker reading the store: the broker checks a login synchronously on
//! its own thread, and needs nothing else of the registry.

use std::collections::HashMap;
use std::sync::RwLock;

#[derive(Debug, Default)]
pub struct GatewayLogins {
    credentials: RwLock<HashMap<String, String>>,
}

impl GatewayLogins {
    /// The SHA-256 of the credential `gateway_id` logs in with, if it is
    /// registered with one.
    pub fn credential_sha256(&self, gateway_id: &str) -> Option<String> {
        self.read().get(gateway_id).cloned()
    }

    /// Records (or, with None, forgets) how `gateway_id` logs in. The
    /// registry calls it as it registers and removes gateways.
    pub fn set(&self, gateway_id: &str, credential_sha256: Option<&str>) {
        let mut map = self.write();
        match credential_sha256 {
            Some(hash) => map.insert(gateway_id.to_owned(), hash.to_owned()),
            None => map.remove(gateway_id),
        };
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, String>> {
        // A writer that panicked left a map that is still a map.
        self.credentials.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, String>> {
        self.credentials.write().unwrap_or_else(|e| e.into_inner())
    }
}

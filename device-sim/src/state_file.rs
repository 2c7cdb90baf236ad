//! `device-sim --state-file`: what a device keeps across restarts, as a
//! real one keeps it in flash. The device's own key (its seed), made once
//! and registered at onboarding, and the gateway it was last on. One JSON
//! object; a file from before the key was kept (the gateway alone) still
//! reads.

use device_sim::gateway::KnownGateway;
use protocol::crypto::DeviceKey;
use serde::{Deserialize, Serialize};
use std::path::Path;

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct StateFile {
    /// The device key's seed, hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    device_key: Option<String>,
    #[serde(flatten)]
    pub gateway: Option<KnownGateway>,
}

impl StateFile {
    /// What the file holds; an absent or unreadable file holds nothing.
    pub fn read(file: &Path) -> Self {
        std::fs::read(file)
            .ok()
            .and_then(|raw| serde_json::from_slice(&raw).ok())
            .unwrap_or_default()
    }

    pub fn write(&self, file: &Path) -> std::io::Result<()> {
        std::fs::write(file, protocol::encode(self))
    }

    /// The device's key: the one kept, or a new one, kept from now on.
    /// A seed that does not parse is replaced, which costs the device its
    /// registration (an admin revokes the old key).
    pub fn device_key(&mut self) -> (DeviceKey, bool) {
        if let Some(key) = self
            .device_key
            .as_deref()
            .and_then(|seed| DeviceKey::from_seed_hex(seed).ok())
        {
            return (key, false);
        }
        let key = DeviceKey::generate();
        self.device_key = Some(key.seed_hex());
        (key, true)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_key_is_made_once_and_the_gateway_kept_beside_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("state.json");
        // A file from before: the gateway alone.
        let known = KnownGateway {
            gateway_id: "gw-1".into(),
            address: "127.0.0.1:1884".into(),
            epoch: 3,
            token: None,
        };
        std::fs::write(&file, protocol::encode(&known)).unwrap();
        let mut state = StateFile::read(&file);
        assert_eq!(state.gateway.as_ref(), Some(&known));
        let (key, new) = state.device_key();
        assert!(new);
        state.write(&file).unwrap();
        let mut again = StateFile::read(&file);
        let (same, new) = again.device_key();
        assert!(!new);
        assert_eq!(same.public_hex(), key.public_hex());
        assert_eq!(again.gateway, Some(known));
        // No file at all: no gateway, and a key to be kept.
        let mut empty = StateFile::read(&dir.path().join("none.json"));
        assert!(empty.gateway.is_none());
        assert!(empty.device_key().1);
    }
}

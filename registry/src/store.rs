//! The registry's sled database. Key encoding lives here and nowhere else.
//!
//! Trees:
//! - `assignments`: device id -> [`Assignment`]
//! - `gateways`: gateway id -> [`GatewayRecord`] (liveness is not stored:
//!   after a restart every gateway is dead until it announces itself)
//! - `audit`: device id, 0x00, sequence (u64 big-endian) -> [`AuditEntry`]
//! - `last_seen`: device id -> [`LastSeen`] (informational; not flushed)

use protocol::now_ms;
use protocol::registry_admin::{AuditEntry, LastSeen};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Open(#[from] storage::OpenError),
    #[error("registry database error: {0}")]
    Sled(#[from] sled::Error),
    #[error("corrupt record under {key}: {source}")]
    Corrupt {
        key: String,
        source: serde_json::Error,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    pub gateway_id: String,
    pub epoch: u64,
    pub updated_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayRecord {
    pub address: String,
    pub weight: u32,
    #[serde(default)]
    pub draining: bool,
}

pub struct Store {
    db: sled::Db,
    assignments: sled::Tree,
    gateways: sled::Tree,
    audit: sled::Tree,
    last_seen: sled::Tree,
}

fn decode<T: DeserializeOwned>(key: &[u8], raw: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(raw).map_err(|source| StoreError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        source,
    })
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    protocol::encode(value)
}

impl Store {
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let db = storage::open_sled("registry", dir)?;
        Ok(Store {
            assignments: db.open_tree("assignments")?,
            gateways: db.open_tree("gateways")?,
            audit: db.open_tree("audit")?,
            last_seen: db.open_tree("last_seen")?,
            db,
        })
    }

    pub fn assignment(&self, device_id: &str) -> Result<Option<Assignment>, StoreError> {
        match self.assignments.get(device_id.as_bytes())? {
            Some(raw) => decode(device_id.as_bytes(), &raw).map(Some),
            None => Ok(None),
        }
    }

    /// Every assignment, in device id order.
    pub fn assignments(
        &self,
    ) -> impl Iterator<Item = Result<(String, Assignment), StoreError>> + '_ {
        self.assignments.iter().map(|item| {
            let (k, v) = item?;
            Ok((String::from_utf8_lossy(&k).into_owned(), decode(&k, &v)?))
        })
    }

    /// Records a new assignment and its audit entry. Not durable until
    /// [`Store::flush`].
    pub fn set_assignment(
        &self,
        device_id: &str,
        gateway_id: &str,
        epoch: u64,
        from: Option<&str>,
        reason: &str,
    ) -> Result<Assignment, StoreError> {
        let now = now_ms();
        let record = Assignment {
            gateway_id: gateway_id.to_owned(),
            epoch,
            updated_ms: now,
        };
        self.assignments
            .insert(device_id.as_bytes(), encode(&record))?;
        let entry = AuditEntry {
            at_ms: now,
            epoch,
            from: from.map(str::to_owned),
            to: gateway_id.to_owned(),
            reason: reason.to_owned(),
        };
        self.audit
            .insert(audit_key(device_id, self.db.generate_id()?), encode(&entry))?;
        Ok(record)
    }

    pub fn history(&self, device_id: &str) -> Result<Vec<AuditEntry>, StoreError> {
        let mut prefix = device_id.as_bytes().to_vec();
        prefix.push(0);
        self.audit
            .scan_prefix(&prefix)
            .map(|item| {
                let (k, v) = item?;
                decode(&k, &v)
            })
            .collect()
    }

    pub fn gateways(&self) -> Result<Vec<(String, GatewayRecord)>, StoreError> {
        self.gateways
            .iter()
            .map(|item| {
                let (k, v) = item?;
                Ok((String::from_utf8_lossy(&k).into_owned(), decode(&k, &v)?))
            })
            .collect()
    }

    pub fn put_gateway(&self, gateway_id: &str, record: &GatewayRecord) -> Result<(), StoreError> {
        self.gateways
            .insert(gateway_id.as_bytes(), encode(record))?;
        Ok(())
    }

    pub fn last_seen(&self, device_id: &str) -> Result<Option<LastSeen>, StoreError> {
        match self.last_seen.get(device_id.as_bytes())? {
            Some(raw) => decode(device_id.as_bytes(), &raw).map(Some),
            None => Ok(None),
        }
    }

    pub fn set_last_seen(&self, device_id: &str, seen: &LastSeen) -> Result<(), StoreError> {
        self.last_seen.insert(device_id.as_bytes(), encode(seen))?;
        Ok(())
    }

    /// Makes every change so far durable. Call before anyone hears of it.
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.db.flush_async().await?;
        Ok(())
    }
}

fn audit_key(device_id: &str, seq: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(device_id.len() + 9);
    key.extend_from_slice(device_id.as_bytes());
    key.push(0);
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn assignments_and_history_persist_in_order() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Store::open(dir.path()).unwrap();
            s.set_assignment("d1", "gw-1", 1, None, "policy").unwrap();
            s.set_assignment("d1", "gw-2", 2, Some("gw-1"), "remap")
                .unwrap();
            s.set_assignment("d10", "gw-1", 1, None, "assign").unwrap();
            s.put_gateway(
                "gw-1",
                &GatewayRecord {
                    address: "a:1".into(),
                    weight: 1,
                    draining: false,
                },
            )
            .unwrap();
            s.flush().await.unwrap();
        }
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(s.assignment("d1").unwrap().unwrap().gateway_id, "gw-2");
        let h = s.history("d1").unwrap();
        assert_eq!(h.iter().map(|e| e.epoch).collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(h[1].from.as_deref(), Some("gw-1"));
        // "d1"'s history does not pick up "d10"'s.
        assert_eq!(s.history("d10").unwrap().len(), 1);
        assert_eq!(s.gateways().unwrap().len(), 1);
    }
}

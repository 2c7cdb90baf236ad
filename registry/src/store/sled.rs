//! The registry's store on sled, the embedded database one registry owns.
//! Key encoding lives here and nowhere else.
//!
//! Trees:
//! - `assignments`: device id -> [`Assignment`]
//! - `gateways`: gateway id -> [`GatewayRecord`] (liveness is not stored:
//!   after a restart every gateway is dead until it announces itself)
//! - `audit`: device id, 0x00, sequence (u64 big-endian) -> [`AuditEntry`]
//! - `last_seen`: device id -> [`LastSeen`] (informational; not flushed)
//!
//! A batch stages its changes in memory. Its commit checks, under a lock
//! every commit of this store takes, that each device's stored epoch is
//! still the one the batch read, then inserts them and flushes once
//! (`flush_async`): one fsync per batch, and a batch that lost a race
//! writes nothing. A sled transaction would do the same, but takes sled's
//! lock for the whole process, stalling the other workers' databases.

use super::{Assignment, GatewayRecord, RegistryStore, Seen, StoreBatch, StoreError};
use protocol::registry_admin::{AuditEntry, LastSeen};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

/// How many records a [`SledStore`] holds, by tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordCounts {
    pub assignments: usize,
    pub gateways: usize,
    pub audit: usize,
    pub last_seen: usize,
}

/// The registry's sled database.
pub struct SledStore {
    inner: Arc<Trees>,
}

struct Trees {
    db: sled::Db,
    assignments: sled::Tree,
    gateways: sled::Tree,
    audit: sled::Tree,
    last_seen: sled::Tree,
    /// Held by a commit from its check to its last insert, so that no
    /// other commit of this store can change a device in between.
    commit: Mutex<()>,
}

fn backend(e: sled::Error) -> StoreError {
    StoreError::Backend(Box::new(e))
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

fn audit_key(device_id: &str, seq: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(device_id.len() + 9);
    key.extend_from_slice(device_id.as_bytes());
    key.push(0);
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

/// Every record of a tree keyed by id, in id order.
fn records<T: DeserializeOwned>(
    tree: &sled::Tree,
) -> impl Iterator<Item = Result<(String, T), StoreError>> + '_ {
    tree.iter().map(|item| {
        let (k, v) = item.map_err(backend)?;
        Ok((String::from_utf8_lossy(&k).into_owned(), decode(&k, &v)?))
    })
}

impl Trees {
    fn get<T: DeserializeOwned>(tree: &sled::Tree, id: &str) -> Result<Option<T>, StoreError> {
        match tree.get(id.as_bytes()).map_err(backend)? {
            Some(raw) => decode(id.as_bytes(), &raw).map(Some),
            None => Ok(None),
        }
    }

    fn assignment(&self, device_id: &str) -> Result<Option<Assignment>, StoreError> {
        Self::get(&self.assignments, device_id)
    }
}

impl SledStore {
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let db = storage::open_sled("registry", dir)?;
        let trees = Trees {
            assignments: db.open_tree("assignments").map_err(backend)?,
            gateways: db.open_tree("gateways").map_err(backend)?,
            audit: db.open_tree("audit").map_err(backend)?,
            last_seen: db.open_tree("last_seen").map_err(backend)?,
            db,
            commit: Mutex::new(()),
        };
        Ok(SledStore {
            inner: Arc::new(trees),
        })
    }

    fn batch(&self) -> SledBatch {
        SledBatch {
            trees: Arc::clone(&self.inner),
            seen: BTreeMap::new(),
            audit: Vec::new(),
        }
    }

    // Direct access, without a runtime, for tools and tests that work on
    // the store of a registry that is not running.

    /// The device's committed assignment.
    pub fn assignment(&self, device_id: &str) -> Result<Option<Assignment>, StoreError> {
        self.inner.assignment(device_id)
    }

    /// Moves the device to `gateway_id` at `epoch`, replacing its
    /// assignment on `from` at `epoch - 1` (none, for epoch 1), as a
    /// committed batch would; [`StoreError::Conflict`] if that is not what
    /// is stored. Not durable until [`SledStore::flush`].
    pub fn set_assignment(
        &self,
        device_id: &str,
        gateway_id: &str,
        epoch: u64,
        from: Option<&str>,
        reason: &str,
    ) -> Result<Assignment, StoreError> {
        let expected = epoch.checked_sub(1).filter(|e| *e > 0);
        let current = self.inner.assignment(device_id)?;
        if current.as_ref().map(|a| (a.gateway_id.as_str(), a.epoch)) != from.zip(expected) {
            return Err(StoreError::Conflict {
                device_id: device_id.to_owned(),
                expected,
                current,
            });
        }
        let mut batch = self.batch();
        let assignment = batch.stage(device_id, expected, gateway_id, reason)?;
        batch.apply()?;
        Ok(assignment)
    }

    /// How many records each tree holds: for tests that check what a
    /// stopped registry's store grew by.
    pub fn counts(&self) -> RecordCounts {
        RecordCounts {
            assignments: self.inner.assignments.len(),
            gateways: self.inner.gateways.len(),
            audit: self.inner.audit.len(),
            last_seen: self.inner.last_seen.len(),
        }
    }

    /// Makes every change so far durable.
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.inner.db.flush_async().await.map_err(backend)?;
        Ok(())
    }
}

impl RegistryStore for SledStore {
    type Batch = SledBatch;

    async fn begin(&self) -> Result<SledBatch, StoreError> {
        Ok(self.batch())
    }

    async fn assignment(&self, device_id: &str) -> Result<Option<Assignment>, StoreError> {
        self.inner.assignment(device_id)
    }

    async fn assignments_of(
        &self,
        device_ids: &[String],
    ) -> Result<HashMap<String, Assignment>, StoreError> {
        let mut found = HashMap::with_capacity(device_ids.len());
        for device_id in device_ids {
            if let Some(a) = self.inner.assignment(device_id)? {
                found.insert(device_id.clone(), a);
            }
        }
        Ok(found)
    }

    async fn assignments_on(
        &self,
        gateway_id: &str,
    ) -> Result<Vec<(String, Assignment)>, StoreError> {
        let mut on = Vec::new();
        for item in records::<Assignment>(&self.inner.assignments) {
            let (device, a) = item?;
            if a.gateway_id == gateway_id {
                on.push((device, a));
            }
        }
        Ok(on)
    }

    async fn assigned_counts(&self) -> Result<BTreeMap<String, u64>, StoreError> {
        let mut counts = BTreeMap::new();
        for item in records::<Assignment>(&self.inner.assignments) {
            let (_, a) = item?;
            *counts.entry(a.gateway_id).or_insert(0) += 1;
        }
        Ok(counts)
    }

    async fn history(&self, device_id: &str) -> Result<Vec<AuditEntry>, StoreError> {
        let mut prefix = device_id.as_bytes().to_vec();
        prefix.push(0);
        self.inner
            .audit
            .scan_prefix(&prefix)
            .map(|item| {
                let (k, v) = item.map_err(backend)?;
                decode(&k, &v)
            })
            .collect()
    }

    async fn gateways(&self) -> Result<Vec<(String, GatewayRecord)>, StoreError> {
        records(&self.inner.gateways).collect()
    }

    async fn put_gateway(
        &self,
        gateway_id: &str,
        record: &GatewayRecord,
    ) -> Result<(), StoreError> {
        self.inner
            .gateways
            .insert(gateway_id.as_bytes(), encode(record))
            .map_err(backend)?;
        Ok(())
    }

    async fn remove_gateway(&self, gateway_id: &str) -> Result<bool, StoreError> {
        Ok(self
            .inner
            .gateways
            .remove(gateway_id.as_bytes())
            .map_err(backend)?
            .is_some())
    }

    async fn last_seen(&self, device_id: &str) -> Result<Option<LastSeen>, StoreError> {
        Trees::get(&self.inner.last_seen, device_id)
    }

    async fn set_last_seen(&self, seen: &[(&str, LastSeen)]) -> Result<(), StoreError> {
        // Every record is tried; the first failure is reported.
        let mut result = Ok(());
        for (device_id, at) in seen {
            if let Err(e) = self
                .inner
                .last_seen
                .insert(device_id.as_bytes(), encode(at))
            {
                result = result.and(Err(backend(e)));
            }
        }
        result
    }

    async fn flush(&self) -> Result<(), StoreError> {
        SledStore::flush(self).await
    }
}

/// A [`StoreBatch`] on sled: changes held in memory until the commit.
pub struct SledBatch {
    trees: Arc<Trees>,
    /// Every device the batch has read or changed, so that each is read
    /// from the tree once.
    seen: BTreeMap<String, Seen>,
    /// Every change's audit entry, in the order staged.
    audit: Vec<(String, AuditEntry)>,
}

impl SledBatch {
    /// What the batch knows of the device, reading it on first use.
    fn seen(&mut self, device_id: &str) -> Result<&mut Seen, StoreError> {
        Ok(match self.seen.entry(device_id.to_owned()) {
            Entry::Occupied(known) => known.into_mut(),
            Entry::Vacant(unread) => {
                let current = self.trees.assignment(device_id)?;
                unread.insert(Seen::read(current))
            }
        })
    }

    fn stage(
        &mut self,
        device_id: &str,
        expected: Option<u64>,
        gateway_id: &str,
        reason: &str,
    ) -> Result<Assignment, StoreError> {
        let (assignment, entry) = self
            .seen(device_id)?
            .stage(device_id, expected, gateway_id, reason)?;
        self.audit.push((device_id.to_owned(), entry));
        Ok(assignment)
    }

    /// Checks every changed device against the store, then writes them all
    /// and their audit entries; not yet durable.
    fn apply(&self) -> Result<(), StoreError> {
        let changed = || self.seen.iter().filter(|(_, s)| s.changed);
        if changed().next().is_none() {
            return Ok(());
        }
        let trees = &*self.trees;
        // The lock guards no data, only this sequence, so a panic that
        // poisoned it left nothing half-changed behind it to refuse.
        let _one_commit = trees.commit.lock().unwrap_or_else(PoisonError::into_inner);
        for (device_id, s) in changed() {
            let current = trees.assignment(device_id)?;
            if current.as_ref().map(|a| a.epoch) != s.base {
                return Err(StoreError::Conflict {
                    device_id: device_id.clone(),
                    expected: s.base,
                    current,
                });
            }
        }
        for (device_id, s) in changed() {
            if let Some(a) = &s.current {
                trees
                    .assignments
                    .insert(device_id.as_bytes(), encode(a))
                    .map_err(backend)?;
            }
        }
        for (device_id, entry) in &self.audit {
            let seq = trees.db.generate_id().map_err(backend)?;
            trees
                .audit
                .insert(audit_key(device_id, seq), encode(entry))
                .map_err(backend)?;
        }
        Ok(())
    }
}

impl StoreBatch for SledBatch {
    async fn assignment(&mut self, device_id: &str) -> Result<Option<Assignment>, StoreError> {
        Ok(self.seen(device_id)?.current.clone())
    }

    async fn set(
        &mut self,
        device_id: &str,
        expected: Option<u64>,
        gateway_id: &str,
        reason: &str,
    ) -> Result<Assignment, StoreError> {
        self.stage(device_id, expected, gateway_id, reason)
    }

    async fn set_device_key(
        &mut self,
        device_id: &str,
        device_key: &str,
    ) -> Result<bool, StoreError> {
        Ok(self.seen(device_id)?.stage_key(device_key))
    }

    async fn commit(self) -> Result<(), StoreError> {
        self.apply()?;
        self.trees.db.flush_async().await.map_err(backend)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn assignments_and_history_persist_in_order() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = SledStore::open(dir.path()).unwrap();
            s.set_assignment("d1", "gw-1", 1, None, "policy").unwrap();
            s.set_assignment("d1", "gw-2", 2, Some("gw-1"), "remap")
                .unwrap();
            s.set_assignment("d10", "gw-1", 1, None, "assign").unwrap();
            s.put_gateway(
                "gw-1",
                &GatewayRecord {
                    registered: false,
                    credential_sha256: None,
                    address: "a:1".into(),
                    weight: 1,
                    draining: false,
                },
            )
            .await
            .unwrap();
            s.flush().await.unwrap();
        }
        let s = SledStore::open(dir.path()).unwrap();
        assert_eq!(s.assignment("d1").unwrap().unwrap().gateway_id, "gw-2");
        let h = s.history("d1").await.unwrap();
        assert_eq!(h.iter().map(|e| e.epoch).collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(h[1].from.as_deref(), Some("gw-1"));
        // "d1"'s history does not pick up "d10"'s.
        assert_eq!(s.history("d10").await.unwrap().len(), 1);
        assert_eq!(s.gateways().await.unwrap().len(), 1);
    }

    fn conflict(result: Result<Assignment, StoreError>) -> Option<Assignment> {
        match result {
            Err(StoreError::Conflict { current, .. }) => current,
            other => panic!("expected a conflict, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_change_that_expects_another_epoch_is_a_conflict_naming_the_current() {
        let dir = tempfile::tempdir().unwrap();
        let s = SledStore::open(dir.path()).unwrap();
        let mut b = s.begin().await.unwrap();
        b.set("d1", None, "gw-1", "policy").await.unwrap();
        b.commit().await.unwrap();

        let mut b = s.begin().await.unwrap();
        let current = conflict(b.set("d1", None, "gw-2", "assign").await).unwrap();
        assert_eq!((current.gateway_id.as_str(), current.epoch), ("gw-1", 1));
        assert_eq!(
            conflict(b.set("d1", Some(2), "gw-2", "remap").await)
                .unwrap()
                .epoch,
            1
        );
        assert_eq!(conflict(b.set("d2", Some(1), "gw-2", "remap").await), None);
        let moved = b.set("d1", Some(1), "gw-2", "remap").await.unwrap();
        assert_eq!((moved.gateway_id.as_str(), moved.epoch), ("gw-2", 2));
        b.commit().await.unwrap();
        assert_eq!(s.history("d1").await.unwrap().len(), 2);
    }

    #[tokio::test]
    async fn a_batch_that_lost_a_race_commits_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let s = SledStore::open(dir.path()).unwrap();
        let mut b = s.begin().await.unwrap();
        b.set("d1", None, "gw-1", "policy").await.unwrap();
        b.commit().await.unwrap();

        // Two registries read d1 at epoch 1 and both move it.
        let mut first = s.begin().await.unwrap();
        let mut second = s.begin().await.unwrap();
        first.set("d1", Some(1), "gw-2", "remap").await.unwrap();
        second.set("d2", None, "gw-3", "policy").await.unwrap();
        second.set("d1", Some(1), "gw-3", "remap").await.unwrap();
        first.commit().await.unwrap();
        match second.commit().await {
            Err(StoreError::Conflict {
                device_id,
                expected,
                current,
            }) => {
                assert_eq!((device_id.as_str(), expected), ("d1", Some(1)));
                let current = current.unwrap();
                assert_eq!((current.gateway_id.as_str(), current.epoch), ("gw-2", 2));
            }
            other => panic!("expected a conflict, got {other:?}"),
        }
        // Not even the change that did not conflict was written.
        assert_eq!(s.assignment("d2").unwrap(), None);
        assert!(s.history("d2").await.unwrap().is_empty());
        assert_eq!(s.history("d1").await.unwrap().len(), 2);
    }

    #[tokio::test]
    async fn a_batch_reads_what_it_staged_and_nobody_else_does_before_commit() {
        let dir = tempfile::tempdir().unwrap();
        let s = SledStore::open(dir.path()).unwrap();
        let mut b = s.begin().await.unwrap();
        assert_eq!(b.assignment("d1").await.unwrap(), None);
        b.set("d1", None, "gw-1", "policy").await.unwrap();
        let staged = b.assignment("d1").await.unwrap().unwrap();
        assert_eq!((staged.gateway_id.as_str(), staged.epoch), ("gw-1", 1));
        // Two queries of one device in one batch: the second sees the first.
        b.set("d1", Some(1), "gw-2", "failover").await.unwrap();
        assert_eq!(RegistryStore::assignment(&s, "d1").await.unwrap(), None);
        assert!(s.history("d1").await.unwrap().is_empty());
        b.commit().await.unwrap();

        let now = RegistryStore::assignment(&s, "d1").await.unwrap().unwrap();
        assert_eq!((now.gateway_id.as_str(), now.epoch), ("gw-2", 2));
        let h = s.history("d1").await.unwrap();
        let steps: Vec<_> = h.iter().map(|e| (e.epoch, e.from.as_deref())).collect();
        assert_eq!(steps, vec![(1, None), (2, Some("gw-1"))]);
    }

    #[tokio::test]
    async fn a_commit_survives_a_reopen_and_a_dropped_batch_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = SledStore::open(dir.path()).unwrap();
            let mut b = s.begin().await.unwrap();
            b.set("d1", None, "gw-1", "assign").await.unwrap();
            b.set("d2", None, "gw-2", "assign").await.unwrap();
            b.commit().await.unwrap();
            let mut dropped = s.begin().await.unwrap();
            dropped.set("d1", Some(1), "gw-2", "remap").await.unwrap();
            dropped.set("d3", None, "gw-1", "policy").await.unwrap();
        }
        let s = SledStore::open(dir.path()).unwrap();
        assert_eq!(s.assignment("d1").unwrap().unwrap().gateway_id, "gw-1");
        assert_eq!(s.assignment("d2").unwrap().unwrap().gateway_id, "gw-2");
        assert_eq!(s.assignment("d3").unwrap(), None);
        let counts = s.assigned_counts().await.unwrap();
        assert_eq!(
            counts,
            BTreeMap::from([("gw-1".into(), 1), ("gw-2".into(), 1)])
        );
        let on = s.assignments_on("gw-2").await.unwrap();
        assert_eq!(
            on.iter().map(|(d, _)| d.as_str()).collect::<Vec<_>>(),
            ["d2"]
        );
    }

    #[tokio::test]
    async fn a_device_key_is_kept_with_the_assignment_and_through_a_move() {
        let dir = tempfile::tempdir().unwrap();
        let key = "ab".repeat(32);
        {
            let s = SledStore::open(dir.path()).unwrap();
            // A record from before the key: read without one.
            s.inner
                .assignments
                .insert(
                    "old",
                    br#"{"gateway_id":"gw-1","epoch":3,"updated_ms":1}"#.to_vec(),
                )
                .unwrap();
            assert_eq!(s.assignment("old").unwrap().unwrap().device_key, None);
            let mut b = s.begin().await.unwrap();
            b.set("d1", None, "gw-1", "policy").await.unwrap();
            assert!(b.set_device_key("d1", &key).await.unwrap());
            assert!(!b.set_device_key("d1", &key).await.unwrap());
            assert!(!b.set_device_key("nobody", &key).await.unwrap());
            b.commit().await.unwrap();
            let mut b = s.begin().await.unwrap();
            let moved = b.set("d1", Some(1), "gw-2", "remap").await.unwrap();
            assert_eq!(moved.device_key.as_deref(), Some(key.as_str()));
            b.commit().await.unwrap();
        }
        let s = SledStore::open(dir.path()).unwrap();
        let a = s.assignment("d1").unwrap().unwrap();
        assert_eq!((a.epoch, a.device_key.as_deref()), (2, Some(key.as_str())));
        // A new key changes no epoch and writes no audit entry; one that
        // lost a race to a move is a conflict.
        let mut late = s.begin().await.unwrap();
        late.assignment("d1").await.unwrap();
        let mut b = s.begin().await.unwrap();
        assert!(b.set_device_key("d1", &"cd".repeat(32)).await.unwrap());
        b.commit().await.unwrap();
        assert_eq!(s.assignment("d1").unwrap().unwrap().epoch, 2);
        assert_eq!(s.history("d1").await.unwrap().len(), 2);
        let mut first = s.begin().await.unwrap();
        first.set("d1", Some(2), "gw-1", "remap").await.unwrap();
        first.commit().await.unwrap();
        assert!(late.set_device_key("d1", &"ef".repeat(32)).await.unwrap());
        assert!(matches!(
            late.commit().await,
            Err(StoreError::Conflict { .. })
        ));
    }

    #[tokio::test]
    async fn assignments_of_many_ids_are_exactly_the_assigned_ones() {
        let dir = tempfile::tempdir().unwrap();
        let s = SledStore::open(dir.path()).unwrap();
        s.set_assignment("d1", "gw-1", 1, None, "policy").unwrap();
        s.set_assignment("d2", "gw-2", 1, None, "policy").unwrap();
        assert!(s.assignments_of(&[]).await.unwrap().is_empty());
        let ids: Vec<String> = (0..5000)
            .map(|i| format!("made-up-{i}"))
            .chain(["d1".into(), "d2".into(), "d1".into()])
            .collect();
        let found = s.assignments_of(&ids).await.unwrap();
        let mut got: Vec<_> = found
            .iter()
            .map(|(d, a)| (d.as_str(), a.gateway_id.as_str()))
            .collect();
        got.sort();
        assert_eq!(got, [("d1", "gw-1"), ("d2", "gw-2")]);
        // Reading made nothing up.
        assert_eq!(s.counts().assignments, 2);
        assert_eq!(s.counts().last_seen, 0);
    }

    #[test]
    fn a_direct_write_checks_what_it_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let s = SledStore::open(dir.path()).unwrap();
        s.set_assignment("d1", "gw-1", 1, None, "assign").unwrap();
        assert!(s.set_assignment("d1", "gw-2", 1, None, "assign").is_err());
        assert!(s
            .set_assignment("d1", "gw-2", 3, Some("gw-1"), "remap")
            .is_err());
        assert!(s
            .set_assignment("d1", "gw-2", 2, Some("gw-3"), "remap")
            .is_err());
        let a = s
            .set_assignment("d1", "gw-2", 2, Some("gw-1"), "remap")
            .unwrap();
        assert_eq!((a.gateway_id.as_str(), a.epoch), ("gw-2", 2));
    }
}

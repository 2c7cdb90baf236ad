//! The sled implementation of [`EnrollmentStore`]: tree `enrollments`,
//! keyed by the lower-case UUID, each value an [`Enrollment`] as JSON, and
//! tree `aps`, keyed by AP id, each value an [`ApRecord`] as JSON. Key
//! encoding lives here and nowhere else.
//!
//! Writes use compare-and-swap rather than sled transactions or batches:
//! the first of those in a process makes every sled operation in it (the
//! registry's too) take a process-wide lock from then on.

use super::at_rest::StoreKey;
use super::{
    normalize_ssids, ApRecord, BoxError, EnrollOutcome, EnrollRow, Enrollment, EnrollmentStore,
    KeyOutcome, Page, StoreError,
};
use protocol::now_ms;
use protocol::DeviceUuid;
use serde::{Deserialize, Serialize};
use std::ops::Bound;
use std::path::Path;

pub struct Store {
    db: sled::Db,
    enrollments: sled::Tree,
    aps: sled::Tree,
    /// What pass_tmps are sealed with on disk.
    key: StoreKey,
}

fn backend(e: sled::Error) -> StoreError {
    StoreError::Backend(Box::new(e))
}

fn corrupt(uuid: &DeviceUuid, source: impl Into<BoxError>) -> StoreError {
    StoreError::Corrupt {
        key: uuid.key().to_owned(),
        source: source.into(),
    }
}

fn key(uuid: &DeviceUuid) -> &[u8] {
    uuid.key().as_bytes()
}

/// An enrollment as it is on disk: pass_tmp sealed under the store key.
/// `pass_tmp` is what a store written before sealing holds; it is read,
/// and sealed at the record's next write. A record written before SSIDs
/// and pending keys has neither field, and reads as any SSID, nothing
/// pending.
#[derive(Serialize, Deserialize)]
struct OnDisk {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pass_tmp: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pass_tmp_sealed: Option<String>,
    enrolled_at_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    device_key: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    ssids: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pending_key: Option<String>,
}

impl Store {
    fn decode(&self, uuid: &DeviceUuid, raw: &[u8]) -> Result<Enrollment, StoreError> {
        let disk: OnDisk = serde_json::from_slice(raw).map_err(|e| corrupt(uuid, e))?;
        let pass_tmp = match (disk.pass_tmp_sealed, disk.pass_tmp) {
            (Some(sealed), _) => self
                .key
                .open(uuid.key(), &sealed)
                .map_err(|e| corrupt(uuid, e))?,
            (None, Some(plain)) => plain,
            (None, None) => return Err(corrupt(uuid, "no pass_tmp")),
        };
        Ok(Enrollment {
            pass_tmp,
            enrolled_at_ms: disk.enrolled_at_ms,
            device_key: disk.device_key,
            ssids: disk.ssids,
            pending_key: disk.pending_key,
        })
    }

    fn encode(&self, uuid: &DeviceUuid, e: &Enrollment) -> Result<Vec<u8>, StoreError> {
        let disk = OnDisk {
            pass_tmp: None,
            pass_tmp_sealed: Some(self.key.seal(uuid.key(), &e.pass_tmp)),
            enrolled_at_ms: e.enrolled_at_ms,
            device_key: e.device_key.clone(),
            ssids: e.ssids.clone(),
            pending_key: e.pending_key.clone(),
        };
        serde_json::to_vec(&disk).map_err(|e| corrupt(uuid, e))
    }
}

impl Store {
    /// Opens the database in `dir`, with pass_tmps sealed under the key in
    /// `{dir}.key` (made on first open).
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let mut key_file = dir.as_os_str().to_owned();
        key_file.push(".key");
        let key = StoreKey::load_or_create(Path::new(&key_file))
            .map_err(|e| StoreError::Open(Box::new(e)))?;
        let db = storage::open_sled("verifier", dir).map_err(|e| StoreError::Open(Box::new(e)))?;
        let enrollments = db.open_tree("enrollments").map_err(backend)?;
        let aps = db.open_tree("aps").map_err(backend)?;
        Ok(Store {
            db,
            enrollments,
            aps,
            key,
        })
    }

    /// The same lookup as [`EnrollmentStore::get`], without a future: sled
    /// answers from memory or the OS page cache, and the platform broker
    /// checks device logins with it, synchronously, on its own thread.
    pub fn get(&self, uuid: &DeviceUuid) -> Result<Option<Enrollment>, StoreError> {
        match self.enrollments.get(key(uuid)).map_err(backend)? {
            Some(raw) => self.decode(uuid, &raw).map(Some),
            None => Ok(None),
        }
    }

    /// The registered AP `ap_id`, without a future, for the platform
    /// broker's synchronous login and ACL checks.
    pub fn ap(&self, ap_id: &str) -> Result<Option<ApRecord>, StoreError> {
        match self.aps.get(ap_id.as_bytes()).map_err(backend)? {
            Some(raw) => serde_json::from_slice(&raw)
                .map(Some)
                .map_err(|e| StoreError::Corrupt {
                    key: ap_id.to_owned(),
                    source: e.into(),
                }),
            None => Ok(None),
        }
    }

    /// Applies `change` to the device's enrollment in one compare-and-swap
    /// step, retrying from what another writer wrote. `change` returns the
    /// new record to write, or None to write nothing, with what to answer.
    fn update<T>(
        &self,
        uuid: &DeviceUuid,
        mut change: impl FnMut(Option<Enrollment>) -> (Option<Enrollment>, T),
    ) -> Result<T, StoreError> {
        let mut current = self.enrollments.get(key(uuid)).map_err(backend)?;
        loop {
            let old = current
                .as_deref()
                .map(|raw| self.decode(uuid, raw))
                .transpose()?;
            let (new, answer) = change(old);
            let Some(new) = new else {
                return Ok(answer);
            };
            let value = self.encode(uuid, &new)?;
            match self
                .enrollments
                .compare_and_swap(key(uuid), current, Some(value))
                .map_err(backend)?
            {
                Ok(()) => return Ok(answer),
                Err(lost) => current = lost.current,
            }
        }
    }

    /// Decides the outcome from the current value, then writes only if
    /// that value is still there; if another writer got in between,
    /// decides again from what it wrote.
    fn enroll_now(&self, row: &EnrollRow, replace: bool) -> Result<EnrollOutcome, StoreError> {
        let ssids = normalize_ssids(&row.ssids);
        self.update(&row.uuid, |old| {
            let same_pass = old.as_ref().map(|o| o.pass_tmp == row.pass_tmp);
            let outcome = match &old {
                None => EnrollOutcome::Created,
                Some(old) if old.pass_tmp == row.pass_tmp && old.ssids == ssids => {
                    return (None, EnrollOutcome::Unchanged)
                }
                Some(_) if replace => EnrollOutcome::Replaced,
                Some(_) => return (None, EnrollOutcome::Conflict),
            };
            let record = match old {
                // New SSIDs alone: the same device, with its keys.
                Some(old) if same_pass == Some(true) => Enrollment {
                    ssids: ssids.clone(),
                    ..old
                },
                // A new pass_tmp is a new device as far as logins go: its
                // old key, if any, goes with the old enrollment.
                _ => Enrollment {
                    pass_tmp: row.pass_tmp.clone(),
                    enrolled_at_ms: now_ms(),
                    device_key: None,
                    ssids: ssids.clone(),
                    pending_key: None,
                },
            };
            (Some(record), outcome)
        })
    }
}

impl EnrollmentStore for Store {
    async fn get(&self, uuid: &DeviceUuid) -> Result<Option<Enrollment>, StoreError> {
        Store::get(self, uuid)
    }

    /// Not durable until [`EnrollmentStore::flush`].
    async fn enroll_at(&self, row: &EnrollRow, replace: bool) -> Result<EnrollOutcome, StoreError> {
        self.enroll_now(row, replace)
    }

    /// Row by row, each row atomic: without a transaction (see the module
    /// doc), a failure part-way leaves the rows before it enrolled.
    async fn import(&self, rows: &[EnrollRow]) -> Result<Vec<EnrollOutcome>, StoreError> {
        rows.iter().map(|row| self.enroll_now(row, false)).collect()
    }

    async fn remove(&self, uuid: &DeviceUuid) -> Result<bool, StoreError> {
        Ok(self
            .enrollments
            .remove(key(uuid))
            .map_err(backend)?
            .is_some())
    }

    async fn list(&self, after: Option<&str>, limit: usize) -> Result<Page, StoreError> {
        let range = match after {
            Some(a) => self
                .enrollments
                .range::<&[u8], _>((Bound::Excluded(a.as_bytes()), Bound::Unbounded)),
            None => self.enrollments.iter(),
        };
        let mut uuids = Vec::new();
        for item in range.keys().take(limit.saturating_add(1)) {
            uuids.push(String::from_utf8_lossy(&item.map_err(backend)?).into_owned());
        }
        let next = if uuids.len() > limit {
            uuids.truncate(limit);
            uuids.last().cloned()
        } else {
            None
        };
        Ok(Page { uuids, next })
    }

    async fn set_device_key(
        &self,
        uuid: &DeviceUuid,
        device_key: &str,
    ) -> Result<KeyOutcome, StoreError> {
        self.update(uuid, |old| match old {
            None => (None, KeyOutcome::NotEnrolled),
            Some(e) if e.device_key.as_deref() == Some(device_key) => (None, KeyOutcome::Unchanged),
            Some(e) if e.device_key.is_some() => (None, KeyOutcome::Conflict),
            Some(e) => (
                Some(Enrollment {
                    device_key: Some(device_key.to_owned()),
                    ..e
                }),
                KeyOutcome::Registered,
            ),
        })
    }

    async fn replace_device_key(
        &self,
        uuid: &DeviceUuid,
        device_key: &str,
    ) -> Result<KeyOutcome, StoreError> {
        self.update(uuid, |old| {
            let Some(e) = old else {
                return (None, KeyOutcome::NotEnrolled);
            };
            let outcome = match e.device_key.as_deref() {
                Some(k) if k == device_key && e.pending_key.is_none() => {
                    return (None, KeyOutcome::Unchanged)
                }
                Some(k) if k == device_key => KeyOutcome::Unchanged,
                Some(_) => KeyOutcome::Replaced,
                None => KeyOutcome::Registered,
            };
            let record = Enrollment {
                device_key: Some(device_key.to_owned()),
                pending_key: None,
                ..e
            };
            (Some(record), outcome)
        })
    }

    async fn set_pending_device_key(
        &self,
        uuid: &DeviceUuid,
        device_key: &str,
    ) -> Result<KeyOutcome, StoreError> {
        self.update(uuid, |old| match old {
            None => (None, KeyOutcome::NotEnrolled),
            Some(e) if e.device_key.as_deref() == Some(device_key) => (None, KeyOutcome::Unchanged),
            Some(e) if e.device_key.is_none() => (
                Some(Enrollment {
                    device_key: Some(device_key.to_owned()),
                    pending_key: None,
                    ..e
                }),
                KeyOutcome::Registered,
            ),
            Some(e) if e.pending_key.as_deref() == Some(device_key) => (None, KeyOutcome::Pending),
            Some(e) => (
                Some(Enrollment {
                    pending_key: Some(device_key.to_owned()),
                    ..e
                }),
                KeyOutcome::Pending,
            ),
        })
    }

    async fn approve_pending_key(&self, uuid: &DeviceUuid) -> Result<bool, StoreError> {
        self.update(uuid, |old| match old {
            Some(mut e) => match e.pending_key.take() {
                Some(pending) => {
                    e.device_key = Some(pending);
                    (Some(e), true)
                }
                None => (None, false),
            },
            None => (None, false),
        })
    }

    async fn revoke_device_key(&self, uuid: &DeviceUuid) -> Result<bool, StoreError> {
        self.update(uuid, |old| match old {
            Some(e) if e.device_key.is_some() => (
                Some(Enrollment {
                    device_key: None,
                    pending_key: None,
                    ..e
                }),
                true,
            ),
            _ => (None, false),
        })
    }

    async fn ap(&self, ap_id: &str) -> Result<Option<ApRecord>, StoreError> {
        Store::ap(self, ap_id)
    }

    async fn put_ap(&self, ap_id: &str, record: &ApRecord) -> Result<bool, StoreError> {
        let value = serde_json::to_vec(record).map_err(|e| StoreError::Corrupt {
            key: ap_id.to_owned(),
            source: e.into(),
        })?;
        let old = self.aps.insert(ap_id.as_bytes(), value).map_err(backend)?;
        Ok(old.is_none())
    }

    async fn remove_ap(&self, ap_id: &str) -> Result<bool, StoreError> {
        Ok(self
            .aps
            .remove(ap_id.as_bytes())
            .map_err(backend)?
            .is_some())
    }

    async fn aps(&self) -> Result<Vec<(String, ApRecord)>, StoreError> {
        self.aps
            .iter()
            .map(|item| {
                let (k, v) = item.map_err(backend)?;
                let id = String::from_utf8_lossy(&k).into_owned();
                let record = serde_json::from_slice(&v).map_err(|e| StoreError::Corrupt {
                    key: id.clone(),
                    source: e.into(),
                })?;
                Ok((id, record))
            })
            .collect()
    }

    async fn count(&self) -> Result<u64, StoreError> {
        Ok(self.enrollments.len() as u64)
    }

    async fn flush(&self) -> Result<(), StoreError> {
        self.db.flush_async().await.map_err(backend)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Barrier;

    fn uuid(n: u8) -> DeviceUuid {
        DeviceUuid::parse(&format!("00000000-0000-4000-8000-0000000000{n:02x}")).unwrap()
    }

    /// Rows for any SSID.
    fn rows<'a>(rows: impl IntoIterator<Item = (DeviceUuid, &'a str)>) -> Vec<EnrollRow> {
        rows.into_iter()
            .map(|(uuid, pass_tmp)| EnrollRow {
                uuid,
                pass_tmp: pass_tmp.to_owned(),
                ssids: Vec::new(),
            })
            .collect()
    }

    #[tokio::test]
    async fn enroll_semantics_and_persistence() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Store::open(dir.path()).unwrap();
            assert_eq!(
                s.enroll(&uuid(1), "a", false).await.unwrap(),
                EnrollOutcome::Created
            );
            assert_eq!(
                s.enroll(&uuid(1), "a", false).await.unwrap(),
                EnrollOutcome::Unchanged
            );
            assert_eq!(
                s.enroll(&uuid(1), "b", false).await.unwrap(),
                EnrollOutcome::Conflict
            );
            assert_eq!(s.get(&uuid(1)).unwrap().unwrap().pass_tmp, "a");
            assert_eq!(
                s.enroll(&uuid(1), "b", true).await.unwrap(),
                EnrollOutcome::Replaced
            );
            assert_eq!(
                s.enroll(&uuid(2), "c", false).await.unwrap(),
                EnrollOutcome::Created
            );
            assert!(s.remove(&uuid(2)).await.unwrap());
            assert!(!s.remove(&uuid(2)).await.unwrap());
            s.flush().await.unwrap();
        }
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(s.get(&uuid(1)).unwrap().unwrap().pass_tmp, "b");
        assert!(s.get(&uuid(2)).unwrap().is_none());
    }

    #[tokio::test]
    async fn enroll_decides_each_of_the_four_outcomes() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let first = s.enroll(&uuid(1), "a", false).await.unwrap();
        let enrolled_at = s.get(&uuid(1)).unwrap().unwrap().enrolled_at_ms;
        assert_eq!(first, EnrollOutcome::Created);

        // The same pass_tmp, with or without replace: nothing is written.
        for replace in [false, true] {
            let again = s.enroll(&uuid(1), "a", replace).await.unwrap();
            assert_eq!(again, EnrollOutcome::Unchanged);
        }
        // Another pass_tmp without replace: refused, and the old one stays.
        let other = s.enroll(&uuid(1), "b", false).await.unwrap();
        assert_eq!(other, EnrollOutcome::Conflict);
        let kept = EnrollmentStore::get(&s, &uuid(1)).await.unwrap().unwrap();
        assert_eq!(kept.pass_tmp, "a");
        assert_eq!(kept.enrolled_at_ms, enrolled_at);
        // With replace: the new one is stored.
        let replaced = s.enroll(&uuid(1), "b", true).await.unwrap();
        assert_eq!(replaced, EnrollOutcome::Replaced);
        assert_eq!(s.get(&uuid(1)).unwrap().unwrap().pass_tmp, "b");
        assert_eq!(s.count().await.unwrap(), 1);
    }

    #[test]
    fn concurrent_enrolls_of_one_uuid_make_exactly_one_created() {
        const WRITERS: usize = 8;
        const ROUNDS: u8 = 120;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        for replace in [false, true] {
            let start = Barrier::new(WRITERS);
            // outcomes[round] = what each writer was told, with its pass_tmp.
            let outcomes: Vec<Vec<(EnrollOutcome, String)>> = std::thread::scope(|scope| {
                let writers: Vec<_> = (0..WRITERS)
                    .map(|w| {
                        let (store, start) = (&store, &start);
                        scope.spawn(move || {
                            let rt = tokio::runtime::Builder::new_current_thread()
                                .build()
                                .unwrap();
                            (0..ROUNDS)
                                .map(|round| {
                                    let id = uuid(round + if replace { ROUNDS } else { 0 });
                                    let pass_tmp = format!("p{w}");
                                    start.wait();
                                    let outcome =
                                        rt.block_on(store.enroll(&id, &pass_tmp, replace)).unwrap();
                                    (outcome, pass_tmp)
                                })
                                .collect::<Vec<_>>()
                        })
                    })
                    .collect();
                let per_writer: Vec<_> = writers.into_iter().map(|h| h.join().unwrap()).collect();
                (0..usize::from(ROUNDS))
                    .map(|r| per_writer.iter().map(|w| w[r].clone()).collect())
                    .collect()
            });
            for (round, told) in outcomes.iter().enumerate() {
                let created: Vec<_> = told
                    .iter()
                    .filter(|(o, _)| *o == EnrollOutcome::Created)
                    .collect();
                assert_eq!(
                    created.len(),
                    1,
                    "round {round}, replace {replace}: {told:?}"
                );
                let others = if replace {
                    EnrollOutcome::Replaced
                } else {
                    EnrollOutcome::Conflict
                };
                let rest = told.iter().filter(|(o, _)| *o == others).count();
                assert_eq!(
                    rest,
                    WRITERS - 1,
                    "round {round}, replace {replace}: {told:?}"
                );
                if !replace {
                    // Nobody overwrote the one that was created.
                    let round = u8::try_from(round).unwrap();
                    let stored = store.get(&uuid(round)).unwrap().unwrap();
                    assert_eq!(stored.pass_tmp, created[0].1);
                }
            }
        }
    }

    #[tokio::test]
    async fn import_decides_each_row_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        s.enroll(&uuid(1), "old", false).await.unwrap();
        let rows = rows([
            (uuid(1), "old"),
            (uuid(1), "new"),
            (uuid(2), "a"),
            (uuid(2), "a"),
            (uuid(2), "b"),
        ]);
        let outcomes = s.import(&rows).await.unwrap();
        assert_eq!(
            outcomes,
            [
                EnrollOutcome::Unchanged,
                EnrollOutcome::Conflict,
                EnrollOutcome::Created,
                EnrollOutcome::Unchanged,
                EnrollOutcome::Conflict,
            ]
        );
        assert_eq!(s.get(&uuid(1)).unwrap().unwrap().pass_tmp, "old");
        assert_eq!(s.get(&uuid(2)).unwrap().unwrap().pass_tmp, "a");
        assert_eq!(s.import(&[]).await.unwrap(), []);
        assert_eq!(s.count().await.unwrap(), 2);
    }

    #[tokio::test]
    async fn flushed_changes_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Store::open(dir.path()).unwrap();
            let names: Vec<String> = (0..10).map(|n| format!("p{n}")).collect();
            let rows = rows((0..10).map(|n| (uuid(n), names[usize::from(n)].as_str())));
            s.import(&rows).await.unwrap();
            s.enroll(&uuid(3), "replaced", true).await.unwrap();
            assert!(s.remove(&uuid(4)).await.unwrap());
            s.flush().await.unwrap();
        }
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(s.count().await.unwrap(), 9);
        assert_eq!(s.get(&uuid(0)).unwrap().unwrap().pass_tmp, "p0");
        assert_eq!(s.get(&uuid(3)).unwrap().unwrap().pass_tmp, "replaced");
        assert!(s.get(&uuid(4)).unwrap().is_none());
        let page = s.list(None, 100).await.unwrap();
        assert_eq!(page.uuids.len(), 9);
        assert_eq!(page.next, None);
    }

    #[tokio::test]
    async fn uppercase_and_lowercase_are_one_device() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let lower = DeviceUuid::parse("6f1c2b8e-0b5d-4a8f-9e8c-2b7d8e9f0a1b").unwrap();
        let upper = DeviceUuid::parse("6F1C2B8E-0B5D-4A8F-9E8C-2B7D8E9F0A1B").unwrap();
        s.enroll(&lower, "p", false).await.unwrap();
        assert_eq!(s.get(&upper).unwrap().unwrap().pass_tmp, "p");
    }

    #[tokio::test]
    async fn list_pages() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        for n in 0..5 {
            s.enroll(&uuid(n), "p", false).await.unwrap();
        }
        let Page { uuids: page, next } = s.list(None, 2).await.unwrap();
        assert_eq!(page.len(), 2);
        let Page {
            uuids: page2,
            next: next2,
        } = s.list(next.as_deref(), 2).await.unwrap();
        assert_eq!(page2.len(), 2);
        assert_ne!(page[1], page2[0]);
        let Page {
            uuids: page3,
            next: next3,
        } = s.list(next2.as_deref(), 2).await.unwrap();
        assert_eq!((page3.len(), next3), (1, None));
    }

    #[tokio::test]
    async fn list_pages_in_key_order_after_the_cursor() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        for n in [4, 0, 3, 1, 2] {
            s.enroll(&uuid(n), "p", false).await.unwrap();
        }
        let mut after = None;
        let mut seen = Vec::new();
        loop {
            let page = s.list(after.as_deref(), 2).await.unwrap();
            assert!(page.uuids.len() <= 2);
            seen.extend(page.uuids);
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        let expected: Vec<_> = (0..5).map(|n| uuid(n).key().to_owned()).collect();
        assert_eq!(seen, expected);
        // A cursor past the end is an empty last page.
        let past = s.list(Some("ffffffff"), 2).await.unwrap();
        assert_eq!((past.uuids.len(), past.next), (0, None));
    }

    #[test]
    fn a_second_open_of_the_same_dir_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let _first = Store::open(dir.path()).unwrap();
        let err = Store::open(dir.path()).err().unwrap().to_string();
        assert!(err.contains("another verifier"), "{err}");
    }

    #[tokio::test]
    async fn a_device_key_is_first_come_until_revoked_and_a_new_pass_tmp_drops_it() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(
            s.set_device_key(&uuid(1), "k1").await.unwrap(),
            KeyOutcome::NotEnrolled
        );
        s.enroll(&uuid(1), "a", false).await.unwrap();
        assert_eq!(
            s.set_device_key(&uuid(1), "k1").await.unwrap(),
            KeyOutcome::Registered
        );
        assert_eq!(
            s.set_device_key(&uuid(1), "k1").await.unwrap(),
            KeyOutcome::Unchanged
        );
        assert_eq!(
            s.set_device_key(&uuid(1), "k2").await.unwrap(),
            KeyOutcome::Conflict
        );
        assert_eq!(
            s.get(&uuid(1)).unwrap().unwrap().device_key.as_deref(),
            Some("k1")
        );
        // Re-enrolling with the same pass_tmp keeps the key...
        s.enroll(&uuid(1), "a", true).await.unwrap();
        assert_eq!(
            s.get(&uuid(1)).unwrap().unwrap().device_key.as_deref(),
            Some("k1")
        );
        // ...revoking it makes room for another...
        assert!(s.revoke_device_key(&uuid(1)).await.unwrap());
        assert!(!s.revoke_device_key(&uuid(1)).await.unwrap());
        assert_eq!(
            s.set_device_key(&uuid(1), "k2").await.unwrap(),
            KeyOutcome::Registered
        );
        // ...and a new pass_tmp is a new device, with no key.
        s.enroll(&uuid(1), "b", true).await.unwrap();
        assert_eq!(s.get(&uuid(1)).unwrap().unwrap().device_key, None);
    }

    #[tokio::test]
    async fn aps_are_registered_listed_and_removed_and_persist() {
        let dir = tempfile::tempdir().unwrap();
        let record = |ssid: &str| ApRecord {
            ssids: vec![ssid.to_owned()],
            credential_sha256: "00".repeat(32),
            registered_ms: 1,
        };
        {
            let s = Store::open(dir.path()).unwrap();
            assert!(s.put_ap("ap-2", &record("b")).await.unwrap());
            assert!(s.put_ap("ap-1", &record("a")).await.unwrap());
            assert!(
                !s.put_ap("ap-1", &record("c")).await.unwrap(),
                "re-registered"
            );
            s.flush().await.unwrap();
        }
        let s = Store::open(dir.path()).unwrap();
        let ids: Vec<String> = s
            .aps()
            .await
            .unwrap()
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        assert_eq!(ids, ["ap-1", "ap-2"]);
        let ap1 = s.ap("ap-1").unwrap().unwrap();
        assert!(ap1.serves("c") && !ap1.serves("a"));
        assert!(s.remove_ap("ap-1").await.unwrap());
        assert!(s.ap("ap-1").unwrap().is_none());
    }

    #[tokio::test]
    async fn no_file_of_the_database_holds_a_pass_tmp() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("verifier");
        const MARKER: &str = "correct-horse-battery-staple-42";
        {
            let s = Store::open(&db).unwrap();
            s.enroll(&uuid(1), MARKER, false).await.unwrap();
            s.flush().await.unwrap();
            assert_eq!(s.get(&uuid(1)).unwrap().unwrap().pass_tmp, MARKER);
        }
        fn files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
            for e in std::fs::read_dir(dir).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    files(&p, out);
                } else {
                    out.push(p);
                }
            }
        }
        let mut all = Vec::new();
        files(dir.path(), &mut all);
        assert!(all.len() > 1);
        for f in all {
            let bytes = std::fs::read(&f).unwrap();
            assert!(
                !bytes.windows(MARKER.len()).any(|w| w == MARKER.as_bytes()),
                "{} holds the pass_tmp",
                f.display()
            );
        }
        let s = Store::open(&db).unwrap();
        assert_eq!(s.get(&uuid(1)).unwrap().unwrap().pass_tmp, MARKER);
    }

    #[tokio::test]
    async fn a_record_written_before_sealing_is_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        s.enrollments
            .insert(
                key(&uuid(1)),
                br#"{"pass_tmp":"old","enrolled_at_ms":5}"#.to_vec(),
            )
            .unwrap();
        let e = s.get(&uuid(1)).unwrap().unwrap();
        assert_eq!((e.pass_tmp.as_str(), e.enrolled_at_ms), ("old", 5));
    }

    /// A record as the previous release wrote it (sealed, with a key, no
    /// SSIDs, no pending key) reads as enrolled for any SSID, and keeps
    /// its key when it is given SSIDs.
    #[tokio::test]
    async fn a_record_written_before_ssids_reads_as_any_ssid() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let sealed = s.key.seal(uuid(1).key(), "old");
        let old =
            format!(r#"{{"pass_tmp_sealed":"{sealed}","enrolled_at_ms":5,"device_key":"k1"}}"#);
        s.enrollments
            .insert(key(&uuid(1)), old.into_bytes())
            .unwrap();
        let e = s.get(&uuid(1)).unwrap().unwrap();
        assert_eq!(e.pass_tmp, "old");
        assert_eq!(e.device_key.as_deref(), Some("k1"));
        assert!(e.ssids.is_empty() && e.pending_key.is_none(), "{e:?}");
        assert!(e.allows_ssid("home-wifi") && e.allows_ssid("anything"));
        // Unchanged as it is; given SSIDs (replace), the same device.
        assert_eq!(
            s.enroll(&uuid(1), "old", false).await.unwrap(),
            EnrollOutcome::Unchanged
        );
        let row = EnrollRow {
            uuid: uuid(1),
            pass_tmp: "old".into(),
            ssids: vec!["home-wifi".into()],
        };
        assert_eq!(
            s.enroll_at(&row, true).await.unwrap(),
            EnrollOutcome::Replaced
        );
        let e = s.get(&uuid(1)).unwrap().unwrap();
        assert_eq!(e.ssids, ["home-wifi"]);
        assert_eq!(e.device_key.as_deref(), Some("k1"));
        assert!(!e.allows_ssid("anything"));
    }
}

//! UUID -> pass_tmp in sled. Key encoding lives here and nowhere else.

use protocol::now_ms;
use protocol::DeviceUuid;
use serde::{Deserialize, Serialize};
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Open(#[from] storage::OpenError),
    #[error("verifier database error: {0}")]
    Sled(#[from] sled::Error),
    #[error("corrupt record for {key}: {source}")]
    Corrupt {
        key: String,
        source: serde_json::Error,
    },
}

/// What is stored per device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enrollment {
    pub pass_tmp: String,
    pub enrolled_at_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnrollOutcome {
    Created,
    /// Already enrolled with the same pass_tmp.
    Unchanged,
    /// Enrolled with another pass_tmp; replaced because asked to.
    Replaced,
    /// Enrolled with another pass_tmp; left as it was.
    Conflict,
}

pub struct Store {
    db: sled::Db,
    enrollments: sled::Tree,
}

impl Store {
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let db = storage::open_sled("verifier", dir)?;
        let enrollments = db.open_tree("enrollments")?;
        Ok(Store { db, enrollments })
    }

    fn key(uuid: &DeviceUuid) -> &[u8] {
        uuid.key().as_bytes()
    }

    pub fn get(&self, uuid: &DeviceUuid) -> Result<Option<Enrollment>, StoreError> {
        let Some(raw) = self.enrollments.get(Self::key(uuid))? else {
            return Ok(None);
        };
        serde_json::from_slice(&raw)
            .map(Some)
            .map_err(|source| StoreError::Corrupt {
                key: uuid.key().to_owned(),
                source,
            })
    }

    /// Enrolls or re-enrolls one device. Not durable until [`Store::flush`].
    pub fn enroll(
        &self,
        uuid: &DeviceUuid,
        pass_tmp: &str,
        replace: bool,
    ) -> Result<EnrollOutcome, StoreError> {
        let outcome = match self.get(uuid)? {
            None => EnrollOutcome::Created,
            Some(old) if old.pass_tmp == pass_tmp => return Ok(EnrollOutcome::Unchanged),
            Some(_) if replace => EnrollOutcome::Replaced,
            Some(_) => return Ok(EnrollOutcome::Conflict),
        };
        let record = Enrollment {
            pass_tmp: pass_tmp.to_owned(),
            enrolled_at_ms: now_ms(),
        };
        let value = serde_json::to_vec(&record).map_err(|source| StoreError::Corrupt {
            key: uuid.key().to_owned(),
            source,
        })?;
        self.enrollments.insert(Self::key(uuid), value)?;
        Ok(outcome)
    }

    /// Removes one device; true if it was enrolled.
    pub fn remove(&self, uuid: &DeviceUuid) -> Result<bool, StoreError> {
        Ok(self.enrollments.remove(Self::key(uuid))?.is_some())
    }

    /// Up to `limit` UUIDs in key order after `after`, and the cursor for
    /// the next page if there is more.
    pub fn list(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<String>, Option<String>), StoreError> {
        let range = match after {
            Some(a) => self.enrollments.range::<&[u8], _>((
                std::ops::Bound::Excluded(a.as_bytes()),
                std::ops::Bound::Unbounded,
            )),
            None => self.enrollments.iter(),
        };
        let mut uuids = Vec::new();
        for item in range.keys().take(limit.saturating_add(1)) {
            uuids.push(String::from_utf8_lossy(&item?).into_owned());
        }
        let next = if uuids.len() > limit {
            uuids.truncate(limit);
            uuids.last().cloned()
        } else {
            None
        };
        Ok((uuids, next))
    }

    pub fn len(&self) -> usize {
        self.enrollments.len()
    }

    pub fn is_empty(&self) -> bool {
        self.enrollments.is_empty()
    }

    /// Makes every change so far durable. Call before acknowledging.
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.db.flush_async().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uuid(n: u8) -> DeviceUuid {
        DeviceUuid::parse(&format!("00000000-0000-4000-8000-0000000000{n:02x}")).unwrap()
    }

    #[tokio::test]
    async fn enroll_semantics_and_persistence() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Store::open(dir.path()).unwrap();
            assert_eq!(
                s.enroll(&uuid(1), "a", false).unwrap(),
                EnrollOutcome::Created
            );
            assert_eq!(
                s.enroll(&uuid(1), "a", false).unwrap(),
                EnrollOutcome::Unchanged
            );
            assert_eq!(
                s.enroll(&uuid(1), "b", false).unwrap(),
                EnrollOutcome::Conflict
            );
            assert_eq!(s.get(&uuid(1)).unwrap().unwrap().pass_tmp, "a");
            assert_eq!(
                s.enroll(&uuid(1), "b", true).unwrap(),
                EnrollOutcome::Replaced
            );
            assert_eq!(
                s.enroll(&uuid(2), "c", false).unwrap(),
                EnrollOutcome::Created
            );
            assert!(s.remove(&uuid(2)).unwrap());
            assert!(!s.remove(&uuid(2)).unwrap());
            s.flush().await.unwrap();
        }
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(s.get(&uuid(1)).unwrap().unwrap().pass_tmp, "b");
        assert!(s.get(&uuid(2)).unwrap().is_none());
    }

    #[test]
    fn uppercase_and_lowercase_are_one_device() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let lower = DeviceUuid::parse("6f1c2b8e-0b5d-4a8f-9e8c-2b7d8e9f0a1b").unwrap();
        let upper = DeviceUuid::parse("6F1C2B8E-0B5D-4A8F-9E8C-2B7D8E9F0A1B").unwrap();
        s.enroll(&lower, "p", false).unwrap();
        assert_eq!(s.get(&upper).unwrap().unwrap().pass_tmp, "p");
    }

    #[test]
    fn list_pages() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        for n in 0..5 {
            s.enroll(&uuid(n), "p", false).unwrap();
        }
        let (page, next) = s.list(None, 2).unwrap();
        assert_eq!(page.len(), 2);
        let (page2, next2) = s.list(next.as_deref(), 2).unwrap();
        assert_eq!(page2.len(), 2);
        assert_ne!(page[1], page2[0]);
        let (page3, next3) = s.list(next2.as_deref(), 2).unwrap();
        assert_eq!((page3.len(), next3), (1, None));
    }

    #[test]
    fn a_second_open_of_the_same_dir_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let _first = Store::open(dir.path()).unwrap();
        let err = Store::open(dir.path()).err().unwrap().to_string();
        assert!(err.contains("another verifier"), "{err}");
    }
}

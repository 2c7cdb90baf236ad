//! Where the verifier keeps who is who, behind [`EnrollmentStore`], so the
//! worker does not depend on the database: each enrolled device (UUID ->
//! pass_tmp, and once onboarded the public key it logs in with), and each
//! registered AP (its SSIDs and the hash of its credential).
//!
//! Two implementations: [`Store`] (sled, in the data dir, one verifier
//! process) and [`PgStore`] (PostgreSQL, shared by several verifiers on
//! one database). The trait is shaped for the shared one: every method is
//! async, because such a store does I/O on every call; each write decides
//! its outcome in one atomic step, as one SQL statement or transaction;
//! and [`EnrollmentStore::flush`] is the point after which a change
//! survives a crash, so an admin request is answered `ok` only after it
//! (PostgreSQL commits before it acknowledges, so there it has nothing
//! left to do). Both seal pass_tmp at rest under a key file of their own
//! (`at_rest`), bound to the UUID.
//!
//! A store that cannot reach its database says so
//! ([`StoreError::Unavailable`]) rather than guess: the worker answers an
//! AP `unavailable` then, which the device retries, never
//! `unknown_device`.
//!
//! The worker is generic over the trait rather than holding a
//! `dyn EnrollmentStore`: one store is chosen at startup and never
//! changes, async methods in a trait are not object-safe without boxing
//! every call's future, and the platform broker needs the concrete
//! [`Store`] anyway, for its synchronous login check ([`Store::get`]).

mod at_rest;
mod pg_store;
mod sled_store;

pub use pg_store::PgStore;
pub use sled_store::Store;

use protocol::DeviceUuid;
use serde::{Deserialize, Serialize};
use std::future::Future;

/// A failure underneath the store, kept as a boxed error so that no
/// database's own error type shows in this module's signatures.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be opened (or reached).
    #[error(transparent)]
    Open(BoxError),
    /// The database is out of reach (refused, lost, timed out): nothing
    /// is known about the record asked for, and a later call may succeed.
    /// The source says what failed.
    #[error(transparent)]
    Unavailable(BoxError),
    /// The database failed a read or a write.
    #[error("verifier database error: {0}")]
    Backend(#[source] BoxError),
    /// A record is there but cannot be read back.
    #[error("corrupt record for {key}: {source}")]
    Corrupt { key: String, source: BoxError },
}

/// What is stored per device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enrollment {
    pub pass_tmp: String,
    pub enrolled_at_ms: u64,
    /// The Ed25519 public key (hex) the device registered when it was
    /// onboarded, which its later logins are signed with. None before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_key: Option<String>,
}

/// What registering a device's key did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyOutcome {
    /// The device had no key; this one is now its key.
    Registered,
    /// The device already had this key.
    Unchanged,
    /// The device has another key, which stays: a key is replaced only
    /// after an admin revokes it.
    Conflict,
    /// No such device is enrolled.
    NotEnrolled,
}

/// A registered AP: the SSIDs it serves and how it logs in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApRecord {
    pub ssids: Vec<String>,
    /// SHA-256 (hex) of its credential; the credential itself is never
    /// stored.
    pub credential_sha256: String,
    pub registered_ms: u64,
}

impl ApRecord {
    pub fn serves(&self, ssid: &str) -> bool {
        self.ssids.iter().any(|s| s == ssid)
    }
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

/// One page of enrolled UUIDs, in key order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// Canonical (lower-case) UUIDs.
    pub uuids: Vec<String>,
    /// The cursor for the next page (the last UUID of this one), if there
    /// is more.
    pub next: Option<String>,
}

/// The verifier's enrollments. A change is visible to readers at once,
/// and durable once [`EnrollmentStore::flush`] has returned.
pub trait EnrollmentStore: Send + Sync + 'static {
    /// The device's enrollment, if it is enrolled.
    fn get(
        &self,
        uuid: &DeviceUuid,
    ) -> impl Future<Output = Result<Option<Enrollment>, StoreError>> + Send;

    /// Enrolls or re-enrolls one device. The outcome is decided and written
    /// in one atomic step: of concurrent enrolls of one new UUID, exactly
    /// one is [`EnrollOutcome::Created`].
    fn enroll(
        &self,
        uuid: &DeviceUuid,
        pass_tmp: &str,
        replace: bool,
    ) -> impl Future<Output = Result<EnrollOutcome, StoreError>> + Send;

    /// Enrolls many devices in one call, each as `enroll(uuid, pass_tmp,
    /// false)` would and in order (a UUID repeated in `rows` sees its
    /// earlier row). Answers one outcome per row, in order. A SQL store
    /// applies the batch in one transaction.
    fn import(
        &self,
        rows: &[(DeviceUuid, String)],
    ) -> impl Future<Output = Result<Vec<EnrollOutcome>, StoreError>> + Send;

    /// Removes one device; true if it was enrolled.
    fn remove(&self, uuid: &DeviceUuid) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Up to `limit` UUIDs in key order after the cursor `after`.
    fn list(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> impl Future<Output = Result<Page, StoreError>> + Send;

    /// Registers `device_key` as the device's key, first come: a device
    /// with no key gets it, one with another key keeps its own. Decided and
    /// written in one atomic step. Not durable until flushed.
    fn set_device_key(
        &self,
        uuid: &DeviceUuid,
        device_key: &str,
    ) -> impl Future<Output = Result<KeyOutcome, StoreError>> + Send;

    /// Forgets the device's key, so that it must be onboarded again to log
    /// in; true if it had one.
    fn revoke_device_key(
        &self,
        uuid: &DeviceUuid,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// The registered AP `ap_id`, if any.
    fn ap(&self, ap_id: &str) -> impl Future<Output = Result<Option<ApRecord>, StoreError>> + Send;

    /// Registers or re-registers an AP; true if it is new.
    fn put_ap(
        &self,
        ap_id: &str,
        record: &ApRecord,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Removes an AP; true if it was registered.
    fn remove_ap(&self, ap_id: &str) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Every registered AP, in id order.
    fn aps(&self) -> impl Future<Output = Result<Vec<(String, ApRecord)>, StoreError>> + Send;

    /// How many devices are enrolled.
    fn count(&self) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Makes every change so far durable. Call before acknowledging.
    fn flush(&self) -> impl Future<Output = Result<(), StoreError>> + Send;
}

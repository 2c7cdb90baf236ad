//! Where the verifier keeps who is who, behind [`EnrollmentStore`], so the
//! worker does not depend on the database: each enrolled device (UUID ->
//! pass_tmp, the SSIDs it may onboard at, and once onboarded the public key
//! it logs in with, with a replacement key waiting for an admin's approval
//! if the policy is [`Rekey::Admin`]), and each registered AP (its SSIDs
//! and the hash of its credential).
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
mod rekey;
mod sled_store;

pub use pg_store::{PgStore, MIGRATIONS as PG_MIGRATIONS};
pub use rekey::Rekey;
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
    /// The SSIDs the device may onboard at, as the factory gave them,
    /// sorted and without repeats. Empty: any SSID (every enrollment made
    /// before SSIDs were recorded, and an old two-column manifest's).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ssids: Vec<String>,
    /// A new key the device proved pass_tmp for while it had another one,
    /// waiting for an admin's `approve-key` ([`Rekey::Admin`]). The device
    /// keeps logging in with `device_key` until then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_key: Option<String>,
}

impl Enrollment {
    /// Whether the device may onboard at `ssid`: it was enrolled for it,
    /// or for no SSID in particular.
    pub fn allows_ssid(&self, ssid: &str) -> bool {
        self.ssids.is_empty() || self.ssids.iter().any(|s| s == ssid)
    }
}

/// One device to enroll: what [`EnrollmentStore::enroll_at`] takes, and
/// one row of [`EnrollmentStore::import`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrollRow {
    pub uuid: DeviceUuid,
    pub pass_tmp: String,
    /// Where it may onboard; empty: any SSID.
    pub ssids: Vec<String>,
}

/// `ssids` as an enrollment keeps them: sorted, without repeats, so that
/// the same set in another order is no change.
pub fn normalize_ssids(ssids: &[String]) -> Vec<String> {
    let mut out = ssids.to_vec();
    out.sort();
    out.dedup();
    out
}

/// What registering a device's key did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyOutcome {
    /// The device had no key; this one is now its key.
    Registered,
    /// The device already had this key.
    Unchanged,
    /// The device has another key, which stays: with
    /// [`EnrollmentStore::set_device_key`], a key is replaced only after an
    /// admin revokes it.
    Conflict,
    /// The device had another key, and this one replaced it
    /// ([`EnrollmentStore::replace_device_key`]): the old one is refused
    /// from then on.
    Replaced,
    /// The device has another key, which stays until an admin approves
    /// this one, kept as its pending key
    /// ([`EnrollmentStore::set_pending_device_key`]).
    Pending,
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
    /// Already enrolled with the same pass_tmp and the same SSIDs.
    Unchanged,
    /// Enrolled with another pass_tmp or other SSIDs; replaced because
    /// asked to.
    Replaced,
    /// Enrolled with another pass_tmp or other SSIDs; left as it was.
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

    /// Enrolls or re-enrolls one device, for the SSIDs of `row` (empty:
    /// any). The outcome is decided and written in one atomic step: of
    /// concurrent enrolls of one new UUID, exactly one is
    /// [`EnrollOutcome::Created`]. Another pass_tmp or another set of
    /// SSIDs is a change: [`EnrollOutcome::Replaced`] with `replace`, else
    /// [`EnrollOutcome::Conflict`]. A new pass_tmp is a new device as far
    /// as logins go: its key and pending key go with the old enrollment;
    /// new SSIDs alone keep them.
    fn enroll_at(
        &self,
        row: &EnrollRow,
        replace: bool,
    ) -> impl Future<Output = Result<EnrollOutcome, StoreError>> + Send;

    /// [`EnrollmentStore::enroll_at`] for any SSID.
    fn enroll(
        &self,
        uuid: &DeviceUuid,
        pass_tmp: &str,
        replace: bool,
    ) -> impl Future<Output = Result<EnrollOutcome, StoreError>> + Send {
        let row = EnrollRow {
            uuid: uuid.clone(),
            pass_tmp: pass_tmp.to_owned(),
            ssids: Vec::new(),
        };
        async move { self.enroll_at(&row, replace).await }
    }

    /// Enrolls many devices in one call, each as `enroll_at(row, false)`
    /// would and in order (a UUID repeated in `rows` sees its earlier
    /// row). Answers one outcome per row, in order. A SQL store applies
    /// the batch in one transaction.
    fn import(
        &self,
        rows: &[EnrollRow],
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

    /// Sets `device_key` as the device's key whatever it had (a device
    /// that lost its key, at a factory reset, and proved pass_tmp again):
    /// [`KeyOutcome::Registered`] if it had none, [`KeyOutcome::Replaced`]
    /// if it had another, which is refused from then on. A pending key is
    /// dropped. Decided and written in one atomic step. Not durable until
    /// flushed.
    fn replace_device_key(
        &self,
        uuid: &DeviceUuid,
        device_key: &str,
    ) -> impl Future<Output = Result<KeyOutcome, StoreError>> + Send;

    /// [`Rekey::Admin`]'s registration: a device with no key gets this one
    /// at once ([`KeyOutcome::Registered`]); one whose key it already is,
    /// [`KeyOutcome::Unchanged`]; one with another key keeps it, and this
    /// one waits as its pending key ([`KeyOutcome::Pending`]; a later one
    /// takes the place of an earlier pending one) for
    /// [`EnrollmentStore::approve_pending_key`]. Decided and written in
    /// one atomic step. Not durable until flushed.
    fn set_pending_device_key(
        &self,
        uuid: &DeviceUuid,
        device_key: &str,
    ) -> impl Future<Output = Result<KeyOutcome, StoreError>> + Send;

    /// The device's pending key becomes its key, and the old one is
    /// refused from then on; true if it had a pending key. In one atomic
    /// step.
    fn approve_pending_key(
        &self,
        uuid: &DeviceUuid,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Forgets the device's key (and a pending one), so that it must be
    /// onboarded again to log in; true if it had one.
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

//! What the registry needs from its database, as a trait, so that the
//! worker does not know which database it is.
//!
//! Two implementations: [`SledStore`], the embedded database one registry
//! owns (the default), and [`PgStore`], PostgreSQL shared by several
//! registry instances (`registry serve --store postgres://…`). Hence:
//! - every method is async (a SQL store does I/O on every call; sled's
//!   return at once);
//! - changes to assignments go through a [`StoreBatch`], the unit a SQL
//!   transaction implements: staged, then made durable together by
//!   [`StoreBatch::commit`]. The worker stages every change of a group of
//!   queries, or of one drain request, in one batch, so they cost one
//!   commit (one fsync) between them, and it announces or answers nothing
//!   before `commit` returns;
//! - every change names the epoch it replaces and fails with
//!   [`StoreError::Conflict`] if the stored assignment has another: the
//!   check two instances racing on one device need. One registry task
//!   never conflicts with itself, but the check is made on every change;
//! - no database type appears in a signature, and the errors are this
//!   module's own, [`StoreError`]. Key encoding belongs to the
//!   implementation.
//!
//! The worker is generic over the trait rather than holding a `Box<dyn>`:
//! the store is chosen once, when the worker starts, and every call on the
//! hot path is then direct, with no boxed future per query.

mod pg;
mod sled;

pub use self::pg::{PgBatch, PgStore};
pub use self::sled::{RecordCounts, SledBatch, SledStore};

use protocol::registry_admin::{AuditEntry, LastSeen};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::future::Future;

/// A device's gateway. `epoch` goes up by one at every change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    pub gateway_id: String,
    pub epoch: u64,
    pub updated_ms: u64,
    /// The device's own public key (hex), as its last query gave it:
    /// signed into each assignment the registry gives it, the one for a
    /// move included, so that its new gateway admits only a login signed
    /// by it. None: no query has given one yet (a record older than the
    /// field, or walkthrough mode). A move keeps it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_key: Option<String>,
}

/// What is kept of a gateway. Liveness is not: after a restart every
/// gateway is dead until it announces itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayRecord {
    pub address: String,
    pub weight: u32,
    #[serde(default)]
    pub draining: bool,
    /// Registered by an admin, or by the platform for its own in-process
    /// gateways. In secure mode only a registered gateway is believed, and
    /// with this record's address and weight, never its announcement's.
    #[serde(default)]
    pub registered: bool,
    /// SHA-256 (hex) of the credential the gateway's agent logs in with;
    /// None for the platform's in-process gateways, which log in
    /// internally. The credential itself is never stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_sha256: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be opened (sled: another process holds it).
    #[error(transparent)]
    Open(#[from] storage::OpenError),
    /// The database cannot be reached (a shared store down, a lost
    /// connection): the worker answers `unavailable`, and tries again on
    /// the next request.
    #[error("registry database unavailable: {0}")]
    Unavailable(Box<dyn std::error::Error + Send + Sync>),
    /// The database itself failed (I/O, a statement refused).
    #[error("registry database error: {0}")]
    Backend(Box<dyn std::error::Error + Send + Sync>),
    #[error("corrupt record under {key}: {source}")]
    Corrupt {
        key: String,
        source: serde_json::Error,
    },
    /// The device's assignment is not the one the change expected to
    /// replace: someone else changed it first. `current` is what is there.
    #[error(
        "the assignment of {device_id} changed: expected epoch {expected:?}, found {current:?}"
    )]
    Conflict {
        device_id: String,
        expected: Option<u64>,
        current: Option<Assignment>,
    },
}

/// The registry's database: assignments (device -> gateway, epoch), their
/// audit log, gateway records, and where devices were last seen.
pub trait RegistryStore: Send + Sync + 'static {
    /// Its unit of durable change (sled: staged in memory; SQL: a
    /// transaction).
    type Batch: StoreBatch;

    /// Starts a batch of assignment changes.
    fn begin(&self) -> impl Future<Output = Result<Self::Batch, StoreError>> + Send;

    /// The device's committed assignment.
    fn assignment(
        &self,
        device_id: &str,
    ) -> impl Future<Output = Result<Option<Assignment>, StoreError>> + Send;

    /// The committed assignments of those of `device_ids` that have one,
    /// in one read (one statement on PostgreSQL): what a presence report's
    /// ids are checked against, without a round trip per id.
    fn assignments_of(
        &self,
        device_ids: &[String],
    ) -> impl Future<Output = Result<HashMap<String, Assignment>, StoreError>> + Send;

    /// The devices assigned to `gateway_id`, in device id order.
    fn assignments_on(
        &self,
        gateway_id: &str,
    ) -> impl Future<Output = Result<Vec<(String, Assignment)>, StoreError>> + Send;

    /// How many devices each gateway has, by gateway id.
    fn assigned_counts(
        &self,
    ) -> impl Future<Output = Result<BTreeMap<String, u64>, StoreError>> + Send;

    /// The device's changes, oldest first.
    fn history(
        &self,
        device_id: &str,
    ) -> impl Future<Output = Result<Vec<AuditEntry>, StoreError>> + Send;

    /// Every gateway ever recorded, in id order.
    fn gateways(
        &self,
    ) -> impl Future<Output = Result<Vec<(String, GatewayRecord)>, StoreError>> + Send;

    /// Records a gateway. Durable, at the latest, once the next
    /// [`StoreBatch::commit`] or [`RegistryStore::flush`] returns.
    fn put_gateway(
        &self,
        gateway_id: &str,
        record: &GatewayRecord,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Forgets a gateway's record; true if there was one. Its devices'
    /// assignments stay, and fail over when they next ask.
    fn remove_gateway(
        &self,
        gateway_id: &str,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Where the device was last seen connected, or left.
    fn last_seen(
        &self,
        device_id: &str,
    ) -> impl Future<Output = Result<Option<LastSeen>, StoreError>> + Send;

    /// Records where devices were seen. Informational: nothing waits for
    /// it to be durable, and it never causes a flush of its own.
    fn set_last_seen(
        &self,
        seen: &[(&str, LastSeen)],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Makes everything recorded so far durable.
    fn flush(&self) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// Assignment changes made durable together, or not at all. Reads through
/// the batch see what it staged; nobody else sees it before
/// [`StoreBatch::commit`]. Dropped without a commit, it changes nothing.
pub trait StoreBatch: Send {
    /// Reads the assignments of `device_ids` that the batch has not read
    /// yet, in one go where the database can (one statement for a whole
    /// group of queries); later reads of them are then answered from the
    /// batch. Optional: the default reads nothing ahead.
    fn prefetch(
        &mut self,
        device_ids: &[String],
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        let _ = device_ids;
        async { Ok(()) }
    }

    /// The device's assignment as this batch sees it: the one it staged,
    /// else the committed one.
    fn assignment(
        &mut self,
        device_id: &str,
    ) -> impl Future<Output = Result<Option<Assignment>, StoreError>> + Send;

    /// Stages moving the device to `gateway_id`, replacing its assignment
    /// at epoch `expected` (`None`: it has none), with an audit entry
    /// giving `reason`. The new assignment has epoch `expected + 1` (1 for
    /// a new device), so epochs only grow. Fails with
    /// [`StoreError::Conflict`] if the assignment this batch sees has
    /// another epoch.
    fn set(
        &mut self,
        device_id: &str,
        expected: Option<u64>,
        gateway_id: &str,
        reason: &str,
    ) -> impl Future<Output = Result<Assignment, StoreError>> + Send;

    /// Stages `device_key` as the key of the device's assignment as this
    /// batch sees it, at the same epoch and with no audit entry; true if
    /// that changed anything (false too for a device with no assignment).
    /// Its commit checks the epoch as for [`StoreBatch::set`].
    fn set_device_key(
        &mut self,
        device_id: &str,
        device_key: &str,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Makes every staged change durable, with every gateway record put
    /// before it, and returns only then. Fails with
    /// [`StoreError::Conflict`], changing nothing, if another batch
    /// changed one of these devices since this one read it.
    fn commit(self) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// What a batch knows of one device, in either implementation: the epoch
/// committed when the batch first read it (what its commit checks is
/// still there), and the assignment as the batch sees it (the one read, or
/// the last one staged).
struct Seen {
    base: Option<u64>,
    current: Option<Assignment>,
    changed: bool,
}

impl Seen {
    fn read(current: Option<Assignment>) -> Seen {
        Seen {
            base: current.as_ref().map(|a| a.epoch),
            current,
            changed: false,
        }
    }

    /// Stages moving the device to `gateway_id`, replacing its assignment
    /// at epoch `expected` ([`StoreBatch::set`]'s rule): the new
    /// assignment and its audit entry.
    fn stage(
        &mut self,
        device_id: &str,
        expected: Option<u64>,
        gateway_id: &str,
        reason: &str,
    ) -> Result<(Assignment, AuditEntry), StoreError> {
        if self.current.as_ref().map(|a| a.epoch) != expected {
            return Err(StoreError::Conflict {
                device_id: device_id.to_owned(),
                expected,
                current: self.current.clone(),
            });
        }
        let now = protocol::now_ms();
        let assignment = Assignment {
            gateway_id: gateway_id.to_owned(),
            epoch: expected.map_or(1, |e| e + 1),
            updated_ms: now,
            device_key: self.current.as_ref().and_then(|a| a.device_key.clone()),
        };
        let from = self
            .current
            .replace(assignment.clone())
            .map(|a| a.gateway_id);
        self.changed = true;
        let entry = AuditEntry {
            at_ms: now,
            epoch: assignment.epoch,
            from,
            to: gateway_id.to_owned(),
            reason: reason.to_owned(),
        };
        Ok((assignment, entry))
    }

    /// Stages the device's key ([`StoreBatch::set_device_key`]'s rule).
    fn stage_key(&mut self, device_key: &str) -> bool {
        match &mut self.current {
            Some(a) if a.device_key.as_deref() != Some(device_key) => {
                a.device_key = Some(device_key.to_owned());
                self.changed = true;
                true
            }
            _ => false,
        }
    }
}

//! The registry's store on PostgreSQL, shared by several registry
//! instances. Table layout lives here and nowhere else.
//!
//! Tables (migration 1, and 2 for `device_key`):
//! - `registry_assignments`: device id -> gateway id, epoch, updated_ms,
//!   device_key (the device's public key from its last query; NULL until
//!   one came);
//! - `registry_audit`: one row per change, `UNIQUE (device_id, epoch)`,
//!   so that the database itself refuses two assignments of one device at
//!   one epoch, whatever a registry does;
//! - `registry_gateways`: the [`GatewayRecord`]s (not liveness);
//! - `registry_last_seen`: informational, overwritten freely.
//!
//! A batch stages its changes in memory, as sled's does, reading each
//! device once (in one statement for a whole group of queries, through
//! [`StoreBatch::prefetch`]). Its commit is one transaction: it locks the
//! changed devices' rows in device id order (`SELECT … ORDER BY … FOR
//! UPDATE`, so two commits never deadlock), checks that each epoch is the
//! one the batch read (compare), writes the new assignments and their
//! audit rows (set), and commits. A commit that lost a race to another
//! instance changes nothing and fails with [`StoreError::Conflict`]; a new
//! device two instances both allocate is settled by the primary key in
//! the same way. Every statement outside a batch commits on its own, and
//! PostgreSQL's `synchronous_commit` (on by default) makes a commit
//! durable before it returns: "flush before acknowledge" is "commit
//! before acknowledge", and [`RegistryStore::flush`] has nothing left to
//! do.

use super::{Assignment, GatewayRecord, RegistryStore, Seen, StoreBatch, StoreError};
use protocol::registry_admin::{AuditEntry, LastSeen};
use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, HashMap};
use storage::pg::{Migration, PgError, PgPool, Row};

const OWNER: &str = "registry";

/// The registry's schema, oldest first. A released migration is never
/// edited: a change is a new one.
const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        sql: "
        CREATE TABLE registry_assignments (
            device_id TEXT PRIMARY KEY,
            gateway_id TEXT NOT NULL,
            epoch BIGINT NOT NULL CHECK (epoch > 0),
            updated_ms BIGINT NOT NULL
        );
        CREATE INDEX registry_assignments_gateway ON registry_assignments (gateway_id);
        CREATE TABLE registry_audit (
            id BIGSERIAL PRIMARY KEY,
            device_id TEXT NOT NULL,
            epoch BIGINT NOT NULL,
            at_ms BIGINT NOT NULL,
            from_gateway TEXT NULL,
            to_gateway TEXT NOT NULL,
            reason TEXT NOT NULL,
            UNIQUE (device_id, epoch)
        );
        CREATE TABLE registry_gateways (
            gateway_id TEXT PRIMARY KEY,
            address TEXT NOT NULL,
            weight INTEGER NOT NULL,
            draining BOOLEAN NOT NULL DEFAULT false,
            registered BOOLEAN NOT NULL DEFAULT false,
            credential_sha256 TEXT NULL
        );
        CREATE TABLE registry_last_seen (
            device_id TEXT PRIMARY KEY,
            gateway_id TEXT NOT NULL,
            at_ms BIGINT NOT NULL,
            online BOOLEAN NOT NULL
        );
    ",
    },
    Migration {
        version: 2,
        sql: "ALTER TABLE registry_assignments ADD COLUMN device_key TEXT NULL;",
    },
];

/// The registry's PostgreSQL database.
#[derive(Clone, Debug)]
pub struct PgStore {
    pool: PgPool,
}

fn db(e: PgError) -> StoreError {
    if e.is_unavailable() {
        StoreError::Unavailable(Box::new(e))
    } else {
        StoreError::Backend(Box::new(e))
    }
}

/// An epoch as stored (BIGINT); epochs start at 1 and grow by one.
fn to_sql(epoch: u64) -> i64 {
    i64::try_from(epoch).unwrap_or(i64::MAX)
}

fn from_sql(epoch: i64) -> u64 {
    u64::try_from(epoch).unwrap_or(0)
}

fn assignment(row: &Row) -> Assignment {
    Assignment {
        gateway_id: row.get("gateway_id"),
        epoch: from_sql(row.get("epoch")),
        updated_ms: from_sql(row.get("updated_ms")),
        device_key: row.get("device_key"),
    }
}

fn gateway(row: &Row) -> (String, GatewayRecord) {
    let weight: i32 = row.get("weight");
    (
        row.get("gateway_id"),
        GatewayRecord {
            address: row.get("address"),
            weight: u32::try_from(weight).unwrap_or(0),
            draining: row.get("draining"),
            registered: row.get("registered"),
            credential_sha256: row.get("credential_sha256"),
        },
    )
}

impl PgStore {
    /// Connects to `url` and brings the schema up to date (waiting for
    /// another instance's migration, if one is running).
    pub async fn connect(url: &str) -> Result<PgStore, StoreError> {
        let pool = PgPool::connect(OWNER, url).await.map_err(db)?;
        pool.migrate(MIGRATIONS).await.map_err(db)?;
        Ok(PgStore { pool })
    }

    async fn query(
        &self,
        sql: &str,
        params: &[&(dyn storage::pg::ToSql + Sync)],
    ) -> Result<Vec<Row>, StoreError> {
        let client = self.pool.client().await.map_err(db)?;
        client
            .query(sql, params)
            .await
            .map_err(|e| db(self.pool.error(e)))
    }

    async fn execute(
        &self,
        sql: &str,
        params: &[&(dyn storage::pg::ToSql + Sync)],
    ) -> Result<u64, StoreError> {
        let client = self.pool.client().await.map_err(db)?;
        client
            .execute(sql, params)
            .await
            .map_err(|e| db(self.pool.error(e)))
    }
}

impl RegistryStore for PgStore {
    type Batch = PgBatch;

    async fn begin(&self) -> Result<PgBatch, StoreError> {
        Ok(PgBatch {
            store: self.clone(),
            seen: BTreeMap::new(),
            audit: Vec::new(),
        })
    }

    async fn assignment(&self, device_id: &str) -> Result<Option<Assignment>, StoreError> {
        let rows = self
            .query(
                "SELECT gateway_id, epoch, updated_ms, device_key FROM registry_assignments \
                 WHERE device_id = $1",
                &[&device_id],
            )
            .await?;
        Ok(rows.first().map(assignment))
    }

    async fn assignments_of(
        &self,
        device_ids: &[String],
    ) -> Result<HashMap<String, Assignment>, StoreError> {
        if device_ids.is_empty() {
            return Ok(HashMap::new());
        }
        let rows = self
            .query(
                "SELECT device_id, gateway_id, epoch, updated_ms, device_key \
                 FROM registry_assignments WHERE device_id = ANY($1)",
                &[&device_ids],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| (r.get::<_, String>("device_id"), assignment(r)))
            .collect())
    }

    async fn assignments_on(
        &self,
        gateway_id: &str,
    ) -> Result<Vec<(String, Assignment)>, StoreError> {
        let rows = self
            .query(
                "SELECT device_id, gateway_id, epoch, updated_ms, device_key \
                 FROM registry_assignments WHERE gateway_id = $1 ORDER BY device_id",
                &[&gateway_id],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| (r.get("device_id"), assignment(r)))
            .collect())
    }

    async fn assigned_counts(&self) -> Result<BTreeMap<String, u64>, StoreError> {
        let rows = self
            .query(
                "SELECT gateway_id, count(*) AS n FROM registry_assignments GROUP BY gateway_id",
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| (r.get("gateway_id"), from_sql(r.get("n"))))
            .collect())
    }

    async fn history(&self, device_id: &str) -> Result<Vec<AuditEntry>, StoreError> {
        let rows = self
            .query(
                "SELECT at_ms, epoch, from_gateway, to_gateway, reason FROM registry_audit \
                 WHERE device_id = $1 ORDER BY epoch",
                &[&device_id],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| AuditEntry {
                at_ms: from_sql(r.get("at_ms")),
                epoch: from_sql(r.get("epoch")),
                from: r.get("from_gateway"),
                to: r.get("to_gateway"),
                reason: r.get("reason"),
            })
            .collect())
    }

    async fn gateways(&self) -> Result<Vec<(String, GatewayRecord)>, StoreError> {
        let rows = self
            .query(
                "SELECT gateway_id, address, weight, draining, registered, credential_sha256 \
                 FROM registry_gateways ORDER BY gateway_id",
                &[],
            )
            .await?;
        Ok(rows.iter().map(gateway).collect())
    }

    async fn put_gateway(
        &self,
        gateway_id: &str,
        record: &GatewayRecord,
    ) -> Result<(), StoreError> {
        let weight = i32::try_from(record.weight).unwrap_or(i32::MAX);
        self.execute(
            "INSERT INTO registry_gateways \
                 (gateway_id, address, weight, draining, registered, credential_sha256) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (gateway_id) DO UPDATE SET address = EXCLUDED.address, \
                 weight = EXCLUDED.weight, draining = EXCLUDED.draining, \
                 registered = EXCLUDED.registered, credential_sha256 = EXCLUDED.credential_sha256",
            &[
                &gateway_id,
                &record.address,
                &weight,
                &record.draining,
                &record.registered,
                &record.credential_sha256,
            ],
        )
        .await?;
        Ok(())
    }

    async fn remove_gateway(&self, gateway_id: &str) -> Result<bool, StoreError> {
        let n = self
            .execute(
                "DELETE FROM registry_gateways WHERE gateway_id = $1",
                &[&gateway_id],
            )
            .await?;
        Ok(n > 0)
    }

    async fn last_seen(&self, device_id: &str) -> Result<Option<LastSeen>, StoreError> {
        let rows = self
            .query(
                "SELECT gateway_id, at_ms, online FROM registry_last_seen WHERE device_id = $1",
                &[&device_id],
            )
            .await?;
        Ok(rows.first().map(|r| LastSeen {
            gateway_id: r.get("gateway_id"),
            at_ms: from_sql(r.get("at_ms")),
            online: r.get("online"),
        }))
    }

    async fn set_last_seen(&self, seen: &[(&str, LastSeen)]) -> Result<(), StoreError> {
        // One row per device, the last report winning: one statement may
        // not update a row twice.
        let mut last: BTreeMap<&str, &LastSeen> = BTreeMap::new();
        for (device, at) in seen {
            last.insert(device, at);
        }
        if last.is_empty() {
            return Ok(());
        }
        let devices: Vec<&str> = last.keys().copied().collect();
        let gateways: Vec<&str> = last.values().map(|s| s.gateway_id.as_str()).collect();
        let at: Vec<i64> = last.values().map(|s| to_sql(s.at_ms)).collect();
        let online: Vec<bool> = last.values().map(|s| s.online).collect();
        self.execute(
            "INSERT INTO registry_last_seen (device_id, gateway_id, at_ms, online) \
             SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bool[]) \
             ON CONFLICT (device_id) DO UPDATE SET gateway_id = EXCLUDED.gateway_id, \
                 at_ms = EXCLUDED.at_ms, online = EXCLUDED.online",
            &[&devices, &gateways, &at, &online],
        )
        .await?;
        Ok(())
    }

    async fn flush(&self) -> Result<(), StoreError> {
        // Every statement has committed, durably, before it returned.
        Ok(())
    }
}

/// A [`StoreBatch`] on PostgreSQL: changes held in memory, written by one
/// transaction at commit.
pub struct PgBatch {
    store: PgStore,
    seen: BTreeMap<String, Seen>,
    audit: Vec<(String, AuditEntry)>,
}

impl PgBatch {
    async fn seen(&mut self, device_id: &str) -> Result<&mut Seen, StoreError> {
        if !self.seen.contains_key(device_id) {
            let current = self.store.assignment(device_id).await?;
            self.seen.insert(device_id.to_owned(), Seen::read(current));
        }
        self.seen
            .get_mut(device_id)
            .ok_or_else(|| StoreError::Backend("batch lost a device it read".into()))
    }
}

impl StoreBatch for PgBatch {
    async fn prefetch(&mut self, device_ids: &[String]) -> Result<(), StoreError> {
        let unread: Vec<String> = device_ids
            .iter()
            .filter(|d| !self.seen.contains_key(d.as_str()))
            .cloned()
            .collect();
        if unread.is_empty() {
            return Ok(());
        }
        let mut found = self.store.assignments_of(&unread).await?;
        for device in unread {
            if let Entry::Vacant(slot) = self.seen.entry(device) {
                let current = found.remove(slot.key());
                slot.insert(Seen::read(current));
            }
        }
        Ok(())
    }

    async fn assignment(&mut self, device_id: &str) -> Result<Option<Assignment>, StoreError> {
        Ok(self.seen(device_id).await?.current.clone())
    }

    async fn set(
        &mut self,
        device_id: &str,
        expected: Option<u64>,
        gateway_id: &str,
        reason: &str,
    ) -> Result<Assignment, StoreError> {
        let (assignment, entry) = self
            .seen(device_id)
            .await?
            .stage(device_id, expected, gateway_id, reason)?;
        self.audit.push((device_id.to_owned(), entry));
        Ok(assignment)
    }

    async fn set_device_key(
        &mut self,
        device_id: &str,
        device_key: &str,
    ) -> Result<bool, StoreError> {
        Ok(self.seen(device_id).await?.stage_key(device_key))
    }

    async fn commit(self) -> Result<(), StoreError> {
        let changed: Vec<(&String, &Seen)> = self.seen.iter().filter(|(_, s)| s.changed).collect();
        if changed.is_empty() {
            return Ok(());
        }
        let pool = &self.store.pool;
        let err = |e: storage::pg::DriverError| db(pool.error(e));
        let mut client = pool.client().await.map_err(db)?;
        let tx = client.transaction().await.map_err(err)?;

        // Compare: lock the rows in id order, then check every epoch.
        let ids: Vec<&str> = changed.iter().map(|(d, _)| d.as_str()).collect();
        let rows = tx
            .query(
                "SELECT device_id, gateway_id, epoch, updated_ms, device_key \
                 FROM registry_assignments WHERE device_id = ANY($1) ORDER BY device_id FOR UPDATE",
                &[&ids],
            )
            .await
            .map_err(err)?;
        let stored: HashMap<String, Assignment> = rows
            .iter()
            .map(|r| (r.get::<_, String>("device_id"), assignment(r)))
            .collect();
        for (device, seen) in &changed {
            let now = stored.get(device.as_str());
            if now.map(|a| a.epoch) != seen.base {
                return Err(StoreError::Conflict {
                    device_id: (*device).clone(),
                    expected: seen.base,
                    current: now.cloned(),
                });
            }
        }

        // Set: existing devices updated, new ones inserted; a new device
        // another instance inserted meanwhile is a conflict.
        let (mut upd, mut ins) = (Columns::default(), Columns::default());
        for (device, seen) in &changed {
            let Some(a) = &seen.current else { continue };
            let target = if seen.base.is_some() {
                &mut upd
            } else {
                &mut ins
            };
            target.push(device, a);
        }
        if !upd.devices.is_empty() {
            tx.execute(
                "UPDATE registry_assignments AS a SET gateway_id = v.gateway_id, \
                     epoch = v.epoch, updated_ms = v.updated_ms, device_key = v.device_key \
                 FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::text[]) \
                     AS v(device_id, gateway_id, epoch, updated_ms, device_key) \
                 WHERE a.device_id = v.device_id",
                &[
                    &upd.devices,
                    &upd.gateways,
                    &upd.epochs,
                    &upd.updated,
                    &upd.keys,
                ],
            )
            .await
            .map_err(err)?;
        }
        if !ins.devices.is_empty() {
            let inserted = tx
                .query(
                    "INSERT INTO registry_assignments \
                         (device_id, gateway_id, epoch, updated_ms, device_key) \
                     SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], \
                         $5::text[]) \
                     ON CONFLICT (device_id) DO NOTHING RETURNING device_id",
                    &[
                        &ins.devices,
                        &ins.gateways,
                        &ins.epochs,
                        &ins.updated,
                        &ins.keys,
                    ],
                )
                .await
                .map_err(err)?;
            if inserted.len() != ins.devices.len() {
                let won: std::collections::HashSet<String> =
                    inserted.iter().map(|r| r.get(0)).collect();
                let lost = ins
                    .devices
                    .iter()
                    .find(|d| !won.contains(**d))
                    .map(|d| (*d).to_owned())
                    .unwrap_or_default();
                drop(tx);
                let current = self.store.assignment(&lost).await.ok().flatten();
                return Err(StoreError::Conflict {
                    device_id: lost,
                    expected: None,
                    current,
                });
            }
        }

        // The audit rows; (device_id, epoch) is unique.
        let mut audit = AuditColumns::default();
        for (device, entry) in &self.audit {
            audit.push(device, entry);
        }
        tx.execute(
            "INSERT INTO registry_audit (device_id, epoch, at_ms, from_gateway, to_gateway, reason) \
             SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::text[], $5::text[], $6::text[])",
            &[
                &audit.devices,
                &audit.epochs,
                &audit.at,
                &audit.from,
                &audit.to,
                &audit.reasons,
            ],
        )
        .await
        .map_err(err)?;
        tx.commit().await.map_err(err)?;
        Ok(())
    }
}

/// Assignments as columns, for one `unnest` statement.
#[derive(Default)]
struct Columns<'a> {
    devices: Vec<&'a str>,
    gateways: Vec<&'a str>,
    epochs: Vec<i64>,
    updated: Vec<i64>,
    keys: Vec<Option<&'a str>>,
}

impl<'a> Columns<'a> {
    fn push(&mut self, device: &'a str, a: &'a Assignment) {
        self.devices.push(device);
        self.gateways.push(&a.gateway_id);
        self.epochs.push(to_sql(a.epoch));
        self.updated.push(to_sql(a.updated_ms));
        self.keys.push(a.device_key.as_deref());
    }
}

#[derive(Default)]
struct AuditColumns<'a> {
    devices: Vec<&'a str>,
    epochs: Vec<i64>,
    at: Vec<i64>,
    from: Vec<Option<&'a str>>,
    to: Vec<&'a str>,
    reasons: Vec<&'a str>,
}

impl<'a> AuditColumns<'a> {
    fn push(&mut self, device: &'a str, e: &'a AuditEntry) {
        self.devices.push(device);
        self.epochs.push(to_sql(e.epoch));
        self.at.push(to_sql(e.at_ms));
        self.from.push(e.from.as_deref());
        self.to.push(&e.to);
        self.reasons.push(&e.reason);
    }
}

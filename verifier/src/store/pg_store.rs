//! The PostgreSQL implementation of [`EnrollmentStore`], shared by several
//! verifier processes on one database. Table layout lives here and
//! nowhere else.
//!
//! Tables (migration 1, and 2 for the SSIDs and the pending key):
//! - `verifier_enrollments`: the canonical (lower-case) UUID, as
//!   [`DeviceUuid::key`] spells it, -> pass_tmp sealed under the store key
//!   and bound to that UUID (`at_rest`), when it was enrolled, the
//!   device's login key once it has one, the SSIDs it may onboard at
//!   (`TEXT[]`, sorted; empty, as every row migration 2 found, is any
//!   SSID), and a new key waiting for an admin's approval;
//! - `verifier_aps`: AP id -> its SSIDs, its credential's SHA-256 and when
//!   it was registered.
//!
//! Both keys are `COLLATE "C"`, so that [`EnrollmentStore::list`] and
//! [`EnrollmentStore::aps`] page in byte order, as sled's keys do,
//! whatever the database's default collation.
//!
//! Each write decides its outcome atomically, safe with several verifiers
//! on one database:
//! - `enroll`: one transaction, `INSERT … ON CONFLICT DO NOTHING` first
//!   (which waits for a concurrent insert of the same UUID to commit or
//!   abort, so of concurrent enrolls of a new UUID exactly one inserts),
//!   and only if the row was there, `SELECT … FOR UPDATE` to compare the
//!   stored pass_tmp (sealed with a random nonce, so compared opened) and
//!   the `UPDATE` of a replacement under that row lock (new SSIDs with the
//!   same pass_tmp change only the SSIDs, and keep the keys);
//! - `import`: one transaction: the batch's existing rows locked in UUID
//!   order (`SELECT … WHERE uuid = ANY($1) ORDER BY uuid FOR UPDATE`), the
//!   outcomes decided row by row in memory, the new rows inserted in one
//!   `INSERT … SELECT … FROM unnest(…) ON CONFLICT DO NOTHING` (each
//!   row's SSIDs travel as one JSON array, since `unnest` of a
//!   two-dimensional array would flatten it); if another
//!   verifier enrolled one of them meanwhile, the transaction is rolled
//!   back and decided again from what it wrote;
//! - `set_device_key`: `UPDATE … WHERE device_key IS NULL`, first come,
//!   then a read to tell which of the other outcomes it was;
//! - `replace_device_key`, `set_pending_device_key`,
//!   `approve_pending_key`: one transaction each, the row's keys read
//!   `FOR UPDATE`, the outcome decided from them, and the `UPDATE` under
//!   that lock;
//! - the rest are one statement each (`put_ap` an upsert that says
//!   whether it inserted).
//!
//! Every statement commits before it returns, and PostgreSQL's
//! `synchronous_commit` (on by default) makes a commit durable before it
//! is acknowledged: "flush before acknowledge" is "commit before
//! acknowledge", and [`EnrollmentStore::flush`] has nothing left to do.
//!
//! A database out of reach is [`StoreError::Unavailable`], within
//! [`CALL_TIMEOUT`] at most, never a guess; the pool makes new
//! connections once it is back, so the same store works again.

use super::at_rest::StoreKey;
use super::{
    normalize_ssids, ApRecord, BoxError, EnrollOutcome, EnrollRow, Enrollment, EnrollmentStore,
    KeyOutcome, Page, StoreError,
};
use protocol::{now_ms, DeviceUuid};
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::path::Path;
use std::time::Duration;
use storage::pg::{Client, Migration, PgError, PgPool, Row};
use tokio_postgres::types::FromSql;

const OWNER: &str = "verifier";

/// The verifier's schema, oldest first. A released migration is never
/// edited: a change is a new one. Public so that a test can make a
/// database as an older release left it (`MIGRATIONS[..1]`).
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        sql: r#"
        CREATE TABLE verifier_enrollments (
            uuid TEXT COLLATE "C" PRIMARY KEY,
            pass_tmp_sealed TEXT NOT NULL,
            enrolled_at_ms BIGINT NOT NULL,
            device_key TEXT NULL
        );
        CREATE TABLE verifier_aps (
            ap_id TEXT COLLATE "C" PRIMARY KEY,
            ssids TEXT[] NOT NULL,
            credential_sha256 TEXT NOT NULL,
            registered_ms BIGINT NOT NULL
        );
    "#,
    },
    // Where a device may onboard (empty: any SSID, what every enrollment
    // made before meant), and a new key waiting for an admin's approval.
    Migration {
        version: 2,
        sql: r#"
        ALTER TABLE verifier_enrollments
            ADD COLUMN ssids TEXT[] NOT NULL DEFAULT '{}',
            ADD COLUMN pending_key TEXT NULL;
    "#,
    },
];

/// The longest one store call may take, waiting for a connection, a row
/// lock or an answer, before it is answered [`StoreError::Unavailable`].
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// How many times a write decides again after losing a race to another
/// verifier (or being chosen as a deadlock's victim) before it gives up.
const ATTEMPTS: usize = 8;

/// The verifier's PostgreSQL database.
pub struct PgStore {
    pool: PgPool,
    /// What pass_tmps are sealed with in the database.
    key: StoreKey,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore").field("pool", &self.pool).finish()
    }
}

fn db(e: PgError) -> StoreError {
    if unavailable(&e) {
        StoreError::Unavailable(Box::new(e))
    } else {
        StoreError::Backend(Box::new(e))
    }
}

/// Whether `e` is the database out of reach: what [`PgError`] says is,
/// and what the server answers as it goes away or cannot take us (a
/// connection exception, class 08; a shutdown, 57P01 to 57P03, which a
/// pooled connection hears when the server stops; too many connections,
/// 53300), which comes as an answer from the server, not a lost socket.
fn unavailable(e: &PgError) -> bool {
    match e {
        PgError::Query { source, .. } => {
            source.is_closed()
                || source.code().map(|c| c.code()).is_some_and(|code| {
                    code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03" | "53300")
                })
        }
        other => other.is_unavailable(),
    }
}

/// Whether a failed transaction may simply be run again: it was chosen
/// as a deadlock's victim, or lost a serialization race.
fn retryable(e: &PgError) -> bool {
    match e {
        PgError::Query { source, .. } => {
            matches!(source.code().map(|c| c.code()), Some("40P01" | "40001"))
        }
        _ => false,
    }
}

fn corrupt(key: &str, source: impl Into<BoxError>) -> StoreError {
    StoreError::Corrupt {
        key: key.to_owned(),
        source: source.into(),
    }
}

/// A time in ms as stored (BIGINT).
fn to_sql(key: &str, ms: u64) -> Result<i64, StoreError> {
    i64::try_from(ms)
        .map_err(|_| StoreError::Backend(format!("{key}: time {ms} ms is out of range").into()))
}

fn from_sql(key: &str, ms: i64) -> Result<u64, StoreError> {
    u64::try_from(ms).map_err(|_| corrupt(key, format!("negative time {ms} ms")))
}

/// A column of `row`; a value that does not decode is a corrupt record.
fn column<'a, T: FromSql<'a>>(row: &'a Row, key: &str, name: &str) -> Result<T, StoreError> {
    row.try_get(name).map_err(|e| corrupt(key, e))
}

const INSERT_ONE: &str =
    "INSERT INTO verifier_enrollments (uuid, pass_tmp_sealed, enrolled_at_ms, ssids) \
     VALUES ($1, $2, $3, $4) ON CONFLICT (uuid) DO NOTHING";
const LOCK_ONE: &str =
    "SELECT pass_tmp_sealed, ssids FROM verifier_enrollments WHERE uuid = $1 FOR UPDATE";
const REPLACE_ONE: &str = "UPDATE verifier_enrollments \
     SET pass_tmp_sealed = $2, enrolled_at_ms = $3, ssids = $4, \
         device_key = NULL, pending_key = NULL \
     WHERE uuid = $1";
const RESSID_ONE: &str = "UPDATE verifier_enrollments SET ssids = $2 WHERE uuid = $1";
const LOCK_MANY: &str = "SELECT uuid, pass_tmp_sealed, ssids FROM verifier_enrollments \
     WHERE uuid = ANY($1) ORDER BY uuid FOR UPDATE";
const INSERT_MANY: &str =
    "INSERT INTO verifier_enrollments (uuid, pass_tmp_sealed, enrolled_at_ms, ssids) \
     SELECT u, s, a, ARRAY(SELECT jsonb_array_elements_text(j::jsonb)) \
     FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[]) AS t(u, s, a, j) \
     ON CONFLICT (uuid) DO NOTHING";
const LOCK_KEYS: &str = "SELECT device_key, pending_key FROM verifier_enrollments \
     WHERE uuid = $1 FOR UPDATE";
const SET_KEYS: &str =
    "UPDATE verifier_enrollments SET device_key = $2, pending_key = $3 WHERE uuid = $1";

/// A device's keys, as the key operations decide from them.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Keys {
    device_key: Option<String>,
    pending_key: Option<String>,
}

impl PgStore {
    /// Connects to the database at `url`, brings its schema up to date
    /// (waiting for another verifier's migration, if one is running), and
    /// loads the key pass_tmps are sealed with from `key_file`, making one
    /// there (0600) if there is none.
    ///
    /// Every verifier on one database must be given a key file with the
    /// same content: copy the first one's file to the others before they
    /// start. A key that does not open the pass_tmps already stored is
    /// refused here ([`StoreError::Open`]), rather than failing every
    /// lookup later.
    ///
    /// A database out of reach is [`StoreError::Unavailable`]; a bad URL,
    /// a schema newer than this binary's, or a key that cannot be read or
    /// does not match is [`StoreError::Open`].
    pub async fn connect(url: &str, key_file: &Path) -> Result<PgStore, StoreError> {
        let open = |e: PgError| {
            if unavailable(&e) {
                StoreError::Unavailable(Box::new(e))
            } else {
                StoreError::Open(Box::new(e))
            }
        };
        let key = StoreKey::load_or_create(key_file).map_err(|e| StoreError::Open(Box::new(e)))?;
        let pool = PgPool::connect(OWNER, url).await.map_err(open)?;
        pool.migrate(MIGRATIONS).await.map_err(open)?;
        let store = PgStore { pool, key };
        store.check_key(key_file).await?;
        Ok(store)
    }

    /// Checks that the store key opens a pass_tmp already stored, if any.
    async fn check_key(&self, key_file: &Path) -> Result<(), StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT uuid, pass_tmp_sealed FROM verifier_enrollments LIMIT 1",
                &[],
            )
            .await
            .map_err(|e| self.db(e))?;
        let Some(row) = row else { return Ok(()) };
        let uuid: String = column(&row, "", "uuid")?;
        let sealed: String = column(&row, &uuid, "pass_tmp_sealed")?;
        match self.key.open(&uuid, &sealed) {
            Ok(_) => Ok(()),
            Err(_) => Err(StoreError::Open(
                format!(
                    "the store key in {} does not open the pass_tmps in this database: \
                     every verifier on one database needs the same key file",
                    key_file.display()
                )
                .into(),
            )),
        }
    }

    fn db(&self, e: tokio_postgres::Error) -> StoreError {
        db(self.pool.error(e))
    }

    async fn client(&self) -> Result<Client, StoreError> {
        self.pool.client().await.map_err(db)
    }

    /// `call`, or [`StoreError::Unavailable`] if it takes longer than
    /// [`CALL_TIMEOUT`]. A transaction cut short is rolled back.
    async fn bounded<T>(
        &self,
        call: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(CALL_TIMEOUT, call).await {
            Ok(result) => result,
            Err(_) => Err(StoreError::Unavailable(
                format!(
                    "the verifier database did not answer within {} s",
                    CALL_TIMEOUT.as_secs()
                )
                .into(),
            )),
        }
    }

    /// One statement that changes rows, in its own transaction: how many.
    async fn execute(
        &self,
        sql: &str,
        params: &[&(dyn storage::pg::ToSql + Sync)],
    ) -> Result<u64, StoreError> {
        let client = self.client().await?;
        let statement = client.prepare_cached(sql).await.map_err(|e| self.db(e))?;
        client
            .execute(&statement, params)
            .await
            .map_err(|e| self.db(e))
    }

    async fn query(
        &self,
        sql: &str,
        params: &[&(dyn storage::pg::ToSql + Sync)],
    ) -> Result<Vec<Row>, StoreError> {
        let client = self.client().await?;
        let statement = client.prepare_cached(sql).await.map_err(|e| self.db(e))?;
        client
            .query(&statement, params)
            .await
            .map_err(|e| self.db(e))
    }

    fn open(&self, uuid: &str, sealed: &str) -> Result<String, StoreError> {
        self.key.open(uuid, sealed).map_err(|e| corrupt(uuid, e))
    }

    fn enrollment(&self, uuid: &str, row: &Row) -> Result<Enrollment, StoreError> {
        let sealed: String = column(row, uuid, "pass_tmp_sealed")?;
        Ok(Enrollment {
            pass_tmp: self.open(uuid, &sealed)?,
            enrolled_at_ms: from_sql(uuid, column(row, uuid, "enrolled_at_ms")?)?,
            device_key: column(row, uuid, "device_key")?,
            ssids: column(row, uuid, "ssids")?,
            pending_key: column(row, uuid, "pending_key")?,
        })
    }

    fn ap_record(&self, ap_id: &str, row: &Row) -> Result<ApRecord, StoreError> {
        Ok(ApRecord {
            ssids: column(row, ap_id, "ssids")?,
            credential_sha256: column(row, ap_id, "credential_sha256")?,
            registered_ms: from_sql(ap_id, column(row, ap_id, "registered_ms")?)?,
        })
    }

    /// Runs `attempt` (one transaction, which it commits) again while it
    /// asks to (`Ok(None)`: it lost a race and rolled back) or fails in a
    /// way that running it again may cure.
    async fn retrying<T, F, Fut>(&self, what: &str, mut attempt: F) -> Result<T, StoreError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Option<T>, Retry>>,
    {
        for _ in 0..ATTEMPTS {
            match attempt().await {
                Ok(Some(done)) => return Ok(done),
                Ok(None) => continue,
                Err(Retry::Pg(e)) if retryable(&e) => continue,
                Err(Retry::Pg(e)) => return Err(db(e)),
                Err(Retry::Store(e)) => return Err(e),
            }
        }
        Err(StoreError::Backend(
            format!("{what}: lost the race to other verifiers {ATTEMPTS} times; gave up").into(),
        ))
    }

    /// One attempt at `enroll`, in one transaction.
    async fn enroll_once(
        &self,
        (uuid, pass_tmp, ssids): (&str, &str, &[String]),
        sealed: &str,
        enrolled_at: i64,
        replace: bool,
    ) -> Result<Option<EnrollOutcome>, Retry> {
        let pg = |e: tokio_postgres::Error| Retry::Pg(self.pool.error(e));
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        let insert = tx.prepare_cached(INSERT_ONE).await.map_err(pg)?;
        // Waits for a concurrent insert of this UUID to end: of two, one
        // inserts and the other sees its row below.
        if tx
            .execute(&insert, &[&uuid, &sealed, &enrolled_at, &ssids])
            .await
            .map_err(pg)?
            == 1
        {
            tx.commit().await.map_err(pg)?;
            return Ok(Some(EnrollOutcome::Created));
        }
        let lock = tx.prepare_cached(LOCK_ONE).await.map_err(pg)?;
        let Some(row) = tx.query_opt(&lock, &[&uuid]).await.map_err(pg)? else {
            // Removed since the insert found it: decide again.
            return Ok(None);
        };
        let stored: String = column(&row, uuid, "pass_tmp_sealed")?;
        let stored_ssids: Vec<String> = column(&row, uuid, "ssids")?;
        let same_pass = self.open(uuid, &stored)? == pass_tmp;
        let outcome = if same_pass && stored_ssids == ssids {
            EnrollOutcome::Unchanged
        } else if replace && same_pass {
            // New SSIDs alone: the same device, with its keys.
            let update = tx.prepare_cached(RESSID_ONE).await.map_err(pg)?;
            tx.execute(&update, &[&uuid, &ssids]).await.map_err(pg)?;
            EnrollOutcome::Replaced
        } else if replace {
            // A new pass_tmp is a new device as far as logins go: its old
            // key, if any, goes with the old enrollment.
            let update = tx.prepare_cached(REPLACE_ONE).await.map_err(pg)?;
            tx.execute(&update, &[&uuid, &sealed, &enrolled_at, &ssids])
                .await
                .map_err(pg)?;
            EnrollOutcome::Replaced
        } else {
            EnrollOutcome::Conflict
        };
        tx.commit().await.map_err(pg)?;
        Ok(Some(outcome))
    }

    /// One attempt at `import`, in one transaction.
    async fn import_once(
        &self,
        rows: &[(&EnrollRow, Vec<String>)],
        keys: &[&str],
        enrolled_at: i64,
    ) -> Result<Option<Vec<EnrollOutcome>>, Retry> {
        let pg = |e: tokio_postgres::Error| Retry::Pg(self.pool.error(e));
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg)?;
        let lock = tx.prepare_cached(LOCK_MANY).await.map_err(pg)?;
        // Locked in UUID order, so that two imports never deadlock.
        let mut current: HashMap<String, (String, Vec<String>)> = HashMap::new();
        for row in tx.query(&lock, &[&keys]).await.map_err(pg)? {
            let uuid: String = column(&row, "", "uuid")?;
            let sealed: String = column(&row, &uuid, "pass_tmp_sealed")?;
            let ssids: Vec<String> = column(&row, &uuid, "ssids")?;
            let pass_tmp = self.open(&uuid, &sealed)?;
            current.insert(uuid, (pass_tmp, ssids));
        }
        // Each row as `enroll_at(row, false)`, in order: a UUID repeated
        // sees its earlier row.
        let mut created: BTreeMap<&str, (&str, &[String])> = BTreeMap::new();
        let mut outcomes = Vec::with_capacity(rows.len());
        for (row, ssids) in rows {
            let key = row.uuid.key();
            let outcome = match current.get(key) {
                None => {
                    current.insert(key.to_owned(), (row.pass_tmp.clone(), ssids.clone()));
                    created.insert(key, (&row.pass_tmp, ssids));
                    EnrollOutcome::Created
                }
                Some((stored, stored_ssids))
                    if *stored == row.pass_tmp && stored_ssids == ssids =>
                {
                    EnrollOutcome::Unchanged
                }
                Some(_) => EnrollOutcome::Conflict,
            };
            outcomes.push(outcome);
        }
        if !created.is_empty() {
            // In UUID order, as the locks above.
            let uuids: Vec<&str> = created.keys().copied().collect();
            let sealed: Vec<String> = created
                .iter()
                .map(|(uuid, (pass_tmp, _))| self.key.seal(uuid, pass_tmp))
                .collect();
            let ssids = created
                .values()
                .map(|(_, ssids)| serde_json::to_string(ssids))
                .collect::<Result<Vec<String>, _>>()
                .map_err(|e| Retry::Store(StoreError::Backend(Box::new(e))))?;
            let at = vec![enrolled_at; uuids.len()];
            let insert = tx.prepare_cached(INSERT_MANY).await.map_err(pg)?;
            let inserted = tx
                .execute(&insert, &[&uuids, &sealed, &at, &ssids])
                .await
                .map_err(pg)?;
            if inserted != uuids.len() as u64 {
                // Another verifier enrolled one of them since the lock
                // above: roll back, and decide again from what it wrote.
                tx.rollback().await.map_err(pg)?;
                return Ok(None);
            }
        }
        tx.commit().await.map_err(pg)?;
        Ok(Some(outcomes))
    }

    async fn set_device_key_now(
        &self,
        uuid: &str,
        device_key: &str,
    ) -> Result<KeyOutcome, StoreError> {
        for _ in 0..ATTEMPTS {
            let registered = self
                .execute(
                    "UPDATE verifier_enrollments SET device_key = $2 \
                     WHERE uuid = $1 AND device_key IS NULL",
                    &[&uuid, &device_key],
                )
                .await?;
            if registered == 1 {
                return Ok(KeyOutcome::Registered);
            }
            let rows = self
                .query(
                    "SELECT device_key FROM verifier_enrollments WHERE uuid = $1",
                    &[&uuid],
                )
                .await?;
            let Some(row) = rows.first() else {
                return Ok(KeyOutcome::NotEnrolled);
            };
            match column::<Option<String>>(row, uuid, "device_key")? {
                Some(k) if k == device_key => return Ok(KeyOutcome::Unchanged),
                Some(_) => return Ok(KeyOutcome::Conflict),
                // Revoked since the update found a key: try again.
                None => continue,
            }
        }
        Err(StoreError::Backend(
            format!("set_device_key {uuid}: the key changed under it {ATTEMPTS} times; gave up")
                .into(),
        ))
    }
}

impl PgStore {
    /// Locks the device's row, decides from its keys (None: not enrolled)
    /// what to write and answer, and writes it under that lock, in one
    /// transaction.
    async fn update_keys<T>(
        &self,
        what: &str,
        uuid: &str,
        change: impl Fn(Option<Keys>) -> (Option<Keys>, T),
    ) -> Result<T, StoreError> {
        self.retrying(what, || async {
            let pg = |e: tokio_postgres::Error| Retry::Pg(self.pool.error(e));
            let mut client = self.client().await?;
            let tx = client.transaction().await.map_err(pg)?;
            let lock = tx.prepare_cached(LOCK_KEYS).await.map_err(pg)?;
            let keys = match tx.query_opt(&lock, &[&uuid]).await.map_err(pg)? {
                Some(row) => Some(Keys {
                    device_key: column(&row, uuid, "device_key")?,
                    pending_key: column(&row, uuid, "pending_key")?,
                }),
                None => None,
            };
            let (new, answer) = change(keys);
            if let Some(new) = new {
                let set = tx.prepare_cached(SET_KEYS).await.map_err(pg)?;
                tx.execute(&set, &[&uuid, &new.device_key, &new.pending_key])
                    .await
                    .map_err(pg)?;
            }
            tx.commit().await.map_err(pg)?;
            Ok(Some(answer))
        })
        .await
    }
}

/// Why one attempt of a transaction failed: the database (which may be
/// worth another attempt), or the store.
enum Retry {
    Pg(PgError),
    Store(StoreError),
}

impl From<StoreError> for Retry {
    fn from(e: StoreError) -> Self {
        Retry::Store(e)
    }
}

impl EnrollmentStore for PgStore {
    async fn get(&self, uuid: &DeviceUuid) -> Result<Option<Enrollment>, StoreError> {
        self.bounded(async {
            let key = uuid.key();
            let rows = self
                .query(
                    "SELECT pass_tmp_sealed, enrolled_at_ms, device_key, ssids, pending_key \
                     FROM verifier_enrollments WHERE uuid = $1",
                    &[&key],
                )
                .await?;
            rows.first()
                .map(|row| self.enrollment(key, row))
                .transpose()
        })
        .await
    }

    /// One transaction: see the module doc.
    async fn enroll_at(&self, row: &EnrollRow, replace: bool) -> Result<EnrollOutcome, StoreError> {
        let key = row.uuid.key();
        let sealed = self.key.seal(key, &row.pass_tmp);
        let ssids = normalize_ssids(&row.ssids);
        self.bounded(async {
            let enrolled_at = to_sql(key, now_ms())?;
            self.retrying("enroll", || {
                self.enroll_once((key, &row.pass_tmp, &ssids), &sealed, enrolled_at, replace)
            })
            .await
        })
        .await
    }

    /// All rows in one transaction: if it fails, none is enrolled.
    async fn import(&self, rows: &[EnrollRow]) -> Result<Vec<EnrollOutcome>, StoreError> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let rows: Vec<(&EnrollRow, Vec<String>)> = rows
            .iter()
            .map(|row| (row, normalize_ssids(&row.ssids)))
            .collect();
        let mut keys: Vec<&str> = rows.iter().map(|(row, _)| row.uuid.key()).collect();
        keys.sort_unstable();
        keys.dedup();
        self.bounded(async {
            let enrolled_at = to_sql("import", now_ms())?;
            self.retrying("import", || self.import_once(&rows, &keys, enrolled_at))
                .await
        })
        .await
    }

    async fn remove(&self, uuid: &DeviceUuid) -> Result<bool, StoreError> {
        self.bounded(async {
            let removed = self
                .execute(
                    "DELETE FROM verifier_enrollments WHERE uuid = $1",
                    &[&uuid.key()],
                )
                .await?;
            Ok(removed > 0)
        })
        .await
    }

    async fn list(&self, after: Option<&str>, limit: usize) -> Result<Page, StoreError> {
        self.bounded(async {
            let take = i64::try_from(limit.saturating_add(1)).unwrap_or(i64::MAX);
            // Two statements rather than `$1 IS NULL OR uuid > $1`, which
            // a generic plan could not answer from the primary key's index.
            let rows = match after {
                Some(after) => {
                    self.query(
                        "SELECT uuid FROM verifier_enrollments \
                         WHERE uuid > $1 ORDER BY uuid LIMIT $2",
                        &[&after, &take],
                    )
                    .await?
                }
                None => {
                    self.query(
                        "SELECT uuid FROM verifier_enrollments ORDER BY uuid LIMIT $1",
                        &[&take],
                    )
                    .await?
                }
            };
            let mut uuids = rows
                .iter()
                .map(|row| column::<String>(row, "", "uuid"))
                .collect::<Result<Vec<_>, _>>()?;
            let next = if uuids.len() > limit {
                uuids.truncate(limit);
                uuids.last().cloned()
            } else {
                None
            };
            Ok(Page { uuids, next })
        })
        .await
    }

    /// First come: see the module doc.
    async fn set_device_key(
        &self,
        uuid: &DeviceUuid,
        device_key: &str,
    ) -> Result<KeyOutcome, StoreError> {
        self.bounded(self.set_device_key_now(uuid.key(), device_key))
            .await
    }

    /// One transaction: see the module doc.
    async fn replace_device_key(
        &self,
        uuid: &DeviceUuid,
        device_key: &str,
    ) -> Result<KeyOutcome, StoreError> {
        let change = |keys: Option<Keys>| {
            let Some(keys) = keys else {
                return (None, KeyOutcome::NotEnrolled);
            };
            let outcome = match keys.device_key.as_deref() {
                Some(k) if k == device_key && keys.pending_key.is_none() => {
                    return (None, KeyOutcome::Unchanged)
                }
                Some(k) if k == device_key => KeyOutcome::Unchanged,
                Some(_) => KeyOutcome::Replaced,
                None => KeyOutcome::Registered,
            };
            let new = Keys {
                device_key: Some(device_key.to_owned()),
                pending_key: None,
            };
            (Some(new), outcome)
        };
        self.bounded(self.update_keys("replace_device_key", uuid.key(), change))
            .await
    }

    /// One transaction: see the module doc.
    async fn set_pending_device_key(
        &self,
        uuid: &DeviceUuid,
        device_key: &str,
    ) -> Result<KeyOutcome, StoreError> {
        let change = |keys: Option<Keys>| match keys {
            None => (None, KeyOutcome::NotEnrolled),
            Some(k) if k.device_key.as_deref() == Some(device_key) => (None, KeyOutcome::Unchanged),
            Some(Keys {
                device_key: None, ..
            }) => (
                Some(Keys {
                    device_key: Some(device_key.to_owned()),
                    pending_key: None,
                }),
                KeyOutcome::Registered,
            ),
            Some(k) if k.pending_key.as_deref() == Some(device_key) => (None, KeyOutcome::Pending),
            Some(k) => (
                Some(Keys {
                    device_key: k.device_key,
                    pending_key: Some(device_key.to_owned()),
                }),
                KeyOutcome::Pending,
            ),
        };
        self.bounded(self.update_keys("set_pending_device_key", uuid.key(), change))
            .await
    }

    /// One transaction: see the module doc.
    async fn approve_pending_key(&self, uuid: &DeviceUuid) -> Result<bool, StoreError> {
        let change = |keys: Option<Keys>| match keys {
            Some(Keys {
                pending_key: Some(pending),
                ..
            }) => (
                Some(Keys {
                    device_key: Some(pending),
                    pending_key: None,
                }),
                true,
            ),
            _ => (None, false),
        };
        self.bounded(self.update_keys("approve_pending_key", uuid.key(), change))
            .await
    }

    async fn revoke_device_key(&self, uuid: &DeviceUuid) -> Result<bool, StoreError> {
        self.bounded(async {
            let revoked = self
                .execute(
                    "UPDATE verifier_enrollments SET device_key = NULL, pending_key = NULL \
                     WHERE uuid = $1 AND device_key IS NOT NULL",
                    &[&uuid.key()],
                )
                .await?;
            Ok(revoked > 0)
        })
        .await
    }

    async fn ap(&self, ap_id: &str) -> Result<Option<ApRecord>, StoreError> {
        self.bounded(async {
            let rows = self
                .query(
                    "SELECT ssids, credential_sha256, registered_ms \
                     FROM verifier_aps WHERE ap_id = $1",
                    &[&ap_id],
                )
                .await?;
            rows.first()
                .map(|row| self.ap_record(ap_id, row))
                .transpose()
        })
        .await
    }

    async fn put_ap(&self, ap_id: &str, record: &ApRecord) -> Result<bool, StoreError> {
        self.bounded(async {
            let registered = to_sql(ap_id, record.registered_ms)?;
            let rows = self
                .query(
                    "INSERT INTO verifier_aps (ap_id, ssids, credential_sha256, registered_ms) \
                     VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (ap_id) DO UPDATE SET ssids = EXCLUDED.ssids, \
                         credential_sha256 = EXCLUDED.credential_sha256, \
                         registered_ms = EXCLUDED.registered_ms \
                     RETURNING (xmax = 0) AS inserted",
                    &[
                        &ap_id,
                        &record.ssids,
                        &record.credential_sha256,
                        &registered,
                    ],
                )
                .await?;
            match rows.first() {
                Some(row) => column(row, ap_id, "inserted"),
                None => Err(StoreError::Backend(
                    format!("put_ap {ap_id}: the upsert returned no row").into(),
                )),
            }
        })
        .await
    }

    async fn remove_ap(&self, ap_id: &str) -> Result<bool, StoreError> {
        self.bounded(async {
            let removed = self
                .execute("DELETE FROM verifier_aps WHERE ap_id = $1", &[&ap_id])
                .await?;
            Ok(removed > 0)
        })
        .await
    }

    async fn aps(&self) -> Result<Vec<(String, ApRecord)>, StoreError> {
        self.bounded(async {
            let rows = self
                .query(
                    "SELECT ap_id, ssids, credential_sha256, registered_ms \
                     FROM verifier_aps ORDER BY ap_id",
                    &[],
                )
                .await?;
            rows.iter()
                .map(|row| {
                    let id: String = column(row, "", "ap_id")?;
                    let record = self.ap_record(&id, row)?;
                    Ok((id, record))
                })
                .collect()
        })
        .await
    }

    async fn count(&self) -> Result<u64, StoreError> {
        self.bounded(async {
            let rows = self
                .query("SELECT count(*) AS n FROM verifier_enrollments", &[])
                .await?;
            let n: i64 = match rows.first() {
                Some(row) => column(row, "count", "n")?,
                None => 0,
            };
            from_sql("count", n)
        })
        .await
    }

    /// Commit before acknowledge: every call above has committed (and,
    /// with PostgreSQL's default `synchronous_commit = on`, made durable)
    /// its change before it returned, so nothing is pending here.
    async fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

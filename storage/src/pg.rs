//! The replicated store's plumbing: a pool of connections to PostgreSQL,
//! and the schema migrations each worker runs on start.
//!
//! Several instances of a worker share one database, so:
//! - every instance runs the migrations on start, inside one transaction
//!   that first takes a transaction-scoped advisory lock (one for every
//!   owner: they share the `schema_migrations` table). A
//!   second instance starting while the first migrates waits on that lock
//!   (up to [`MIGRATION_LOCK_WAIT`]), then finds the schema current and
//!   does nothing; past the wait it fails with [`PgError::MigrationBusy`],
//!   which says so;
//! - a database whose schema is newer than this binary knows is refused
//!   ([`PgError::SchemaTooNew`]) rather than written with old assumptions;
//! - a failure to reach the database is [`PgError::Unavailable`], which a
//!   worker answers as `unavailable`: it never guesses an answer the store
//!   did not give, and the next request tries again.
//!
//! No TLS to the database (`NoTls`): run PostgreSQL on a trusted network,
//! or behind a local TLS proxy. docs/SCALING.md says so.

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime, Timeouts};
use std::time::Duration;
use tokio_postgres::NoTls;
use tracing::info;

pub use deadpool_postgres::{Object as Client, Transaction};
pub use tokio_postgres::types::ToSql;
pub use tokio_postgres::{Error as DriverError, Row};

/// Connections one worker instance keeps at most.
pub const POOL_SIZE: usize = 16;

/// How long a request waits for a connection, or for one to be made,
/// before it is answered `unavailable`.
pub const CONNECT_WAIT: Duration = Duration::from_secs(3);

/// How long a starting instance waits for another one's migration.
pub const MIGRATION_LOCK_WAIT: Duration = Duration::from_secs(30);

/// A failure of the PostgreSQL store.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    #[error("bad store URL {url}: {reason}")]
    BadUrl { url: String, reason: String },
    /// The database cannot be reached (refused, lost, timed out).
    #[error("the {owner} database is unavailable: {reason}")]
    Unavailable { owner: &'static str, reason: String },
    /// Another instance held the migration lock for too long.
    #[error("the {owner} schema is being migrated by another instance; gave up after {secs} s (start again once it is done)", secs = MIGRATION_LOCK_WAIT.as_secs())]
    MigrationBusy { owner: &'static str },
    /// The database was migrated by a newer binary.
    #[error("the {owner} schema is at version {found}, newer than this binary's {known}: run the newer binary, or restore a matching backup")]
    SchemaTooNew {
        owner: &'static str,
        found: i32,
        known: i32,
    },
    /// A statement failed for another reason (a constraint, a bug).
    #[error("{owner} database error: {source}")]
    Query {
        owner: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },
}

impl PgError {
    /// Whether this is the database being out of reach, rather than a
    /// statement it refused.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, PgError::Unavailable { .. })
    }

    /// Classifies a driver error: a closed or failed connection, or the
    /// server saying it is going away or full (SQLSTATE class 08, 57P01 to
    /// 57P03 — every idle pooled connection gets 57P01 when PostgreSQL
    /// stops —, 53300) is `Unavailable`; anything else the server answered
    /// is `Query`.
    pub fn from_driver(owner: &'static str, e: tokio_postgres::Error) -> PgError {
        let going_away = e.code().is_some_and(|c| {
            let c = c.code();
            c.starts_with("08") || matches!(c, "57P01" | "57P02" | "57P03" | "53300")
        });
        if e.is_closed() || e.as_db_error().is_none() || going_away {
            PgError::Unavailable {
                owner,
                reason: e.to_string(),
            }
        } else {
            PgError::Query { owner, source: e }
        }
    }

    fn from_pool(owner: &'static str, e: deadpool_postgres::PoolError) -> PgError {
        match e {
            deadpool_postgres::PoolError::Backend(e) => PgError::from_driver(owner, e),
            other => PgError::Unavailable {
                owner,
                reason: other.to_string(),
            },
        }
    }
}

/// One schema change: its version (1, 2, … in order) and its SQL.
pub struct Migration {
    pub version: i32,
    pub sql: &'static str,
}

/// A pool of connections to one worker's PostgreSQL database.
#[derive(Clone)]
pub struct PgPool {
    owner: &'static str,
    pool: Pool,
}

impl std::fmt::Debug for PgPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgPool")
            .field("owner", &self.owner)
            .finish()
    }
}

/// Whether `url` names a PostgreSQL store (`postgres://` or
/// `postgresql://`).
pub fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

impl PgPool {
    /// Makes the pool for `url` and checks that the database answers.
    /// Nothing is kept open beyond the first connection.
    pub async fn connect(owner: &'static str, url: &str) -> Result<PgPool, PgError> {
        let config: tokio_postgres::Config = url.parse().map_err(|e| PgError::BadUrl {
            url: redact(url),
            reason: format!("{e}"),
        })?;
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(Runtime::Tokio1)
            .timeouts(Timeouts {
                wait: Some(CONNECT_WAIT),
                create: Some(CONNECT_WAIT),
                recycle: Some(CONNECT_WAIT),
            })
            .build()
            .map_err(|e| PgError::BadUrl {
                url: redact(url),
                reason: e.to_string(),
            })?;
        let pool = PgPool { owner, pool };
        drop(pool.client().await?);
        Ok(pool)
    }

    /// Which worker's database this is.
    pub fn owner(&self) -> &'static str {
        self.owner
    }

    /// A pooled connection, or `Unavailable`.
    pub async fn client(&self) -> Result<Client, PgError> {
        self.pool
            .get()
            .await
            .map_err(|e| PgError::from_pool(self.owner, e))
    }

    /// Classifies a driver error from one of this pool's connections.
    pub fn error(&self, e: tokio_postgres::Error) -> PgError {
        PgError::from_driver(self.owner, e)
    }

    /// Brings the schema to the last of `migrations`, in one transaction
    /// under the schema's advisory lock, recording each version applied.
    /// Returns the versions it applied (empty when already current).
    pub async fn migrate(&self, migrations: &[Migration]) -> Result<Vec<i32>, PgError> {
        let owner = self.owner;
        let known = migrations.iter().map(|m| m.version).max().unwrap_or(0);
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| self.error(e))?;
        tx.batch_execute(&format!(
            "SET LOCAL lock_timeout = '{}ms'",
            MIGRATION_LOCK_WAIT.as_millis()
        ))
        .await
        .map_err(|e| self.error(e))?;
        // One lock for every owner: the verifier's and the registry's
        // migrations share `schema_migrations`, which the first of them
        // creates, and two CREATE TABLE IF NOT EXISTS at once collide.
        let locked = tx
            .execute(
                "SELECT pg_advisory_xact_lock(hashtext('platform-schema'))",
                &[],
            )
            .await;
        if let Err(e) = locked {
            // 55P03: lock_not_available, the lock_timeout above.
            if e.code() == Some(&tokio_postgres::error::SqlState::LOCK_NOT_AVAILABLE) {
                return Err(PgError::MigrationBusy { owner });
            }
            return Err(self.error(e));
        }
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                owner TEXT NOT NULL,
                version INTEGER NOT NULL,
                applied_at TIMESTAMPTZ NOT NULL DEFAULT now(),
                PRIMARY KEY (owner, version)
            )",
        )
        .await
        .map_err(|e| self.error(e))?;
        let row = tx
            .query_one(
                "SELECT COALESCE(MAX(version), 0) FROM schema_migrations WHERE owner = $1",
                &[&owner],
            )
            .await
            .map_err(|e| self.error(e))?;
        let current: i32 = row.get(0);
        if current > known {
            return Err(PgError::SchemaTooNew {
                owner,
                found: current,
                known,
            });
        }
        let mut applied = Vec::new();
        for m in migrations.iter().filter(|m| m.version > current) {
            tx.batch_execute(m.sql).await.map_err(|e| self.error(e))?;
            tx.execute(
                "INSERT INTO schema_migrations (owner, version) VALUES ($1, $2)",
                &[&owner, &m.version],
            )
            .await
            .map_err(|e| self.error(e))?;
            applied.push(m.version);
        }
        tx.commit().await.map_err(|e| self.error(e))?;
        if applied.is_empty() {
            info!(owner, version = current, "store schema current");
        } else {
            info!(owner, ?applied, "store schema migrated");
        }
        Ok(applied)
    }
}

/// `url` with its password, if any, replaced by `***`, for messages.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (auth, host) = match rest.rsplit_once('@') {
        Some(parts) => parts,
        None => return url.to_owned(),
    };
    match auth.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted_from_urls() {
        assert_eq!(
            redact("postgres://app:s3cret@db:5432/platform"),
            "postgres://app:***@db:5432/platform"
        );
        assert_eq!(redact("postgres://db/platform"), "postgres://db/platform");
        assert_eq!(
            redact("postgres://app@db/platform"),
            "postgres://app@db/platform"
        );
        assert!(is_postgres_url("postgresql://x/y"));
        assert!(!is_postgres_url("./data/registry"));
    }

    #[tokio::test]
    async fn a_bad_url_is_named_without_its_password() {
        let err = PgPool::connect("registry", "postgres://u:pw@host:notaport/db")
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("bad store URL"), "{text}");
        assert!(!text.contains("pw@"), "{text}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn owners_and_instances_migrating_one_fresh_database_at_once_all_succeed() {
        if !harness::Postgres::available() {
            assert!(
                std::env::var("PLATFORM_REQUIRE_SERVICES").as_deref() != Ok("1"),
                "PostgreSQL is not installed, and PLATFORM_REQUIRE_SERVICES=1"
            );
            eprintln!("skipped: PostgreSQL not installed");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let pg = tokio::task::block_in_place(|| harness::Postgres::start(dir.path())).unwrap();
        pg.create_db("m").unwrap();
        let url = pg.url("m");
        const A: &[Migration] = &[Migration {
            version: 1,
            sql: "CREATE TABLE a_things (id INT)",
        }];
        const B: &[Migration] = &[
            Migration {
                version: 1,
                sql: "CREATE TABLE b_things (id INT)",
            },
            Migration {
                version: 2,
                sql: "ALTER TABLE b_things ADD COLUMN name TEXT",
            },
        ];
        let run = |owner: &'static str, m: &'static [Migration]| {
            let url = url.clone();
            tokio::spawn(async move { PgPool::connect(owner, &url).await?.migrate(m).await })
        };
        let tasks = vec![run("a", A), run("b", B), run("a", A), run("b", B)];
        let mut applied = Vec::new();
        for t in tasks {
            applied.push(t.await.unwrap().unwrap());
        }
        applied.sort();
        assert_eq!(applied, vec![vec![], vec![], vec![1], vec![1, 2]]);
        let rows = pg
            .psql(
                "m",
                "SELECT owner, version FROM schema_migrations ORDER BY 1, 2",
            )
            .unwrap();
        assert_eq!(rows.trim(), "a|1\nb|1\nb|2");
    }

    #[tokio::test]
    async fn an_unreachable_database_is_unavailable() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let err = PgPool::connect(
            "registry",
            &format!("postgres://u@127.0.0.1:{port}/db?connect_timeout=2"),
        )
        .await
        .unwrap_err();
        assert!(err.is_unavailable(), "{err}");
    }
}

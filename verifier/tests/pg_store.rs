//! The PostgreSQL store against a real PostgreSQL (`harness::Postgres`):
//! the same outcomes as the sled store's, its races settled by the
//! database between two stores, its migrations, and an outage.
//!
//! Two tests, each with a server of its own, run side by side: one runs
//! every case at once, each in its own database, on one server; the
//! other stops and resumes its server under a store. Without PostgreSQL
//! installed both are skipped, unless `PLATFORM_REQUIRE_SERVICES=1` (CI)
//! makes that a failure.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod contract;

use harness::Postgres;
use protocol::DeviceUuid;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tempfile::TempDir;
use verifier::store::{
    ApRecord, EnrollOutcome, EnrollRow, EnrollmentStore, KeyOutcome, Page, PgStore, StoreError,
    PG_MIGRATIONS,
};

/// A PostgreSQL of our own, in a scratch dir.
struct Server {
    pg: Mutex<Postgres>,
    // Dropped after `pg`, so the server stops before its dir goes.
    dir: TempDir,
}

/// Whether PostgreSQL is here; if not, the test is skipped, or fails
/// when services are required.
fn installed() -> bool {
    if Postgres::available() {
        return true;
    }
    if std::env::var("PLATFORM_REQUIRE_SERVICES").as_deref() == Ok("1") {
        panic!("PostgreSQL not installed, and PLATFORM_REQUIRE_SERVICES=1");
    }
    eprintln!("skipped: PostgreSQL not installed");
    false
}

fn start_server() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let pg = Postgres::start(dir.path()).unwrap();
    Server {
        pg: Mutex::new(pg),
        dir,
    }
}

impl Server {
    /// psql, off the runtime's worker (it blocks).
    fn psql(&self, db: &str, sql: &str) -> String {
        tokio::task::block_in_place(|| self.pg.lock().unwrap().psql(db, sql).unwrap())
    }

    /// A new database `db`, its URL, and a key file for it.
    fn db(&self, db: &str) -> (String, PathBuf) {
        tokio::task::block_in_place(|| {
            let pg = self.pg.lock().unwrap();
            pg.create_db(db).unwrap();
            (pg.url(db), self.dir.path().join(format!("{db}.key")))
        })
    }
}

/// A case's own database on the shared server, and one store on it.
struct Fixture {
    server: Arc<Server>,
    name: String,
    url: String,
    key: PathBuf,
    store: PgStore,
}

impl Fixture {
    async fn new(server: &Arc<Server>, name: &str) -> Fixture {
        let (url, key) = server.db(name);
        let store = PgStore::connect(&url, &key).await.unwrap();
        Fixture {
            server: server.clone(),
            name: name.to_owned(),
            url,
            key,
            store,
        }
    }

    /// Another store on the same database, as another verifier would be.
    async fn another(&self) -> PgStore {
        PgStore::connect(&self.url, &self.key).await.unwrap()
    }

    fn psql(&self, sql: &str) -> String {
        self.server.psql(&self.name, sql)
    }
}

fn uuid(n: u32) -> DeviceUuid {
    DeviceUuid::parse(&format!("00000000-0000-4000-8000-{n:012x}")).unwrap()
}

/// Rows for any SSID, as an old two-column manifest's.
fn any_ssid(rows: &[(DeviceUuid, String)]) -> Vec<EnrollRow> {
    rows.iter()
        .map(|(uuid, pass_tmp)| EnrollRow {
            uuid: uuid.clone(),
            pass_tmp: pass_tmp.clone(),
            ssids: Vec::new(),
        })
        .collect()
}

fn ap_record(ssid: &str) -> ApRecord {
    ApRecord {
        ssids: vec![ssid.to_owned()],
        credential_sha256: "00".repeat(32),
        registered_ms: 1,
    }
}

async fn enroll_decides_each_of_the_four_outcomes_and_persists(server: Arc<Server>) {
    let f = Fixture::new(&server, "enroll").await;
    let s = &f.store;
    assert_eq!(
        s.enroll(&uuid(1), "a", false).await.unwrap(),
        EnrollOutcome::Created
    );
    let enrolled_at = s.get(&uuid(1)).await.unwrap().unwrap().enrolled_at_ms;
    assert!(enrolled_at > 0);
    // The same pass_tmp, with or without replace: nothing is written.
    for replace in [false, true] {
        let again = s.enroll(&uuid(1), "a", replace).await.unwrap();
        assert_eq!(again, EnrollOutcome::Unchanged);
    }
    // Another pass_tmp without replace: refused, and the old one stays.
    assert_eq!(
        s.enroll(&uuid(1), "b", false).await.unwrap(),
        EnrollOutcome::Conflict
    );
    let kept = s.get(&uuid(1)).await.unwrap().unwrap();
    assert_eq!(
        (kept.pass_tmp.as_str(), kept.enrolled_at_ms),
        ("a", enrolled_at)
    );
    // With replace: the new one is stored.
    assert_eq!(
        s.enroll(&uuid(1), "b", true).await.unwrap(),
        EnrollOutcome::Replaced
    );
    assert_eq!(s.get(&uuid(1)).await.unwrap().unwrap().pass_tmp, "b");
    assert_eq!(
        s.enroll(&uuid(2), "c", false).await.unwrap(),
        EnrollOutcome::Created
    );
    assert_eq!(s.count().await.unwrap(), 2);
    assert!(s.remove(&uuid(2)).await.unwrap());
    assert!(!s.remove(&uuid(2)).await.unwrap());
    s.flush().await.unwrap();
    assert!(s.get(&uuid(2)).await.unwrap().is_none());

    // Another verifier on the same database, with the same key file.
    let other = f.another().await;
    assert_eq!(other.get(&uuid(1)).await.unwrap().unwrap().pass_tmp, "b");
    assert!(other.get(&uuid(2)).await.unwrap().is_none());
    assert_eq!(other.count().await.unwrap(), 1);
}

async fn uppercase_and_lowercase_are_one_device(server: Arc<Server>) {
    let f = Fixture::new(&server, "case").await;
    let lower = DeviceUuid::parse("6f1c2b8e-0b5d-4a8f-9e8c-2b7d8e9f0a1b").unwrap();
    let upper = DeviceUuid::parse("6F1C2B8E-0B5D-4A8F-9E8C-2B7D8E9F0A1B").unwrap();
    f.store.enroll(&upper, "p", false).await.unwrap();
    assert_eq!(f.store.get(&lower).await.unwrap().unwrap().pass_tmp, "p");
    assert_eq!(
        f.store.enroll(&lower, "p", false).await.unwrap(),
        EnrollOutcome::Unchanged
    );
    assert_eq!(
        f.psql("SELECT uuid FROM verifier_enrollments").trim(),
        lower.key()
    );
}

async fn import_decides_each_row_in_order(server: Arc<Server>) {
    let f = Fixture::new(&server, "import").await;
    let s = &f.store;
    s.enroll(&uuid(1), "old", false).await.unwrap();
    let rows = [
        (uuid(1), "old"),
        (uuid(1), "new"),
        (uuid(2), "a"),
        (uuid(2), "a"),
        (uuid(2), "b"),
    ]
    .map(|(id, p)| (id, p.to_owned()));
    assert_eq!(
        s.import(&any_ssid(&rows)).await.unwrap(),
        [
            EnrollOutcome::Unchanged,
            EnrollOutcome::Conflict,
            EnrollOutcome::Created,
            EnrollOutcome::Unchanged,
            EnrollOutcome::Conflict,
        ]
    );
    assert_eq!(s.get(&uuid(1)).await.unwrap().unwrap().pass_tmp, "old");
    assert_eq!(s.get(&uuid(2)).await.unwrap().unwrap().pass_tmp, "a");
    assert_eq!(s.import(&[]).await.unwrap(), []);
    assert_eq!(s.count().await.unwrap(), 2);
}

async fn a_thousand_row_import_is_one_quick_transaction(server: Arc<Server>) {
    let f = Fixture::new(&server, "import_1000").await;
    let s = &f.store;
    s.enroll(&uuid(7), "other", false).await.unwrap();
    let rows: Vec<_> = (0..1000).map(|n| (uuid(n), format!("p{n}"))).collect();
    let started = Instant::now();
    let outcomes = s.import(&any_ssid(&rows)).await.unwrap();
    let took = started.elapsed();
    assert!(took < Duration::from_secs(3), "1,000 rows took {took:?}");
    let created = outcomes
        .iter()
        .filter(|o| **o == EnrollOutcome::Created)
        .count();
    assert_eq!((created, outcomes[7]), (999, EnrollOutcome::Conflict));
    assert_eq!(s.count().await.unwrap(), 1000);
    assert_eq!(s.get(&uuid(500)).await.unwrap().unwrap().pass_tmp, "p500");
    // The same batch again: every row is as it was.
    let again = s.import(&any_ssid(&rows)).await.unwrap();
    assert_eq!(
        again
            .iter()
            .filter(|o| **o == EnrollOutcome::Unchanged)
            .count(),
        999
    );
    assert_eq!(again[7], EnrollOutcome::Conflict);
}

async fn list_pages_in_key_order_after_the_cursor(server: Arc<Server>) {
    let f = Fixture::new(&server, "list").await;
    let s = &f.store;
    for n in [4, 0, 3, 1, 2] {
        s.enroll(&uuid(n), "p", false).await.unwrap();
    }
    let Page { uuids, next } = s.list(None, 2).await.unwrap();
    assert_eq!(uuids, [uuid(0).key(), uuid(1).key()]);
    assert_eq!(next.as_deref(), Some(uuid(1).key()));
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
    // Exactly a page's worth left: no cursor past it.
    let last = s.list(Some(uuid(2).key()), 2).await.unwrap();
    assert_eq!((last.uuids.len(), last.next), (2, None));
    // A cursor past the end is an empty last page; before the start, all.
    let past = s.list(Some("ffffffff"), 2).await.unwrap();
    assert_eq!((past.uuids.len(), past.next), (0, None));
    let all = s.list(Some("-"), 10).await.unwrap();
    assert_eq!((all.uuids, all.next), (expected, None));
}

async fn a_device_key_is_first_come_until_revoked_and_a_new_pass_tmp_drops_it(server: Arc<Server>) {
    let f = Fixture::new(&server, "keys").await;
    let s = &f.store;
    let key_of = |s: &'static str| Some(s.to_owned());
    assert_eq!(
        s.set_device_key(&uuid(1), "k1").await.unwrap(),
        KeyOutcome::NotEnrolled
    );
    assert!(!s.revoke_device_key(&uuid(1)).await.unwrap());
    s.enroll(&uuid(1), "a", false).await.unwrap();
    assert_eq!(s.get(&uuid(1)).await.unwrap().unwrap().device_key, None);
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
        s.get(&uuid(1)).await.unwrap().unwrap().device_key,
        key_of("k1")
    );
    // Re-enrolling with the same pass_tmp keeps the key...
    assert_eq!(
        s.enroll(&uuid(1), "a", true).await.unwrap(),
        EnrollOutcome::Unchanged
    );
    assert_eq!(
        s.get(&uuid(1)).await.unwrap().unwrap().device_key,
        key_of("k1")
    );
    // ...revoking it makes room for another...
    assert!(s.revoke_device_key(&uuid(1)).await.unwrap());
    assert!(!s.revoke_device_key(&uuid(1)).await.unwrap());
    assert_eq!(
        s.set_device_key(&uuid(1), "k2").await.unwrap(),
        KeyOutcome::Registered
    );
    // ...and a new pass_tmp is a new device, with no key.
    assert_eq!(
        s.enroll(&uuid(1), "b", true).await.unwrap(),
        EnrollOutcome::Replaced
    );
    assert_eq!(s.get(&uuid(1)).await.unwrap().unwrap().device_key, None);
}

async fn aps_are_registered_listed_and_removed_and_persist(server: Arc<Server>) {
    let f = Fixture::new(&server, "aps").await;
    let s = &f.store;
    assert!(s.ap("ap-1").await.unwrap().is_none());
    assert!(s.put_ap("ap-2", &ap_record("b")).await.unwrap());
    assert!(s.put_ap("ap-1", &ap_record("a")).await.unwrap());
    let mut two = ap_record("c");
    two.ssids.push("d".into());
    two.registered_ms = 1_700_000_000_000;
    assert!(!s.put_ap("ap-1", &two).await.unwrap(), "re-registered");
    s.flush().await.unwrap();

    let other = f.another().await;
    let aps = other.aps().await.unwrap();
    let ids: Vec<&str> = aps.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, ["ap-1", "ap-2"]);
    assert_eq!(aps[0].1, two);
    let ap1 = other.ap("ap-1").await.unwrap().unwrap();
    assert_eq!(ap1, two);
    assert!(ap1.serves("c") && ap1.serves("d") && !ap1.serves("a"));
    assert!(other.remove_ap("ap-1").await.unwrap());
    assert!(!other.remove_ap("ap-1").await.unwrap());
    assert!(s.ap("ap-1").await.unwrap().is_none());
    assert_eq!(s.aps().await.unwrap().len(), 1);
}

async fn no_column_holds_a_pass_tmp_in_clear_and_only_its_key_opens_it(server: Arc<Server>) {
    let f = Fixture::new(&server, "sealed").await;
    const MARKER: &str = "correct-horse-battery-staple-42";
    f.store.enroll(&uuid(1), MARKER, false).await.unwrap();
    f.store
        .import(&any_ssid(&[(uuid(2), MARKER.into())]))
        .await
        .unwrap();
    f.store.enroll(&uuid(3), "x", false).await.unwrap();
    f.store.enroll(&uuid(3), MARKER, true).await.unwrap();
    let dump = f.psql("SELECT * FROM verifier_enrollments");
    assert_eq!(dump.lines().count(), 3, "{dump}");
    assert!(!dump.contains(MARKER), "{dump}");
    assert!(!dump.contains(
        &MARKER
            .as_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    ));
    for n in 1..=3 {
        assert_eq!(
            f.store.get(&uuid(n)).await.unwrap().unwrap().pass_tmp,
            MARKER
        );
    }
    // Sealed for its own UUID: moved to another row, it does not open.
    f.psql(&format!(
        "UPDATE verifier_enrollments SET pass_tmp_sealed = \
         (SELECT pass_tmp_sealed FROM verifier_enrollments WHERE uuid = '{}') \
         WHERE uuid = '{}'",
        uuid(1).key(),
        uuid(3).key()
    ));
    let err = f.store.get(&uuid(3)).await.unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
    // Nor is it decided from: an enroll over it is an error, not a guess.
    let err = f.store.enroll(&uuid(3), MARKER, false).await.unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
    let err = f
        .store
        .import(&any_ssid(&[(uuid(3), MARKER.into())]))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");

    // A verifier given another key file is refused at connect.
    let stray = f.server.dir.path().join("stray.key");
    let err = PgStore::connect(&f.url, &stray).await.unwrap_err();
    assert!(matches!(err, StoreError::Open(_)), "{err}");
    assert!(err.to_string().contains("same key file"), "{err}");
}

async fn concurrent_enrolls_of_one_new_uuid_from_two_stores_make_exactly_one_created(
    server: Arc<Server>,
) {
    let f = Fixture::new(&server, "race_enroll").await;
    const ROUNDS: u32 = 40;
    let a = Arc::new(f.another().await);
    let b = Arc::new(f.another().await);
    for replace in [false, true] {
        for round in 0..ROUNDS {
            let id = uuid(round + if replace { ROUNDS } else { 0 });
            let barrier = Arc::new(tokio::sync::Barrier::new(2));
            let run = |store: Arc<PgStore>, pass_tmp: &'static str| {
                let (id, barrier) = (id.clone(), barrier.clone());
                tokio::spawn(async move {
                    barrier.wait().await;
                    (
                        store.enroll(&id, pass_tmp, replace).await.unwrap(),
                        pass_tmp,
                    )
                })
            };
            let (ta, tb) = (run(a.clone(), "pa"), run(b.clone(), "pb"));
            let told = [ta.await.unwrap(), tb.await.unwrap()];
            let created: Vec<_> = told
                .iter()
                .filter(|(o, _)| *o == EnrollOutcome::Created)
                .collect();
            assert_eq!(
                created.len(),
                1,
                "round {round}, replace {replace}: {told:?}"
            );
            let other = if replace {
                EnrollOutcome::Replaced
            } else {
                EnrollOutcome::Conflict
            };
            assert!(
                told.iter().any(|(o, _)| *o == other),
                "round {round}, replace {replace}: {told:?}"
            );
            let stored = f.store.get(&id).await.unwrap().unwrap().pass_tmp;
            let winner = if replace {
                // The replacement went in last.
                told.iter().find(|(o, _)| *o == other).unwrap().1
            } else {
                // Nobody overwrote the one that was created.
                created[0].1
            };
            assert_eq!(stored, winner, "round {round}, replace {replace}");
        }
    }
    assert_eq!(f.store.count().await.unwrap(), u64::from(2 * ROUNDS));
}

async fn concurrent_imports_of_overlapping_batches_agree(server: Arc<Server>) {
    let f = Fixture::new(&server, "race_import").await;
    let a = Arc::new(f.another().await);
    let b = Arc::new(f.another().await);
    // Interleaved batches: each new UUID is created by exactly one of the two.
    let rows = |from: u32, pass: &str| -> Vec<(DeviceUuid, String)> {
        (from..from + 300)
            .map(|n| (uuid(n), pass.to_owned()))
            .collect()
    };
    let (ra, rb) = (rows(0, "p"), rows(150, "p"));
    let barrier = Arc::new(tokio::sync::Barrier::new(2));
    let spawn = |store: Arc<PgStore>, rows: Vec<(DeviceUuid, String)>| {
        let barrier = barrier.clone();
        tokio::spawn(async move {
            barrier.wait().await;
            store.import(&any_ssid(&rows)).await.unwrap()
        })
    };
    let (ta, tb) = (spawn(a, ra), spawn(b, rb));
    let (oa, ob) = (ta.await.unwrap(), tb.await.unwrap());
    let created = oa
        .iter()
        .chain(&ob)
        .filter(|o| **o == EnrollOutcome::Created)
        .count();
    let unchanged = oa
        .iter()
        .chain(&ob)
        .filter(|o| **o == EnrollOutcome::Unchanged)
        .count();
    assert_eq!((created, unchanged), (450, 150));
    assert_eq!(f.store.count().await.unwrap(), 450);
}

async fn concurrent_device_keys_from_two_stores_register_exactly_one(server: Arc<Server>) {
    let f = Fixture::new(&server, "race_keys").await;
    const ROUNDS: u32 = 40;
    let rows: Vec<_> = (0..ROUNDS).map(|n| (uuid(n), "p".to_owned())).collect();
    f.store.import(&any_ssid(&rows)).await.unwrap();
    let a = Arc::new(f.another().await);
    let b = Arc::new(f.another().await);
    for round in 0..ROUNDS {
        let id = uuid(round);
        let barrier = Arc::new(tokio::sync::Barrier::new(2));
        let run = |store: Arc<PgStore>, key: &'static str| {
            let (id, barrier) = (id.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                (store.set_device_key(&id, key).await.unwrap(), key)
            })
        };
        let (ta, tb) = (run(a.clone(), "ka"), run(b.clone(), "kb"));
        let told = [ta.await.unwrap(), tb.await.unwrap()];
        let registered: Vec<_> = told
            .iter()
            .filter(|(o, _)| *o == KeyOutcome::Registered)
            .collect();
        assert_eq!(registered.len(), 1, "round {round}: {told:?}");
        assert!(
            told.iter().any(|(o, _)| *o == KeyOutcome::Conflict),
            "round {round}: {told:?}"
        );
        let stored = f.store.get(&id).await.unwrap().unwrap().device_key;
        assert_eq!(stored.as_deref(), Some(registered[0].1), "round {round}");
    }
}

async fn two_stores_migrating_a_fresh_database_at_once_both_start(server: Arc<Server>) {
    let (url, key) = server.db("migrate");
    let (a, b) = tokio::join!(PgStore::connect(&url, &key), PgStore::connect(&url, &key));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(
        server
            .psql(
                "migrate",
                "SELECT string_agg(version::text, ',' ORDER BY version) \
                 FROM schema_migrations WHERE owner = 'verifier'"
            )
            .trim(),
        "1,2"
    );
    // Each sees the other's writes.
    a.enroll(&uuid(1), "p", false).await.unwrap();
    assert_eq!(
        b.enroll(&uuid(1), "p", false).await.unwrap(),
        EnrollOutcome::Unchanged
    );
    // A third start finds the schema current.
    PgStore::connect(&url, &key).await.unwrap();
    assert_eq!(
        server
            .psql(
                "migrate",
                "SELECT count(*) FROM schema_migrations WHERE owner = 'verifier'"
            )
            .trim(),
        PG_MIGRATIONS.len().to_string()
    );
}

async fn a_schema_newer_than_this_binary_is_refused(server: Arc<Server>) {
    let (url, key) = server.db("newer");
    server.psql(
        "newer",
        "CREATE TABLE schema_migrations (
            owner TEXT NOT NULL,
            version INTEGER NOT NULL,
            applied_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            PRIMARY KEY (owner, version)
        );
        INSERT INTO schema_migrations (owner, version) VALUES ('verifier', 99)",
    );
    let err = PgStore::connect(&url, &key).await.unwrap_err();
    assert!(matches!(err, StoreError::Open(_)), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("newer"), "{text}");
    assert!(text.contains("99"), "{text}");
    // Nothing was created.
    assert_eq!(
        server
            .psql(
                "newer",
                "SELECT count(*) FROM pg_tables WHERE tablename LIKE 'verifier_%'"
            )
            .trim(),
        "0"
    );
}

async fn contract_ssids(server: Arc<Server>) {
    let f = Fixture::new(&server, "contract_ssids").await;
    contract::ssids_are_kept_and_a_change_is_a_conflict_or_a_replacement(&f.store).await;
}

async fn contract_import_ssids(server: Arc<Server>) {
    let f = Fixture::new(&server, "contract_import").await;
    contract::import_carries_ssids(&f.store).await;
}

async fn contract_replaced_key(server: Arc<Server>) {
    let f = Fixture::new(&server, "contract_replace").await;
    contract::a_replaced_key_is_gone(&f.store).await;
}

async fn contract_pending_key(server: Arc<Server>) {
    let f = Fixture::new(&server, "contract_pending").await;
    contract::a_pending_key_waits_for_approval(&f.store).await;
}

async fn contract_concurrent_keys_from_two_stores(server: Arc<Server>) {
    let f = Fixture::new(&server, "contract_concurrent").await;
    let (a, b) = (Arc::new(f.another().await), Arc::new(f.another().await));
    contract::concurrent_key_changes_are_atomic(a, b).await;
}

/// A database as the previous release left it (schema 1, a device with
/// its key) is upgraded by a store that starts on it: the row reads as
/// enrolled for any SSID, with nothing pending, and takes SSIDs and
/// pending keys from then on.
async fn a_database_at_schema_1_upgrades_and_its_rows_read_as_any_ssid(server: Arc<Server>) {
    // A pass_tmp sealed under the key file both databases use.
    let (donor_url, key) = server.db("donor");
    let donor = PgStore::connect(&donor_url, &key).await.unwrap();
    donor.enroll(&uuid(1), "old-pass", false).await.unwrap();
    let sealed = server.psql("donor", "SELECT pass_tmp_sealed FROM verifier_enrollments");
    let sealed = sealed.trim();

    let (url, _) = server.db("schema1");
    let pool = storage::pg::PgPool::connect("verifier", &url)
        .await
        .unwrap();
    assert_eq!(pool.migrate(&PG_MIGRATIONS[..1]).await.unwrap(), [1]);
    server.psql(
        "schema1",
        &format!(
            "INSERT INTO verifier_enrollments (uuid, pass_tmp_sealed, enrolled_at_ms, device_key) \
             VALUES ('{}', '{sealed}', 5, 'k1')",
            uuid(1).key()
        ),
    );
    let columns = "SELECT string_agg(column_name, ',' ORDER BY column_name) \
                   FROM information_schema.columns WHERE table_name = 'verifier_enrollments'";
    assert_eq!(
        server.psql("schema1", columns).trim(),
        "device_key,enrolled_at_ms,pass_tmp_sealed,uuid"
    );

    let s = PgStore::connect(&url, &key).await.unwrap();
    assert_eq!(
        server
            .psql(
                "schema1",
                "SELECT string_agg(version::text, ',' ORDER BY version) \
                 FROM schema_migrations WHERE owner = 'verifier'"
            )
            .trim(),
        "1,2"
    );
    let e = s.get(&uuid(1)).await.unwrap().unwrap();
    assert_eq!((e.pass_tmp.as_str(), e.enrolled_at_ms), ("old-pass", 5));
    assert_eq!(e.device_key.as_deref(), Some("k1"));
    assert!(e.ssids.is_empty() && e.pending_key.is_none(), "{e:?}");
    assert!(e.allows_ssid("home-wifi") && e.allows_ssid("anything"));
    assert_eq!(
        s.enroll(&uuid(1), "old-pass", false).await.unwrap(),
        EnrollOutcome::Unchanged
    );
    // The upgraded row takes SSIDs, keeping its key, and a pending key.
    assert_eq!(
        s.enroll_at(&contract::row(1, "old-pass", &["home-wifi"]), true)
            .await
            .unwrap(),
        EnrollOutcome::Replaced
    );
    assert_eq!(
        s.set_pending_device_key(&uuid(1), "k2").await.unwrap(),
        KeyOutcome::Pending
    );
    let e = s.get(&uuid(1)).await.unwrap().unwrap();
    assert_eq!(e.ssids, ["home-wifi"]);
    assert_eq!(
        (e.device_key.as_deref(), e.pending_key.as_deref()),
        (Some("k1"), Some("k2"))
    );
    assert!(s.approve_pending_key(&uuid(1)).await.unwrap());
}

type Case = fn(Arc<Server>) -> Pin<Box<dyn Future<Output = ()> + Send>>;

macro_rules! cases {
    ($($case:ident),* $(,)?) => {
        [$((stringify!($case), (|server| Box::pin($case(server))) as Case)),*]
    };
}

/// Every case but the outage, at once, each in its own database on one
/// server (which one test starts and stops, so that none is left
/// running); a failing case is named, and does not stop the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_case_on_one_shared_server() {
    if !installed() {
        return;
    }
    let server = Arc::new(start_server());
    let running: Vec<_> = cases![
        enroll_decides_each_of_the_four_outcomes_and_persists,
        uppercase_and_lowercase_are_one_device,
        import_decides_each_row_in_order,
        a_thousand_row_import_is_one_quick_transaction,
        list_pages_in_key_order_after_the_cursor,
        a_device_key_is_first_come_until_revoked_and_a_new_pass_tmp_drops_it,
        aps_are_registered_listed_and_removed_and_persist,
        no_column_holds_a_pass_tmp_in_clear_and_only_its_key_opens_it,
        concurrent_enrolls_of_one_new_uuid_from_two_stores_make_exactly_one_created,
        concurrent_imports_of_overlapping_batches_agree,
        concurrent_device_keys_from_two_stores_register_exactly_one,
        two_stores_migrating_a_fresh_database_at_once_both_start,
        a_schema_newer_than_this_binary_is_refused,
        contract_ssids,
        contract_import_ssids,
        contract_replaced_key,
        contract_pending_key,
        contract_concurrent_keys_from_two_stores,
        a_database_at_schema_1_upgrades_and_its_rows_read_as_any_ssid,
    ]
    .into_iter()
    .map(|(name, case)| (name, tokio::spawn(case(server.clone()))))
    .collect();
    let mut failed = Vec::new();
    let total = running.len();
    for (name, task) in running {
        match task.await {
            Ok(()) => eprintln!("case {name} ... ok"),
            Err(e) => {
                eprintln!("case {name} ... FAILED");
                failed.push((name, e.to_string()));
            }
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {total} cases failed: {failed:#?}",
        failed.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_database_is_unavailable_quickly_and_the_store_recovers() {
    if !installed() {
        return;
    }
    // A server of its own: the others keep theirs running.
    let server = start_server();
    let (url, key) = server.db("outage");
    let s = PgStore::connect(&url, &key).await.unwrap();
    s.enroll(&uuid(1), "p", false).await.unwrap();
    s.put_ap("ap-1", &ap_record("a")).await.unwrap();

    server.pg.lock().unwrap().stop().unwrap();
    let within = Duration::from_secs(5);
    let started = Instant::now();
    let unavailable = |what: &str, r: Result<(), StoreError>| match r {
        Err(StoreError::Unavailable(_)) => {}
        other => panic!("{what}: {other:?}"),
    };
    unavailable("get", s.get(&uuid(1)).await.map(drop));
    unavailable("enroll", s.enroll(&uuid(2), "q", false).await.map(drop));
    unavailable(
        "import",
        s.import(&any_ssid(&[(uuid(3), "r".into())]))
            .await
            .map(drop),
    );
    unavailable("remove", s.remove(&uuid(1)).await.map(drop));
    unavailable("list", s.list(None, 10).await.map(drop));
    unavailable(
        "set_device_key",
        s.set_device_key(&uuid(1), "k").await.map(drop),
    );
    unavailable(
        "revoke_device_key",
        s.revoke_device_key(&uuid(1)).await.map(drop),
    );
    unavailable(
        "replace_device_key",
        s.replace_device_key(&uuid(1), "k").await.map(drop),
    );
    unavailable(
        "set_pending_device_key",
        s.set_pending_device_key(&uuid(1), "k").await.map(drop),
    );
    unavailable(
        "approve_pending_key",
        s.approve_pending_key(&uuid(1)).await.map(drop),
    );
    unavailable("ap", s.ap("ap-1").await.map(drop));
    unavailable("put_ap", s.put_ap("ap-2", &ap_record("b")).await.map(drop));
    unavailable("remove_ap", s.remove_ap("ap-1").await.map(drop));
    unavailable("aps", s.aps().await.map(drop));
    unavailable("count", s.count().await.map(drop));
    let took = started.elapsed();
    assert!(took < within * 15, "15 calls took {took:?}");
    let one = Instant::now();
    unavailable("get", s.get(&uuid(1)).await.map(drop));
    assert!(one.elapsed() < within, "one call took {:?}", one.elapsed());
    assert!(
        matches!(
            PgStore::connect(&url, &key).await,
            Err(StoreError::Unavailable(_))
        ),
        "connect while it is down"
    );

    server.pg.lock().unwrap().resume().unwrap();
    // The same store, without reconnecting by hand: nothing changed.
    assert_eq!(s.get(&uuid(1)).await.unwrap().unwrap().pass_tmp, "p");
    assert_eq!(s.count().await.unwrap(), 1);
    assert!(s.ap("ap-1").await.unwrap().is_some());
    assert_eq!(
        s.enroll(&uuid(2), "q", false).await.unwrap(),
        EnrollOutcome::Created
    );
    assert_eq!(
        s.set_device_key(&uuid(1), "k").await.unwrap(),
        KeyOutcome::Registered
    );
}

//! The registry's PostgreSQL store against a real PostgreSQL (Debian's,
//! started in a scratch directory by `harness::Postgres`): the compare and
//! set two registry instances need, batches as transactions, migrations
//! shared by instances, and a store that goes away and comes back.
//!
//! Without PostgreSQL installed the tests are skipped, unless
//! `PLATFORM_REQUIRE_SERVICES=1` (set by .ci/run), which makes that a
//! failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use harness::Postgres;
use registry::store::{GatewayRecord, PgStore, RegistryStore, StoreBatch, StoreError};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// A PostgreSQL of the test's own, stopped (by its PID) when dropped: a
/// server held in a static would outlive the test process.
struct Server {
    pg: std::sync::Mutex<Postgres>,
    _dir: tempfile::TempDir,
}

fn server() -> Option<Server> {
    if !Postgres::available() {
        assert!(
            std::env::var("PLATFORM_REQUIRE_SERVICES").as_deref() != Ok("1"),
            "PostgreSQL is not installed, and PLATFORM_REQUIRE_SERVICES=1"
        );
        eprintln!("skipped: PostgreSQL not installed");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let pg = Postgres::start(dir.path()).unwrap();
    Some(Server {
        pg: std::sync::Mutex::new(pg),
        _dir: dir,
    })
}

/// A server with a fresh database on it, and the database's URL.
fn fresh_db() -> Option<(Server, String)> {
    static N: AtomicU32 = AtomicU32::new(0);
    let server = server()?;
    let name = format!("registry_{}", N.fetch_add(1, Ordering::Relaxed));
    let url = {
        let pg = server.pg.lock().unwrap();
        pg.create_db(&name).unwrap();
        pg.url(&name)
    };
    Some((server, url))
}

fn gw(address: &str) -> GatewayRecord {
    GatewayRecord {
        address: address.into(),
        weight: 1,
        draining: false,
        registered: false,
        credential_sha256: None,
    }
}

#[tokio::test]
async fn assignments_history_and_gateways_round_trip() {
    let Some((_server, url)) = fresh_db() else {
        return;
    };
    let store = PgStore::connect(&url).await.unwrap();
    store
        .put_gateway("gw-1", &gw("10.0.0.1:1883"))
        .await
        .unwrap();
    store
        .put_gateway("gw-2", &gw("10.0.0.2:1883"))
        .await
        .unwrap();
    let mut batch = store.begin().await.unwrap();
    let a = batch.set("dev-1", None, "gw-1", "policy").await.unwrap();
    assert_eq!(a.epoch, 1);
    // The batch reads what it staged; nobody else sees it before commit.
    assert_eq!(batch.assignment("dev-1").await.unwrap().unwrap().epoch, 1);
    assert!(store.assignment("dev-1").await.unwrap().is_none());
    let b = batch.set("dev-1", Some(1), "gw-2", "remap").await.unwrap();
    assert_eq!(b.epoch, 2);
    batch.commit().await.unwrap();
    let stored = store.assignment("dev-1").await.unwrap().unwrap();
    assert_eq!((stored.gateway_id.as_str(), stored.epoch), ("gw-2", 2));
    let history = store.history("dev-1").await.unwrap();
    let steps: Vec<(u64, Option<&str>, &str, &str)> = history
        .iter()
        .map(|e| (e.epoch, e.from.as_deref(), e.to.as_str(), e.reason.as_str()))
        .collect();
    assert_eq!(
        steps,
        vec![
            (1, None, "gw-1", "policy"),
            (2, Some("gw-1"), "gw-2", "remap")
        ]
    );
    assert_eq!(store.assignments_on("gw-2").await.unwrap().len(), 1);
    assert_eq!(store.assigned_counts().await.unwrap().get("gw-2"), Some(&1));
    let gws = store.gateways().await.unwrap();
    assert_eq!(gws.len(), 2);
    assert_eq!(gws[0].1.address, "10.0.0.1:1883");
    assert!(store.remove_gateway("gw-1").await.unwrap());
    assert!(!store.remove_gateway("gw-1").await.unwrap());
    // A dropped batch leaves nothing.
    let mut dropped = store.begin().await.unwrap();
    dropped.set("dev-9", None, "gw-2", "policy").await.unwrap();
    drop(dropped);
    assert!(store.assignment("dev-9").await.unwrap().is_none());
}

#[tokio::test]
async fn two_instances_never_commit_two_assignments_at_one_epoch() {
    let Some((_server, url)) = fresh_db() else {
        return;
    };
    let a = PgStore::connect(&url).await.unwrap();
    let b = PgStore::connect(&url).await.unwrap();
    // A new device both instances allocate: the primary key settles it.
    let mut ba = a.begin().await.unwrap();
    let mut bb = b.begin().await.unwrap();
    ba.set("dev-1", None, "gw-1", "policy").await.unwrap();
    bb.set("dev-1", None, "gw-2", "policy").await.unwrap();
    ba.commit().await.unwrap();
    match bb.commit().await {
        Err(StoreError::Conflict {
            device_id, current, ..
        }) => {
            assert_eq!(device_id, "dev-1");
            assert_eq!(current.unwrap().gateway_id, "gw-1");
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    // An existing device both move at epoch 1 -> 2: compare and set.
    let mut ba = a.begin().await.unwrap();
    let mut bb = b.begin().await.unwrap();
    ba.prefetch(&["dev-1".to_owned()]).await.unwrap();
    ba.set("dev-1", Some(1), "gw-3", "remap").await.unwrap();
    bb.set("dev-1", Some(1), "gw-4", "remap").await.unwrap();
    bb.commit().await.unwrap();
    assert!(matches!(
        ba.commit().await,
        Err(StoreError::Conflict { .. })
    ));
    let now = a.assignment("dev-1").await.unwrap().unwrap();
    assert_eq!((now.gateway_id.as_str(), now.epoch), ("gw-4", 2));
    // A batch that lost on one device writes none of its others.
    let mut ba = a.begin().await.unwrap();
    ba.set("dev-2", None, "gw-1", "policy").await.unwrap();
    ba.set("dev-1", Some(2), "gw-1", "remap").await.unwrap();
    let mut bb = b.begin().await.unwrap();
    bb.set("dev-1", Some(2), "gw-5", "remap").await.unwrap();
    bb.commit().await.unwrap();
    assert!(matches!(
        ba.commit().await,
        Err(StoreError::Conflict { .. })
    ));
    assert!(a.assignment("dev-2").await.unwrap().is_none());
    // Many concurrent racers on one device: epochs stay a sequence, and
    // the database's own (device, epoch) uniqueness was never needed.
    let mut tasks = Vec::new();
    for i in 0..8 {
        let s = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            let mut won = 0;
            for _ in 0..10 {
                let mut batch = s.begin().await.unwrap();
                let cur = batch.assignment("dev-3").await.unwrap();
                batch
                    .set("dev-3", cur.map(|c| c.epoch), &format!("gw-{i}"), "remap")
                    .await
                    .unwrap();
                if batch.commit().await.is_ok() {
                    won += 1;
                }
            }
            won
        }));
    }
    let mut wins = 0;
    for t in tasks {
        wins += t.await.unwrap();
    }
    let last = a.assignment("dev-3").await.unwrap().unwrap();
    assert_eq!(last.epoch, wins, "one epoch per committed change");
    let epochs: Vec<u64> = a
        .history("dev-3")
        .await
        .unwrap()
        .iter()
        .map(|e| e.epoch)
        .collect();
    assert_eq!(epochs, (1..=wins).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_device_key_is_kept_with_the_assignment_and_through_a_move() {
    let Some((_server, url)) = fresh_db() else {
        return;
    };
    let store = PgStore::connect(&url).await.unwrap();
    let key = "ab".repeat(32);
    let mut batch = store.begin().await.unwrap();
    batch.set("dev-1", None, "gw-1", "policy").await.unwrap();
    assert!(batch.set_device_key("dev-1", &key).await.unwrap());
    assert!(!batch.set_device_key("dev-1", &key).await.unwrap());
    assert!(!batch.set_device_key("nobody", &key).await.unwrap());
    batch.commit().await.unwrap();
    let a = store.assignment("dev-1").await.unwrap().unwrap();
    assert_eq!((a.epoch, a.device_key.as_deref()), (1, Some(key.as_str())));
    // A move keeps the key; a new key changes no epoch and writes no audit.
    let mut batch = store.begin().await.unwrap();
    let moved = batch.set("dev-1", Some(1), "gw-2", "remap").await.unwrap();
    assert_eq!(moved.device_key.as_deref(), Some(key.as_str()));
    batch.commit().await.unwrap();
    let on = store.assignments_on("gw-2").await.unwrap();
    assert_eq!(on[0].1.device_key.as_deref(), Some(key.as_str()));
    let newer = "cd".repeat(32);
    let mut batch = store.begin().await.unwrap();
    assert!(batch.set_device_key("dev-1", &newer).await.unwrap());
    batch.commit().await.unwrap();
    let a = store.assignment("dev-1").await.unwrap().unwrap();
    assert_eq!(
        (a.epoch, a.device_key.as_deref()),
        (2, Some(newer.as_str()))
    );
    assert_eq!(store.history("dev-1").await.unwrap().len(), 2);
    // A key change that lost a race to a move is a conflict.
    let mut late = store.begin().await.unwrap();
    late.assignment("dev-1").await.unwrap();
    let mut first = store.begin().await.unwrap();
    first.set("dev-1", Some(2), "gw-1", "remap").await.unwrap();
    first.commit().await.unwrap();
    assert!(late.set_device_key("dev-1", &key).await.unwrap());
    assert!(matches!(
        late.commit().await,
        Err(StoreError::Conflict { .. })
    ));
}

#[tokio::test]
async fn instances_starting_together_migrate_once_and_a_newer_schema_is_refused() {
    let Some((server, url)) = fresh_db() else {
        return;
    };
    let (a, b, c) = tokio::join!(
        PgStore::connect(&url),
        PgStore::connect(&url),
        PgStore::connect(&url)
    );
    a.unwrap();
    b.unwrap();
    c.unwrap();
    let db = url.rsplit('/').next().unwrap().split('?').next().unwrap();
    {
        let pg = server.pg.lock().unwrap();
        let versions = pg
            .psql(
                db,
                "SELECT count(*) FROM schema_migrations WHERE owner = 'registry'",
            )
            .unwrap();
        // Each migration once, whoever ran it.
        assert_eq!(versions.trim(), "2");
        pg.psql(
            db,
            "INSERT INTO schema_migrations (owner, version) VALUES ('registry', 99)",
        )
        .unwrap();
    }
    let err = PgStore::connect(&url).await.unwrap_err().to_string();
    assert!(err.contains("newer than this binary"), "{err}");
}

#[tokio::test]
async fn a_store_that_goes_away_is_unavailable_and_then_works_again() {
    let Some((server, url)) = fresh_db() else {
        return;
    };
    let store = PgStore::connect(&url).await.unwrap();
    store.put_gateway("gw-1", &gw("a:1")).await.unwrap();
    server.pg.lock().unwrap().stop().unwrap();
    let started = Instant::now();
    let err = store.assignment("dev-1").await.unwrap_err();
    let mut batch = store.begin().await.unwrap();
    let staged = batch.set("dev-1", None, "gw-1", "policy").await;
    server.pg.lock().unwrap().resume().unwrap();
    assert!(
        matches!(err, StoreError::Unavailable(_)),
        "{err:?} is not `unavailable`"
    );
    assert!(staged.is_err(), "nothing staged on a read that failed");
    assert!(started.elapsed() < Duration::from_secs(15));
    // Back: the same store works, without a reconnect by hand.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match store.gateways().await {
            Ok(g) => {
                assert_eq!(g.len(), 1);
                break;
            }
            Err(e) if Instant::now() < deadline => {
                eprintln!("not yet: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("store did not come back: {e}"),
        }
    }
}

/// The batch read a presence report is checked with: among thousands of
/// ids, exactly the assigned ones, with their gateways and epochs.
#[tokio::test]
async fn assignments_of_many_ids_are_read_in_one_go() {
    let Some((_server, url)) = fresh_db() else {
        return;
    };
    let store = PgStore::connect(&url).await.unwrap();
    let mut batch = store.begin().await.unwrap();
    batch.set("dev-1", None, "gw-1", "policy").await.unwrap();
    batch.set("dev-2", None, "gw-2", "policy").await.unwrap();
    batch.set("dev-2", Some(1), "gw-1", "remap").await.unwrap();
    batch.commit().await.unwrap();
    assert!(store.assignments_of(&[]).await.unwrap().is_empty());
    let ids: Vec<String> = (0..5000)
        .map(|i| format!("made-up-{i}"))
        .chain(["dev-1".into(), "dev-2".into(), "dev-1".into()])
        .collect();
    let found = store.assignments_of(&ids).await.unwrap();
    let mut got: Vec<_> = found
        .iter()
        .map(|(d, a)| (d.as_str(), a.gateway_id.as_str(), a.epoch))
        .collect();
    got.sort();
    assert_eq!(got, [("dev-1", "gw-1", 1), ("dev-2", "gw-1", 2)]);
}

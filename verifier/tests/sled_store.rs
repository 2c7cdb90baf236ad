//! The sled store against the [`EnrollmentStore`] contract (`contract/`),
//! the same suite `pg_store.rs` runs against PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod contract;

use std::sync::Arc;
use verifier::store::{EnrollmentStore, Store};

fn open() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("verifier")).unwrap();
    (dir, store)
}

#[tokio::test]
async fn ssids_are_kept_and_a_change_is_a_conflict_or_a_replacement() {
    let (_dir, s) = open();
    contract::ssids_are_kept_and_a_change_is_a_conflict_or_a_replacement(&s).await;
}

#[tokio::test]
async fn import_carries_ssids() {
    let (_dir, s) = open();
    contract::import_carries_ssids(&s).await;
}

#[tokio::test]
async fn a_replaced_key_is_gone() {
    let (_dir, s) = open();
    contract::a_replaced_key_is_gone(&s).await;
}

#[tokio::test]
async fn a_pending_key_waits_for_approval() {
    let (_dir, s) = open();
    contract::a_pending_key_waits_for_approval(&s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_key_changes_are_atomic() {
    let (_dir, s) = open();
    let s = Arc::new(s);
    contract::concurrent_key_changes_are_atomic(s.clone(), s).await;
}

/// What survives a reopen: SSIDs, a replaced key, a pending one.
#[tokio::test]
async fn ssids_and_keys_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("verifier");
    {
        let s = Store::open(&path).unwrap();
        s.enroll_at(&contract::row(1, "p", &["home", "office"]), false)
            .await
            .unwrap();
        s.set_device_key(&contract::uuid(1), "k1").await.unwrap();
        s.set_pending_device_key(&contract::uuid(1), "k2")
            .await
            .unwrap();
        s.flush().await.unwrap();
    }
    let s = Store::open(&path).unwrap();
    let e = s.get(&contract::uuid(1)).unwrap().unwrap();
    assert_eq!(e.ssids, ["home", "office"]);
    assert_eq!(
        (e.device_key.as_deref(), e.pending_key.as_deref()),
        (Some("k1"), Some("k2"))
    );
}

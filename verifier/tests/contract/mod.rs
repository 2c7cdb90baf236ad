//! The [`EnrollmentStore`] contract for what enrollments gained with the
//! SSIDs and the re-keying (issue 24): one suite, run against each
//! backend (`sled_store.rs`, `pg_store.rs`), rather than a copy per
//! backend. Each case takes a fresh store, or two on one database, as two
//! verifiers would be.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use protocol::DeviceUuid;
use std::sync::Arc;
use verifier::store::{EnrollOutcome, EnrollRow, EnrollmentStore, KeyOutcome};

pub fn uuid(n: u32) -> DeviceUuid {
    DeviceUuid::parse(&format!("00000000-0000-4000-8000-{n:012x}")).unwrap()
}

pub fn row(n: u32, pass_tmp: &str, ssids: &[&str]) -> EnrollRow {
    EnrollRow {
        uuid: uuid(n),
        pass_tmp: pass_tmp.to_owned(),
        ssids: ssids.iter().map(|s| (*s).to_owned()).collect(),
    }
}

/// SSIDs are stored as a set; another set, or another pass_tmp, is a
/// change (Conflict, or Replaced when asked); new SSIDs alone keep the
/// device's keys, a new pass_tmp drops them; none is any SSID.
pub async fn ssids_are_kept_and_a_change_is_a_conflict_or_a_replacement<S: EnrollmentStore>(s: &S) {
    let one = uuid(1);
    let created = s.enroll_at(&row(1, "p", &["b", "a", "b"]), false).await;
    assert_eq!(created.unwrap(), EnrollOutcome::Created);
    let e = s.get(&one).await.unwrap().unwrap();
    assert_eq!(e.ssids, ["a", "b"], "sorted, without repeats");
    assert!(e.allows_ssid("a") && e.allows_ssid("b"));
    assert!(!e.allows_ssid("c") && !e.allows_ssid(""));

    let same = s.enroll_at(&row(1, "p", &["a", "b"]), false).await;
    assert_eq!(same.unwrap(), EnrollOutcome::Unchanged, "the same set");
    for other in [&["a"][..], &[], &["a", "b", "c"]] {
        let told = s.enroll_at(&row(1, "p", other), false).await.unwrap();
        assert_eq!(told, EnrollOutcome::Conflict, "{other:?}");
    }
    let any = s.enroll(&one, "p", false).await.unwrap();
    assert_eq!(any, EnrollOutcome::Conflict, "any SSID is another set");
    assert_eq!(s.get(&one).await.unwrap().unwrap().ssids, ["a", "b"]);

    // New SSIDs alone: the same device, which keeps its key.
    let registered = s.set_device_key(&one, "k1").await.unwrap();
    assert_eq!(registered, KeyOutcome::Registered);
    let narrowed = s.enroll_at(&row(1, "p", &["a"]), true).await.unwrap();
    assert_eq!(narrowed, EnrollOutcome::Replaced);
    let e = s.get(&one).await.unwrap().unwrap();
    assert_eq!(
        (e.ssids.as_slice(), e.device_key.as_deref()),
        (&["a".to_string()][..], Some("k1"))
    );
    assert!(!e.allows_ssid("b"));

    // A new pass_tmp: a new device, without the old one's key.
    let renewed = s.enroll_at(&row(1, "q", &["a"]), true).await.unwrap();
    assert_eq!(renewed, EnrollOutcome::Replaced);
    let e = s.get(&one).await.unwrap().unwrap();
    assert_eq!((e.pass_tmp.as_str(), e.device_key), ("q", None));

    // Widened to any SSID.
    assert_eq!(
        s.enroll(&one, "q", true).await.unwrap(),
        EnrollOutcome::Replaced
    );
    let e = s.get(&one).await.unwrap().unwrap();
    assert!(e.ssids.is_empty() && e.allows_ssid("anything"), "{e:?}");
}

/// Import carries each row's SSIDs, and decides a row with other SSIDs
/// as a conflict, in order.
pub async fn import_carries_ssids<S: EnrollmentStore>(s: &S) {
    s.enroll_at(&row(10, "p", &["home"]), false).await.unwrap();
    let rows = [
        row(10, "p", &["home"]),
        row(10, "p", &["office"]),
        row(11, "p", &["x", "y"]),
        row(12, "p", &[]),
        row(11, "p", &["y", "x"]),
        row(11, "p", &["x"]),
        row(12, "p", &["z"]),
    ];
    let outcomes = s.import(&rows).await.unwrap();
    use EnrollOutcome::*;
    assert_eq!(
        outcomes,
        [Unchanged, Conflict, Created, Created, Unchanged, Conflict, Conflict]
    );
    let ssids = |n| async move { s.get(&uuid(n)).await.unwrap().unwrap().ssids };
    assert_eq!(ssids(10).await, ["home"]);
    assert_eq!(ssids(11).await, ["x", "y"]);
    assert!(ssids(12).await.is_empty());
}

/// `replace_device_key` sets the key whatever was there: the old key is
/// gone, a pending one too; `set_device_key` stays first come.
pub async fn a_replaced_key_is_gone<S: EnrollmentStore>(s: &S) {
    let id = uuid(20);
    assert_eq!(
        s.replace_device_key(&id, "k1").await.unwrap(),
        KeyOutcome::NotEnrolled
    );
    s.enroll(&id, "p", false).await.unwrap();
    assert_eq!(
        s.replace_device_key(&id, "k1").await.unwrap(),
        KeyOutcome::Registered
    );
    assert_eq!(
        s.replace_device_key(&id, "k1").await.unwrap(),
        KeyOutcome::Unchanged
    );
    assert_eq!(
        s.set_device_key(&id, "k2").await.unwrap(),
        KeyOutcome::Conflict,
        "first come, as before"
    );
    assert_eq!(
        s.replace_device_key(&id, "k2").await.unwrap(),
        KeyOutcome::Replaced
    );
    let e = s.get(&id).await.unwrap().unwrap();
    assert_eq!(e.device_key.as_deref(), Some("k2"));
    assert_eq!(
        s.set_device_key(&id, "k1").await.unwrap(),
        KeyOutcome::Conflict,
        "the old key is not the device's any more"
    );
    // A pending key goes with a replacement.
    assert_eq!(
        s.set_pending_device_key(&id, "k3").await.unwrap(),
        KeyOutcome::Pending
    );
    assert_eq!(
        s.replace_device_key(&id, "k4").await.unwrap(),
        KeyOutcome::Replaced
    );
    let e = s.get(&id).await.unwrap().unwrap();
    assert_eq!((e.device_key.as_deref(), e.pending_key), (Some("k4"), None));
    assert!(!s.approve_pending_key(&id).await.unwrap());
    s.flush().await.unwrap();
}

/// Under the admin policy a new key waits: the old one stays until an
/// admin approves, then it is gone; a device with no key gets it at once.
pub async fn a_pending_key_waits_for_approval<S: EnrollmentStore>(s: &S) {
    let id = uuid(30);
    assert_eq!(
        s.set_pending_device_key(&id, "k1").await.unwrap(),
        KeyOutcome::NotEnrolled
    );
    assert!(!s.approve_pending_key(&id).await.unwrap(), "not enrolled");
    s.enroll(&id, "p", false).await.unwrap();
    assert_eq!(
        s.set_pending_device_key(&id, "k1").await.unwrap(),
        KeyOutcome::Registered,
        "no key at all: it is the key"
    );
    let e = s.get(&id).await.unwrap().unwrap();
    assert_eq!((e.device_key.as_deref(), e.pending_key), (Some("k1"), None));
    assert_eq!(
        s.set_pending_device_key(&id, "k1").await.unwrap(),
        KeyOutcome::Unchanged
    );
    assert!(
        !s.approve_pending_key(&id).await.unwrap(),
        "nothing pending"
    );

    assert_eq!(
        s.set_pending_device_key(&id, "k2").await.unwrap(),
        KeyOutcome::Pending
    );
    assert_eq!(
        s.set_pending_device_key(&id, "k3").await.unwrap(),
        KeyOutcome::Pending,
        "a later one takes the place of the earlier"
    );
    let e = s.get(&id).await.unwrap().unwrap();
    assert_eq!(
        (e.device_key.as_deref(), e.pending_key.as_deref()),
        (Some("k1"), Some("k3")),
        "the old key stays until approved"
    );
    assert!(s.approve_pending_key(&id).await.unwrap());
    let e = s.get(&id).await.unwrap().unwrap();
    assert_eq!((e.device_key.as_deref(), e.pending_key), (Some("k3"), None));
    assert!(!s.approve_pending_key(&id).await.unwrap(), "approved once");

    // Revoking forgets a pending key too; a new pass_tmp drops both.
    s.set_pending_device_key(&id, "k4").await.unwrap();
    assert!(s.revoke_device_key(&id).await.unwrap());
    let e = s.get(&id).await.unwrap().unwrap();
    assert_eq!((e.device_key, e.pending_key), (None, None));
    s.set_device_key(&id, "k5").await.unwrap();
    s.set_pending_device_key(&id, "k6").await.unwrap();
    s.enroll(&id, "new-pass", true).await.unwrap();
    let e = s.get(&id).await.unwrap().unwrap();
    assert_eq!((e.device_key, e.pending_key), (None, None));
    s.flush().await.unwrap();
}

/// Each key operation decides and writes in one atomic step: of
/// concurrent replacements (or pending registrations) of a keyless
/// device's key, through two stores, exactly one registers, and of
/// concurrent approvals exactly one approves.
pub async fn concurrent_key_changes_are_atomic<S: EnrollmentStore>(a: Arc<S>, b: Arc<S>) {
    const WRITERS: u32 = 8;
    const ROUNDS: u32 = 10;
    for round in 0..ROUNDS {
        for pending in [false, true] {
            let id = uuid(1000 + round * 2 + u32::from(pending));
            a.enroll(&id, "p", false).await.unwrap();
            let tasks: Vec<_> = (0..WRITERS)
                .map(|w| {
                    let s = if w % 2 == 0 { a.clone() } else { b.clone() };
                    let id = id.clone();
                    tokio::spawn(async move {
                        let key = format!("k{w}");
                        let told = if pending {
                            s.set_pending_device_key(&id, &key).await
                        } else {
                            s.replace_device_key(&id, &key).await
                        };
                        (told.unwrap(), key)
                    })
                })
                .collect();
            let mut told = Vec::new();
            for t in tasks {
                told.push(t.await.unwrap());
            }
            let registered: Vec<_> = told
                .iter()
                .filter(|(o, _)| *o == KeyOutcome::Registered)
                .collect();
            assert_eq!(registered.len(), 1, "pending {pending}: {told:?}");
            let others = if pending {
                KeyOutcome::Pending
            } else {
                KeyOutcome::Replaced
            };
            assert!(
                told.iter()
                    .all(|(o, _)| *o == KeyOutcome::Registered || *o == others),
                "pending {pending}: {told:?}"
            );
            let e = a.get(&id).await.unwrap().unwrap();
            if pending {
                // The first one's key stays; one of the others waits.
                assert_eq!(e.device_key.as_deref(), Some(registered[0].1.as_str()));
                let waiting = e.pending_key.clone().unwrap();
                assert!(told.iter().any(|(_, k)| *k == waiting), "{e:?}");
                let approvals: Vec<_> = (0..WRITERS)
                    .map(|w| {
                        let s = if w % 2 == 0 { a.clone() } else { b.clone() };
                        let id = id.clone();
                        tokio::spawn(async move { s.approve_pending_key(&id).await.unwrap() })
                    })
                    .collect();
                let mut approved = 0;
                for t in approvals {
                    approved += u32::from(t.await.unwrap());
                }
                assert_eq!(approved, 1, "one pending key, approved once");
                let e = a.get(&id).await.unwrap().unwrap();
                assert_eq!((e.device_key, e.pending_key), (Some(waiting), None));
            } else {
                let key = e.device_key.unwrap();
                assert!(told.iter().any(|(_, k)| *k == key));
            }
        }
    }
}

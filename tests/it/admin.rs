//! Admin requests to the running verifier, as the CLI makes them.

use harness::WorkspaceBin;
use platform_tests::*;
use protocol::admin::{AdminOk, AdminOp, AdminOutcome, AdminReply};
use protocol::{decode, topics, AdminErrorCode};
use std::path::Path;
use std::process::Command;
use verifier::{ClientError, EnrollmentStore};

#[tokio::test]
async fn enroll_show_remove_and_their_refusals() {
    let p = TestPlatform::start().await;
    let admin = p.admin().await;
    let uuid = new_uuid();
    let enroll = |pass: &str, replace| AdminOp::Enroll {
        uuid: uuid.clone(),
        pass_tmp: pass.into(),
        replace,
        ssids: Vec::new(),
    };

    assert!(matches!(
        admin.request(enroll("a", false)).await.unwrap(),
        AdminOk::Enrolled { created: true, .. }
    ));
    assert!(matches!(
        admin.request(enroll("a", false)).await.unwrap(),
        AdminOk::Enrolled { created: false, .. }
    ));
    match admin.request(enroll("b", false)).await {
        Err(ClientError::Refused(body)) => assert_eq!(body.code, AdminErrorCode::AlreadyEnrolled),
        other => panic!("{other:?}"),
    }
    assert!(admin.request(enroll("b", true)).await.is_ok());
    assert!(matches!(
        admin
            .request(AdminOp::Show { uuid: uuid.clone() })
            .await
            .unwrap(),
        AdminOk::Device { .. }
    ));
    assert!(matches!(
        admin
            .request(AdminOp::Remove { uuid: uuid.clone() })
            .await
            .unwrap(),
        AdminOk::Removed { .. }
    ));
    for op in [
        AdminOp::Show { uuid: uuid.clone() },
        AdminOp::Remove { uuid: uuid.clone() },
    ] {
        match admin.request(op).await {
            Err(ClientError::Refused(body)) => assert_eq!(body.code, AdminErrorCode::NotFound),
            other => panic!("{other:?}"),
        }
    }
    match admin
        .request(AdminOp::Enroll {
            uuid: "not-a-uuid".into(),
            pass_tmp: "x".into(),
            replace: false,
            ssids: Vec::new(),
        })
        .await
    {
        Err(ClientError::Refused(body)) => assert_eq!(body.code, AdminErrorCode::BadRequest),
        other => panic!("{other:?}"),
    }
    admin.close().await;
}

#[tokio::test]
async fn import_reports_added_unchanged_and_rejected_with_reasons() {
    let p = TestPlatform::start().await;
    let admin = p.admin().await;
    let existing = new_uuid();
    admin
        .request(AdminOp::Enroll {
            uuid: existing.clone(),
            pass_tmp: "old".into(),
            replace: false,
            ssids: Vec::new(),
        })
        .await
        .unwrap();

    let mut csv = String::from("uuid,pass_tmp\n");
    let fresh: Vec<String> = (0..1200).map(|_| new_uuid()).collect();
    for u in &fresh {
        csv.push_str(&format!("{u},pt-{u}\n"));
    }
    csv.push_str(&format!("{existing},old\n")); // unchanged
    csv.push_str(&format!("{existing},new\n")); // conflict
    csv.push_str("not-a-uuid,x\n");
    csv.push_str("00000000-0000-4000-8000-000000000001,\n"); // empty pass_tmp
    csv.push_str("four,fields,are,here\n");
    let (rows, early) = verifier::manifest::parse(csv.as_bytes());
    let mut batches = 0;
    let mut report = admin.import(rows, |_, _| batches += 1).await.unwrap();
    report.rejected.extend(early);
    assert_eq!(batches, 3, "1204 rows go in batches of 500");
    assert_eq!(report.added, 1200);
    assert_eq!(report.unchanged, 1);
    let reasons: Vec<_> = report
        .rejected
        .iter()
        .map(|r| (r.line, r.reason.as_str()))
        .collect();
    assert_eq!(report.rejected.len(), 4, "{reasons:?}");
    assert!(
        reasons
            .iter()
            .any(|(l, r)| *l == 1203 && r.contains("already enrolled")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|(l, r)| *l == 1204 && r.contains("uuid")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|(l, r)| *l == 1205 && r.contains("pass_tmp")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|(l, r)| *l == 1206 && r.contains("2 or 3 fields")),
        "{reasons:?}"
    );

    // Every imported device is really there.
    let mut listed = 0;
    let mut after = None;
    loop {
        match admin
            .request(AdminOp::List { after, limit: 1000 })
            .await
            .unwrap()
        {
            AdminOk::List { uuids, next } => {
                listed += uuids.len();
                match next {
                    Some(n) => after = Some(n),
                    None => break,
                }
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(listed, 1201);
    admin.close().await;
}

#[tokio::test]
async fn a_malformed_admin_request_gets_bad_request() {
    let p = TestPlatform::start().await;
    let (bus, mut inbox, _t) = p.client(&[topics::VERIFIER_ADMIN_REPLY.to_string()]).await;
    bus.publish(
        topics::VERIFIER_ADMIN_REQUEST,
        br#"{"request_id":"r-1","op":"explode"}"#.to_vec(),
    )
    .await
    .unwrap();
    let reply: AdminReply = decode(&next_message(&mut inbox, 5).await.payload).unwrap();
    assert_eq!(reply.request_id, "r-1");
    assert!(
        matches!(reply.outcome, AdminOutcome::Error(b) if b.code == AdminErrorCode::BadRequest)
    );
}

// ------------------------------------------------- the CLI, as a process

/// The workspace's `verifier` binary, built once per test run.
static VERIFIER: WorkspaceBin = WorkspaceBin::new("verifier", "verifier", "PLATFORM_VERIFIER_BIN");

/// `verifier --broker ADDR --timeout 10 args…` against `p` (plaintext in
/// walkthrough mode; in secure mode trusting its CA and logged in as its
/// bootstrap admin): (exit code, stdout, stderr).
fn verifier_cli(p: &TestPlatform, args: &[&str]) -> (Option<i32>, String, String) {
    let bin = VERIFIER.path().unwrap_or_else(|e| panic!("{e}"));
    let mut cmd = Command::new(bin);
    cmd.args(["--broker", &p.addr.to_string(), "--timeout", "10"])
        .env_remove("PLATFORM_CAFILE")
        .env_remove("PLATFORM_PLAINTEXT")
        .env_remove("PLATFORM_WALKTHROUGH");
    if p.tls().is_some() {
        let data = p.dir.path();
        let token = protocol::layout::token_file(&protocol::layout::credentials_dir(data), "admin");
        cmd.arg("--cafile")
            .arg(protocol::layout::ca_file(data))
            .arg("--password-file")
            .arg(token);
    } else {
        cmd.arg("--walkthrough");
    }
    let out = tokio::task::block_in_place(|| cmd.args(args).output().unwrap());
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `verifier --json show --uuid U`'s SSIDs, or None if it is not enrolled.
fn shown_ssids(p: &TestPlatform, uuid: &str) -> Option<Vec<String>> {
    let (code, stdout, stderr) = verifier_cli(p, &["--json", "show", "--uuid", uuid]);
    if code != Some(0) {
        assert!(stderr.contains("not enrolled"), "{stderr}");
        return None;
    }
    let shown: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    Some(
        shown
            .get("ssids")
            .and_then(|v| v.as_array())
            .map(|a| a.iter().map(|s| s.as_str().unwrap().to_owned()).collect())
            .unwrap_or_default(),
    )
}

fn write_file(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

/// Issue 24, requirement 2, through the real `verifier` binary: `enroll
/// --ssid` (repeatable, validated, a change of SSIDs refused without
/// --replace), and `import` of a three-column manifest and of an old
/// two-column one, whose devices the summary says may onboard at any SSID.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_enrolls_devices_for_their_ssids_and_imports_both_manifest_shapes() {
    let p = TestPlatform::start().await;
    let one = new_uuid();
    let (code, _, stderr) = verifier_cli(
        &p,
        &[
            "enroll",
            "--uuid",
            &one,
            "--pass-tmp",
            "pt-1",
            "--ssid",
            "office",
            "--ssid",
            "home-wifi",
        ],
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(shown_ssids(&p, &one).unwrap(), ["home-wifi", "office"]);
    let (code, stdout, _) = verifier_cli(&p, &["show", "--uuid", &one]);
    assert_eq!(code, Some(0));
    assert!(
        stdout.contains("may onboard at home-wifi, office"),
        "{stdout}"
    );

    // Other SSIDs are a change: refused (exit 1), then made with --replace.
    let narrower = [
        "enroll",
        "--uuid",
        &one,
        "--pass-tmp",
        "pt-1",
        "--ssid",
        "home-wifi",
    ];
    let (code, _, stderr) = verifier_cli(&p, &narrower);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("already enrolled for other SSIDs"),
        "{stderr}"
    );
    assert_eq!(shown_ssids(&p, &one).unwrap(), ["home-wifi", "office"]);
    let (code, _, stderr) = verifier_cli(&p, &[&narrower[..], &["--replace"]].concat());
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(shown_ssids(&p, &one).unwrap(), ["home-wifi"]);

    // An SSID no AP could serve is a bad command line, and nothing is sent.
    let two = new_uuid();
    for bad in ["a/b", "", &"x".repeat(33)] {
        let (code, _, stderr) = verifier_cli(
            &p,
            &["enroll", "--uuid", &two, "--pass-tmp", "p", "--ssid", bad],
        );
        assert_eq!(code, Some(2), "--ssid {bad:?}: {stderr}");
        assert!(stderr.contains("--ssid"), "{stderr}");
    }
    assert_eq!(shown_ssids(&p, &two), None);

    // A three-column manifest: two devices with SSIDs, one without, one
    // with a bad SSID.
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c, d) = (new_uuid(), new_uuid(), new_uuid(), new_uuid());
    let manifest = format!(
        "uuid,pass_tmp,ssids\n{a},pa,home-wifi\n{b},pb,home-wifi|office\n{c},pc,\n{d},pd,a/b\n"
    );
    let file = write_file(dir.path(), "new.csv", &manifest);
    let (code, stdout, stderr) = verifier_cli(&p, &["import", &file]);
    assert_eq!(code, Some(1), "a row was rejected: {stdout} {stderr}");
    assert!(
        stdout.contains(
            "added 3 (1 without an SSID: they may onboard at any SSID), unchanged 0, rejected 1"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("line 5") && stdout.contains("ssid"),
        "{stdout}"
    );
    assert_eq!(shown_ssids(&p, &a).unwrap(), ["home-wifi"]);
    assert_eq!(shown_ssids(&p, &b).unwrap(), ["home-wifi", "office"]);
    assert!(shown_ssids(&p, &c).unwrap().is_empty());
    assert_eq!(shown_ssids(&p, &d), None);
    // Imported again: unchanged.
    let (code, stdout, _) = verifier_cli(&p, &["import", &file]);
    assert_eq!(code, Some(1));
    assert!(
        stdout.contains("added 0, unchanged 3, rejected 1"),
        "{stdout}"
    );

    // An old two-column manifest still imports: any SSID, and said so.
    let (e, f) = (new_uuid(), new_uuid());
    let file = write_file(
        dir.path(),
        "old.csv",
        &format!("uuid,pass_tmp\n{e},pe\n{f},pf\n"),
    );
    let (code, stdout, stderr) = verifier_cli(&p, &["import", &file]);
    assert_eq!(code, Some(0), "{stdout} {stderr}");
    assert!(
        stdout.contains("added 2 (2 without an SSID: they may onboard at any SSID)"),
        "{stdout}"
    );
    assert!(shown_ssids(&p, &e).unwrap().is_empty());
    let (_, stdout, _) = verifier_cli(&p, &["show", "--uuid", &f]);
    assert!(stdout.contains("may onboard at any SSID"), "{stdout}");
}

/// Issue 24, requirement 10: under `rekey = "admin"` a device that lost
/// its key waits with a pending one; `verifier approve-key`, the real
/// binary against a running secure platform, makes it the login key, and
/// from that moment the platform's login check refuses the old key (it
/// had just let it in: nothing cached it) and admits the new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approve_key_makes_the_pending_key_the_login_and_the_old_one_is_refused_at_once() {
    let mut p =
        TestPlatform::start_config(secure_test_config(), broker::StartOptions::default()).await;
    let uuid = new_uuid();
    p.enroll(&uuid, "pass-tmp-1").await;
    let old = p.device_key(&uuid).await;
    let (code, _, stderr) = verifier_cli(&p, &["approve-key", "--uuid", &uuid]);
    assert_eq!(code, Some(1), "nothing pending: {stderr}");
    assert!(stderr.contains("no key waiting for approval"), "{stderr}");

    // The device onboarded again with a new key while the policy holds it
    // for an admin: pending, as the proof path stores it.
    let new = protocol::crypto::DeviceKey::generate();
    p.stop().await;
    {
        let store = verifier::Store::open(&p.dir.path().join("verifier")).unwrap();
        let told = store
            .set_pending_device_key(
                &protocol::DeviceUuid::parse(&uuid).unwrap(),
                &new.public_hex(),
            )
            .await
            .unwrap();
        assert_eq!(told, verifier::store::KeyOutcome::Pending);
        store.flush().await.unwrap();
    }
    p.restart().await;

    let login = |key: &protocol::crypto::DeviceKey| {
        let token = device_token(key, &uuid);
        let p = &p;
        let uuid = &uuid;
        async move {
            Session::open(p, uuid, uuid, &token, &[])
                .await
                .ready
                .clone()
        }
    };
    // Until approved, the old key logs in and the new one does not.
    login(&old).await.unwrap();
    assert!(login(&new)
        .await
        .is_err_and(|e| e.contains("BadUserNamePassword")));
    let (code, stdout, _) = verifier_cli(&p, &["show", "--uuid", &uuid]);
    assert_eq!(code, Some(0));
    assert!(
        stdout.contains(&format!(
            "new key {} waits for: verifier approve-key",
            new.public_hex()
        )),
        "{stdout}"
    );

    let (code, stdout, stderr) = verifier_cli(&p, &["approve-key", "--uuid", &uuid]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains(&new.public_hex()), "{stdout}");
    let refused = login(&old).await;
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.contains("BadUserNamePassword")),
        "the replaced key still logs in: {refused:?}"
    );
    login(&new).await.unwrap();
    let (code, _, _) = verifier_cli(&p, &["approve-key", "--uuid", &uuid]);
    assert_eq!(code, Some(1), "approved once");
}

//! Admin requests to the running verifier, as the CLI makes them.

use platform_tests::*;
use protocol::admin::{AdminOk, AdminOp, AdminOutcome, AdminReply};
use protocol::{decode, topics, AdminErrorCode};
use verifier::ClientError;

#[tokio::test]
async fn enroll_show_remove_and_their_refusals() {
    let p = TestPlatform::start().await;
    let admin = p.admin().await;
    let uuid = new_uuid();
    let enroll = |pass: &str, replace| AdminOp::Enroll {
        uuid: uuid.clone(),
        pass_tmp: pass.into(),
        replace,
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
    csv.push_str("three,fields,here\n");
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
            .any(|(l, r)| *l == 1206 && r.contains("2 fields")),
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

//! The onboarding flow, end to end: success, every error code, both users'
//! confirmations, timeouts, concurrency, persistence.

use ap_sim::ApEvent;
use device_sim::{DeviceError, DeviceEvent};
use platform_tests::*;
use protocol::onboarding::{AccessResponse, ApConfirm, Confirm};
use protocol::{decode, topics, AccessErrorCode};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

fn refused_code(result: Result<device_sim::Joined, DeviceError>) -> AccessErrorCode {
    match result {
        Err(DeviceError::Refused { code, .. }) => code,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn a_device_joins_with_the_aps_real_password() {
    let p = TestPlatform::start().await;
    let uuid = new_uuid();
    p.enroll(&uuid, "factory-secret").await;
    let stop = CancellationToken::new();
    let _ap = p.start_ap(p.ap_config("ap-1", true), &stop).await;

    let joined = onboard(p.device_config(&uuid, "factory-secret", true))
        .await
        .unwrap();
    assert_eq!(joined.ssid, SSID);
    assert_eq!(joined.password, WIFI_PASSWORD);
    stop.cancel();
}

#[tokio::test]
async fn an_unknown_uuid_gets_unknown_device() {
    let p = TestPlatform::start().await;
    let stop = CancellationToken::new();
    let _ap = p.start_ap(p.ap_config("ap-1", true), &stop).await;
    let result = onboard(p.device_config(&new_uuid(), "whatever", true)).await;
    assert_eq!(refused_code(result), AccessErrorCode::UnknownDevice);
    stop.cancel();
}

#[tokio::test]
async fn a_wrong_pass_tmp_gets_pass_tmp_mismatch_and_no_password() {
    let p = TestPlatform::start().await;
    let uuid = new_uuid();
    p.enroll(&uuid, "right").await;
    let stop = CancellationToken::new();
    let _ap = p.start_ap(p.ap_config("ap-1", true), &stop).await;
    let (_bus, mut inbox, _t) = p.client(&[topics::access_response(&uuid)]).await;

    let result = onboard(p.device_config(&uuid, "wrong", true)).await;
    assert_eq!(refused_code(result), AccessErrorCode::PassTmpMismatch);
    let raw = next_message(&mut inbox, 5).await;
    let text = String::from_utf8(raw.payload.to_vec()).unwrap();
    assert!(
        !text.contains("password") && !text.contains(WIFI_PASSWORD),
        "{text}"
    );
    assert!(
        !text.contains("right"),
        "the stored pass_tmp leaked: {text}"
    );
    stop.cancel();
}

#[tokio::test]
async fn the_aps_user_declining_gets_rejected() {
    let p = TestPlatform::start().await;
    let uuid = new_uuid();
    p.enroll(&uuid, "pt").await;
    let stop = CancellationToken::new();
    let mut ap = p.start_ap(p.ap_config("ap-2", false), &stop).await;
    let (bus, _inbox, _t) = p.client(&[]).await;

    let device = tokio::spawn(onboard(p.device_config(&uuid, "pt", true)));
    match tokio::time::timeout(Duration::from_secs(10), ap.events.recv())
        .await
        .unwrap()
    {
        Some(ApEvent::Prompt { uuid: prompted, .. }) => assert_eq!(prompted, uuid),
        other => panic!("expected a prompt, got {other:?}"),
    }
    // Decline the way a person would: a message on the AP's confirm topic.
    let decline = ApConfirm {
        uuid: uuid.clone(),
        accept: false,
    };
    bus.publish_json(topics::ap_confirm("ap-2"), &decline)
        .await
        .unwrap();
    assert_eq!(
        refused_code(device.await.unwrap()),
        AccessErrorCode::Rejected
    );
    stop.cancel();
}

#[tokio::test]
async fn an_unanswered_prompt_times_out_with_an_error_to_the_device() {
    let p = TestPlatform::start().await;
    let uuid = new_uuid();
    p.enroll(&uuid, "pt").await;
    let stop = CancellationToken::new();
    let mut config = p.ap_config("ap-3", false);
    config.confirm_timeout = Duration::from_millis(300);
    let _ap = p.start_ap(config, &stop).await;
    let result = onboard(p.device_config(&uuid, "pt", true)).await;
    assert_eq!(refused_code(result), AccessErrorCode::Timeout);
    stop.cancel();
}

#[tokio::test]
async fn no_verifier_means_unavailable_and_retries_not_a_hang() {
    let p = TestPlatform::start_with(broker::StartOptions { broker_only: true }).await;
    let stop = CancellationToken::new();
    let mut config = p.ap_config("ap-4", true);
    config.verify_timeout = Duration::from_millis(300);
    let mut ap = p.start_ap(config, &stop).await;
    let mut device = p.device_config(&new_uuid(), "pt", true);
    device.answer_timeout = Duration::from_secs(3);
    device.retry_base = Duration::from_millis(400);
    let result = onboard(device).await;
    assert_eq!(refused_code(result), AccessErrorCode::Unavailable);
    // The device asked again after each `unavailable`; the AP served every
    // attempt afresh instead of repeating its answer.
    let mut answered = 0;
    while let Ok(e) = ap.events.try_recv() {
        if matches!(e, ap_sim::ApEvent::Answered { .. }) {
            answered += 1;
        }
    }
    assert!(answered >= 2, "{answered} answers");
    stop.cancel();
}

#[tokio::test]
async fn the_devices_user_confirms_or_declines_over_mqtt() {
    let p = TestPlatform::start().await;
    let stop = CancellationToken::new();
    let _ap = p.start_ap(p.ap_config("ap-5", true), &stop).await;
    let (bus, _inbox, _t) = p.client(&[]).await;

    for accept in [true, false] {
        let uuid = new_uuid();
        p.enroll(&uuid, "pt").await;
        let mut device = OnboardingDevice::spawn(p.device_config(&uuid, "pt", false));
        device
            .until(10, |e| matches!(e, DeviceEvent::Prompt { .. }))
            .await;
        bus.publish_json(topics::device_confirm(&uuid), &Confirm { accept })
            .await
            .unwrap();
        let result = device.task.await.unwrap();
        if accept {
            assert_eq!(result.unwrap().password, WIFI_PASSWORD);
        } else {
            assert!(matches!(result, Err(DeviceError::Declined)), "{result:?}");
        }
    }
    stop.cancel();
}

#[tokio::test]
async fn a_waiting_prompt_does_not_block_other_devices() {
    let p = TestPlatform::start().await;
    let stop = CancellationToken::new();
    let mut ap = p.start_ap(p.ap_config("ap-6", false), &stop).await;
    let slow = new_uuid();
    p.enroll(&slow, "pt").await;
    let slow_device = tokio::spawn(onboard(p.device_config(&slow, "pt", true)));
    match tokio::time::timeout(Duration::from_secs(10), ap.events.recv())
        .await
        .unwrap()
    {
        Some(ApEvent::Prompt { uuid, .. }) => assert_eq!(uuid, slow),
        other => panic!("{other:?}"),
    }

    // While the first prompt stays open, ten more devices join.
    let mut others = Vec::new();
    for _ in 0..10 {
        let uuid = new_uuid();
        p.enroll(&uuid, "pt").await;
        others.push((
            uuid.clone(),
            tokio::spawn(onboard(p.device_config(&uuid, "pt", true))),
        ));
    }
    let mut prompted = 0;
    while prompted < others.len() {
        let event = tokio::time::timeout(Duration::from_secs(10), ap.events.recv())
            .await
            .unwrap();
        if let Some(ApEvent::Prompt { uuid, .. }) = event {
            assert!(ap.confirmations.confirm(&uuid, true));
            prompted += 1;
        }
    }
    for (_, device) in others {
        assert_eq!(device.await.unwrap().unwrap().password, WIFI_PASSWORD);
    }
    assert!(
        !slow_device.is_finished(),
        "the first device should still wait for its prompt"
    );
    assert!(ap.confirmations.confirm(&slow, true));
    assert_eq!(slow_device.await.unwrap().unwrap().password, WIFI_PASSWORD);
    stop.cancel();
}

#[tokio::test]
async fn a_device_retries_until_an_ap_appears() {
    let p = TestPlatform::start().await;
    let uuid = new_uuid();
    p.enroll(&uuid, "pt").await;
    let mut config = p.device_config(&uuid, "pt", true);
    config.retry_base = Duration::from_millis(100);
    config.retry_cap = Duration::from_millis(400);
    let mut device = OnboardingDevice::spawn(config);
    device
        .until(
            10,
            |e| matches!(e, DeviceEvent::RequestSent { attempt } if *attempt >= 2),
        )
        .await;
    let stop = CancellationToken::new();
    let _ap = p.start_ap(p.ap_config("ap-7", true), &stop).await;
    assert_eq!(device.task.await.unwrap().unwrap().password, WIFI_PASSWORD);
    stop.cancel();
}

#[tokio::test]
async fn a_malformed_request_with_a_readable_uuid_gets_bad_request() {
    let p = TestPlatform::start().await;
    let stop = CancellationToken::new();
    let _ap = p.start_ap(p.ap_config("ap-8", true), &stop).await;
    let uuid = new_uuid();
    let (bus, mut inbox, _t) = p.client(&[topics::access_response(&uuid)]).await;
    let body = format!(r#"{{"uuid":"{uuid}","ssid":"{SSID}","pass_tmp":42}}"#);
    bus.publish(topics::access_request(SSID), body.into_bytes())
        .await
        .unwrap();
    let msg = next_message(&mut inbox, 5).await;
    match decode::<AccessResponse>(&msg.payload).unwrap() {
        AccessResponse::Denied(d) => assert_eq!(d.error.code, AccessErrorCode::BadRequest),
        other => panic!("{other:?}"),
    }
    // A request whose payload SSID differs from the topic's is bad too.
    let body = format!(r#"{{"uuid":"{uuid}","ssid":"elsewhere","pass_tmp":"x"}}"#);
    bus.publish(topics::access_request(SSID), body.into_bytes())
        .await
        .unwrap();
    let msg = next_message(&mut inbox, 5).await;
    assert!(
        matches!(decode::<AccessResponse>(&msg.payload).unwrap(), AccessResponse::Denied(d) if d.error.code == AccessErrorCode::BadRequest)
    );
    stop.cancel();
}

#[tokio::test]
async fn enrollments_survive_a_restart() {
    let mut p = TestPlatform::start().await;
    let uuid = new_uuid();
    p.enroll(&uuid, "persisted").await;
    p.restart().await;

    let stop = CancellationToken::new();
    let _ap = p.start_ap(p.ap_config("ap-9", true), &stop).await;
    let joined = onboard(p.device_config(&uuid, "persisted", true))
        .await
        .unwrap();
    assert_eq!(joined.password, WIFI_PASSWORD);
    stop.cancel();
}

#[tokio::test]
async fn a_repeated_request_gets_the_same_answer_without_a_second_prompt() {
    let p = TestPlatform::start().await;
    let uuid = new_uuid();
    p.enroll(&uuid, "pt").await;
    let stop = CancellationToken::new();
    let mut ap = p.start_ap(p.ap_config("ap-r", false), &stop).await;
    let (bus, mut inbox, _t) = p.client(&[topics::access_response(&uuid)]).await;
    let request = protocol::onboarding::AccessRequest {
        uuid: uuid.clone(),
        ssid: SSID.into(),
        pass_tmp: "pt".into(),
        spake2: None,
        commit: None,
    };

    bus.publish_json(topics::access_request(SSID), &request)
        .await
        .unwrap();
    match tokio::time::timeout(Duration::from_secs(10), ap.events.recv())
        .await
        .unwrap()
    {
        Some(ApEvent::Prompt { .. }) => assert!(ap.confirmations.confirm(&uuid, true)),
        other => panic!("{other:?}"),
    }
    let first = next_message(&mut inbox, 10).await;
    // The device's re-send crossed the answer: same answer, no new prompt.
    bus.publish_json(topics::access_request(SSID), &request)
        .await
        .unwrap();
    let second = next_message(&mut inbox, 10).await;
    assert_eq!(first.payload, second.payload);
    while let Ok(event) = ap.events.try_recv() {
        assert!(
            !matches!(event, ApEvent::Prompt { .. }),
            "second prompt: {event:?}"
        );
    }
    stop.cancel();
}

/// Secure mode, two APs serving one SSID: both ask the verifier about the
/// device's request; it is released once, to one of them. The other is
/// answered `not_authorized`, passes that on, and the device, for which
/// that code is not final, joins through the first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_aps_of_one_ssid_get_one_release_and_the_device_joins() {
    let p = TestPlatform::start_config(secure_test_config(), broker::StartOptions::default()).await;
    let uuid = new_uuid();
    p.enroll(&uuid, "factory-secret").await;
    let stop = CancellationToken::new();
    let mut ap_1 = p.start_ap(p.ap_config("ap-1", true), &stop).await;
    let mut ap_2 = p.start_ap(p.ap_config("ap-2", true), &stop).await;

    let joined = onboard(p.device_config(&uuid, "factory-secret", true))
        .await
        .unwrap();
    assert_eq!(joined.password, WIFI_PASSWORD);
    stop.cancel();
    let mut granted = 0;
    for ap in [&mut ap_1, &mut ap_2] {
        while let Some(event) = ap.events.recv().await {
            if let ApEvent::Answered { outcome, .. } = event {
                match outcome {
                    Ok(()) => granted += 1,
                    Err(code) => assert_eq!(code, AccessErrorCode::NotAuthorized),
                }
            }
        }
    }
    assert_eq!(granted, 1, "one release, one grant");
}

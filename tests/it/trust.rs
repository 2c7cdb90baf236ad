//! The attacks found from outside on the secure default mode (issue 24),
//! each played through real clients against a real platform: what a
//! customer holding one AP's credential, or a stranger holding nothing,
//! could do to other people's devices. docs/SECURITY.md's threat table
//! names these tests.

use bus::{Bus, BusOptions, Message};
use platform_tests::*;
use protocol::crypto::{handshake_commitment, handshake_tag, ApKey, DeviceHandshake};
use protocol::onboarding::{
    AccessChallenge, AccessDenied, AccessProof, AccessRequest, AccessResponse, VerifyOutcome,
    VerifyRequest, VerifyResponse,
};
use protocol::{topics, AccessErrorCode};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

async fn secure() -> TestPlatform {
    let mut config = secure_test_config();
    config.security.max_failures = 3;
    TestPlatform::start_config(config, broker::StartOptions::default()).await
}

/// Connects as `user` with `client_id`, subscribed to `filters`.
async fn connect(
    p: &TestPlatform,
    client_id: &str,
    user: &str,
    password: &str,
    filters: &[String],
) -> (Bus, mpsc::Receiver<Message>, CancellationToken) {
    let opts: BusOptions = p.bus_options(client_id).with_credentials(user, password);
    let token = CancellationToken::new();
    let (bus, inbox) = Bus::connect(opts, filters.to_vec(), token.clone());
    bus.ready(Duration::from_secs(10))
        .await
        .unwrap_or_else(|e| panic!("{client_id} as {user}: {e}"));
    (bus, inbox, token)
}

/// A registered AP's own session: what a customer holding that AP's
/// credential can do.
async fn ap_session(
    p: &TestPlatform,
    ap_id: &str,
) -> (Bus, mpsc::Receiver<Message>, CancellationToken) {
    let credential = p.register_ap(&p.ap_config(ap_id, true)).await;
    let user = protocol::logins::ap_login(ap_id);
    connect(
        p,
        &user,
        &user,
        &credential,
        &[topics::verify_response(ap_id)],
    )
    .await
}

/// The next verifier answer to `request_id`.
async fn answer_to(
    inbox: &mut mpsc::Receiver<Message>,
    request_id: &str,
) -> (String, VerifyOutcome) {
    let wait = async {
        loop {
            let m = inbox.recv().await.expect("the AP session ended");
            if let Ok(r) = protocol::decode::<VerifyResponse>(&m.payload) {
                if r.request_id == request_id {
                    return (String::from_utf8_lossy(&m.payload).into_owned(), r.outcome);
                }
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(15), wait)
        .await
        .unwrap_or_else(|_| panic!("no answer to {request_id}"))
}

fn revoke(uuid: &str) -> protocol::admin::AdminOp {
    protocol::admin::AdminOp::RevokeKey { uuid: uuid.into() }
}

/// The attack 1: with one registered AP's credential, and requests
/// forged through the password-less `onboarding` login for each of 10
/// enrolled UUIDs, ask the verifier about each. It used to seal pass_tmp to
/// the attacker's key every time (10 of 10 recovered). Now it answers with
/// its own half of a handshake: no pass_tmp in any answer, nothing the
/// attacker can test a guess against offline, and the attacker's proof with
/// its guess is refused, so its key is never registered; the real devices
/// then onboard and register their own keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_requests_through_onboarding_recover_no_pass_tmp_and_no_identity() {
    let p = secure().await;
    let devices = device_sim::manifest::generate(10, 2424);
    for d in &devices {
        p.enroll(&d.uuid, &d.pass_tmp).await;
    }
    let (ap, mut answers, _a) = ap_session(&p, "ap-harvest").await;
    let attacker_key = ApKey::generate();
    let platform = p.platform_key().unwrap();
    let admin = p.admin().await;
    for (i, d) in devices.iter().enumerate() {
        // "The device's own request", forged by anyone: onboarding needs
        // no password.
        let session_id = protocol::logins::onboarding_client_id(&d.uuid);
        let (forger, _forger_inbox, _f) = connect(
            &p,
            &session_id,
            protocol::logins::ONBOARDING_USER,
            "",
            &[topics::access_response(&d.uuid)],
        )
        .await;
        let (state, msg) = DeviceHandshake::start(&d.uuid, SSID, "a-guess");
        let (opening, commit) = handshake_commitment();
        let tag = handshake_tag(&msg);
        let request = AccessRequest {
            uuid: d.uuid.clone(),
            ssid: SSID.into(),
            pass_tmp: String::new(),
            spake2: Some(msg),
            commit: Some(commit),
        };
        forger
            .publish_json(topics::access_request(SSID), &request)
            .await
            .unwrap();
        let id = format!("harvest-{i}");
        let ask = VerifyRequest {
            request_id: id.clone(),
            ap_id: "ap-harvest".into(),
            uuid: d.uuid.clone(),
            ap_key: Some(attacker_key.public_b64()),
            ssid: Some(SSID.into()),
            request: Some(tag.clone()),
        };
        ap.publish_json(topics::VERIFY_REQUEST, &ask).await.unwrap();
        let (raw, outcome) = answer_to(&mut answers, &id).await;
        assert!(
            !raw.contains(&d.pass_tmp) && !raw.contains("pass_tmp"),
            "pass_tmp left the verifier: {raw}"
        );
        let VerifyOutcome::Challenge {
            session, spake2, ..
        } = outcome
        else {
            panic!("expected the verifier's challenge, got {raw}");
        };
        // The attacker finishes the handshake with its guess and proves
        // it, enrolling its own key: refused, signed, and nothing
        // registered.
        let keys = state.finish(&spake2, &session).unwrap();
        let proof = AccessProof {
            uuid: d.uuid.clone(),
            session: session.clone(),
            proof: keys.device_proof(),
            request: Some(tag.clone()),
            enroll: Some(protocol::crypto::seal_enrollment(
                &platform,
                &protocol::crypto::DeviceKey::generate(),
                &d.uuid,
                &keys,
                &tag,
            )),
            opening: Some(opening),
        };
        forger
            .publish_json(topics::access_proof(SSID), &proof)
            .await
            .unwrap();
        let (raw, verdict) = answer_to(&mut answers, &id).await;
        let VerifyOutcome::Failed {
            error,
            denial: Some(denial),
        } = verdict
        else {
            panic!("expected a signed refusal, got {raw}");
        };
        assert_eq!(error.code, AccessErrorCode::PassTmpMismatch);
        assert!(denial.signed_for(&platform, &d.uuid, &tag));
        assert!(
            admin.request(revoke(&d.uuid)).await.is_err(),
            "the attacker's key was registered for {}",
            d.uuid
        );
    }
    // The real devices onboard, and their own keys are the ones kept.
    let stop = CancellationToken::new();
    let _honest = p.start_ap(p.ap_config("ap-1", true), &stop).await;
    for d in devices.iter().take(3) {
        let joined = onboard(p.device_config(&d.uuid, &d.pass_tmp, true))
            .await
            .unwrap();
        assert_eq!(joined.password, WIFI_PASSWORD);
        admin.request(revoke(&d.uuid)).await.unwrap();
    }
    admin.close().await;
    stop.cancel();
}

/// Kills the child on drop.
struct Held(Child);

impl Drop for Held {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A stranger's `mosquitto_sub` held open as `onboarding` with `client_id`.
fn hold_with_mosquitto(p: &TestPlatform, client_id: &str, topic: &str) -> Held {
    let ca = protocol::layout::ca_file(p.dir.path());
    let child = Command::new("mosquitto_sub")
        .args(["-h", "127.0.0.1", "-p", &p.addr.port().to_string()])
        .arg("--cafile")
        .arg(ca)
        .args(["-u", "onboarding", "-i", client_id, "-t", topic])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("mosquitto_sub (Debian's mosquitto-clients)");
    Held(child)
}

/// The attack 2: a stranger holds `onboarding` connections open for
/// the real device's UUID, as `mosquitto_sub -u onboarding -i UUID` and in
/// other letter cases, some of them subscribed to the device's own answer
/// topics. The real device used to get CONNACK 5 and not join. Now every
/// onboarding session has a client id of its own (`UUID.SESSION`), nobody
/// holds the UUID, and the device joins within 30 s while they stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_strangers_open_onboarding_connections_keep_no_device_out() {
    let p = secure().await;
    let uuid = new_uuid();
    p.enroll(&uuid, "pass-held-1").await;
    let upper = uuid.to_ascii_uppercase();
    let _held: Vec<Held> = [
        uuid.clone(),
        upper.clone(),
        format!("{uuid}.s1"),
        format!("{upper}.s2"),
    ]
    .iter()
    .map(|id| hold_with_mosquitto(&p, id, &topics::access_response(&uuid)))
    .collect();
    // And over our own client, subscribed to the device's challenges.
    let (_stranger, _inbox, _s) = connect(
        &p,
        &format!("{upper}.watch"),
        protocol::logins::ONBOARDING_USER,
        "",
        &[
            topics::access_challenge(&upper),
            topics::access_response(&upper),
        ],
    )
    .await;
    let stop = CancellationToken::new();
    let _ap = p.start_ap(p.ap_config("ap-1", true), &stop).await;
    let started = Instant::now();
    let joined = tokio::time::timeout(
        Duration::from_secs(30),
        onboard(p.device_config(&uuid, "pass-held-1", true)),
    )
    .await
    .expect("the device did not join within 30 s")
    .unwrap();
    assert_eq!(joined.password, WIFI_PASSWORD);
    assert!(started.elapsed() < Duration::from_secs(30));
    stop.cancel();
}

/// The wrong-proof lockout: three runs of a device with a wrong
/// pass_tmp by a stranger, through the honest AP, used to lock the UUID
/// out for 300 s for everyone. Now each wrong proof is refused (signed, so
/// the stranger's device stops), failures only pace new attempts, and the
/// real device joins within 30 s while the stranger keeps going.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_proofs_by_a_stranger_do_not_keep_the_real_device_out() {
    let p = secure().await; // max_failures = 3
    let uuid = new_uuid();
    p.enroll(&uuid, "the-real-one").await;
    let stop = CancellationToken::new();
    let _ap = p.start_ap(p.ap_config("ap-1", true), &stop).await;
    let stranger = |p: &TestPlatform| {
        let mut config = p.device_config(&uuid, "wrong", true);
        config.device_key = protocol::crypto::DeviceKey::generate();
        config.answer_timeout = Duration::from_secs(15);
        config
    };
    for run in 0..3 {
        match onboard(stranger(&p)).await {
            Err(device_sim::DeviceError::Refused { code, .. }) => {
                assert_eq!(code, AccessErrorCode::PassTmpMismatch, "run {run}")
            }
            other => panic!("run {run}: {other:?}"),
        }
    }
    // The stranger keeps going, one attempt after another.
    let keep_going = CancellationToken::new();
    let loop_stop = keep_going.clone();
    let config = stranger(&p);
    let attempts = tokio::spawn(async move {
        let mut n = 0u32;
        while !loop_stop.is_cancelled() {
            let (tx, _rx) = mpsc::unbounded_channel();
            let _ = device_sim::onboard(&config, &tx, None, &loop_stop).await;
            n += 1;
        }
        n
    });
    let started = Instant::now();
    let joined = tokio::time::timeout(
        Duration::from_secs(30),
        onboard(p.device_config(&uuid, "the-real-one", true)),
    )
    .await
    .expect("the real device did not join within 30 s of trying")
    .unwrap();
    assert_eq!(joined.password, WIFI_PASSWORD);
    let took = started.elapsed();
    keep_going.cancel();
    let n = attempts.await.unwrap();
    assert!(n >= 1, "the stranger made no attempt meanwhile");
    eprintln!("real device joined in {took:?} while the stranger made {n} attempts");
    stop.cancel();
}

/// The attack 3: as an AP (any AP), publish a refusal on a
/// device's response topic while it onboards, before any AP answers. The
/// device used to stop ("refused by the AP: rejected"). Now a final
/// refusal counts only if the platform signed it for the device's request
/// or it is bound to the device's session: the forged one is at most a
/// reason to ask again, and the device joins once an honest AP serves it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_refusal_ends_no_onboarding() {
    let p = secure().await;
    let uuid = new_uuid();
    p.enroll(&uuid, "pass-forged-1").await;
    let credential = p.register_ap(&p.ap_config("ap-rogue", true)).await;
    let user = protocol::logins::ap_login("ap-rogue");
    let (rogue, _inbox, _r) = connect(&p, &user, &user, &credential, &[]).await;
    let mut config = p.device_config(&uuid, "pass-forged-1", true);
    config.retry_base = Duration::from_millis(200);
    let (tx, mut events) = mpsc::unbounded_channel();
    let stop = CancellationToken::new();
    let token = stop.clone();
    let device = tokio::spawn(async move { device_sim::onboard(&config, &tx, None, &token).await });
    // Each request it sends is answered with forged refusals of every
    // final kind, one unsigned, one signed by another key.
    let stranger_key = protocol::crypto::PlatformKey::generate();
    let mut requests = 0;
    while requests < 3 {
        match tokio::time::timeout(Duration::from_secs(10), events.recv()).await {
            Ok(Some(device_sim::DeviceEvent::RequestSent { .. })) => requests += 1,
            Ok(Some(_)) => continue,
            other => panic!("the device stopped asking: {other:?}"),
        }
        for code in [
            AccessErrorCode::Rejected,
            AccessErrorCode::PassTmpMismatch,
            AccessErrorCode::UnknownDevice,
        ] {
            let plain = AccessResponse::denied(&uuid, code, "x");
            rogue
                .publish_json(topics::access_response(&uuid), &plain)
                .await
                .unwrap();
            let signed = AccessResponse::Denied(AccessDenied::signed(
                &stranger_key,
                &uuid,
                "any",
                protocol::ErrorBody::new(code, "x"),
            ));
            rogue
                .publish_json(topics::access_response(&uuid), &signed)
                .await
                .unwrap();
        }
    }
    assert!(
        !device.is_finished(),
        "a forged refusal ended the onboarding"
    );
    let _honest = p.start_ap(p.ap_config("ap-1", true), &stop).await;
    let joined = tokio::time::timeout(Duration::from_secs(30), device)
        .await
        .expect("the device did not join")
        .unwrap()
        .unwrap();
    assert_eq!(joined.password, WIFI_PASSWORD);
    stop.cancel();
}

/// The AP's own refusal of a session it serves (its user declined) is
/// bound to that session, so it still ends the onboarding.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_aps_users_refusal_still_ends_the_onboarding() {
    let p = secure().await;
    let uuid = new_uuid();
    p.enroll(&uuid, "pass-declined").await;
    let stop = CancellationToken::new();
    let ap = p.start_ap(p.ap_config("ap-1", false), &stop).await;
    let config = p.device_config(&uuid, "pass-declined", true);
    let device = tokio::spawn(onboard(config));
    let deadline = Instant::now() + Duration::from_secs(15);
    while !ap.confirmations.is_pending(&uuid) {
        assert!(Instant::now() < deadline, "no prompt for the device");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(ap.confirmations.confirm(&uuid, false));
    match tokio::time::timeout(Duration::from_secs(10), device)
        .await
        .unwrap()
        .unwrap()
    {
        Err(device_sim::DeviceError::Refused { code, .. }) => {
            assert_eq!(code, AccessErrorCode::Rejected)
        }
        other => panic!("{other:?}"),
    }
    stop.cancel();
}

/// Whether a UUID is enrolled is not revealed to an unauthenticated
/// client: an unknown UUID is admitted to onboard, challenged like any
/// other, and refused exactly as a wrong pass_tmp is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_uuid_looks_like_a_wrong_pass_tmp() {
    let p = secure().await;
    let enrolled = new_uuid();
    p.enroll(&enrolled, "pass-known-1").await;
    let stop = CancellationToken::new();
    let _ap = p.start_ap(p.ap_config("ap-1", true), &stop).await;
    let mut outcomes = Vec::new();
    for uuid in [enrolled.clone(), new_uuid()] {
        let mut config = p.device_config(&uuid, "a-guess", true);
        config.answer_timeout = Duration::from_secs(15);
        match onboard(config).await {
            Err(device_sim::DeviceError::Refused { code, message }) => {
                outcomes.push((code, message))
            }
            other => panic!("{uuid}: {other:?}"),
        }
    }
    assert_eq!(outcomes[0], outcomes[1], "enrolled or not, told the same");
    assert_eq!(outcomes[0].0, AccessErrorCode::PassTmpMismatch);
    stop.cancel();
}

/// A challenge's proof is judged only if it opens the commitment of the
/// request it answers: whoever reads the challenge (another session for
/// the same UUID) and sends a proof first changes nothing, and the device
/// joins with its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proof_from_anyone_but_the_requester_is_ignored() {
    let p = secure().await;
    let uuid = new_uuid();
    p.enroll(&uuid, "pass-race-1").await;
    let (stranger, mut challenges, _s) = connect(
        &p,
        &format!("{uuid}.race"),
        protocol::logins::ONBOARDING_USER,
        "",
        &[topics::access_challenge(&uuid)],
    )
    .await;
    // Whatever challenge it sees, the stranger answers first, with junk.
    let jammer = tokio::spawn(async move {
        let mut jammed = 0u32;
        while let Some(m) = challenges.recv().await {
            let Ok(c) = protocol::decode::<AccessChallenge>(&m.payload) else {
                continue;
            };
            let (opening, _) = handshake_commitment();
            let junk = AccessProof {
                uuid: c.uuid.clone(),
                session: c.session.clone(),
                proof: protocol::crypto::random_b64(32),
                request: Some(c.request.clone()),
                enroll: None,
                opening: Some(opening),
            };
            let _ = stranger
                .publish_json(topics::access_proof(SSID), &junk)
                .await;
            jammed += 1;
        }
        jammed
    });
    let stop = CancellationToken::new();
    let _ap = p.start_ap(p.ap_config("ap-1", true), &stop).await;
    let joined = onboard(p.device_config(&uuid, "pass-race-1", true))
        .await
        .unwrap();
    assert_eq!(joined.password, WIFI_PASSWORD);
    jammer.abort();
    stop.cancel();
}

//! Issue 5's threats, each attacked against the secure default mode and
//! its outcome asserted. docs/SECURITY.md maps each row to these tests.

use broker::security::Mode;
use bus::{Bus, BusOptions, LinkState, Message};
use device_sim::fleet::{self, FleetStats};
use device_sim::manifest::{self, Identity};
use device_sim::DeviceEvent;
use platform_tests::*;
use protocol::admin::{AdminOp, ImportRow};
use protocol::gateway::{GatewayAnswer, GatewayAssigned};
use protocol::onboarding::{AccessGranted, AccessResponse, VerifyOutcome, VerifyResponse};
use protocol::registry_admin::{RegistryOk, RegistryOp};
use protocol::{topics, AccessErrorCode};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

async fn secure() -> TestPlatform {
    let mut config = secure_test_config();
    config.security.max_failures = 3;
    let p = TestPlatform::start_config(config, broker::StartOptions::default()).await;
    assert_eq!(p_mode(&p), Mode::Secure);
    p
}

fn p_mode(p: &TestPlatform) -> Mode {
    if p.platform_key().is_some() {
        Mode::Secure
    } else {
        Mode::Walkthrough
    }
}

fn opts(p: &TestPlatform, client_id: &str, user: &str, password: &str) -> BusOptions {
    p.bus_options(client_id).with_credentials(user, password)
}

/// Connects and subscribes to `filters`; the state it settles in.
async fn try_connect(opts: BusOptions, filters: &[&str]) -> (Result<(), String>, Bus, Inbox) {
    let token = CancellationToken::new();
    let (bus, inbox) = Bus::connect(
        opts,
        filters.iter().map(|f| f.to_string()).collect(),
        token.clone(),
    );
    let result = bus
        .ready_once(Duration::from_secs(5))
        .await
        .map_err(|e| e.to_string());
    (result, bus, Inbox(inbox, token))
}

/// Registers AP `ap_id` for `ssid` and logs in as it, subscribed to its
/// own verifier answers: what an attacker holding that AP's credential
/// can do.
async fn ap_session(p: &TestPlatform, ap_id: &str, ssid: &str) -> (Bus, Inbox) {
    let mut config = p.ap_config(ap_id, true);
    config.networks[0].ssid = ssid.into();
    let credential = p.register_ap(&config).await;
    let user = protocol::logins::ap_login(ap_id);
    let (ok, bus, inbox) = try_connect(
        opts(p, &user, &user, &credential),
        &[&topics::verify_response(ap_id)],
    )
    .await;
    ok.unwrap();
    (bus, inbox)
}

struct Inbox(mpsc::Receiver<Message>, CancellationToken);

impl Drop for Inbox {
    fn drop(&mut self) {
        self.1.cancel();
    }
}

/// True if the connection was closed by the broker within `secs` (an ACL
/// refusal disconnects).
async fn cut_off(bus: &Bus, secs: u64) -> bool {
    let mut state = bus.watch_state();
    let cut = tokio::time::timeout(Duration::from_secs(secs), async {
        state
            .wait_for(|s| !matches!(s, LinkState::Ready))
            .await
            .is_ok()
    })
    .await;
    cut.unwrap_or(false)
}

async fn import(p: &TestPlatform, devices: &[Identity]) {
    let admin = p.admin().await;
    let rows = devices
        .iter()
        .enumerate()
        .map(|(i, d)| ImportRow {
            line: i as u64 + 1,
            uuid: d.uuid.clone(),
            pass_tmp: d.pass_tmp.clone(),
            ssids: d.ssids.clone(),
        })
        .collect();
    let report = admin.import(rows, |_, _| {}).await.unwrap();
    assert_eq!(report.added as usize, devices.len());
    admin.close().await;
}

const UUID_A: &str = "5ec0e000-0000-4000-8000-00000000000a";
const UUID_B: &str = "5ec0e000-0000-4000-8000-00000000000b";
const UUID_C: &str = "5ec0e000-0000-4000-8000-00000000000c";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t1_no_or_wrong_credentials_are_refused_by_platform_and_gateway() {
    let p = secure().await;
    p.enroll(UUID_A, "pass-a-123").await;
    let key_a = p.device_key(UUID_A).await;
    let login = device_token(&key_a, UUID_B);
    for (id, user, pass, why) in [
        ("c1", "admin", "", "admin without password"),
        ("c2", "admin", "wrong", "admin with a wrong password"),
        (
            "ap.ap-1",
            "ap.ap-1",
            "wrong",
            "an AP with a wrong credential",
        ),
        (
            "gateway.gw-1",
            "gateway.gw-1",
            "",
            "a gateway without a credential",
        ),
        ("ap.ap-9", "ap.ap-9", "x", "an AP nobody registered"),
        ("c5", "nobody", "x", "unknown user"),
        (UUID_A, UUID_A, "wrong", "device with a wrong login"),
        (UUID_B, UUID_B, &login, "a device that is not enrolled"),
    ] {
        let (r, _bus, _inbox) = try_connect(opts(&p, id, user, pass), &[]).await;
        assert!(r.is_err(), "{why}: admitted");
    }
    let login = device_token(&key_a, UUID_A);
    let (ok, _bus, _inbox) = try_connect(opts(&p, UUID_A, UUID_A, &login), &[]).await;
    assert!(ok.is_ok(), "the enrolled device was refused: {ok:?}");
    let ap = protocol::logins::ap_login("ap-1");
    let (ok, _b, _i) = try_connect(opts(&p, &ap, &ap, &p.token("ap/ap-1")), &[]).await;
    assert!(ok.is_ok(), "the registered AP was refused: {ok:?}");

    // The gateway: no assignment, someone else's, another gateway's, forged.
    let mut dev = p.home_secure(UUID_A).await;
    let (gw, _) = dev.connected(10).await;
    let addr = p
        .gateways()
        .iter()
        .find(|(id, _)| *id == gw)
        .map(|(_, a)| a.clone())
        .unwrap();
    let gw_opts = |user: &str, pass: &str| p.options_at(&addr, UUID_A).with_credentials(user, pass);
    dev.stop.cancel();
    let _ = dev.task.await;
    let key = protocol::crypto::PlatformKey::generate();
    let device_key = p.device_own_key(UUID_A);
    let mut forged = GatewayAssigned {
        device_id: UUID_A.into(),
        gateway_id: gw.clone(),
        address: addr.clone(),
        epoch: 99,
        device_key: Some(device_key.public_hex()),
        expires_ms: None,
        sig: None,
    };
    forged.sign(&key, u64::MAX);
    let forged = String::from_utf8(protocol::encode(&forged)).unwrap();
    // Even with the device's own key to sign the login.
    let forged = device_sim::login::DeviceLogin::new(UUID_A, device_key).gateway_password(&forged);
    for (user, pass, why) in [
        (UUID_A, "", "no assignment"),
        (UUID_A, "{}", "junk"),
        (
            UUID_A,
            forged.as_str(),
            "an assignment signed by another key",
        ),
        (
            "admin",
            p.token("admin").as_str(),
            "the platform's admin login",
        ),
    ] {
        let (r, _b, _i) = try_connect(gw_opts(user, pass), &[]).await;
        assert!(r.is_err(), "gateway admitted {why}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t2_sniffers_capture_no_secret_while_1000_devices_onboard_and_move() {
    const N: usize = 1000;
    let p = secure().await;
    let stop = CancellationToken::new();
    let mut ap_config = p.ap_config("ap-1", true);
    // The whole suite runs in parallel on 2 cores: give the verifier and
    // each device's proof time, so a slow moment is not a failed device.
    ap_config.verify_timeout = Duration::from_secs(20);
    let _ap = p.start_ap(ap_config, &stop).await;
    let all_devices = manifest::generate(N + 1, 5);
    import(&p, &all_devices).await;
    let (sniffer_identity, devices) = all_devices.split_first().unwrap();
    let devices = devices.to_vec();

    // An authenticated device and an AP try to read everything: refused.
    let d0 = sniffer_identity;
    let key0 = p.device_key(&d0.uuid).await;
    let login = device_token(&key0, &d0.uuid);
    let (_, dev_sniffer, _i1) = try_connect(opts(&p, &d0.uuid, &d0.uuid, &login), &["#"]).await;
    let ap = protocol::logins::ap_login("ap-1");
    let (_, ap_sniffer, _i2) = try_connect(
        opts(&p, &format!("{ap}.sniffer"), &ap, &p.token("ap/ap-1")),
        &["#"],
    )
    .await;
    let gw_credential = p.register_gateway("gw-sniffer", "127.0.0.1:9").await;
    let gw = protocol::logins::gateway_login("gw-sniffer");
    let (_, gw_sniffer, _i3) = try_connect(opts(&p, &gw, &gw, &gw_credential), &["#"]).await;
    assert!(
        cut_off(&gw_sniffer, 5).await,
        "a gateway was let subscribe to #"
    );
    assert!(
        cut_off(&dev_sniffer, 5).await,
        "a device was let subscribe to #"
    );
    assert!(
        cut_off(&ap_sniffer, 5).await,
        "an AP was let subscribe to #"
    );
    // Stop them retrying (the device sniffer holds device 0's client id).
    drop((_i1, _i2, _i3));

    // The strongest vantage point: the admin sees every message.
    let (ok, _admin_bus, mut all) =
        try_connect(opts(&p, "sniffer", "admin", &p.token("admin")), &["#"]).await;
    ok.unwrap();
    let (captured_tx, mut captured_rx) = mpsc::unbounded_channel::<Message>();
    let collector = tokio::spawn(async move {
        while let Some(m) = all.0.recv().await {
            if captured_tx.send(m).is_err() {
                break;
            }
        }
        all
    });
    let mut config = p.fleet_config(devices.clone());
    config.concurrency = 64;
    config.answer_timeout = Duration::from_secs(60);
    config.hold = Some(Duration::from_secs(1));
    let stats = FleetStats::new(N);
    let fleet_stop = CancellationToken::new();
    let run = tokio::spawn(fleet::run(config, stats.clone(), fleet_stop.clone()));
    assert!(
        stats
            .wait_until(Duration::from_secs(120), |s| {
                let p = s.snapshot();
                p.connected + p.failed >= N as u64
            })
            .await,
        "{:?}",
        stats.snapshot()
    );
    // Move a tenth of them.
    let registry = p.registry().await;
    for d in devices.iter().take(N / 10) {
        let to = if stats.on_gateway("gw-1") > 0 {
            "gw-2"
        } else {
            "gw-1"
        };
        registry
            .request(RegistryOp::Remap {
                device_id: d.uuid.clone(),
                gateway_id: to.into(),
            })
            .await
            .unwrap();
    }
    registry.close().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    fleet_stop.cancel();
    let report = run.await.unwrap();
    assert_eq!((report.connected, report.failed), (N as u64, 0), "{report}");

    tokio::time::sleep(Duration::from_millis(500)).await;
    collector.abort();
    let mut captured: Vec<Message> = Vec::new();
    while let Ok(m) = captured_rx.try_recv() {
        captured.push(m);
    }
    let count = |suffix: &str| {
        captured
            .iter()
            .filter(|m| m.topic.ends_with(suffix))
            .count()
    };
    // The capture is the real traffic: every onboarding and every answer.
    assert!(
        count("/access/request") >= N,
        "{}",
        count("/access/request")
    );
    assert!(count("/access/response") >= N);
    assert!(count("/verify/response") >= N);
    assert!(count("/gateway") >= N);
    let bytes: Vec<u8> = captured
        .iter()
        .flat_map(|m| m.topic.bytes().chain(m.payload.iter().copied()))
        .collect();
    // Every secret, and every login derived from one, searched for in
    // every captured byte: one pass over the capture per needle length.
    let mut needles: Vec<Vec<u8>> = vec![WIFI_PASSWORD.as_bytes().to_vec()];
    for d in &devices {
        needles.push(d.pass_tmp.as_bytes().to_vec());
    }
    // The proofs' enrollments hold a MAC keyed by the handshake's key,
    // which only the device and the verifier hold: the platform opens
    // each (so it is the real thing, sealed to the platform), and the MAC
    // itself is searched for like the rest.
    let platform = signing_key(&p);
    let mut enrolled = std::collections::HashSet::new();
    for m in captured
        .iter()
        .filter(|m| m.topic.ends_with("/access/proof"))
    {
        let proof: protocol::onboarding::AccessProof = protocol::decode(&m.payload).unwrap();
        let request = proof.request.expect("a proof names its request");
        let claim = platform
            .open_enrollment(
                &proof.enroll.expect("a proof enrolls"),
                &proof.uuid,
                &request,
            )
            .unwrap();
        needles.push(claim.mac().to_vec());
        needles.push(protocol::crypto::b64(&claim.mac()).into_bytes());
        enrolled.insert(proof.uuid);
    }
    assert_eq!(enrolled.len(), N, "every device enrolled its key");
    let mut by_len: std::collections::HashMap<usize, std::collections::HashSet<&[u8]>> =
        Default::default();
    for n in &needles {
        by_len.entry(n.len()).or_default().insert(n);
    }
    for (len, set) in &by_len {
        if let Some(found) = bytes.windows(*len).find(|w| set.contains(w)) {
            panic!(
                "a secret was captured: {:?}",
                String::from_utf8_lossy(found)
            );
        }
    }
    let contains = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    // No field that carries a secret in walkthrough mode appears at all,
    // nor pass_tmp sealed to an AP, as the verifier once sent it.
    for field in [
        &b"\"pass_tmp\""[..],
        b"\"password\"",
        b"\"sealed_pass_tmp\"",
    ] {
        assert!(
            !contains(field),
            "{:?} on the wire",
            String::from_utf8_lossy(field)
        );
    }
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t3_forged_answers_are_not_believed() {
    use protocol::onboarding::VerifyRequest;
    let p = secure().await;
    let stop = CancellationToken::new();
    p.enroll(UUID_A, "pass-a-123").await;
    let (forger, _forger_inbox, _t) = p.client(&[]).await;

    // A forged registry answer, sent to a trap, before and while the device
    // asks: the device never goes there and ends on a real gateway.
    let trap = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    trap.set_nonblocking(true).unwrap();
    let trap_addr = trap.local_addr().unwrap().to_string();
    let forged = GatewayAnswer::Assigned(GatewayAssigned {
        device_id: UUID_A.into(),
        gateway_id: "gw-evil".into(),
        address: trap_addr.clone(),
        epoch: 1000,
        device_key: None,
        expires_ms: Some(u64::MAX),
        sig: Some("AAAA".into()),
    });
    let spam = {
        let forger = forger.clone();
        tokio::spawn(async move {
            for _ in 0..200 {
                let _ = forger
                    .publish_json(topics::device_gateway(UUID_A), &forged)
                    .await;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let mut dev = p.home_secure(UUID_A).await;
    let (gw, _) = dev.connected(10).await;
    assert!(gw == "gw-1" || gw == "gw-2", "{gw}");
    spam.await.unwrap();
    assert!(trap.accept().is_err(), "the device connected to the trap");
    dev.stop.cancel();

    // A forged access response (plaintext, and sealed with a wrong key)
    // while the real AP waits for its user: the device accepts only the
    // AP's real, sealed answer.
    p.enroll(UUID_B, "pass-b-123").await;
    let stop_manual = CancellationToken::new();
    let mut ap = p.start_ap(p.ap_config("ap-1", false), &stop_manual).await;
    let config = p.device_config(UUID_B, "pass-b-123", true);
    let (tx, mut events) = mpsc::unbounded_channel();
    let token = stop.clone();
    let device = tokio::spawn(async move { device_sim::onboard(&config, &tx, None, &token).await });
    while !ap.confirmations.is_pending(UUID_B) {
        let _ = tokio::time::timeout(Duration::from_millis(20), ap.events.recv()).await;
    }
    for sealed in [None, Some("c2VhbGVkIGJ5IHNvbWVvbmUgZWxzZQ".to_string())] {
        let fake = AccessResponse::Granted(AccessGranted {
            uuid: UUID_B.into(),
            ssid: SSID.into(),
            password: "attacker's network".into(),
            session: sealed.as_ref().map(|_| "c2Vzc2lvbg".into()),
            sealed,
        });
        forger
            .publish_json(topics::access_response(UUID_B), &fake)
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    while let Ok(e) = events.try_recv() {
        assert!(
            !matches!(e, DeviceEvent::Prompt { .. }),
            "the device took a forged answer"
        );
    }
    assert!(ap.confirmations.confirm(UUID_B, true));
    let joined = device.await.unwrap().unwrap();
    assert_eq!(joined.password, WIFI_PASSWORD);

    // Forged verifier answers, for an attacker who sends an access request
    // for UUID_A keyed by a pass_tmp of its choosing, through a real AP:
    // a plaintext pass_tmp of the attacker's racing the real challenge;
    // then, once the real challenge is out, a verdict sealing a Wi-Fi key
    // of the attacker's to the AP's key (public: it is in the AP's
    // question), signed by another key. No grant either way.
    stop_manual.cancel();
    ap.join().await.unwrap();
    let _ap2 = p.start_ap(p.ap_config("ap-2", true), &stop).await;
    let (_, mut verify_requests, _t2) = p.client(&[topics::VERIFY_REQUEST.into()]).await;
    let (_, mut challenges, _t3) = p.client(&[topics::access_challenge(UUID_A)]).await;
    let (_, mut answers, _t4) = p.client(&[topics::access_response(UUID_A)]).await;
    // The AP's question about the attacker's request `tag`.
    async fn question_for(inbox: &mut mpsc::Receiver<Message>, tag: &str) -> VerifyRequest {
        loop {
            let m = next_message(inbox, 10).await;
            let req: VerifyRequest = protocol::decode(&m.payload).unwrap();
            if req.request.as_deref() == Some(tag) {
                return req;
            }
        }
    }

    // The plaintext pass_tmp, answered to the AP's question at once.
    let (request, tag) = device_request(UUID_A, "attacker-guess");
    forger
        .publish_json(topics::access_request(SSID), &request)
        .await
        .unwrap();
    let req = question_for(&mut verify_requests, &tag).await;
    let fake = VerifyResponse {
        request_id: req.request_id.clone(),
        uuid: req.uuid.clone(),
        outcome: VerifyOutcome::Found {
            pass_tmp: "attacker-guess".into(),
        },
    };
    forger
        .publish_json(topics::verify_response(&req.ap_id), &fake)
        .await
        .unwrap();
    let m = next_message(&mut answers, 15).await;
    match protocol::decode::<AccessResponse>(&m.payload).unwrap() {
        AccessResponse::Denied(_) => {}
        AccessResponse::Granted(g) => panic!("granted on a forged pass_tmp: {g:?}"),
    }

    // The forged verdict, once the verifier's challenge has been relayed.
    let (request, tag) = device_request(UUID_A, "attacker-guess");
    forger
        .publish_json(topics::access_request(SSID), &request)
        .await
        .unwrap();
    let req = question_for(&mut verify_requests, &tag).await;
    let challenge = loop {
        let m = next_message(&mut challenges, 10).await;
        let c: protocol::onboarding::AccessChallenge = protocol::decode(&m.payload).unwrap();
        if c.request == tag {
            break c;
        }
    };
    let attacker_wifi = protocol::crypto::WifiKey::from_bytes(&[7u8; 32]).unwrap();
    let stranger = protocol::crypto::PlatformKey::generate();
    let outcome = protocol::onboarding::seal_wifi_key(
        &stranger,
        &req,
        req.ap_key.as_deref().unwrap(),
        &challenge.session,
        &attacker_wifi,
    )
    .unwrap();
    let fake = VerifyResponse {
        request_id: req.request_id.clone(),
        uuid: req.uuid.clone(),
        outcome,
    };
    forger
        .publish_json(topics::verify_response(&req.ap_id), &fake)
        .await
        .unwrap();
    let m = next_message(&mut answers, 15).await;
    match protocol::decode::<AccessResponse>(&m.payload).unwrap() {
        AccessResponse::Denied(d) => assert!(
            d.error.message.contains("no valid verdict"),
            "the forged verdict was not what the AP refused: {d:?}"
        ),
        AccessResponse::Granted(g) => panic!("granted on a forged verdict: {g:?}"),
    }
    stop.cancel();
}

/// T4, guessing pass_tmp online through a real AP, as anyone may (an
/// onboarding login needs no secret): each guess is one handshake with
/// the verifier, whose proof fails and whose refusal the platform signs,
/// so the guess ends. The first `max_failures` (3) are not paced; after
/// them each new challenge for the UUID waits its slot, a step that
/// doubles from a second: a guesser gets one guess per step. Nobody is
/// locked out: the real device still joins, and another UUID is not
/// affected. (Logins are no oracle: a device logs in with a token signed
/// by its own key, so failed logins count toward nothing; see
/// identities::t14_strangers_failing_logins_lock_no_device_out.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t4_guessing_pass_tmp_paces_the_uuid_and_its_device_still_joins() {
    let p = secure().await; // max_failures = 3
    let stop = CancellationToken::new();
    let _ap = p.start_ap(p.ap_config("ap-1", true), &stop).await;
    p.enroll(UUID_B, "pass-b-123").await;
    let (_, mut answers, _t) = p.client(&[topics::access_response(UUID_B)]).await;
    for guess in ["g1", "g2", "g3"] {
        guess_fails(&p, UUID_B, guess).await;
        let slots = pace_slots(&mut answers, 0, 1).await;
        assert!(slots.is_empty(), "paced before max_failures: {slots:?}");
    }
    paced_guess_beside_the_device(&p, &mut answers, UUID_B, "pass-b-123").await;
    // Another UUID is not affected.
    p.enroll(UUID_C, "pass-c-123").await;
    let (_, mut answers_c, _t) = p.client(&[topics::access_response(UUID_C)]).await;
    let ok = onboard(p.device_config(UUID_C, "pass-c-123", true))
        .await
        .unwrap();
    assert_eq!(ok.password, WIFI_PASSWORD);
    assert!(pace_slots(&mut answers_c, 1, 0).await.is_empty());
    stop.cancel();
}

/// Onboards as `uuid` with `guess`, a wrong pass_tmp, and a key of its
/// own, through the real AP: the verifier judges the proof wrong and
/// signs its refusal, which ends the onboarding.
async fn guess_fails(p: &TestPlatform, uuid: &str, guess: &str) {
    let mut config = p.device_config(uuid, guess, true);
    config.device_key = protocol::crypto::DeviceKey::generate();
    let guessed = onboard(config).await;
    assert!(
        matches!(
            guessed,
            Err(device_sim::DeviceError::Refused {
                code: AccessErrorCode::PassTmpMismatch,
                ..
            })
        ),
        "{guessed:?}"
    );
}

/// What the AP passed on to the devices of a UUID, read from
/// `device/{uuid}/access/response` until `grants` grants and `refusals`
/// platform-signed refusals have come: the slot (`retry_after_ms`) of
/// each `unavailable` the verifier answered a paced attempt with.
async fn pace_slots(
    inbox: &mut mpsc::Receiver<Message>,
    grants: usize,
    refusals: usize,
) -> Vec<u64> {
    let (mut granted, mut refused, mut slots) = (0, 0, Vec::new());
    while granted < grants || refused < refusals {
        let m = next_message(inbox, 30).await;
        match protocol::decode::<AccessResponse>(&m.payload).unwrap() {
            AccessResponse::Granted(_) => granted += 1,
            AccessResponse::Denied(d) if d.sig.is_some() => refused += 1,
            AccessResponse::Denied(d)
                if d.error.code == AccessErrorCode::Unavailable
                    && d.error.message.contains("paced") =>
            {
                slots.push(
                    d.error
                        .retry_after_ms
                        .expect("a paced attempt is given its slot"),
                );
            }
            AccessResponse::Denied(_) => {}
        }
    }
    slots
}

/// Once the UUID has exactly `max_failures` failures, a guess and the
/// real device onboard at once. Both cannot be challenged within the
/// first step (a second), so at least one of them is given a slot to
/// come back at, two steps away at most; the guess is refused, and the
/// real device joins.
async fn paced_guess_beside_the_device(
    p: &TestPlatform,
    answers: &mut mpsc::Receiver<Message>,
    uuid: &str,
    pass_tmp: &str,
) {
    let guesser = {
        let mut config = p.device_config(uuid, "one-more-guess", true);
        config.device_key = protocol::crypto::DeviceKey::generate();
        tokio::spawn(onboard(config))
    };
    let joined = onboard(p.device_config(uuid, pass_tmp, true))
        .await
        .expect("the real device was locked out");
    assert_eq!(joined.password, WIFI_PASSWORD);
    let guessed = guesser.await.unwrap();
    assert!(
        matches!(
            guessed,
            Err(device_sim::DeviceError::Refused {
                code: AccessErrorCode::PassTmpMismatch,
                ..
            })
        ),
        "{guessed:?}"
    );
    let slots = pace_slots(answers, 1, 1).await;
    assert!(!slots.is_empty(), "neither attempt was paced");
    assert!(
        slots.iter().all(|ms| (1..=2_000).contains(ms)),
        "not the first step of the pace: {slots:?}"
    );
}

/// T4, per AP: one AP's verification requests are rate-limited (a burst
/// over the rate is refused, with no handshake run), but the refusal is
/// `unavailable`, so a busy AP's real devices are slowed, not failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t4_an_ap_over_its_rate_is_throttled_and_its_devices_still_join() {
    use protocol::onboarding::VerifyRequest;
    let mut config = secure_test_config();
    config.security.ap_rate_per_sec = 2;
    let p = TestPlatform::start_config(config, broker::StartOptions::default()).await;
    let devices = manifest::generate(8, 41);
    import(&p, &devices).await;

    // A burst of 8 verification requests from one registered AP id, each
    // for a request its device made (the verifier answers nothing else).
    p.register_ap(&p.ap_config("ap-9", true)).await;
    let (ap, mut answers, _t) = p.client(&[topics::verify_response("ap-9")]).await;
    let ap_key = protocol::crypto::ApKey::generate().public_b64();
    let mut tags = Vec::new();
    for d in &devices {
        let (request, tag) = device_request(&d.uuid, &d.pass_tmp);
        tags.push(tag);
        ap.publish_json(topics::access_request(SSID), &request)
            .await
            .unwrap();
    }
    for (i, (d, tag)) in devices.iter().zip(&tags).enumerate() {
        let ask = VerifyRequest {
            request_id: format!("burst-{i}"),
            ap_id: "ap-9".into(),
            uuid: d.uuid.clone(),
            ap_key: Some(ap_key.clone()),
            ssid: Some(SSID.into()),
            request: Some(tag.clone()),
        };
        ap.publish_json(topics::VERIFY_REQUEST, &ask).await.unwrap();
    }
    let (mut challenged, mut throttled) = (0, 0);
    let mut slots = Vec::new();
    for _ in 0..devices.len() {
        let m = tokio::time::timeout(Duration::from_secs(10), answers.recv())
            .await
            .unwrap()
            .unwrap();
        match protocol::decode::<VerifyResponse>(&m.payload)
            .unwrap()
            .outcome
        {
            VerifyOutcome::Challenge { .. } => challenged += 1,
            VerifyOutcome::Failed { error, .. } if error.code == AccessErrorCode::Unavailable => {
                throttled += 1;
                slots.push(
                    error
                        .retry_after_ms
                        .expect("a throttled answer says when to come back"),
                );
            }
            other => panic!("unexpected answer {other:?}"),
        }
    }
    assert!(
        (1..=3).contains(&challenged) && throttled == devices.len() - challenged,
        "rate 2/s: {challenged} challenged, {throttled} throttled of a burst of 8"
    );
    // Paced, not refused all alike: each throttled request has a slot of
    // its own, one token (500 ms at 2/s) after the one before.
    slots.sort_unstable();
    for pair in slots.windows(2) {
        let gap = pair[1] - pair[0];
        assert!((400..=600).contains(&gap), "slots {slots:?}");
    }

    // The same 8 as real devices behind one real AP at 2/s: all join.
    let stop = CancellationToken::new();
    let _ap = p.start_ap(p.ap_config("ap-1", true), &stop).await;
    let mut joins = tokio::task::JoinSet::new();
    for d in &devices {
        let config = p.device_config(&d.uuid, &d.pass_tmp, true);
        let (tx, _e) = mpsc::unbounded_channel();
        let token = stop.clone();
        joins.spawn(async move { device_sim::onboard(&config, &tx, None, &token).await });
    }
    while let Some(joined) = joins.join_next().await {
        assert_eq!(joined.unwrap().unwrap().password, WIFI_PASSWORD);
    }
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t5_replayed_requests_and_responses_yield_nothing() {
    let p = secure().await;
    let stop = CancellationToken::new();
    p.enroll(UUID_A, "pass-a-123").await;
    let (sniffer, mut seen, _t) = p
        .client(&[
            topics::access_request(SSID),
            topics::access_response(UUID_A),
        ])
        .await;
    let stop_auto = CancellationToken::new();
    let mut ap = p.start_ap(p.ap_config("ap-1", true), &stop_auto).await;
    let (tx, _e) = mpsc::unbounded_channel();
    let first = device_sim::onboard(
        &p.device_config(UUID_A, "pass-a-123", true),
        &tx,
        None,
        &stop,
    )
    .await
    .unwrap();
    assert_eq!(first.password, WIFI_PASSWORD);
    let (mut request, mut response) = (None, None);
    while request.is_none() || response.is_none() {
        let m = tokio::time::timeout(Duration::from_secs(5), seen.recv())
            .await
            .unwrap()
            .unwrap();
        if m.topic.ends_with("/request") {
            request = Some(m.payload);
        } else {
            response = Some(m.payload);
        }
    }
    // The replayed request gets nothing: the verifier has answered that
    // device request once already (and judged its proof), so the AP gets
    // `not_authorized` and starts no session at all: no new handshake to
    // guess against. (Before the verifier kept its own memory of
    // requests, it started a session nobody could finish: `unavailable`.)
    tokio::time::sleep(ap_sim::REPEAT_WINDOW).await;
    while ap.events.try_recv().is_ok() {}
    sniffer
        .publish(topics::access_request(SSID), request.unwrap().to_vec())
        .await
        .unwrap();
    let answered = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            if let Some(ap_sim::ApEvent::Answered { outcome, .. }) = ap.events.recv().await {
                return outcome;
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(answered, Err(AccessErrorCode::NotAuthorized));
    stop_auto.cancel();
    ap.join().await.unwrap();

    // The replayed response does not open in the device's next session:
    // the device waits, unprompted, for the AP's real answer.
    let mut ap_manual = p.start_ap(p.ap_config("ap-2", false), &stop).await;
    let config = p.device_config(UUID_A, "pass-a-123", true);
    let (tx, mut events) = mpsc::unbounded_channel();
    let token = stop.clone();
    let device = tokio::spawn(async move { device_sim::onboard(&config, &tx, None, &token).await });
    while !ap_manual.confirmations.is_pending(UUID_A) {
        let _ = tokio::time::timeout(Duration::from_millis(20), ap_manual.events.recv()).await;
    }
    sniffer
        .publish(topics::access_response(UUID_A), response.unwrap().to_vec())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !std::iter::from_fn(|| events.try_recv().ok())
            .any(|e| matches!(e, DeviceEvent::Prompt { .. })),
        "the device took the replayed response"
    );
    assert!(!device.is_finished());
    assert!(ap_manual.confirmations.confirm(UUID_A, true));
    let joined = device.await.unwrap().unwrap();
    assert_eq!(joined.password, WIFI_PASSWORD);
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t6_non_admins_cannot_send_admin_requests() {
    let p = secure().await;
    p.enroll(UUID_A, "pass-a-123").await;
    let mut dev = p.home_secure(UUID_A).await;
    let (gw, _) = dev.connected(10).await;
    let other = if gw == "gw-1" { "gw-2" } else { "gw-1" };
    let remap = format!(
        r#"{{"request_id":"x1","op":"remap","device_id":"{UUID_A}","gateway_id":"{other}"}}"#
    );
    let enroll =
        format!(r#"{{"request_id":"x2","op":"enroll","uuid":"{UUID_B}","pass_tmp":"mine-now"}}"#);
    let key_a = p.device_key(UUID_A).await;
    let ap_credential = p.token("ap/ap-1");
    let gw_credential = p.register_gateway("gw-evil", "127.0.0.1:9").await;
    for (id, user, pass) in [
        (UUID_A, UUID_A, None),
        ("ap.ap-1.evil", "ap.ap-1", Some(&ap_credential)),
        ("gateway.gw-evil", "gateway.gw-evil", Some(&gw_credential)),
    ] {
        for (topic, payload) in [
            (topics::REGISTRY_ADMIN_REQUEST, &remap),
            (topics::VERIFIER_ADMIN_REQUEST, &enroll),
        ] {
            // A device's token is good for one login.
            let pass = pass
                .cloned()
                .unwrap_or_else(|| device_token(&key_a, UUID_A));
            let (ok, bus, _i) = try_connect(opts(&p, id, user, &pass), &[]).await;
            ok.unwrap();
            bus.publish(topic, payload.clone().into_bytes())
                .await
                .unwrap();
            assert!(cut_off(&bus, 5).await, "{user} may publish {topic}");
        }
    }
    // Nothing changed.
    let registry = p.registry().await;
    match registry
        .request(RegistryOp::Show {
            device_id: UUID_A.into(),
        })
        .await
        .unwrap()
    {
        RegistryOk::Assignment(a) => assert_eq!(a.gateway_id, gw),
        other => panic!("{other:?}"),
    }
    registry.close().await;
    let admin = p.admin().await;
    assert!(admin
        .request(AdminOp::Show {
            uuid: UUID_B.into()
        })
        .await
        .is_err());
    admin.close().await;
    dev.stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t7_nobody_connects_as_another_device() {
    let p = secure().await;
    p.enroll(UUID_A, "pass-a-123").await;
    p.enroll(UUID_B, "pass-b-123").await;
    let key_b = p.device_key(UUID_B).await;
    let login_b = device_token(&key_b, UUID_B);
    let (r, _b, _i) = try_connect(opts(&p, UUID_A, UUID_B, &login_b), &[]).await;
    assert!(r.is_err(), "B's login opened A's client id");
    let (r, _b, _i) = try_connect(opts(&p, UUID_A, "admin", &p.token("admin")), &[]).await;
    assert!(r.is_err(), "the admin took a device's client id");
    let (r, _b, _i) = try_connect(opts(&p, UUID_A, "ap.ap-1", &p.token("ap/ap-1")), &[]).await;
    assert!(r.is_err(), "an AP took a device's client id");
    // On a gateway: B's signed assignment does not open A's client id.
    let mut dev_b = p.home_secure(UUID_B).await;
    let (gw, _) = dev_b.connected(10).await;
    let addr = p
        .gateways()
        .iter()
        .find(|(id, _)| *id == gw)
        .map(|(_, a)| a.clone())
        .unwrap();
    let (_, reg_bus, mut answers) = try_connect(
        opts(&p, UUID_B, UUID_B, &login_b),
        &[&topics::device_gateway(UUID_B)],
    )
    .await;
    reg_bus
        .publish_json(
            topics::REGISTRY_QUERY,
            &protocol::gateway::GatewayQuery {
                device_id: UUID_B.into(),
                device_key: Some(key_b.public_hex()),
            },
        )
        .await
        .unwrap();
    let token_b = tokio::time::timeout(Duration::from_secs(5), answers.0.recv())
        .await
        .unwrap()
        .unwrap()
        .payload;
    let token_b = String::from_utf8(token_b.to_vec()).unwrap();
    let login_b = device_sim::login::DeviceLogin::new(UUID_B, key_b);
    for (id, user) in [(UUID_A, UUID_B), (UUID_A, UUID_A)] {
        let o = p
            .options_at(&addr, id)
            .with_credentials(user, login_b.gateway_password(&token_b));
        let (r, _b, _i) = try_connect(o, &[]).await;
        assert!(
            r.is_err(),
            "B's assignment admitted client id {id} as {user}"
        );
    }
    dev_b.stop.cancel();
}

/// A remap's notice carries the new assignment, signed: the device checks
/// it and goes straight to its new gateway, which admits it on it, with no
/// query to the registry in between.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remapped_device_moves_on_the_signed_assignment_its_notice_carries() {
    let p = secure().await;
    p.enroll(UUID_A, "pass-a-123").await;
    let mut dev = p.home_secure(UUID_A).await;
    let (first, _) = dev.connected(10).await;
    let target = if first == "gw-1" { "gw-2" } else { "gw-1" };
    let registry = p.registry().await;
    registry
        .request(RegistryOp::Remap {
            device_id: UUID_A.into(),
            gateway_id: target.into(),
        })
        .await
        .unwrap();
    registry.close().await;
    dev.moves_without_asking(&first, target, 2).await;
    dev.stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t3_a_device_cannot_forge_a_redirect_on_its_gateway() {
    let p = secure().await;
    p.enroll(UUID_A, "pass-a-123").await;
    p.enroll(UUID_B, "pass-b-123").await;
    let mut victim = p.home_secure(UUID_A).await;
    let (gw, _) = victim.connected(10).await;
    let addr = p
        .gateways()
        .iter()
        .find(|(id, _)| *id == gw)
        .map(|(_, a)| a.clone())
        .unwrap();
    // The attacker is a real device, assigned to the victim's gateway.
    let registry = p.registry().await;
    registry
        .request(RegistryOp::Assign {
            device_id: UUID_B.into(),
            gateway_id: gw.clone(),
        })
        .await
        .unwrap();
    registry.close().await;
    let key_b = p.device_key(UUID_B).await;
    let login_b = device_token(&key_b, UUID_B);
    let (_, reg_bus, mut answers) = try_connect(
        opts(&p, UUID_B, UUID_B, &login_b),
        &[&topics::device_gateway(UUID_B)],
    )
    .await;
    reg_bus
        .publish_json(
            topics::REGISTRY_QUERY,
            &protocol::gateway::GatewayQuery {
                device_id: UUID_B.into(),
                device_key: Some(key_b.public_hex()),
            },
        )
        .await
        .unwrap();
    let token_b = tokio::time::timeout(Duration::from_secs(5), answers.0.recv())
        .await
        .unwrap()
        .unwrap()
        .payload;
    let token_b = String::from_utf8(token_b.to_vec()).unwrap();
    let password = device_sim::login::DeviceLogin::new(UUID_B, key_b).gateway_password(&token_b);
    let o = p
        .options_at(&addr, UUID_B)
        .with_credentials(UUID_B, password);
    let (ok, attacker, _i) = try_connect(o, &[]).await;
    ok.expect("the attacker is admitted to its own gateway");
    let notice = protocol::gateway::Redirect {
        device_id: UUID_A.into(),
        reason: protocol::gateway::RedirectReason::Remapped,
        epoch: 1000,
        assignment: None,
    };
    attacker
        .publish_json(topics::device_redirect(UUID_A), &notice)
        .await
        .unwrap();
    assert!(
        cut_off(&attacker, 5).await,
        "a device may publish another's redirect"
    );
    // The victim heard nothing and stays.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let moved = std::iter::from_fn(|| victim.events.try_recv().ok())
        .any(|e| matches!(e, device_sim::gateway::HomeEvent::Redirected { .. }));
    assert!(!moved, "the victim followed a forged redirect");
    victim.stop.cancel();
}

/// Where anyone may publish redirects (the walkthrough mode, or a
/// compromised gateway), forged notices cost at most one registry query a
/// second per device.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t3_forged_redirects_cost_at_most_one_query_a_second() {
    let p = TestPlatform::start().await; // walkthrough: redirects are open
    let mut dev = p.home("dev-flood", None);
    let (gw, _) = dev.connected(10).await;
    let addr = p
        .gateways()
        .iter()
        .find(|(id, _)| *id == gw)
        .map(|(_, a)| a.clone())
        .unwrap();
    // The forger is another device admitted to the same gateway.
    let registry = p.registry().await;
    registry
        .request(RegistryOp::Assign {
            device_id: "forger".into(),
            gateway_id: gw.clone(),
        })
        .await
        .unwrap();
    registry.close().await;
    let (ok, forger, _i) = try_connect(
        p.options_at(&addr, "forger").with_credentials("me", ""),
        &[],
    )
    .await;
    ok.unwrap();
    let started = tokio::time::Instant::now();
    let mut epoch = 1000;
    while started.elapsed() < Duration::from_secs(3) {
        epoch += 1;
        let notice = protocol::gateway::Redirect {
            device_id: "dev-flood".into(),
            reason: protocol::gateway::RedirectReason::Remapped,
            epoch,
            assignment: None,
        };
        // The device reconnects between notices; some land while it is away.
        let _ = forger
            .publish_json(topics::device_redirect("dev-flood"), &notice)
            .await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let queries = std::iter::from_fn(|| dev.events.try_recv().ok())
        .filter(|e| matches!(e, device_sim::gateway::HomeEvent::Assigned { .. }))
        .count();
    assert!(queries >= 1, "the flood reached the device at all");
    assert!(queries <= 4, "{queries} registry queries in 3 s");
    dev.stop.cancel();
}

/// Reliability of the secure handshake: a challenge or proof lost (as
/// across a platform restart) costs the device one more round, never a
/// failure. The AP and the verifier are played by hand here (the real
/// verifier, asked by nobody, judges no proof), so the loss is exact: the
/// first proof is dropped and `unavailable` sent; the device must then
/// ask with a *new* handshake, ignore a late challenge to the old one,
/// and finish with the new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_proof_costs_a_new_handshake_not_the_device() {
    use protocol::crypto::{handshake_tag, random_b64, verifier_handshake};
    use protocol::onboarding::{AccessChallenge, AccessProof, AccessRequest, Ticket, TicketFor};

    let p = secure().await;
    let platform = signing_key(&p);
    p.enroll(UUID_A, "pass-a-123").await;
    let (ap, mut inbox, _t) = p
        .client(&[topics::access_request(SSID), topics::access_proof(SSID)])
        .await;
    let mut config = p.device_config(UUID_A, "pass-a-123", true);
    config.retry_base = Duration::from_millis(200);
    let (tx, _events) = mpsc::unbounded_channel();
    let stop = CancellationToken::new();
    let token = stop.clone();
    let device = tokio::spawn(async move { device_sim::onboard(&config, &tx, None, &token).await });

    let challenge = |msg: &str, session: &str| {
        let (keys, spake2) = verifier_handshake(UUID_A, SSID, "pass-a-123", msg, session).unwrap();
        let request = handshake_tag(msg);
        // The hand-played verifier's challenges carry the platform's
        // ticket, as the real one's do.
        let what = TicketFor {
            uuid: UUID_A,
            ssid: SSID,
            request: &request,
            session,
            spake2: &spake2,
        };
        let ticket = Ticket::issue(&platform, what, "ap-hand", protocol::now_ms() + 60_000);
        let c = AccessChallenge {
            uuid: UUID_A.into(),
            ssid: SSID.into(),
            request,
            session: session.into(),
            spake2,
            ticket: Some(ticket),
        };
        (keys, c)
    };

    // Round 1: challenge, proof (dropped), `unavailable`.
    let first: AccessRequest = protocol::decode(&next_on(&mut inbox, "/request").await).unwrap();
    let a1 = first.spake2.clone().unwrap();
    let (_, c1) = challenge(&a1, &random_b64(16));
    ap.publish_json(topics::access_challenge(UUID_A), &c1)
        .await
        .unwrap();
    let proof: AccessProof = protocol::decode(&next_on(&mut inbox, "/proof").await).unwrap();
    assert_eq!(proof.session, c1.session);
    // The AP repeats its challenge (as it does for a retried request): the
    // device sends the same proof again.
    ap.publish_json(topics::access_challenge(UUID_A), &c1)
        .await
        .unwrap();
    let again: AccessProof = protocol::decode(&next_on(&mut inbox, "/proof").await).unwrap();
    assert_eq!(again, proof);
    ap.publish_json(
        topics::access_response(UUID_A),
        &AccessResponse::denied(UUID_A, AccessErrorCode::Unavailable, "proof lost"),
    )
    .await
    .unwrap();

    // Round 2: the device asks again with a new handshake (repeats of the
    // first request, sent before the challenge reached it, are skipped).
    let a2 = loop {
        let req: AccessRequest = protocol::decode(&next_on(&mut inbox, "/request").await).unwrap();
        let a = req.spake2.unwrap();
        if a != a1 {
            break a;
        }
    };
    // A late challenge to the spent handshake, then the real one: the
    // next proof must be for the real one (a proof for the late one
    // would come first, in order).
    let (_, late) = challenge(&a1, &random_b64(16));
    ap.publish_json(topics::access_challenge(UUID_A), &late)
        .await
        .unwrap();
    let session = random_b64(16);
    let (keys, c2) = challenge(&a2, &session);
    ap.publish_json(topics::access_challenge(UUID_A), &c2)
        .await
        .unwrap();
    let proof: AccessProof = protocol::decode(&next_on(&mut inbox, "/proof").await).unwrap();
    assert_eq!(
        proof.session, session,
        "the device answered a spent handshake"
    );
    assert!(keys.check_device_proof(&proof.proof));
    grant_and_join(&ap, &keys, session, device).await;
    stop.cancel();
}

/// The AP's side of a lost challenge: a device's retry of the handshake in
/// progress gets the same challenge again, not silence until the AP's
/// timeout and not a second session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_request_gets_its_open_challenge_again() {
    use protocol::crypto::{handshake_commitment, handshake_tag, DeviceHandshake};
    use protocol::onboarding::{AccessChallenge, AccessRequest};

    let p = secure().await;
    p.enroll(UUID_A, "pass-a-123").await;
    let stop = CancellationToken::new();
    let _ap = p.start_ap(p.ap_config("ap-1", true), &stop).await;
    let (device, mut inbox, _t) = p.client(&[topics::access_challenge(UUID_A)]).await;
    let (_state, msg) = DeviceHandshake::start(UUID_A, SSID, "pass-a-123");
    let (_opening, commit) = handshake_commitment();
    let request = AccessRequest {
        uuid: UUID_A.into(),
        ssid: SSID.into(),
        pass_tmp: String::new(),
        spake2: Some(msg.clone()),
        commit: Some(commit),
    };
    device
        .publish_json(topics::access_request(SSID), &request)
        .await
        .unwrap();
    let first: AccessChallenge =
        protocol::decode(&next_on(&mut inbox, "/challenge").await).unwrap();
    assert_eq!(first.request, handshake_tag(&msg));
    device
        .publish_json(topics::access_request(SSID), &request)
        .await
        .unwrap();
    let again: AccessChallenge =
        protocol::decode(&next_on(&mut inbox, "/challenge").await).unwrap();
    assert_eq!(
        again, first,
        "a retry must get the same session, not a new one"
    );
    stop.cancel();
}

/// The platform's signing key, from its data dir: for tests that play the
/// verifier's part by hand.
fn signing_key(p: &TestPlatform) -> protocol::crypto::PlatformKey {
    let seed =
        std::fs::read_to_string(p.dir.path().join(protocol::layout::SIGNING_KEY_FILE)).unwrap();
    protocol::crypto::PlatformKey::from_seed_hex(seed.trim()).unwrap()
}

/// The hand-played AP's last step: the Wi-Fi password sealed with the
/// handshake's keys for `session`, to device UUID_A; then the device must
/// join with it.
async fn grant_and_join(
    ap: &Bus,
    keys: &protocol::crypto::SessionKeys,
    session: String,
    device: tokio::task::JoinHandle<Result<device_sim::Joined, device_sim::DeviceError>>,
) {
    let context = protocol::onboarding::wifi_seal_context(UUID_A, SSID, &session);
    let granted = AccessGranted {
        uuid: UUID_A.into(),
        ssid: SSID.into(),
        password: String::new(),
        sealed: Some(keys.seal_password(WIFI_PASSWORD, &context)),
        session: Some(session),
    };
    ap.publish_json(
        topics::access_response(UUID_A),
        &AccessResponse::Granted(granted),
    )
    .await
    .unwrap();
    let joined = tokio::time::timeout(Duration::from_secs(10), device)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(joined.password, WIFI_PASSWORD);
}

/// The payload of the next message on a topic ending in `suffix`.
async fn next_on(inbox: &mut mpsc::Receiver<Message>, suffix: &str) -> Vec<u8> {
    let wait = async {
        loop {
            let m = inbox.recv().await.unwrap();
            if m.topic.ends_with(suffix) {
                return m.payload.to_vec();
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .unwrap_or_else(|_| panic!("nothing on */{suffix} within 10 s"))
}

/// The CONNACK code a refused client settled on, as rumqttc names it; a
/// connection closed without a CONNACK (`LinkState::Down`) fails.
async fn connack_refusal(opts: BusOptions, why: &str) -> String {
    let (r, bus, _inbox) = try_connect(opts, &[]).await;
    assert!(r.is_err(), "{why}: admitted");
    match bus.state() {
        LinkState::Refused(code) => code,
        other => panic!("{why}: not refused with a CONNACK: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t1_a_refusal_tells_a_wrong_login_from_a_policy() {
    let p = secure().await;
    p.enroll(UUID_C, "pass-c-123").await;
    let key_c = p.device_key(UUID_C).await;
    let login_c = device_token(&key_c, UUID_C);
    let admin = p.token("admin");
    for (id, user, pass, why, code) in [
        (
            "c1",
            "admin",
            "wrong",
            "a wrong password",
            "BadUserNamePassword",
        ),
        (
            "c2",
            "nobody",
            "x",
            "an unknown user",
            "BadUserNamePassword",
        ),
        (
            UUID_B,
            UUID_B,
            "x",
            "a device not enrolled",
            "BadUserNamePassword",
        ),
        (
            "a+b",
            "admin",
            admin.as_str(),
            "a client id with +",
            "BadClientId",
        ),
        (
            UUID_C,
            "admin",
            admin.as_str(),
            "a role user with a device's id",
            "NotAuthorized",
        ),
        (
            "not-c",
            UUID_C,
            login_c.as_str(),
            "a device with another client id",
            "NotAuthorized",
        ),
    ] {
        assert_eq!(
            connack_refusal(opts(&p, id, user, pass), why).await,
            code,
            "{why}"
        );
    }
    // Wrong logins lock nothing out: the device's own still opens.
    for _ in 0..3 {
        let why = "a wrong device login";
        let code = connack_refusal(opts(&p, UUID_C, UUID_C, "guess"), why).await;
        assert_eq!(code, "BadUserNamePassword");
    }
    let fresh = device_token(&key_c, UUID_C);
    let (ok, _b, _i) = try_connect(opts(&p, UUID_C, UUID_C, &fresh), &[]).await;
    assert!(ok.is_ok(), "wrong logins locked the device out: {ok:?}");
    // A token is good once: replayed, it is refused.
    let why = "a replayed login token";
    let code = connack_refusal(opts(&p, UUID_C, UUID_C, &fresh), why).await;
    assert_eq!(code, "BadUserNamePassword", "{why}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t1_a_gateway_refuses_a_device_moved_away_with_not_authorized() {
    use device_sim::gateway::{stay_homed, HomeConfig, HomeEvent, KnownGateway};
    let p = secure().await;
    p.enroll(UUID_A, "pass-a-123").await;
    let device_key = p.device_key(UUID_A).await;
    let login = device_token(&device_key, UUID_A);
    // The device's signed assignment, as the registry answers it.
    let (_, reg_bus, mut answers) = try_connect(
        opts(&p, UUID_A, UUID_A, &login),
        &[&topics::device_gateway(UUID_A)],
    )
    .await;
    reg_bus
        .publish_json(
            topics::REGISTRY_QUERY,
            &protocol::gateway::GatewayQuery {
                device_id: UUID_A.into(),
                device_key: Some(device_key.public_hex()),
            },
        )
        .await
        .unwrap();
    let token = next_message(&mut answers.0, 5).await.payload;
    let token = String::from_utf8(token.to_vec()).unwrap();
    drop((reg_bus, answers));
    let assigned: GatewayAssigned = protocol::decode(token.as_bytes()).unwrap();
    let (home, elsewhere) = match (&p.gateways()[..], &assigned.gateway_id) {
        ([a, b], id) if a.0 == *id => (a.clone(), b.clone()),
        ([a, b], _) => (b.clone(), a.clone()),
        other => panic!("two gateways expected: {other:?}"),
    };

    // Its own gateway: a bad signed assignment is a bad login.
    let gw_opts =
        |addr: &str, pass: &str| p.options_at(addr, UUID_A).with_credentials(UUID_A, pass);
    let code = connack_refusal(gw_opts(&home.1, "{}"), "a junk assignment").await;
    assert_eq!(code, "BadUserNamePassword");
    // Another gateway: not assigned there, whatever it shows.
    let code = connack_refusal(gw_opts(&elsewhere.1, &token), "another gateway").await;
    assert_eq!(code, "NotAuthorized");

    // Moved while offline, it comes back to the gateway it remembers with
    // its old, valid assignment: refused by policy, so it asks again.
    let registry = p.registry().await;
    registry
        .request(RegistryOp::Remap {
            device_id: UUID_A.into(),
            gateway_id: elsewhere.0.clone(),
        })
        .await
        .unwrap();
    registry.close().await;
    let mut config =
        HomeConfig::new(p.broker(), UUID_A).secure(p.platform_key().unwrap(), device_key);
    config.tls = p.device_tls(UUID_A);
    config.last_known = Some(KnownGateway {
        gateway_id: home.0.clone(),
        address: home.1.clone(),
        epoch: assigned.epoch,
        token: Some(token),
    });
    let (tx, mut events) = mpsc::unbounded_channel();
    let stop = CancellationToken::new();
    let token = stop.clone();
    let task = tokio::spawn(async move { stay_homed(&config, &tx, &token).await });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let reason = loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(HomeEvent::Refused { gateway_id, reason })) => {
                assert_eq!(gateway_id, home.0);
                break reason;
            }
            Ok(Some(HomeEvent::Connected { gateway_id, .. })) => {
                panic!("connected to {gateway_id} before any refusal")
            }
            Ok(Some(_)) => {}
            other => panic!("no refusal in time: {other:?}"),
        }
    };
    assert!(reason.contains("NotAuthorized"), "{reason}");
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(HomeEvent::Connected { gateway_id, .. })) => {
                assert_eq!(gateway_id, elsewhere.0);
                break;
            }
            Ok(Some(_)) => {}
            other => panic!("not home in time: {other:?}"),
        }
    }
    stop.cancel();
    let _ = task.await;
}

// ---------------------------------------------------------------------
// The verifier answers only a device's own request, with its own half of
// the handshake (pass_tmp never leaves it): the attacks of the
// AP-credential harvest, each against the secure mode.
// ---------------------------------------------------------------------

/// A device's access request with a fresh handshake and commitment, as
/// device-sim makes it, with what the device keeps to answer its
/// challenge.
struct Asked {
    request: protocol::onboarding::AccessRequest,
    /// The handshake's tag: what the AP's question and the ticket name.
    tag: String,
    handshake: protocol::crypto::DeviceHandshake,
    /// Opens the request's commitment: goes in the proof.
    opening: String,
}

fn device_asks(uuid: &str, pass_tmp: &str) -> Asked {
    let (handshake, msg) =
        protocol::crypto::DeviceHandshake::start(&uuid.to_ascii_lowercase(), SSID, pass_tmp);
    let tag = protocol::crypto::handshake_tag(&msg);
    let (opening, commit) = protocol::crypto::handshake_commitment();
    let request = protocol::onboarding::AccessRequest {
        uuid: uuid.into(),
        ssid: SSID.into(),
        pass_tmp: String::new(),
        spake2: Some(msg),
        commit: Some(commit),
    };
    Asked {
        request,
        tag,
        handshake,
        opening,
    }
}

/// [`device_asks`]'s request and tag alone.
fn device_request(uuid: &str, pass_tmp: &str) -> (protocol::onboarding::AccessRequest, String) {
    let asked = device_asks(uuid, pass_tmp);
    (asked.request, asked.tag)
}

/// An AP's question for the device request `tag` of `uuid` on `ssid`.
fn question(
    request_id: &str,
    ap_id: &str,
    uuid: &str,
    ssid: &str,
    tag: &str,
    ap_key: &str,
) -> protocol::onboarding::VerifyRequest {
    protocol::onboarding::VerifyRequest {
        request_id: request_id.into(),
        ap_id: ap_id.into(),
        uuid: uuid.into(),
        ap_key: Some(ap_key.into()),
        ssid: Some(ssid.into()),
        request: Some(tag.into()),
    }
}

/// The verifier's answers on `inbox`, by request id, until all of `ids`
/// are in.
async fn answers_to(
    inbox: &mut mpsc::Receiver<Message>,
    ids: &[String],
) -> std::collections::HashMap<String, VerifyOutcome> {
    let mut out = std::collections::HashMap::new();
    let wait = async {
        while out.len() < ids.len() {
            let m = inbox.recv().await.unwrap();
            if let Ok(r) = protocol::decode::<VerifyResponse>(&m.payload) {
                if ids.contains(&r.request_id) {
                    out.insert(r.request_id, r.outcome);
                }
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(15), wait)
        .await
        .unwrap_or_else(|_| panic!("{} of {} answers", out.len(), ids.len()));
    out
}

fn code_of(outcome: &VerifyOutcome) -> Option<AccessErrorCode> {
    match outcome {
        VerifyOutcome::Failed { error, .. } => Some(error.code),
        _ => None,
    }
}

/// The issue's attack: with one AP's credential, ask about every enrolled
/// UUID with the attacker's own key, and report `granted` after each. No
/// device asked anything, so nothing is answered: not even a challenge
/// (a handshake to test a guess of pass_tmp against) for 0 of 20, where
/// pass_tmp itself was once released for all 20. Asking under another
/// AP's id, or reporting for one, is cut off by the ACL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn harvest_an_ap_gets_nothing_for_a_device_that_did_not_ask() {
    let p = secure().await;
    let devices = manifest::generate(20, 77);
    import(&p, &devices).await;
    let (ap, mut inbox) = ap_session(&p, "ap-harvest", SSID).await;
    let attacker_key = protocol::crypto::ApKey::generate();
    let mut registered_ids = Vec::new();
    for (i, d) in devices.iter().enumerate() {
        // A made-up handshake tag: no device made it.
        let ap_id = "ap-harvest".to_owned();
        let (_, tag) = device_request(&d.uuid, "anything");
        let id = format!("harvest-{i}");
        ap.publish_json(
            topics::VERIFY_REQUEST,
            &question(&id, &ap_id, &d.uuid, SSID, &tag, &attacker_key.public_b64()),
        )
        .await
        .unwrap();
        let granted = protocol::onboarding::OutcomeReport {
            uuid: d.uuid.clone(),
            outcome: protocol::onboarding::AccessOutcome::Granted,
            latency_ms: 1,
        };
        ap.publish_json(topics::ap_outcome(&ap_id), &granted)
            .await
            .unwrap();
        registered_ids.push(id);
    }
    // The verifier takes questions in order, and every registered one is
    // answered last (it waits for a device request that never comes):
    // once they are all in, every question has been decided.
    let mut answered = Vec::new();
    let wait = async {
        while answered.len() < registered_ids.len() {
            let m = inbox.0.recv().await.unwrap();
            let r: VerifyResponse = protocol::decode(&m.payload).unwrap();
            answered.push((m.topic, r));
        }
    };
    tokio::time::timeout(Duration::from_secs(15), wait)
        .await
        .expect("the registered AP's questions were answered");
    for (topic, r) in &answered {
        assert_eq!(topic, &topics::verify_response("ap-harvest"), "{r:?}");
        assert!(registered_ids.contains(&r.request_id), "{r:?}");
        assert_eq!(
            code_of(&r.outcome),
            Some(AccessErrorCode::NotAuthorized),
            "a harvester was answered: {r:?}"
        );
    }
    assert!(inbox.0.try_recv().is_err(), "answered twice");
    // Under another AP's id, or a made-up one: cut off before the verifier.
    for ap_id in ["ap-1", "ap-fresh"] {
        let (ap, _inbox) = ap_session(&p, "ap-harvest", SSID).await;
        let (_, tag) = device_request(&devices[0].uuid, "anything");
        ap.publish_json(
            topics::VERIFY_REQUEST,
            &question(
                "fresh",
                ap_id,
                &devices[0].uuid,
                SSID,
                &tag,
                &attacker_key.public_b64(),
            ),
        )
        .await
        .unwrap();
        assert!(cut_off(&ap, 5).await, "asked as {ap_id}");
    }
    // The real devices are unharmed: one joins through a real AP.
    let stop = CancellationToken::new();
    let _ap = p.start_ap(p.ap_config("ap-1", true), &stop).await;
    let d = &devices[0];
    let joined = onboard(p.device_config(&d.uuid, &d.pass_tmp, true))
        .await
        .unwrap();
    assert_eq!(joined.password, WIFI_PASSWORD);
    stop.cancel();
}

/// One request from the device itself is answered once, to one AP (here
/// two registered APs of its SSID race for it, one of them asking before
/// the request even reached the verifier): with the verifier's half of
/// the handshake, which holds nothing of pass_tmp, and the platform's
/// ticket for it, which the device checks. The same AP asking again gets
/// the same challenge (no new handshake, no new guess); another AP gets
/// nothing; a new request from the device is a new challenge, and the
/// device's proof of it gets the AP that relayed it the session's Wi-Fi
/// key, the same the device derived, and nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_request_is_answered_once() {
    use protocol::onboarding::{open_wifi_key, AccessProof, SealedFor};
    let p = secure().await;
    p.enroll(UUID_A, "pass-a-123").await;
    let (ax, mut inbox_x) = ap_session(&p, "ap-x", SSID).await;
    let (ay, mut inbox_y) = ap_session(&p, "ap-y", SSID).await;
    let onboarding = protocol::logins::ONBOARDING_USER;
    let client_id = protocol::logins::onboarding_client_id(UUID_A);
    let (ok, device, _d) = try_connect(opts(&p, &client_id, onboarding, ""), &[]).await;
    ok.unwrap();
    let key_x = protocol::crypto::ApKey::generate();
    let key_y = protocol::crypto::ApKey::generate();
    let (request, tag) = device_request(UUID_A, "pass-a-123");

    // ap-x asks first: its question waits for the device's request.
    ax.publish_json(
        topics::VERIFY_REQUEST,
        &question("x1", "ap-x", UUID_A, SSID, &tag, &key_x.public_b64()),
    )
    .await
    .unwrap();
    device
        .publish_json(topics::access_request(SSID), &request)
        .await
        .unwrap();
    let first = answers_to(&mut inbox_x.0, &["x1".into()]).await;
    let challenge = &first["x1"];
    let platform = p.platform_key().unwrap();
    assert_challenge_for(&platform, challenge, "ap-x", &tag, "pass-a-123");

    // The same request again, from the other AP: nothing. From the same
    // AP (its session lost to a restart, say): the same challenge again,
    // which gives it nothing it did not have and counts for nothing more.
    device
        .publish_json(topics::access_request(SSID), &request)
        .await
        .unwrap();
    for (bus, id, ap_id, key) in [(&ay, "y1", "ap-y", &key_y), (&ax, "x2", "ap-x", &key_x)] {
        bus.publish_json(
            topics::VERIFY_REQUEST,
            &question(id, ap_id, UUID_A, SSID, &tag, &key.public_b64()),
        )
        .await
        .unwrap();
    }
    let other_ap = answers_to(&mut inbox_y.0, &["y1".into()]).await;
    assert_eq!(
        code_of(&other_ap["y1"]),
        Some(AccessErrorCode::NotAuthorized),
        "{other_ap:?}"
    );
    let same_ap = answers_to(&mut inbox_x.0, &["x2".into()]).await;
    assert_eq!(&same_ap["x2"], challenge, "not the same challenge again");

    // A new request from the device is a new challenge; the device's
    // proof of it is judged, and the verdict goes to the AP that relayed
    // it, for its latest question.
    let asked = device_asks(UUID_A, "pass-a-123");
    device
        .publish_json(topics::access_request(SSID), &asked.request)
        .await
        .unwrap();
    ay.publish_json(
        topics::VERIFY_REQUEST,
        &question("y2", "ap-y", UUID_A, SSID, &asked.tag, &key_y.public_b64()),
    )
    .await
    .unwrap();
    let third = answers_to(&mut inbox_y.0, &["y2".into()]).await;
    assert_challenge_for(&platform, &third["y2"], "ap-y", &asked.tag, "pass-a-123");
    let VerifyOutcome::Challenge {
        session, spake2, ..
    } = &third["y2"]
    else {
        unreachable!()
    };
    assert_ne!(&third["y2"], challenge, "a new request, a new challenge");
    let keys = asked.handshake.finish(spake2, session).unwrap();
    let proof = AccessProof {
        uuid: UUID_A.into(),
        session: session.clone(),
        proof: keys.device_proof(),
        request: Some(asked.tag.clone()),
        enroll: Some(protocol::crypto::seal_enrollment(
            &platform,
            &p.device_own_key(UUID_A),
            UUID_A,
            &keys,
            &asked.tag,
        )),
        opening: Some(asked.opening),
    };
    device
        .publish_json(topics::access_proof(SSID), &proof)
        .await
        .unwrap();
    let verdict = answers_to(&mut inbox_y.0, &["y2".into()]).await;
    let VerifyOutcome::Proved {
        session: proved,
        sealed_key,
        sig,
    } = &verdict["y2"]
    else {
        panic!("the device's proof was not proved: {verdict:?}");
    };
    assert_eq!(proved, session);
    let for_ = SealedFor {
        request_id: "y2",
        uuid: UUID_A,
        ap_id: "ap-y",
        session,
    };
    let wifi = open_wifi_key(&platform, &key_y, for_, sealed_key, sig).unwrap();
    assert_eq!(wifi.to_bytes(), keys.wifi_key().to_bytes());
    let other_ap_key = SealedFor {
        ap_id: "ap-x",
        ..for_
    };
    assert!(open_wifi_key(&platform, &key_x, other_ap_key, sealed_key, sig).is_err());
}

/// That `outcome` is the verifier's challenge for the device request
/// `tag` of UUID_A, relayed by `ap_id`: the platform's ticket checks for
/// exactly this request, session and handshake message, and nothing in
/// it is pass_tmp (no field of that name, nor its value).
fn assert_challenge_for(
    platform: &protocol::crypto::PlatformPublicKey,
    outcome: &VerifyOutcome,
    ap_id: &str,
    tag: &str,
    pass_tmp: &str,
) {
    use protocol::onboarding::TicketFor;
    let VerifyOutcome::Challenge {
        session,
        spake2,
        ticket,
    } = outcome
    else {
        panic!("the device's own request got no challenge: {outcome:?}");
    };
    let json = String::from_utf8(protocol::encode(outcome)).unwrap();
    for secret in ["pass_tmp", pass_tmp] {
        assert!(!json.contains(secret), "{secret:?} in the answer: {json}");
    }
    assert_eq!(ticket.ap_id, ap_id);
    let what = TicketFor {
        uuid: UUID_A,
        ssid: SSID,
        request: tag,
        session,
        spake2,
    };
    let now = protocol::now_ms();
    ticket.check(platform, what, now).unwrap();
    let other_request = TicketFor {
        request: "b3RoZXI",
        ..what
    };
    assert!(ticket.check(platform, other_request, now).is_err());
    let own_message = TicketFor {
        spake2: "b3RoZXI",
        ..what
    };
    assert!(
        ticket.check(platform, own_message, now).is_err(),
        "the ticket would vouch for an AP's own handshake message"
    );
}

/// An AP gets nothing for a device request on an SSID it is not
/// registered for, nor for one it serves that the device did not ask.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ap_not_serving_the_ssid_gets_nothing() {
    let p = secure().await;
    p.enroll(UUID_A, "pass-a-123").await;
    let (aps, mut inbox) = ap_session(&p, "ap-elsewhere", "other-wifi").await;
    let (here, mut inbox_here) = ap_session(&p, "ap-here", SSID).await;
    let onboarding = protocol::logins::ONBOARDING_USER;
    let client_id = protocol::logins::onboarding_client_id(UUID_A);
    let (ok, device, _d) = try_connect(opts(&p, &client_id, onboarding, ""), &[]).await;
    ok.unwrap();
    let (request, tag) = device_request(UUID_A, "pass-a-123");
    device
        .publish_json(topics::access_request(SSID), &request)
        .await
        .unwrap();
    let key = protocol::crypto::ApKey::generate().public_b64();
    // (An AP id nobody registered gets no answer at all: see the harvest.)
    let asks = [
        ("e1", "ap-elsewhere", SSID),
        ("e2", "ap-elsewhere", "other-wifi"),
    ];
    for (id, ap_id, ssid) in asks {
        aps.publish_json(
            topics::VERIFY_REQUEST,
            &question(id, ap_id, UUID_A, ssid, &tag, &key),
        )
        .await
        .unwrap();
    }
    let ids: Vec<String> = asks.iter().map(|(id, _, _)| id.to_string()).collect();
    let answers = answers_to(&mut inbox.0, &ids).await;
    for (id, outcome) in &answers {
        assert_eq!(
            code_of(outcome),
            Some(AccessErrorCode::NotAuthorized),
            "{id}: {outcome:?}"
        );
    }
    // The request itself was good: an AP registered for its SSID gets it.
    here.publish_json(
        topics::VERIFY_REQUEST,
        &question("h1", "ap-here", UUID_A, SSID, &tag, &key),
    )
    .await
    .unwrap();
    let answer = answers_to(&mut inbox_here.0, &["h1".into()]).await;
    let platform = p.platform_key().unwrap();
    assert_challenge_for(&platform, &answer["h1"], "ap-here", &tag, "pass-a-123");
}

/// Outcome reports are metrics only: an attacker whose guesses are judged
/// wrong and who reports `granted` after each (here as an admin, who may
/// publish anything, and as the AP itself) is still paced after
/// `max_failures` (3) wrong proofs: the reports cleared nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outcome_reports_clear_no_failures() {
    let p = secure().await; // max_failures = 3
    let stop = CancellationToken::new();
    // The AP's credential, for the AP's own reports.
    let mut ap_config = p.ap_config("ap-1", true);
    ap_config.password = p.register_ap(&ap_config).await;
    let credential = ap_config.password.clone();
    let _ap = ap_sim::start(ap_config, stop.clone()).await.unwrap();
    p.enroll(UUID_B, "pass-b-123").await;
    let (_, mut answers, _t) = p.client(&[topics::access_response(UUID_B)]).await;
    let (ok, reporter, _r) =
        try_connect(opts(&p, "reporter", "admin", &p.token("admin")), &[]).await;
    ok.unwrap();
    let ap_user = protocol::logins::ap_login("ap-1");
    let (ok, ap_reporter, _a) = try_connect(
        opts(&p, &format!("{ap_user}.reports"), &ap_user, &credential),
        &[],
    )
    .await;
    ok.unwrap();
    let granted = protocol::onboarding::OutcomeReport {
        uuid: UUID_B.into(),
        outcome: protocol::onboarding::AccessOutcome::Granted,
        latency_ms: 1,
    };
    for guess in ["g1", "g2", "g3"] {
        guess_fails(&p, UUID_B, guess).await;
        assert!(pace_slots(&mut answers, 0, 1).await.is_empty());
        for bus in [&reporter, &ap_reporter] {
            bus.publish_json(topics::ap_outcome("ap-1"), &granted)
                .await
                .unwrap();
        }
    }
    paced_guess_beside_the_device(&p, &mut answers, UUID_B, "pass-b-123").await;
    stop.cancel();
}

/// A challenge that does not carry the platform's ticket for this
/// device, SSID, handshake, session and handshake message (none, another
/// key's, another request's, SSID's, device's, session's, an expired one,
/// or the verifier's real ticket beside another handshake message) is
/// ignored: the device keeps its handshake and answers the real one. The
/// AP and the verifier are played by hand; proofs
/// arrive in the order the device sends them, so a proof for a forged
/// challenge would come first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_challenge_without_a_platform_ticket_is_not_spent() {
    use protocol::crypto::{handshake_tag, random_b64, verifier_handshake, PlatformKey};
    use protocol::onboarding::{AccessChallenge, AccessProof, AccessRequest, Ticket, TicketFor};

    /// What is wrong with a forged challenge's ticket.
    #[derive(Debug, Clone, Copy)]
    enum Forged {
        NoTicket,
        StrangersKey,
        OtherRequest,
        OtherSsid,
        OtherUuid,
        Expired,
        OtherSession,
        /// The platform's real ticket for the verifier's message, on a
        /// challenge carrying another (an AP's own handshake).
        OtherMessage,
    }

    let p = secure().await;
    let platform = signing_key(&p);
    p.enroll(UUID_A, "pass-a-123").await;
    let (ap, mut inbox, _t) = p
        .client(&[topics::access_request(SSID), topics::access_proof(SSID)])
        .await;
    let config = p.device_config(UUID_A, "pass-a-123", true);
    let (tx, _events) = mpsc::unbounded_channel();
    let stop = CancellationToken::new();
    let token = stop.clone();
    let device = tokio::spawn(async move { device_sim::onboard(&config, &tx, None, &token).await });

    let first: AccessRequest = protocol::decode(&next_on(&mut inbox, "/request").await).unwrap();
    let msg = first.spake2.unwrap();
    let tag = handshake_tag(&msg);
    let later = protocol::now_ms() + 60_000;
    let stranger = PlatformKey::generate();
    for forged in [
        Forged::NoTicket,
        Forged::StrangersKey,
        Forged::OtherRequest,
        Forged::OtherSsid,
        Forged::OtherUuid,
        Forged::Expired,
        Forged::OtherSession,
        Forged::OtherMessage,
    ] {
        // Each forged challenge is a real handshake keyed by the real
        // pass_tmp: the worst case, someone who has it but no ticket.
        let session = random_b64(16);
        let (_, spake2) = verifier_handshake(UUID_A, SSID, "pass-a-123", &msg, &session).unwrap();
        let (_, verifiers) =
            verifier_handshake(UUID_A, SSID, "pass-a-123", &msg, &session).unwrap();
        let other_session = random_b64(16);
        let what = TicketFor {
            uuid: UUID_A,
            ssid: SSID,
            request: &tag,
            session: &session,
            spake2: &spake2,
        };
        let issue = |what| Some(Ticket::issue(&platform, what, "ap-x", later));
        let ticket = match forged {
            Forged::NoTicket => None,
            Forged::StrangersKey => Some(Ticket::issue(&stranger, what, "ap-x", later)),
            Forged::OtherRequest => issue(TicketFor {
                request: "b3RoZXI",
                ..what
            }),
            Forged::OtherSsid => issue(TicketFor {
                ssid: "other-wifi",
                ..what
            }),
            Forged::OtherUuid => issue(TicketFor {
                uuid: UUID_B,
                ..what
            }),
            Forged::Expired => Some(Ticket::issue(
                &platform,
                what,
                "ap-x",
                protocol::now_ms() - 1,
            )),
            Forged::OtherSession => issue(TicketFor {
                session: &other_session,
                ..what
            }),
            Forged::OtherMessage => issue(TicketFor {
                spake2: &verifiers,
                ..what
            }),
        };
        let forged = AccessChallenge {
            uuid: UUID_A.into(),
            ssid: SSID.into(),
            request: tag.clone(),
            session,
            spake2,
            ticket,
        };
        ap.publish_json(topics::access_challenge(UUID_A), &forged)
            .await
            .unwrap();
    }
    let session = random_b64(16);
    let (keys, spake2) = verifier_handshake(UUID_A, SSID, "pass-a-123", &msg, &session).unwrap();
    let what = TicketFor {
        uuid: UUID_A,
        ssid: SSID,
        request: &tag,
        session: &session,
        spake2: &spake2,
    };
    let ticket = Ticket::issue(&platform, what, "ap-x", later);
    let real = AccessChallenge {
        uuid: UUID_A.into(),
        ssid: SSID.into(),
        request: tag.clone(),
        session: session.clone(),
        spake2,
        ticket: Some(ticket),
    };
    ap.publish_json(topics::access_challenge(UUID_A), &real)
        .await
        .unwrap();
    let proof: AccessProof = protocol::decode(&next_on(&mut inbox, "/proof").await).unwrap();
    assert_eq!(
        proof.session, session,
        "the device answered a forged challenge"
    );
    assert!(keys.check_device_proof(&proof.proof));
    assert_eq!(proof.request.as_deref(), Some(tag.as_str()));
    assert!(proof.enroll.is_some(), "no enrollment in the proof");
    grant_and_join(&ap, &keys, session, device).await;
    stop.cancel();
}

/// A device registers its own key in its proof, sealed to the platform
/// and vouched for by the handshake's key. What the verifier does with
/// what it receives: a proof for a request it never challenged registers
/// nothing (even one whose enrollment is vouched for by a real handshake
/// keyed by the right pass_tmp, the worst case); an AP may not publish a
/// proof at all; the device's own proof registers its key, before the AP
/// is told to grant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_device_key_is_registered_from_the_proof_and_no_ap_can_inject_one() {
    use protocol::crypto::{random_b64, seal_enrollment, verifier_handshake, DeviceKey};
    use protocol::onboarding::AccessProof;

    let p = secure().await;
    let platform = signing_key(&p);
    p.enroll(UUID_A, "pass-a-123").await;
    let admin = p.admin().await;
    let revoke = || AdminOp::RevokeKey {
        uuid: UUID_A.into(),
    };
    let (sniffer, mut proofs, _t) = p.client(&[topics::access_proof(SSID)]).await;

    // A proof the verifier never asked for, from a handshake of the
    // injector's own keyed by the real pass_tmp, its enrollment vouched
    // for by that handshake's keys, with no opening: nothing is
    // registered.
    let rogue = DeviceKey::generate();
    let asked = device_asks(UUID_A, "pass-a-123");
    let session = random_b64(16);
    let msg = asked.request.spake2.as_deref().unwrap();
    let (keys, _) = verifier_handshake(UUID_A, SSID, "pass-a-123", msg, &session).unwrap();
    let injected = AccessProof {
        uuid: UUID_A.into(),
        session,
        proof: keys.device_proof(),
        request: Some(asked.tag.clone()),
        enroll: Some(seal_enrollment(
            &platform.public(),
            &rogue,
            UUID_A,
            &keys,
            &asked.tag,
        )),
        opening: None,
    };
    sniffer
        .publish_json(topics::access_proof(SSID), &injected)
        .await
        .unwrap();
    // An AP may not publish on a device's proof topic at all.
    let (ap, injector) = ap_session(&p, "ap-injector", SSID).await;
    ap.publish_json(topics::access_proof(SSID), &injected)
        .await
        .unwrap();
    assert!(cut_off(&ap, 5).await, "an AP may publish a device's proof");
    drop(injector);
    let _ = next_on(&mut proofs, "/proof").await; // the injected one
    assert!(
        admin.request(revoke()).await.is_err(),
        "a key was registered from a proof nobody asked for"
    );

    // The device's own onboarding registers its own key.
    let stop = CancellationToken::new();
    let _ap = p.start_ap(p.ap_config("ap-1", true), &stop).await;
    let config = p.device_config(UUID_A, "pass-a-123", true);
    let own_key = config.device_key.public_hex();
    let joined = onboard(config).await.unwrap();
    assert_eq!(joined.password, WIFI_PASSWORD);
    let sent: AccessProof = protocol::decode(&next_on(&mut proofs, "/proof").await).unwrap();
    let request = sent.request.unwrap();
    let claim = platform
        .open_enrollment(&sent.enroll.unwrap(), UUID_A, &request)
        .unwrap();
    assert_eq!(claim.device_key_hex(), own_key);
    // The verifier registered it and flushed it before the AP was told to
    // grant: it is there by now (polled briefly, for the admin's own
    // round trip).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    loop {
        match admin.request(revoke()).await {
            Ok(_) => break,
            Err(_) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(e) => panic!("the device's key was not registered: {e}"),
        }
    }
    assert!(admin.request(revoke()).await.is_err(), "one key, revoked");
    admin.close().await;
    stop.cancel();
}

/// What counts toward a UUID's pace is a proof judged wrong, once: not
/// the challenge it answered, nor the enrollment inside it (sealed with
/// the wrong handshake's key), nor challenges nobody proved. With
/// `max_failures = 2`: three requests challenged and never proved (a
/// stranger's, say) pace nothing; two guessers' onboardings at once, each
/// with its proof and enrollment, are not paced either, and are one
/// failure each: the pace that follows is its first step, and the real
/// device still joins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_proof_counts_once_and_unproved_challenges_not_at_all() {
    let mut config = secure_test_config();
    config.security.max_failures = 2;
    let p = TestPlatform::start_config(config, broker::StartOptions::default()).await;
    p.enroll(UUID_A, "pass-a-123").await;
    let (_, mut answers, _t) = p.client(&[topics::access_response(UUID_A)]).await;

    // Requests nobody proves, challenged through an AP played by hand.
    let (stranger, _s, _t2) = p.client(&[]).await;
    let (ap, mut inbox) = ap_session(&p, "ap-hand", SSID).await;
    let ap_key = protocol::crypto::ApKey::generate().public_b64();
    for i in 0..3 {
        let (request, tag) = device_request(UUID_A, "a-guess");
        stranger
            .publish_json(topics::access_request(SSID), &request)
            .await
            .unwrap();
        let id = format!("unproved-{i}");
        ap.publish_json(
            topics::VERIFY_REQUEST,
            &question(&id, "ap-hand", UUID_A, SSID, &tag, &ap_key),
        )
        .await
        .unwrap();
        let answer = answers_to(&mut inbox.0, std::slice::from_ref(&id)).await;
        assert!(
            matches!(answer[&id], VerifyOutcome::Challenge { .. }),
            "challenge {i}: {answer:?}"
        );
    }

    // Two guesses at once through the real AP: neither is paced (had the
    // challenges counted, one would be), and once the first has failed
    // the second is not paced either (had a wrong proof counted twice, it
    // would be).
    let stop = CancellationToken::new();
    let _ap = p.start_ap(p.ap_config("ap-1", true), &stop).await;
    tokio::join!(guess_fails(&p, UUID_A, "g1"), guess_fails(&p, UUID_A, "g2"));
    let slots = pace_slots(&mut answers, 0, 2).await;
    assert!(slots.is_empty(), "paced before max_failures: {slots:?}");
    // Two failures: paced from here on, a step of a second.
    paced_guess_beside_the_device(&p, &mut answers, UUID_A, "pass-a-123").await;
    stop.cancel();
}

//! A simulated Wi-Fi access point.
//!
//! For each access request on `wlan/{ssid}/access/request` of an SSID it
//! serves, the AP asks the verifier for the UUID's pass_tmp, compares it
//! with the device's in constant time, prompts its user, and on accept
//! answers the device with the network password. Each request runs in its
//! own task, so a prompt waiting for a human blocks nobody else.
//!
//! Confirmation comes from `auto_confirm`, from `ap/{ap_id}/confirm`
//! messages, or from whoever holds [`Confirmations`] (the binary's
//! terminal reader). After each answer it decides, the AP reports the
//! outcome on `ap/{ap_id}/outcome`, for the platform's metrics.
//!
//! One process can run many APs: call [`start`] once per AP. [`aps`]
//! reads the `--aps` file that lists them.

#![forbid(unsafe_code)]

pub mod aps;

use bus::{Bus, BusError, BusOptions, LinkState, Message, Pending};
use protocol::crypto::{
    ap_handshake, handshake_tag, random_b64, ApKey, PlatformPublicKey, SessionKeys,
};
use protocol::onboarding::{
    check_ssid, check_wifi_password, open_verify_answer, wifi_seal_context, AccessChallenge,
    AccessGranted, AccessOutcome, AccessProof, AccessRequest, AccessResponse, ApConfirm, ApPrompt,
    OutcomeReport, VerifyOutcome, VerifyRequest, VerifyResponse,
};
use protocol::{decode, peek_str_field, topics, AccessErrorCode, DeviceUuid, Segment};
use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

#[derive(Debug, thiserror::Error)]
pub enum ApError {
    #[error("invalid {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error("AP task panicked: {0}")]
    Panicked(String),
}

/// One network this AP serves.
#[derive(Debug, Clone)]
pub struct Network {
    pub ssid: String,
    pub password: String,
}

#[derive(Debug, Clone)]
pub struct ApConfig {
    pub broker: String,
    pub ap_id: String,
    pub networks: Vec<Network>,
    pub auto_confirm: bool,
    /// How long a prompt waits for its user before the device gets `timeout`.
    pub confirm_timeout: Duration,
    /// How long to wait for the verifier's answer.
    pub verify_timeout: Duration,
    pub username: String,
    pub password: String,
    /// Secure mode: the platform's public key, which signs the verifier's
    /// answers. None: walkthrough mode (plaintext pass_tmp and password).
    pub platform_key: Option<PlatformPublicKey>,
}

impl ApConfig {
    pub fn new(
        broker: impl Into<String>,
        ap_id: impl Into<String>,
        networks: Vec<Network>,
    ) -> Self {
        ApConfig {
            broker: broker.into(),
            ap_id: ap_id.into(),
            networks,
            auto_confirm: false,
            confirm_timeout: Duration::from_secs(60),
            verify_timeout: Duration::from_secs(5),
            username: "ap".into(),
            password: String::new(),
            platform_key: None,
        }
    }

    fn validate(&self) -> Result<(), ApError> {
        let invalid = |field, reason: String| ApError::Invalid { field, reason };
        Segment::parse(&self.ap_id).map_err(|e| invalid("ap id", e.to_string()))?;
        protocol::check_client_id(&self.ap_id).map_err(|e| invalid("ap id", e.to_string()))?;
        if self.networks.is_empty() {
            return Err(invalid("networks", "at least one SSID is needed".into()));
        }
        for n in &self.networks {
            check_ssid(&n.ssid).map_err(|e| invalid("ssid", format!("{:?} {e}", n.ssid)))?;
            check_wifi_password(&n.password)
                .map_err(|e| invalid("password", format!("for {:?} {e}", n.ssid)))?;
        }
        Ok(())
    }
}

/// What the AP tells its user (the binary prints these).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApEvent {
    /// A verified device wants to join; answer through [`Confirmations`]
    /// or `ap/{ap_id}/confirm`.
    Prompt { uuid: String, ssid: String },
    /// A request was answered.
    Answered {
        uuid: String,
        outcome: Result<(), AccessErrorCode>,
        elapsed: Duration,
    },
}

/// Pending prompts, keyed by the device's canonical UUID.
#[derive(Clone, Default)]
pub struct Confirmations {
    waiters: Arc<Pending<String, bool>>,
}

impl Confirmations {
    /// Answers the prompt for `uuid`. False if no prompt was waiting.
    pub fn confirm(&self, uuid: &str, accept: bool) -> bool {
        match DeviceUuid::parse(uuid) {
            Ok(id) => self.waiters.complete(&id.key().to_owned(), accept),
            Err(_) => false,
        }
    }

    pub fn is_pending(&self, uuid: &str) -> bool {
        DeviceUuid::parse(uuid).is_ok_and(|id| self.waiters.contains(&id.key().to_owned()))
    }
}

/// A running AP.
pub struct Ap {
    pub confirmations: Confirmations,
    pub events: mpsc::UnboundedReceiver<ApEvent>,
    task: tokio::task::JoinHandle<()>,
}

impl Ap {
    /// Waits until the AP has stopped (after shutdown) and its in-flight
    /// requests are answered.
    pub async fn join(self) -> Result<(), ApError> {
        self.task
            .await
            .map_err(|e| ApError::Panicked(e.to_string()))
    }
}

struct Shared {
    config: ApConfig,
    passwords: HashMap<String, String>,
    bus: Bus,
    verifications: Pending<String, VerifyResponse>,
    /// Secure mode: devices' proofs, by session id.
    proofs: Pending<String, AccessProof>,
    /// Secure mode: the key the verifier seals pass_tmp to.
    ap_key: ApKey,
    confirmations: Confirmations,
    /// UUIDs with a request in progress: a device's retries while its
    /// prompt is open must not raise a second prompt. Secure mode: with
    /// the challenge sent for it, which a retry of the same handshake gets
    /// again (the first may have been lost).
    in_flight: Mutex<HashMap<String, Option<AccessChallenge>>>,
    /// Answers given in the last [`REPEAT_WINDOW`]: a device's re-send
    /// that crossed its answer gets the same answer again instead of a
    /// second prompt for the AP's user.
    recent: Mutex<HashMap<String, Recent>>,
    events: mpsc::UnboundedSender<ApEvent>,
}

/// How long an answer is remembered for repeats of the same request.
pub const REPEAT_WINDOW: Duration = Duration::from_secs(10);

struct Recent {
    pass_tmp: String,
    response: AccessResponse,
    at: Instant,
}

/// Connects, subscribes, and serves until `shutdown`.
pub async fn start(config: ApConfig, shutdown: CancellationToken) -> Result<Ap, ApError> {
    config.validate()?;
    let mut filters: Vec<String> = config
        .networks
        .iter()
        .map(|n| topics::access_request(&n.ssid))
        .collect();
    if config.platform_key.is_some() {
        filters.extend(
            config
                .networks
                .iter()
                .map(|n| topics::access_proof(&n.ssid)),
        );
    }
    filters.push(topics::verify_response(&config.ap_id));
    filters.push(topics::ap_confirm(&config.ap_id));
    let opts = BusOptions::new(&config.broker, format!("ap.{}", config.ap_id))?
        .with_credentials(&config.username, &config.password);
    let link = CancellationToken::new();
    let (bus, inbox) = Bus::connect(opts, filters, link.clone());
    if let Err(e) = bus.ready(Duration::from_secs(10)).await {
        link.cancel();
        return Err(e.into());
    }
    info!(ap_id = %config.ap_id, ssids = ?config.networks.iter().map(|n| &n.ssid).collect::<Vec<_>>(), "AP serving");

    let (events_tx, events) = mpsc::unbounded_channel();
    let confirmations = Confirmations::default();
    let shared = Arc::new(Shared {
        passwords: config
            .networks
            .iter()
            .map(|n| (n.ssid.clone(), n.password.clone()))
            .collect(),
        config,
        bus,
        verifications: Pending::default(),
        proofs: Pending::default(),
        ap_key: ApKey::generate(),
        confirmations: confirmations.clone(),
        in_flight: Mutex::default(),
        recent: Mutex::default(),
        events: events_tx,
    });
    let task = tokio::spawn(serve(shared, inbox, link, shutdown));
    Ok(Ap {
        confirmations,
        events,
        task,
    })
}

async fn serve(
    shared: Arc<Shared>,
    mut inbox: mpsc::Receiver<Message>,
    link: CancellationToken,
    shutdown: CancellationToken,
) {
    let tracker = TaskTracker::new();
    let mut link_state = shared.bus.watch_state();
    link_state.mark_unchanged();
    loop {
        let msg = tokio::select! {
            _ = shutdown.cancelled() => break,
            Ok(()) = link_state.changed() => {
                if *link_state.borrow_and_update() == LinkState::Ready {
                    // Back after a lost connection (the platform restarting,
                    // say): answers to what was asked before may never come.
                    // Their requests end now with `unavailable`, and the
                    // devices ask again, instead of each waiting out its
                    // timeout.
                    let verifications = shared.verifications.cancel_all();
                    let handshakes = shared.proofs.cancel_all();
                    info!(verifications, handshakes, "link to the platform is back; open requests answered unavailable");
                }
                continue;
            }
            msg = inbox.recv() => match msg { Some(m) => m, None => break },
        };
        if let Some(ssid) = topics::parse_access_request(&msg.topic) {
            let ssid = ssid.to_owned();
            let shared = shared.clone();
            tracker.spawn(async move { handle_request(&shared, &ssid, &msg.payload).await });
            continue;
        }
        if topics::parse_access_proof(&msg.topic).is_some() {
            match decode::<AccessProof>(&msg.payload) {
                Ok(proof) => {
                    let session = proof.session.clone();
                    if !shared.proofs.complete(&session, proof) {
                        debug!("proof for no open session");
                    }
                }
                Err(e) => warn!(error = %e, "malformed access proof"),
            }
            continue;
        }
        match topics::parse_ap_topic(&msg.topic) {
            Some((_, "verify/response")) => match decode::<VerifyResponse>(&msg.payload) {
                Ok(resp) => {
                    let id = resp.request_id.clone();
                    if !shared.verifications.complete(&id, resp) {
                        debug!(request_id = %id, "late or unsolicited verification response");
                    }
                }
                Err(e) => warn!(error = %e, "malformed verification response"),
            },
            Some((_, "confirm")) => match decode::<ApConfirm>(&msg.payload) {
                Ok(c) => {
                    if !shared.confirmations.confirm(&c.uuid, c.accept) {
                        warn!(uuid = %c.uuid.escape_debug(), "confirmation for a device with no open prompt");
                    }
                }
                Err(e) => warn!(error = %e, "malformed confirmation"),
            },
            _ => debug!(topic = %msg.topic, "message on an unexpected topic"),
        }
    }
    // Prompts still open are answered `timeout` by their tasks; give them
    // no new work and wait for the ones running.
    tracker.close();
    shared.cancel_prompts();
    tracker.wait().await;
    link.cancel();
}

impl Shared {
    fn cancel_prompts(&self) {
        // Dropping the waiters wakes their tasks at once with "no answer".
        for key in self
            .in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
        {
            self.confirmations.waiters.remove(key);
        }
    }

    /// The answer to an identical request from the last few seconds.
    fn repeat_of(&self, key: &str, pass_tmp: &str) -> Option<AccessResponse> {
        let recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        let r = recent.get(key)?;
        let same = bool::from(r.pass_tmp.as_bytes().ct_eq(pass_tmp.as_bytes()));
        (same && r.at.elapsed() < REPEAT_WINDOW).then(|| r.response.clone())
    }

    fn remember(&self, key: String, pass_tmp: &str, response: &AccessResponse) {
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        recent.retain(|_, r| r.at.elapsed() < REPEAT_WINDOW);
        recent.insert(
            key,
            Recent {
                pass_tmp: pass_tmp.to_owned(),
                response: response.clone(),
                at: Instant::now(),
            },
        );
    }

    fn deny(
        &self,
        uuid: &str,
        code: AccessErrorCode,
        message: impl Into<String>,
    ) -> (AccessResponse, Result<(), AccessErrorCode>) {
        (AccessResponse::denied(uuid, code, message), Err(code))
    }
}

/// Removes the UUID from the in-flight set however the request ends.
struct InFlight<'a> {
    set: &'a Mutex<HashMap<String, Option<AccessChallenge>>>,
    key: String,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.set
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.key);
    }
}

async fn handle_request(shared: &Shared, ssid: &str, payload: &[u8]) {
    let started = Instant::now();
    let checked = decode::<AccessRequest>(payload).and_then(|req| {
        let uuid = req.validate(ssid)?;
        Ok((req, uuid))
    });
    let (req, uuid) = match checked {
        Ok(ok) => ok,
        Err(e) => {
            warn!(ssid, error = %e, "malformed access request");
            // Answer only where the device can be addressed safely.
            if let Some(uuid) =
                peek_str_field(payload, "uuid").and_then(|u| DeviceUuid::parse(&u).ok())
            {
                let resp = AccessResponse::denied(
                    uuid.as_str(),
                    AccessErrorCode::BadRequest,
                    e.to_string(),
                );
                publish(shared, &uuid, &resp).await;
                let outcome = AccessOutcome::Refused(AccessErrorCode::BadRequest);
                report(shared, &uuid, outcome, started.elapsed()).await;
            }
            return;
        }
    };
    let key = uuid.key().to_owned();
    let in_progress = match shared
        .in_flight
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(key.clone())
    {
        Entry::Occupied(open) => Some(open.get().clone()),
        Entry::Vacant(slot) => {
            slot.insert(None);
            None
        }
    };
    if let Some(challenge) = in_progress {
        // A retry of the handshake whose challenge is out: the challenge
        // or the proof may have been lost, so send the challenge again
        // (the same session; a device that answered it re-sends its proof).
        match (challenge, &req.spake2) {
            (Some(c), Some(msg)) if c.request == handshake_tag(msg) => {
                debug!(uuid = %uuid, "retry of a handshake in progress; challenge re-sent");
                if let Err(e) = shared
                    .bus
                    .publish_json(topics::access_challenge(uuid.as_str()), &c)
                    .await
                {
                    warn!(uuid = %uuid, error = %e, "could not re-send the challenge");
                }
            }
            _ => debug!(uuid = %uuid, "request already in progress; retry ignored"),
        }
        return;
    }
    let _guard = InFlight {
        set: &shared.in_flight,
        key: key.clone(),
    };
    let fingerprint = req.spake2.as_deref().unwrap_or(&req.pass_tmp).to_owned();
    if let Some(previous) = shared.repeat_of(&key, &fingerprint) {
        debug!(uuid = %uuid, "repeat of a request answered moments ago; same answer re-sent");
        publish(shared, &uuid, &previous).await;
        return;
    }
    let (response, outcome) = decide(shared, &req, &uuid).await;
    publish(shared, &uuid, &response).await;
    // `unavailable` is not final: the device's retry must be served afresh.
    if outcome != Err(AccessErrorCode::Unavailable) {
        shared.remember(key, &fingerprint, &response);
    }
    let elapsed = started.elapsed();
    report(shared, &uuid, outcome.into(), elapsed).await;
    match outcome {
        Ok(()) => info!(uuid = %uuid, ssid, ?elapsed, "access granted"),
        Err(code) => info!(uuid = %uuid, ssid, %code, ?elapsed, "access refused"),
    }
    let _ = shared.events.send(ApEvent::Answered {
        uuid: uuid.as_str().to_owned(),
        outcome,
        elapsed,
    });
}

async fn decide(
    shared: &Shared,
    req: &AccessRequest,
    uuid: &DeviceUuid,
) -> (AccessResponse, Result<(), AccessErrorCode>) {
    let config = &shared.config;
    let Some(password) = shared.passwords.get(&req.ssid) else {
        return shared.deny(
            uuid.as_str(),
            AccessErrorCode::BadRequest,
            "this AP does not serve that SSID",
        );
    };

    let secure = config.platform_key.is_some();
    if secure != req.spake2.is_some() {
        return shared.deny(
            uuid.as_str(),
            AccessErrorCode::BadRequest,
            if secure {
                "this AP runs secure onboarding: send spake2, never pass_tmp"
            } else {
                "this AP runs the walkthrough mode: send pass_tmp"
            },
        );
    }

    // Steps 3-4: ask the verifier, compare.
    let stored = match verify(shared, uuid).await {
        Ok(stored) => stored,
        Err(denied) => return denied,
    };
    let keys = match &req.spake2 {
        None => {
            if !bool::from(stored.as_bytes().ct_eq(req.pass_tmp.as_bytes())) {
                return shared.deny(
                    uuid.as_str(),
                    AccessErrorCode::PassTmpMismatch,
                    "pass_tmp does not match the enrolled one",
                );
            }
            None
        }
        Some(device_msg) => {
            match compare_by_handshake(shared, req, uuid, &stored, device_msg).await {
                Ok((keys, session)) => Some((keys, session)),
                Err(denied) => return denied,
            }
        }
    };

    // Step 4: prompt the AP's user and wait. The waiter exists before
    // anyone hears of the prompt, so no answer can arrive too early.
    let answer =
        (!config.auto_confirm).then(|| shared.confirmations.waiters.insert(uuid.key().to_owned()));
    let _ = shared.events.send(ApEvent::Prompt {
        uuid: uuid.as_str().to_owned(),
        ssid: req.ssid.clone(),
    });
    let accepted = if let Some(answer) = answer {
        let prompt = ApPrompt {
            uuid: uuid.as_str().to_owned(),
            ssid: req.ssid.clone(),
            expires_in_secs: config.confirm_timeout.as_secs(),
        };
        if let Err(e) = shared
            .bus
            .publish_json(topics::ap_prompt(&config.ap_id), &prompt)
            .await
        {
            warn!(error = %e, "could not publish the prompt");
        }
        match tokio::time::timeout(config.confirm_timeout, answer).await {
            Ok(Ok(accept)) => accept,
            Ok(Err(_)) => {
                return shared.deny(
                    uuid.as_str(),
                    AccessErrorCode::Timeout,
                    "the AP shut down before its user answered",
                );
            }
            Err(_) => {
                shared.confirmations.waiters.remove(&uuid.key().to_owned());
                return shared.deny(
                    uuid.as_str(),
                    AccessErrorCode::Timeout,
                    format!(
                        "the AP's user did not answer within {} s",
                        config.confirm_timeout.as_secs()
                    ),
                );
            }
        }
    } else {
        true
    };
    if !accepted {
        return shared.deny(
            uuid.as_str(),
            AccessErrorCode::Rejected,
            "the AP's user declined",
        );
    }

    // Step 5: the access response with the real password, sealed to the
    // device in secure mode.
    let granted = match keys {
        None => AccessGranted {
            uuid: uuid.as_str().to_owned(),
            ssid: req.ssid.clone(),
            password: password.clone(),
            session: None,
            sealed: None,
        },
        Some((keys, session)) => AccessGranted {
            uuid: uuid.as_str().to_owned(),
            ssid: req.ssid.clone(),
            password: String::new(),
            sealed: Some(keys.seal_password(
                password,
                &wifi_seal_context(uuid.as_str(), &req.ssid, &session),
            )),
            session: Some(session),
        },
    };
    (AccessResponse::Granted(granted), Ok(()))
}

type Denied = (AccessResponse, Result<(), AccessErrorCode>);

/// Asks the verifier for the UUID's pass_tmp; in secure mode it arrives
/// sealed to this AP and signed by the platform.
async fn verify(shared: &Shared, uuid: &DeviceUuid) -> Result<String, Denied> {
    let config = &shared.config;
    let request_id = uuid::Uuid::new_v4().simple().to_string();
    let answer = shared.verifications.insert(request_id.clone());
    let ask = VerifyRequest {
        request_id: request_id.clone(),
        ap_id: config.ap_id.clone(),
        uuid: uuid.key().to_owned(),
        ap_key: config
            .platform_key
            .is_some()
            .then(|| shared.ap_key.public_b64()),
    };
    if shared
        .bus
        .publish_json(topics::VERIFY_REQUEST, &ask)
        .await
        .is_err()
    {
        shared.verifications.remove(&request_id);
        return Err(shared.deny(
            uuid.as_str(),
            AccessErrorCode::Unavailable,
            "the AP lost its connection to the verifier",
        ));
    }
    let verified = match tokio::time::timeout(config.verify_timeout, answer).await {
        Ok(Ok(resp)) => resp,
        _ => {
            shared.verifications.remove(&request_id);
            return Err(shared.deny(
                uuid.as_str(),
                AccessErrorCode::Unavailable,
                "the verifier did not answer in time",
            ));
        }
    };
    match (verified.outcome, &config.platform_key) {
        (VerifyOutcome::Found { pass_tmp }, None) => Ok(pass_tmp),
        (
            VerifyOutcome::Sealed {
                sealed_pass_tmp,
                sig,
            },
            Some(platform),
        ) => open_verify_answer(
            platform,
            &shared.ap_key,
            &request_id,
            uuid.key(),
            &config.ap_id,
            &sealed_pass_tmp,
            &sig,
        )
        .map_err(|e| {
            warn!(target: "audit", uuid = %uuid, error = %e, "verifier answer refused: not signed by the platform or not sealed to this AP");
            shared.deny(
                uuid.as_str(),
                AccessErrorCode::Timeout,
                "no valid answer from the verifier",
            )
        }),
        (VerifyOutcome::Failed { error }, _) => {
            Err(shared.deny(uuid.as_str(), error.code, error.message))
        }
        (_, _) => {
            warn!(target: "audit", uuid = %uuid, "verifier answer refused: wrong mode (plaintext in secure mode or sealed in walkthrough)");
            Err(shared.deny(
                uuid.as_str(),
                AccessErrorCode::Timeout,
                "no valid answer from the verifier",
            ))
        }
    }
}

/// Secure mode's comparison: the SPAKE2 handshake keyed by the stored
/// pass_tmp, a challenge to the device, and a check of its proof. Only a
/// device holding the same pass_tmp can prove it.
async fn compare_by_handshake(
    shared: &Shared,
    req: &AccessRequest,
    uuid: &DeviceUuid,
    stored: &str,
    device_msg: &str,
) -> Result<(SessionKeys, String), Denied> {
    let session = random_b64(16);
    let (keys, ap_msg) = ap_handshake(uuid.as_str(), &req.ssid, stored, device_msg, &session)
        .map_err(|e| shared.deny(uuid.as_str(), AccessErrorCode::BadRequest, e.to_string()))?;
    let proof = shared.proofs.insert(session.clone());
    let challenge = AccessChallenge {
        uuid: uuid.as_str().to_owned(),
        ssid: req.ssid.clone(),
        request: handshake_tag(device_msg),
        session: session.clone(),
        spake2: ap_msg,
    };
    if let Some(open) = shared
        .in_flight
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_mut(uuid.key())
    {
        *open = Some(challenge.clone());
    }
    if let Err(e) = shared
        .bus
        .publish_json(topics::access_challenge(uuid.as_str()), &challenge)
        .await
    {
        shared.proofs.remove(&session);
        return Err(shared.deny(
            uuid.as_str(),
            AccessErrorCode::Unavailable,
            format!("the AP could not send its challenge: {e}"),
        ));
    }
    let proof = match tokio::time::timeout(shared.config.verify_timeout, proof).await {
        Ok(Ok(p)) => p,
        _ => {
            // Not a failed guess: the challenge or the proof may have
            // been lost (the platform restarting, say). The device starts
            // a new handshake; each one still counts toward the lockout
            // until one is granted.
            shared.proofs.remove(&session);
            return Err(shared.deny(
                uuid.as_str(),
                AccessErrorCode::Unavailable,
                "no proof of pass_tmp arrived in time; start a new handshake",
            ));
        }
    };
    let same_device = DeviceUuid::parse(&proof.uuid).is_ok_and(|u| u.key() == uuid.key());
    if !same_device || !keys.check_device_proof(&proof.proof) {
        warn!(target: "audit", uuid = %uuid, ap_id = %shared.config.ap_id, "access attempt failed: wrong pass_tmp proof");
        return Err(shared.deny(
            uuid.as_str(),
            AccessErrorCode::PassTmpMismatch,
            "the device's proof does not match the enrolled pass_tmp",
        ));
    }
    Ok((keys, session))
}

async fn publish(shared: &Shared, uuid: &DeviceUuid, resp: &AccessResponse) {
    if let Err(e) = shared
        .bus
        .publish_json(topics::access_response(uuid.as_str()), resp)
        .await
    {
        warn!(uuid = %uuid, error = %e, "could not answer the device");
    }
}

/// Tells the platform how a request ended, for its metrics. Sent once per
/// answer the AP decided; a repeat of a recent answer is not reported.
async fn report(shared: &Shared, uuid: &DeviceUuid, outcome: AccessOutcome, elapsed: Duration) {
    let report = OutcomeReport {
        uuid: uuid.as_str().to_owned(),
        outcome,
        latency_ms: u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
    };
    if let Err(e) = shared
        .bus
        .publish_json(topics::ap_outcome(&shared.config.ap_id), &report)
        .await
    {
        warn!(uuid = %uuid, error = %e, "could not report the outcome");
    }
}

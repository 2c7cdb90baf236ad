//! One access request from arrival to answer: a retry of a request in
//! progress or a repeat of one just answered gets no second prompt; a new
//! one goes through the steps (verifier, comparison, the user, the grant),
//! and its outcome is answered, remembered and reported.

use crate::answer::{publish, report};
use crate::handshake::{relay_handshake, Relay};
use crate::prompt::ask_user;
use crate::shared::Shared;
use crate::verify::{verify, Verified};
use crate::ApEvent;
use protocol::crypto::handshake_tag;
use protocol::onboarding::{
    wifi_seal_context, AccessChallenge, AccessDenied, AccessGranted, AccessOutcome, AccessRequest,
    AccessResponse,
};
use protocol::{decode, peek_str_field, topics, AccessErrorCode, DeviceUuid};
use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;
use subtle::ConstantTimeEq;
use tracing::{debug, info, warn};

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

pub(crate) async fn handle_request(shared: &Shared, ssid: &str, payload: &[u8]) {
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
    // One request in progress per device in walkthrough mode; in secure
    // mode per handshake, so that anyone's request for a UUID (a stranger
    // can make one) holds up no other.
    let key = match &req.spake2 {
        Some(msg) => format!("{}/{}", uuid.key(), handshake_tag(msg)),
        None => uuid.key().to_owned(),
    };
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
    let (response, outcome) = decide(shared, &req, &uuid, &key).await;
    publish(shared, &uuid, &response).await;
    // `unavailable` and `not_authorized` are not final: the device's retry
    // must be served afresh.
    if !matches!(outcome, Err(code) if !code.is_final()) {
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
    in_flight_key: &str,
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

    // Steps 3-4: ask the verifier; compare (walkthrough) or relay the
    // verifier's handshake and wait for its verdict (secure).
    let verified = match verify(shared, uuid, req).await {
        Ok(verified) => verified,
        Err(denied) => return denied,
    };
    let session = match (verified, &req.spake2) {
        (Verified::PassTmp(stored), None) => {
            if !bool::from(stored.as_bytes().ct_eq(req.pass_tmp.as_bytes())) {
                return shared.deny(
                    uuid.as_str(),
                    AccessErrorCode::PassTmpMismatch,
                    "pass_tmp does not match the enrolled one",
                );
            }
            None
        }
        (
            Verified::Challenge {
                request_id,
                session,
                spake2,
                ticket,
            },
            Some(device_msg),
        ) => {
            let relay = Relay {
                in_flight_key,
                request_id,
                session,
                spake2,
                ticket,
                device_msg,
            };
            match relay_handshake(shared, req, uuid, relay).await {
                Ok(proved) => Some(proved),
                Err(denied) => return denied,
            }
        }
        _ => {
            return shared.deny(
                uuid.as_str(),
                AccessErrorCode::Unavailable,
                "the verifier answered in the other mode",
            )
        }
    };

    // Step 4: prompt the AP's user and wait. In secure mode a refusal from
    // here on is bound to the device's session, so the device believes it.
    if let Err(denied) = ask_user(shared, req, uuid).await {
        return match (&session, denied) {
            (Some((key, session)), (AccessResponse::Denied(d), outcome)) => (
                AccessResponse::Denied(AccessDenied::for_session(
                    key,
                    uuid.as_str(),
                    session,
                    d.error,
                )),
                outcome,
            ),
            (_, denied) => denied,
        };
    }

    // Step 5: the access response with the real password, sealed to the
    // device in secure mode.
    let granted = match session {
        None => AccessGranted {
            uuid: uuid.as_str().to_owned(),
            ssid: req.ssid.clone(),
            password: password.clone(),
            session: None,
            sealed: None,
        },
        Some((key, session)) => AccessGranted {
            uuid: uuid.as_str().to_owned(),
            ssid: req.ssid.clone(),
            password: String::new(),
            sealed: Some(key.seal_password(
                password,
                &wifi_seal_context(uuid.as_str(), &req.ssid, &session),
            )),
            session: Some(session),
        },
    };
    (AccessResponse::Granted(granted), Ok(()))
}

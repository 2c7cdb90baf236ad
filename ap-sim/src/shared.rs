//! What an AP's request tasks share: its connection, the answers they wait
//! for, and the memory of open and recent requests that keeps a device's
//! retries from raising a second prompt.

use crate::{ApConfig, ApEvent, Confirmations};
use bus::{Bus, Pending};
use protocol::crypto::ApKey;
use protocol::onboarding::{AccessChallenge, AccessDenied, AccessResponse, VerifyResponse};
use protocol::{AccessErrorCode, ErrorBody};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;
use tokio::sync::mpsc;

pub(crate) struct Shared {
    pub(crate) config: ApConfig,
    pub(crate) passwords: HashMap<String, String>,
    pub(crate) bus: Bus,
    pub(crate) verifications: Pending<String, VerifyResponse>,
    /// Secure mode: the key the verifier seals each session's Wi-Fi key to.
    pub(crate) ap_key: ApKey,
    pub(crate) confirmations: Confirmations,
    /// Requests in progress, by UUID (walkthrough) or by UUID and
    /// handshake (secure, `UUID/TAG`): a device's retries while its prompt
    /// is open must not raise a second prompt. Secure mode: with the
    /// challenge sent for it, which a retry of the same handshake gets
    /// again (the first may have been lost).
    pub(crate) in_flight: Mutex<HashMap<String, Option<AccessChallenge>>>,
    /// Answers given in the last [`REPEAT_WINDOW`]: a device's re-send
    /// that crossed its answer gets the same answer again instead of a
    /// second prompt for the AP's user.
    pub(crate) recent: Mutex<HashMap<String, Recent>>,
    pub(crate) events: mpsc::UnboundedSender<ApEvent>,
}

/// How long an answer is remembered for repeats of the same request.
pub const REPEAT_WINDOW: Duration = Duration::from_secs(10);

pub(crate) struct Recent {
    pass_tmp: String,
    response: AccessResponse,
    at: Instant,
}

impl Shared {
    pub(crate) fn cancel_prompts(&self) {
        // Dropping the waiters wakes their tasks at once with "no answer".
        for key in self
            .in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
        {
            let uuid = key.split('/').next().unwrap_or(key);
            self.confirmations.waiters.remove(&uuid.to_owned());
        }
    }

    /// The answer to an identical request from the last few seconds.
    pub(crate) fn repeat_of(&self, key: &str, pass_tmp: &str) -> Option<AccessResponse> {
        let recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        let r = recent.get(key)?;
        let same = bool::from(r.pass_tmp.as_bytes().ct_eq(pass_tmp.as_bytes()));
        (same && r.at.elapsed() < REPEAT_WINDOW).then(|| r.response.clone())
    }

    pub(crate) fn remember(&self, key: String, pass_tmp: &str, response: &AccessResponse) {
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

    pub(crate) fn deny(
        &self,
        uuid: &str,
        code: AccessErrorCode,
        message: impl Into<String>,
    ) -> (AccessResponse, Result<(), AccessErrorCode>) {
        (AccessResponse::denied(uuid, code, message), Err(code))
    }

    /// [`Shared::deny`] with the verifier's own refusal, its retry-after
    /// included.
    pub(crate) fn deny_with(&self, uuid: &str, error: ErrorBody<AccessErrorCode>) -> Denied {
        let code = error.code;
        (
            AccessResponse::Denied(AccessDenied {
                uuid: uuid.to_owned(),
                error,
                request: None,
                session: None,
                sig: None,
                mac: None,
            }),
            Err(code),
        )
    }
}

impl Shared {
    /// The refusal in a verifier's `Failed` answer: its signed denial for
    /// the device, passed on as it is, or the error alone.
    pub(crate) fn refusal(
        &self,
        uuid: &protocol::DeviceUuid,
        error: ErrorBody<AccessErrorCode>,
        denial: Option<AccessDenied>,
    ) -> Denied {
        match denial {
            Some(denial) => (AccessResponse::Denied(denial), Err(error.code)),
            None => self.deny_with(uuid.as_str(), error),
        }
    }
}

/// A request that ends before the grant: the answer for the device and
/// the outcome to report.
pub(crate) type Denied = (AccessResponse, Result<(), AccessErrorCode>);

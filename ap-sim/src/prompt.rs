//! The AP's user has the last word on every verified device: the prompt,
//! and the answers that come back from the terminal or from
//! `ap/{ap_id}/confirm`.

use crate::shared::{Denied, Shared};
use crate::ApEvent;
use bus::Pending;
use protocol::onboarding::{AccessRequest, ApPrompt};
use protocol::{topics, AccessErrorCode, DeviceUuid};
use std::sync::Arc;
use tracing::warn;

/// Pending prompts, keyed by the device's canonical UUID.
#[derive(Clone, Default)]
pub struct Confirmations {
    pub(crate) waiters: Arc<Pending<String, bool>>,
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

/// Prompts the AP's user about a verified device and waits for the answer;
/// auto-confirm answers at once.
pub(crate) async fn ask_user(
    shared: &Shared,
    req: &AccessRequest,
    uuid: &DeviceUuid,
) -> Result<(), Denied> {
    let config = &shared.config;
    // The waiter exists before anyone hears of the prompt, so no answer
    // can arrive too early.
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
                return Err(shared.deny(
                    uuid.as_str(),
                    AccessErrorCode::Timeout,
                    "the AP shut down before its user answered",
                ));
            }
            Err(_) => {
                shared.confirmations.waiters.remove(&uuid.key().to_owned());
                return Err(shared.deny(
                    uuid.as_str(),
                    AccessErrorCode::Timeout,
                    format!(
                        "the AP's user did not answer within {} s",
                        config.confirm_timeout.as_secs()
                    ),
                ));
            }
        }
    } else {
        true
    };
    if !accepted {
        return Err(shared.deny(
            uuid.as_str(),
            AccessErrorCode::Rejected,
            "the AP's user declined",
        ));
    }
    Ok(())
}

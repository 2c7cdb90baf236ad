//! An AP's life on the platform broker: connect and subscribe, then hand
//! each message to whoever waits for it (a new request gets its own task),
//! until shutdown, when open prompts are answered and the AP waits for its
//! requests to finish.

use crate::prompt::Confirmations;
use crate::request::handle_request;
use crate::shared::Shared;
use crate::{ApConfig, ApError};
use bus::{Bus, BusOptions, LinkState, Message, Pending};
use protocol::crypto::ApKey;
use protocol::onboarding::{ApConfirm, VerifyResponse};
use protocol::topics::{self, Level, Topic};
use protocol::{decode, AccessErrorCode};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

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

/// Connects, subscribes, and serves until `shutdown`.
pub async fn start(config: ApConfig, shutdown: CancellationToken) -> Result<Ap, ApError> {
    config.validate()?;
    // Devices' proofs go to the verifier, which judges them; the AP only
    // relays the handshake and hears the verdict.
    let mut filters: Vec<String> = config
        .networks
        .iter()
        .map(|n| topics::access_request(&n.ssid))
        .collect();
    filters.push(topics::verify_response(&config.ap_id));
    filters.push(topics::ap_confirm(&config.ap_id));
    let opts = BusOptions::new(&config.broker, format!("ap.{}", config.ap_id))?
        .with_credentials(&config.username, &config.password)
        .with_tls(config.tls.clone());
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
                    info!(verifications, "link to the platform is back; open requests answered unavailable");
                }
                continue;
            }
            msg = inbox.recv() => match msg { Some(m) => m, None => break },
        };
        match Topic::parse(&msg.topic) {
            Some(Topic::AccessRequest {
                ssid: Level::Id(ssid),
            }) => {
                let ssid = ssid.to_owned();
                let shared = shared.clone();
                tracker.spawn(async move { handle_request(&shared, &ssid, &msg.payload).await });
            }
            Some(Topic::VerifyResponse { .. }) => match decode::<VerifyResponse>(&msg.payload) {
                Ok(resp) => {
                    let id = resp.request_id.clone();
                    if !shared.verifications.complete(&id, resp) {
                        debug!(request_id = %id, "late or unsolicited verification response");
                    }
                }
                Err(e) => warn!(error = %e, "malformed verification response"),
            },
            Some(Topic::ApConfirm { .. }) => match decode::<ApConfirm>(&msg.payload) {
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

//! A device's session on the platform broker.
//!
//! One connection serves what a device says to the platform at a time:
//! its onboarding (the access request, its proof, its user's
//! confirmation), then its gateway queries. In secure mode the onboarding
//! session may only onboard ([`LinkLogin::Onboarding`]), so the device
//! opens a new session, logged in with its own key, for its queries; it is
//! closed once the device is on its gateway, and a later re-query opens a
//! new one. A device on its gateway thus holds one connection, not two.

use crate::login::{refused, LinkLogin};
use crate::{DeviceConfig, DeviceError};
use bus::{Backoff, Bus, BusOptions, Message};
use protocol::topics;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::{CancellationToken, DropGuard};

/// Who the device is on the platform broker.
#[derive(Debug, Clone)]
pub struct LinkConfig {
    /// The platform broker, "host:port".
    pub broker: String,
    /// MQTT over TLS with this configuration; None: plaintext.
    pub tls: Option<bus::TlsConfig>,
    pub mqtt: bus::MqttVersion,
    /// The device's id: its UUID.
    pub device_id: String,
    pub login: LinkLogin,
    /// How long connecting and subscribing may take.
    pub timeout: Duration,
}

/// An open session; closing it (dropping it) sends a DISCONNECT.
pub struct PlatformLink {
    pub(crate) bus: Bus,
    pub(crate) inbox: mpsc::Receiver<Message>,
    /// Logged in as a device not onboarded yet: it may only onboard.
    onboarding_only: bool,
    _close: DropGuard,
}

impl PlatformLink {
    /// Connects and subscribes to every topic the platform may send this
    /// device: its access response and challenge, its confirmation, and
    /// (once onboarded) its gateway answer.
    pub async fn open(
        config: &LinkConfig,
        shutdown: &CancellationToken,
    ) -> Result<PlatformLink, DeviceError> {
        // An onboarding session has a client id of its own, so that no
        // other session for the same UUID (a stranger's) can take it.
        let client_id = match config.login {
            LinkLogin::Onboarding => protocol::logins::onboarding_client_id(&config.device_id),
            _ => config.device_id.clone(),
        };
        let mut opts = config
            .login
            .apply(BusOptions::new(&config.broker, &client_id)?)
            .with_tls(config.tls.clone());
        opts.mqtt = config.mqtt;
        // One attempt may take the whole wait: a broker taking a crowd of
        // devices is slow, and a retry would start over at the back.
        opts.connect_timeout = config.timeout;
        let link = shutdown.child_token();
        let close = link.clone().drop_guard();
        let onboarding_only = matches!(config.login, LinkLogin::Onboarding);
        let mut filters = vec![
            topics::access_response(&config.device_id),
            topics::access_challenge(&config.device_id),
            topics::device_confirm(&config.device_id),
        ];
        // A device not onboarded yet may not ask for, nor hear of, a gateway.
        if !onboarding_only {
            filters.push(topics::device_gateway(&config.device_id));
        }
        let (bus, inbox) = Bus::connect(opts, filters, link);
        bus.ready(config.timeout).await?;
        Ok(PlatformLink {
            bus,
            inbox,
            onboarding_only,
            _close: close,
        })
    }

    /// The session to onboard on: in secure mode, as a device onboarding,
    /// whether it was onboarded before or not.
    pub async fn open_to_onboard(
        device: &DeviceConfig,
        shutdown: &CancellationToken,
    ) -> Result<PlatformLink, DeviceError> {
        PlatformLink::open(&device.link(), shutdown).await
    }

    /// Whether this session may only onboard.
    pub fn onboarding_only(&self) -> bool {
        self.onboarding_only
    }

    pub fn broker(&self) -> &str {
        self.bus.addr()
    }

    /// [`PlatformLink::open`], again while the broker answers "bad login"
    /// for up to `patience`: right after onboarding, the platform may not
    /// have registered the device's key yet.
    pub async fn open_patiently(
        config: &LinkConfig,
        patience: Duration,
        shutdown: &CancellationToken,
    ) -> Result<PlatformLink, DeviceError> {
        let deadline = tokio::time::Instant::now() + patience;
        // Each try is a connection and a login check on a platform that
        // may be slow because it is busy: back off.
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        loop {
            match PlatformLink::open(config, shutdown).await {
                Err(DeviceError::Bus(e))
                    if refused(&e, "BadUserNamePassword")
                        && tokio::time::Instant::now() < deadline =>
                {
                    tokio::select! {
                        _ = shutdown.cancelled() => return Err(DeviceError::Stopped),
                        _ = tokio::time::sleep(backoff.next_delay()) => {}
                    }
                }
                other => return other,
            }
        }
    }
}

//! A device's session on the platform broker.
//!
//! One connection serves everything a device says to the platform: the
//! access request, its own confirmation, and the gateway query. It is
//! opened for onboarding, kept for the first gateway query, and closed
//! once the device is on its gateway; a later re-query opens a new one.
//! A device on its gateway thus holds one connection, not two.

use crate::DeviceError;
use bus::{Bus, BusOptions, Message};
use protocol::topics;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::{CancellationToken, DropGuard};

/// Who the device is on the platform broker.
#[derive(Debug, Clone)]
pub struct LinkConfig {
    /// The platform broker, "host:port".
    pub broker: String,
    /// The device's id: its UUID.
    pub device_id: String,
    pub username: String,
    pub password: String,
    /// How long connecting and subscribing may take.
    pub timeout: Duration,
}

/// An open session; closing it (dropping it) sends a DISCONNECT.
pub struct PlatformLink {
    pub(crate) bus: Bus,
    pub(crate) inbox: mpsc::Receiver<Message>,
    _close: DropGuard,
}

impl PlatformLink {
    /// Connects and subscribes to every topic the platform may send this
    /// device: its access response, its confirmation and its gateway answer.
    pub async fn open(
        config: &LinkConfig,
        shutdown: &CancellationToken,
    ) -> Result<PlatformLink, DeviceError> {
        let opts = BusOptions::new(&config.broker, &config.device_id)?
            .with_credentials(&config.username, &config.password);
        let link = shutdown.child_token();
        let close = link.clone().drop_guard();
        let (bus, inbox) = Bus::connect(
            opts,
            vec![
                topics::access_response(&config.device_id),
                topics::access_challenge(&config.device_id),
                topics::device_confirm(&config.device_id),
                topics::device_gateway(&config.device_id),
            ],
            link,
        );
        bus.ready(config.timeout).await?;
        Ok(PlatformLink {
            bus,
            inbox,
            _close: close,
        })
    }

    pub fn broker(&self) -> &str {
        self.bus.addr()
    }
}

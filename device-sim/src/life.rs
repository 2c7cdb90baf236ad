//! A device's whole life in one call, so that a single `device-sim` and
//! each device of a fleet run the very same code.

use crate::{gateway, onboard_on, DeviceConfig, DeviceError, DeviceEvent, PlatformLink};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Where [`live`] reports each step.
#[derive(Debug, Clone)]
pub struct LifeEvents {
    pub device: mpsc::UnboundedSender<DeviceEvent>,
    pub home: mpsc::UnboundedSender<gateway::HomeEvent>,
}

/// A device's whole life: Wi-Fi onboarding, then its gateway, until
/// `shutdown`. One platform session carries the access request and the
/// first gateway query; it closes once the device is on its gateway.
/// `device-sim` runs this for one device and `device-sim fleet` for each.
pub async fn live(
    device: &DeviceConfig,
    home: &gateway::HomeConfig,
    events: &LifeEvents,
    local_confirm: Option<mpsc::Receiver<bool>>,
    shutdown: &CancellationToken,
) -> Result<(), DeviceError> {
    device.validate()?;
    let mut link = PlatformLink::open(&device.link(), shutdown).await?;
    onboard_on(&mut link, device, &events.device, local_confirm, shutdown).await?;
    gateway::stay_homed_with(home, Some(link), &events.home, shutdown).await
}

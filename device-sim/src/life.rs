//! A device's whole life in one call, so that a single `device-sim` and
//! each device of a fleet run the very same code.

use crate::{gateway, onboard_on, DeviceConfig, DeviceError, DeviceEvent, PlatformLink};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// How long a device just onboarded waits for the platform to register its
/// key, which it does from the same proof the AP checked, on its own.
const KEY_REGISTRATION: Duration = Duration::from_secs(5);

/// Where [`live`] reports each step.
#[derive(Debug, Clone)]
pub struct LifeEvents {
    pub device: mpsc::UnboundedSender<DeviceEvent>,
    pub home: mpsc::UnboundedSender<gateway::HomeEvent>,
}

/// A device's whole life: Wi-Fi onboarding, then its gateway, until
/// `shutdown`. In walkthrough mode one platform session carries the access
/// request and the first gateway query; in secure mode the onboarding
/// session may only onboard, and a session logged in with the device's
/// own key (registered by the onboarding) asks for its gateway. Either
/// closes once the device is on its gateway. `device-sim` runs this for
/// one device and `device-sim fleet` for each.
pub async fn live(
    device: &DeviceConfig,
    home: &gateway::HomeConfig,
    events: &LifeEvents,
    local_confirm: Option<mpsc::Receiver<bool>>,
    shutdown: &CancellationToken,
) -> Result<(), DeviceError> {
    device.validate()?;
    let mut link = PlatformLink::open_to_onboard(device, shutdown).await?;
    onboard_on(&mut link, device, &events.device, local_confirm, shutdown).await?;
    let link = if device.platform_key.is_some() && link.onboarding_only() {
        drop(link);
        PlatformLink::open_patiently(&home.link(), KEY_REGISTRATION, shutdown).await?
    } else {
        link
    };
    gateway::stay_homed_with(home, Some(link), &events.home, shutdown).await
}

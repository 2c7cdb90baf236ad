//! A device's whole life in one call, so that a single `device-sim` and
//! each device of a fleet run the very same code.

use crate::{gateway, login, onboard_on, DeviceConfig, DeviceError, DeviceEvent, PlatformLink};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::warn;

/// How long a device just onboarded waits for the platform to register its
/// key, which it does from the same proof the AP checked, on its own: a
/// moment on an idle platform, seconds behind a busy verifier's queue
/// (50,000 devices at once, 1,000 in flight, outran 5 s).
const KEY_REGISTRATION: Duration = Duration::from_secs(30);

/// How many times a device onboards before it gives up on a platform that
/// keeps refusing its key. The platform registers the key from the proof
/// and makes it durable a moment later, off the AP's path; a platform that
/// crashed in that moment has lost it, and the device, which still holds
/// pass_tmp and its key, onboards again to register it again.
const ONBOARDINGS: u32 = 3;

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
    let mut local_confirm = local_confirm;
    let mut onboardings = 0;
    let link = loop {
        onboardings += 1;
        let mut link = PlatformLink::open_to_onboard(device, shutdown).await?;
        onboard_on(
            &mut link,
            device,
            &events.device,
            &mut local_confirm,
            shutdown,
        )
        .await?;
        if device.platform_key.is_none() || !link.onboarding_only() {
            break link;
        }
        drop(link);
        match PlatformLink::open_patiently(&home.link(), KEY_REGISTRATION, shutdown).await {
            Err(DeviceError::Bus(e))
                if login::refused(&e, "BadUserNamePassword") && onboardings < ONBOARDINGS =>
            {
                warn!(uuid = %device.uuid, onboardings, "the platform does not know this device's key after onboarding; onboarding again");
            }
            other => break other?,
        }
    };
    gateway::stay_homed_with(home, Some(link), &events.home, shutdown).await
}

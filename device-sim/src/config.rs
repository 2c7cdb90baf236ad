//! Who a device is and how patient it is: its factory identity, checked
//! before anything goes on the wire, and the platform session it logs in
//! with.

use crate::login::{DeviceLogin, LinkLogin};
use crate::{DeviceError, LinkConfig};
use protocol::crypto::{DeviceKey, PlatformPublicKey};
use protocol::onboarding::{check_pass_tmp, check_ssid};
use protocol::DeviceUuid;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct DeviceConfig {
    /// The platform broker, "host:port".
    pub broker: String,
    /// MQTT over TLS with this configuration (the device's own, so that
    /// it resumes its sessions); None: plaintext.
    pub tls: Option<bus::TlsConfig>,
    /// The MQTT version the device speaks, to the platform and its gateways.
    pub mqtt: bus::MqttVersion,
    pub uuid: String,
    pub pass_tmp: String,
    pub ssid: String,
    pub auto_confirm: bool,
    /// How long the device's own prompt waits for its user.
    pub confirm_timeout: Duration,
    /// Give up if no AP has answered by then. Longer than an AP's prompt
    /// timeout (60 s), so a slow human on the AP side is not cut off.
    pub answer_timeout: Duration,
    /// First wait before re-sending the request; doubles up to `retry_cap`.
    pub retry_base: Duration,
    pub retry_cap: Duration,
    pub username: String,
    pub password: String,
    /// Secure mode: the platform's public key. The device then logs in as
    /// itself, proves pass_tmp by SPAKE2 without sending it, and accepts
    /// only a sealed password. None: walkthrough mode (plaintext).
    pub platform_key: Option<PlatformPublicKey>,
    /// The device's own key, made once per device: registered with the
    /// platform at onboarding (secure mode), then what it can log in
    /// with. [`DeviceConfig::new`] makes a fresh one; a device that has
    /// one already (`device-sim --state-file`) puts it here.
    pub device_key: DeviceKey,
}

impl DeviceConfig {
    pub fn new(
        broker: impl Into<String>,
        uuid: impl Into<String>,
        pass_tmp: impl Into<String>,
        ssid: impl Into<String>,
    ) -> Self {
        DeviceConfig {
            broker: broker.into(),
            tls: None,
            mqtt: bus::MqttVersion::V311,
            uuid: uuid.into(),
            pass_tmp: pass_tmp.into(),
            ssid: ssid.into(),
            auto_confirm: false,
            confirm_timeout: Duration::from_secs(60),
            answer_timeout: Duration::from_secs(90),
            retry_base: Duration::from_secs(1),
            retry_cap: Duration::from_secs(15),
            username: "device".into(),
            password: String::new(),
            platform_key: None,
            device_key: DeviceKey::generate(),
        }
    }
}

impl DeviceConfig {
    /// Checks the factory identity before anything goes on the wire.
    pub fn validate(&self) -> Result<DeviceUuid, DeviceError> {
        let uuid = DeviceUuid::parse(&self.uuid).map_err(|e| DeviceError::Invalid {
            field: "uuid",
            reason: e.to_string(),
        })?;
        check_ssid(&self.ssid).map_err(|reason| DeviceError::Invalid {
            field: "ssid",
            reason,
        })?;
        check_pass_tmp(&self.pass_tmp).map_err(|reason| DeviceError::Invalid {
            field: "pass_tmp",
            reason,
        })?;
        Ok(uuid)
    }

    /// How this device logs in to a secure platform once onboarded
    /// ([`crate::login`]).
    pub fn login(&self) -> DeviceLogin {
        DeviceLogin::new(&self.uuid, self.device_key.clone())
    }

    /// The device's session on the platform broker to onboard: in secure
    /// mode, as a device onboarding, which may do nothing else.
    pub fn link(&self) -> LinkConfig {
        self.link_as(match self.platform_key {
            Some(_) => LinkLogin::Onboarding,
            None => LinkLogin::Plain {
                username: self.username.clone(),
                password: self.password.clone(),
            },
        })
    }

    fn link_as(&self, login: LinkLogin) -> LinkConfig {
        LinkConfig {
            broker: self.broker.clone(),
            tls: self.tls.clone(),
            mqtt: self.mqtt,
            device_id: self.uuid.clone(),
            login,
            timeout: Duration::from_secs(10),
        }
    }
}

//! What one AP serves and how long it waits, checked before it connects so
//! that a bad id, SSID or password fails at start, not on a device's request.

use crate::ApError;
use protocol::crypto::PlatformPublicKey;
use protocol::onboarding::{check_ssid, check_wifi_password};
use protocol::Segment;
use std::time::Duration;

/// One network this AP serves.
#[derive(Debug, Clone)]
pub struct Network {
    pub ssid: String,
    pub password: String,
}

#[derive(Debug, Clone)]
pub struct ApConfig {
    pub broker: String,
    /// MQTT over TLS with this configuration; None: plaintext.
    pub tls: Option<bus::TlsConfig>,
    pub ap_id: String,
    pub networks: Vec<Network>,
    pub auto_confirm: bool,
    /// How long a prompt waits for its user before the device gets `timeout`.
    pub confirm_timeout: Duration,
    /// How long to wait for the verifier's answer.
    pub verify_timeout: Duration,
    /// `ap.ID` by default: each AP logs in as itself.
    pub username: String,
    /// Its own credential, made when it was registered.
    pub password: String,
    /// Secure mode: the platform's public key, which signs the verifier's
    /// answers. None: walkthrough mode (plaintext pass_tmp and password).
    pub platform_key: Option<PlatformPublicKey>,
}

impl ApConfig {
    pub fn new(
        broker: impl Into<String>,
        ap_id: impl Into<String>,
        networks: Vec<Network>,
    ) -> Self {
        let ap_id = ap_id.into();
        ApConfig {
            broker: broker.into(),
            tls: None,
            username: protocol::logins::ap_login(&ap_id),
            ap_id,
            networks,
            auto_confirm: false,
            confirm_timeout: Duration::from_secs(60),
            verify_timeout: Duration::from_secs(5),
            password: String::new(),
            platform_key: None,
        }
    }

    pub(crate) fn validate(&self) -> Result<(), ApError> {
        let invalid = |field, reason: String| ApError::Invalid { field, reason };
        Segment::parse(&self.ap_id).map_err(|e| invalid("ap id", e.to_string()))?;
        protocol::check_client_id(&self.ap_id).map_err(|e| invalid("ap id", e.to_string()))?;
        if self.networks.is_empty() {
            return Err(invalid("networks", "at least one SSID is needed".into()));
        }
        for n in &self.networks {
            check_ssid(&n.ssid).map_err(|e| invalid("ssid", format!("{:?} {e}", n.ssid)))?;
            check_wifi_password(&n.password)
                .map_err(|e| invalid("password", format!("for {:?} {e}", n.ssid)))?;
        }
        Ok(())
    }
}

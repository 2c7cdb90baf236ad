//! Command-line flags every platform client shares, so that each binary
//! spells them, defaults them and documents them the same way.

use crate::{BusError, BusOptions};
use std::time::Duration;

/// Where the platform is and who to be there.
#[derive(Debug, Clone, clap::Args)]
pub struct ConnectArgs {
    /// The platform broker: the only address a device, an AP or an admin needs.
    #[arg(
        long,
        global = true,
        env = "PLATFORM_BROKER",
        default_value = "127.0.0.1:1883"
    )]
    pub broker: String,
    /// MQTT username to present [default: the program's role].
    #[arg(long, global = true, env = "PLATFORM_USERNAME")]
    pub username: Option<String>,
    /// MQTT password to present.
    #[arg(
        long = "mqtt-password",
        global = true,
        env = "PLATFORM_PASSWORD",
        default_value = "",
        hide_env_values = true
    )]
    pub mqtt_password: String,
}

impl ConnectArgs {
    pub fn username_or(&self, role: &str) -> String {
        self.username.clone().unwrap_or_else(|| role.to_owned())
    }

    /// Options for a connection as `client_id`, presenting `role` unless a
    /// username was given.
    pub fn options(
        &self,
        client_id: impl Into<String>,
        role: &str,
    ) -> Result<BusOptions, BusError> {
        Ok(BusOptions::new(&self.broker, client_id)?
            .with_credentials(self.username_or(role), &self.mqtt_password))
    }
}

/// The flags of the admin CLIs (`verifier`, `registry`).
#[derive(Debug, Clone, clap::Args)]
pub struct AdminArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Seconds to wait for each answer from the platform.
    #[arg(long, global = true, default_value_t = 10)]
    pub timeout: u64,
    /// Print results as JSON on stdout.
    #[arg(long, global = true)]
    pub json: bool,
}

impl AdminArgs {
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout)
    }

    /// Options for a one-off admin connection with a unique client id.
    pub fn options(&self, program: &str) -> Result<BusOptions, BusError> {
        let client_id = format!("{program}-cli-{:016x}", fastrand::u64(..));
        self.connect.options(client_id, "admin")
    }
}

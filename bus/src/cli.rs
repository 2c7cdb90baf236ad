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

/// Where a binary's logs go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogOutput {
    /// Services: logs are their output.
    Stdout,
    /// Interactive tools: stdout is for results.
    Stderr,
}

/// Installs the log subscriber of a binary: `RUST_LOG`, or `default` when
/// it is unset. Only a binary's `main` calls this; libraries never install
/// a subscriber.
pub fn init_logging(default: &str, output: LogOutput) {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| default.into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match output {
        LogOutput::Stdout => builder.init(),
        LogOutput::Stderr => builder.with_writer(std::io::stderr).init(),
    }
}

/// The async runtime of a binary, or the exit code to stop with after
/// printing why it could not start.
pub fn runtime(
    failure: std::process::ExitCode,
) -> Result<tokio::runtime::Runtime, std::process::ExitCode> {
    tokio::runtime::Runtime::new().map_err(|e| {
        eprintln!("error: cannot start the async runtime: {e}");
        failure
    })
}

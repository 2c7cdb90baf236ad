//! Command-line flags every platform client shares, so that each binary
//! spells them, defaults them and documents them the same way, and finds
//! the platform's credentials and key where the platform writes them.

use bus::{BusError, BusOptions};
use protocol::crypto::PlatformPublicKey;
use protocol::layout;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where the platform is and who to be there.
#[derive(Debug, Clone, clap::Args)]
pub struct ConnectArgs {
    /// The platform broker: the only address a device, an AP or an admin
    /// needs [default: 127.0.0.1:8883 (TLS); 127.0.0.1:1883 with
    /// --plaintext or --walkthrough].
    #[arg(
        long = "broker",
        global = true,
        env = "PLATFORM_BROKER",
        value_name = "HOST:PORT"
    )]
    pub broker_addr: Option<String>,
    /// The platform's CA certificate: a server must prove with a
    /// certificate it signed that it is the platform (or its gateway).
    #[arg(
        long,
        global = true,
        env = "PLATFORM_CAFILE",
        value_name = "FILE",
        default_value = layout::DEFAULT_CA_FILE
    )]
    pub cafile: PathBuf,
    /// Plaintext MQTT, for a platform with `tls.enabled = false`: every
    /// login and token then crosses the network in the clear.
    #[arg(long, global = true, env = "PLATFORM_PLAINTEXT")]
    pub plaintext: bool,
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
    /// Read the MQTT password from FILE [default: the identity's credential
    /// file under data/credentials/ when it exists: admin.token for the
    /// admin CLIs, ap/ID.token for an AP].
    #[arg(
        long,
        global = true,
        env = "PLATFORM_PASSWORD_FILE",
        value_name = "FILE"
    )]
    pub password_file: Option<PathBuf>,
    /// The platform's public key (64 hex digits), which signs its answers.
    #[arg(long, global = true, env = "PLATFORM_KEY", value_name = "HEX")]
    pub platform_key: Option<String>,
    /// Read the platform's public key from FILE.
    #[arg(
        long,
        global = true,
        env = "PLATFORM_KEY_FILE",
        value_name = "FILE",
        default_value = DEFAULT_KEY_FILE
    )]
    pub platform_key_file: PathBuf,
    /// Talk to a platform in walkthrough mode (config/walkthrough.toml):
    /// plaintext MQTT, plaintext pass_tmp and password, no signatures.
    /// Never on a real network.
    #[arg(long, global = true, env = "PLATFORM_WALKTHROUGH")]
    pub walkthrough: bool,
}

/// Where the platform writes its public key with its default data dir.
pub const DEFAULT_KEY_FILE: &str = layout::DEFAULT_PUBLIC_KEY_FILE;
/// Where the platform writes bootstrap credentials with its default data dir.
pub const DEFAULT_CREDENTIALS_DIR: &str = layout::DEFAULT_CREDENTIALS_DIR;

impl ConnectArgs {
    /// The platform broker's address: `--broker`, else the default port
    /// of the transport.
    pub fn broker(&self) -> String {
        self.broker_addr.clone().unwrap_or_else(|| {
            if self.is_plaintext() {
                "127.0.0.1:1883"
            } else {
                "127.0.0.1:8883"
            }
            .to_owned()
        })
    }

    /// Whether to talk plaintext MQTT: `--plaintext`, or `--walkthrough`.
    pub fn is_plaintext(&self) -> bool {
        self.plaintext || self.walkthrough
    }

    /// Whom to trust over TLS (the CA in `--cafile`), or None for plaintext.
    pub fn tls(&self) -> Result<Option<tls::ClientTls>, String> {
        if self.is_plaintext() {
            return Ok(None);
        }
        client_tls(&self.cafile).map(Some)
    }

    pub fn username_or(&self, role: &str) -> String {
        self.username.clone().unwrap_or_else(|| role.to_owned())
    }

    /// The password to present as `role`: `--mqtt-password`, else the
    /// `--password-file`, else the platform's bootstrap token for the role
    /// if it is where the default data dir puts it, else empty.
    pub fn password_for(&self, role: &str) -> Result<String, String> {
        self.password_or(&layout::token_file(
            Path::new(DEFAULT_CREDENTIALS_DIR),
            role,
        ))
    }

    /// The password to present: `--mqtt-password`, else the
    /// `--password-file`, else what `default_file` holds if it exists (the
    /// platform's or an admin's credential file, where the default data
    /// dir keeps it), else empty.
    pub fn password_or(&self, default_file: &Path) -> Result<String, String> {
        if !self.mqtt_password.is_empty() {
            return Ok(self.mqtt_password.clone());
        }
        let (path, required) = match &self.password_file {
            Some(p) => (p.clone(), true),
            None => (default_file.to_owned(), false),
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(text.trim().to_owned()),
            Err(e) if required => Err(format!("cannot read {}: {e}", path.display())),
            Err(_) => Ok(String::new()),
        }
    }

    /// Whether a password was given on the command line or in the
    /// environment, rather than left to a default file.
    pub fn password_given(&self) -> bool {
        !self.mqtt_password.is_empty() || self.password_file.is_some()
    }

    /// The platform's public key, or None in walkthrough mode.
    pub fn platform_key(&self) -> Result<Option<PlatformPublicKey>, String> {
        if self.walkthrough {
            return Ok(None);
        }
        let (text, origin) = match &self.platform_key {
            Some(hex) => (hex.clone(), "--platform-key".to_owned()),
            None => match std::fs::read_to_string(&self.platform_key_file) {
                Ok(text) => (text, self.platform_key_file.display().to_string()),
                Err(e) => {
                    return Err(format!(
                        "secure mode needs the platform's public key, and {} cannot be read ({e}). \
                         The platform writes it to DATA_DIR/platform.key.pub on start; pass \
                         --platform-key-file FILE or --platform-key HEX, or --walkthrough for a \
                         platform started with config/walkthrough.toml",
                        self.platform_key_file.display()
                    ))
                }
            },
        };
        PlatformPublicKey::from_hex(&text)
            .map(Some)
            .map_err(|e| format!("{origin}: {e}"))
    }

    /// Options for a connection as `client_id`, presenting `role` unless a
    /// username was given.
    pub fn options(
        &self,
        client_id: impl Into<String>,
        role: &str,
    ) -> Result<BusOptions, BusError> {
        let password = self.password_for(role).map_err(BusError::Config)?;
        let tls = self.tls().map_err(BusError::Config)?;
        Ok(BusOptions::new(&self.broker(), client_id)?
            .with_credentials(self.username_or(role), password)
            .with_tls(tls.map(|t| t.config())))
    }
}

/// Trusts the CA in `path` (PEM), with an error that says where the file
/// comes from.
pub fn client_tls(path: &Path) -> Result<tls::ClientTls, String> {
    let pem = std::fs::read(path).map_err(|e| {
        format!(
            "cannot read the platform's CA {} ({e}). The platform writes it to DATA_DIR/ca.pem on \
             first start; pass --cafile FILE, or --plaintext for a platform with \
             `tls.enabled = false` (--walkthrough for one in walkthrough mode)",
            path.display()
        )
    })?;
    tls::ClientTls::from_pem(&pem, &path.display().to_string()).map_err(|e| e.to_string())
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

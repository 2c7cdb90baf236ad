//! Configuration: serde structs that refuse unknown keys, a built-in
//! default (config/default.toml, compiled in), and validation that names
//! the offending key.

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::Path;

/// The built-in default configuration, with its comments.
pub const DEFAULT_TOML: &str = include_str!("../../config/default.toml");

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid config {origin}: {source}")]
    Parse {
        origin: String,
        source: Box<toml::de::Error>,
    },
    #[error("invalid config: `{key}` {problem}")]
    Invalid { key: String, problem: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub platform: BrokerSettings,
    pub verifier: VerifierSection,
    pub registry: RegistrySection,
    pub metrics: MetricsSection,
    pub security: crate::security::SecuritySection,
    pub tls: TlsSection,
    /// Gateways run in this process. `[[gateways]]` in a file replaces the
    /// default pair; `gateways = []` runs none.
    pub gateways: Vec<GatewaySection>,
}

impl Default for Config {
    fn default() -> Self {
        let gateway = |id: &str, port: u16| GatewaySection {
            id: id.into(),
            listen: SocketAddr::from(([127, 0, 0, 1], port)),
            advertise: None,
            weight: 1,
            close_after_notice_ms: DEFAULT_CLOSE_AFTER_NOTICE_MS,
        };
        Config {
            platform: BrokerSettings::default(),
            verifier: VerifierSection::default(),
            registry: RegistrySection::default(),
            metrics: MetricsSection::default(),
            security: crate::security::SecuritySection::default(),
            tls: TlsSection::default(),
            gateways: vec![gateway("gw-1", 8884), gateway("gw-2", 8885)],
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistrySection {
    pub enabled: bool,
    /// hashed | least-loaded | static
    pub policy: registry::Policy,
    /// Whether a device the registry has never seen gets a gateway.
    pub allow_unknown: bool,
}

impl Default for RegistrySection {
    fn default() -> Self {
        RegistrySection {
            enabled: true,
            policy: registry::Policy::Hashed,
            allow_unknown: true,
        }
    }
}

/// The Prometheus endpoint: `GET http://{listen}/metrics`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsSection {
    /// `false` serves no endpoint; the workers still count.
    pub enabled: bool,
    /// Port 0 picks a free port (tests); the log says which.
    pub listen: SocketAddr,
}

impl Default for MetricsSection {
    fn default() -> Self {
        MetricsSection {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 9898)),
        }
    }
}

/// TLS on the listeners, in secure mode (walkthrough mode is plaintext).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsSection {
    /// MQTT over TLS on every listener, and no plaintext; `false` serves
    /// plaintext MQTT, logins and all.
    pub enabled: bool,
    /// Names (DNS names or IP addresses) every server certificate holds
    /// besides its listener's own address and a gateway's `advertise` host.
    pub names: Vec<String>,
    /// An operator's own certificate chain (PEM, the server's first) for
    /// every listener, instead of one from the platform's CA; relative to
    /// the data dir. Needs `key_file`.
    pub cert_file: Option<std::path::PathBuf>,
    /// The key of `cert_file` (PEM).
    pub key_file: Option<std::path::PathBuf>,
}

impl Default for TlsSection {
    fn default() -> Self {
        TlsSection {
            enabled: true,
            names: vec!["localhost".into()],
            cert_file: None,
            key_file: None,
        }
    }
}

/// One gateway: an embedded broker plus its agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewaySection {
    pub id: String,
    pub listen: SocketAddr,
    /// The "host:port" devices are told to connect to; defaults to `listen`.
    #[serde(default)]
    pub advertise: Option<String>,
    #[serde(default = "one")]
    pub weight: u32,
    /// How long an MQTT 3.1.1 device told to move (a notice on its
    /// redirect topic) may stay connected before the gateway closes its
    /// connection. MQTT 5 devices are closed at once, with a redirecting
    /// DISCONNECT.
    #[serde(default = "default_close_after_notice_ms")]
    pub close_after_notice_ms: u64,
}

fn one() -> u32 {
    1
}

/// [`GatewaySection::close_after_notice_ms`]: long enough that a device
/// busy with a drain of thousands reads its notice and leaves by itself
/// (5 s closed 86 of 10,000 still reading theirs in a `drain-10000`).
pub const DEFAULT_CLOSE_AFTER_NOTICE_MS: u64 = 30_000;

fn default_close_after_notice_ms() -> u64 {
    DEFAULT_CLOSE_AFTER_NOTICE_MS
}

impl GatewaySection {
    /// [`GatewaySection::close_after_notice_ms`].
    pub fn close_after_notice(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.close_after_notice_ms)
    }
}

impl GatewaySection {
    /// The address handed to devices.
    pub fn advertised(&self, bound: SocketAddr) -> String {
        self.advertise.clone().unwrap_or_else(|| bound.to_string())
    }
}

/// One embedded broker's listener and limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BrokerSettings {
    pub listen: SocketAddr,
    pub max_connections: usize,
    pub max_payload_size: usize,
    pub connection_timeout_ms: u16,
    pub max_inflight: usize,
    pub segment_size: usize,
    pub segment_count: usize,
}

impl Default for BrokerSettings {
    fn default() -> Self {
        BrokerSettings {
            listen: SocketAddr::from(([127, 0, 0, 1], 8883)),
            max_connections: 10_000,
            max_payload_size: 256 * 1024,
            connection_timeout_ms: 5_000,
            max_inflight: 100,
            segment_size: 1024 * 1024,
            segment_count: 3,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VerifierSection {
    pub enabled: bool,
}

impl Default for VerifierSection {
    fn default() -> Self {
        VerifierSection { enabled: true }
    }
}

impl Config {
    pub fn from_toml(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|source| ConfigError::Parse {
            origin: origin.to_owned(),
            source: Box::new(source),
        })?;
        config.validate()?;
        Ok(config)
    }

    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_toml(&text, &path.display().to_string())
    }

    /// The built-in default.
    pub fn builtin() -> Result<Self, ConfigError> {
        Self::from_toml(DEFAULT_TOML, "(built-in default)")
    }

    /// Whether the listeners serve TLS: in secure mode, unless
    /// `tls.enabled` is off. Walkthrough mode is plaintext.
    pub fn tls_enabled(&self) -> bool {
        self.tls.enabled && self.security.mode == crate::security::Mode::Secure
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        self.platform.validate("platform")?;
        let tls_invalid = |key: &str, problem: String| ConfigError::Invalid {
            key: format!("tls.{key}"),
            problem,
        };
        if self.tls.cert_file.is_some() != self.tls.key_file.is_some() {
            return Err(tls_invalid(
                "cert_file",
                "and `tls.key_file` go together: give both, or neither".into(),
            ));
        }
        if let Some(bad) = self.tls.names.iter().find(|n| !tls::nameable(n)) {
            return Err(tls_invalid(
                "names",
                format!("holds {bad:?}, which is not a DNS name or an IP address"),
            ));
        }
        self.security
            .validate()
            .map_err(|problem| ConfigError::Invalid {
                key: "security".into(),
                problem,
            })?;
        let mut ids = std::collections::HashSet::new();
        let mut ports = std::collections::HashSet::from([self.platform.listen]);
        for (i, g) in self.gateways.iter().enumerate() {
            let invalid = |key: &str, problem: String| ConfigError::Invalid {
                key: format!("gateways[{i}].{key}"),
                problem,
            };
            protocol::Segment::parse(&g.id)
                .and_then(|_| protocol::check_client_id(&g.id))
                .map_err(|e| invalid("id", format!("{:?} {e}", g.id)))?;
            if !ids.insert(g.id.as_str()) {
                return Err(invalid("id", format!("{:?} is used by two gateways", g.id)));
            }
            if g.listen.port() != 0 && !ports.insert(g.listen) {
                return Err(invalid(
                    "listen",
                    format!("{} is already used by another listener", g.listen),
                ));
            }
            if g.weight == 0 || g.weight > 1000 {
                return Err(invalid(
                    "weight",
                    format!("is {}; it must be 1 to 1000", g.weight),
                ));
            }
            if !(100..=600_000).contains(&g.close_after_notice_ms) {
                return Err(invalid(
                    "close_after_notice_ms",
                    format!(
                        "is {}; it must be 100 to 600000 (10 minutes)",
                        g.close_after_notice_ms
                    ),
                ));
            }
            if g.advertise.is_none() && g.listen.ip().is_unspecified() {
                return Err(invalid(
                    "advertise",
                    format!("is needed: devices cannot connect to {}", g.listen),
                ));
            }
        }
        let m = &self.metrics;
        if m.enabled && m.listen.port() != 0 && ports.contains(&m.listen) {
            return Err(ConfigError::Invalid {
                key: "metrics.listen".into(),
                problem: format!("{} is already used by a broker listener", m.listen),
            });
        }
        Ok(())
    }
}

impl BrokerSettings {
    fn validate(&self, section: &str) -> Result<(), ConfigError> {
        let invalid = |key: &str, problem: String| ConfigError::Invalid {
            key: format!("{section}.{key}"),
            problem,
        };
        if !(1..=19_000).contains(&self.max_connections) {
            return Err(invalid(
                "max_connections",
                format!(
                    "is {}; it must be 1 to 19000 (a process may hold about 20000 open files)",
                    self.max_connections
                ),
            ));
        }
        if !(1024..=16 * 1024 * 1024).contains(&self.max_payload_size) {
            return Err(invalid(
                "max_payload_size",
                format!(
                    "is {}; it must be 1024 to 16777216 bytes",
                    self.max_payload_size
                ),
            ));
        }
        if self.connection_timeout_ms < 100 {
            return Err(invalid(
                "connection_timeout_ms",
                format!("is {}; it must be at least 100", self.connection_timeout_ms),
            ));
        }
        if !(1..=u16::MAX as usize).contains(&self.max_inflight) {
            return Err(invalid(
                "max_inflight",
                format!("is {}; it must be 1 to 65535", self.max_inflight),
            ));
        }
        if self.segment_size < self.max_payload_size {
            return Err(invalid(
                "segment_size",
                format!(
                    "is {}; it must be at least max_payload_size ({}) so one message fits a segment",
                    self.segment_size, self.max_payload_size
                ),
            ));
        }
        if !(1..=64).contains(&self.segment_count) {
            return Err(invalid(
                "segment_count",
                format!("is {}; it must be 1 to 64", self.segment_count),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_default_file_matches_the_code_defaults() {
        assert_eq!(Config::builtin().unwrap(), Config::default());
    }

    #[test]
    fn empty_file_is_the_default() {
        assert_eq!(Config::from_toml("", "t").unwrap(), Config::default());
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = Config::from_toml("[platform]\nlisten_addr = \"1.2.3.4:1\"\n", "t")
            .unwrap_err()
            .to_string();
        assert!(err.contains("listen_addr"), "{err}");
        let err = Config::from_toml("[verifer]\nenabled = true\n", "t")
            .unwrap_err()
            .to_string();
        assert!(err.contains("verifer"), "{err}");
    }

    #[test]
    fn gateway_problems_are_named() {
        let two = "[[gateways]]\nid = \"gw-1\"\nlisten = \"127.0.0.1:1900\"\n[[gateways]]\nid = \"gw-1\"\nlisten = \"127.0.0.1:1901\"\n";
        let err = Config::from_toml(two, "t").unwrap_err().to_string();
        assert!(err.contains("gateways[1].id"), "{err}");
        let clash = "[[gateways]]\nid = \"gw-1\"\nlisten = \"127.0.0.1:8883\"\n";
        let err = Config::from_toml(clash, "t").unwrap_err().to_string();
        assert!(err.contains("gateways[0].listen"), "{err}");
        let err = Config::from_toml("[registry]\npolicy = \"random\"\n", "t")
            .unwrap_err()
            .to_string();
        assert!(err.contains("random"), "{err}");
        let none = Config::from_toml("gateways = []\n", "t").unwrap();
        assert!(none.gateways.is_empty());
    }

    #[test]
    fn metrics_problems_are_named() {
        let clash = "[metrics]\nlisten = \"127.0.0.1:8884\"\n";
        let err = Config::from_toml(clash, "t").unwrap_err().to_string();
        assert!(err.contains("metrics.listen"), "{err}");
        let off = Config::from_toml(
            "[metrics]\nenabled = false\nlisten = \"127.0.0.1:8883\"\n",
            "t",
        )
        .unwrap();
        assert!(!off.metrics.enabled);
        let err = Config::from_toml("[metrics]\nport = 9\n", "t")
            .unwrap_err()
            .to_string();
        assert!(err.contains("port"), "{err}");
        let err = Config::from_toml("[metrics]\nlisten = \"\"\n", "t")
            .unwrap_err()
            .to_string();
        assert!(err.contains("listen"), "{err}");
    }

    /// `security.rekey`: printed by `broker default-config` as `proof`,
    /// read as `admin`, and a value that is neither, or `admin` where
    /// walkthrough mode registers no device keys, is refused by name.
    #[test]
    fn the_rekey_policy_is_printed_read_and_checked() {
        assert!(
            DEFAULT_TOML.contains("\nrekey = \"proof\"\n"),
            "{DEFAULT_TOML}"
        );
        assert_eq!(
            Config::builtin().unwrap().security.rekey,
            verifier::Rekey::Proof
        );
        let admin = Config::from_toml("[security]\nrekey = \"admin\"\n", "t").unwrap();
        assert_eq!(admin.security.rekey, verifier::Rekey::Admin);
        let err = Config::from_toml("[security]\nrekey = \"sometimes\"\n", "t")
            .unwrap_err()
            .to_string();
        assert!(err.contains("rekey") && err.contains("sometimes"), "{err}");
        let err = Config::from_toml(
            "[security]\nmode = \"walkthrough\"\nrekey = \"admin\"\n",
            "t",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("security") && err.contains("rekey"), "{err}");
        let plain = "[security]\nmode = \"walkthrough\"\nrekey = \"proof\"\n";
        assert!(Config::from_toml(plain, "t").is_ok());
    }

    #[test]
    fn bad_values_are_named() {
        let err = Config::from_toml("[platform]\nlisten = \"nope\"\n", "t")
            .unwrap_err()
            .to_string();
        assert!(err.contains("listen"), "{err}");
        let err = Config::from_toml("[platform]\nmax_connections = 0\n", "t")
            .unwrap_err()
            .to_string();
        assert!(err.contains("platform.max_connections"), "{err}");
        let err = Config::from_toml("[platform]\nsegment_size = 10\n", "t")
            .unwrap_err()
            .to_string();
        assert!(err.contains("platform.segment_size"), "{err}");
        let err = Config::from_toml("[tls]\ncert_file = \"a.pem\"\n", "t")
            .unwrap_err()
            .to_string();
        assert!(err.contains("tls.cert_file"), "{err}");
        let err = Config::from_toml("[tls]\nnames = [\"a b\"]\n", "t")
            .unwrap_err()
            .to_string();
        assert!(err.contains("tls.names"), "{err}");
        let err = Config::from_toml("[verifier]\nenabled = \"yes\"\n", "t")
            .unwrap_err()
            .to_string();
        assert!(err.contains("enabled"), "{err}");
    }
}

//! Test support: start the platform in-process on a free port, and drive
//! it through real MQTT clients. Each test gets its own broker and its own
//! temporary data directory.

#![forbid(unsafe_code)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use ap_sim::{Ap, ApConfig, Network};
use broker::{Config, Platform, StartOptions};
use bus::{Bus, BusOptions, Message};
use device_sim::{DeviceConfig, DeviceError, DeviceEvent, Joined};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use verifier::AdminClient;

pub const SSID: &str = "home-wifi";
pub const WIFI_PASSWORD: &str = "correct horse battery";

/// A running platform with its own data dir.
pub struct TestPlatform {
    platform: Option<Platform>,
    pub dir: tempfile::TempDir,
    pub addr: SocketAddr,
    opts: StartOptions,
}

pub fn test_config() -> Config {
    let mut config = Config::default();
    config.platform.listen = "127.0.0.1:0".parse().unwrap();
    config
}

/// Logs to the test's output when RUST_LOG is set; silent otherwise.
pub fn init_tracing() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
}

impl TestPlatform {
    pub async fn start() -> Self {
        Self::start_with(StartOptions::default()).await
    }

    pub async fn start_with(opts: StartOptions) -> Self {
        init_tracing();
        let dir = tempfile::tempdir().unwrap();
        let platform = Platform::start(&test_config(), dir.path(), opts.clone())
            .await
            .unwrap();
        let addr = platform.broker_addr();
        TestPlatform {
            platform: Some(platform),
            dir,
            addr,
            opts,
        }
    }

    pub fn broker(&self) -> String {
        self.addr.to_string()
    }

    /// Stops the workers (drain + flush) and starts a new platform, on a
    /// new port, over the same data dir.
    pub async fn restart(&mut self) {
        if let Some(p) = self.platform.take() {
            p.stop().await.unwrap();
        }
        let platform = Platform::start(&test_config(), self.dir.path(), self.opts.clone())
            .await
            .unwrap();
        self.addr = platform.broker_addr();
        self.platform = Some(platform);
    }

    pub async fn admin(&self) -> AdminClient {
        let opts = BusOptions::new(&self.broker(), unique_id("admin")).unwrap();
        AdminClient::connect(opts, Duration::from_secs(10))
            .await
            .unwrap()
    }

    pub async fn enroll(&self, uuid: &str, pass_tmp: &str) {
        let admin = self.admin().await;
        admin
            .request(protocol::admin::AdminOp::Enroll {
                uuid: uuid.into(),
                pass_tmp: pass_tmp.into(),
                replace: false,
            })
            .await
            .unwrap();
        admin.close().await;
    }

    pub fn ap_config(&self, ap_id: &str, auto_confirm: bool) -> ApConfig {
        let mut config = ApConfig::new(
            self.broker(),
            ap_id,
            vec![Network {
                ssid: SSID.into(),
                password: WIFI_PASSWORD.into(),
            }],
        );
        config.auto_confirm = auto_confirm;
        config
    }

    pub async fn start_ap(&self, config: ApConfig, shutdown: &CancellationToken) -> Ap {
        ap_sim::start(config, shutdown.clone()).await.unwrap()
    }

    pub fn device_config(&self, uuid: &str, pass_tmp: &str, auto_confirm: bool) -> DeviceConfig {
        let mut config = DeviceConfig::new(self.broker(), uuid, pass_tmp, SSID);
        config.auto_confirm = auto_confirm;
        config.answer_timeout = Duration::from_secs(20);
        config.retry_base = Duration::from_millis(500);
        config
    }

    /// A raw MQTT client subscribed to `filters`, ready.
    pub async fn client(
        &self,
        filters: &[String],
    ) -> (Bus, mpsc::Receiver<Message>, CancellationToken) {
        let token = CancellationToken::new();
        let opts = BusOptions::new(&self.broker(), unique_id("probe")).unwrap();
        let (bus, inbox) = Bus::connect(opts, filters.to_vec(), token.clone());
        bus.ready(Duration::from_secs(10)).await.unwrap();
        (bus, inbox, token)
    }
}

/// Runs one device to the end with no interaction.
pub async fn onboard(config: DeviceConfig) -> Result<Joined, DeviceError> {
    let (tx, _rx) = mpsc::unbounded_channel::<DeviceEvent>();
    device_sim::onboard(&config, &tx, None, &CancellationToken::new()).await
}

pub fn unique_id(prefix: &str) -> String {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{prefix}-{}-{n}", std::process::id())
}

/// A fresh random device UUID.
pub fn new_uuid() -> String {
    protocol::DeviceUuid::new_random().as_str().to_owned()
}

/// Waits for the next message on `inbox`, failing the test after `secs`.
pub async fn next_message(inbox: &mut mpsc::Receiver<Message>, secs: u64) -> Message {
    tokio::time::timeout(Duration::from_secs(secs), inbox.recv())
        .await
        .expect("no message in time")
        .expect("inbox closed")
}

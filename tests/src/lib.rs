//! Test support: start the platform in-process on a free port, and drive
//! it through real MQTT clients. Each test gets its own broker and its own
//! temporary data directory.

#![forbid(unsafe_code)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod raw;

use ap_sim::{Ap, ApConfig, Network};
use broker::{Config, Platform, StartOptions};
use bus::{Bus, BusOptions, Message, TlsConfig};
use device_sim::fleet::FleetConfig;
use device_sim::gateway::{stay_homed, HomeConfig, HomeEvent, KnownGateway};
use device_sim::{DeviceConfig, DeviceError, DeviceEvent, Joined};
use protocol::registry_admin::{RegistryOk, RegistryOp};
use registry::RegistryClient;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
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
    config: Config,
    /// The login keys registered for devices ([`TestPlatform::device_key`]).
    device_keys: Mutex<HashMap<String, protocol::crypto::DeviceKey>>,
    /// Whom clients trust when the platform serves TLS: its CA, from its
    /// data dir. None: the listeners are plaintext.
    tls: Option<tls::ClientTls>,
    /// Each device's own TLS configuration ([`TestPlatform::device_tls`]).
    device_tls: Mutex<HashMap<String, tls::DeviceTls>>,
}

/// The default config on free ports: the platform, the metrics endpoint
/// and gateways gw-1 and gw-2 all on port 0; in walkthrough mode, which
/// most flow tests exercise, and so plaintext (the secure tests use
/// [`secure_test_config`]).
pub fn test_config() -> Config {
    let mut config = secure_test_config();
    config.security.mode = broker::security::Mode::Walkthrough;
    config
}

/// [`test_config`] in secure mode, the default: MQTT over TLS on every
/// listener.
pub fn secure_test_config() -> Config {
    let mut config = Config::default();
    config.platform.listen = "127.0.0.1:0".parse().unwrap();
    config.metrics.listen = "127.0.0.1:0".parse().unwrap();
    for g in &mut config.gateways {
        g.listen = "127.0.0.1:0".parse().unwrap();
    }
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
        Self::start_config(test_config(), opts).await
    }

    pub async fn start_config(config: Config, opts: StartOptions) -> Self {
        init_tracing();
        let dir = tempfile::tempdir().unwrap();
        let platform = Platform::start(&config, dir.path(), opts.clone())
            .await
            .unwrap();
        let addr = platform.broker_addr();
        let tls = client_tls(&config, dir.path());
        let p = TestPlatform {
            platform: Some(platform),
            dir,
            addr,
            opts,
            config,
            device_keys: Default::default(),
            tls,
            device_tls: Default::default(),
        };
        p.wait_for_gateways().await;
        p
    }

    async fn wait_for_gateways(&self) {
        if !self.opts.broker_only && self.config.registry.enabled {
            self.wait_gateways_alive(self.config.gateways.len()).await;
        }
    }

    /// Waits until the registry has heard `n` gateways announce themselves.
    pub async fn wait_gateways_alive(&self, n: usize) {
        let client = self.registry().await;
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let RegistryOk::Gateways { gateways } =
                client.request(RegistryOp::Gateways).await.unwrap()
            {
                if gateways.iter().filter(|g| g.alive).count() >= n {
                    break;
                }
            }
            assert!(
                std::time::Instant::now() < deadline,
                "gateways did not come up"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        client.close().await;
    }

    /// Secure mode: the bootstrap password of `role` (`admin`), or of the
    /// bootstrap AP (`ap/ap-1`). Walkthrough: empty.
    pub fn token(&self, role: &str) -> String {
        std::fs::read_to_string(protocol::layout::token_file(
            &protocol::layout::credentials_dir(self.dir.path()),
            role,
        ))
        .map(|t| t.trim().to_owned())
        .unwrap_or_default()
    }

    /// Secure mode: the platform's public key.
    pub fn platform_key(&self) -> Option<protocol::crypto::PlatformPublicKey> {
        let hex =
            std::fs::read_to_string(protocol::layout::public_key_file(self.dir.path())).ok()?;
        protocol::crypto::PlatformPublicKey::from_hex(&hex).ok()
    }

    /// Whom a client of this platform trusts: its CA (`DATA_DIR/ca.pem`)
    /// when it serves TLS; None when it is plaintext.
    pub fn tls(&self) -> Option<tls::ClientTls> {
        self.tls.clone()
    }

    /// A TLS configuration for one new client, with a session cache of
    /// its own; None when the platform is plaintext.
    pub fn tls_config(&self) -> Option<TlsConfig> {
        self.tls.as_ref().map(tls::ClientTls::config)
    }

    /// Device `device_id`'s own TLS configuration, the same for every
    /// config a test makes for it (onboarding, its gateway), as a real
    /// device keeps one: its reconnects resume their sessions. None when
    /// the platform is plaintext.
    pub fn device_tls(&self, device_id: &str) -> Option<tls::DeviceTls> {
        let tls = self.tls.as_ref()?;
        Some(
            self.device_tls
                .lock()
                .unwrap()
                .entry(device_id.to_owned())
                .or_insert_with(|| tls.device())
                .clone(),
        )
    }

    /// Options for a new client of the platform broker as `client_id`,
    /// over TLS when the platform serves it; no login.
    pub fn bus_options(&self, client_id: impl Into<String>) -> BusOptions {
        self.options_at(&self.broker(), client_id)
    }

    /// [`TestPlatform::bus_options`] for the broker at `addr` (one of the
    /// platform's gateways, say). A gateway's certificate is verified as a
    /// device verifies it: for that gateway's id, not the address.
    pub fn options_at(&self, addr: &str, client_id: impl Into<String>) -> BusOptions {
        let tls = match self.gateway_at(addr) {
            Some(id) => self.tls.as_ref().map(|t| t.device().gateway(&id).unwrap()),
            None => self.tls_config(),
        };
        BusOptions::new(addr, client_id).unwrap().with_tls(tls)
    }

    /// The id of the in-process gateway listening at `addr`, if one does.
    fn gateway_at(&self, addr: &str) -> Option<String> {
        self.gateways()
            .into_iter()
            .find(|(_, a)| a == addr)
            .map(|(id, _)| id)
    }

    /// A way to open raw connections to the broker at `addr`, as this
    /// platform's clients do (over TLS when it serves it; a gateway
    /// verified for its id).
    pub fn dialer_at(&self, addr: SocketAddr) -> Dialer {
        Dialer {
            addr,
            tls: self.tls(),
            gateway: self.gateway_at(&addr.to_string()),
        }
    }

    /// [`TestPlatform::dialer_at`] the platform broker.
    pub fn dialer(&self) -> Dialer {
        self.dialer_at(self.addr)
    }

    /// Options for an admin client: the admin role in secure mode.
    pub fn admin_opts(&self, prefix: &str) -> BusOptions {
        self.bus_options(unique_id(prefix))
            .with_credentials("admin", self.token("admin"))
    }

    pub async fn registry(&self) -> RegistryClient {
        let opts = self.admin_opts("reg-admin");
        RegistryClient::connect(opts, Duration::from_secs(10))
            .await
            .unwrap()
    }

    /// A device that stays on its gateway, reporting what it does.
    pub fn home(&self, device_id: &str, last_known: Option<KnownGateway>) -> HomedDevice {
        let mut config = self.home_config(device_id);
        config.last_known = last_known;
        HomedDevice::spawn(config)
    }

    /// [`TestPlatform::home`]'s configuration, for a test to adjust.
    pub fn home_config(&self, device_id: &str) -> HomeConfig {
        let mut config = HomeConfig::new(self.broker(), device_id);
        config.tls = self.device_tls(device_id);
        config
    }

    pub fn broker(&self) -> String {
        self.addr.to_string()
    }

    /// The address of in-process gateway `gateway_id`.
    pub fn gateway_address(&self, gateway_id: &str) -> String {
        self.gateways()
            .into_iter()
            .find(|(id, _)| id == gateway_id)
            .map(|(_, address)| address)
            .unwrap_or_else(|| panic!("no gateway {gateway_id}"))
    }

    /// The in-process gateways: (id, address).
    pub fn gateways(&self) -> Vec<(String, String)> {
        self.platform
            .as_ref()
            .map(|p| p.gateways().to_vec())
            .unwrap_or_default()
    }

    /// Where the running platform serves `/metrics`.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.platform.as_ref().and_then(Platform::metrics_addr)
    }

    /// Stops the workers (drain + flush) and leaves the data dir, so that
    /// a test can open the stores; [`TestPlatform::restart`] starts the
    /// platform again.
    pub async fn stop(&mut self) {
        if let Some(p) = self.platform.take() {
            p.stop().await.unwrap();
        }
    }

    /// Stops the workers (drain + flush) and starts a new platform, on a
    /// new port, over the same data dir.
    pub async fn restart(&mut self) {
        if let Some(p) = self.platform.take() {
            p.stop().await.unwrap();
        }
        let platform = Platform::start(&self.config, self.dir.path(), self.opts.clone())
            .await
            .unwrap();
        self.addr = platform.broker_addr();
        self.tls = client_tls(&self.config, self.dir.path());
        self.platform = Some(platform);
        self.wait_for_gateways().await;
    }

    pub async fn admin(&self) -> AdminClient {
        let opts = self.admin_opts("admin");
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
        config.tls = self.tls_config();
        config.auto_confirm = auto_confirm;
        config.platform_key = self.platform_key();
        config
    }

    /// Starts an AP; on a secure platform it is registered first, for the
    /// SSIDs of its config.
    pub async fn start_ap(&self, mut config: ApConfig, shutdown: &CancellationToken) -> Ap {
        if self.platform_key().is_some() {
            config.password = self.register_ap(&config).await;
        }
        ap_sim::start(config, shutdown.clone()).await.unwrap()
    }

    /// Registers gateway `id` at `address` with a new credential, as an
    /// admin does before starting it; returns the credential.
    pub async fn register_gateway(&self, id: &str, address: &str) -> String {
        let registry =
            RegistryClient::connect(self.admin_opts("register"), Duration::from_secs(10))
                .await
                .unwrap();
        let credential = register_gateway_with(&registry, id, address).await;
        registry.close().await;
        credential
    }

    /// Registers the AP of `config` for its SSIDs, with a new credential;
    /// returns the credential.
    pub async fn register_ap(&self, config: &ApConfig) -> String {
        let credential = protocol::crypto::random_b64(24);
        let admin = self.admin().await;
        admin
            .request(protocol::admin::AdminOp::ApRegister {
                ap_id: config.ap_id.clone(),
                ssids: config.networks.iter().map(|n| n.ssid.clone()).collect(),
                credential_sha256: protocol::crypto::sha256_hex(&credential),
            })
            .await
            .unwrap();
        admin.close().await;
        credential
    }

    pub fn device_config(&self, uuid: &str, pass_tmp: &str, auto_confirm: bool) -> DeviceConfig {
        let mut config = DeviceConfig::new(self.broker(), uuid, pass_tmp, SSID);
        config.tls = self.device_tls(uuid).map(|t| t.platform());
        config.device_key = self.device_own_key(uuid);
        config.auto_confirm = auto_confirm;
        config.answer_timeout = Duration::from_secs(20);
        config.retry_base = Duration::from_millis(500);
        config.platform_key = self.platform_key();
        config
    }

    /// [`TestPlatform::home`] for a secure platform: the device logs in
    /// with a key of its own, registered as a factory would
    /// ([`TestPlatform::device_key`]), and believes only signed answers.
    pub async fn home_secure(&self, device_id: &str) -> HomedDevice {
        HomedDevice::spawn(self.home_secure_config(device_id).await)
    }

    /// [`TestPlatform::home_secure`]'s configuration, for a test to adjust.
    pub async fn home_secure_config(&self, device_id: &str) -> HomeConfig {
        let key = self.platform_key().expect("a secure platform");
        let device_key = self.device_key(device_id).await;
        let mut config = HomeConfig::new(self.broker(), device_id).secure(key, device_key);
        config.tls = self.device_tls(device_id);
        config
    }

    /// The device's own key pair: one per device of this platform, as a
    /// real device keeps its key, whatever config a test makes for it.
    pub fn device_own_key(&self, uuid: &str) -> protocol::crypto::DeviceKey {
        self.device_keys
            .lock()
            .unwrap()
            .entry(uuid.to_owned())
            .or_insert_with(protocol::crypto::DeviceKey::generate)
            .clone()
    }

    /// The device's key, registered by an admin (`verifier register-key`)
    /// as for a device whose key pair was made at the factory: it logs in
    /// with it without onboarding. The same key if it has one already.
    pub async fn device_key(&self, uuid: &str) -> protocol::crypto::DeviceKey {
        let key = self.device_own_key(uuid);
        let admin = self.admin().await;
        admin
            .request(protocol::admin::AdminOp::RegisterKey {
                uuid: uuid.into(),
                device_key: key.public_hex(),
            })
            .await
            .unwrap();
        admin.close().await;
        key
    }

    /// A fleet of `devices` on [`SSID`], trusting this platform as its
    /// devices do (each with a TLS configuration of its own) and believing
    /// only its signed answers in secure mode.
    pub fn fleet_config(&self, devices: Vec<device_sim::manifest::Identity>) -> FleetConfig {
        let mut config = FleetConfig::new(self.broker(), devices, SSID);
        config.tls = self.tls();
        config.platform_key = self.platform_key();
        config
    }

    /// A raw MQTT client subscribed to `filters`, ready.
    pub async fn client(
        &self,
        filters: &[String],
    ) -> (Bus, mpsc::Receiver<Message>, CancellationToken) {
        let token = CancellationToken::new();
        let opts = self.admin_opts("probe");
        let (bus, inbox) = Bus::connect(opts, filters.to_vec(), token.clone());
        bus.ready(Duration::from_secs(10)).await.unwrap();
        (bus, inbox, token)
    }
}

/// A device running [`stay_homed`] in the background.
pub struct HomedDevice {
    pub events: mpsc::UnboundedReceiver<HomeEvent>,
    pub stop: CancellationToken,
    pub task: tokio::task::JoinHandle<Result<(), DeviceError>>,
}

impl HomedDevice {
    /// Runs [`stay_homed`] with `config` in the background.
    pub fn spawn(config: HomeConfig) -> HomedDevice {
        let (tx, events) = mpsc::unbounded_channel();
        let stop = CancellationToken::new();
        let token = stop.clone();
        let task = tokio::spawn(async move { stay_homed(&config, &tx, &token).await });
        HomedDevice { events, stop, task }
    }

    /// Waits for the next connection to a gateway: (gateway, previous).
    pub async fn connected(&mut self, secs: u64) -> (String, Option<String>) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let event = tokio::time::timeout_at(deadline, self.events.recv())
                .await
                .expect("the device did not connect in time")
                .expect("the device stopped");
            if let HomeEvent::Connected {
                gateway_id, from, ..
            } = event
            {
                return (gateway_id, from);
            }
        }
    }

    /// Waits for the redirect off `from` at `epoch`, then asserts that the
    /// device went straight to `to` on the assignment the notice carried,
    /// with no query to the registry in between.
    /// Returns how the notice came: the MQTT 5 DISCONNECT, described, or
    /// None for a notice on the redirect topic.
    pub async fn moves_without_asking(
        &mut self,
        from: &str,
        to: &str,
        epoch: u64,
    ) -> Option<String> {
        let redirect = self
            .until(10, |e| matches!(e, HomeEvent::Redirected { .. }))
            .await;
        let HomeEvent::Redirected {
            gateway_id,
            epoch: e,
            to: Some(t),
            by,
            ..
        } = redirect
        else {
            panic!("{redirect:?}");
        };
        assert!(
            gateway_id == from && e == epoch && t == to,
            "{gateway_id} {e} {t}"
        );
        let next = self
            .until(10, |e| {
                matches!(e, HomeEvent::Connected { .. } | HomeEvent::Assigned { .. })
            })
            .await;
        assert!(
            matches!(next, HomeEvent::Connected { ref gateway_id, from: Some(ref f), epoch: e, .. }
                if gateway_id == to && f == from && e == epoch),
            "{next:?}"
        );
        by
    }

    /// Waits for an event matching `pred`.
    pub async fn until(&mut self, secs: u64, pred: impl Fn(&HomeEvent) -> bool) -> HomeEvent {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let event = tokio::time::timeout_at(deadline, self.events.recv())
                .await
                .expect("no such event in time")
                .expect("the device stopped");
            if pred(&event) {
                return event;
            }
        }
    }
}

/// A device running [`device_sim::onboard`] in the background.
pub struct OnboardingDevice {
    pub events: mpsc::UnboundedReceiver<DeviceEvent>,
    pub task: tokio::task::JoinHandle<Result<Joined, DeviceError>>,
}

impl OnboardingDevice {
    pub fn spawn(config: DeviceConfig) -> Self {
        let (tx, events) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            device_sim::onboard(&config, &tx, None, &CancellationToken::new()).await
        });
        OnboardingDevice { events, task }
    }

    /// Waits for a step matching `pred`.
    pub async fn until(&mut self, secs: u64, pred: impl Fn(&DeviceEvent) -> bool) -> DeviceEvent {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let event = tokio::time::timeout_at(deadline, self.events.recv())
                .await
                .expect("no such step in time")
                .expect("the device stopped");
            if pred(&event) {
                return event;
            }
        }
    }
}

/// Runs one device to the end with no interaction.
pub async fn onboard(config: DeviceConfig) -> Result<Joined, DeviceError> {
    let (tx, _rx) = mpsc::unbounded_channel::<DeviceEvent>();
    device_sim::onboard(&config, &tx, None, &CancellationToken::new()).await
}

/// The other of the two default gateways.
pub fn other_gateway(gateway_id: &str) -> &'static str {
    if gateway_id == "gw-1" {
        "gw-2"
    } else {
        "gw-1"
    }
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

/// A client logged in as `username` with `password`, under `client_id`,
/// subscribed to `filters`: what an attacker holding one identity's
/// credential does. Dropping it closes the connection.
pub struct Session {
    pub bus: Bus,
    pub inbox: mpsc::Receiver<Message>,
    /// How the first attempt ended: Ok once subscribed, else the refusal.
    pub ready: Result<(), String>,
    stop: CancellationToken,
}

/// Registers gateway `id` at `address` (weight 1) through `registry`, with
/// a new credential, as an admin does before starting it; returns the
/// credential.
pub async fn register_gateway_with(registry: &RegistryClient, id: &str, address: &str) -> String {
    let credential = protocol::crypto::random_b64(24);
    registry
        .request(RegistryOp::GatewayRegister {
            gateway_id: id.into(),
            address: address.into(),
            weight: 1,
            credential_sha256: Some(protocol::crypto::sha256_hex(&credential)),
            certificate_request: None,
        })
        .await
        .unwrap();
    credential
}

/// A gateway registered to run as its own process over TLS: its login,
/// and the certificate the platform's CA issued it, with its key.
pub struct RegisteredGateway {
    pub credential: String,
    /// The certificate chain, PEM (the gateway's, then the CA's).
    pub chain_pem: String,
    /// The key of the certificate, PEM: made here, it never crossed the
    /// network.
    pub key_pem: String,
}

/// [`register_gateway_with`], with a certificate request for the host of
/// `address`, as `registry gateway add --out` sends it: the registry has
/// the platform's CA sign it.
pub async fn register_gateway_with_certificate(
    registry: &RegistryClient,
    id: &str,
    address: &str,
) -> RegisteredGateway {
    let credential = protocol::crypto::random_b64(24);
    let host = address.rsplit_once(':').map_or(address, |(host, _)| host);
    let (request, key_pem) = tls::request(&[host.to_owned()]).unwrap();
    let answer = registry
        .request(RegistryOp::GatewayRegister {
            gateway_id: id.into(),
            address: address.into(),
            weight: 1,
            credential_sha256: Some(protocol::crypto::sha256_hex(&credential)),
            certificate_request: Some(request),
        })
        .await
        .unwrap();
    match answer {
        RegistryOk::GatewayRegistered {
            certificate: Some(chain_pem),
            ..
        } => RegisteredGateway {
            credential,
            chain_pem,
            key_pem,
        },
        other => panic!("no certificate for gateway {id}: {other:?}"),
    }
}

/// A fresh login token of device `uuid`, signed by `key`.
pub fn device_token(key: &protocol::crypto::DeviceKey, uuid: &str) -> String {
    protocol::crypto::device_login_token(
        key,
        uuid,
        protocol::now_ms(),
        &protocol::crypto::login_nonce(),
    )
}

impl Session {
    pub async fn open(
        p: &TestPlatform,
        client_id: &str,
        username: &str,
        password: &str,
        filters: &[String],
    ) -> Self {
        let stop = CancellationToken::new();
        let opts = p
            .bus_options(client_id)
            .with_credentials(username, password);
        let (bus, inbox) = Bus::connect(opts, filters.to_vec(), stop.clone());
        let ready = bus
            .ready_once(Duration::from_secs(5))
            .await
            .map_err(|e| e.to_string());
        Session {
            bus,
            inbox,
            ready,
            stop,
        }
    }

    /// True if the broker closed the connection within `secs`: an ACL
    /// refusal disconnects the client.
    pub async fn cut_off(&self, secs: u64) -> bool {
        let mut state = self.bus.watch_state();
        tokio::time::timeout(
            Duration::from_secs(secs),
            state.wait_for(|s| !matches!(s, bus::LinkState::Ready)),
        )
        .await
        .is_ok_and(|r| r.is_ok())
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Whom the clients of a platform started with `config` over `data_dir`
/// trust: the CA it wrote there, when it serves TLS.
fn client_tls(config: &Config, data_dir: &std::path::Path) -> Option<tls::ClientTls> {
    if !config.tls_enabled() {
        return None;
    }
    let file = protocol::layout::ca_file(data_dir);
    let pem = std::fs::read(&file)
        .unwrap_or_else(|e| panic!("the platform wrote no CA at {}: {e}", file.display()));
    Some(tls::ClientTls::from_pem(&pem, &file.display().to_string()).unwrap())
}

/// Opens raw connections to one listener, for tests that write every byte
/// of MQTT by hand: plaintext, or TLS trusting the platform's CA (the
/// handshake done before the first byte of MQTT is sent).
#[derive(Clone)]
pub struct Dialer {
    pub addr: SocketAddr,
    pub tls: Option<tls::ClientTls>,
    /// The gateway listening at `addr`, verified for its id; None: the
    /// platform broker, verified for the address.
    pub gateway: Option<String>,
}

impl Dialer {
    /// A connection (and, over TLS, a completed handshake), reads timing
    /// out after 3 s.
    pub fn connect(&self) -> std::io::Result<RawStream> {
        let mut tcp = std::net::TcpStream::connect(self.addr)?;
        tcp.set_read_timeout(Some(Duration::from_secs(3)))?;
        let Some(tls) = &self.tls else {
            return Ok(RawStream::Plain(tcp));
        };
        let mut session = match &self.gateway {
            None => tls::blocking_session(tls, self.addr.ip()).map_err(std::io::Error::other)?,
            Some(id) => rustls::ClientConnection::new(
                tls.device().gateway(id).map_err(std::io::Error::other)?,
                rustls::pki_types::ServerName::IpAddress(self.addr.ip().into()),
            )
            .map_err(std::io::Error::other)?,
        };
        while session.is_handshaking() {
            session.complete_io(&mut tcp)?;
        }
        Ok(RawStream::Tls(Box::new(rustls::StreamOwned::new(
            session, tcp,
        ))))
    }
}

/// A raw connection from a [`Dialer`].
pub enum RawStream {
    Plain(std::net::TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>>),
}

impl std::io::Read for RawStream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            RawStream::Plain(s) => s.read(buf),
            RawStream::Tls(s) => s.read(buf),
        }
    }
}

impl std::io::Write for RawStream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            RawStream::Plain(s) => s.write(buf),
            RawStream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            RawStream::Plain(s) => s.flush(),
            RawStream::Tls(s) => s.flush(),
        }
    }
}

/// Reads from `s` until the peer closes the connection, and returns what
/// came before; an error if it is still open when a read times out. A
/// reset, or a TLS stream cut without its closing alert, is a close too.
pub fn read_until_closed(s: &mut impl std::io::Read) -> std::io::Result<Vec<u8>> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Ok(got),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(e)
            }
            Err(_) => return Ok(got),
        }
    }
}

//! Many simulated devices in one process.
//!
//! Every device runs [`crate::live`], the very code a single `device-sim`
//! runs, with its own MQTT connections and state. The fleet only shares the
//! runtime and adds pacing (`concurrency`, `rate`) and bookkeeping
//! ([`FleetStats`]), from which [`crate::report::FleetReport`] is built.

use crate::gateway::{HomeConfig, HomeEvent};
use crate::manifest::Identity;
use crate::report::FleetReport;
use crate::{DeviceConfig, DeviceError, DeviceEvent, LifeEvents};
use protocol::crypto::PlatformPublicKey;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::warn;

pub use crate::stats::{FleetStats, Phase, Progress};

/// How a fleet runs.
#[derive(Debug, Clone)]
pub struct FleetConfig {
    /// The platform broker, "host:port".
    pub broker: String,
    /// Whom the devices trust over TLS; each makes its own configuration
    /// from it. None: plaintext.
    pub tls: Option<tls::ClientTls>,
    pub devices: Vec<Identity>,
    /// Device `i` joins `ssids[i % len]`, so a fleet spreads over APs.
    pub ssids: Vec<String>,
    /// Device `i` speaks `mqtt[i % len]`, so a fleet can mix versions
    /// (`[V311, V5]`: half each). Empty: 3.1.1.
    pub mqtt: Vec<bus::MqttVersion>,
    pub auto_confirm: bool,
    /// Devices between power-on and their first gateway connection at once.
    pub concurrency: usize,
    /// Power-ons per second; None: as fast as `concurrency` allows.
    pub rate: Option<f64>,
    /// How long the fleet stays connected after every device has settled;
    /// None: until shut down.
    pub hold: Option<Duration>,
    pub username: String,
    pub password: String,
    /// Per device: how long to wait for an AP before giving up.
    pub answer_timeout: Duration,
    /// Secure mode (see [`DeviceConfig::platform_key`]); None: walkthrough.
    pub platform_key: Option<PlatformPublicKey>,
}

impl FleetConfig {
    pub fn new(broker: impl Into<String>, devices: Vec<Identity>, ssid: impl Into<String>) -> Self {
        FleetConfig {
            broker: broker.into(),
            tls: None,
            devices,
            ssids: vec![ssid.into()],
            mqtt: vec![bus::MqttVersion::V311],
            auto_confirm: true,
            concurrency: 256,
            rate: None,
            hold: None,
            username: "device".into(),
            password: String::new(),
            answer_timeout: Duration::from_secs(30),
            platform_key: None,
        }
    }
}

/// Runs the fleet: powers devices on, paced by `concurrency` and `rate`,
/// keeps them on their gateways until every one has settled and `hold` has
/// passed (or `shutdown`), then disconnects them all and reports.
pub async fn run(
    config: FleetConfig,
    stats: Arc<FleetStats>,
    shutdown: CancellationToken,
) -> FleetReport {
    let fleet = shutdown.child_token();
    let gate = Arc::new(Semaphore::new(config.concurrency.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    let ssids = if config.ssids.is_empty() {
        vec![String::new()]
    } else {
        config.ssids.clone()
    };
    let hold = config.hold;
    let spawner = {
        let fleet = fleet.clone();
        let stats = stats.clone();
        async move {
            let t0 = tokio::time::Instant::now();
            for (i, identity) in config.devices.iter().enumerate() {
                if let Some(rate) = config.rate.filter(|r| *r > 0.0) {
                    let at = t0 + Duration::from_secs_f64(i as f64 / rate);
                    tokio::select! {
                        _ = fleet.cancelled() => return,
                        _ = tokio::time::sleep_until(at) => {}
                    }
                }
                let permit = tokio::select! {
                    _ = fleet.cancelled() => return,
                    p = gate.clone().acquire_owned() => match p {
                        Ok(p) => p,
                        Err(_) => return,
                    },
                };
                let mut device = DeviceConfig::new(
                    &config.broker,
                    &identity.uuid,
                    &identity.pass_tmp,
                    &ssids[i % ssids.len()],
                );
                device.auto_confirm = config.auto_confirm;
                device.answer_timeout = config.answer_timeout;
                device.username = config.username.clone();
                device.password = config.password.clone();
                device.platform_key = config.platform_key;
                // One configuration per device, for its platform and its
                // gateway connections alike: its own session cache.
                let tls = config.tls.as_ref().map(tls::ClientTls::device);
                device.tls = tls.as_ref().map(tls::DeviceTls::platform);
                if !config.mqtt.is_empty() {
                    device.mqtt = config.mqtt[i % config.mqtt.len()];
                }
                let mut home = HomeConfig::new(&config.broker, &identity.uuid);
                home.tls = tls;
                home.mqtt = device.mqtt;
                home.username = config.username.clone();
                home.password = config.password.clone();
                if let Some(key) = config.platform_key {
                    // Each device keeps its own key in memory for the run.
                    home = home.secure_with(key, device.login());
                }
                tasks.spawn(one_device(
                    device,
                    home,
                    stats.clone(),
                    permit,
                    fleet.clone(),
                ));
            }
            // Keep the set alive until the fleet stops, reaping as we go.
            loop {
                tokio::select! {
                    _ = fleet.cancelled() => break,
                    done = tasks.join_next() => if done.is_none() { fleet.cancelled().await; break },
                }
            }
            let drain = async { while tasks.join_next().await.is_some() {} };
            if tokio::time::timeout(Duration::from_secs(10), drain)
                .await
                .is_err()
            {
                warn!("some devices did not stop within 10 s");
                tasks.abort_all();
            }
        }
    };
    let spawner = tokio::spawn(spawner);

    let settled = async {
        stats.wait_until(Duration::MAX, |s| s.settled()).await;
        match hold {
            Some(hold) => tokio::time::sleep(hold).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = shutdown.cancelled() => {}
        _ = settled => {}
    }
    let report = FleetReport::from_stats(&stats);
    fleet.cancel();
    let _ = spawner.await;
    report
}

/// One device's whole life, with its events turned into statistics.
async fn one_device(
    device: DeviceConfig,
    home: HomeConfig,
    stats: Arc<FleetStats>,
    permit: tokio::sync::OwnedSemaphorePermit,
    shutdown: CancellationToken,
) {
    stats.bump(&stats.powered);
    let powered_on = Instant::now();
    let mut permit = Some(permit);
    let (device_tx, mut device_rx) = mpsc::unbounded_channel();
    let (home_tx, mut home_rx) = mpsc::unbounded_channel();
    let events = LifeEvents {
        device: device_tx,
        home: home_tx,
    };
    let life = crate::live(&device, &home, &events, None, &shutdown);
    tokio::pin!(life);
    let mut current: Option<String> = None;
    let mut ever_connected = false;
    let mut ever_joined = false;
    let result = loop {
        tokio::select! {
            result = &mut life => break result,
            Some(event) = device_rx.recv() => match event {
                DeviceEvent::Prompt { latency, .. } => stats.record(Phase::Access, latency),
                DeviceEvent::Joined { .. } => {
                    // A device that onboards again (its key was lost) joins once.
                    if !ever_joined {
                        stats.bump(&stats.joined);
                    }
                    ever_joined = true;
                    stats.set_doing(&device.uuid, "joined; asking the registry".into());
                }
                DeviceEvent::RequestSent { attempt } => {
                    stats.set_doing(&device.uuid, format!("onboarding: access request {attempt} sent"));
                }
                DeviceEvent::Connected { .. } => {}
            },
            Some(event) = home_rx.recv() => match event {
                HomeEvent::Assigned { latency, ref gateway_id, epoch, .. } => {
                    stats.told(&device.uuid, epoch, gateway_id);
                    stats.set_doing(&device.uuid, format!("assigned {gateway_id}; connecting"));
                    stats.record(Phase::Query, latency);
                    if !ever_connected {
                        stats.bump(&stats.assigned);
                    }
                }
                HomeEvent::Connected { gateway_id, from, elapsed, connect_latency, .. } => {
                    stats.record(Phase::Connect, connect_latency);
                    // Placement first, so that whoever sees the count
                    // rise also sees where the device is.
                    stats.arrive(&gateway_id, !ever_connected);
                    if ever_connected {
                        stats.record(Phase::Move, elapsed);
                        if from.is_some() {
                            stats.bump(&stats.moves);
                        }
                    } else {
                        stats.record(Phase::EndToEnd, powered_on.elapsed());
                        stats.bump(&stats.connected);
                        permit.take();
                    }
                    ever_connected = true;
                    stats.set_doing(&device.uuid, format!("on {gateway_id}"));
                    current = Some(gateway_id);
                }
                HomeEvent::Redirected { gateway_id, reason, epoch, to, .. } => {
                    if let Some(to) = &to {
                        stats.told(&device.uuid, epoch, to);
                    }
                    if let Some(gw) = current.take() {
                        stats.leave(&gw);
                    }
                    stats.bump(&stats.redirects);
                    stats.set_doing(&device.uuid, format!("redirected off {gateway_id} ({reason:?}, epoch {epoch}); moving"));
                }
                HomeEvent::Lost { gateway_id } => {
                    if let Some(gw) = current.take() {
                        stats.leave(&gw);
                    }
                    stats.bump(&stats.losses);
                    stats.set_doing(&device.uuid, format!("lost {gateway_id}; asking the registry"));
                }
                HomeEvent::Refused { gateway_id, reason } => {
                    stats.bump(&stats.refusals);
                    stats.set_doing(&device.uuid, format!("refused by {gateway_id} ({reason}); asking the registry"));
                }
                HomeEvent::QueryRefused { code, .. } => {
                    warn!(device = %device.uuid, %code, "registry refused a query");
                    stats.set_doing(&device.uuid, format!("the registry refused its query ({code}); asking again"));
                }
                HomeEvent::QueryTimedOut { unanswered } => {
                    stats.set_doing(&device.uuid, format!("asking the registry: {unanswered} queries unanswered"));
                }
            },
        }
    };
    if let Some(gw) = current.take() {
        stats.leave(&gw);
    }
    match result {
        Ok(()) => {}
        Err(DeviceError::Stopped) if shutdown.is_cancelled() => {}
        Err(e) => {
            let code = error_code(&e);
            stats.set_doing(&device.uuid, format!("ended: {code} ({e})"));
            if ever_connected {
                warn!(device = %device.uuid, error = %e, "a connected device ended with an error");
                stats.note_error(&code);
            } else {
                stats.fail(code);
            }
        }
    }
}

/// A short, stable name for a failure, for counting.
pub fn error_code(e: &DeviceError) -> String {
    match e {
        DeviceError::Invalid { field, .. } => format!("invalid_{}", field.replace(' ', "_")),
        DeviceError::Bus(bus::BusError::Timeout { .. }) => "broker_timeout".into(),
        DeviceError::Bus(bus::BusError::Refused { .. }) => "broker_refused".into(),
        DeviceError::Bus(bus::BusError::Unreachable { .. }) => "broker_unreachable".into(),
        DeviceError::Bus(_) => "broker_error".into(),
        DeviceError::Refused { code, .. } => code.to_string(),
        DeviceError::NoAnswer(_) => "no_answer".into(),
        DeviceError::Declined => "declined".into(),
        DeviceError::ConfirmTimeout(_) => "confirm_timeout".into(),
        DeviceError::Stopped => "stopped".into(),
    }
}

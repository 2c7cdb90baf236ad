//! `device-sim manifest` and `device-sim fleet`: the terminal around
//! [`device_sim::fleet`].

use cli::ConnectArgs;
use device_sim::fleet::{self, FleetConfig, FleetStats, Progress};
use device_sim::manifest;
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Fleet exit codes.
const ALL_CONNECTED: u8 = 0;
const SOME_FAILED: u8 = 1;
const USAGE: u8 = 2;
const UNREACHABLE: u8 = 3;

pub fn manifest(out: &Path, count: usize, seed: u64) -> ExitCode {
    if count == 0 {
        eprintln!("error: --count must be at least 1");
        return ExitCode::from(USAGE);
    }
    let identities = manifest::generate(count, seed);
    match manifest::write(out, &identities) {
        Ok(()) => {
            eprintln!(
                "wrote {count} devices (seed {seed}) to {}; enroll them with: verifier import {}",
                out.display(),
                out.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(4)
        }
    }
}

pub struct Options {
    pub manifest: PathBuf,
    pub ssids: Vec<String>,
    pub mqtt: Vec<bus::MqttVersion>,
    pub auto_confirm: bool,
    pub concurrency: usize,
    pub rate: Option<f64>,
    pub duration: Option<Duration>,
    pub slice: Option<(usize, usize)>,
    pub answer_timeout: Duration,
    pub json: Option<PathBuf>,
    pub plot: Option<PathBuf>,
    pub quiet: bool,
    pub connect: ConnectArgs,
}

pub async fn run(opts: Options) -> u8 {
    let all = match manifest::read(&opts.manifest) {
        Ok(all) => all,
        Err(e) => {
            eprintln!("error: {e}");
            return USAGE;
        }
    };
    let devices = match opts.slice {
        Some((i, n)) => manifest::slice(&all, i, n).to_vec(),
        None => all,
    };
    if devices.is_empty() {
        eprintln!("error: this slice of the manifest is empty");
        return USAGE;
    }
    for ssid in &opts.ssids {
        if let Err(reason) = protocol::onboarding::check_ssid(ssid) {
            eprintln!("error: --ssid {ssid:?}: {reason}");
            return USAGE;
        }
    }
    let platform_key = match opts.connect.platform_key() {
        Ok(key) => key,
        Err(e) => {
            eprintln!("error: {e}");
            return USAGE;
        }
    };
    let tls = match opts.connect.tls() {
        Ok(tls) => tls,
        Err(e) => {
            eprintln!("error: {e}");
            return USAGE;
        }
    };
    // Fail fast, with one clear line, when the platform is not there.
    if let Err(e) = probe(&opts.connect).await {
        eprintln!("error: {e}");
        return UNREACHABLE;
    }

    let mut config = FleetConfig::new(opts.connect.broker(), devices, "");
    config.tls = tls;
    config.ssids = opts.ssids.clone();
    config.mqtt = opts.mqtt.clone();
    config.auto_confirm = opts.auto_confirm;
    config.concurrency = opts.concurrency;
    config.rate = opts.rate;
    config.hold = opts.duration;
    config.username = opts.connect.username_or("device");
    config.password = opts.connect.mqtt_password.clone();
    config.answer_timeout = opts.answer_timeout;
    config.platform_key = platform_key;

    let stats = FleetStats::new(config.devices.len());
    let shutdown = CancellationToken::new();
    tokio::spawn(cli::cancel_on_signal(shutdown.clone()));
    eprintln!(
        "fleet: {} devices on {} via {}, MQTT {}; concurrency {}{}; {}",
        config.devices.len(),
        opts.connect.broker(),
        opts.ssids.join(","),
        opts.mqtt
            .iter()
            .map(|v| v.to_string())
            .collect::<Vec<_>>()
            .join(","),
        config.concurrency,
        opts.rate.map(|r| format!(", {r}/s")).unwrap_or_default(),
        match opts.duration {
            Some(d) => format!(
                "holding {} after the last connects",
                humantime::format_duration(d)
            ),
            None => "holding until Ctrl-C".into(),
        }
    );
    let status =
        (!opts.quiet).then(|| tokio::spawn(show_progress(stats.clone(), shutdown.clone())));
    let report = fleet::run(config, stats.clone(), shutdown.clone()).await;
    shutdown.cancel();
    if let Some(status) = status {
        let _ = status.await;
    }

    println!("{report}");
    let mut code = if report.failed == 0 && report.connected == report.devices {
        ALL_CONNECTED
    } else {
        SOME_FAILED
    };
    if let Some(path) = &opts.json {
        if let Err(e) = std::fs::write(path, report.to_json()) {
            eprintln!("error: cannot write {}: {e}", path.display());
            code = code.max(SOME_FAILED);
        }
    }
    if let Some(path) = &opts.plot {
        if let Err(e) = report.plot_svg(path) {
            eprintln!("error: {}: {e}", path.display());
            code = code.max(SOME_FAILED);
        }
    }
    code
}

/// Connects once, to learn whether the platform is there: any CONNACK
/// says so, a refusal too (a secure platform refuses this probe, which has
/// no credential; its devices log in as themselves).
async fn probe(connect: &ConnectArgs) -> Result<(), bus::BusError> {
    let token = CancellationToken::new();
    let tls = connect.tls().map_err(bus::BusError::Config)?;
    let opts = bus::BusOptions::new(
        &connect.broker(),
        format!("fleet-probe-{:016x}", fastrand::u64(..)),
    )?
    .with_credentials("fleet-probe", "")
    .with_tls(tls.map(|t| t.config()));
    let (bus, _inbox) = bus::Bus::connect(opts, Vec::new(), token.clone());
    let result = bus.ready_once(Duration::from_secs(5)).await;
    token.cancel();
    match result {
        Err(bus::BusError::Refused { reason, .. })
            if reason.contains("NotAuthorized") || reason.contains("BadUserNamePassword") =>
        {
            Ok(())
        }
        other => other,
    }
}

fn line(p: &Progress) -> String {
    let secs = p.elapsed.as_secs_f64().max(0.001);
    format!(
        "powered {}/{}  joined {}  assigned {}  connected {}  failed {}  moves {}  {:.0}/s",
        p.powered,
        p.total,
        p.joined,
        p.assigned,
        p.connected,
        p.failed,
        p.moves,
        p.connected as f64 / secs
    )
}

/// A live status line: a progress bar on a terminal, a line every 2 s
/// otherwise (logs, CI).
async fn show_progress(stats: Arc<FleetStats>, shutdown: CancellationToken) {
    if std::io::stderr().is_terminal() {
        let bar = ProgressBar::new(stats.total() as u64);
        if let Ok(style) = ProgressStyle::with_template("{bar:30} {msg}") {
            bar.set_style(style);
        }
        loop {
            let p = stats.snapshot();
            bar.set_position(p.connected + p.failed);
            bar.set_message(line(&p));
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
        }
        bar.finish();
    } else {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            }
            eprintln!("{}", line(&stats.snapshot()));
        }
    }
}

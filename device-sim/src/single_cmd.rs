//! `device-sim` without a subcommand: one device's whole life, shown step
//! by step on the terminal, its answers typed there, and an exit code a
//! script can act on.

use crate::state_file::StateFile;
use cli::ConnectArgs;
use device_sim::gateway::{stay_homed_with, HomeConfig, HomeEvent, KnownGateway};
use device_sim::login::DeviceLogin;
use device_sim::{DeviceConfig, DeviceError, DeviceEvent, PlatformLink};
use protocol::crypto::DeviceKey;
use std::io::{BufRead, IsTerminal};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Exit codes a script can rely on.
pub mod exit {
    pub use cli::exit::{REFUSED, UNREACHABLE};
    /// Joined the network.
    pub const JOINED: u8 = cli::exit::OK;
    /// The device's own user declined or did not answer.
    pub const DECLINED: u8 = 4;
}

/// One device.
#[derive(clap::Args)]
pub struct Single {
    /// The device's factory UUID.
    #[arg(long, required = true)]
    uuid: Option<String>,
    /// The device's factory temporary password.
    #[arg(
        long,
        env = "DEVICE_PASS_TMP",
        hide_env_values = true,
        required_unless_present = "gateway_only"
    )]
    pass_tmp: Option<String>,
    /// The SSID to join.
    #[arg(long, required_unless_present = "gateway_only")]
    ssid: Option<String>,
    /// Stop after joining Wi-Fi; do not look for a gateway.
    #[arg(long, conflicts_with = "gateway_only")]
    no_gateway: bool,
    /// Skip Wi-Fi onboarding (as if already joined): only find the gateway
    /// and stay on it.
    #[arg(long)]
    gateway_only: bool,
    /// Keep the device's own key and its last gateway in this file, as a
    /// device keeps them in flash: the key is made once and registered at
    /// onboarding, and the last gateway is tried first on the next start.
    #[arg(long, value_name = "FILE")]
    state_file: Option<std::path::PathBuf>,
    /// Accept the access response without asking.
    #[arg(long)]
    auto_confirm: bool,
    /// Seconds to wait for an AP's answer, re-sending with backoff meanwhile.
    #[arg(long, default_value_t = 90)]
    answer_timeout: u64,
    /// Seconds the device's own prompt waits for its user.
    #[arg(long, default_value_t = 60)]
    confirm_timeout: u64,
    /// The MQTT version the device speaks: 3.1.1 or 5. An MQTT 5 device is
    /// moved by its gateway's DISCONNECT (reason 0x9C/0x9D, with the new
    /// gateway as Server Reference), a 3.1.1 device by a notice on its
    /// redirect topic.
    #[arg(long, value_name = "VERSION", default_value = "3.1.1")]
    mqtt: bus::MqttVersion,
    #[command(flatten)]
    connect: ConnectArgs,
}

pub async fn run(cli: Single) -> u8 {
    let Some(uuid) = cli.uuid.clone() else {
        eprintln!("error: --uuid is required");
        return 2;
    };
    let shutdown = CancellationToken::new();
    tokio::spawn(cli::cancel_on_signal(shutdown.clone()));
    let tag = format!("[device {uuid}]");
    let mut state = cli
        .state_file
        .as_deref()
        .map(StateFile::read)
        .unwrap_or_default();
    // Without a state file the key lives as long as this run.
    let device_key = match &cli.state_file {
        Some(file) => {
            let (key, new) = state.device_key();
            if new {
                if let Err(e) = state.write(file) {
                    eprintln!("{tag} cannot write {}: {e}", file.display());
                    return 2;
                }
            }
            key
        }
        None => DeviceKey::generate(),
    };
    let mut link = None;
    if !cli.gateway_only {
        let (code, open) = onboard(&cli, &uuid, &device_key, &shutdown).await;
        if code != exit::JOINED || cli.no_gateway {
            return code;
        }
        link = open;
    }
    home(&cli, &uuid, &tag, state, device_key, link, &shutdown).await
}

async fn home(
    cli: &Single,
    uuid: &str,
    tag: &str,
    state: StateFile,
    device_key: DeviceKey,
    link: Option<PlatformLink>,
    shutdown: &CancellationToken,
) -> u8 {
    let mut config = HomeConfig::new(cli.connect.broker(), uuid);
    config.mqtt = cli.mqtt;
    config.tls = match cli.connect.tls() {
        Ok(tls) => tls.map(|t| t.device()),
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    config.username = cli.connect.username_or("device");
    config.password = cli.connect.mqtt_password.clone();
    match cli.connect.platform_key() {
        Ok(None) => {}
        Ok(Some(key)) => {
            // Onboarded, the device logs in with its own key.
            config = config.secure_with(key, DeviceLogin::new(uuid, device_key));
        }
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    }
    let mut state = state;
    config.last_known = state.gateway.take();
    if let Some(k) = &config.last_known {
        println!(
            "{tag}      0 ms  trying the last known gateway {} at {} first",
            k.gateway_id, k.address
        );
    }
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let started = Instant::now();
    let printer = {
        let tag = tag.to_owned();
        let state_file = cli.state_file.clone();
        tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                let ms = started.elapsed().as_millis();
                match event {
                    HomeEvent::Assigned {
                        gateway_id,
                        address,
                        epoch,
                        ..
                    } => {
                        println!("{tag} {ms:>6} ms  registry: gateway {gateway_id} at {address} (epoch {epoch})")
                    }
                    HomeEvent::Connected {
                        gateway_id,
                        address,
                        epoch,
                        from,
                        elapsed,
                        ..
                    } => {
                        match from {
                            None => println!("{tag} {ms:>6} ms  connected to {gateway_id}"),
                            Some(from) => println!(
                                "{tag} {ms:>6} ms  moved {from} -> {gateway_id} in {} ms",
                                elapsed.as_millis()
                            ),
                        }
                        if let Some(file) = &state_file {
                            state.gateway = Some(KnownGateway {
                                gateway_id,
                                address,
                                epoch,
                                token: None,
                            });
                            if let Err(e) = state.write(file) {
                                eprintln!("{tag} cannot write {}: {e}", file.display());
                            }
                        }
                    }
                    HomeEvent::Redirected {
                        gateway_id,
                        reason,
                        epoch,
                        to,
                        by,
                    } => {
                        let by = by.map(|b| format!(" by {b}")).unwrap_or_default();
                        match to {
                            Some(to) => println!("{tag} {ms:>6} ms  redirect from {gateway_id}{by}: {reason} (epoch {epoch}); moving to {to}"),
                            None => println!("{tag} {ms:>6} ms  redirect from {gateway_id}{by}: {reason} (epoch {epoch}); asking the registry"),
                        }
                    }
                    HomeEvent::Refused { gateway_id, reason } => {
                        println!("{tag} {ms:>6} ms  no connection to {gateway_id} ({reason}); trying again")
                    }
                    HomeEvent::Lost { gateway_id } => {
                        println!("{tag} {ms:>6} ms  lost {gateway_id}; asking the registry again")
                    }
                    HomeEvent::QueryRefused { code, message } => {
                        println!("{tag} {ms:>6} ms  registry: {code}: {message}; retrying")
                    }
                    HomeEvent::QueryTimedOut { unanswered } => {
                        println!("{tag} {ms:>6} ms  no answer from the registry ({unanswered} in a row); asking again")
                    }
                }
            }
        })
    };
    // The onboarding session may only onboard: the queries go on a session
    // logged in with the device's key, which the platform registers from
    // the onboarding's proof.
    let link = match link {
        Some(l) if l.onboarding_only() => {
            drop(l);
            match PlatformLink::open_patiently(&config.link(), Duration::from_secs(5), shutdown)
                .await
            {
                Ok(l) => Some(l),
                Err(e) => {
                    eprintln!("{tag} cannot log in with the device's key: {e}");
                    return exit::UNREACHABLE;
                }
            }
        }
        other => other,
    };
    let result = stay_homed_with(&config, link, &events_tx, shutdown).await;
    drop(events_tx);
    let _ = printer.await;
    match result {
        Ok(()) => exit::JOINED,
        Err(e) => {
            eprintln!("{tag} gateway: {e}");
            exit::UNREACHABLE
        }
    }
}

/// Onboards; on success also returns the still-open platform session, for
/// the gateway query.
async fn onboard(
    cli: &Single,
    uuid: &str,
    device_key: &DeviceKey,
    shutdown: &CancellationToken,
) -> (u8, Option<PlatformLink>) {
    let (Some(pass_tmp), Some(ssid)) = (&cli.pass_tmp, &cli.ssid) else {
        eprintln!("error: --pass-tmp and --ssid are needed for Wi-Fi onboarding");
        return (2, None);
    };
    let mut config = DeviceConfig::new(cli.connect.broker(), uuid, pass_tmp, ssid);
    config.mqtt = cli.mqtt;
    config.tls = match cli.connect.tls() {
        Ok(tls) => tls.map(|t| t.config()),
        Err(e) => {
            eprintln!("error: {e}");
            return (2, None);
        }
    };
    config.device_key = device_key.clone();
    config.auto_confirm = cli.auto_confirm;
    config.answer_timeout = Duration::from_secs(cli.answer_timeout);
    config.confirm_timeout = Duration::from_secs(cli.confirm_timeout);
    config.username = cli.connect.username_or("device");
    config.password = cli.connect.mqtt_password.clone();
    config.platform_key = match cli.connect.platform_key() {
        Ok(key) => key,
        Err(e) => {
            eprintln!("error: {e}");
            return (2, None);
        }
    };

    let interactive = !cli.auto_confirm && std::io::stdin().is_terminal();
    let (confirm_tx, confirm_rx) = mpsc::channel(1);
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let started = Instant::now();
    let tag = format!("[device {uuid}]");

    let printer = {
        let tag = tag.clone();
        let uuid = uuid.to_owned();
        let auto_confirm = cli.auto_confirm;
        tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                let ms = started.elapsed().as_millis();
                match event {
                    DeviceEvent::Connected { broker } => println!("{tag} {ms:>6} ms  connected to {broker}"),
                    DeviceEvent::RequestSent { attempt: 1 } => println!("{tag} {ms:>6} ms  access request sent"),
                    DeviceEvent::RequestSent { attempt } => println!("{tag} {ms:>6} ms  no answer yet; access request re-sent (attempt {attempt})"),
                    DeviceEvent::Prompt { ssid, .. } => {
                        println!("{tag} {ms:>6} ms  access response received for {ssid:?}");
                        if auto_confirm {
                            println!("{tag} {ms:>6} ms  auto-confirmed");
                        } else if interactive {
                            println!("join {ssid:?}? [y/n]");
                            spawn_stdin_answer(confirm_tx.clone());
                        } else {
                            println!("{tag} waiting for confirmation: mosquitto_pub -t {} -m '{{\"accept\":true}}'",
                                protocol::topics::device_confirm(&uuid));
                        }
                    }
                    DeviceEvent::Joined { ssid } => println!("{tag} {ms:>6} ms  joined {ssid:?}"),
                }
            }
        })
    };
    let result = async {
        config.validate()?;
        let mut link = PlatformLink::open_to_onboard(&config, shutdown).await?;
        let joined = device_sim::onboard_on(
            &mut link,
            &config,
            &events_tx,
            &mut Some(confirm_rx),
            shutdown,
        )
        .await?;
        Ok((joined, link))
    }
    .await;
    drop(events_tx);
    let _ = printer.await;
    match result {
        Ok((joined, link)) => {
            println!(
                "{tag} credentials recorded: ssid {:?}, password of {} characters",
                joined.ssid,
                joined.password.len()
            );
            (exit::JOINED, Some(link))
        }
        Err(e) => {
            eprintln!("{tag} not joined: {e}");
            let code = match e {
                DeviceError::Refused { .. } => exit::REFUSED,
                DeviceError::Declined | DeviceError::ConfirmTimeout(_) => exit::DECLINED,
                DeviceError::Invalid { .. } => 2,
                _ => exit::UNREACHABLE,
            };
            (code, None)
        }
    }
}

/// Reads y/n answers from the terminal until one is clear.
fn spawn_stdin_answer(tx: mpsc::Sender<bool>) {
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            let answer = match line.trim() {
                "y" | "Y" | "yes" => true,
                "n" | "N" | "no" => false,
                _ => {
                    println!("please answer y or n");
                    continue;
                }
            };
            let _ = tx.blocking_send(answer);
            break;
        }
    });
}

//! `device-sim`: run one simulated device through Wi-Fi onboarding.

use bus::cli::ConnectArgs;
use clap::Parser;
use device_sim::gateway::{stay_homed, HomeConfig, HomeEvent, KnownGateway};
use device_sim::{DeviceConfig, DeviceError, DeviceEvent};
use std::io::{BufRead, IsTerminal};
use std::process::ExitCode;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Exit codes a script can rely on.
mod exit {
    /// Joined the network.
    pub const JOINED: u8 = 0;
    /// The AP refused: unknown_device, pass_tmp_mismatch, rejected, timeout, bad_request.
    pub const REFUSED: u8 = 1;
    // 2 is clap's: bad command line.
    /// The platform could not be reached, or no AP answered.
    pub const UNREACHABLE: u8 = 3;
    /// The device's own user declined or did not answer.
    pub const DECLINED: u8 = 4;
}

#[derive(Parser)]
#[command(
    version,
    about = "A simulated headless device that onboards onto Wi-Fi through an AP.",
    long_about = "\
Sends an access request {uuid, ssid, pass_tmp} to whichever AP serves the SSID, waits for \
the access response, asks its own user to confirm, and joins.

Confirm with --auto-confirm, by typing y or n when running in a terminal, or with
  mosquitto_pub -u me -t device/UUID/confirm -m '{\"accept\":true}'

Exit codes: 0 joined; 1 refused by the AP (the reason is printed); 2 bad command line; \
3 platform unreachable or no AP answered; 4 declined by the device's user."
)]
struct Cli {
    /// The device's factory UUID.
    #[arg(long)]
    uuid: String,
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
    /// Remember the last gateway in this file and try it first on the next
    /// start, as a device does after a reboot.
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
    #[command(flatten)]
    connect: ConnectArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    bus::cli::init_logging("warn", bus::cli::LogOutput::Stderr);
    let runtime = match bus::cli::runtime(ExitCode::from(exit::UNREACHABLE)) {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let code = runtime.block_on(run(cli));
    // The stdin reader thread may still be blocked on a read.
    runtime.shutdown_timeout(Duration::from_millis(100));
    ExitCode::from(code)
}

async fn run(cli: Cli) -> u8 {
    let shutdown = CancellationToken::new();
    tokio::spawn(bus::cancel_on_signal(shutdown.clone()));
    let tag = format!("[device {}]", cli.uuid);
    if !cli.gateway_only {
        let code = onboard(&cli, &shutdown).await;
        if code != exit::JOINED || cli.no_gateway {
            return code;
        }
    }
    home(&cli, &tag, &shutdown).await
}

async fn home(cli: &Cli, tag: &str, shutdown: &CancellationToken) -> u8 {
    let mut config = HomeConfig::new(&cli.connect.broker, &cli.uuid);
    config.username = cli.connect.username_or("device");
    config.password = cli.connect.mqtt_password.clone();
    config.last_known = cli
        .state_file
        .as_ref()
        .and_then(|f| std::fs::read(f).ok())
        .and_then(|raw| serde_json::from_slice::<KnownGateway>(&raw).ok());
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
                    } => {
                        println!("{tag} {ms:>6} ms  registry: gateway {gateway_id} at {address} (epoch {epoch})")
                    }
                    HomeEvent::Connected {
                        gateway_id,
                        address,
                        epoch,
                        from,
                        elapsed,
                    } => {
                        match from {
                            None => println!("{tag} {ms:>6} ms  connected to {gateway_id}"),
                            Some(from) => println!(
                                "{tag} {ms:>6} ms  moved {from} -> {gateway_id} in {} ms",
                                elapsed.as_millis()
                            ),
                        }
                        if let Some(file) = &state_file {
                            let known = KnownGateway {
                                gateway_id,
                                address,
                                epoch,
                            };
                            if let Err(e) = std::fs::write(file, protocol::encode(&known)) {
                                eprintln!("{tag} cannot write {}: {e}", file.display());
                            }
                        }
                    }
                    HomeEvent::Redirected {
                        gateway_id,
                        reason,
                        epoch,
                    } => {
                        println!("{tag} {ms:>6} ms  redirect from {gateway_id}: {reason} (epoch {epoch}); asking the registry")
                    }
                    HomeEvent::Refused { gateway_id, reason } => {
                        println!("{tag} {ms:>6} ms  {gateway_id} refused the connection ({reason}); asking the registry again")
                    }
                    HomeEvent::Lost { gateway_id } => {
                        println!("{tag} {ms:>6} ms  lost {gateway_id}; asking the registry again")
                    }
                    HomeEvent::QueryRefused { code, message } => {
                        println!("{tag} {ms:>6} ms  registry: {code}: {message}; retrying")
                    }
                }
            }
        })
    };
    let result = stay_homed(&config, &events_tx, shutdown).await;
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

async fn onboard(cli: &Cli, shutdown: &CancellationToken) -> u8 {
    let (Some(pass_tmp), Some(ssid)) = (&cli.pass_tmp, &cli.ssid) else {
        eprintln!("error: --pass-tmp and --ssid are needed for Wi-Fi onboarding");
        return 2;
    };
    let mut config = DeviceConfig::new(&cli.connect.broker, &cli.uuid, pass_tmp, ssid);
    config.auto_confirm = cli.auto_confirm;
    config.answer_timeout = Duration::from_secs(cli.answer_timeout);
    config.confirm_timeout = Duration::from_secs(cli.confirm_timeout);
    config.username = cli.connect.username_or("device");
    config.password = cli.connect.mqtt_password.clone();

    let interactive = !cli.auto_confirm && std::io::stdin().is_terminal();
    let (confirm_tx, confirm_rx) = mpsc::channel(1);
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let started = Instant::now();
    let tag = format!("[device {}]", cli.uuid);

    let printer = {
        let tag = tag.clone();
        let uuid = cli.uuid.clone();
        let auto_confirm = cli.auto_confirm;
        tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                let ms = started.elapsed().as_millis();
                match event {
                    DeviceEvent::Connected { broker } => println!("{tag} {ms:>6} ms  connected to {broker}"),
                    DeviceEvent::RequestSent { attempt: 1 } => println!("{tag} {ms:>6} ms  access request sent"),
                    DeviceEvent::RequestSent { attempt } => println!("{tag} {ms:>6} ms  no answer yet; access request re-sent (attempt {attempt})"),
                    DeviceEvent::Prompt { ssid } => {
                        println!("{tag} {ms:>6} ms  access response received for {ssid:?}");
                        if auto_confirm {
                            println!("{tag} {ms:>6} ms  auto-confirmed");
                        } else if interactive {
                            println!("join {ssid:?}? [y/n]");
                            spawn_stdin_answer(confirm_tx.clone());
                        } else {
                            println!("{tag} waiting for confirmation: mosquitto_pub -u me -t {} -m '{{\"accept\":true}}'",
                                protocol::topics::device_confirm(&uuid));
                        }
                    }
                    DeviceEvent::Joined { ssid } => println!("{tag} {ms:>6} ms  joined {ssid:?}"),
                }
            }
        })
    };
    let result = device_sim::onboard(&config, &events_tx, Some(confirm_rx), shutdown).await;
    drop(events_tx);
    let _ = printer.await;
    match result {
        Ok(joined) => {
            println!(
                "{tag} credentials recorded: ssid {:?}, password of {} characters",
                joined.ssid,
                joined.password.len()
            );
            exit::JOINED
        }
        Err(e) => {
            eprintln!("{tag} not joined: {e}");
            match e {
                DeviceError::Refused { .. } => exit::REFUSED,
                DeviceError::Declined | DeviceError::ConfirmTimeout(_) => exit::DECLINED,
                _ => exit::UNREACHABLE,
            }
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

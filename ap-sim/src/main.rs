//! `ap-sim`: run one simulated access point.

use ap_sim::{ApConfig, ApEvent, Network};
use bus::cli::ConnectArgs;
use clap::Parser;
use std::collections::VecDeque;
use std::io::{BufRead, IsTerminal};
use std::process::ExitCode;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    version,
    about = "A simulated Wi-Fi access point that onboards devices through the verifier.",
    long_about = "\
Serves access requests for one SSID: asks the verifier for the device's pass_tmp, compares, \
prompts you, and on accept sends the device the network password.

Confirm a prompt with --auto-confirm, by typing y or n when running in a terminal, or with
  mosquitto_pub -u me -t ap/AP_ID/confirm -m '{\"uuid\":\"UUID\",\"accept\":true}'"
)]
struct Cli {
    /// The SSID this AP serves.
    #[arg(long)]
    ssid: String,
    /// The network's real password (8 to 63 printable ASCII characters).
    #[arg(long, env = "AP_WIFI_PASSWORD", hide_env_values = true)]
    password: String,
    /// This AP's id; internal topics are ap/{ap_id}/… . Give each AP its own.
    #[arg(long, default_value = "ap-1")]
    ap_id: String,
    /// Accept every verified device without asking.
    #[arg(long)]
    auto_confirm: bool,
    /// Seconds a prompt waits for an answer before the device gets `timeout`.
    #[arg(long, default_value_t = 60)]
    confirm_timeout: u64,
    #[command(flatten)]
    connect: ConnectArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    bus::cli::init_logging("warn", bus::cli::LogOutput::Stderr);
    let runtime = match bus::cli::runtime(ExitCode::FAILURE) {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), ap_sim::ApError> {
    let mut config = ApConfig::new(
        &cli.connect.broker,
        &cli.ap_id,
        vec![Network {
            ssid: cli.ssid.clone(),
            password: cli.password,
        }],
    );
    config.auto_confirm = cli.auto_confirm;
    config.confirm_timeout = Duration::from_secs(cli.confirm_timeout);
    config.username = cli.connect.username_or("ap");
    config.password = cli.connect.mqtt_password.clone();

    let shutdown = CancellationToken::new();
    tokio::spawn(bus::cancel_on_signal(shutdown.clone()));
    let mut ap = ap_sim::start(config, shutdown.clone()).await?;
    println!(
        "[ap {}] serving SSID {:?} on {}",
        cli.ap_id, cli.ssid, cli.connect.broker
    );

    let interactive = !cli.auto_confirm && std::io::stdin().is_terminal();
    let mut answers = if interactive {
        Some(spawn_stdin_reader())
    } else {
        None
    };
    let mut prompts: VecDeque<String> = VecDeque::new();
    let confirmations = ap.confirmations.clone();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            event = ap.events.recv() => match event {
                Some(ApEvent::Prompt { uuid, ssid }) => {
                    println!("[ap {}] device {uuid} wants to join {ssid:?}", cli.ap_id);
                    if cli.auto_confirm {
                        println!("[ap {}] auto-confirmed", cli.ap_id);
                    } else if interactive {
                        prompts.push_back(uuid);
                        ask(&prompts);
                    } else {
                        println!("[ap {}] confirm with: mosquitto_pub -u me -t {} -m '{{\"uuid\":\"{uuid}\",\"accept\":true}}'",
                            cli.ap_id, protocol::topics::ap_confirm(&cli.ap_id));
                    }
                }
                Some(ApEvent::Answered { uuid, outcome, elapsed }) => {
                    prompts.retain(|p| p != &uuid);
                    match outcome {
                        Ok(()) => println!("[ap {}] sent the password to {uuid} ({} ms)", cli.ap_id, elapsed.as_millis()),
                        Err(code) => println!("[ap {}] refused {uuid}: {code}", cli.ap_id),
                    }
                }
                None => break,
            },
            Some(line) = recv(&mut answers) => {
                let accept = match line.trim() {
                    "y" | "Y" | "yes" => true,
                    "n" | "N" | "no" => false,
                    _ => { ask(&prompts); continue; }
                };
                while let Some(uuid) = prompts.pop_front() {
                    if confirmations.confirm(&uuid, accept) {
                        break;
                    }
                }
                ask(&prompts);
            }
        }
    }
    ap.join().await
}

fn ask(prompts: &VecDeque<String>) {
    if let Some(uuid) = prompts.front() {
        println!("accept {uuid}? [y/n]");
    }
}

async fn recv(rx: &mut Option<mpsc::UnboundedReceiver<String>>) -> Option<String> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Lines typed on the terminal. A plain thread: stdin reads block.
fn spawn_stdin_reader() -> mpsc::UnboundedReceiver<String> {
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

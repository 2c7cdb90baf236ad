//! `ap-sim`: run one simulated access point, or several in one process.

use ap_sim::{Ap, ApConfig, ApEvent, Network};
use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser};
use cli::ConnectArgs;
use std::collections::VecDeque;
use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;
use std::process::ExitCode;
use std::task::Poll;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Exit codes a script can rely on.
mod exit {
    /// The AP could not start or failed: invalid --ssid/--password,
    /// platform unreachable.
    pub const FAILED: u8 = 1;
    /// Bad command line (clap's), or a bad --aps file.
    pub const USAGE: u8 = 2;
}

#[derive(Parser)]
#[command(
    version,
    about = "A simulated Wi-Fi access point that onboards devices through the verifier.",
    long_about = "\
Serves access requests for one SSID: asks the verifier for the device's pass_tmp, compares, \
prompts you, and on accept sends the device the network password. With --aps FILE it runs \
every AP the file lists, each with its own SSID and MQTT connection, in one process \
(see config/aps.example.toml).

Confirm a prompt with --auto-confirm, by typing y or n when running in a terminal, or with
  mosquitto_pub -u me -t ap/AP_ID/confirm -m '{\"uuid\":\"UUID\",\"accept\":true}'

Exit codes: 0 stopped by Ctrl-C/SIGTERM; 1 could not start (bad --ssid or --password, \
platform unreachable); 2 bad command line or bad --aps file."
)]
struct Cli {
    /// The SSID this AP serves.
    #[arg(long, required_unless_present = "aps")]
    ssid: Option<String>,
    /// The network's real password (8 to 63 printable ASCII characters).
    #[arg(
        long,
        env = "AP_WIFI_PASSWORD",
        hide_env_values = true,
        required_unless_present = "aps"
    )]
    password: Option<String>,
    /// This AP's id; internal topics are ap/{ap_id}/… . Give each AP its own.
    #[arg(long, default_value = "ap-1")]
    ap_id: String,
    /// Run every AP listed in this TOML file ([[ap]] tables with id, ssid
    /// and password) instead of one. AP_WIFI_PASSWORD is then ignored.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["ssid", "ap_id"])]
    aps: Option<PathBuf>,
    /// Accept every verified device without asking (every AP).
    #[arg(long)]
    auto_confirm: bool,
    /// Seconds a prompt waits for an answer before the device gets `timeout` (every AP).
    #[arg(long, default_value_t = 60)]
    confirm_timeout: u64,
    #[command(flatten)]
    connect: ConnectArgs,
}

/// One AP to run: its id and its network.
struct ApSpec {
    id: String,
    network: Network,
}

impl Cli {
    /// The APs to run: the --aps file's, or the one of --ssid/--password.
    /// `password_flag`: --password was on the command line (not from the
    /// environment, which --aps ignores).
    fn specs(&self, password_flag: bool) -> Result<Vec<ApSpec>, String> {
        if let Some(path) = &self.aps {
            if password_flag {
                return Err(
                    "--password cannot be used with --aps: each AP's password is in the file"
                        .into(),
                );
            }
            let entries = ap_sim::aps::load(path).map_err(|e| e.to_string())?;
            return Ok(entries
                .into_iter()
                .map(|e| ApSpec {
                    id: e.id,
                    network: Network {
                        ssid: e.ssid,
                        password: e.password,
                    },
                })
                .collect());
        }
        // clap requires both without --aps.
        let (Some(ssid), Some(password)) = (&self.ssid, &self.password) else {
            return Err("--ssid and --password are required without --aps".into());
        };
        Ok(vec![ApSpec {
            id: self.ap_id.clone(),
            network: Network {
                ssid: ssid.clone(),
                password: password.clone(),
            },
        }])
    }
}

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let password_flag = matches.value_source("password") == Some(ValueSource::CommandLine);
    cli::init_logging("warn", cli::LogOutput::Stderr);
    let specs = match cli.specs(password_flag) {
        Ok(specs) => specs,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(exit::USAGE);
        }
    };
    let runtime = match cli::runtime(ExitCode::from(exit::FAILED)) {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    match runtime.block_on(run(cli, specs)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(exit::FAILED)
        }
    }
}

/// A started AP and what the terminal needs to talk about it.
struct Running {
    id: String,
    ap: Ap,
}

/// A prompt waiting for the terminal's answer.
struct Prompt {
    ap: usize,
    uuid: String,
    ssid: String,
}

async fn run(cli: Cli, specs: Vec<ApSpec>) -> Result<(), ap_sim::ApError> {
    let shutdown = CancellationToken::new();
    tokio::spawn(cli::cancel_on_signal(shutdown.clone()));
    let platform_key = cli
        .connect
        .platform_key()
        .map_err(|reason| ap_sim::ApError::Invalid {
            field: "platform key",
            reason,
        })?;
    let password = cli
        .connect
        .password_for("ap")
        .map_err(|reason| ap_sim::ApError::Invalid {
            field: "password file",
            reason,
        })?;
    let mut aps = Vec::with_capacity(specs.len());
    for spec in specs {
        let mut config = ApConfig::new(&cli.connect.broker, &spec.id, vec![spec.network]);
        config.auto_confirm = cli.auto_confirm;
        config.confirm_timeout = Duration::from_secs(cli.confirm_timeout);
        config.username = cli.connect.username_or("ap");
        config.password = password.clone();
        config.platform_key = platform_key;
        let ssid = config.networks[0].ssid.clone();
        match ap_sim::start(config, shutdown.clone()).await {
            Ok(ap) => {
                println!(
                    "[ap {}] serving SSID {ssid:?} on {}",
                    spec.id, cli.connect.broker
                );
                aps.push(Running { id: spec.id, ap });
            }
            Err(e) => {
                // Stop the ones already serving before giving up.
                shutdown.cancel();
                for running in aps {
                    let _ = running.ap.join().await;
                }
                return Err(e);
            }
        }
    }

    let interactive = !cli.auto_confirm && std::io::stdin().is_terminal();
    let mut answers = if interactive {
        Some(spawn_stdin_reader())
    } else {
        None
    };
    let mut prompts: VecDeque<Prompt> = VecDeque::new();
    let mut turn = 0;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            event = next_event(&mut aps, &mut turn) => match event {
                Some((i, event)) => on_event(&cli, &aps, i, event, interactive, &mut prompts),
                None => break,
            },
            Some(line) = recv(&mut answers) => {
                let accept = match line.trim() {
                    "y" | "Y" | "yes" => true,
                    "n" | "N" | "no" => false,
                    _ => { ask(&aps, &prompts); continue; }
                };
                while let Some(p) = prompts.pop_front() {
                    if aps[p.ap].ap.confirmations.confirm(&p.uuid, accept) {
                        break;
                    }
                }
                ask(&aps, &prompts);
            }
        }
    }
    let mut result = Ok(());
    for running in aps {
        if let Err(e) = running.ap.join().await {
            result = Err(e);
        }
    }
    result
}

fn on_event(
    cli: &Cli,
    aps: &[Running],
    i: usize,
    event: ApEvent,
    interactive: bool,
    prompts: &mut VecDeque<Prompt>,
) {
    let id = &aps[i].id;
    match event {
        ApEvent::Prompt { uuid, ssid } => {
            println!("[ap {id}] device {uuid} wants to join {ssid:?}");
            if cli.auto_confirm {
                println!("[ap {id}] auto-confirmed");
            } else if interactive {
                prompts.push_back(Prompt { ap: i, uuid, ssid });
                ask(aps, prompts);
            } else {
                println!(
                    "[ap {id}] confirm with: mosquitto_pub -u me -t {} -m '{{\"uuid\":\"{uuid}\",\"accept\":true}}'",
                    protocol::topics::ap_confirm(id)
                );
            }
        }
        ApEvent::Answered {
            uuid,
            outcome,
            elapsed,
        } => {
            prompts.retain(|p| !(p.ap == i && p.uuid == uuid));
            match outcome {
                Ok(()) => println!(
                    "[ap {id}] sent the password to {uuid} ({} ms)",
                    elapsed.as_millis()
                ),
                Err(code) => println!("[ap {id}] refused {uuid}: {code}"),
            }
        }
    }
}

/// The next event of any AP, taking the APs in turn so that a busy one
/// cannot starve the others. `None` once every AP has stopped.
async fn next_event(aps: &mut [Running], turn: &mut usize) -> Option<(usize, ApEvent)> {
    std::future::poll_fn(|cx| {
        let n = aps.len();
        let mut open = false;
        for k in 0..n {
            let i = (*turn + k) % n;
            match aps[i].ap.events.poll_recv(cx) {
                Poll::Ready(Some(event)) => {
                    *turn = (i + 1) % n;
                    return Poll::Ready(Some((i, event)));
                }
                Poll::Ready(None) => {}
                Poll::Pending => open = true,
            }
        }
        if open {
            Poll::Pending
        } else {
            Poll::Ready(None)
        }
    })
    .await
}

/// Asks about the oldest open prompt, naming its AP and network.
fn ask(aps: &[Running], prompts: &VecDeque<Prompt>) {
    if let Some(p) = prompts.front() {
        println!(
            "[ap {}] accept {} onto {:?}? [y/n]",
            aps[p.ap].id, p.uuid, p.ssid
        );
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

//! `registry`: administer the running gateway registry.

use clap::{Parser, Subcommand};
use cli::AdminArgs;
use indicatif::{ProgressBar, ProgressStyle};
use protocol::registry_admin::{AssignmentView, RegistryOk, RegistryOp, MAX_DRAIN_BATCH};
use registry::{RegistryClient, RegistryClientError};
use std::process::ExitCode;
use std::time::{Duration, Instant, UNIX_EPOCH};

/// Exit codes a script can rely on.
use cli::exit;

#[derive(Parser)]
#[command(
    version,
    about = "Assign, move and drain devices between gateways.",
    long_about = "\
Talks to the running registry over MQTT. A device learns its gateway by asking the registry; \
when you move it, its old gateway sends it a redirect notice (or refuses it at its next connect \
if it is offline) and it asks again.

Exit codes: 0 done; 1 refused by the registry (the reason is printed); 2 bad command line; \
3 platform unreachable or no answer."
)]
struct Cli {
    #[command(flatten)]
    admin: AdminArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Assign a device that has no gateway yet.
    Assign {
        #[arg(long)]
        device: String,
        #[arg(long)]
        gateway: String,
    },
    /// Move one device to another gateway.
    Remap {
        #[arg(long)]
        device: String,
        #[arg(long)]
        gateway: String,
    },
    /// Move every device off a gateway, to --to or spread by policy. The
    /// gateway takes no new devices until `undrain`.
    Drain {
        #[arg(long)]
        gateway: String,
        #[arg(long)]
        to: Option<String>,
        /// At most this many devices per second (default: as fast as possible).
        #[arg(long)]
        rate: Option<u32>,
    },
    /// Let a drained gateway take devices again.
    Undrain {
        #[arg(long)]
        gateway: String,
    },
    /// A device's gateway, epoch, and where it was last seen connected.
    Show {
        #[arg(long)]
        device: String,
    },
    /// Every gateway: address, liveness, assigned and connected devices.
    Gateways,
    /// A device's assignment history.
    History {
        #[arg(long)]
        device: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    cli::init_logging("warn", cli::LogOutput::Stderr);
    let runtime = match cli::runtime(ExitCode::from(exit::UNREACHABLE)) {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::from(exit::OK),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(match e {
                RegistryClientError::Refused(_) => exit::REFUSED,
                _ => exit::UNREACHABLE,
            })
        }
    }
}

async fn run(cli: Cli) -> Result<(), RegistryClientError> {
    let opts = cli.admin.options("registry")?;
    let client = RegistryClient::connect(opts, cli.admin.timeout()).await?;
    let json = cli.admin.json;
    let result = match cli.command {
        Command::Assign { device, gateway } => {
            let ok = client
                .request(RegistryOp::Assign {
                    device_id: device,
                    gateway_id: gateway,
                })
                .await?;
            print(&ok, json);
            Ok(())
        }
        Command::Remap { device, gateway } => {
            let ok = client
                .request(RegistryOp::Remap {
                    device_id: device,
                    gateway_id: gateway,
                })
                .await?;
            print(&ok, json);
            Ok(())
        }
        Command::Drain { gateway, to, rate } => drain(&client, gateway, to, rate, json).await,
        Command::Undrain { gateway } => {
            print(
                &client
                    .request(RegistryOp::Undrain {
                        gateway_id: gateway,
                    })
                    .await?,
                json,
            );
            Ok(())
        }
        Command::Show { device } => {
            print(
                &client
                    .request(RegistryOp::Show { device_id: device })
                    .await?,
                json,
            );
            Ok(())
        }
        Command::Gateways => {
            print(&client.request(RegistryOp::Gateways).await?, json);
            Ok(())
        }
        Command::History { device } => {
            print(
                &client
                    .request(RegistryOp::History { device_id: device })
                    .await?,
                json,
            );
            Ok(())
        }
    };
    client.close().await;
    result
}

/// Drains in batches, pacing them to `rate` devices/s, with a progress bar.
async fn drain(
    client: &RegistryClient,
    gateway: String,
    to: Option<String>,
    rate: Option<u32>,
    json: bool,
) -> Result<(), RegistryClientError> {
    let started = Instant::now();
    let batch = rate.map_or(MAX_DRAIN_BATCH, |r| (r as usize).clamp(1, MAX_DRAIN_BATCH));
    let bar = if json {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(0)
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} draining {msg} [{bar:30}] {pos}/{len} devices ({per_sec})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message(gateway.clone());
    let mut moved = 0u64;
    loop {
        let batch_started = Instant::now();
        let op = RegistryOp::Drain {
            gateway_id: gateway.clone(),
            to: to.clone(),
            limit: batch,
        };
        let report = match client.request(op).await? {
            RegistryOk::Drained(r) => r,
            other => {
                bar.abandon();
                print(&other, json);
                return Ok(());
            }
        };
        moved += report.moved;
        bar.set_length(moved + report.remaining);
        bar.set_position(moved);
        if report.remaining == 0 || report.moved == 0 {
            bar.finish_and_clear();
            let elapsed = started.elapsed();
            if json {
                let out = serde_json::json!({"gateway_id": gateway, "moved": moved, "remaining": report.remaining, "elapsed_ms": elapsed.as_millis() as u64});
                println!("{out}");
            } else {
                println!(
                    "drained {gateway}: {moved} devices moved in {:.2} s, {} remaining",
                    elapsed.as_secs_f64(),
                    report.remaining
                );
            }
            if report.remaining > 0 {
                return Err(RegistryClientError::Refused(protocol::ErrorBody::new(
                    protocol::registry_admin::RegistryErrorCode::NoGateway,
                    "no gateway could take the remaining devices",
                )));
            }
            return Ok(());
        }
        if let Some(r) = rate {
            let due = Duration::from_secs_f64(report.moved as f64 / f64::from(r.max(1)));
            tokio::time::sleep(due.saturating_sub(batch_started.elapsed())).await;
        }
    }
}

fn print(ok: &RegistryOk, json: bool) {
    if json {
        println!("{}", serde_json::to_string_pretty(ok).unwrap_or_default());
        return;
    }
    match ok {
        RegistryOk::Assignment(a) => print_assignment(a),
        RegistryOk::Drained(d) => println!(
            "drained {}: {} moved, {} remaining",
            d.gateway_id, d.moved, d.remaining
        ),
        RegistryOk::Undrained { gateway_id } => println!("{gateway_id} takes devices again"),
        RegistryOk::Gateways { gateways } => {
            println!(
                "{:<12} {:<22} {:<6} {:>6} {:>9} {:>10}",
                "GATEWAY", "ADDRESS", "STATE", "WEIGHT", "ASSIGNED", "CONNECTED"
            );
            for g in gateways {
                let state = match (g.alive, g.draining) {
                    (false, _) => "dead",
                    (true, true) => "drain",
                    (true, false) => "live",
                };
                println!(
                    "{:<12} {:<22} {:<6} {:>6} {:>9} {:>10}",
                    g.gateway_id, g.address, state, g.weight, g.assigned, g.connected
                );
            }
        }
        RegistryOk::History { device_id, entries } => {
            println!("history of {device_id}:");
            for e in entries {
                println!(
                    "  {}  epoch {:>3}  {} -> {}  ({})",
                    when(e.at_ms),
                    e.epoch,
                    e.from.as_deref().unwrap_or("-"),
                    e.to,
                    e.reason
                );
            }
        }
    }
}

fn print_assignment(a: &AssignmentView) {
    let verb = if a.changed { "now on" } else { "on" };
    println!(
        "{} {verb} {} (epoch {})",
        a.device_id, a.gateway_id, a.epoch
    );
    match &a.last_seen {
        Some(s) if s.online => println!("  connected to {} since {}", s.gateway_id, when(s.at_ms)),
        Some(s) => println!("  last seen on {} until {}", s.gateway_id, when(s.at_ms)),
        None => println!("  never seen connected"),
    }
}

fn when(ms: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

//! `verifier`: run the verifier worker, or administer the running one.

use anyhow::Context;
use clap::{Parser, Subcommand};
use cli::AdminArgs;
use protocol::admin::{AdminOk, AdminOp, ImportReport};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use verifier::{AdminClient, ClientError, VerifierConfig};

/// Exit codes a script can rely on.
mod exit {
    pub use cli::exit::{OK, REFUSED, UNREACHABLE};
    /// Anything else: storage failure, I/O error.
    pub const FAILED: u8 = 4;
}

#[derive(Parser)]
#[command(
    version,
    about = "Enroll devices' temporary passwords, and run the verifier worker.",
    long_about = "\
The verifier keeps each device's factory UUID -> pass_tmp and answers access points \
that verify a device. The admin commands (enroll, import, remove, show, list) talk to \
the running worker over MQTT; they never open its database.

Exit codes: 0 done; 1 refused by the verifier (or some import rows rejected); \
2 bad command line; 3 platform unreachable or no answer; 4 other failure."
)]
struct Cli {
    #[command(flatten)]
    admin: AdminArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the verifier worker standalone (the broker runs one by default).
    Serve {
        /// Where the sled database lives; only one verifier may use it.
        #[arg(long, default_value = "./data")]
        data_dir: PathBuf,
    },
    /// Enroll one device.
    Enroll {
        #[arg(long)]
        uuid: String,
        #[arg(long)]
        pass_tmp: String,
        /// Replace the pass_tmp of a device that is already enrolled.
        #[arg(long)]
        replace: bool,
    },
    /// Enroll every device of a CSV file with lines `uuid,pass_tmp`.
    Import { file: PathBuf },
    /// Remove one device.
    Remove {
        #[arg(long)]
        uuid: String,
    },
    /// Show whether a device is enrolled, and since when.
    Show {
        #[arg(long)]
        uuid: String,
    },
    /// List enrolled UUIDs.
    List,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    cli::init_logging("warn,verifier=info", cli::LogOutput::Stderr);
    let runtime = match cli::runtime(ExitCode::from(exit::FAILED)) {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            let code = match e.downcast_ref::<ClientError>() {
                Some(ClientError::Refused(_)) => exit::REFUSED,
                Some(ClientError::Bus(_) | ClientError::NoAnswer(_)) => exit::UNREACHABLE,
                _ => exit::FAILED,
            };
            ExitCode::from(code)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<u8> {
    if let Command::Serve { data_dir } = &cli.command {
        let shutdown = CancellationToken::new();
        tokio::spawn(cli::cancel_on_signal(shutdown.clone()));
        let mut config = VerifierConfig::new(&cli.admin.connect.broker, data_dir.join("verifier"));
        config.username = cli.admin.connect.username_or("verifier");
        config.password = cli.admin.connect.mqtt_password.clone();
        verifier::run(config, shutdown).await?;
        return Ok(exit::OK);
    }

    let opts = cli.admin.options("verifier")?;
    let client = AdminClient::connect(opts, cli.admin.timeout()).await?;
    let json = cli.admin.json;
    let code = match cli.command {
        Command::Serve { .. } => exit::OK,
        Command::Enroll {
            uuid,
            pass_tmp,
            replace,
        } => {
            let ok = client
                .request(AdminOp::Enroll {
                    uuid,
                    pass_tmp,
                    replace,
                })
                .await?;
            print(&ok, json);
            exit::OK
        }
        Command::Import { file } => {
            let reader = std::fs::File::open(&file)
                .with_context(|| format!("cannot open {}", file.display()))?;
            let (rows, early_rejects) = verifier::manifest::parse(reader);
            let mut report = client
                .import(rows, |done, total| {
                    if !json {
                        eprint!("\rimported {done}/{total}");
                    }
                })
                .await?;
            if !json {
                eprintln!();
            }
            report.rejected.extend(early_rejects);
            report.rejected.sort_by_key(|r| r.line);
            let code = if report.rejected.is_empty() {
                exit::OK
            } else {
                exit::REFUSED
            };
            print(&AdminOk::Imported(report), json);
            code
        }
        Command::Remove { uuid } => {
            print(&client.request(AdminOp::Remove { uuid }).await?, json);
            exit::OK
        }
        Command::Show { uuid } => {
            print(&client.request(AdminOp::Show { uuid }).await?, json);
            exit::OK
        }
        Command::List => {
            let mut after = None;
            let mut all = Vec::new();
            loop {
                match client.request(AdminOp::List { after, limit: 1000 }).await? {
                    AdminOk::List { uuids, next } => {
                        all.extend(uuids);
                        match next {
                            Some(n) => after = Some(n),
                            None => break,
                        }
                    }
                    other => anyhow::bail!("unexpected reply {other:?}"),
                }
            }
            print(
                &AdminOk::List {
                    uuids: all,
                    next: None,
                },
                json,
            );
            exit::OK
        }
    };
    client.close().await;
    Ok(code)
}

fn print(ok: &AdminOk, json: bool) {
    if json {
        println!("{}", serde_json::to_string_pretty(ok).unwrap_or_default());
        return;
    }
    match ok {
        AdminOk::Enrolled {
            uuid,
            created: true,
        } => println!("enrolled {uuid}"),
        AdminOk::Enrolled {
            uuid,
            created: false,
        } => println!("{uuid} was already enrolled with this pass_tmp"),
        AdminOk::Imported(ImportReport {
            added,
            unchanged,
            rejected,
        }) => {
            println!(
                "added {added}, unchanged {unchanged}, rejected {}",
                rejected.len()
            );
            for r in rejected {
                println!("  line {}: {} {}", r.line, r.uuid, r.reason);
            }
        }
        AdminOk::Removed { uuid } => println!("removed {uuid}"),
        AdminOk::Device {
            uuid,
            enrolled_at_ms,
        } => {
            println!(
                "{uuid} enrolled at {} (unix ms {enrolled_at_ms})",
                format_ms(*enrolled_at_ms)
            )
        }
        AdminOk::List { uuids, .. } => {
            for u in uuids {
                println!("{u}");
            }
        }
    }
}

fn format_ms(ms: u64) -> String {
    let at = std::time::UNIX_EPOCH + Duration::from_millis(ms);
    humantime::format_rfc3339_seconds(at).to_string()
}

//! The admin commands of the `verifier` binary (enroll, import, remove,
//! show, list): each is sent to the running worker over MQTT, and its
//! answer printed (`print.rs`).

mod print;

use crate::exit;
use anyhow::Context;
use clap::Subcommand;
use print::print;
use protocol::admin::{AdminOk, AdminOp};
use std::path::PathBuf;
use verifier::AdminClient;

#[derive(Subcommand)]
pub enum AdminCommand {
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

/// Runs one command and prints its answer; the exit code if it got one.
pub async fn run(client: &AdminClient, command: AdminCommand, json: bool) -> anyhow::Result<u8> {
    let code = match command {
        AdminCommand::Enroll {
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
        AdminCommand::Import { file } => {
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
        AdminCommand::Remove { uuid } => {
            print(&client.request(AdminOp::Remove { uuid }).await?, json);
            exit::OK
        }
        AdminCommand::Show { uuid } => {
            print(&client.request(AdminOp::Show { uuid }).await?, json);
            exit::OK
        }
        AdminCommand::List => {
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
    Ok(code)
}

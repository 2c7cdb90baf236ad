//! The admin commands of the `verifier` binary (enroll, import, remove,
//! show, list, revoke, approve-key, register-key, ap): each is sent to the
//! running worker over MQTT, and its answer printed (`print.rs`).

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
        /// An SSID the device may onboard at, as the factory gave it;
        /// repeat for several. None: any SSID.
        #[arg(long = "ssid", value_name = "SSID", value_parser = parse_ssid)]
        ssids: Vec<String>,
        /// Replace the pass_tmp or SSIDs of a device that is already
        /// enrolled.
        #[arg(long)]
        replace: bool,
    },
    /// Enroll every device of a CSV manifest: a header `uuid,pass_tmp,ssids`,
    /// then one line per device, its SSIDs separated by `|` (an old
    /// two-column `uuid,pass_tmp` manifest's devices may onboard at any
    /// SSID).
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
    /// Forget an onboarded device's login key: it is refused until it is
    /// onboarded again.
    Revoke {
        /// The device's UUID.
        #[arg(long)]
        uuid: String,
    },
    /// Approve the new key a device onboarded with after losing its own
    /// (a factory reset), waiting under `rekey = "admin"`: it becomes the
    /// device's login key, and the old one is refused from then on.
    ApproveKey {
        /// The device's UUID.
        #[arg(long)]
        uuid: String,
    },
    /// Register the login key of a device whose key pair was made at the
    /// factory (the public half, 64 hex digits), so that it logs in
    /// without onboarding first.
    RegisterKey {
        /// The device's UUID; it must be enrolled.
        #[arg(long)]
        uuid: String,
        /// The public half of the device's Ed25519 key, 64 hex digits.
        #[arg(long = "key", value_name = "HEX")]
        device_key: String,
    },
    /// Register, remove and list APs, each with its own credential.
    #[command(subcommand)]
    Ap(ApCommand),
}

#[derive(Subcommand)]
pub enum ApCommand {
    /// Register an AP, or change a registered one's SSIDs and credential.
    /// A new random credential is made here and shown once (or written to
    /// --out, mode 0600); the verifier stores only its SHA-256.
    Add {
        /// The AP's id: it logs in as `ap.ID` and uses the topics `ap/ID/…`.
        #[arg(long)]
        id: String,
        /// An SSID the AP serves; repeat for several.
        #[arg(long = "ssid", required = true)]
        ssids: Vec<String>,
        /// Write the credential to FILE (mode 0600) instead of showing it.
        /// ap-sim reads data/credentials/ap/ID.token by default.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Remove an AP: its credential is refused from then on.
    Remove {
        #[arg(long)]
        id: String,
    },
    /// List the registered APs and their SSIDs.
    List,
}

/// An SSID as `--ssid` takes it: what an AP can serve.
fn parse_ssid(s: &str) -> Result<String, String> {
    protocol::onboarding::check_ssid(s)?;
    Ok(s.to_owned())
}

/// Runs one command and prints its answer; the exit code if it got one.
pub async fn run(client: &AdminClient, command: AdminCommand, json: bool) -> anyhow::Result<u8> {
    let code = match command {
        AdminCommand::Enroll {
            uuid,
            pass_tmp,
            ssids,
            replace,
        } => {
            let ok = client
                .request(AdminOp::Enroll {
                    uuid,
                    pass_tmp,
                    replace,
                    ssids,
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
        AdminCommand::Revoke { uuid } => {
            print(&client.request(AdminOp::RevokeKey { uuid }).await?, json);
            exit::OK
        }
        AdminCommand::ApproveKey { uuid } => {
            print(&client.request(AdminOp::ApproveKey { uuid }).await?, json);
            exit::OK
        }
        AdminCommand::RegisterKey { uuid, device_key } => {
            let ok = client
                .request(AdminOp::RegisterKey { uuid, device_key })
                .await?;
            print(&ok, json);
            exit::OK
        }
        AdminCommand::Ap(command) => ap(client, command, json).await?,
    };
    Ok(code)
}

async fn ap(client: &AdminClient, command: ApCommand, json: bool) -> anyhow::Result<u8> {
    match command {
        ApCommand::Add { id, ssids, out } => {
            let credential = protocol::crypto::random_b64(24);
            let ok = client
                .request(AdminOp::ApRegister {
                    ap_id: id,
                    ssids,
                    credential_sha256: protocol::crypto::sha256_hex(&credential),
                })
                .await?;
            print(&ok, json);
            // Registered first, written second: a credential that could
            // not be written is still shown, never lost.
            let written = out.as_ref().map(|path| {
                (
                    path,
                    storage::write_secret(path, &format!("{credential}\n")),
                )
            });
            match written {
                Some((path, Ok(()))) => eprintln!("credential written to {}", path.display()),
                Some((path, Err(e))) => {
                    eprintln!("cannot write {}: {e}", path.display());
                    eprintln!("credential (shown once, keep it secret): {credential}");
                    return Ok(exit::FAILED);
                }
                None => eprintln!("credential (shown once, keep it secret): {credential}"),
            }
        }
        ApCommand::Remove { id } => print(
            &client.request(AdminOp::ApRemove { ap_id: id }).await?,
            json,
        ),
        ApCommand::List => print(&client.request(AdminOp::ApList).await?, json),
    }
    Ok(exit::OK)
}

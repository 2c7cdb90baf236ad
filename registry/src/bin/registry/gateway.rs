//! `registry gateway add|remove`: registering the gateways the registry
//! believes. The credential a gateway's agent logs in with is made here,
//! from the OS's random source, and shown once or written to a 0600 file;
//! only its SHA-256 goes to the registry.

use crate::render;
use clap::Subcommand;
use protocol::registry_admin::RegistryOp;
use registry::{RegistryClient, RegistryClientError};
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum GatewayCommand {
    /// Register a gateway, or change a registered one. A new random
    /// credential is made for its agent and shown once (or written to
    /// --out, mode 0600).
    Add {
        /// The gateway's id: its agent logs in as `gateway.ID` and uses
        /// the topics `gateway/ID/…`.
        #[arg(long)]
        id: String,
        /// The address devices are sent to, host:port.
        #[arg(long)]
        address: String,
        /// Its share of new devices, relative to the other gateways.
        #[arg(long, default_value_t = 1)]
        weight: u32,
        /// Write the credential to FILE (mode 0600) instead of showing it.
        /// `broker gateway` reads data/credentials/gateway/ID.token by
        /// default.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Remove a gateway: its agent is refused from then on, and its
    /// devices fail over when they next ask.
    Remove {
        #[arg(long)]
        id: String,
    },
}

/// Runs one gateway command; the exit code.
pub async fn run(
    client: &RegistryClient,
    command: GatewayCommand,
    json: bool,
) -> Result<u8, RegistryClientError> {
    match command {
        GatewayCommand::Add {
            id,
            address,
            weight,
            out,
        } => {
            let credential = protocol::crypto::random_b64(24);
            let ok = client
                .request(RegistryOp::GatewayRegister {
                    gateway_id: id,
                    address,
                    weight,
                    credential_sha256: Some(protocol::crypto::sha256_hex(&credential)),
                })
                .await?;
            render::print(&ok, json);
            // Registered first, written second: a credential that could
            // not be written is still shown, never lost.
            let Some(path) = out else {
                eprintln!("credential (shown once, keep it secret): {credential}");
                return Ok(cli::exit::OK);
            };
            match storage::write_secret(&path, &format!("{credential}\n")) {
                Ok(()) => {
                    eprintln!("credential written to {}", path.display());
                    Ok(cli::exit::OK)
                }
                Err(e) => {
                    eprintln!("cannot write {}: {e}", path.display());
                    eprintln!("credential (shown once, keep it secret): {credential}");
                    Ok(FAILED)
                }
            }
        }
        GatewayCommand::Remove { id } => {
            let ok = client
                .request(RegistryOp::GatewayRemove { gateway_id: id })
                .await?;
            render::print(&ok, json);
            Ok(cli::exit::OK)
        }
    }
}

/// The credential was registered but could not be written to --out.
pub const FAILED: u8 = 4;

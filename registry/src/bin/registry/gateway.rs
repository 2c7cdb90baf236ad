//! `registry gateway add|remove`: registering the gateways the registry
//! believes. The credential a gateway's agent logs in with is made here,
//! from the OS's random source, and shown once or written to a 0600 file;
//! only its SHA-256 goes to the registry. So is the key of its TLS
//! certificate: only a certificate request for it goes to the registry,
//! and the platform's CA signs it for the gateway's address.

use crate::render;
use clap::Subcommand;
use protocol::registry_admin::RegistryOp;
use registry::{RegistryClient, RegistryClientError};
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum GatewayCommand {
    /// Register a gateway, or change a registered one. A new random
    /// credential is made for its agent and shown once (or written to
    /// --out, mode 0600). With --out, a TLS key is made too, and the
    /// platform's CA issues its certificate for the address's host: both
    /// are written next to the credential (FILE with .crt and .key), where
    /// `broker gateway` finds them. Running it again renews both.
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
        /// Write the credential to FILE (mode 0600) instead of showing it,
        /// and the gateway's TLS certificate and key next to it. `broker
        /// gateway` reads data/credentials/gateway/ID.token (.crt, .key)
        /// by default.
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
    plaintext: bool,
) -> Result<u8, RegistryClientError> {
    match command {
        GatewayCommand::Add {
            id,
            address,
            weight,
            out,
        } => {
            let credential = protocol::crypto::random_b64(24);
            // A TLS key only where it can be kept: next to --out. A
            // platform reached in plaintext serves no TLS to need one. The
            // request names the gateway's id, as the platform's CA issues
            // it (it takes nothing from the request but the key).
            let tls_key = match (&out, plaintext) {
                (Some(_), false) => match tls::gateway_name(&id).and_then(|n| tls::request(&[n])) {
                    Ok(pair) => Some(pair),
                    Err(e) => {
                        eprintln!("error: --id {id:?}: {e}");
                        return Ok(cli::exit::USAGE);
                    }
                },
                _ => None,
            };
            let ok = client
                .request(RegistryOp::GatewayRegister {
                    gateway_id: id,
                    address,
                    weight,
                    credential_sha256: Some(protocol::crypto::sha256_hex(&credential)),
                    certificate_request: tls_key.as_ref().map(|(csr, _)| csr.clone()),
                })
                .await?;
            render::print(&ok, json);
            // Registered first, written second: a credential that could
            // not be written is still shown, never lost.
            let Some(path) = out else {
                eprintln!("credential (shown once, keep it secret): {credential}");
                return Ok(cli::exit::OK);
            };
            let mut files = vec![(path.clone(), format!("{credential}\n"))];
            if let (
                Some((_, key)),
                protocol::registry_admin::RegistryOk::GatewayRegistered {
                    certificate: Some(chain),
                    ..
                },
            ) = (tls_key, &ok)
            {
                files.push((path.with_extension("key"), key));
                files.push((path.with_extension("crt"), chain.clone()));
            }
            for (file, text) in &files {
                if let Err(e) = storage::write_secret(file, text) {
                    eprintln!("cannot write {}: {e}", file.display());
                    eprintln!("credential (shown once, keep it secret): {credential}");
                    return Ok(FAILED);
                }
                eprintln!("written: {}", file.display());
            }
            Ok(cli::exit::OK)
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

//! The command line: what `registry --help` shows, parsed by clap.

use crate::gateway::GatewayCommand;
use clap::{Parser, Subcommand};
use cli::AdminArgs;

#[derive(Parser)]
#[command(
    version,
    about = "Assign, move and drain devices between gateways.",
    long_about = "\
Talks to the running registry over MQTT. A device learns its gateway by asking the registry; \
when you move it, its old gateway sends it a redirect notice (or refuses it at its next connect \
if it is offline) and it asks again.

Exit codes: 0 done; 1 refused by the registry (the reason is printed); 2 bad command line or an unreadable input file (--cafile, --password-file); \
3 platform unreachable or no answer; 4 a credential registered but not written to --out."
)]
pub struct Cli {
    #[command(flatten)]
    pub admin: AdminArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
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
    /// Register and remove gateways, each with its own credential.
    #[command(subcommand)]
    Gateway(GatewayCommand),
    /// Run a registry worker as its own process, against any MQTT 3.1.1
    /// broker (`--broker HOST:PORT`). Several instances on one PostgreSQL
    /// store share the load (docs/SCALING.md); the `broker` process runs
    /// one by default.
    Serve(crate::serve::ServeArgs),
}

//! `verifier`: run the verifier worker, or administer the running one.

mod admin_cmd;
mod serve_cmd;

use admin_cmd::AdminCommand;
use clap::{Parser, Subcommand};
use cli::AdminArgs;
use std::process::ExitCode;
use verifier::{AdminClient, ClientError};

/// Exit codes a script can rely on.
mod exit {
    pub use cli::exit::{OK, REFUSED, UNREACHABLE, USAGE};
    /// Anything else: storage failure, I/O error.
    pub const FAILED: u8 = 4;
}

#[derive(Parser)]
#[command(
    version,
    about = "Enroll devices' temporary passwords, and run the verifier worker.",
    long_about = "\
The verifier keeps each device's factory UUID -> pass_tmp (and the SSIDs it may onboard \
at) and answers access points that verify a device. The admin commands (enroll, import, \
remove, show, list, revoke, approve-key, register-key, ap) talk to the running worker \
over MQTT; they never open its database.

Exit codes: 0 done; 1 refused by the verifier (or some import rows rejected); \
2 bad command line or an unreadable input file (--cafile, --password-file); 3 platform unreachable, no answer, or a server that does not prove it is the platform; 4 other failure."
)]
struct Cli {
    #[command(flatten)]
    admin: AdminArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a verifier worker as its own process, against any MQTT 3.1.1
    /// broker (`--broker HOST:PORT`). Several instances on one PostgreSQL
    /// store share the load (docs/SCALING.md); the `broker` process runs
    /// one by default.
    Serve(serve_cmd::ServeArgs),
    #[command(flatten)]
    Admin(AdminCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    cli::init_logging("warn,verifier=info,audit=info", cli::LogOutput::Stderr);
    let runtime = match cli::runtime(ExitCode::from(exit::FAILED)) {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            // A local file the connection needs (the CA, a password
            // file) is a bad input, as in every other binary.
            let bus = e
                .downcast_ref::<bus::BusError>()
                .or_else(|| match e.downcast_ref() {
                    Some(ClientError::Bus(b)) => Some(b),
                    _ => None,
                });
            let code = match (bus, e.downcast_ref::<ClientError>()) {
                (Some(bus::BusError::Config(_)), _) => exit::USAGE,
                (Some(_), _) => exit::UNREACHABLE,
                (None, Some(ClientError::Refused(_))) => exit::REFUSED,
                (None, Some(ClientError::NoAnswer(_))) => exit::UNREACHABLE,
                _ => exit::FAILED,
            };
            ExitCode::from(code)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<u8> {
    match cli.command {
        Command::Serve(args) => {
            serve_cmd::run(&cli.admin.connect, args).await?;
            Ok(exit::OK)
        }
        Command::Admin(command) => {
            let opts = cli.admin.options("verifier")?;
            let client = AdminClient::connect(opts, cli.admin.timeout()).await?;
            let code = admin_cmd::run(&client, command, cli.admin.json).await?;
            client.close().await;
            Ok(code)
        }
    }
}

//! `registry`: administer the running gateway registry.
//!
//! This file parses the command line, sends the request and maps the
//! outcome to an exit code; [`args`] is the command line, [`drain`] the one
//! command that loops, and [`render`] how every reply is printed.

mod args;
mod drain;
mod gateway;
mod render;
mod serve;

use args::{Cli, Command};
use clap::Parser;
use protocol::registry_admin::RegistryOp;
use registry::{RegistryClient, RegistryClientError};
use std::process::ExitCode;

/// Exit codes a script can rely on.
use cli::exit;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Serve(args) = &cli.command {
        return serve_main(&cli, args.clone());
    }
    cli::init_logging("warn", cli::LogOutput::Stderr);
    let runtime = match cli::runtime(ExitCode::from(exit::UNREACHABLE)) {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(match e {
                RegistryClientError::Refused(_) => exit::REFUSED,
                // A local file the connection needs (the CA, a password
                // file) is a bad input, as in every other binary.
                RegistryClientError::Bus(bus::BusError::Config(_)) => exit::USAGE,
                _ => exit::UNREACHABLE,
            })
        }
    }
}

/// `registry serve`: a worker, logging at info, until a signal.
fn serve_main(cli: &Cli, args: serve::ServeArgs) -> ExitCode {
    cli::init_logging("warn,registry=info", cli::LogOutput::Stderr);
    let runtime = match cli::runtime(ExitCode::from(exit::UNREACHABLE)) {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    match runtime.block_on(serve::run(&cli.admin.connect, args)) {
        Ok(()) => ExitCode::from(exit::OK),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(exit::UNREACHABLE)
        }
    }
}

async fn run(cli: Cli) -> Result<u8, RegistryClientError> {
    let opts = cli.admin.options("registry")?;
    let client = RegistryClient::connect(opts, cli.admin.timeout()).await?;
    let json = cli.admin.json;
    let op = match cli.command {
        Command::Drain { gateway, to, rate } => {
            let result = drain::run(&client, gateway, to, rate, json).await;
            client.close().await;
            return result.map(|()| exit::OK);
        }
        Command::Gateway(command) => {
            let plaintext = cli.admin.connect.is_plaintext();
            let result = gateway::run(&client, command, json, plaintext).await;
            client.close().await;
            return result;
        }
        Command::Assign { device, gateway } => RegistryOp::Assign {
            device_id: device,
            gateway_id: gateway,
        },
        Command::Remap { device, gateway } => RegistryOp::Remap {
            device_id: device,
            gateway_id: gateway,
        },
        Command::Undrain { gateway } => RegistryOp::Undrain {
            gateway_id: gateway,
        },
        Command::Show { device } => RegistryOp::Show { device_id: device },
        Command::Gateways => RegistryOp::Gateways,
        Command::History { device } => RegistryOp::History { device_id: device },
        // main() runs `serve` before it gets here; it is never an admin
        // request.
        Command::Serve(_) => {
            client.close().await;
            return Ok(exit::USAGE);
        }
    };
    render::print(&client.request(op).await?, json);
    client.close().await;
    Ok(exit::OK)
}

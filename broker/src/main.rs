//! `broker`: run the platform (broker + workers) on one command.

use broker::config::DEFAULT_TOML;
use broker::{Config, Platform, StartOptions};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    version,
    about = "Run the IoT onboarding platform: the MQTT broker and its workers.",
    long_about = "\
Runs the platform broker (MQTT 3.1.1, 127.0.0.1:1883 by default) and, in the same \
process, the verifier worker. With no arguments it runs on the built-in default \
config; `broker default-config` prints it. Ctrl-C or SIGTERM drains the workers, \
flushes storage and exits 0.

Log verbosity follows RUST_LOG (default: info,rumqttd=off; rumqttd logs ordinary disconnects as errors)."
)]
struct Cli {
    /// TOML config file; keys it omits take the built-in defaults.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Where workers keep their databases.
    #[arg(long, value_name = "DIR", default_value = "./data")]
    data_dir: PathBuf,
    /// Run the broker alone, without the in-process workers.
    #[arg(long)]
    broker_only: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Print the built-in default config (a commented TOML file) and exit.
    DefaultConfig,
    /// Check a config file and exit: 0 if valid, 1 with the problem if not.
    CheckConfig { file: PathBuf },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::DefaultConfig) => {
            print!("{DEFAULT_TOML}");
            return ExitCode::SUCCESS;
        }
        Some(Command::CheckConfig { ref file }) => {
            return match Config::from_file(file) {
                Ok(_) => {
                    println!("{}: ok", file.display());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            };
        }
        None => {}
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,rumqttd=off".into()),
        )
        .init();

    let config = match &cli.config {
        Some(path) => Config::from_file(path),
        None => Config::builtin(),
    };
    let config = match config {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let opts = StartOptions {
        broker_only: cli.broker_only,
    };
    let result = runtime.block_on(async {
        let stop = CancellationToken::new();
        tokio::spawn(bus::cancel_on_signal(stop.clone()));
        let platform = Platform::start(&config, &cli.data_dir, opts).await?;
        platform.run_until(stop).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

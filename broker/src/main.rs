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
Runs the platform broker (MQTT 3.1.1 over TLS, 127.0.0.1:8883 by default) and, in \
the same process, the verifier and registry workers and gateways gw-1 (127.0.0.1:8884) \
and gw-2 (127.0.0.1:8885). On first start it makes its CA, DATA_DIR/ca.pem, which \
clients trust. With no arguments it runs on the built-in default \
config; `broker default-config` prints it; config/walkthrough.toml is the plaintext \
walkthrough mode on 1883-1885. `broker gateway` runs one more gateway \
as its own process. Ctrl-C or SIGTERM drains the workers, \
flushes storage and exits 0.

Log verbosity follows RUST_LOG (default: info,rumqttd=off,rustls=error; rumqttd logs ordinary disconnects as errors, and rustls warns about every client that sends an IP address as its TLS server name, as mosquitto does)."
)]
struct Cli {
    /// TOML config file; keys it omits take the built-in defaults.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Where workers keep their databases.
    #[arg(long, value_name = "DIR", default_value = protocol::layout::DEFAULT_DATA_DIR)]
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
    /// Run one gateway (broker + agent) as its own process, pointed at a
    /// running platform broker.
    Gateway(Box<GatewayArgs>),
}

#[derive(clap::Args)]
struct GatewayArgs {
    /// The gateway's id, e.g. gw-3.
    #[arg(long)]
    id: String,
    /// Where devices connect.
    #[arg(long)]
    listen: std::net::SocketAddr,
    /// The "host:port" devices are told; default: --listen. In secure
    /// mode the registry uses the address the gateway was registered
    /// with (`registry gateway add`), not this.
    #[arg(long)]
    advertise: Option<String>,
    /// Relative share of devices under the hashed policy (walkthrough
    /// mode; in secure mode, the registered weight).
    #[arg(long, default_value_t = 1)]
    weight: u32,
    /// The platform broker [default: 127.0.0.1:8883, or 127.0.0.1:1883
    /// with --plaintext or --walkthrough].
    #[arg(long, env = "PLATFORM_BROKER")]
    platform: Option<String>,
    /// The platform's CA: the platform broker must prove it is the
    /// platform with a certificate it signed.
    #[arg(long, env = "PLATFORM_CAFILE", default_value = protocol::layout::DEFAULT_CA_FILE)]
    cafile: PathBuf,
    /// The certificate chain devices are served (PEM, the gateway's
    /// own first, for its advertised address), signed by the
    /// platform's CA [default: data/credentials/gateway/ID.crt, as
    /// `registry gateway add --out` writes it].
    #[arg(long, value_name = "FILE")]
    cert: Option<PathBuf>,
    /// The key of --cert [default: data/credentials/gateway/ID.key].
    #[arg(long, value_name = "FILE")]
    key: Option<PathBuf>,
    /// Plaintext MQTT, to the platform and on --listen, for a platform
    /// with `tls.enabled = false`: every login crosses the network in
    /// the clear.
    #[arg(long)]
    plaintext: bool,
    /// Devices this gateway accepts at once (a process holds at most
    /// about 20,000 open files here).
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=19_000))]
    max_connections: u32,
    /// The platform's public key file: devices must log in with an
    /// assignment it signed.
    #[arg(long, env = "PLATFORM_KEY_FILE", default_value = cli::DEFAULT_KEY_FILE)]
    platform_key_file: PathBuf,
    /// The MQTT username on the platform broker [default: gateway.ID].
    #[arg(long)]
    username: Option<String>,
    /// The gateway's own credential, made when it was registered
    /// (`registry gateway add --id ID --address ADDR --out FILE`)
    /// [default: data/credentials/gateway/ID.token].
    #[arg(long, env = "PLATFORM_PASSWORD_FILE")]
    password_file: Option<PathBuf>,
    /// For a platform in walkthrough mode: admit any assigned device
    /// without a signed assignment, log in without a password, in
    /// plaintext.
    #[arg(long)]
    walkthrough: bool,
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
        Some(Command::Gateway(_)) | None => {}
    }
    cli::init_logging("info,rumqttd=off,rustls=error", cli::LogOutput::Stdout);
    cli::private_files();

    if let Some(Command::Gateway(args)) = cli.command {
        let GatewayArgs {
            id,
            listen,
            advertise,
            weight,
            platform,
            max_connections,
            platform_key_file,
            username,
            password_file,
            walkthrough,
            cafile,
            cert,
            key,
            plaintext,
        } = *args;
        let plaintext = plaintext || walkthrough;
        let platform = platform.unwrap_or_else(|| {
            if plaintext {
                "127.0.0.1:1883"
            } else {
                "127.0.0.1:8883"
            }
            .to_owned()
        });
        let credentials = std::path::Path::new(cli::DEFAULT_CREDENTIALS_DIR);
        let served = if plaintext {
            broker::gateway::Served::default()
        } else {
            let cert =
                cert.unwrap_or_else(|| protocol::layout::gateway_cert_file(credentials, &id));
            let key = key.unwrap_or_else(|| protocol::layout::gateway_key_file(credentials, &id));
            match broker::certs::gateway_listener(&cert, &key) {
                Ok(tls) => broker::gateway::Served {
                    lag: metrics::BrokerLag::default(),
                    tls: Some(tls),
                },
                Err(e) => {
                    eprintln!("error: {e} (`registry gateway add --id {id} --address HOST:PORT --out FILE` writes the gateway's certificate next to its credential; or pass --cert and --key, or --plaintext for a platform without TLS)");
                    return ExitCode::FAILURE;
                }
            }
        };
        let platform_tls = if plaintext {
            None
        } else {
            match cli::client_tls(&cafile) {
                Ok(tls) => Some(tls),
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::FAILURE;
                }
            }
        };
        let username = username.unwrap_or_else(|| protocol::logins::gateway_login(&id));
        let password_file = password_file.unwrap_or_else(|| {
            protocol::layout::gateway_token_file(
                std::path::Path::new(cli::DEFAULT_CREDENTIALS_DIR),
                &id,
            )
        });
        let security = if walkthrough {
            broker::gateway::GatewaySecurity {
                login: (username, String::new()),
                platform_key: None,
                platform_tls,
            }
        } else {
            let read = |path: &PathBuf| {
                std::fs::read_to_string(path)
                    .map(|t| t.trim().to_owned())
                    .map_err(|e| format!("cannot read {}: {e} (the platform writes its key under its --data-dir, and `registry gateway add --out FILE` the gateway's credential; or pass --walkthrough for a walkthrough-mode platform)", path.display()))
            };
            let key = read(&platform_key_file).and_then(|hex| {
                protocol::crypto::PlatformPublicKey::from_hex(&hex)
                    .map_err(|e| format!("{}: {e}", platform_key_file.display()))
            });
            match (key, read(&password_file)) {
                (Ok(key), Ok(password)) => broker::gateway::GatewaySecurity {
                    login: (username, password),
                    platform_key: Some(key),
                    platform_tls,
                },
                (Err(e), _) | (_, Err(e)) => {
                    eprintln!("error: {e}");
                    return ExitCode::FAILURE;
                }
            }
        };
        let section = broker::config::GatewaySection {
            id,
            listen,
            advertise,
            weight,
            close_after_notice_ms: broker::config::DEFAULT_CLOSE_AFTER_NOTICE_MS,
        };
        let config = Config {
            gateways: vec![section.clone()],
            ..Config::default()
        };
        if let Err(e) = config.validate() {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
        return run_gateway(
            section,
            platform,
            security,
            served,
            max_connections as usize,
        );
    }
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
    let runtime = match cli::runtime(ExitCode::FAILURE) {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let opts = StartOptions {
        broker_only: cli.broker_only,
    };
    let result = runtime.block_on(async {
        let stop = CancellationToken::new();
        tokio::spawn(cli::cancel_on_signal(stop.clone()));
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

fn run_gateway(
    section: broker::config::GatewaySection,
    platform: String,
    security: broker::gateway::GatewaySecurity,
    served: broker::gateway::Served,
    max_connections: usize,
) -> ExitCode {
    let runtime = match cli::runtime(ExitCode::FAILURE) {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let result = runtime.block_on(async {
        let stop = CancellationToken::new();
        tokio::spawn(cli::cancel_on_signal(stop.clone()));
        let settings = broker::config::BrokerSettings {
            max_connections,
            ..broker::config::BrokerSettings::default()
        };
        let gw = broker::gateway::start(
            &section,
            &settings,
            &platform,
            &security,
            served,
            stop.clone(),
        )
        .await?;
        gw.join().await;
        Ok::<(), broker::gateway::GatewayError>(())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

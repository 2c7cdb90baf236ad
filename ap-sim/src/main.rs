//! `ap-sim`: run one simulated access point, or several in one process.

mod serve_cmd;

use ap_sim::Network;
use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser};
use cli::ConnectArgs;
use serve_cmd::ApSpec;
use std::path::PathBuf;
use std::process::ExitCode;

/// Exit codes a script can rely on.
mod exit {
    pub use cli::exit::USAGE;
    /// The AP could not start or failed: invalid --ssid/--password,
    /// platform unreachable.
    pub const FAILED: u8 = 1;
}

#[derive(Parser)]
#[command(
    version,
    about = "A simulated Wi-Fi access point that onboards devices through the verifier.",
    long_about = "\
Serves access requests for one SSID: asks the verifier for the device's pass_tmp, compares, \
prompts you, and on accept sends the device the network password. With --aps FILE it runs \
every AP the file lists, each with its own SSID and MQTT connection, in one process \
(see config/aps.example.toml).

Confirm a prompt with --auto-confirm, by typing y or n when running in a terminal, or with
  mosquitto_pub -u me -t ap/AP_ID/confirm -m '{\"uuid\":\"UUID\",\"accept\":true}'

Exit codes: 0 stopped by Ctrl-C/SIGTERM; 1 could not start (bad --ssid or --password, \
platform unreachable); 2 bad command line or bad --aps file."
)]
struct Cli {
    /// The SSID this AP serves.
    #[arg(long, required_unless_present = "aps")]
    ssid: Option<String>,
    /// The network's real password (8 to 63 printable ASCII characters).
    #[arg(
        long,
        env = "AP_WIFI_PASSWORD",
        hide_env_values = true,
        required_unless_present = "aps"
    )]
    password: Option<String>,
    /// This AP's id; internal topics are ap/{ap_id}/… . Give each AP its own.
    #[arg(long, default_value = "ap-1")]
    ap_id: String,
    /// Run every AP listed in this TOML file ([[ap]] tables with id, ssid
    /// and password) instead of one. AP_WIFI_PASSWORD is then ignored.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["ssid", "ap_id"])]
    aps: Option<PathBuf>,
    /// Accept every verified device without asking (every AP).
    #[arg(long)]
    auto_confirm: bool,
    /// Seconds a prompt waits for an answer before the device gets `timeout` (every AP).
    #[arg(long, default_value_t = 60)]
    confirm_timeout: u64,
    #[command(flatten)]
    connect: ConnectArgs,
}

impl Cli {
    /// The APs to run: the --aps file's, or the one of --ssid/--password.
    /// `password_flag`: --password was on the command line (not from the
    /// environment, which --aps ignores).
    fn specs(&self, password_flag: bool) -> Result<Vec<ApSpec>, String> {
        if let Some(path) = &self.aps {
            if password_flag {
                return Err(
                    "--password cannot be used with --aps: each AP's password is in the file"
                        .into(),
                );
            }
            let entries = ap_sim::aps::load(path).map_err(|e| e.to_string())?;
            return Ok(entries
                .into_iter()
                .map(|e| ApSpec {
                    id: e.id,
                    network: Network {
                        ssid: e.ssid,
                        password: e.password,
                    },
                })
                .collect());
        }
        // clap requires both without --aps.
        let (Some(ssid), Some(password)) = (&self.ssid, &self.password) else {
            return Err("--ssid and --password are required without --aps".into());
        };
        Ok(vec![ApSpec {
            id: self.ap_id.clone(),
            network: Network {
                ssid: ssid.clone(),
                password: password.clone(),
            },
        }])
    }
}

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let password_flag = matches.value_source("password") == Some(ValueSource::CommandLine);
    cli::init_logging("warn", cli::LogOutput::Stderr);
    let specs = match cli.specs(password_flag) {
        Ok(specs) => specs,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(exit::USAGE);
        }
    };
    let runtime = match cli::runtime(ExitCode::from(exit::FAILED)) {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let opts = serve_cmd::Options {
        auto_confirm: cli.auto_confirm,
        confirm_timeout: cli.confirm_timeout,
        connect: cli.connect,
    };
    match runtime.block_on(serve_cmd::run(opts, specs)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(exit::FAILED)
        }
    }
}

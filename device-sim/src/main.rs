//! `device-sim`: one simulated device, a fleet of them, or a fleet manifest.

mod fleet_cmd;
mod single_cmd;
mod state_file;

use clap::{Parser, Subcommand};
use cli::ConnectArgs;
use single_cmd::{exit, Single};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(
    version,
    about = "A simulated headless device: Wi-Fi onboarding through an AP, then its gateway.",
    long_about = "\
Runs one device, or with `fleet` thousands of them, through the whole life: sends an access \
request {uuid, ssid, pass_tmp} to whichever AP serves the SSID, waits for the access response, \
asks its own user to confirm, joins, asks the registry for its gateway, connects there and \
follows redirects.

Confirm with --auto-confirm, by typing y or n when running in a terminal, or with
  mosquitto_pub -u me -t device/UUID/confirm -m '{\"accept\":true}'

Fleets: `device-sim manifest --count 10000 --out fleet.csv`, `verifier import fleet.csv`, then \
`device-sim fleet --manifest fleet.csv --ssid home-wifi --auto-confirm`.

Exit codes: 0 joined (fleet: every device connected); 1 refused by the AP (fleet: some devices \
failed); 2 bad command line; 3 platform unreachable or no AP answered; 4 declined by the \
device's user.",
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    single: Single,
}

#[derive(Subcommand)]
enum Command {
    /// Write N device identities (uuid,pass_tmp) in the CSV format `verifier import` reads.
    Manifest(ManifestArgs),
    /// Run every device of a manifest through the whole life, in one process.
    Fleet(Box<FleetArgs>),
}

#[derive(clap::Args)]
struct ManifestArgs {
    /// How many devices.
    #[arg(long)]
    count: usize,
    /// The same seed writes the same identities.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Where to write the manifest.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

#[derive(clap::Args)]
struct FleetArgs {
    /// The manifest to run (uuid,pass_tmp per line), enrolled beforehand
    /// with `verifier import`.
    #[arg(long, value_name = "FILE")]
    manifest: PathBuf,
    /// The SSID(s) to join; with several (comma-separated or repeated),
    /// device i joins the (i mod n)-th, spreading the fleet over APs.
    #[arg(long, required = true, value_delimiter = ',')]
    ssid: Vec<String>,
    /// Accept every access response without asking. Without it, each
    /// device waits for a message on device/UUID/confirm.
    #[arg(long)]
    auto_confirm: bool,
    /// Devices between power-on and their first gateway connection at once.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..))]
    concurrency: u32,
    /// Power-ons per second [default: as fast as --concurrency allows].
    #[arg(long)]
    rate: Option<f64>,
    /// Keep the fleet connected this long after the last device connected,
    /// e.g. 30s or 5m [default: until Ctrl-C].
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    #[command(flatten)]
    mqtt: cli::FleetMqttArgs,
    /// Run only slice I of N of the manifest, e.g. 2/4, so that N processes
    /// share one fleet.
    #[arg(long, value_name = "I/N", value_parser = parse_slice)]
    slice: Option<(usize, usize)>,
    /// Seconds each device waits for an AP's answer before failing.
    #[arg(long, default_value_t = 30)]
    answer_timeout: u64,
    /// Also write the report as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Also draw the latency distribution and the timeline to FILE.svg.
    #[arg(long, value_name = "FILE.svg")]
    plot: Option<PathBuf>,
    /// No live status line.
    #[arg(long)]
    quiet: bool,
    #[command(flatten)]
    connect: ConnectArgs,
}

fn parse_slice(s: &str) -> Result<(usize, usize), String> {
    let (i, n) = s
        .split_once('/')
        .ok_or_else(|| format!("{s:?}: expected I/N, e.g. 1/4"))?;
    let i: usize = i
        .trim()
        .parse()
        .map_err(|_| format!("{i:?} is not a number"))?;
    let n: usize = n
        .trim()
        .parse()
        .map_err(|_| format!("{n:?} is not a number"))?;
    if n == 0 || i == 0 || i > n {
        return Err(format!("{s:?}: need 1 <= I <= N"));
    }
    Ok((i, n))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    cli::init_logging("warn", cli::LogOutput::Stderr);
    let command = match cli.command {
        Some(Command::Manifest(args)) => {
            return fleet_cmd::manifest(&args.out, args.count, args.seed)
        }
        Some(Command::Fleet(args)) => Either::Fleet(*args),
        None => Either::Single(cli.single),
    };
    let runtime = match cli::runtime(ExitCode::from(exit::UNREACHABLE)) {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let code = match command {
        Either::Fleet(args) => runtime.block_on(fleet_cmd::run(fleet_cmd::Options {
            manifest: args.manifest,
            ssids: args.ssid,
            mqtt: args.mqtt.mqtt,
            auto_confirm: args.auto_confirm,
            concurrency: args.concurrency as usize,
            rate: args.rate,
            duration: args.duration,
            slice: args.slice,
            answer_timeout: Duration::from_secs(args.answer_timeout),
            json: args.json,
            plot: args.plot,
            quiet: args.quiet,
            connect: args.connect,
        })),
        Either::Single(single) => runtime.block_on(single_cmd::run(single)),
    };
    // The stdin reader thread may still be blocked on a read.
    runtime.shutdown_timeout(Duration::from_millis(100));
    ExitCode::from(code)
}

enum Either {
    Single(Single),
    Fleet(FleetArgs),
}

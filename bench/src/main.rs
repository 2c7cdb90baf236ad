//! `platform-bench`: run one benchmark scenario and print its figures.

use anyhow::Result;
use clap::{Parser, ValueEnum};
use platform_bench::scenarios::{self, Mode, Outcome, Setup, SoakOptions};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Clone, Copy, ValueEnum)]
enum Scenario {
    /// QoS 1 request/response through the platform broker, no workers: the floor.
    Rtt,
    /// N clients connect and disconnect one at a time, then again with
    /// the TLS session they kept: the platform's CPU per connection, full
    /// handshake and resumed.
    Connect,
    /// N devices from nothing to connected on a gateway.
    Onboard,
    /// N devices on gw-1; `registry drain gw-1 --to gw-2`; until all are on gw-2.
    Drain,
    /// N devices on gw-1's process; kill -9 it; until all are on gw-2.
    Failover,
    /// N devices connected and idle; the platform's RSS per device.
    Hold,
    /// One device at a time, N times: the whole life on an idle platform.
    Life,
    /// For --duration: waves of N fresh devices (or N of a fixed --pool)
    /// onboarding, held and remapped between gw-1 and gw-2, then stopped;
    /// the platform's RSS sampled throughout.
    Soak,
    /// N devices onboarded past one process: gateways as several `broker
    /// gateway` processes, the fleet as several `device-sim fleet --slice`
    /// processes (--gateways, --fleets), with each process's CPU and memory.
    Wide,
    /// N devices onboarded through workers as their own processes on
    /// Mosquitto and PostgreSQL (walkthrough mode), with one instance of
    /// each worker and then two: the same-run ratio of the throughputs.
    ScaleOut,
    /// Diagnosis: rumqttd's memory per distinct client id, topic filter,
    /// message and topic, on a broker-only platform, with raw clients
    /// emulating N devices phase by phase.
    Topics,
}

#[derive(Parser)]
#[command(
    version,
    about = "Runs a benchmark scenario against the release binaries and prints its figures.",
    long_about = "Runs a benchmark scenario against the release binaries and prints its figures, \
including the same-run ratio of the flow to the rtt floor. Build first:\n  \
cargo build --release --workspace --bins\nor use bench/run.sh, which does. \
See docs/BENCHMARKS.md for the figures measured so far."
)]
struct Cli {
    scenario: Scenario,
    /// Devices (rtt: round trips).
    #[arg(default_value_t = 1000)]
    n: usize,
    /// Repeat the scenario on a fresh platform this many times and print
    /// the median of each figure.
    #[arg(long, default_value_t = 1)]
    runs: usize,
    /// onboard: devices between power-on and connected at once.
    #[arg(long, default_value_t = 256)]
    concurrency: usize,
    /// onboard: power-ons per second [default: as fast as --concurrency allows].
    #[arg(long)]
    rate: Option<f64>,
    /// Write every run's outcome, with the fleet reports, as JSON.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Run the platform in walkthrough mode (`[security] mode =
    /// "walkthrough"`, clients with --walkthrough: plaintext, no logins,
    /// no signatures) instead of the default secure mode over TLS, to
    /// compare them.
    #[arg(long, conflicts_with = "plaintext")]
    walkthrough: bool,
    /// Run the platform in secure mode without TLS (`[tls] enabled =
    /// false`, clients with --plaintext) instead of the default secure
    /// mode over TLS: the same logins and signatures, what TLS costs.
    #[arg(long)]
    plaintext: bool,
    /// soak: how long waves keep starting, e.g. 15m.
    #[arg(long, default_value = "15m", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// soak: how long each wave stays connected once it has settled.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    hold: Duration,
    /// soak: remaps per second (registry client, admin) while a wave is
    /// connected; 0: none.
    #[arg(long, default_value_t = 20.0)]
    remap_rate: f64,
    /// soak: cycle a fixed pool of this many devices (at least N), enrolled
    /// once, each wave re-onboarding the next N of them, instead of N fresh
    /// devices per wave: flat memory here means what grows in the fresh
    /// mode is enrolled data, not a leak.
    #[arg(long, value_name = "P")]
    pool: Option<usize>,
    /// soak: how often the platform broker's RSS is sampled.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    sample_every: Duration,
    /// The platform broker's `[platform] segment_size` in bytes (rumqttd's
    /// commit-log segment per topic filter) [default: the built-in
    /// 1 MiB]; below 256 KiB it also sets max_payload_size to it.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1024..))]
    segment_size: Option<u64>,
    /// wide: gateway processes [default: one per 12,500 devices].
    #[arg(long, default_value_t = 0, hide_default_value = true)]
    gateways: usize,
    /// wide: `device-sim fleet --slice` processes [default: one per 12,500
    /// devices].
    #[arg(long, default_value_t = 0, hide_default_value = true)]
    fleets: usize,
    #[command(flatten)]
    mqtt: cli::FleetMqttArgs,
    /// The platform broker's `[platform] segment_count` [default: 3].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=64))]
    segment_count: Option<u64>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    cli::init_logging("error", cli::LogOutput::Stderr);
    let runtime = match cli::runtime(ExitCode::from(4)) {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    match runtime.block_on(run(&cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: &Cli) -> Result<()> {
    let setup = Setup {
        mode: if cli.walkthrough {
            Mode::Walkthrough
        } else if cli.plaintext {
            Mode::SecurePlaintext
        } else {
            Mode::SecureTls
        },
        segment_size: cli.segment_size.map(|s| s as usize),
        segment_count: cli.segment_count.map(|s| s as usize),
        mqtt: cli.mqtt.mqtt.clone(),
    };
    let setup = &setup;
    let mut outcomes = Vec::new();
    let mut failed = 0;
    let runs = cli.runs.max(1);
    for i in 0..runs {
        let seed = 1000 + i as u64;
        let outcome = async {
            anyhow::Ok(match cli.scenario {
                Scenario::Rtt => scenarios::rtt_only(setup, cli.n).await?,
                Scenario::Connect => scenarios::connect(setup, cli.n).await?,
                Scenario::Onboard => {
                    scenarios::onboard(setup, cli.n, cli.concurrency, cli.rate, seed).await?
                }
                Scenario::Drain => scenarios::drain(setup, cli.n, seed).await?,
                Scenario::Failover => scenarios::failover(setup, cli.n, seed).await?,
                Scenario::Hold => scenarios::hold(setup, cli.n, seed).await?,
                Scenario::Life => scenarios::life(setup, cli.n, seed).await?,
                Scenario::Topics => scenarios::topics(setup, cli.n, seed).await?,
                Scenario::ScaleOut => {
                    scenarios::scale_out(setup, cli.n, cli.concurrency, seed).await?
                }
                Scenario::Wide => {
                    scenarios::wide(setup, cli.n, cli.gateways, cli.fleets, seed).await?
                }
                Scenario::Soak => {
                    let options = SoakOptions {
                        n: cli.n,
                        duration: cli.duration,
                        hold: cli.hold,
                        remap_rate: cli.remap_rate,
                        sample_every: cli.sample_every,
                        pool: cli.pool,
                    };
                    scenarios::soak(setup, &options, seed).await?
                }
            })
        }
        .await;
        if cli.runs > 1 {
            println!("-- run {} of {}", i + 1, cli.runs);
        }
        // A failed run is reported and the next one still runs.
        let outcome = match outcome {
            // The devices' MQTT version is part of what was measured.
            Ok(mut outcome) => {
                if setup.mqtt != [bus::MqttVersion::V311] {
                    outcome.scenario = format!("{}, MQTT {}", outcome.scenario, setup.mqtt_arg());
                }
                outcome
            }
            Err(e) => {
                failed += 1;
                println!("FAILED: {e:#}");
                continue;
            }
        };
        outcome.print();
        if let Some(fleet) = &outcome.fleet {
            println!("{fleet}");
        }
        outcomes.push(outcome);
    }
    if outcomes.len() > 1 {
        print_medians(&outcomes);
    }
    if let Some(path) = &cli.json {
        std::fs::write(path, serde_json::to_string_pretty(&outcomes)?)?;
    }
    if failed > 0 {
        anyhow::bail!("{failed} of {runs} runs failed");
    }
    Ok(())
}

/// The median of each figure and ratio over the runs.
fn print_medians(outcomes: &[Outcome]) {
    let Some(first) = outcomes.first() else {
        return;
    };
    println!(
        "== median of {} runs: {} ({} mode)",
        outcomes.len(),
        first.scenario,
        first.mode.name()
    );
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let rtt = median(outcomes.iter().map(|o| o.rtt.p50_ms).collect());
    println!("   rtt floor p50: {rtt:.3} ms");
    for (i, (name, _)) in first.figures.iter().enumerate() {
        let values: Vec<f64> = outcomes
            .iter()
            .filter_map(|o| o.figures.get(i).map(|f| f.1))
            .collect();
        let all = values
            .iter()
            .map(|v| format!("{v:.3}"))
            .collect::<Vec<_>>()
            .join(" / ");
        println!("   {name}: {:.3}   (runs: {all})", median(values.clone()));
    }
    for (i, (name, _)) in first.ratios.iter().enumerate() {
        let values: Vec<f64> = outcomes
            .iter()
            .filter_map(|o| o.ratios.get(i).map(|f| f.1))
            .collect();
        println!(
            "   ratio {name}: {:.2}x   (runs: {})",
            median(values.clone()),
            values
                .iter()
                .map(|v| format!("{v:.2}"))
                .collect::<Vec<_>>()
                .join(" / ")
        );
    }
}

//! `soak`: waves of devices for a long time, to tell flat memory from
//! growth.

use anyhow::{bail, Context, Result};
use device_sim::fleet::{self, FleetStats, Phase};
use protocol::registry_admin::{RegistryOk, RegistryOp};
use registry::RegistryClient;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

use super::platform::{Platform, Setup};
use super::report::{lat, slope, Outcome, MIB};
use super::rtt::rtt;

/// What `soak` runs.
#[derive(Debug, Clone)]
pub struct SoakOptions {
    /// Fresh devices per wave (all at once on the platform at most).
    pub n: usize,
    /// Waves start until this much time has passed.
    pub duration: Duration,
    /// How long each wave stays connected (and is remapped) once settled.
    pub hold: Duration,
    /// Remaps per second while a wave is connected.
    pub remap_rate: f64,
    /// How often the platform's RSS is sampled.
    pub sample_every: Duration,
    /// Some(P): a fixed pool of P devices, enrolled once, of which each
    /// wave re-onboards the next N (as after a factory reset), so the
    /// stores stop growing and what still grows is not data. None: N
    /// fresh devices every wave.
    pub pool: Option<usize>,
}

/// One RSS sample of the soak.
struct Sample {
    at: Duration,
    rss: u64,
    gateways_rss: Vec<u64>,
    onboarded: u64,
    remaps: u64,
    waves: u64,
}

/// One finished wave of the soak.
struct Wave {
    at: Duration,
    connected: u64,
    failed: u64,
    remaps: u64,
    moves: u64,
    e2e_p50_ms: f64,
    /// The platform's RSS once the wave's devices are gone.
    rss: u64,
}

/// Counters the soak's tasks share.
#[derive(Default)]
struct SoakCounts {
    onboarded: AtomicU64,
    remaps: AtomicU64,
    remap_errors: AtomicU64,
    waves: AtomicU64,
}

/// `soak`: the platform with gw-1 and gw-2 as processes and an AP, for
/// `duration`: waves of N fresh devices (enrolled, onboarded, held while
/// the registry remaps them between gw-1 and gw-2, then stopped), with
/// the platform broker's RSS sampled throughout, to tell flat memory from
/// growth.
pub async fn soak(setup: &Setup, o: &SoakOptions, seed: u64) -> Result<Outcome> {
    if o.n == 0 || o.n > 2000 {
        bail!("soak: N must be 1 to 2000 devices per wave (got {})", o.n);
    }
    if o.pool.is_some_and(|pool| pool < o.n) {
        bail!("soak: --pool must hold at least the N devices of a wave");
    }
    let mut p = Platform::start(setup, &[], true)?;
    p.spawn_gateway("gw-1")?;
    p.spawn_gateway("gw-2")?;
    p.wait_alive("gw-1").await?;
    p.wait_alive("gw-2").await?;
    let floor = rtt(&p, 1000).await?;
    let counts = Arc::new(SoakCounts::default());
    let t0 = Instant::now();
    let done = CancellationToken::new();
    let _done = done.clone().drop_guard();

    let sampler = {
        let pid = p.broker.pid();
        let gw_pids: Vec<u32> = p.gateways.iter().map(harness::Proc::pid).collect();
        let counts = counts.clone();
        let done = done.clone();
        let every = o.sample_every;
        tokio::spawn(async move {
            let mut samples = Vec::new();
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            println!(
                "-- soak: platform broker RSS every {every:?} (gw-1 / gw-2 RSS MiB in brackets)"
            );
            println!(
                "   {:>8} {:>9} {:>14} {:>9} {:>6}",
                "elapsed", "RSS MiB", "onboarded", "remaps", "waves"
            );
            loop {
                tokio::select! {
                    _ = done.cancelled() => break,
                    _ = tick.tick() => {}
                }
                let s = Sample {
                    at: t0.elapsed(),
                    rss: harness::rss_bytes(pid).unwrap_or(0),
                    gateways_rss: gw_pids
                        .iter()
                        .map(|&g| harness::rss_bytes(g).unwrap_or(0))
                        .collect(),
                    onboarded: counts.onboarded.load(Ordering::Relaxed),
                    remaps: counts.remaps.load(Ordering::Relaxed),
                    waves: counts.waves.load(Ordering::Relaxed),
                };
                println!("{}", sample_row(&s));
                samples.push(s);
            }
            samples
        })
    };

    // The devices of the wave now connected; the remapper moves them.
    let connected: Arc<Mutex<Vec<String>>> = Arc::default();
    let remapper = {
        let client = p.registry().await?;
        let connected = connected.clone();
        let counts = counts.clone();
        let done = done.clone();
        let period = Duration::from_secs_f64(1.0 / o.remap_rate.max(0.01));
        let enabled = o.remap_rate > 0.0;
        tokio::spawn(async move {
            let mut rng = fastrand::Rng::with_seed(seed);
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = done.cancelled() => break,
                    _ = tick.tick(), if enabled => {}
                }
                let device = {
                    let devices = connected.lock().unwrap_or_else(|e| e.into_inner());
                    if devices.is_empty() {
                        continue;
                    }
                    devices[rng.usize(..devices.len())].clone()
                };
                match remap_to_other(&client, &device).await {
                    Ok(true) => counts.remaps.fetch_add(1, Ordering::Relaxed),
                    Ok(false) | Err(_) => counts.remap_errors.fetch_add(1, Ordering::Relaxed),
                };
            }
            client.close().await;
        })
    };

    let pool = match o.pool {
        Some(size) => tokio::task::block_in_place(|| p.enroll(size, seed))?,
        None => Vec::new(),
    };
    let mut waves = Vec::new();
    let mut failures = Vec::new();
    let mut wave_no = 0u64;
    while t0.elapsed() < o.duration {
        wave_no += 1;
        let devices = if pool.is_empty() {
            // A fresh, distinct fleet every wave.
            tokio::task::block_in_place(|| {
                p.enroll(o.n, seed.wrapping_mul(1_000_003).wrapping_add(wave_no))
            })?
        } else {
            // The next N of the pool, wrapping around.
            let from = (wave_no as usize - 1) * o.n;
            (from..from + o.n)
                .map(|i| pool[i % pool.len()].clone())
                .collect()
        };
        let ids: Vec<String> = devices.iter().map(|d| d.uuid.clone()).collect();
        let remaps_before = counts.remaps.load(Ordering::Relaxed);
        let stop = CancellationToken::new();
        let stats = FleetStats::new(o.n);
        let task = tokio::spawn(fleet::run(
            p.fleet_config(devices, 256)?,
            stats.clone(),
            stop.clone(),
        ));
        if !stats
            .wait_until(Duration::from_secs(120), |s| s.settled())
            .await
        {
            failures.push(format!(
                "wave {wave_no} did not settle in 120 s: {:?}",
                stats.snapshot()
            ));
        }
        *connected.lock().unwrap_or_else(|e| e.into_inner()) = ids;
        tokio::time::sleep(o.hold).await;
        connected.lock().unwrap_or_else(|e| e.into_inner()).clear();
        stop.cancel();
        let report = task.await?;
        // Let the devices' disconnects reach the broker and the registry.
        tokio::time::sleep(Duration::from_secs(1)).await;
        counts
            .onboarded
            .fetch_add(report.connected, Ordering::Relaxed);
        counts.waves.fetch_add(1, Ordering::Relaxed);
        let wave = Wave {
            at: t0.elapsed(),
            connected: report.connected,
            failed: report.failed,
            remaps: counts.remaps.load(Ordering::Relaxed) - remaps_before,
            moves: report.moves,
            e2e_p50_ms: lat(&report, Phase::EndToEnd).map_or(0.0, |l| l.p50_ms),
            rss: p.broker.rss_bytes().unwrap_or(0),
        };
        if report.failed > 0 {
            failures.push(format!(
                "wave {wave_no}: {} failed {:?}",
                report.failed, report.errors
            ));
        }
        waves.push(wave);
    }
    let elapsed = t0.elapsed();
    done.cancel();
    let _ = remapper.await;
    let mut samples = sampler.await?;
    samples.push(Sample {
        at: elapsed,
        rss: p.broker.rss_bytes().unwrap_or(0),
        gateways_rss: p
            .gateways
            .iter()
            .map(|g| g.rss_bytes().unwrap_or(0))
            .collect(),
        onboarded: counts.onboarded.load(Ordering::Relaxed),
        remaps: counts.remaps.load(Ordering::Relaxed),
        waves: counts.waves.load(Ordering::Relaxed),
    });
    let floor_end = rtt(&p, 1000).await?;

    let mut table = vec![format!(
        "   RSS every {:?} (platform broker; gw-1 / gw-2 in brackets):",
        o.sample_every
    )];
    table.push(format!(
        "   {:>8} {:>9} {:>14} {:>9} {:>6}",
        "elapsed", "RSS MiB", "onboarded", "remaps", "waves"
    ));
    table.extend(samples.iter().map(sample_row));
    table.push("   per wave (RSS once the wave's devices are gone):".into());
    table.push(format!(
        "   {:>5} {:>8} {:>9} {:>7} {:>7} {:>7} {:>10} {:>9}",
        "wave", "at", "connected", "failed", "remaps", "moves", "e2e p50", "RSS MiB"
    ));
    for (i, w) in waves.iter().enumerate() {
        table.push(format!(
            "   {:>5} {:>7.0}s {:>9} {:>7} {:>7} {:>7} {:>8.1}ms {:>9.1}",
            i + 1,
            w.at.as_secs_f64(),
            w.connected,
            w.failed,
            w.remaps,
            w.moves,
            w.e2e_p50_ms,
            w.rss as f64 / MIB
        ));
    }
    table.extend(failures.iter().take(20).map(|f| format!("   ! {f}")));

    let first = waves.first().context("no wave ran")?;
    let last = waves.last().context("no wave ran")?;
    let per_wave = |from: usize| -> f64 {
        // Least squares of wave-end RSS over wave number, from wave `from`.
        let pts: Vec<(f64, f64)> = waves
            .iter()
            .enumerate()
            .skip(from)
            .map(|(i, w)| (i as f64, w.rss as f64))
            .collect();
        slope(&pts)
    };
    let total_devices = counts.onboarded.load(Ordering::Relaxed);
    let growth = last.rss as f64 - first.rss as f64;
    let later_waves = (waves.len() as f64 - 1.0).max(1.0);
    let enrolled = o.pool.unwrap_or(waves.len() * o.n);
    let figures = vec![
        ("waves".into(), waves.len() as f64),
        ("devices onboarded".into(), total_devices as f64),
        ("devices enrolled".into(), enrolled as f64),
        (
            "devices failed".into(),
            waves.iter().map(|w| w.failed).sum::<u64>() as f64,
        ),
        (
            "remaps".into(),
            counts.remaps.load(Ordering::Relaxed) as f64,
        ),
        (
            "remap requests refused or failed".into(),
            counts.remap_errors.load(Ordering::Relaxed) as f64,
        ),
        (
            "moves seen by devices".into(),
            waves.iter().map(|w| w.moves).sum::<u64>() as f64,
        ),
        (
            "platform RSS at start (after wave 1), MiB".into(),
            first.rss as f64 / MIB,
        ),
        (
            "platform RSS at end (after last wave), MiB".into(),
            last.rss as f64 / MIB,
        ),
        (
            "platform RSS peak sample, MiB".into(),
            samples.iter().map(|s| s.rss).max().unwrap_or(0) as f64 / MIB,
        ),
        (
            "growth per wave, (end - start) / (waves - 1), KiB".into(),
            growth / later_waves / 1024.0,
        ),
        (
            "growth per wave, least squares over all waves, KiB".into(),
            per_wave(0) / 1024.0,
        ),
        (
            "growth per wave, least squares over the second half, KiB".into(),
            per_wave(waves.len() / 2) / 1024.0,
        ),
        (
            "growth per device onboarded after wave 1, bytes".into(),
            growth / (total_devices.saturating_sub(first.connected).max(1)) as f64,
        ),
        ("first wave end-to-end p50 ms".into(), first.e2e_p50_ms),
        ("last wave end-to-end p50 ms".into(), last.e2e_p50_ms),
        ("rtt floor p50 ms at the end".into(), floor_end.p50_ms),
        ("soak ran, s".into(), elapsed.as_secs_f64()),
    ];
    Ok(Outcome {
        scenario: match o.pool {
            Some(size) => format!("soak-{}x{}-pool{size}", o.n, waves.len()),
            None => format!("soak-{}x{}", o.n, waves.len()),
        },
        mode: setup.mode,
        devices: total_devices as usize,
        rtt: floor,
        figures,
        ratios: vec![(
            "last wave end-to-end p50".into(),
            last.e2e_p50_ms / floor_end.p50_ms,
        )],
        fleet: None,
        table,
    })
}

fn sample_row(s: &Sample) -> String {
    let gws: Vec<String> = s
        .gateways_rss
        .iter()
        .map(|r| format!("{:.1}", *r as f64 / MIB))
        .collect();
    format!(
        "   {:>7.0}s {:>9.1} {:>14} {:>9} {:>6}   [{}]",
        s.at.as_secs_f64(),
        s.rss as f64 / MIB,
        s.onboarded,
        s.remaps,
        s.waves,
        gws.join(" / ")
    )
}

/// Remaps `device` to the gateway it is not assigned to; true if the
/// registry moved it.
async fn remap_to_other(client: &RegistryClient, device: &str) -> Result<bool> {
    let RegistryOk::Assignment(now) = client
        .request(RegistryOp::Show {
            device_id: device.to_owned(),
        })
        .await?
    else {
        bail!("show answered something else");
    };
    let to = if now.gateway_id == "gw-1" {
        "gw-2"
    } else {
        "gw-1"
    };
    match client
        .request(RegistryOp::Remap {
            device_id: device.to_owned(),
            gateway_id: to.to_owned(),
        })
        .await?
    {
        RegistryOk::Assignment(a) => Ok(a.changed),
        _ => bail!("remap answered something else"),
    }
}

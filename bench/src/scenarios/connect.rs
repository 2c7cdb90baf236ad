//! `connect`: what one connection costs the platform broker, handshake
//! included: N clients one after the other, each connecting (CONNECT,
//! CONNACK, SUBSCRIBE, SUBACK) and disconnecting, then each again with the
//! configuration it kept. Over TLS the first round is full handshakes (the
//! server signs with its certificate) and the second resumes with the
//! ticket each client kept; in plaintext both rounds are the same.

use anyhow::{Context, Result};
use bus::Bus;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

use super::platform::{Platform, Setup};
use super::report::{histogram, percentiles, Outcome};

/// One round: every client connects once, in turn; the platform's CPU-ms
/// per connection and the client's connect-to-ready latencies.
async fn round(
    p: &Platform,
    clients: &[(String, Option<bus::TlsConfig>)],
) -> Result<(f64, device_sim::report::Percentiles)> {
    let cpu = || p.broker.cpu_ms().context("no CPU time for the platform");
    let before = cpu()?;
    let mut h = histogram()?;
    for (client_id, tls) in clients {
        let stop = CancellationToken::new();
        let opts = p.admin_opts_as(client_id.clone())?.with_tls(tls.clone());
        let started = Instant::now();
        let (bus, _inbox) = Bus::connect(opts, vec![format!("bench/{client_id}")], stop.clone());
        bus.ready(Duration::from_secs(10)).await?;
        h.saturating_record(started.elapsed().as_micros().max(1) as u64);
        stop.cancel();
        bus.closed(Duration::from_secs(2)).await;
    }
    let per = (cpu()? - before) / clients.len().max(1) as f64;
    Ok((per, percentiles(&h)))
}

/// `connect N`: N connections, then N again by the same clients.
pub async fn connect(setup: &Setup, n: usize) -> Result<Outcome> {
    let p = Platform::start_with(setup, &[], false, true)?;
    let floor = super::rtt(&p, 1000).await?;
    let clients: Vec<_> = (0..n.max(1))
        .map(|i| {
            (
                format!("connect-{i}-{:08x}", fastrand::u32(..)),
                p.client_tls(),
            )
        })
        .collect();
    let (first_cpu, first) = round(&p, &clients).await?;
    let (again_cpu, again) = round(&p, &clients).await?;
    Ok(Outcome {
        mode: setup.mode,
        table: Vec::new(),
        scenario: format!("connect-{n}"),
        devices: n,
        figures: vec![
            (
                "first connect: platform CPU ms per connection".into(),
                first_cpu,
            ),
            ("first connect p50 ms".into(), first.p50_ms),
            ("first connect p99 ms".into(), first.p99_ms),
            (
                "reconnect (resumed over TLS): platform CPU ms per connection".into(),
                again_cpu,
            ),
            ("reconnect p50 ms".into(), again.p50_ms),
            ("reconnect p99 ms".into(), again.p99_ms),
            (
                "reconnect CPU over first connect CPU".into(),
                again_cpu / first_cpu.max(1e-9),
            ),
        ],
        ratios: vec![
            (
                "first connect p50".into(),
                first.p50_ms / floor.p50_ms.max(1e-9),
            ),
            (
                "reconnect p50".into(),
                again.p50_ms / floor.p50_ms.max(1e-9),
            ),
        ],
        rtt: floor,
        fleet: None,
    })
}

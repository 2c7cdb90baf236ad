//! `rtt`: the floor every other scenario is measured against.

use anyhow::{Context, Result};
use bus::Bus;
use device_sim::report::Percentiles;
use protocol::topics;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

use super::platform::{Platform, Setup};
use super::report::{histogram, percentiles, Outcome};

/// The floor: QoS 1 request/response round trips between two clients
/// through the platform broker, with no worker in the path. Both clients
/// log in as admin, the one role the ACL lets use any topic.
pub async fn rtt(p: &Platform, samples: usize) -> Result<Percentiles> {
    rtt_via(|name| p.admin_opts(name), samples).await
}

/// [`rtt`] through any broker, its clients' options from `opts` (given a
/// client name).
pub async fn rtt_via(
    opts: impl Fn(&str) -> Result<bus::BusOptions>,
    samples: usize,
) -> Result<Percentiles> {
    let stop = CancellationToken::new();
    let _stop = stop.clone().drop_guard();
    let tag = format!("{:08x}", fastrand::u32(..));
    let req_topic = topics::bench_request(&tag);
    let rep_topic = topics::bench_reply(&tag);
    let (responder, mut requests) = Bus::connect(
        opts("rtt-responder")?,
        vec![req_topic.clone()],
        stop.clone(),
    );
    let (requester, mut replies) = Bus::connect(
        opts("rtt-requester")?,
        vec![rep_topic.clone()],
        stop.clone(),
    );
    responder.ready(Duration::from_secs(10)).await?;
    requester.ready(Duration::from_secs(10)).await?;
    let echo = {
        let rep_topic = rep_topic.clone();
        tokio::spawn(async move {
            while let Some(msg) = requests.recv().await {
                if responder
                    .publish(rep_topic.clone(), msg.payload.to_vec())
                    .await
                    .is_err()
                {
                    break;
                }
            }
        })
    };
    let mut h = histogram()?;
    for i in 0..samples + samples / 10 {
        let t = Instant::now();
        requester
            .publish(req_topic.clone(), i.to_le_bytes().to_vec())
            .await?;
        tokio::time::timeout(Duration::from_secs(5), replies.recv())
            .await
            .context("no rtt reply within 5 s")?
            .context("rtt client closed")?;
        // The first tenth warms up connections and caches.
        if i >= samples / 10 {
            h.saturating_record(t.elapsed().as_micros().max(1) as u64);
        }
    }
    echo.abort();
    Ok(percentiles(&h))
}

/// `rtt`: the floor alone, on a platform broker with no workers.
pub async fn rtt_only(setup: &Setup, samples: usize) -> Result<Outcome> {
    let p = Platform::start_with(setup, &[], false, true)?;
    let floor = rtt(&p, samples).await?;
    Ok(Outcome {
        mode: setup.mode,
        table: Vec::new(),
        scenario: "rtt".into(),
        devices: 0,
        figures: vec![
            ("round trip p50 ms".into(), floor.p50_ms),
            ("round trip p99 ms".into(), floor.p99_ms),
            ("round trip max ms".into(), floor.max_ms),
        ],
        ratios: Vec::new(),
        rtt: floor,
        fleet: None,
    })
}

//! `topics-N`: a diagnosis of rumqttd's memory per device, on a
//! broker-only platform.

use anyhow::{Context, Result};
use bus::{Bus, BusOptions};
use device_sim::manifest;
use protocol::topics;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

use super::platform::{Platform, Setup};
use super::report::{Outcome, MIB};
use super::rtt::rtt;

/// One phase of [`topics`]: what each emulated device does.
#[derive(Clone, Copy)]
enum TopicsPhase {
    /// Connects with a new client id and disconnects.
    Connect,
    /// Also subscribes to its four `device/{uuid}/…` filters.
    Subscribe,
    /// Also receives three messages on them, as a device does.
    Receive,
    /// [`TopicsPhase::Receive`] again with the previous phase's ids and topics.
    Again,
    /// No client: one message on its own `device/{uuid}/presence`, which
    /// only a wildcard filter (`device/+/presence`, the registry's) matches.
    Wildcard,
}

/// A device's filters on the platform broker (device-sim's link), and the
/// sizes of what it receives there: a challenge, an access response, an
/// assignment (rough secure-mode sizes).
fn device_filters(uuid: &str) -> Vec<String> {
    vec![
        topics::access_response(uuid),
        topics::access_challenge(uuid),
        topics::device_confirm(uuid),
        topics::device_gateway(uuid),
    ]
}
/// A [`protocol::topics`] builder of one of a device's topics.
type DeviceTopic = fn(&str) -> String;
const DEVICE_MESSAGES: [(DeviceTopic, usize); 3] = [
    (topics::access_challenge, 200),
    (topics::access_response, 300),
    (topics::device_gateway, 600),
];

/// `topics-N`: what rumqttd keeps per distinct client id, topic filter,
/// message and topic, on a broker-only platform (no verifier, no registry,
/// no sled) with raw admin clients emulating N devices' use of the
/// platform broker, phase by phase: the broker's RSS growth per device.
pub async fn topics(setup: &Setup, n: usize, seed: u64) -> Result<Outcome> {
    let p = Platform::start_with(setup, &[], false, true)?;
    let floor = rtt(&p, 1000).await?;
    let stop = CancellationToken::new();
    let _stop = stop.clone().drop_guard();
    let (publisher, _) = Bus::connect(p.admin_opts("topics-pub")?, Vec::new(), stop.clone());
    publisher.ready(Duration::from_secs(10)).await?;
    let (watcher, mut presence) = Bus::connect(
        p.admin_opts("topics-presence")?,
        vec![topics::DEVICE_PRESENCE_ALL.into()],
        stop.clone(),
    );
    watcher.ready(Duration::from_secs(10)).await?;
    let seen = Arc::new(AtomicU64::new(0));
    {
        let seen = seen.clone();
        tokio::spawn(async move {
            while presence.recv().await.is_some() {
                seen.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    let tag = format!("{:08x}", fastrand::u32(..));
    let settle = || tokio::time::sleep(Duration::from_secs(2));
    settle().await;
    let rss = |p: &Platform| p.broker.rss_bytes().context("no RSS for the platform");
    let start = rss(&p)?;
    let mut before = start;
    let mut figures = Vec::new();
    let mut table = vec![format!(
        "   {:<62} {:>10} {:>12}",
        "phase (each of N emulated devices)", "RSS MiB", "bytes/device"
    )];
    let phases = [
        (TopicsPhase::Connect, "a new client id: connect, disconnect"),
        (
            TopicsPhase::Subscribe,
            "a new id + its 4 device/{uuid}/… filters",
        ),
        (
            TopicsPhase::Receive,
            "a new id + 4 filters + 3 messages received (1.1 KiB in all)",
        ),
        (
            TopicsPhase::Again,
            "the same ids, filters and messages again",
        ),
        (
            TopicsPhase::Wildcard,
            "1 message on a new topic under device/+/presence",
        ),
    ];
    let mut previous: Vec<manifest::Identity> = Vec::new();
    for (i, (phase, what)) in phases.iter().enumerate() {
        let devices = match phase {
            TopicsPhase::Again => previous.clone(),
            _ => manifest::generate(n, seed.wrapping_mul(31).wrapping_add(i as u64)),
        };
        // Again: the previous phase's client ids.
        let id_phase = match phase {
            TopicsPhase::Again => i.saturating_sub(1),
            _ => i,
        };
        let gate = Arc::new(tokio::sync::Semaphore::new(32));
        let mut tasks = tokio::task::JoinSet::new();
        let seen_before = seen.load(Ordering::Relaxed);
        for (k, d) in devices.iter().enumerate() {
            let permit = gate.clone().acquire_owned().await?;
            let uuid = d.uuid.clone();
            let publisher = publisher.clone();
            let phase = *phase;
            match phase {
                TopicsPhase::Wildcard => {
                    publisher
                        .publish(topics::device_presence(&uuid), vec![b'p'; 120])
                        .await?;
                    drop(permit);
                }
                _ => {
                    let opts = p.admin_opts_as(format!("emu-{id_phase}-{k}-{tag}"))?;
                    tasks.spawn(async move {
                        let r = emulate(opts, &publisher, &uuid, phase).await;
                        drop(permit);
                        r
                    });
                }
            }
        }
        while let Some(r) = tasks.join_next().await {
            r??;
        }
        if matches!(phase, TopicsPhase::Wildcard) {
            let all = seen_before + n as u64;
            let deadline = Instant::now() + Duration::from_secs(30);
            while seen.load(Ordering::Relaxed) < all && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        settle().await;
        let after = rss(&p)?;
        let per = (after as f64 - before as f64) / n as f64;
        table.push(format!(
            "   {:<62} {:>10.1} {:>12.0}",
            what,
            after as f64 / MIB,
            per
        ));
        figures.push((format!("{what}, bytes/device"), per));
        before = after;
        previous = devices;
    }
    figures.push(("platform RSS at start, MiB".into(), start as f64 / MIB));
    figures.push(("platform RSS at end, MiB".into(), before as f64 / MIB));
    Ok(Outcome {
        scenario: format!("topics-{n}"),
        mode: setup.mode,
        devices: n,
        rtt: floor,
        figures,
        ratios: Vec::new(),
        fleet: None,
        table,
    })
}

/// One emulated device of [`topics`]: connect as admin with its own
/// client id, subscribe, have `publisher` send it its messages, receive
/// them, disconnect.
async fn emulate(opts: BusOptions, publisher: &Bus, uuid: &str, phase: TopicsPhase) -> Result<()> {
    let filters = match phase {
        TopicsPhase::Connect | TopicsPhase::Wildcard => Vec::new(),
        _ => device_filters(uuid),
    };
    let stop = CancellationToken::new();
    let (bus, mut inbox) = Bus::connect(opts, filters, stop.clone());
    bus.ready(Duration::from_secs(10)).await?;
    if matches!(phase, TopicsPhase::Receive | TopicsPhase::Again) {
        for (topic, size) in DEVICE_MESSAGES {
            publisher.publish(topic(uuid), vec![b'm'; size]).await?;
        }
        for _ in DEVICE_MESSAGES {
            tokio::time::timeout(Duration::from_secs(10), inbox.recv())
                .await
                .context("an emulated device got no message within 10 s")?
                .context("closed")?;
        }
    }
    let mut state = bus.watch_state();
    stop.cancel();
    let _ = tokio::time::timeout(
        Duration::from_secs(5),
        state.wait_for(|s| *s == bus::LinkState::Closed),
    )
    .await;
    Ok(())
}

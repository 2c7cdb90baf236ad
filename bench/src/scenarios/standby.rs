//! The start that `drain` and `failover` share: a fleet on one gateway
//! and a second one alive and empty, ready to take it.

use anyhow::Result;
use device_sim::fleet::FleetStats;
use device_sim::report::{FleetReport, Percentiles};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

use super::platform::{fleet_on, Platform, Setup};
use super::rtt::rtt;

/// The start of `drain` and `failover`: gw-1 and gw-2 as their own
/// processes, all N devices on gw-1, gw-2 alive and empty, and the floor.
pub(crate) async fn fleet_on_gw1_with_gw2_standing_by(
    setup: &Setup,
    n: usize,
    seed: u64,
) -> Result<(
    Platform,
    CancellationToken,
    Arc<FleetStats>,
    tokio::task::JoinHandle<FleetReport>,
    Percentiles,
)> {
    let mut p = Platform::start(setup, &[], true)?;
    p.spawn_gateway("gw-1")?;
    p.wait_alive("gw-1").await?;
    let stop = CancellationToken::new();
    let (stats, task) = fleet_on(&p, n, seed, "gw-1", &stop).await?;
    p.spawn_gateway("gw-2")?;
    p.wait_alive("gw-2").await?;
    let floor = rtt(&p, 1000).await?;
    Ok((p, stop, stats, task, floor))
}

//! What the devices that never reached their gateway were doing: printed
//! by `drain` and `failover` when a run strands any, so that the run says
//! where they are stuck (waiting for the registry, refused, ended…).

use super::platform::Platform;
use device_sim::fleet::FleetStats;
use std::collections::BTreeMap;
use std::time::Duration;

/// How long a move may take before the run counts its stragglers as
/// stranded.
const MOVE_LIMIT: Duration = Duration::from_secs(120);
/// When a move is still running, what the devices not there yet are
/// doing is printed after this long.
const SLOW_MOVE: Duration = Duration::from_secs(10);

/// Waits until all `n` devices are on `gateway_id`, at most
/// [`MOVE_LIMIT`]; prints what the others are doing if it takes longer
/// than [`SLOW_MOVE`], and again, with the platform's log tails, if some
/// never get there. A stranded run is
/// reported, not fatal: its figures say how many, and the runs after it
/// still run.
pub async fn wait_all_on(p: &Platform, stats: &FleetStats, gateway_id: &str, n: u64) {
    let there = |s: &FleetStats| s.on_gateway(gateway_id) == n;
    if stats.wait_until(SLOW_MOVE, there).await {
        return;
    }
    println!(
        "slow: after {} s, {}",
        SLOW_MOVE.as_secs(),
        stranded(stats, gateway_id)
    );
    if stats.wait_until(MOVE_LIMIT - SLOW_MOVE, there).await {
        return;
    }
    println!(
        "STRANDED: only {} of {n} devices reached {gateway_id} within {} s: {:?}\n{}\n{}",
        stats.on_gateway(gateway_id),
        MOVE_LIMIT.as_secs(),
        stats.snapshot(),
        stranded(stats, gateway_id),
        p.tails()
    );
}

/// Examples shown per kind of wait.
const EXAMPLES: usize = 3;

/// A summary of the devices not on `gateway_id`: how many are doing each
/// kind of thing (numbers folded, so that "3 queries unanswered" and "4
/// queries unanswered" count together), with a few devices of each.
fn stranded(stats: &FleetStats, gateway_id: &str) -> String {
    let away = stats.not_on(gateway_id);
    let mut kinds: BTreeMap<String, (usize, Vec<String>)> = BTreeMap::new();
    for (device, doing) in &away {
        let kind: String = doing
            .split(' ')
            .map(|w| {
                if w.chars().any(|c| c.is_ascii_digit()) && !w.contains("gw-") {
                    "N"
                } else {
                    w
                }
            })
            .collect::<Vec<_>>()
            .join(" ");
        let entry = kinds.entry(kind).or_default();
        entry.0 += 1;
        if entry.1.len() < EXAMPLES {
            entry.1.push(format!("{device}: {doing}"));
        }
    }
    let mut out = format!(
        "{} devices not on {gateway_id}, by what they are doing:\n",
        away.len()
    );
    let mut sorted: Vec<_> = kinds.into_iter().collect();
    sorted.sort_by_key(|(_, (count, _))| std::cmp::Reverse(*count));
    for (kind, (count, examples)) in sorted {
        out.push_str(&format!("  {count:>6}  {kind}\n"));
        for e in examples {
            out.push_str(&format!("            e.g. {e}\n"));
        }
    }
    out
}

//! Allocation policies for devices with no (live) assignment.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Policy {
    /// Weighted rendezvous hashing: stable (a device keeps its gateway while
    /// the set of gateways is unchanged, and only the devices of a gateway
    /// that leaves move), spread in proportion to weight.
    #[default]
    Hashed,
    /// The gateway with the fewest assigned devices per unit of weight.
    LeastLoaded,
    /// No automatic allocation: an admin assigns every device.
    Static,
}

/// A gateway that may receive devices.
#[derive(Debug, Clone)]
pub struct Candidate<'a> {
    pub gateway_id: &'a str,
    pub weight: u32,
    pub assigned: u64,
}

impl Policy {
    pub fn choose<'a>(self, device_id: &str, candidates: &[Candidate<'a>]) -> Option<&'a str> {
        let live = candidates.iter().filter(|c| c.weight > 0);
        match self {
            Policy::Static => None,
            Policy::Hashed => live
                .map(|c| {
                    (
                        rendezvous_score(device_id, c.gateway_id, c.weight),
                        c.gateway_id,
                    )
                })
                .max_by(|a, b| a.0.total_cmp(&b.0).then_with(|| b.1.cmp(a.1)))
                .map(|(_, id)| id),
            Policy::LeastLoaded => live
                .map(|c| (c.assigned as f64 / f64::from(c.weight), c.gateway_id))
                .min_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.cmp(b.1)))
                .map(|(_, id)| id),
        }
    }
}

/// Weighted rendezvous score: `-weight / ln(u)` with `u` in (0, 1) drawn
/// from a hash of (device, gateway). The highest score wins. xxh3's output
/// is fixed by its specification, unlike std's hasher, so allocations stay
/// the same across builds.
fn rendezvous_score(device_id: &str, gateway_id: &str, weight: u32) -> f64 {
    let mut key = Vec::with_capacity(device_id.len() + gateway_id.len() + 1);
    key.extend_from_slice(gateway_id.as_bytes());
    key.push(0);
    key.extend_from_slice(device_id.as_bytes());
    let h = xxhash_rust::xxh3::xxh3_64(&key);
    let u = ((h >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    -f64::from(weight) / u.ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gws(weights: &[(&'static str, u32)]) -> Vec<Candidate<'static>> {
        weights
            .iter()
            .map(|(id, w)| Candidate {
                gateway_id: id,
                weight: *w,
                assigned: 0,
            })
            .collect()
    }

    #[test]
    fn hashed_is_stable_and_weighted() {
        let c = gws(&[("gw-1", 1), ("gw-2", 1), ("gw-3", 2)]);
        let mut counts = std::collections::HashMap::new();
        for n in 0..8000 {
            let d = format!("device-{n}");
            let first = Policy::Hashed.choose(&d, &c).unwrap();
            assert_eq!(Policy::Hashed.choose(&d, &c).unwrap(), first);
            *counts.entry(first).or_insert(0) += 1;
        }
        // Expect 2000 / 2000 / 4000, within a few percent.
        assert!((1800..2200).contains(&counts["gw-1"]), "{counts:?}");
        assert!((1800..2200).contains(&counts["gw-2"]), "{counts:?}");
        assert!((3700..4300).contains(&counts["gw-3"]), "{counts:?}");
    }

    #[test]
    fn hashed_moves_only_the_devices_of_a_gateway_that_leaves() {
        let all = gws(&[("gw-1", 1), ("gw-2", 1), ("gw-3", 1)]);
        let without_3 = gws(&[("gw-1", 1), ("gw-2", 1)]);
        for n in 0..2000 {
            let d = format!("d{n}");
            let before = Policy::Hashed.choose(&d, &all).unwrap();
            let after = Policy::Hashed.choose(&d, &without_3).unwrap();
            if before != "gw-3" {
                assert_eq!(before, after, "{d} moved although its gateway stayed");
            }
        }
    }

    #[test]
    fn least_loaded_and_static() {
        let mut c = gws(&[("gw-1", 1), ("gw-2", 2)]);
        c[0].assigned = 10;
        c[1].assigned = 15;
        assert_eq!(Policy::LeastLoaded.choose("d", &c), Some("gw-2"));
        c[1].assigned = 30;
        assert_eq!(Policy::LeastLoaded.choose("d", &c), Some("gw-1"));
        assert_eq!(Policy::Static.choose("d", &c), None);
        assert_eq!(Policy::Hashed.choose("d", &[]), None);
    }
}

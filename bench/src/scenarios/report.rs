//! What a scenario measures and prints: latency histograms, and the
//! [`Outcome`] every scenario ends with.

use anyhow::Result;
use device_sim::fleet::Phase;
use device_sim::report::{FleetReport, Percentiles};
use hdrhistogram::Histogram;
use serde::Serialize;

/// The platform's security mode and transport for a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// The default: secure mode over TLS. Every listener serves MQTT over
    /// TLS only, every client trusts the platform's CA (DATA_DIR/ca.pem,
    /// `--cafile`); every client logs in (admin, ap and gateway with the
    /// platform's bootstrap tokens or their own credentials, devices as
    /// themselves), the topic ACL, SPAKE2 onboarding, signed assignments.
    #[default]
    SecureTls,
    /// Secure mode in plaintext (`[tls] enabled = false`, clients with
    /// `--plaintext`): the same logins, ACL and signatures, no TLS. For
    /// comparison: what TLS costs.
    SecurePlaintext,
    /// `[security] mode = "walkthrough"`, clients with `--walkthrough`:
    /// plaintext, no logins, no signatures. For comparison only.
    Walkthrough,
}

impl Mode {
    /// The mode as reports name it.
    pub fn name(self) -> &'static str {
        match self {
            Mode::SecureTls => "secure+TLS",
            Mode::SecurePlaintext => "secure, plaintext",
            Mode::Walkthrough => "walkthrough",
        }
    }

    /// Secure mode (logins, ACL, signatures), over TLS or not.
    pub fn secure(self) -> bool {
        self != Mode::Walkthrough
    }

    /// MQTT over TLS on every listener.
    pub fn tls(self) -> bool {
        self == Mode::SecureTls
    }
}

/// Microseconds, 1 µs to 10 min, 3 significant digits.
pub(crate) fn histogram() -> Result<Histogram<u64>> {
    Ok(Histogram::new_with_bounds(1, 600_000_000, 3)?)
}

pub(crate) fn percentiles(h: &Histogram<u64>) -> Percentiles {
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    Percentiles {
        count: h.len(),
        p50_ms: ms(0.5),
        p90_ms: ms(0.9),
        p99_ms: ms(0.99),
        max_ms: h.max() as f64 / 1000.0,
        curve: Vec::new(),
    }
}

/// What every scenario prints at the end, and writes with --json.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub scenario: String,
    pub mode: Mode,
    pub devices: usize,
    pub rtt: Percentiles,
    /// The scenario's headline figures, by name.
    pub figures: Vec<(String, f64)>,
    /// The flow over the floor, same run.
    pub ratios: Vec<(String, f64)>,
    pub fleet: Option<FleetReport>,
    /// Lines printed before the figures (the soak's tables).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub table: Vec<String>,
}

impl Outcome {
    pub fn print(&self) {
        println!(
            "== {} ({} devices, {} mode)",
            self.scenario,
            self.devices,
            self.mode.name()
        );
        for line in &self.table {
            println!("{line}");
        }
        println!(
            "   rtt floor: p50 {:.3} ms, p99 {:.3} ms ({} samples)",
            self.rtt.p50_ms, self.rtt.p99_ms, self.rtt.count
        );
        for (name, v) in &self.figures {
            println!("   {name}: {v:.3}");
        }
        for (name, v) in &self.ratios {
            if name.contains(" over ") {
                println!("   ratio {name}: {v:.2}x");
            } else {
                println!("   ratio {name}: {v:.1}x the rtt floor");
            }
        }
    }
}

pub(crate) fn lat(report: &FleetReport, phase: Phase) -> Option<&Percentiles> {
    report.latency.get(phase.name())
}

pub(crate) const MIB: f64 = 1048576.0;

/// The least-squares slope of `pts` (0 with fewer than two).
pub(crate) fn slope(pts: &[(f64, f64)]) -> f64 {
    let n = pts.len() as f64;
    if pts.len() < 2 {
        return 0.0;
    }
    let mx = pts.iter().map(|p| p.0).sum::<f64>() / n;
    let my = pts.iter().map(|p| p.1).sum::<f64>() / n;
    let sxy: f64 = pts.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let sxx: f64 = pts.iter().map(|p| (p.0 - mx).powi(2)).sum();
    if sxx == 0.0 {
        0.0
    } else {
        sxy / sxx
    }
}

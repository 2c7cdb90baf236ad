//! What a fleet run measured: counts, throughput, latency percentiles per
//! phase, peak RSS; as text, JSON and an SVG plot.

use crate::stats::{FleetStats, Phase};
use plotters::prelude::*;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

/// Percentiles of one phase, in milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Percentiles {
    pub count: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// (percentile, milliseconds) from 0 to 100, for plots.
    #[serde(skip)]
    pub curve: Vec<(f64, f64)>,
}

/// The final report of a fleet run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FleetReport {
    pub devices: u64,
    /// Devices by outcome: joined Wi-Fi, got a gateway, connected to it,
    /// failed before connecting.
    pub joined: u64,
    pub assigned: u64,
    pub connected: u64,
    pub failed: u64,
    /// Failures by error code.
    pub errors: BTreeMap<String, u64>,
    /// After their first connection: moves to another gateway, redirect
    /// notices followed, connections lost, connections refused.
    pub moves: u64,
    pub redirects: u64,
    pub losses: u64,
    pub refusals: u64,
    /// From the first power-on to the last device's first connection.
    pub elapsed_s: f64,
    /// Devices connected per second over `elapsed_s`.
    pub throughput_per_s: f64,
    /// Per phase: access, query, connect, end_to_end, move.
    pub latency: BTreeMap<String, Percentiles>,
    /// Devices on each gateway when the report was taken.
    pub on_gateway: BTreeMap<String, u64>,
    /// Peak resident memory of this process (VmHWM), if known.
    pub peak_rss_bytes: Option<u64>,
    /// Seconds since the start at which each device first connected.
    #[serde(skip)]
    pub completions: Vec<f64>,
}

impl FleetReport {
    pub fn from_stats(stats: &FleetStats) -> FleetReport {
        let p = stats.snapshot();
        let book = stats.book();
        let latency = book
            .latency
            .iter()
            .filter(|(_, h)| !h.is_empty())
            .map(|(phase, h)| {
                let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
                let curve = (0..=200)
                    .map(|i| {
                        let q = 1.0 - 0.5f64.powf(f64::from(i) / 20.0);
                        (q * 100.0, ms(q))
                    })
                    .collect();
                let pct = Percentiles {
                    count: h.len(),
                    p50_ms: ms(0.50),
                    p90_ms: ms(0.90),
                    p99_ms: ms(0.99),
                    max_ms: h.max() as f64 / 1000.0,
                    curve,
                };
                (phase.name().to_owned(), pct)
            })
            .collect();
        let mut completions = book.completions.clone();
        completions.sort_by(f64::total_cmp);
        let elapsed_s = completions.last().copied().unwrap_or(0.0);
        FleetReport {
            devices: p.total,
            joined: p.joined,
            assigned: p.assigned,
            connected: p.connected,
            failed: p.failed,
            errors: book.errors.clone(),
            moves: p.moves,
            redirects: p.redirects,
            losses: p.losses,
            refusals: p.refusals,
            elapsed_s,
            throughput_per_s: if elapsed_s > 0.0 {
                p.connected as f64 / elapsed_s
            } else {
                0.0
            },
            latency,
            on_gateway: book
                .on_gateway
                .iter()
                .filter(|(_, n)| **n > 0)
                .map(|(g, n)| (g.clone(), *n))
                .collect(),
            peak_rss_bytes: peak_rss_bytes(),
            completions,
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// Draws the latency distribution of each phase and the timeline of
    /// first connections.
    pub fn plot_svg(&self, path: &Path) -> Result<(), PlotError> {
        let root = SVGBackend::new(path, (1000, 900)).into_drawing_area();
        root.fill(&WHITE).map_err(PlotError::new)?;
        let (top, bottom) = root.split_vertically(450);
        self.plot_latency(&top)?;
        self.plot_timeline(&bottom)?;
        root.present().map_err(PlotError::new)
    }

    fn plot_latency<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, plotters::coord::Shift>,
    ) -> Result<(), PlotError> {
        let max_ms = self
            .latency
            .values()
            .map(|p| p.max_ms)
            .fold(1.0f64, f64::max);
        let mut chart = ChartBuilder::on(area)
            .caption(
                format!("Latency by phase ({} devices)", self.devices),
                ("sans-serif", 22),
            )
            .margin(15)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0f64..100.0f64, (0.01f64..max_ms * 1.2).log_scale())
            .map_err(PlotError::new)?;
        chart
            .configure_mesh()
            .x_desc("percentile")
            .y_desc("milliseconds")
            .draw()
            .map_err(PlotError::new)?;
        for (i, phase) in Phase::ALL.iter().enumerate() {
            let Some(p) = self.latency.get(phase.name()) else {
                continue;
            };
            let color = Palette99::pick(i).to_rgba();
            chart
                .draw_series(LineSeries::new(
                    p.curve.iter().map(|(q, ms)| (*q, ms.max(0.01))),
                    color.stroke_width(2),
                ))
                .map_err(PlotError::new)?
                .label(format!(
                    "{} p50 {:.2} p99 {:.2} ms",
                    phase.name(),
                    p.p50_ms,
                    p.p99_ms
                ))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(PlotError::new)
    }

    fn plot_timeline<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, plotters::coord::Shift>,
    ) -> Result<(), PlotError> {
        let end = self.completions.last().copied().unwrap_or(1.0).max(0.001);
        let mut chart = ChartBuilder::on(area)
            .caption(
                format!(
                    "Devices connected over time ({:.0}/s)",
                    self.throughput_per_s
                ),
                ("sans-serif", 22),
            )
            .margin(15)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0f64..end * 1.05, 0u64..self.devices.max(1))
            .map_err(PlotError::new)?;
        chart
            .configure_mesh()
            .x_desc("seconds since the first power-on")
            .y_desc("devices connected")
            .draw()
            .map_err(PlotError::new)?;
        let points = self
            .completions
            .iter()
            .enumerate()
            .map(|(i, t)| (*t, i as u64 + 1));
        chart
            .draw_series(LineSeries::new(
                std::iter::once((0.0, 0)).chain(points),
                BLUE.stroke_width(2),
            ))
            .map_err(PlotError::new)?;
        Ok(())
    }
}

/// A plot could not be drawn or written.
#[derive(Debug, thiserror::Error)]
#[error("cannot draw the plot: {0}")]
pub struct PlotError(String);

impl PlotError {
    fn new(e: impl fmt::Display) -> Self {
        PlotError(e.to_string())
    }
}

impl fmt::Display for FleetReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "fleet report: {} devices", self.devices)?;
        writeln!(
            f,
            "  joined {}  assigned {}  connected {}  failed {}",
            self.joined, self.assigned, self.connected, self.failed
        )?;
        for (code, n) in &self.errors {
            writeln!(f, "    failed with {code}: {n}")?;
        }
        if self.moves + self.redirects + self.losses + self.refusals > 0 {
            writeln!(
                f,
                "  afterwards: moves {}  redirects {}  losses {}  refusals {}",
                self.moves, self.redirects, self.losses, self.refusals
            )?;
        }
        writeln!(
            f,
            "  throughput {:.0} devices/s ({} connected in {:.3} s)",
            self.throughput_per_s, self.connected, self.elapsed_s
        )?;
        writeln!(
            f,
            "  latency (ms)      count      p50      p90      p99      max"
        )?;
        for phase in Phase::ALL {
            if let Some(p) = self.latency.get(phase.name()) {
                writeln!(
                    f,
                    "    {:<12} {:>9} {:>8.2} {:>8.2} {:>8.2} {:>8.2}",
                    phase.name(),
                    p.count,
                    p.p50_ms,
                    p.p90_ms,
                    p.p99_ms,
                    p.max_ms
                )?;
            }
        }
        if !self.on_gateway.is_empty() {
            let placement: Vec<String> = self
                .on_gateway
                .iter()
                .map(|(g, n)| format!("{g} {n}"))
                .collect();
            writeln!(f, "  on gateways: {}", placement.join(", "))?;
        }
        match self.peak_rss_bytes {
            Some(b) => writeln!(f, "  peak RSS {:.1} MiB", b as f64 / (1024.0 * 1024.0)),
            None => writeln!(f, "  peak RSS unknown"),
        }
    }
}

/// Peak resident set size of this process, from /proc (Linux).
pub fn peak_rss_bytes() -> Option<u64> {
    proc_status_kib("self", "VmHWM:").map(|k| k * 1024)
}

/// A `kB` field (e.g. `VmRSS:`) of /proc/{pid}/status; `pid` may be "self".
pub fn proc_status_kib(pid: &str, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

//! CPU time per process over a scenario's measured part, so that users can
//! size hardware: the platform, each gateway run as its own process, the
//! AP, and this process, which runs the simulated fleet.

use super::platform::Platform;

/// CPU milliseconds of every process, at one moment.
pub(crate) struct CpuMeter {
    at_start: Vec<(String, Option<f64>)>,
}

/// The processes a platform has, and this one, by name.
fn sample(p: &Platform) -> Vec<(String, Option<f64>)> {
    let mut all = vec![("platform".to_owned(), p.broker.cpu_ms())];
    for gw in &p.gateways {
        all.push((gw.name().to_owned(), gw.cpu_ms()));
    }
    if let Some(ap) = &p.ap {
        all.push(("AP".to_owned(), ap.cpu_ms()));
    }
    all.push(("fleet".to_owned(), harness::cpu_ms(std::process::id())));
    all
}

impl CpuMeter {
    pub(crate) fn start(p: &Platform) -> Self {
        CpuMeter {
            at_start: sample(p),
        }
    }

    /// CPU seconds of each process since [`CpuMeter::start`], and CPU ms
    /// per device for `per_device` devices. A process that started since
    /// counts from zero; one that ended is left out.
    pub(crate) fn figures(&self, p: &Platform, per_device: usize) -> Vec<(String, f64)> {
        let mut figures = Vec::new();
        for (name, now) in sample(p) {
            let Some(now) = now else { continue };
            let before = self
                .at_start
                .iter()
                .find(|(n, _)| *n == name)
                .and_then(|(_, ms)| *ms)
                .unwrap_or(0.0);
            let used = now - before;
            figures.push((format!("{name} CPU s"), used / 1000.0));
            figures.push((
                format!("{name} CPU ms/device"),
                used / per_device.max(1) as f64,
            ));
        }
        figures
    }
}

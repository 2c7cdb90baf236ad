//! Helpers for tests that run the `broker` binary as a process.

#![allow(dead_code)]

use std::path::Path;
use std::time::Duration;

pub use harness::Proc;

pub const BROKER: &str = env!("CARGO_BIN_EXE_broker");

pub fn free_port() -> u16 {
    harness::free_port().unwrap()
}

/// Spawns `broker` with `args`, its output in `dir/{name}.log`, and
/// returns once it logs a line containing `ready`.
pub fn spawn_broker(dir: &Path, name: &str, args: &[&str], ready: &str) -> Proc {
    let mut child = harness::Spawn::new(BROKER)
        .args(args)
        .env("RUST_LOG", "info,rumqttd=off")
        .env("NO_COLOR", "1")
        .start(dir, name)
        .unwrap();
    child
        .wait_for(ready, Duration::from_secs(20))
        .expect("the broker did not start");
    child
}

/// A config on free ports: the platform on `port`; the metrics endpoint
/// and two gateways on port 0, so parallel tests never share a port.
pub fn platform_toml(port: u16) -> String {
    format!(
        "[platform]\nlisten = \"127.0.0.1:{port}\"\n\
         [metrics]\nlisten = \"127.0.0.1:0\"\n\
         [[gateways]]\nid = \"gw-1\"\nlisten = \"127.0.0.1:0\"\n\
         [[gateways]]\nid = \"gw-2\"\nlisten = \"127.0.0.1:0\"\n\
         [security]\nmode = \"walkthrough\"\n"
    )
}

/// The platform on `port` over `data_dir`, ready to serve; its log is
/// `data_dir/platform-{port}.log`, one per start.
pub fn spawn_platform(data_dir: &Path, port: u16) -> Proc {
    let config = data_dir.join("test.toml");
    std::fs::write(&config, platform_toml(port)).unwrap();
    spawn_broker(
        data_dir,
        &format!("platform-{port}"),
        &[
            "--config",
            config.to_str().unwrap(),
            "--data-dir",
            data_dir.to_str().unwrap(),
        ],
        "platform ready",
    )
}

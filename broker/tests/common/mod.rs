//! Helpers for tests that run the `broker` binary as a process.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub const BROKER: &str = env!("CARGO_BIN_EXE_broker");

/// A child process that is killed when dropped, so a failing assertion
/// does not leave a broker running.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Spawns `broker` with `args` and returns once it prints a line
/// containing `ready`.
pub fn spawn_broker(args: &[&str], ready: &str) -> Proc {
    let mut child = Command::new(BROKER)
        .args(args)
        .env("RUST_LOG", "info,rumqttd=off")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let ready = ready.to_owned();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if line.contains(&ready) {
                let _ = tx.send(());
            }
        }
    });
    let child = Proc(child);
    rx.recv_timeout(Duration::from_secs(20))
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

/// The platform on `port` over `data_dir`, ready to serve.
pub fn spawn_platform(data_dir: &Path, port: u16) -> Proc {
    let config = data_dir.join("test.toml");
    std::fs::write(&config, platform_toml(port)).unwrap();
    spawn_broker(
        &[
            "--config",
            config.to_str().unwrap(),
            "--data-dir",
            data_dir.to_str().unwrap(),
        ],
        "platform ready",
    )
}

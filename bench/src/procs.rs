//! The platform's processes, as a benchmark runs them: release binaries
//! next to this one, logs in a scratch directory, killed on drop.

use anyhow::{bail, Context, Result};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A child process, killed (SIGKILL) when dropped.
pub struct Proc {
    child: Child,
    pub name: String,
    pub log: PathBuf,
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, as a crash.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The last lines of the log, for errors.
    pub fn tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(10)..].join("\n")
    }

    /// Resident memory now, from /proc.
    pub fn rss_bytes(&self) -> Option<u64> {
        rss_bytes_of(self.pid())
    }

    /// Waits until the log contains `line`.
    pub fn wait_for(&mut self, line: &str, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if std::fs::read_to_string(&self.log).is_ok_and(|l| l.contains(line)) {
                return Ok(());
            }
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "{} exited ({status}) before {line:?}:\n{}",
                    self.name,
                    self.tail()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "{} did not log {line:?} within {timeout:?}:\n{}",
                    self.name,
                    self.tail()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Resident memory of process `pid` now, from /proc.
pub fn rss_bytes_of(pid: u32) -> Option<u64> {
    device_sim::report::proc_status_kib(&pid.to_string(), "VmRSS:").map(|k| k * 1024)
}

/// Where the platform's binaries are: next to this one (target/release).
pub fn bin(name: &str) -> Result<PathBuf> {
    let me = std::env::current_exe()?;
    let dir = me.parent().context("no directory for this binary")?;
    let path = dir.join(name);
    if !path.exists() {
        bail!(
            "{} not found; build it first: cargo build --release --workspace --bins",
            path.display()
        );
    }
    Ok(path)
}

pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Starts `program args…` with its output in `dir/name.log`.
pub fn spawn<S: AsRef<OsStr>>(dir: &Path, name: &str, program: &str, args: &[S]) -> Result<Proc> {
    let log = dir.join(format!("{name}.log"));
    let out = std::fs::File::create(&log)?;
    let err = out.try_clone()?;
    let child = Command::new(bin(program)?)
        .args(args)
        .env(
            "RUST_LOG",
            std::env::var("BENCH_LOG")
                .unwrap_or_else(|_| "warn,broker=info,ap_sim=info,rumqttd=off".into()),
        )
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .with_context(|| format!("cannot start {program}"))?;
    Ok(Proc {
        child,
        name: name.to_owned(),
        log,
    })
}

/// Runs `program args…` to completion; its output on failure.
pub fn run<S: AsRef<OsStr>>(program: &str, args: &[S]) -> Result<String> {
    let out = Command::new(bin(program)?).args(args).output()?;
    if !out.status.success() {
        let shown: Vec<_> = args.iter().map(|a| a.as_ref().to_string_lossy()).collect();
        bail!(
            "{program} {} failed ({}): {}{}",
            shown.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

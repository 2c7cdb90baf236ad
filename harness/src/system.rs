//! Small things a caller needs around its processes: a port to give one,
//! its memory, and running a command to completion.

use crate::Error;
use std::ffi::OsStr;
use std::path::Path;
use std::process::{Command, Stdio};

/// A TCP port on 127.0.0.1 that was free a moment ago, for a child to
/// listen on (and, after a restart, listen on again). It is drawn from
/// below the kernel's ephemeral range, so that none of the thousands of
/// outgoing connections a test makes meanwhile can be handed it as its
/// local port: a port from `bind(0)` is an ephemeral one, and a fleet's
/// clients took it before the child could listen. The listener is closed
/// before returning, so another process drawing the same way may still
/// take it first; the draw from a wide range makes that rare.
pub fn free_port() -> Result<u16, Error> {
    let first_ephemeral = ephemeral_start().unwrap_or(32_768);
    let (low, high) = (10_000u16, first_ephemeral.saturating_sub(1));
    if high > low {
        for _ in 0..200 {
            let port = fastrand::u16(low..=high);
            if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
                return Ok(port);
            }
        }
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(Error::Port)?;
    Ok(listener.local_addr().map_err(Error::Port)?.port())
}

/// The first port of the kernel's ephemeral range, on Linux.
fn ephemeral_start() -> Option<u16> {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Resident memory of process `pid` now (`VmRSS` in /proc/{pid}/status),
/// or `None` if it is gone or this is not Linux.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// CPU time process `pid` has used so far, user and system, in
/// milliseconds (`utime` + `stime` in /proc/{pid}/stat), or `None` if it
/// is gone or this is not Linux. The kernel counts in USER_HZ ticks,
/// which its ABI fixes at 100 a second.
pub fn cpu_ms(pid: u32) -> Option<f64> {
    const USER_HZ: f64 = 100.0;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces: count from after it.
    let mut fields = stat.get(stat.rfind(')')? + 1..)?.split_whitespace();
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 * 1000.0 / USER_HZ)
}

/// CPU time of process `pid` and of its children now running, in
/// milliseconds, plus what its reaped children used (`cutime` +
/// `cstime`): a server that forks a process per connection, such as
/// PostgreSQL, counted whole.
pub fn cpu_ms_tree(pid: u32) -> Option<f64> {
    const USER_HZ: f64 = 100.0;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut fields = stat.get(stat.rfind(')')? + 1..)?.split_whitespace();
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    let cutime: u64 = fields.next()?.parse().ok()?;
    let cstime: u64 = fields.next()?.parse().ok()?;
    let mut total = (utime + stime + cutime + cstime) as f64 * 1000.0 / USER_HZ;
    let children = std::fs::read_dir("/proc").ok()?.filter_map(|e| {
        let child: u32 = e.ok()?.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{child}/stat")).ok()?;
        // Field 4, after the command name, is the parent's pid.
        let ppid: u32 = stat
            .get(stat.rfind(')')? + 1..)?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()?;
        (ppid == pid).then_some(child)
    });
    for child in children {
        total += cpu_ms(child).unwrap_or(0.0);
    }
    Some(total)
}

/// Runs `program args…` to completion and returns its stdout; a failure
/// exit is an error with both its outputs, since that is all a caller can
/// show about it.
pub fn run<S: AsRef<OsStr>>(program: &Path, args: &[S]) -> Result<String, Error> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| Error::Spawn {
            program: program.to_path_buf(),
            source,
        })?;
    if !out.status.success() {
        let name = program.file_name().unwrap_or(program.as_os_str());
        let command = std::iter::once(name)
            .chain(args.iter().map(AsRef::as_ref))
            .map(OsStr::to_string_lossy)
            .collect::<Vec<_>>()
            .join(" ");
        return Err(Error::Failed {
            command,
            status: out.status,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn a_free_port_can_be_bound() {
        let port = free_port().unwrap();
        assert_ne!(port, 0);
        if let Some(first) = ephemeral_start() {
            assert!(port < first, "{port} is an ephemeral port (from {first})");
        }
        std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    }

    #[test]
    fn rss_of_this_process_and_of_no_process() {
        assert!(rss_bytes(std::process::id()).is_some_and(|r| r > 0));
        assert_eq!(rss_bytes(u32::MAX), None);
    }

    #[test]
    fn run_returns_stdout_or_both_outputs() {
        let sh = Path::new("/bin/sh");
        assert_eq!(run(sh, &["-c", "echo out; echo err >&2"]).unwrap(), "out\n");
        let e = run(sh, &["-c", "echo out; echo err >&2; exit 2"]).unwrap_err();
        match &e {
            Error::Failed {
                command,
                status,
                stdout,
                stderr,
            } => {
                assert!(command.starts_with("sh -c "), "{command}");
                assert_eq!(status.code(), Some(2));
                assert_eq!((stdout.as_str(), stderr.as_str()), ("out\n", "err\n"));
            }
            other => panic!("{other:?}"),
        }
    }
}

#[cfg(test)]
mod cpu_tests {
    #[test]
    fn this_process_has_used_some_cpu_and_its_count_grows() {
        let pid = std::process::id();
        let before = super::cpu_ms(pid).expect("a Linux /proc");
        let mut x = 0u64;
        let start = std::time::Instant::now();
        while start.elapsed() < std::time::Duration::from_millis(200) {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let after = super::cpu_ms(pid).unwrap();
        assert!(after - before >= 100.0, "{before} -> {after}");
        assert!(super::cpu_ms(u32::MAX).is_none());
    }
}

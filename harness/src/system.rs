//! Small things a caller needs around its processes: a port to give one,
//! its memory, and running a command to completion.

use crate::Error;
use std::ffi::OsStr;
use std::path::Path;
use std::process::{Command, Stdio};

/// A TCP port on 127.0.0.1 that was free a moment ago, for a child to
/// listen on. The listener is closed before returning, so another process
/// may take it first; the loopback ephemeral range makes that rare.
pub fn free_port() -> Result<u16, Error> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(Error::Port)?;
    Ok(listener.local_addr().map_err(Error::Port)?.port())
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

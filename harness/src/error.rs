//! What can go wrong running a child process.

use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

/// Why a process could not be found, started, waited for or signalled.
///
/// The messages carry the child's last log lines where there are any, so
/// the failure of a test or a benchmark run says what the child said.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("cannot start {}", program.display())]
    Spawn {
        program: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot create the log file {}", path.display())]
    Log {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{name} exited ({status}) before {line:?}:\n{tail}")]
    ExitedBefore {
        name: String,
        status: ExitStatus,
        line: String,
        tail: String,
    },
    #[error("{name} did not log {line:?} within {timeout:?}:\n{tail}")]
    NotLogged {
        name: String,
        line: String,
        timeout: Duration,
        tail: String,
    },
    #[error("cannot wait for {name} (pid {pid})")]
    Wait {
        name: String,
        pid: u32,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot kill {name} (pid {pid})")]
    Kill {
        name: String,
        pid: u32,
        #[source]
        source: std::io::Error,
    },
    #[error("kill -{signal} {pid} ({name}) failed: {detail}")]
    Signal {
        name: String,
        pid: u32,
        signal: &'static str,
        detail: String,
    },
    #[error("no free port on 127.0.0.1")]
    Port(#[source] std::io::Error),
    #[error("no path for this executable")]
    CurrentExe(#[source] std::io::Error),
    #[error("{} not found{hint}", path.display())]
    NotFound { path: PathBuf, hint: String },
    #[error("`{command}` failed ({status}):\n{stderr}")]
    BuildFailed {
        command: String,
        status: ExitStatus,
        stderr: String,
    },
    #[error("cannot run {cargo} to build {bin}")]
    NoCargo {
        cargo: String,
        bin: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{command} failed ({status}): {stdout}{stderr}")]
    Failed {
        command: String,
        status: ExitStatus,
        stdout: String,
        stderr: String,
    },
    /// An earlier attempt to find or build a [`crate::WorkspaceBin`]
    /// failed; it is not tried again in this process.
    #[error("{0}")]
    Unavailable(String),
}

/// The message and its causes, as `Display` would chain them: tests
/// `unwrap()` these, and a struct dump with the log tail on one escaped
/// line would hide what the child said.
impl std::fmt::Debug for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self}")?;
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

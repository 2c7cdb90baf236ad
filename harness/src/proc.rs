//! One child process: started with its output in a log file, waited for
//! by what it logs, signalled, reaped, and killed when dropped.

use crate::Error;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How often a wait looks at the log or the child again: short next to
/// any start-up, long enough not to spin a core.
const POLL: Duration = Duration::from_millis(20);

/// The log lines an error or [`Proc::tail`] shows unless
/// [`Spawn::tail_lines`] says otherwise.
const TAIL_LINES: usize = 10;

/// A program to start, with its arguments and environment.
///
/// Its stdout and stderr both go to one log file, so its own order of
/// lines is kept and a wait can look for any of them; stdin is closed.
#[derive(Debug, Clone)]
pub struct Spawn {
    program: PathBuf,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    tail_lines: usize,
}

impl Spawn {
    pub fn new(program: impl Into<PathBuf>) -> Spawn {
        Spawn {
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            tail_lines: TAIL_LINES,
        }
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Spawn {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    pub fn args<S: AsRef<OsStr>>(mut self, args: impl IntoIterator<Item = S>) -> Spawn {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Sets `key` in the child's environment (on top of this process's).
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Spawn {
        self.env
            .push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    /// How many of the log's last lines [`Proc::tail`] and the errors of
    /// [`Proc::wait_for`] show.
    pub fn tail_lines(mut self, lines: usize) -> Spawn {
        self.tail_lines = lines;
        self
    }

    /// Starts the program as `name`, its output in `dir/{name}.log`
    /// (truncated if it exists).
    pub fn start(self, dir: &Path, name: &str) -> Result<Proc, Error> {
        let log = dir.join(format!("{name}.log"));
        let log_error = |source| Error::Log {
            path: log.clone(),
            source,
        };
        let out = std::fs::File::create(&log).map_err(log_error)?;
        let err = out.try_clone().map_err(log_error)?;
        let child = Command::new(&self.program)
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|source| Error::Spawn {
                program: self.program.clone(),
                source,
            })?;
        Ok(Proc {
            child,
            name: name.to_owned(),
            log,
            tail_lines: self.tail_lines,
        })
    }
}

/// A running child process, SIGKILLed and reaped on drop so a failing
/// caller leaves nothing behind.
#[derive(Debug)]
pub struct Proc {
    child: Child,
    name: String,
    log: PathBuf,
    tail_lines: usize,
}

impl Proc {
    /// The name it was started as, which names its log and its errors.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its log file: stdout and stderr.
    pub fn log(&self) -> &Path {
        &self.log
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until its log contains `line`. Fails as soon as the child
    /// exits without having logged it, or after `timeout`; either error
    /// carries the log's tail.
    pub fn wait_for(&mut self, line: &str, timeout: Duration) -> Result<(), Error> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.logged(line) {
                return Ok(());
            }
            if let Some(status) = self.try_exit()? {
                return Err(Error::ExitedBefore {
                    name: self.name.clone(),
                    status,
                    line: line.to_owned(),
                    tail: self.tail(),
                });
            }
            if Instant::now() > deadline {
                return Err(Error::NotLogged {
                    name: self.name.clone(),
                    line: line.to_owned(),
                    timeout,
                    tail: self.tail(),
                });
            }
            std::thread::sleep(POLL);
        }
    }

    /// Whether the log contains `line` now. Bytes, not text: a line that
    /// is not UTF-8 must not hide the one looked for.
    fn logged(&self, line: &str) -> bool {
        let needle = line.as_bytes();
        std::fs::read(&self.log)
            .is_ok_and(|log| needle.is_empty() || log.windows(needle.len()).any(|w| w == needle))
    }

    /// Its exit status, if it has exited (and reaps it then).
    pub fn try_exit(&mut self) -> Result<Option<ExitStatus>, Error> {
        self.child.try_wait().map_err(|source| Error::Wait {
            name: self.name.clone(),
            pid: self.pid(),
            source,
        })
    }

    /// Waits up to `timeout` for it to exit on its own; `None` if it is
    /// still running then.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<Option<ExitStatus>, Error> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_exit()? {
                return Ok(Some(status));
            }
            if Instant::now() > deadline {
                return Ok(None);
            }
            std::thread::sleep(POLL);
        }
    }

    /// SIGKILL, as a crash, and reap. A child that has exited already is
    /// only reaped.
    pub fn kill(&mut self) -> Result<(), Error> {
        if self.try_exit()?.is_some() {
            return Ok(());
        }
        let (name, pid) = (&self.name, self.child.id());
        let kill_error = |source| Error::Kill {
            name: name.clone(),
            pid,
            source,
        };
        self.child.kill().map_err(kill_error)?;
        self.child.wait().map_err(kill_error)?;
        Ok(())
    }

    /// SIGTERM, the operator's stop, without waiting for the exit (see
    /// [`Proc::wait_exit`]). Through kill(1): sending a signal directly
    /// would take unsafe code or a signal crate.
    pub fn sigterm(&self) -> Result<(), Error> {
        self.signal("TERM")
    }

    /// Sends `signal` (a name kill(1) knows: `INT`, `STOP`, `CONT`, …)
    /// without waiting.
    pub fn signal(&self, signal: &'static str) -> Result<(), Error> {
        let pid = self.pid();
        let failed = |detail: String| Error::Signal {
            name: self.name.clone(),
            pid,
            signal,
            detail,
        };
        let out = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .stdin(Stdio::null())
            .output()
            .map_err(|e| failed(format!("cannot run kill(1): {e}")))?;
        if !out.status.success() {
            return Err(failed(format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(())
    }

    /// The last lines of its log, for failure messages.
    pub fn tail(&self) -> String {
        let log = std::fs::read(&self.log).unwrap_or_default();
        let log = String::from_utf8_lossy(&log);
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(self.tail_lines)..].join("\n")
    }

    /// The CPU time it has used so far (see [`crate::cpu_ms`]).
    pub fn cpu_ms(&self) -> Option<f64> {
        crate::cpu_ms(self.pid())
    }

    /// Its resident memory now (see [`crate::rss_bytes`]).
    pub fn rss_bytes(&self) -> Option<u64> {
        crate::rss_bytes(self.pid())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn sh(dir: &Path, name: &str, script: &str) -> Proc {
        Spawn::new("sh")
            .args(["-c", script])
            .start(dir, name)
            .unwrap()
    }

    #[test]
    fn waits_for_a_line_then_kills() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = sh(dir.path(), "ready", "echo starting; echo ready; sleep 5");
        p.wait_for("ready", Duration::from_secs(5)).unwrap();
        assert!(p.rss_bytes().is_some_and(|r| r > 0));
        let t = Instant::now();
        p.kill().unwrap();
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "kill waited for sleep"
        );
        let status = p.try_exit().unwrap().expect("reaped by kill");
        assert!(!status.success());
        // Killing a dead child again is not an error.
        p.kill().unwrap();
    }

    #[test]
    fn an_early_exit_fails_the_wait_with_the_tail() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = sh(dir.path(), "early", "echo one; echo two >&2; exit 3");
        let t = Instant::now();
        match p.wait_for("ready", Duration::from_secs(20)) {
            Err(Error::ExitedBefore {
                name, status, tail, ..
            }) => {
                assert_eq!(name, "early");
                assert_eq!(status.code(), Some(3));
                assert_eq!(tail, "one\ntwo");
            }
            other => panic!("{other:?}"),
        }
        assert!(t.elapsed() < Duration::from_secs(10), "did not fail early");
    }

    #[test]
    fn a_silent_child_times_out_and_the_tail_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = Spawn::new("sh")
            .args(["-c", "for i in 1 2 3 4 5; do echo line $i; done; sleep 5"])
            .tail_lines(2)
            .start(dir.path(), "silent")
            .unwrap();
        match p.wait_for("ready", Duration::from_millis(300)) {
            Err(e @ Error::NotLogged { .. }) => {
                let text = e.to_string();
                assert!(text.ends_with("line 4\nline 5"), "{text}");
                assert!(!text.contains("line 3"), "{text}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn sigterm_stops_a_child_and_its_exit_is_seen() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = sh(
            dir.path(),
            "term",
            "trap 'echo bye; exit 0' TERM; echo up; while :; do sleep 0.05; done",
        );
        p.wait_for("up", Duration::from_secs(5)).unwrap();
        assert_eq!(p.wait_exit(Duration::from_millis(100)).unwrap(), None);
        p.sigterm().unwrap();
        let status = p.wait_exit(Duration::from_secs(5)).unwrap();
        assert_eq!(status.and_then(|s| s.code()), Some(0));
        assert!(p.tail().ends_with("bye"), "{}", p.tail());
    }

    #[test]
    fn env_and_args_reach_the_child() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = Spawn::new("sh")
            .arg("-c")
            .arg("echo \"$HARNESS_TEST_VALUE $0\"; sleep 5")
            .arg("zero")
            .env("HARNESS_TEST_VALUE", "from-env")
            .start(dir.path(), "env")
            .unwrap();
        p.wait_for("from-env zero", Duration::from_secs(5)).unwrap();
        assert_eq!(p.log(), dir.path().join("env.log"));
        assert_eq!(p.name(), "env");
    }

    #[test]
    fn drop_kills_the_child() {
        let dir = tempfile::tempdir().unwrap();
        let p = sh(dir.path(), "dropped", "echo up; sleep 30");
        let pid = p.pid();
        drop(p);
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "pid {pid} lives"
        );
    }

    #[test]
    fn a_missing_program_is_a_spawn_error() {
        let dir = tempfile::tempdir().unwrap();
        let e = Spawn::new(dir.path().join("nothing-here"))
            .start(dir.path(), "missing")
            .unwrap_err();
        assert!(matches!(e, Error::Spawn { .. }), "{e:?}");
    }
}

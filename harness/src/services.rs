//! Third-party servers the scale-out tests run beside the platform:
//! PostgreSQL and Mosquitto, from Debian's packages, each started as a
//! child process of the caller on a free loopback port, in the caller's
//! scratch directory, and stopped by its PID (never by name).
//!
//! PostgreSQL refuses to run as root; when this process is root, its data
//! directory is handed to the `postgres` user and the server runs as that
//! user through setpriv(1), which execs it (no process in between, so the
//! PID is the server's own and SIGKILL reaches it).

use crate::{free_port, Error, Proc, Spawn};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// How long a server has to start.
const START_WAIT: Duration = Duration::from_secs(60);

/// A PostgreSQL server of our own: `initdb` into `dir/pgdata`, then
/// `postgres` on 127.0.0.1 and a free port, trusting local logins.
#[derive(Debug)]
pub struct Postgres {
    proc: Option<Proc>,
    bin: PathBuf,
    dir: PathBuf,
    data: PathBuf,
    port: u16,
    run_as: Option<&'static str>,
    starts: u32,
}

/// The superuser of a harness PostgreSQL.
pub const POSTGRES_USER: &str = "platform";

impl Postgres {
    /// Whether PostgreSQL's server programs are installed.
    pub fn available() -> bool {
        postgres_bin().is_some()
    }

    /// Creates a cluster in `dir/pgdata` and starts it.
    pub fn start(dir: &Path) -> Result<Postgres, Error> {
        let bin = postgres_bin().ok_or_else(|| Error::NotFound {
            path: PathBuf::from("postgres"),
            hint: " (install Debian's postgresql package; or set PG_BINDIR)".into(),
        })?;
        let run_as = is_root().then_some("postgres");
        let data = dir.join("pgdata");
        let sockets = dir.join("pgsock");
        for d in [&data, &sockets] {
            std::fs::create_dir_all(d).map_err(|source| Error::Log {
                path: d.clone(),
                source,
            })?;
        }
        if let Some(user) = run_as {
            // The scratch dir is the caller's (0700 under /tmp): let the
            // server's user through it, and give it its own two dirs.
            sh(&format!("chmod 0711 '{}'", dir.display()))?;
            sh(&format!(
                "chown -R {user}: '{}' '{}'",
                data.display(),
                sockets.display()
            ))?;
        }
        let initdb = as_user(run_as, &bin.join("initdb"))
            .args(["-D"])
            .arg(&data)
            .args([
                "-U",
                POSTGRES_USER,
                "-A",
                "trust",
                "--no-sync",
                "-E",
                "UTF8",
            ]);
        let mut init = initdb.start(dir, "initdb")?;
        match init.wait_exit(START_WAIT)? {
            Some(status) if status.success() => {}
            _ => {
                return Err(Error::Unavailable(format!(
                    "initdb failed:\n{}",
                    init.tail()
                )))
            }
        }
        let mut pg = Postgres {
            proc: None,
            bin,
            dir: dir.to_owned(),
            data,
            port: free_port()?,
            run_as,
            starts: 0,
        };
        pg.resume()?;
        Ok(pg)
    }

    /// The port it listens on, the same across [`Postgres::stop`] and
    /// [`Postgres::resume`].
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of database `db` (create it with [`Postgres::create_db`]).
    pub fn url(&self, db: &str) -> String {
        format!(
            "postgres://{POSTGRES_USER}@127.0.0.1:{}/{db}?connect_timeout=3",
            self.port
        )
    }

    /// Creates database `db`.
    pub fn create_db(&self, db: &str) -> Result<(), Error> {
        self.psql("postgres", &format!("CREATE DATABASE \"{db}\""))
            .map(drop)
    }

    /// Runs `sql` in database `db` with psql, answering its unaligned,
    /// tuples-only output (columns separated by `|`).
    pub fn psql(&self, db: &str, sql: &str) -> Result<String, Error> {
        let port = self.port.to_string();
        crate::run(
            Path::new("psql"),
            &[
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-U",
                POSTGRES_USER,
                "-d",
                db,
                "-c",
                sql,
            ],
        )
    }

    /// Fast shutdown (SIGINT: clients are disconnected, everything
    /// committed is kept), waiting for the exit.
    pub fn stop(&mut self) -> Result<(), Error> {
        if let Some(mut proc) = self.proc.take() {
            proc.signal("INT")?;
            if proc.wait_exit(START_WAIT)?.is_none() {
                proc.kill()?;
            }
        }
        Ok(())
    }

    /// Starts it again (after [`Postgres::stop`]) on the same port and
    /// data, returning once it accepts connections.
    pub fn resume(&mut self) -> Result<(), Error> {
        if self.proc.is_some() {
            return Ok(());
        }
        self.starts += 1;
        let spawn = as_user(self.run_as, &self.bin.join("postgres"))
            .arg("-D")
            .arg(&self.data)
            .args(["-p", &self.port.to_string()])
            .args(["-c", "listen_addresses=127.0.0.1"])
            .arg("-c")
            .arg(format!(
                "unix_socket_directories={}",
                self.dir.join("pgsock").display()
            ))
            .args(["-c", "max_connections=200", "-c", "fsync=on"]);
        let mut proc = spawn.start(&self.dir, &format!("postgres-{}", self.starts))?;
        proc.wait_for("ready to accept connections", START_WAIT)?;
        self.proc = Some(proc);
        Ok(())
    }

    /// The server's PID while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.proc.as_ref().map(Proc::pid)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // The Proc would SIGKILL it; a fast shutdown leaves no shared
        // memory behind.
        let _ = self.stop();
    }
}

/// A Mosquitto broker of our own on 127.0.0.1 and a free port: anonymous,
/// no persistence, queues large enough for a fleet's bursts, and
/// TCP_NODELAY (Mosquitto's default leaves Nagle on: 40 ms a round trip
/// against delayed ACKs).
#[derive(Debug)]
pub struct Mosquitto {
    proc: Option<Proc>,
    dir: PathBuf,
    port: u16,
    starts: u32,
}

impl Mosquitto {
    /// Whether the `mosquitto` broker is installed.
    pub fn available() -> bool {
        find_on_path("mosquitto").is_some()
    }

    pub fn start(dir: &Path) -> Result<Mosquitto, Error> {
        let mut m = Mosquitto {
            proc: None,
            dir: dir.to_owned(),
            port: free_port()?,
            starts: 0,
        };
        let conf = dir.join("mosquitto.conf");
        let text = format!(
            "listener {} 127.0.0.1\n\
             allow_anonymous true\n\
             set_tcp_nodelay true\n\
             persistence false\n\
             max_connections -1\n\
             max_queued_messages 1000000\n\
             max_inflight_messages 100\n\
             max_packet_size 1048576\n\
             log_dest stderr\n\
             log_type error\n\
             log_type warning\n\
             log_type notice\n\
             log_type information\n\
             connection_messages false\n",
            m.port
        );
        std::fs::write(&conf, text).map_err(|source| Error::Log {
            path: conf.clone(),
            source,
        })?;
        if is_root() {
            // Mosquitto started as root drops to the `mosquitto` user,
            // which must be able to read its config.
            sh(&format!("chmod 0755 '{}'", dir.display()))?;
            sh(&format!("chmod 0644 '{}'", conf.display()))?;
        }
        m.resume()?;
        Ok(m)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// "127.0.0.1:PORT".
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Stops it (SIGTERM), waiting for the exit.
    pub fn stop(&mut self) -> Result<(), Error> {
        if let Some(mut proc) = self.proc.take() {
            proc.sigterm()?;
            if proc.wait_exit(Duration::from_secs(10))?.is_none() {
                proc.kill()?;
            }
        }
        Ok(())
    }

    /// Starts it again on the same port.
    pub fn resume(&mut self) -> Result<(), Error> {
        if self.proc.is_some() {
            return Ok(());
        }
        self.starts += 1;
        let bin = find_on_path("mosquitto").ok_or_else(|| Error::NotFound {
            path: PathBuf::from("mosquitto"),
            hint: " (install Debian's mosquitto package)".into(),
        })?;
        let mut proc = Spawn::new(bin)
            .arg("-c")
            .arg(self.dir.join("mosquitto.conf"))
            .start(&self.dir, &format!("mosquitto-{}", self.starts))?;
        proc.wait_for("running", START_WAIT)?;
        self.proc = Some(proc);
        Ok(())
    }

    pub fn pid(&self) -> Option<u32> {
        self.proc.as_ref().map(Proc::pid)
    }
}

/// The directory of PostgreSQL's server programs: `PG_BINDIR`, else the
/// newest `/usr/lib/postgresql/*/bin` (Debian keeps them off PATH), else
/// wherever `postgres` is on PATH.
fn postgres_bin() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("PG_BINDIR") {
        return Some(PathBuf::from(dir));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| {
            let e = e.ok()?;
            let v = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("postgres").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, bin)| bin)
        .or_else(|| find_on_path("postgres")?.parent().map(Path::to_owned))
}

fn find_on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// `program` run as `user` (setpriv execs it: no process in between) or
/// as this process's user.
fn as_user(user: Option<&str>, program: &Path) -> Spawn {
    match user {
        Some(user) => Spawn::new("setpriv")
            .arg(format!("--reuid={user}"))
            .arg(format!("--regid={user}"))
            .arg("--init-groups")
            .arg("--")
            .arg(program),
        None => Spawn::new(program),
    }
}

fn sh(command: &str) -> Result<(), Error> {
    crate::run(Path::new("sh"), &["-c", command]).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_starts_answers_and_resumes_on_its_port() {
        if !Postgres::available() {
            eprintln!("skipped: PostgreSQL is not installed");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let mut pg = Postgres::start(dir.path()).unwrap();
        pg.create_db("t").unwrap();
        pg.psql("t", "CREATE TABLE x (v int); INSERT INTO x VALUES (7)")
            .unwrap();
        let port = pg.port();
        pg.stop().unwrap();
        assert!(pg.psql("t", "SELECT 1").is_err(), "stopped");
        pg.resume().unwrap();
        assert_eq!(pg.port(), port);
        assert_eq!(pg.psql("t", "SELECT v FROM x").unwrap().trim(), "7");
    }

    #[test]
    fn mosquitto_starts_and_stops() {
        if !Mosquitto::available() {
            eprintln!("skipped: mosquitto is not installed");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let mut m = Mosquitto::start(dir.path()).unwrap();
        assert!(std::net::TcpStream::connect(m.address()).is_ok());
        m.stop().unwrap();
        assert!(m.pid().is_none());
    }
}

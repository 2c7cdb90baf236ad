//! Finding the workspace's binaries to run.
//!
//! A package's own binary tests get its binaries from cargo
//! (`env!("CARGO_BIN_EXE_<name>")`) and pass the path to [`crate::Spawn`].
//! Other tests cannot: `cargo test -p <package>` builds no other package's
//! binaries, so [`WorkspaceBin`] builds one on demand. A benchmark runs the
//! release binaries built beside it ([`beside_current_exe`]).

use crate::Error;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// The binary `name` in the directory of the running executable, as a
/// release build puts the workspace's binaries side by side.
pub fn beside_current_exe(name: &str) -> Result<PathBuf, Error> {
    let dir = profile_dir()?;
    let path = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    if !path.exists() {
        return Err(Error::NotFound {
            path,
            hint: String::new(),
        });
    }
    Ok(path)
}

/// The directory of the running executable; for a test binary, which
/// cargo puts in `target/<profile>/deps`, the `target/<profile>` above.
fn profile_dir() -> Result<PathBuf, Error> {
    let exe = std::env::current_exe().map_err(Error::CurrentExe)?;
    let mut dir = exe.parent().ok_or_else(|| no_dir(&exe))?;
    if dir.ends_with("deps") {
        dir = dir.parent().ok_or_else(|| no_dir(&exe))?;
    }
    Ok(dir.to_path_buf())
}

fn no_dir(exe: &Path) -> Error {
    Error::NotFound {
        path: exe.to_path_buf(),
        hint: " (no directory above it)".into(),
    }
}

/// A binary of a workspace package that a test runs as a process: the
/// path in an environment variable if set, else built once per test
/// process with `cargo build -p <package> --bin <bin>` into the test's own
/// target dir and profile (a no-op when it is fresh).
///
/// Meant as a `static`, so every test of a binary shares the one build.
#[derive(Debug)]
pub struct WorkspaceBin {
    package: &'static str,
    bin: &'static str,
    /// The variable that names a prebuilt binary and skips the build.
    override_var: &'static str,
    found: OnceLock<Result<PathBuf, String>>,
}

impl WorkspaceBin {
    pub const fn new(
        package: &'static str,
        bin: &'static str,
        override_var: &'static str,
    ) -> WorkspaceBin {
        WorkspaceBin {
            package,
            bin,
            override_var,
            found: OnceLock::new(),
        }
    }

    /// The binary's path, found or built on the first call. A failure is
    /// kept as its message ([`Error::Unavailable`]), so a broken build
    /// fails every test that needs it without running again for each.
    pub fn path(&self) -> Result<PathBuf, Error> {
        self.found
            .get_or_init(|| self.find_or_build().map_err(|e| format!("{e:?}")))
            .clone()
            .map_err(Error::Unavailable)
    }

    fn find_or_build(&self) -> Result<PathBuf, Error> {
        if let Some(path) = std::env::var_os(self.override_var) {
            return Ok(PathBuf::from(path));
        }
        let dir = profile_dir()?;
        let bin = dir.join(format!("{}{}", self.bin, std::env::consts::EXE_SUFFIX));
        let profile = match dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") | None => "dev",
            Some(other) => other,
        };
        // This crate's manifest dir is a member of the same workspace.
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .ok_or_else(|| Error::NotFound {
                path: PathBuf::from(env!("CARGO_MANIFEST_DIR")),
                hint: " (no workspace directory above it)".into(),
            })?;
        let cargo = option_env!("CARGO").unwrap_or("cargo");
        let mut build = Command::new(cargo);
        build
            .args(["build", "--quiet", "-p", self.package, "--bin", self.bin])
            .args(["--profile", profile])
            .current_dir(workspace)
            .stdin(Stdio::null());
        if let Some(target) = dir.parent() {
            build.env("CARGO_TARGET_DIR", target);
        }
        match build.output() {
            Ok(out) if out.status.success() => {}
            Ok(out) => {
                return Err(Error::BuildFailed {
                    command: format!(
                        "cargo build -p {} --bin {} --profile {profile}",
                        self.package, self.bin
                    ),
                    status: out.status,
                    stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
                })
            }
            Err(e) if bin.exists() => {
                tracing::warn!("cannot run {cargo} ({e}); using {} as it is", bin.display());
            }
            Err(source) => {
                return Err(Error::NoCargo {
                    cargo: cargo.into(),
                    bin: self.bin.into(),
                    source,
                })
            }
        }
        if !bin.exists() {
            return Err(Error::NotFound {
                hint: format!(
                    "; build it with `cargo build -p {} --bin {}`, or point {} at one",
                    self.package, self.bin, self.override_var
                ),
                path: bin,
            });
        }
        Ok(bin)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn the_override_is_used_as_given() {
        // A variable only this test sets, so no other test sees it.
        std::env::set_var("HARNESS_TEST_BIN_OVERRIDE", "/bin/sh");
        static SH: WorkspaceBin = WorkspaceBin::new("none", "none", "HARNESS_TEST_BIN_OVERRIDE");
        assert_eq!(SH.path().unwrap(), PathBuf::from("/bin/sh"));
    }

    #[test]
    fn a_missing_sibling_is_not_found() {
        let e = beside_current_exe("no-such-binary-here").unwrap_err();
        assert!(matches!(e, Error::NotFound { .. }), "{e:?}");
        assert!(e.to_string().contains("no-such-binary-here"), "{e}");
    }
}

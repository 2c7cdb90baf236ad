//! The secrets the platform makes for itself on first start: its signing
//! key, and a bootstrap credential for each role with no user configured.
//! Each is written crash-safe, mode 0600, and read back on every start.

use super::settings::{Role, SecuritySection};
use protocol::crypto::{sha256_hex, PlatformKey};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tracing::info;
use verifier::ApRecord;

#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} does not hold a platform key (64 hex digits): {reason}")]
    BadKey { path: PathBuf, reason: String },
}

/// Loads the platform's signing key, creating it (mode 0600) on first
/// start, and writes its public half to `{file}.pub`.
pub fn load_or_create_key(path: &Path) -> Result<PlatformKey, SecurityError> {
    let key = match std::fs::read_to_string(path) {
        Ok(text) => PlatformKey::from_seed_hex(&text).map_err(|e| SecurityError::BadKey {
            path: path.to_owned(),
            reason: e.to_string(),
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = PlatformKey::generate();
            write_secret(path, &format!("{}\n", key.seed_hex()))?;
            info!(path = %path.display(), "created the platform signing key");
            key
        }
        Err(source) => {
            return Err(SecurityError::Read {
                path: path.to_owned(),
                source,
            })
        }
    };
    let public = public_key_path(path);
    std::fs::write(&public, format!("{}\n", key.public().to_hex())).map_err(|source| {
        SecurityError::Write {
            path: public.clone(),
            source,
        }
    })?;
    Ok(key)
}

pub use protocol::layout::public_key_path;

/// [`storage::write_secret`], with the error naming the file.
fn write_secret(path: &Path, text: &str) -> Result<(), SecurityError> {
    storage::write_secret(path, text).map_err(|source| SecurityError::Write {
        path: path.to_owned(),
        source,
    })
}

/// The bootstrap APs of `section` whose credential file does not exist
/// yet: each gets a new credential, written to
/// `{credentials}/ap/{id}.token`, and is returned with its hash for the
/// verifier to register. An AP whose file exists was bootstrapped before
/// (and may have been removed by an admin since): it is left alone.
pub fn bootstrap_aps(
    section: &SecuritySection,
    credentials: &Path,
) -> Result<Vec<(String, ApRecord)>, SecurityError> {
    let mut new = Vec::new();
    for ap in &section.aps {
        let path = protocol::layout::ap_token_file(credentials, &ap.id);
        if path.exists() {
            continue;
        }
        let token = protocol::crypto::random_b64(24);
        write_secret(&path, &format!("{token}\n"))?;
        info!(ap_id = %ap.id, path = %path.display(), "created the credential of a bootstrap AP");
        let mut ssids = ap.ssids.clone();
        ssids.sort();
        ssids.dedup();
        new.push((
            ap.id.clone(),
            ApRecord {
                ssids,
                credential_sha256: sha256_hex(&token),
                registered_ms: protocol::now_ms(),
            },
        ));
    }
    Ok(new)
}

/// The admin users of `section`, or if it has none, the bootstrap admin:
/// `admin` with the password in `{credentials}/admin.token`, created on
/// first start.
pub fn users_with_bootstrap(
    section: &SecuritySection,
    credentials: &Path,
) -> Result<HashMap<String, (Role, String)>, SecurityError> {
    let mut users: HashMap<String, (Role, String)> = section
        .users
        .iter()
        .map(|u| {
            (
                u.name.clone(),
                (u.role, u.password_sha256.to_ascii_lowercase()),
            )
        })
        .collect();
    if users.is_empty() {
        let role = Role::Admin;
        let path = protocol::layout::token_file(credentials, role.name());
        let token = match std::fs::read_to_string(&path) {
            Ok(t) => t.trim().to_owned(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let token = protocol::crypto::random_b64(24);
                write_secret(&path, &format!("{token}\n"))?;
                info!(role = role.name(), path = %path.display(), "created a bootstrap credential");
                token
            }
            Err(source) => return Err(SecurityError::Read { path, source }),
        };
        users.insert(role.name().to_owned(), (role, sha256_hex(&token)));
    }
    Ok(users)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_created_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("platform.key");
        let a = load_or_create_key(&path).unwrap();
        let b = load_or_create_key(&path).unwrap();
        assert_eq!(a.public(), b.public());
        let public = std::fs::read_to_string(public_key_path(&path)).unwrap();
        assert_eq!(public.trim(), a.public().to_hex());
        std::fs::write(&path, "junk").unwrap();
        assert!(load_or_create_key(&path).is_err());
    }

    #[test]
    fn a_crash_while_creating_the_key_leaves_no_half_key() {
        // A crash mid-write leaves only the temporary file, which the next
        // start overwrites; the key itself appears whole or not at all.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("platform.key");
        std::fs::write(dir.path().join("platform.key.tmp"), "half").unwrap();
        let key = load_or_create_key(&path).unwrap();
        assert!(!dir.path().join("platform.key.tmp").exists());
        assert_eq!(load_or_create_key(&path).unwrap().public(), key.public());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}

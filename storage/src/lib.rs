//! What the workers' stores share. Each worker (verifier, registry) owns
//! its own database behind a store trait of its own; this crate only opens
//! the embedded one, sled, the same way for both: the same page cache
//! bound, and the same clear error when a second process holds the data
//! dir (sled is single-process, and takes a lock). [`write_secret`] and
//! [`private_dir`] are how the platform and the admin CLIs keep keys and
//! credentials on disk.

#![forbid(unsafe_code)]

pub mod pg;
mod secret;

pub use secret::{create_secret, private_dir, restrict_tree, write_secret};

use std::path::{Path, PathBuf};

/// sled's page cache. Its default, 1 GiB, lets the process grow with every
/// device ever stored; the working set here is small, and reads that miss
/// go to the OS page cache.
pub const SLED_CACHE_BYTES: u64 = 32 * 1024 * 1024;

/// A database that could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("cannot open the {owner} database at {path}: {source} (is another {owner} using this data dir?)")]
pub struct OpenError {
    /// Which worker's database: `verifier`, `registry`.
    pub owner: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: sled::Error,
}

/// How long an open waits for the database's file lock: sled releases it
/// from its flusher thread a moment after the last handle is dropped, so
/// a store reopened at once in the same process (a restart) can find it
/// still held.
pub const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Opens (creating if needed) the sled database of `owner` in `dir`,
/// waiting up to [`LOCK_WAIT`] for a previous owner to let go of it.
pub fn open_sled(owner: &'static str, dir: &Path) -> Result<sled::Db, OpenError> {
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    loop {
        let opened = sled::Config::new()
            .path(dir)
            .cache_capacity(SLED_CACHE_BYTES)
            .open();
        match opened {
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock")
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => {
                return other.map_err(|source| OpenError {
                    owner,
                    path: dir.to_owned(),
                    source,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_open_of_one_dir_names_the_owner_and_the_dir() {
        let dir = tempfile::tempdir().unwrap();
        let first = open_sled("registry", dir.path()).unwrap();
        let err = open_sled("registry", dir.path()).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("cannot open the registry database at"),
            "{text}"
        );
        assert!(text.contains(&dir.path().display().to_string()), "{text}");
        assert!(text.contains("another registry"), "{text}");
        drop(first);
        assert!(open_sled("registry", dir.path()).is_ok());
    }
}

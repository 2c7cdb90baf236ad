//! pass_tmp at rest: sealed, so that a read of the database's files (a
//! copied data dir, a backup) reveals no pass_tmp.
//!
//! The verifier cannot keep only a hash: SPAKE2 is keyed by pass_tmp
//! itself, and the AP running it needs the real value (docs/SECURITY.md).
//! So each pass_tmp is sealed with ChaCha20-Poly1305 under a key of its
//! own file (0600), bound to its UUID, and opened only when an AP is
//! given it. The key file sits beside the database, not in it; an
//! operator who wants them on different disks can move it.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use rand_core::{OsRng, RngCore};
use std::path::Path;

const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 12;

/// Why a key or a sealed value could not be used.
#[derive(Debug, thiserror::Error)]
pub enum AtRestError {
    #[error("cannot read or write the store key {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{0} does not hold a store key (64 hex digits)")]
    BadKey(String),
    #[error("a sealed pass_tmp does not open with this store key")]
    Sealed,
}

/// The key pass_tmps are sealed with.
pub struct StoreKey(ChaCha20Poly1305);

impl std::fmt::Debug for StoreKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoreKey(…)")
    }
}

impl StoreKey {
    /// Reads the key in `path`, or makes one there (0600, crash-safe).
    pub fn load_or_create(path: &Path) -> Result<Self, AtRestError> {
        let io = |source| AtRestError::Io {
            path: path.display().to_string(),
            source,
        };
        let hex = match std::fs::read_to_string(path) {
            Ok(text) => text.trim().to_owned(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut bytes = [0u8; KEY_LEN];
                OsRng.fill_bytes(&mut bytes);
                let hex = to_hex(&bytes);
                // Another instance may be making it at this moment: the
                // first one's key is everyone's.
                if storage::create_secret(path, &format!("{hex}\n")).map_err(io)? {
                    hex
                } else {
                    std::fs::read_to_string(path).map_err(io)?.trim().to_owned()
                }
            }
            Err(e) => return Err(io(e)),
        };
        let bytes =
            from_hex(&hex).ok_or_else(|| AtRestError::BadKey(path.display().to_string()))?;
        Ok(StoreKey(ChaCha20Poly1305::new(Key::from_slice(&bytes))))
    }

    /// `pass_tmp` sealed for the record of `uuid`: nonce and ciphertext, hex.
    pub fn seal(&self, uuid: &str, pass_tmp: &str) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        OsRng.fill_bytes(&mut nonce);
        let payload = Payload {
            msg: pass_tmp.as_bytes(),
            aad: uuid.as_bytes(),
        };
        // Encryption with a valid key and nonce fails only for messages
        // beyond ChaCha20's 256 GiB; pass_tmp is bounded far below.
        let sealed = self
            .0
            .encrypt(Nonce::from_slice(&nonce), payload)
            .unwrap_or_default();
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        to_hex(&out)
    }

    /// The pass_tmp sealed in the record of `uuid`.
    pub fn open(&self, uuid: &str, sealed: &str) -> Result<String, AtRestError> {
        let bytes = from_hex(sealed).ok_or(AtRestError::Sealed)?;
        if bytes.len() <= NONCE_LEN {
            return Err(AtRestError::Sealed);
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        let payload = Payload {
            msg: ciphertext,
            aad: uuid.as_bytes(),
        };
        let plain = self
            .0
            .decrypt(Nonce::from_slice(nonce), payload)
            .map_err(|_| AtRestError::Sealed)?;
        String::from_utf8(plain).map_err(|_| AtRestError::Sealed)
    }
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn from_hex(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_pass_tmps_open_only_for_their_uuid_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let key = StoreKey::load_or_create(&dir.path().join("k")).unwrap();
        let sealed = key.seal("u1", "hunter2");
        assert!(!sealed.contains("hunter2"));
        assert_ne!(sealed, key.seal("u1", "hunter2"), "a fresh nonce each time");
        assert_eq!(key.open("u1", &sealed).unwrap(), "hunter2");
        assert!(key.open("u2", &sealed).is_err(), "bound to its UUID");
        let again = StoreKey::load_or_create(&dir.path().join("k")).unwrap();
        assert_eq!(again.open("u1", &sealed).unwrap(), "hunter2");
        let other = StoreKey::load_or_create(&dir.path().join("other")).unwrap();
        assert!(other.open("u1", &sealed).is_err());
        assert!(key.open("u1", "zz").is_err());
        std::fs::write(dir.path().join("bad"), "nope").unwrap();
        assert!(StoreKey::load_or_create(&dir.path().join("bad")).is_err());
    }
}

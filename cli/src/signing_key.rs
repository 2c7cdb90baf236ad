//! The platform's signing key, as a standalone worker (`verifier serve`,
//! `registry serve`) in secure mode reads it: the file the platform made on
//! its first start, which every instance needs a copy of.

use protocol::crypto::PlatformKey;
use std::path::Path;

/// Reads the signing key in `path`, or says why not and what to do.
pub fn read_signing_key(path: &Path) -> Result<PlatformKey, String> {
    let seed = std::fs::read_to_string(path).map_err(|e| {
        format!(
            "cannot read the signing key {}: {e} (secure mode seals and signs with the platform's key, made on its first start; give --signing-key, or --walkthrough)",
            path.display()
        )
    })?;
    PlatformKey::from_seed_hex(&seed).map_err(|e| format!("{}: {e}", path.display()))
}

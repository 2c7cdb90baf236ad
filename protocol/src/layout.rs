//! Where the platform keeps, in its data dir, the files its clients read:
//! the public half of its signing key, the bootstrap admin's credential,
//! and each AP's and gateway's own. The platform writes them on first start
//! (an admin CLI the credentials it registers); the CLIs, simulators,
//! tests and benchmarks find them by default. The names are spelled here
//! once, so that the writer and its readers cannot drift apart. Paths
//! only: nothing here touches the file system.

use std::path::{Path, PathBuf};

/// The data dir of a platform started from the repository's root.
pub const DEFAULT_DATA_DIR: &str = "./data";
/// The platform's signing key, relative to its data dir; its public half
/// is next to it ([`public_key_path`]).
pub const SIGNING_KEY_FILE: &str = "platform.key";
/// The bootstrap credentials' folder, relative to the data dir.
pub const CREDENTIALS_DIR: &str = "credentials";
/// The public key of a platform with the default data dir, as a client
/// run from the same directory finds it.
pub const DEFAULT_PUBLIC_KEY_FILE: &str = "data/platform.key.pub";
/// The bootstrap credentials of a platform with the default data dir.
pub const DEFAULT_CREDENTIALS_DIR: &str = "data/credentials";

/// The platform's CA certificate, relative to its data dir: what every
/// client trusts, and why it knows it reached the platform.
pub const CA_FILE: &str = "ca.pem";
/// The CA's private key, relative to the data dir.
pub const CA_KEY_FILE: &str = "ca.key";
/// The CA certificate of a platform with the default data dir.
pub const DEFAULT_CA_FILE: &str = "data/ca.pem";

/// The CA certificate of the platform on `data_dir`.
pub fn ca_file(data_dir: &Path) -> PathBuf {
    data_dir.join(CA_FILE)
}

/// The CA's private key on `data_dir`.
pub fn ca_key_file(data_dir: &Path) -> PathBuf {
    data_dir.join(CA_KEY_FILE)
}

/// The bootstrap credentials' folder of the platform on `data_dir`.
pub fn credentials_dir(data_dir: &Path) -> PathBuf {
    data_dir.join(CREDENTIALS_DIR)
}

/// The bootstrap credential of `role` (`admin`, `ap`, `gateway`) in
/// `credentials_dir`.
pub fn token_file(credentials_dir: &Path, role: &str) -> PathBuf {
    credentials_dir.join(format!("{role}.token"))
}

/// Where the credential of AP `ap_id` is kept, when the platform made it
/// (a bootstrap AP) or an admin wrote it there: `credentials/ap/ID.token`.
pub fn ap_token_file(credentials_dir: &Path, ap_id: &str) -> PathBuf {
    credentials_dir.join("ap").join(format!("{ap_id}.token"))
}

/// Where the certificate chain gateway `gateway_id` serves is kept, when
/// `registry gateway add` wrote it: `credentials/gateway/ID.crt`.
pub fn gateway_cert_file(credentials_dir: &Path, gateway_id: &str) -> PathBuf {
    credentials_dir
        .join("gateway")
        .join(format!("{gateway_id}.crt"))
}

/// The key of [`gateway_cert_file`]: `credentials/gateway/ID.key`.
pub fn gateway_key_file(credentials_dir: &Path, gateway_id: &str) -> PathBuf {
    credentials_dir
        .join("gateway")
        .join(format!("{gateway_id}.key"))
}

/// Where the credential of gateway `gateway_id` is kept:
/// `credentials/gateway/ID.token`.
pub fn gateway_token_file(credentials_dir: &Path, gateway_id: &str) -> PathBuf {
    credentials_dir
        .join("gateway")
        .join(format!("{gateway_id}.token"))
}

/// The public half of the signing key in `key_file`: the same name with
/// `.pub` added.
pub fn public_key_path(key_file: &Path) -> PathBuf {
    let mut name = key_file.as_os_str().to_owned();
    name.push(".pub");
    PathBuf::from(name)
}

/// The public key of the platform on `data_dir`, with the default key
/// file name.
pub fn public_key_file(data_dir: &Path) -> PathBuf {
    public_key_path(&data_dir.join(SIGNING_KEY_FILE))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_the_layout_under_the_default_data_dir() {
        let data: PathBuf = Path::new(DEFAULT_DATA_DIR)
            .components()
            .filter(|c| *c != std::path::Component::CurDir)
            .collect();
        assert_eq!(data, Path::new("data"));
        assert_eq!(credentials_dir(&data), Path::new(DEFAULT_CREDENTIALS_DIR));
        assert_eq!(public_key_file(&data), Path::new(DEFAULT_PUBLIC_KEY_FILE));
        assert_eq!(ca_file(&data), Path::new(DEFAULT_CA_FILE));
        assert_eq!(
            token_file(Path::new(DEFAULT_CREDENTIALS_DIR), "admin"),
            Path::new("data/credentials/admin.token")
        );
        assert_eq!(
            ap_token_file(Path::new(DEFAULT_CREDENTIALS_DIR), "ap-1"),
            Path::new("data/credentials/ap/ap-1.token")
        );
        assert_eq!(
            gateway_token_file(Path::new(DEFAULT_CREDENTIALS_DIR), "gw-3"),
            Path::new("data/credentials/gateway/gw-3.token")
        );
        assert_eq!(
            public_key_path(Path::new("/k/platform.key")),
            Path::new("/k/platform.key.pub")
        );
    }
}

//! The platform's TLS material: its own CA, made on first start and kept
//! in the data dir (`ca.pem`, which clients trust, and `ca.key`), and a
//! server certificate for each listener, issued from it on every start;
//! or an operator's own certificate and key, from `[tls]`.
//!
//! The platform broker's certificate names its hosts and `tls.names`; a
//! gateway's (an in-process one's, or one issued from a registering
//! gateway's request) names its id alone (`tls::gateway_name`), so that
//! neither ever proves the other.

use crate::config::TlsSection;
use crate::embedded::ListenerTls;
use crate::security::SecurityError;
use protocol::layout;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tracing::{info, warn};

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// A file that cannot be read or written (as for the platform's other
    /// secrets).
    #[error(transparent)]
    File(#[from] SecurityError),
    #[error("{path} exists but {key} does not: restore {key}, or delete {path} to make a new CA (every client then needs the new {path})")]
    KeyMissing { path: PathBuf, key: PathBuf },
    #[error("{origin}: {source}")]
    Tls {
        origin: String,
        source: tls::TlsError,
    },
}

/// Where a listener's certificates come from.
enum Source {
    /// The platform's CA issues one per listener.
    Ca(Arc<tls::Ca>),
    /// An operator's chain and key, served by every listener.
    Own {
        chain_pem: String,
        key_pem: String,
        origin: String,
    },
}

/// What the platform's listeners serve.
pub struct PlatformTls {
    source: Source,
    /// Names every certificate holds (`tls.names`).
    names: Vec<String>,
    /// One ticket key for every listener of the process: a device moved
    /// between its gateways resumes there too.
    tickets: Arc<dyn rustls::server::ProducesTickets>,
}

impl PlatformTls {
    /// Loads the CA from `data_dir`, making it on first start, or reads
    /// the operator's certificate and key (relative to `data_dir`).
    pub fn load(section: &TlsSection, data_dir: &Path) -> Result<Self, CertError> {
        let source = match (&section.cert_file, &section.key_file) {
            (Some(cert), Some(key)) => {
                let (cert, key) = (data_dir.join(cert), data_dir.join(key));
                info!(cert = %cert.display(), key = %key.display(), "TLS: serving the configured certificate");
                Source::Own {
                    chain_pem: read(&cert)?,
                    key_pem: read(&key)?,
                    origin: cert.display().to_string(),
                }
            }
            _ => Source::Ca(Arc::new(load_or_create_ca(data_dir)?)),
        };
        let tickets = tls::ServerTls::tickets().map_err(|source| CertError::Tls {
            origin: "TLS".into(),
            source,
        })?;
        Ok(PlatformTls {
            source,
            names: section.names.clone(),
            tickets,
        })
    }

    /// The CA, unless the operator serves their own certificate.
    pub fn ca(&self) -> Option<&Arc<tls::Ca>> {
        match &self.source {
            Source::Ca(ca) => Some(ca),
            Source::Own { .. } => None,
        }
    }

    /// Issues a registering gateway's certificate from its request, for
    /// its id alone (no address, none of `tls.names`); None when the
    /// operator serves their own certificate (the platform then has no CA
    /// to sign with).
    pub fn gateway_signer(&self) -> Option<registry::CertificateSigner> {
        let ca = self.ca()?.clone();
        Some(registry::CertificateSigner(Arc::new(
            move |request, gateway_id| {
                ca.sign_gateway_request(request, gateway_id)
                    .map_err(|e| e.to_string())
            },
        )))
    }

    /// What the platform broker's listener serves: a certificate for
    /// `hosts` (its own address) and `tls.names`, counted in `counters`.
    pub fn listener(
        &self,
        hosts: &[String],
        counters: metrics::BrokerTls,
    ) -> Result<ListenerTls, CertError> {
        let names = certificate_names(hosts, &self.names);
        self.serve(
            |ca| ca.issue_server(&names),
            &format!("a certificate for {names:?}"),
            counters,
        )
    }

    /// What the listener of in-process gateway `gateway_id` serves: a
    /// certificate for its id alone, counted in `counters`. An operator's
    /// own certificate is served as it is: devices verify the gateway as
    /// `tls::gateway_name`, which that certificate must then hold.
    pub fn gateway(
        &self,
        gateway_id: &str,
        counters: metrics::BrokerTls,
    ) -> Result<ListenerTls, CertError> {
        if let Source::Own { origin, .. } = &self.source {
            let name = tls::gateway_name(gateway_id).map_err(|source| CertError::Tls {
                origin: format!("gateway {gateway_id}"),
                source,
            })?;
            warn!(gateway_id, cert = %origin, name, "TLS: this gateway serves the configured certificate; devices verify it by the gateway's name, which the certificate must hold");
        }
        self.serve(
            |ca| ca.issue_gateway(gateway_id),
            &format!("the certificate of gateway {gateway_id}"),
            counters,
        )
    }

    /// A listener's TLS: `issue`d by the CA, or the operator's own.
    fn serve(
        &self,
        issue: impl FnOnce(&tls::Ca) -> Result<tls::Issued, tls::TlsError>,
        what: &str,
        counters: metrics::BrokerTls,
    ) -> Result<ListenerTls, CertError> {
        let tls_err = |origin: String| move |source| CertError::Tls { origin, source };
        let server = match &self.source {
            Source::Ca(ca) => {
                let issued = issue(ca).map_err(tls_err(what.to_owned()))?;
                tls::ServerTls::new(
                    &issued.chain_pem,
                    &issued.key_pem,
                    "an issued certificate",
                    self.tickets.clone(),
                )
            }
            Source::Own {
                chain_pem,
                key_pem,
                origin,
            } => tls::ServerTls::new(chain_pem, key_pem, origin, self.tickets.clone()),
        }
        .map_err(tls_err("TLS".into()))?;
        Ok(ListenerTls { server, counters })
    }
}

/// What a gateway that runs as its own process serves: the chain and key
/// the platform's CA issued it, from files.
pub fn gateway_listener(cert: &Path, key: &Path) -> Result<ListenerTls, CertError> {
    let server = tls::ServerTls::new(
        &read(cert)?,
        &read(key)?,
        &cert.display().to_string(),
        tls::ServerTls::tickets().map_err(|source| CertError::Tls {
            origin: "TLS".into(),
            source,
        })?,
    )
    .map_err(|source| CertError::Tls {
        origin: cert.display().to_string(),
        source,
    })?;
    Ok(ListenerTls {
        server,
        counters: metrics::BrokerTls::default(),
    })
}

/// The names of a listener's certificate: its hosts that a certificate
/// can hold (not 0.0.0.0 or ::), then `extra`, each once.
pub fn certificate_names(hosts: &[String], extra: &[String]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for name in hosts.iter().chain(extra) {
        let unspecified = name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_unspecified());
        if !unspecified && tls::nameable(name) && !names.contains(name) {
            names.push(name.clone());
        }
    }
    names
}

/// The CA in `data_dir`, made there on first start. The key is written
/// first: a crash between the two files leaves a key and no certificate,
/// which the next start replaces (no client can trust a CA whose
/// certificate was never written).
fn load_or_create_ca(data_dir: &Path) -> Result<tls::Ca, CertError> {
    let cert_path = layout::ca_file(data_dir);
    let key_path = layout::ca_key_file(data_dir);
    let tls_err = |path: &Path| {
        let origin = path.display().to_string();
        move |source| CertError::Tls { origin, source }
    };
    match std::fs::read_to_string(&cert_path) {
        Ok(cert_pem) => {
            let key_pem = match std::fs::read_to_string(&key_path) {
                Ok(key) => key,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(CertError::KeyMissing {
                        path: cert_path,
                        key: key_path,
                    })
                }
                Err(source) => {
                    return Err(SecurityError::Read {
                        path: key_path,
                        source,
                    }
                    .into())
                }
            };
            let ca = tls::Ca::from_pem(&cert_pem, &key_pem).map_err(tls_err(&key_path))?;
            info!(ca = %cert_path.display(), "TLS: the platform's CA");
            Ok(ca)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let ca = tls::Ca::generate("IoT platform CA").map_err(tls_err(&cert_path))?;
            write(&key_path, &ca.key_pem())?;
            write(&cert_path, ca.cert_pem())?;
            info!(ca = %cert_path.display(), key = %key_path.display(), "TLS: created the platform's CA; clients trust it with --cafile (the default finds data/ca.pem)");
            Ok(ca)
        }
        Err(source) => Err(SecurityError::Read {
            path: cert_path,
            source,
        }
        .into()),
    }
}

fn read(path: &Path) -> Result<String, CertError> {
    std::fs::read_to_string(path).map_err(|source| {
        SecurityError::Read {
            path: path.to_owned(),
            source,
        }
        .into()
    })
}

fn write(path: &Path, text: &str) -> Result<(), CertError> {
    storage::write_secret(path, text).map_err(|source| {
        SecurityError::Write {
            path: path.to_owned(),
            source,
        }
        .into()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_skip_what_a_certificate_cannot_hold() {
        let hosts = [
            "0.0.0.0".to_owned(),
            "127.0.0.1".into(),
            "gw.example".into(),
        ];
        let extra = ["localhost".to_owned(), "127.0.0.1".into()];
        assert_eq!(
            certificate_names(&hosts, &extra),
            ["127.0.0.1", "gw.example", "localhost"]
        );
    }

    #[test]
    fn an_operators_own_certificate_is_served_and_no_ca_is_made() {
        let dir = tempfile::tempdir().unwrap();
        let theirs = tls::Ca::generate("the operator's CA").unwrap();
        let issued = theirs.issue_server(&["mqtt.example.net".into()]).unwrap();
        std::fs::write(dir.path().join("server.crt"), &issued.chain_pem).unwrap();
        std::fs::write(dir.path().join("server.key"), &issued.key_pem).unwrap();
        let section = TlsSection {
            cert_file: Some("server.crt".into()),
            key_file: Some("server.key".into()),
            ..TlsSection::default()
        };
        let platform = PlatformTls::load(&section, dir.path()).unwrap();
        let listener = platform
            .listener(&["127.0.0.1".into()], metrics::BrokerTls::default())
            .unwrap();
        assert_eq!(listener.server.chain_pem(), issued.chain_pem);
        assert!(platform.ca().is_none() && platform.gateway_signer().is_none());
        assert!(!layout::ca_file(dir.path()).exists());
        // A key that is missing is named.
        std::fs::remove_file(dir.path().join("server.key")).unwrap();
        let err = PlatformTls::load(&section, dir.path())
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("server.key"), "{err}");
    }

    #[test]
    fn the_ca_is_made_once_and_a_crash_between_its_files_is_survived() {
        let dir = tempfile::tempdir().unwrap();
        let a = load_or_create_ca(dir.path()).unwrap();
        let b = load_or_create_ca(dir.path()).unwrap();
        assert_eq!(a.cert_pem(), b.cert_pem());
        // A key and no certificate: the crash came before the certificate.
        std::fs::remove_file(layout::ca_file(dir.path())).unwrap();
        let c = load_or_create_ca(dir.path()).unwrap();
        assert_ne!(c.cert_pem(), a.cert_pem());
        // A certificate and no key is not replaced behind the clients' backs.
        std::fs::remove_file(layout::ca_key_file(dir.path())).unwrap();
        assert!(matches!(
            load_or_create_ca(dir.path()),
            Err(CertError::KeyMissing { .. })
        ));
    }
}

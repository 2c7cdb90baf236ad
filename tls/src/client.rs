//! A client's side: whom it trusts, and what to say when a server does not
//! prove who it is. A connection to the platform verifies the host it is
//! made to; one to a gateway verifies that gateway's id
//! ([`crate::gateway_name`]), whatever address it is made to.

use crate::{provider, TlsError};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{
    ClientSessionMemoryCache, ClientSessionStore, Resumption, Tls12ClientSessionValue,
    Tls13ClientSessionValue, WebPkiServerVerifier,
};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, NamedGroup, RootCertStore,
    SignatureScheme,
};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

/// TLS session tickets a client keeps to resume. rustls keeps them 8 per
/// server, so this is 4 servers: a device talks to the registry's broker
/// and to one gateway at a time, its sessions with gateways are kept by
/// gateway id, and the one it was moved off may have it back.
const RESUMABLE_SESSIONS: usize = 32;

/// Whom a client trusts: the platform's CA (what every client outside the
/// platform process uses), or exactly one server certificate (the
/// platform's own clients of its own listeners, whatever names the
/// certificate holds, an operator's own included).
#[derive(Clone, Debug)]
pub struct ClientTls {
    template: Arc<ClientConfig>,
    /// The CA's verifier, for a gateway's certificate; None when pinned
    /// (the platform's own clients connect to no gateway).
    ca: Option<Arc<WebPkiServerVerifier>>,
}

impl ClientTls {
    /// Trusts the certificates in `pem` (a CA file), read from `origin`.
    pub fn from_pem(pem: &[u8], origin: &str) -> Result<Self, TlsError> {
        let rustls_err = |source| TlsError::Rustls {
            origin: origin.to_owned(),
            source,
        };
        let mut roots = RootCertStore::empty();
        for cert in certs(pem, origin)? {
            roots.add(cert).map_err(rustls_err)?;
        }
        let ca = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
            .build()
            .map_err(|e| rustls_err(rustls::Error::General(e.to_string())))?;
        let config = builder(origin)?
            .with_webpki_verifier(ca.clone())
            .with_no_client_auth();
        Ok(ClientTls {
            template: Arc::new(config),
            ca: Some(ca),
        })
    }

    /// Trusts exactly the first certificate of `chain_pem`, under any name.
    pub fn pinned(chain_pem: &str) -> Result<Self, TlsError> {
        let origin = "the served certificate";
        let leaf = certs(chain_pem.as_bytes(), origin)?.swap_remove(0);
        let pinned = Arc::new(Pinned {
            leaf,
            provider: provider(),
        });
        let config = builder(origin)?
            .dangerous()
            .with_custom_certificate_verifier(pinned)
            .with_no_client_auth();
        Ok(ClientTls {
            template: Arc::new(config),
            ca: None,
        })
    }

    /// A configuration for one client, with a session cache of its own: a
    /// device that reconnects resumes its own session. Make one per
    /// client identity and keep it across that client's reconnects.
    pub fn config(&self) -> Arc<ClientConfig> {
        self.device().platform()
    }

    /// One client's TLS to the platform and to its gateways, with a
    /// session cache of its own ([`ClientTls::config`] is its platform
    /// half). Make one per device and keep it across its reconnects.
    pub fn device(&self) -> DeviceTls {
        let sessions: Arc<dyn ClientSessionStore> =
            Arc::new(ClientSessionMemoryCache::new(RESUMABLE_SESSIONS));
        let mut platform = ClientConfig::clone(&self.template);
        platform.resumption = Resumption::store(sessions.clone());
        DeviceTls {
            platform: Arc::new(platform),
            sessions,
            ca: self.ca.clone(),
            gateways: Arc::default(),
        }
    }
}

/// One client's TLS, kept across its reconnects: to the platform,
/// verified for the host it connects to; to a gateway, verified for that
/// gateway's id, the one its signed assignment names, whatever address it
/// connects to. Its sessions are kept by platform host and by gateway id:
/// a session made with one server is never offered to another identity.
#[derive(Clone, Debug)]
pub struct DeviceTls {
    platform: Arc<ClientConfig>,
    sessions: Arc<dyn ClientSessionStore>,
    ca: Option<Arc<WebPkiServerVerifier>>,
    /// Each gateway's configuration, made once: rustls resumes a session
    /// only under the verifier that checked it, so a gateway's must stay
    /// the same across the device's reconnects. As many as the gateways
    /// the device was assigned.
    gateways: Arc<Mutex<HashMap<String, Arc<ClientConfig>>>>,
}

impl DeviceTls {
    /// The configuration for the platform broker.
    pub fn platform(&self) -> Arc<ClientConfig> {
        self.platform.clone()
    }

    /// The configuration for gateway `gateway_id`: only a certificate the
    /// CA issued that gateway ([`crate::gateway_name`]) verifies, the
    /// platform's and every other gateway's do not.
    pub fn gateway(&self, gateway_id: &str) -> Result<Arc<ClientConfig>, TlsError> {
        // A poisoned map is still a map of whole configurations.
        let mut gateways = self.gateways.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(config) = gateways.get(gateway_id) {
            return Ok(config.clone());
        }
        let config = self.new_gateway(gateway_id)?;
        gateways.insert(gateway_id.to_owned(), config.clone());
        Ok(config)
    }

    fn new_gateway(&self, gateway_id: &str) -> Result<Arc<ClientConfig>, TlsError> {
        let name = crate::gateway_name(gateway_id)?;
        let name = ServerName::try_from(name).map_err(|_| TlsError::BadName(gateway_id.into()))?;
        let Some(ca) = &self.ca else {
            return Err(TlsError::NoGatewayTrust);
        };
        let mut config = ClientConfig::clone(&self.platform);
        config
            .dangerous()
            .set_certificate_verifier(Arc::new(AsGateway {
                ca: ca.clone(),
                name: name.clone(),
            }));
        config.resumption = Resumption::store(Arc::new(SessionsOf {
            sessions: self.sessions.clone(),
            name,
        }));
        Ok(Arc::new(config))
    }
}

/// Verifies a certificate for a gateway's name, not for the address the
/// connection was made to.
#[derive(Debug)]
struct AsGateway {
    ca: Arc<WebPkiServerVerifier>,
    name: ServerName<'static>,
}

impl ServerCertVerifier for AsGateway {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _address: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.ca
            .verify_server_cert(end_entity, intermediates, &self.name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.ca.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.ca.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.ca.supported_verify_schemes()
    }
}

/// A client's sessions with one gateway, kept under its name rather than
/// under the address connected to: a session made with the platform or
/// with another gateway at that address is not offered to it, nor its to
/// them.
#[derive(Debug)]
struct SessionsOf {
    sessions: Arc<dyn ClientSessionStore>,
    name: ServerName<'static>,
}

impl ClientSessionStore for SessionsOf {
    fn set_kx_hint(&self, _: ServerName<'static>, group: NamedGroup) {
        self.sessions.set_kx_hint(self.name.clone(), group);
    }

    fn kx_hint(&self, _: &ServerName<'_>) -> Option<NamedGroup> {
        self.sessions.kx_hint(&self.name)
    }

    fn set_tls12_session(&self, _: ServerName<'static>, value: Tls12ClientSessionValue) {
        self.sessions.set_tls12_session(self.name.clone(), value);
    }

    fn tls12_session(&self, _: &ServerName<'_>) -> Option<Tls12ClientSessionValue> {
        self.sessions.tls12_session(&self.name)
    }

    fn remove_tls12_session(&self, _: &ServerName<'static>) {
        self.sessions.remove_tls12_session(&self.name);
    }

    fn insert_tls13_ticket(&self, _: ServerName<'static>, value: Tls13ClientSessionValue) {
        self.sessions.insert_tls13_ticket(self.name.clone(), value);
    }

    fn take_tls13_ticket(&self, _: &ServerName<'static>) -> Option<Tls13ClientSessionValue> {
        self.sessions.take_tls13_ticket(&self.name)
    }
}

/// A blocking client session to the server at `ip`, for a
/// `rustls::Stream` over a std socket (a startup probe).
pub fn blocking_session(
    tls: &ClientTls,
    ip: std::net::IpAddr,
) -> Result<rustls::ClientConnection, TlsError> {
    rustls::ClientConnection::new(tls.config(), ServerName::IpAddress(ip.into())).map_err(
        |source| TlsError::Rustls {
            origin: format!("a session to {ip}"),
            source,
        },
    )
}

fn builder(
    origin: &str,
) -> Result<rustls::ConfigBuilder<ClientConfig, rustls::WantsVerifier>, TlsError> {
    ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|source| TlsError::Rustls {
            origin: origin.to_owned(),
            source,
        })
}

/// Every certificate in `pem`; at least one.
pub(crate) fn certs(pem: &[u8], origin: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = rustls_pemfile::certs(&mut &pem[..])
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::Pem {
            origin: origin.to_owned(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            origin: origin.to_owned(),
        });
    }
    Ok(certs)
}

/// Checks that `chain_pem` (a server's certificate, then its
/// intermediates) is valid for `name` under the CA `ca_pem`, as a client
/// would check it.
pub fn verify_chain(ca_pem: &str, chain_pem: &str, name: &str) -> Result<(), TlsError> {
    let rustls_err = |source| TlsError::Rustls {
        origin: format!("the certificate for {name}"),
        source,
    };
    let mut roots = RootCertStore::empty();
    for cert in certs(ca_pem.as_bytes(), "the CA")? {
        roots.add(cert).map_err(rustls_err)?;
    }
    let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .map_err(|e| rustls_err(rustls::Error::General(e.to_string())))?;
    let chain = certs(chain_pem.as_bytes(), "the certificate chain")?;
    let server_name =
        ServerName::try_from(name.to_owned()).map_err(|_| TlsError::BadName(name.to_owned()))?;
    verifier
        .verify_server_cert(&chain[0], &chain[1..], &server_name, &[], UnixTime::now())
        .map(|_| ())
        .map_err(rustls_err)
}

/// What went wrong, for a person, if `err` (or what caused it) is a TLS
/// failure: the server's certificate did not verify, or it does not speak
/// TLS. None for other errors (a refused or lost connection).
pub fn describe_failure(err: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut next = Some(err);
    while let Some(e) = next {
        let rustls = e.downcast_ref::<rustls::Error>().or_else(|| {
            e.downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        });
        if let Some(rustls) = rustls {
            return Some(describe(rustls));
        }
        next = e.source();
    }
    None
}

/// What a rustls failure means, for a person: it completes "the server
/// did not prove who it is: …".
pub fn describe(e: &rustls::Error) -> String {
    use rustls::{CertificateError as C, Error as E};
    match e {
        E::InvalidCertificate(C::UnknownIssuer) => "its certificate is not signed by a CA this client trusts (the platform's is DATA_DIR/ca.pem: pass it with --cafile)".into(),
        E::InvalidCertificate(C::NotValidForNameContext { expected, .. })
            if crate::is_gateway_name(&expected.to_str()) =>
        {
            format!("its certificate is not the one the platform issued the gateway it was assigned ({}): a gateway proves its id, not its address", expected.to_str())
        }
        E::InvalidCertificate(C::NotValidForName | C::NotValidForNameContext { .. }) => "its certificate does not name the host connected to (add the name to the platform's `tls.names`, or connect by a name the certificate holds)".into(),
        E::InvalidCertificate(C::Expired | C::ExpiredContext { .. }) => "its certificate has expired (a platform restart renews its certificates; or check this machine's clock)".into(),
        E::InvalidCertificate(C::NotValidYet | C::NotValidYetContext { .. }) => "its certificate is not valid yet (check this machine's clock)".into(),
        E::InvalidCertificate(other) => format!("its certificate is not valid: {other:?}"),
        E::InvalidMessage(_) => "it did not answer in TLS (a plaintext listener? then connect with --plaintext)".into(),
        E::AlertReceived(alert) => format!("it ended the TLS handshake: {alert:?}"),
        other => other.to_string(),
    }
}

/// Trusts one certificate: the platform's own clients of its own
/// listeners know exactly which certificate those serve.
#[derive(Debug)]
struct Pinned {
    leaf: CertificateDer<'static>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.leaf.as_ref() {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Ca, ServerTls};
    use std::net::SocketAddr;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    /// A listener serving `issued` that echoes four bytes per connection.
    async fn echo(issued: &crate::Issued) -> SocketAddr {
        let tls = ServerTls::new(
            &issued.chain_pem,
            &issued.key_pem,
            "test",
            ServerTls::tickets().unwrap(),
        )
        .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = tls.acceptor(Duration::from_secs(5));
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    if let Ok((mut stream, _)) = acceptor.accept(tcp).await {
                        let mut buf = [0u8; 4];
                        if stream.read_exact(&mut buf).await.is_ok() {
                            let _ = stream.write_all(&buf).await;
                        }
                    }
                });
            }
        });
        addr
    }

    /// A connection to `addr` by its IP, as rumqttc makes one: how its
    /// handshake went.
    async fn connect(
        addr: SocketAddr,
        config: Arc<ClientConfig>,
    ) -> std::io::Result<rustls::HandshakeKind> {
        let tcp = TcpStream::connect(addr).await?;
        let name = ServerName::IpAddress(addr.ip().into());
        let mut stream = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await?;
        stream.write_all(b"ping").await?;
        let mut buf = [0u8; 4];
        stream.read_exact(&mut buf).await?;
        Ok(stream.get_ref().1.handshake_kind().unwrap())
    }

    #[tokio::test]
    async fn a_device_verifies_a_gateway_by_its_id_and_resumes_with_it_alone() {
        let ca = Ca::generate("test CA").unwrap();
        let gw1 = echo(&ca.issue_gateway("gw-1").unwrap()).await;
        let platform = echo(&ca.issue_server(&["127.0.0.1".into()]).unwrap()).await;
        let device = ClientTls::from_pem(ca.cert_pem().as_bytes(), "ca.pem")
            .unwrap()
            .device();
        // gw-1 is gw-1, by whatever address; it is not gw-2 nor the platform.
        let as_gw1 = device.gateway("gw-1").unwrap();
        assert_eq!(
            connect(gw1, as_gw1.clone()).await.unwrap(),
            rustls::HandshakeKind::Full
        );
        let err = connect(gw1, device.gateway("gw-2").unwrap())
            .await
            .unwrap_err();
        let reason = describe_failure(&err).unwrap();
        assert!(reason.contains("gw-2.gateway.invalid"), "{reason}");
        assert!(connect(gw1, device.platform()).await.is_err());
        // Its session with gw-1 resumes there, and only there.
        assert_eq!(
            connect(gw1, device.gateway("gw-1").unwrap()).await.unwrap(),
            rustls::HandshakeKind::Resumed
        );
        // The platform's certificate is not a gateway's.
        assert!(connect(platform, device.gateway("gw-1").unwrap())
            .await
            .is_err());
        assert_eq!(
            connect(platform, device.platform()).await.unwrap(),
            rustls::HandshakeKind::Full
        );
        let pinned = ClientTls::pinned(&ca.issue_gateway("gw-1").unwrap().chain_pem).unwrap();
        assert!(matches!(
            pinned.device().gateway("gw-1"),
            Err(TlsError::NoGatewayTrust)
        ));
    }
}

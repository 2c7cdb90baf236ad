//! The platform's certificate authority: made once, on first start, and
//! the server certificates it issues on every start: the platform's, for
//! its hosts and `tls.names`, and each gateway's, for its id alone
//! ([`crate::gateway_name`]); and a gateway's that asks with a
//! certificate request.

use crate::TlsError;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};
use std::time::{Duration, SystemTime};

/// How long the CA is valid. Replacing it means giving every client the
/// new `ca.pem`, so it is long.
pub const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// How long a server certificate is valid. They are issued again on every
/// start, so a restart renews them.
pub const SERVER_VALIDITY: Duration = Duration::from_secs(397 * 24 * 3600);
/// How long a gateway's certificate, issued from its request, is valid.
/// Renewing it means registering the gateway again with a new request.
pub const GATEWAY_VALIDITY: Duration = SERVER_VALIDITY;
/// A certificate is valid from this long before it was made, for clocks
/// that are a little behind.
const BACKDATE: Duration = Duration::from_secs(3600);

/// A certificate and its private key, PEM, as a listener serves them.
#[derive(Clone)]
pub struct Issued {
    /// The server's certificate, then the CA's.
    pub chain_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Issued { key: … }")
    }
}

/// The platform's certificate authority.
pub struct Ca {
    /// The CA as an issuer: its subject and key identifier, which are what
    /// a certificate it signs names.
    issuer: rcgen::Certificate,
    key: KeyPair,
    /// The CA certificate as clients trust it (`ca.pem`).
    pem: String,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Ca { … }")
    }
}

impl Ca {
    /// A new CA, named `name`, with an ECDSA P-256 key.
    pub fn generate(name: &str) -> Result<Ca, TlsError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        params.distinguished_name = distinguished_name(name);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        validity(&mut params, CA_VALIDITY);
        let issuer = params.self_signed(&key)?;
        let pem = issuer.pem();
        Ok(Ca { issuer, key, pem })
    }

    /// The CA kept as `cert_pem` (its certificate) and `key_pem` (its key).
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Ca, TlsError> {
        let key = KeyPair::from_pem(key_pem)?;
        let params = CertificateParams::from_ca_cert_pem(cert_pem)?;
        // Signed again with the same key and subject: what a certificate
        // it issues names (subject, key identifier) is the kept CA's.
        let issuer = params.self_signed(&key)?;
        let ca = Ca {
            issuer,
            key,
            pem: cert_pem.to_owned(),
        };
        // A key that is not the certificate's would sign certificates no
        // client accepts: found here, not by every client.
        let probe = ca.issue_server(&["localhost".into()])?;
        crate::client::verify_chain(cert_pem, &probe.chain_pem, "localhost")
            .map_err(|_| TlsError::KeyMismatch)?;
        Ok(ca)
    }

    /// The CA's certificate, PEM: what every client trusts.
    pub fn cert_pem(&self) -> &str {
        &self.pem
    }

    /// The CA's private key, PEM.
    pub fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }

    /// The platform's server certificate for `names` (DNS names or IP
    /// addresses), with a new key. A gateway's name is refused: the
    /// platform's certificates never prove a gateway.
    pub fn issue_server(&self, names: &[String]) -> Result<Issued, TlsError> {
        if let Some(name) = names.iter().find(|n| crate::is_gateway_name(n)) {
            return Err(TlsError::GatewayName(name.clone()));
        }
        self.issue(server_params(names, SERVER_VALIDITY)?)
    }

    /// The certificate of gateway `gateway_id` (one the platform runs
    /// itself), with a new key: its name alone ([`crate::gateway_name`]),
    /// no address and no name of the platform's.
    pub fn issue_gateway(&self, gateway_id: &str) -> Result<Issued, TlsError> {
        self.issue(gateway_params(gateway_id)?)
    }

    /// The certificate of gateway `gateway_id` for the key of the
    /// certificate request `csr_pem`, as [`Ca::issue_gateway`] names it.
    /// Nothing else the request asks for is taken. Returns the chain, PEM.
    pub fn sign_gateway_request(
        &self,
        csr_pem: &str,
        gateway_id: &str,
    ) -> Result<String, TlsError> {
        let request = CertificateSigningRequestParams::from_pem(csr_pem)?;
        let cert =
            gateway_params(gateway_id)?.signed_by(&request.public_key, &self.issuer, &self.key)?;
        Ok(format!("{}{}", cert.pem(), self.pem))
    }

    fn issue(&self, params: CertificateParams) -> Result<Issued, TlsError> {
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer, &self.key)?;
        Ok(Issued {
            chain_pem: format!("{}{}", cert.pem(), self.pem),
            key_pem: key.serialize_pem(),
        })
    }
}

/// A new key, and a certificate request for it, PEM: (request, key). The
/// request names `names`, though the CA decides what it issues.
pub fn request(names: &[String]) -> Result<(String, String), TlsError> {
    if let Some(bad) = names.iter().find(|n| !nameable(n)) {
        return Err(TlsError::BadName(bad.clone()));
    }
    let key = KeyPair::generate()?;
    let csr = CertificateParams::new(names.to_vec())?.serialize_request(&key)?;
    Ok((csr.pem()?, key.serialize_pem()))
}

fn gateway_params(gateway_id: &str) -> Result<CertificateParams, TlsError> {
    server_params(&[crate::gateway_name(gateway_id)?], GATEWAY_VALIDITY)
}

fn server_params(names: &[String], life: Duration) -> Result<CertificateParams, TlsError> {
    if let Some(bad) = names.iter().find(|n| !nameable(n)) {
        return Err(TlsError::BadName(bad.clone()));
    }
    let mut params = CertificateParams::new(names.to_vec())?;
    params.distinguished_name = distinguished_name(names.first().map_or("platform", |n| n));
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    validity(&mut params, life);
    Ok(params)
}

/// A host a certificate can name: an IP address, or a DNS name of
/// letters, digits, `-` and `.` (a leading `*.` for a wildcard).
pub fn nameable(name: &str) -> bool {
    if name.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    let host = name.strip_prefix("*.").unwrap_or(name);
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

fn distinguished_name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "IoT platform");
    dn.push(DnType::CommonName, common_name);
    dn
}

fn validity(params: &mut CertificateParams, life: Duration) {
    let now = SystemTime::now();
    params.not_before = (now - BACKDATE).into();
    params.not_after = (now + life).into();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_a_certificate_can_hold() {
        for good in [
            "127.0.0.1",
            "::1",
            "localhost",
            "gw-1.example.net",
            "*.example.net",
        ] {
            assert!(nameable(good), "{good}");
        }
        for bad in ["", "a b", "-x.net", "x..net", "host:1883", "é.net"] {
            assert!(!nameable(bad), "{bad}");
        }
    }

    #[test]
    fn a_kept_ca_issues_as_the_one_that_was_made() {
        let ca = Ca::generate("test CA").unwrap();
        let again = Ca::from_pem(ca.cert_pem(), &ca.key_pem()).unwrap();
        assert_eq!(again.cert_pem(), ca.cert_pem());
        let issued = again.issue_server(&["127.0.0.1".into()]).unwrap();
        assert!(issued.chain_pem.ends_with(ca.cert_pem()));
        crate::client::verify_chain(ca.cert_pem(), &issued.chain_pem, "127.0.0.1").unwrap();
        assert!(
            crate::client::verify_chain(ca.cert_pem(), &issued.chain_pem, "10.0.0.1").is_err(),
            "a name the certificate does not hold"
        );
        let other = Ca::generate("other").unwrap();
        assert!(matches!(
            Ca::from_pem(ca.cert_pem(), &other.key_pem()),
            Err(TlsError::KeyMismatch)
        ));
    }

    #[test]
    fn a_request_gets_the_gateways_name_not_the_ones_it_asks_for() {
        let ca = Ca::generate("test CA").unwrap();
        let (csr, _key) = request(&["evil.example".into(), "localhost".into()]).unwrap();
        let chain = ca.sign_gateway_request(&csr, "gw-9").unwrap();
        crate::client::verify_chain(ca.cert_pem(), &chain, "gw-9.gateway.invalid").unwrap();
        for not_it in [
            "evil.example",
            "localhost",
            "127.0.0.1",
            "gw-1.gateway.invalid",
        ] {
            assert!(
                crate::client::verify_chain(ca.cert_pem(), &chain, not_it).is_err(),
                "{not_it}"
            );
        }
        assert!(ca.sign_gateway_request("junk", "gw-9").is_err());
    }

    #[test]
    fn a_gateways_certificate_proves_that_gateway_alone_and_the_platforms_no_gateway() {
        let ca = Ca::generate("test CA").unwrap();
        let gw = ca.issue_gateway("gw-1").unwrap();
        crate::client::verify_chain(ca.cert_pem(), &gw.chain_pem, "gw-1.gateway.invalid").unwrap();
        for not_it in ["localhost", "127.0.0.1", "gw-2.gateway.invalid"] {
            assert!(
                crate::client::verify_chain(ca.cert_pem(), &gw.chain_pem, not_it).is_err(),
                "{not_it}"
            );
        }
        assert!(matches!(
            ca.issue_server(&["localhost".into(), "gw-1.gateway.invalid".into()]),
            Err(TlsError::GatewayName(_))
        ));
    }
}

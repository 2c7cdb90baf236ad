//! `gateway add` and `gateway remove`: the registered gateways. A
//! registration is who a gateway is (its id and the hash of its
//! credential) and where devices are sent (its address and weight); in
//! secure mode nothing a gateway announces about itself changes either.

use super::admin::{internal, refuse, AdminResult};
use crate::store::{GatewayRecord, RegistryStore};
use crate::worker::state::{GatewayState, Registry};
use protocol::registry_admin::{RegistryErrorCode, RegistryOk};
use protocol::Segment;
use tracing::info;

/// What `gateway add` asks for.
pub(super) struct Registration<'a> {
    pub address: &'a str,
    pub weight: u32,
    pub credential_sha256: Option<String>,
    /// A PEM certificate request for the gateway's TLS key.
    pub certificate_request: Option<&'a str>,
}

impl<S: RegistryStore> Registry<S> {
    /// Registers `gateway_id`, or changes its address, weight and
    /// credential; with a certificate request, issues its TLS certificate
    /// for its id (not its address: devices verify it by the id their
    /// signed assignment names). Its liveness and draining are kept.
    pub(super) async fn register_gateway(
        &mut self,
        gateway_id: &str,
        registration: Registration<'_>,
    ) -> AdminResult {
        let Registration {
            address,
            weight,
            credential_sha256,
            certificate_request,
        } = registration;
        let bad = |m: String| refuse(RegistryErrorCode::BadRequest, m);
        Segment::parse(gateway_id).map_err(|e| bad(format!("gateway id {gateway_id:?} {e}")))?;
        check_address(address).map_err(bad)?;
        if weight == 0 {
            return Err(bad("weight must be at least 1".into()));
        }
        let credential_sha256 = credential_sha256.map(|h| h.to_ascii_lowercase());
        if let Some(h) = &credential_sha256 {
            if h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(bad("credential_sha256 must be 64 hex digits".into()));
            }
        }
        // Issued before anything is stored: a request that cannot be
        // signed registers nothing.
        let certificate = match certificate_request {
            None => None,
            Some(request) => {
                let Some(signer) = &self.certificates else {
                    return Err(bad(
                        "this platform issues no gateway certificates (its TLS is off, or it serves an operator's own certificate): register without one".into(),
                    ));
                };
                Some(
                    (signer.0)(request, gateway_id)
                        .map_err(|e| bad(format!("certificate request: {e}")))?,
                )
            }
        };
        let metrics = &self.metrics;
        let created = !self.gateways.contains_key(gateway_id);
        let state = self
            .gateways
            .entry(gateway_id.to_owned())
            .or_insert_with(|| {
                let record = GatewayRecord {
                    address: String::new(),
                    weight,
                    draining: false,
                    registered: true,
                    credential_sha256: None,
                };
                GatewayState::new(gateway_id, record, metrics)
            });
        state.record.address = address.to_owned();
        state.record.weight = weight;
        state.record.registered = true;
        state.record.credential_sha256 = credential_sha256;
        let record = state.record.clone();
        self.store
            .put_gateway(gateway_id, &record)
            .await
            .map_err(internal)?;
        self.flush().await.map_err(internal)?;
        self.logins
            .set(gateway_id, record.credential_sha256.as_deref());
        info!(target: "audit", gateway_id, address, weight, created, certificate = certificate.is_some(), "gateway registered");
        Ok(RegistryOk::GatewayRegistered {
            gateway_id: gateway_id.to_owned(),
            address: address.to_owned(),
            weight,
            created,
            certificate,
        })
    }

    /// Removes `gateway_id`: its credential is refused from then on, it
    /// takes no devices, and its devices fail over when they next ask.
    pub(super) async fn remove_gateway(&mut self, gateway_id: &str) -> AdminResult {
        if self.gateways.remove(gateway_id).is_none() {
            return Err(refuse(
                RegistryErrorCode::UnknownGateway,
                format!("no gateway {gateway_id:?}"),
            ));
        }
        self.logins.set(gateway_id, None);
        self.store
            .remove_gateway(gateway_id)
            .await
            .map_err(internal)?;
        self.flush().await.map_err(internal)?;
        info!(target: "audit", gateway_id, "gateway removed");
        Ok(RegistryOk::GatewayRemoved {
            gateway_id: gateway_id.to_owned(),
        })
    }
}

/// A gateway address devices can connect to: `host:port`, port 1-65535.
fn check_address(address: &str) -> Result<(), String> {
    let bad = || format!("address {address:?} must be host:port");
    let (host, port) = address.rsplit_once(':').ok_or_else(bad)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || host.contains(['/', ' ']) || address.len() > 255 {
        return Err(bad());
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::check_address;

    #[test]
    fn addresses_are_host_and_port() {
        for ok in ["127.0.0.1:1886", "gw.example.com:8883", "[::1]:1886"] {
            assert!(check_address(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "host",
            "host:",
            ":1",
            "host:0",
            "host:70000",
            "a b:1",
            "a/b:1",
        ] {
            assert!(check_address(bad).is_err(), "{bad}");
        }
    }
}

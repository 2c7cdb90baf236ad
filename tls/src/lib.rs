//! The platform's TLS, one stack on both ends: rustls 0.23 on ring.
//!
//! - `ca`: the platform's own certificate authority and the certificates
//!   it issues (rcgen): server certificates for its listeners, and a
//!   gateway's from its certificate request.
//! - `server`: a listener's rustls configuration (session tickets, so a
//!   device that reconnects resumes) and the handshake with its deadline.
//! - `sources`: a listener's handshake turns, shared per source address.
//! - `client`: a client's configuration, trusting the platform's CA.
//! - `identity`: the name a gateway's certificate holds, from its id.
//!
//! No file is read or written here: the platform keeps its CA in its data
//! dir, and the clients find it there (`protocol::layout`).

mod ca;
mod client;
mod identity;
mod server;
mod sources;

pub use ca::{nameable, request, Ca, Issued, CA_VALIDITY, GATEWAY_VALIDITY, SERVER_VALIDITY};
pub use client::{
    blocking_session, describe, describe_failure, verify_chain, ClientTls, DeviceTls,
};
pub use identity::{gateway_name, is_gateway_name, GATEWAY_DOMAIN};
pub use server::{Acceptor, HandshakeFailure, ServerTls, HANDSHAKES_AT_ONCE};
pub use sources::HANDSHAKES_PER_SOURCE;

/// Everything that can go wrong making or reading TLS material.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot make a certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    #[error("{origin} holds no PEM certificate")]
    NoCertificate { origin: String },
    #[error("{origin} holds no PEM private key")]
    NoKey { origin: String },
    #[error("{origin} is not valid PEM: {source}")]
    Pem {
        origin: String,
        source: std::io::Error,
    },
    #[error("{origin}: {source}")]
    Rustls {
        origin: String,
        source: rustls::Error,
    },
    #[error("the CA's key is not the key of its certificate")]
    KeyMismatch,
    #[error("{0} is not a host name or an IP address a certificate can name")]
    BadName(String),
    #[error("{0} is a gateway's name (under .{domain}): the platform's own certificates never hold one", domain = identity::GATEWAY_DOMAIN)]
    GatewayName(String),
    #[error("this client trusts one pinned certificate, not a CA: it cannot verify a gateway")]
    NoGatewayTrust,
}

/// The crypto provider of every configuration made here.
pub fn provider() -> std::sync::Arc<rustls::crypto::CryptoProvider> {
    std::sync::Arc::new(rustls::crypto::ring::default_provider())
}

//! MQTT client plumbing for everything in the platform that is a client.
//!
//! rumqttc 0.25 leaves three things to its user, and this crate does them
//! once for everybody:
//! - it does not resubscribe after a reconnect: [`Bus`] subscribes its
//!   filters again on every CONNACK and reports readiness only after the
//!   SUBACK;
//! - it reconnects with no backoff: [`Bus`] waits a capped, jittered
//!   [`Backoff`] between attempts;
//! - its default maximum packet size is 10 KiB: [`BusOptions`] raises it;
//! - it has a client per MQTT version with no trait in common: [`Bus`]
//!   speaks 3.1.1 or 5 ([`MqttVersion`]) with one interface, and reports
//!   an MQTT 5 server's redirecting DISCONNECT ([`LinkState::Moved`]).
//!
//! [`Outbox`] publishes without waiting on the link, for a worker that
//! publishes from the loop that reads its inbox.
//!
//! [`Pending`] pairs answers with questions by request id; [`RpcClient`]
//! builds request/response on it for the admin CLIs.
//!
//! Architecture invariant: this crate is only the MQTT plumbing. It
//! depends on no CLI, log-subscriber or metrics crate; those are `cli` and
//! `metrics`, which only binaries and workers pull in.

#![forbid(unsafe_code)]

mod backoff;
mod client;
mod outbox;
mod pending;
mod rpc;
mod session;

pub use backoff::Backoff;
pub use client::{Bus, BusError, BusOptions, LinkState, Message, PasswordSource, ServerMove};
pub use outbox::Outbox;
pub use pending::Pending;
pub use protocol::Correlated;
pub use rpc::{RpcClient, RpcError};
pub use session::MqttVersion;

/// A client's TLS configuration ([`BusOptions::with_tls`]), so that a crate
/// that only passes one along needs no TLS dependency of its own.
pub type TlsConfig = std::sync::Arc<rustls::ClientConfig>;

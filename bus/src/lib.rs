//! MQTT client plumbing for everything in the platform that is a client.
//!
//! rumqttc 0.25 leaves three things to its user, and this crate does them
//! once for everybody:
//! - it does not resubscribe after a reconnect: [`Bus`] subscribes its
//!   filters again on every CONNACK and reports readiness only after the
//!   SUBACK;
//! - it reconnects with no backoff: [`Bus`] waits a capped, jittered
//!   [`Backoff`] between attempts;
//! - its default maximum packet size is 10 KiB: [`BusOptions`] raises it.
//!
//! [`Pending`] pairs answers with questions by request id; [`RpcClient`]
//! builds request/response on it for the admin CLIs.
//!
//! [`metrics`] is the platform's Prometheus registry, shared by every
//! service in a process, and the small HTTP endpoint that serves it.

#![forbid(unsafe_code)]

mod backoff;
pub mod cli;
mod client;
pub mod metrics;
mod pending;
mod rpc;
mod signal;

pub use backoff::Backoff;
pub use client::{Bus, BusError, BusOptions, LinkState, Message};
pub use metrics::Metrics;
pub use pending::Pending;
pub use rpc::{Correlated, RpcClient, RpcError};
pub use signal::cancel_on_signal;

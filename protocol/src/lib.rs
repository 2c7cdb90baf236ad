//! The wire format of the platform, owned in one place.
//!
//! Every MQTT topic string is built and parsed here ([`topics`]), every JSON
//! payload is a type here ([`onboarding`], [`gateway`], [`admin`], [`registry_admin`]), and every error code
//! is an enum here ([`codes`]). No other crate formats a topic by hand.
//!
//! This crate does no I/O. Decoding is bounded ([`decode`]): a hostile
//! payload (huge, deeply nested, not UTF-8, wrong types) becomes a
//! [`DecodeError`], never a panic.

#![forbid(unsafe_code)]

pub mod admin;
pub mod codes;
pub mod crypto;
pub mod decode;
pub mod gateway;
pub mod gateway_login;
pub mod ids;
pub mod layout;
pub mod logins;
pub mod onboarding;
pub mod registry_admin;
pub mod topics;

pub use codes::{AccessErrorCode, AdminErrorCode, ErrorBody};
pub use decode::{decode, encode, peek_str_field, DecodeError};
pub use ids::{check_client_id, host_of, DeviceUuid, IdError, Segment};

/// A reply that names the request it answers, so that a client with
/// several requests in flight on one shared reply topic can pair them.
/// Each reply type implements it next to its definition.
pub trait Correlated {
    fn request_id(&self) -> &str;
}

/// Milliseconds since the Unix epoch: the clock signed answers expire by.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

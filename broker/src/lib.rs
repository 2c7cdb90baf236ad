//! The platform process.
//!
//! [`embedded`] runs rumqttd (MQTT 3.1.1 only) on its own thread behind an
//! auth handler that turns away clients rumqttd's router would refuse;
//! [`gateway`] is a gateway broker plus its agent; [`platform`] starts the
//! platform broker with the in-process workers (verifier, registry) and
//! gateways, and drains them on shutdown; [`config`] is the TOML
//! configuration with its built-in default; [`certs`] the CA and the
//! certificates the listeners serve over TLS.

#![forbid(unsafe_code)]

pub mod admission;
pub mod certs;
pub mod config;
pub mod embedded;
pub mod gateway;
pub mod platform;
pub mod security;

pub use config::{Config, ConfigError};
pub use embedded::{BrokerError, EmbeddedBroker};
pub use platform::{Platform, PlatformError, StartOptions};

//! Integration tests, in one binary. Every test starts its own platform
//! (broker + verifier) in-process on a free port and talks to it through
//! real MQTT clients; `durability.rs` runs the `broker` binary as a process
//! instead, to kill it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod admin;
mod bus;
mod conformance;
mod durability;
mod fleet;
mod gateway;
mod identities;
mod metrics;
mod mosquitto;
mod onboarding;
mod redirection;
mod robustness;
mod scale_out;
mod security;
mod transport;
mod trust;

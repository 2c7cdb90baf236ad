//! A simulated headless device.
//!
//! [`onboard`] runs one device through Wi-Fi onboarding: it sends its
//! access request {uuid, ssid, pass_tmp} to whichever AP serves the SSID,
//! re-sending with capped, jittered backoff while nobody answers; on an
//! access response it prompts its own user and, on accept, "joins" (records
//! the credentials). Then [`gateway::stay_homed`] keeps it on its gateway.
//! The same functions serve one device or, later, each device of a fleet.
//!
//! In secure mode the device sends SPAKE2's first message instead of
//! pass_tmp, answers only a challenge that carries the platform's ticket
//! for its request, registers its own key ([`protocol::crypto::DeviceKey`])
//! in its proof, and logs in as [`login`] decides.

#![forbid(unsafe_code)]

mod access;
mod config;
mod error;
pub mod fleet;
pub mod gateway;
mod life;
mod link;
pub mod login;
pub mod manifest;
mod onboarding;
pub mod report;
mod stats;

pub use config::DeviceConfig;
pub use error::DeviceError;
pub use life::{live, LifeEvents};
pub use link::{LinkConfig, PlatformLink};
pub use onboarding::{onboard, onboard_on, DeviceEvent, Joined};

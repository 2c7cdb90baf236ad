//! A simulated Wi-Fi access point.
//!
//! For each access request on `wlan/{ssid}/access/request` of an SSID it
//! serves, the AP asks the verifier for the UUID's pass_tmp, compares it
//! with the device's in constant time, prompts its user, and on accept
//! answers the device with the network password. Each request runs in its
//! own task, so a prompt waiting for a human blocks nobody else.
//!
//! Confirmation comes from `auto_confirm`, from `ap/{ap_id}/confirm`
//! messages, or from whoever holds [`Confirmations`] (the binary's
//! terminal reader). After each answer it decides, the AP reports the
//! outcome on `ap/{ap_id}/outcome`, for the platform's metrics.
//!
//! One process can run many APs: call [`start`] once per AP. [`aps`]
//! reads the `--aps` file that lists them.

#![forbid(unsafe_code)]

mod answer;
pub mod aps;
mod config;
mod error;
mod handshake;
mod prompt;
mod request;
mod serve;
mod shared;
mod verify;

pub use config::{ApConfig, Network};
pub use error::ApError;
pub use prompt::Confirmations;
pub use serve::{start, Ap, ApEvent};
pub use shared::REPEAT_WINDOW;

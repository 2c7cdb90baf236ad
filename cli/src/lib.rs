//! What the platform's binaries share, and only they use: the flags that
//! say where the platform is and who to be there (with the credential and
//! key files the platform writes on first start), the log subscriber, the
//! async runtime, Ctrl-C/SIGTERM as a cancellation, the exit codes, and
//! the file-creation mask that keeps what a binary writes private.
//!
//! Libraries never depend on this crate: it is where clap and
//! tracing-subscriber enter, and a library that only wants an MQTT client
//! (`bus`) or a worker must not pull them in.

#![forbid(unsafe_code)]

mod args;
pub mod exit;
mod instance;
mod logging;
mod mqtt;
mod private;
mod runtime;
mod signal;
mod signing_key;

pub use args::{client_tls, AdminArgs, ConnectArgs, DEFAULT_CREDENTIALS_DIR, DEFAULT_KEY_FILE};
pub use instance::instance_name;
pub use logging::{init_logging, LogOutput};
pub use mqtt::FleetMqttArgs;
pub use private::{private_data_dir, private_files};
pub use runtime::runtime;
pub use signal::cancel_on_signal;
pub use signing_key::read_signing_key;

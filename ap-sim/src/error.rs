//! Why an AP could not start, or stopped other than by shutdown: what its
//! binary reports to the user.

use bus::BusError;

#[derive(Debug, thiserror::Error)]
pub enum ApError {
    #[error("invalid {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error("AP task panicked: {0}")]
    Panicked(String),
}

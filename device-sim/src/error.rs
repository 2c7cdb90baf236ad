//! Every way a device's life can end before it is on its gateway, each
//! with what its user (or a fleet's report) needs to tell them apart.

use bus::BusError;
use protocol::AccessErrorCode;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("invalid {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error("refused by the AP: {code}: {message}")]
    Refused {
        code: AccessErrorCode,
        message: String,
    },
    #[error("no AP answered within {0:?}; is an AP serving this SSID?")]
    NoAnswer(Duration),
    #[error("the device's user declined to join")]
    Declined,
    #[error("the device's user did not confirm within {0:?}")]
    ConfirmTimeout(Duration),
    #[error("stopped before joining")]
    Stopped,
}

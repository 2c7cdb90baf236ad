//! Error codes carried in `{"error":{"code":…,"message":…}}` bodies.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Why a device was not given network access. Device-facing and fixed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccessErrorCode {
    /// The verifier has no pass_tmp for this UUID.
    UnknownDevice,
    /// The device's pass_tmp differs from the enrolled one.
    PassTmpMismatch,
    /// A user (the AP's) declined.
    Rejected,
    /// No confirmation, or no verifier answer, in time.
    Timeout,
    /// The request did not parse or its fields were wrong.
    BadRequest,
    /// Too many failed attempts for this UUID. Kept for older peers: the
    /// secure verifier paces guesses instead (`unavailable` with a
    /// `retry_after_ms`), and locks no UUID out.
    TooManyAttempts,
    /// The AP could not reach the verifier, or (secure mode) is over its
    /// verification rate, or its challenge or the device's proof was lost
    /// (the platform restarting, say). Not final: the device asks again
    /// with its backoff.
    Unavailable,
    /// Secure mode: the verifier released nothing to this AP for this
    /// device: the AP is not registered for the SSID, or the device has
    /// not itself asked it in the last 30 s, or its request was already
    /// answered to an AP. Not final for the device: another AP may serve
    /// it, and its next request is a new one.
    NotAuthorized,
    /// Secure mode: the device proved its pass_tmp, but its enrollment
    /// does not name this SSID. Final, and only ever told to a device that
    /// proved its pass_tmp.
    SsidNotAllowed,
    /// Secure mode: the device proved its pass_tmp with a new key while it
    /// has another, and the platform wants an admin to approve the new one
    /// (`verifier approve-key`). Not final: the device asks again.
    AwaitingApproval,
}

impl AccessErrorCode {
    /// Every code, for whoever needs to enumerate them (metrics).
    pub const ALL: [AccessErrorCode; 10] = [
        AccessErrorCode::UnknownDevice,
        AccessErrorCode::PassTmpMismatch,
        AccessErrorCode::Rejected,
        AccessErrorCode::Timeout,
        AccessErrorCode::BadRequest,
        AccessErrorCode::TooManyAttempts,
        AccessErrorCode::Unavailable,
        AccessErrorCode::NotAuthorized,
        AccessErrorCode::SsidNotAllowed,
        AccessErrorCode::AwaitingApproval,
    ];

    /// The code with this wire spelling.
    pub fn parse(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == code)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AccessErrorCode::UnknownDevice => "unknown_device",
            AccessErrorCode::PassTmpMismatch => "pass_tmp_mismatch",
            AccessErrorCode::Rejected => "rejected",
            AccessErrorCode::Timeout => "timeout",
            AccessErrorCode::BadRequest => "bad_request",
            AccessErrorCode::TooManyAttempts => "too_many_attempts",
            AccessErrorCode::Unavailable => "unavailable",
            AccessErrorCode::NotAuthorized => "not_authorized",
            AccessErrorCode::SsidNotAllowed => "ssid_not_allowed",
            AccessErrorCode::AwaitingApproval => "awaiting_approval",
        }
    }
}

impl AccessErrorCode {
    /// Whether a device gives up on this answer. `unavailable`,
    /// `not_authorized` and `awaiting_approval` say nothing final about the
    /// device: it asks again.
    pub fn is_final(self) -> bool {
        !matches!(
            self,
            AccessErrorCode::Unavailable
                | AccessErrorCode::NotAuthorized
                | AccessErrorCode::AwaitingApproval
        )
    }
}

impl fmt::Display for AccessErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an admin request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdminErrorCode {
    BadRequest,
    NotFound,
    AlreadyEnrolled,
    Internal,
}

impl AdminErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            AdminErrorCode::BadRequest => "bad_request",
            AdminErrorCode::NotFound => "not_found",
            AdminErrorCode::AlreadyEnrolled => "already_enrolled",
            AdminErrorCode::Internal => "internal",
        }
    }
}

impl fmt::Display for AdminErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `{"code":…,"message":…}`, generic over the code enum, and for a refusal
/// that will clear, when to ask again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody<C> {
    pub code: C,
    pub message: String,
    /// Ask again in this many milliseconds, not sooner and not on one's
    /// own backoff: the platform paces what it cannot take now (an AP over
    /// its verification rate gets a slot for each request it refuses).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

impl<C> ErrorBody<C> {
    pub fn new(code: C, message: impl Into<String>) -> Self {
        ErrorBody {
            code,
            message: message.into(),
            retry_after_ms: None,
        }
    }

    /// The same refusal, to be asked again after `after`.
    pub fn retry_after(mut self, after: std::time::Duration) -> Self {
        self.retry_after_ms = Some(u64::try_from(after.as_millis()).unwrap_or(u64::MAX));
        self
    }
}

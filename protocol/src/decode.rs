//! Bounded JSON decoding and encoding.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Largest payload any decoder accepts, except admin batches which pass
/// their own limit. Far above any legitimate onboarding message.
pub const MAX_PAYLOAD: usize = 16 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("payload is empty")]
    Empty,
    #[error("payload is {len} bytes; the limit is {limit}")]
    TooLarge { len: usize, limit: usize },
    #[error("payload is not UTF-8")]
    NotUtf8,
    #[error("payload is not valid JSON for this message: {0}")]
    Json(#[from] serde_json::Error),
    #[error("field `{field}`: {reason}")]
    Field { field: &'static str, reason: String },
}

impl DecodeError {
    pub fn field(field: &'static str, reason: impl ToString) -> Self {
        DecodeError::Field {
            field,
            reason: reason.to_string(),
        }
    }
}

/// Decodes a JSON payload of at most [`MAX_PAYLOAD`] bytes.
pub fn decode<T: DeserializeOwned>(payload: &[u8]) -> Result<T, DecodeError> {
    decode_limited(payload, MAX_PAYLOAD)
}

/// Decodes a JSON payload of at most `limit` bytes. serde_json's own
/// recursion limit (128) bounds nesting depth.
pub fn decode_limited<T: DeserializeOwned>(payload: &[u8], limit: usize) -> Result<T, DecodeError> {
    if payload.is_empty() {
        return Err(DecodeError::Empty);
    }
    if payload.len() > limit {
        return Err(DecodeError::TooLarge {
            len: payload.len(),
            limit,
        });
    }
    let text = std::str::from_utf8(payload).map_err(|_| DecodeError::NotUtf8)?;
    Ok(serde_json::from_str(text)?)
}

/// Encodes a payload. Serialising these plain structs cannot fail; a
/// failure would be a bug in a `Serialize` impl, so it yields `{}` rather
/// than a panic.
pub fn encode<T: Serialize>(msg: &T) -> Vec<u8> {
    serde_json::to_vec(msg).unwrap_or_else(|_| b"{}".to_vec())
}

/// Reads one top-level string field from a payload that failed to decode
/// as its full type, so a `bad_request` can still be addressed to its
/// sender. Bounded like [`decode`].
pub fn peek_str_field(payload: &[u8], field: &str) -> Option<String> {
    let value: serde_json::Value = decode(payload).ok()?;
    value.get(field)?.as_str().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    struct Msg {
        #[allow(dead_code)]
        a: String,
    }

    #[test]
    fn hostile_payloads_are_errors() {
        assert!(matches!(decode::<Msg>(b""), Err(DecodeError::Empty)));
        assert!(matches!(
            decode::<Msg>(&[0xff, 0xfe]),
            Err(DecodeError::NotUtf8)
        ));
        assert!(matches!(
            decode::<Msg>(&vec![b' '; MAX_PAYLOAD + 1]),
            Err(DecodeError::TooLarge { .. })
        ));
        assert!(matches!(
            decode::<Msg>(b"{\"a\":1}"),
            Err(DecodeError::Json(_))
        ));
        let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
        assert!(matches!(
            decode::<serde_json::Value>(deep.as_bytes()),
            Err(DecodeError::Json(_))
        ));
    }

    #[test]
    fn peek_finds_field_in_otherwise_bad_message() {
        assert_eq!(
            peek_str_field(br#"{"uuid":"x","pass_tmp":5}"#, "uuid").as_deref(),
            Some("x")
        );
        assert_eq!(peek_str_field(b"nope", "uuid"), None);
    }
}

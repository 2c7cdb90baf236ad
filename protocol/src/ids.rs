//! Identifiers that end up inside topic strings.
//!
//! A topic segment must never contain the MQTT wildcards `+` and `#`, the
//! level separator `/`, or start with `$`; otherwise one client could publish
//! onto, or subscribe across, another client's topics. Every identifier that
//! is spliced into a topic goes through [`Segment`] or [`DeviceUuid`] first.

use std::fmt;

/// Longest identifier accepted in a topic segment (SSID, AP id, ...).
pub const MAX_SEGMENT_LEN: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("must not be empty")]
    Empty,
    #[error("is {0} bytes long; at most {MAX_SEGMENT_LEN} are allowed")]
    TooLong(usize),
    #[error("contains {0:?}, which is not allowed in an MQTT topic segment")]
    ForbiddenChar(char),
    #[error("must not start with '$'")]
    DollarPrefix,
    #[error("is not a UUID in the hyphenated form xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx")]
    NotUuid,
}

/// A string that is safe to use as one level of an MQTT topic.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Segment(String);

impl Segment {
    pub fn parse(s: &str) -> Result<Self, IdError> {
        check_segment(s)?;
        Ok(Segment(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Segment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Checks that `s` can be used as a topic level and as an MQTT client id.
pub fn check_segment(s: &str) -> Result<(), IdError> {
    if s.is_empty() {
        return Err(IdError::Empty);
    }
    if s.len() > MAX_SEGMENT_LEN {
        return Err(IdError::TooLong(s.len()));
    }
    if s.starts_with('$') {
        return Err(IdError::DollarPrefix);
    }
    if let Some(c) = s
        .chars()
        .find(|c| matches!(c, '+' | '#' | '/') || c.is_control())
    {
        return Err(IdError::ForbiddenChar(c));
    }
    Ok(())
}

/// Checks an MQTT client id. Stricter than a topic segment: rumqttd's
/// router refuses a client id with `+`, `$`, `#` or `/` anywhere, and a
/// client it refuses after the handshake can poison its listener, so the
/// broker's auth handler turns such ids away first.
pub fn check_client_id(s: &str) -> Result<(), IdError> {
    check_segment(s)?;
    match s.chars().find(|c| *c == '$') {
        Some(c) => Err(IdError::ForbiddenChar(c)),
        None => Ok(()),
    }
}

/// A device's factory UUID.
///
/// Accepted only in the 36-character hyphenated form, in either case. The
/// spelling the device used is kept for the topics we answer on (the device
/// subscribed with that spelling); [`DeviceUuid::key`] is the canonical
/// lower-case form that storage is keyed by.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DeviceUuid {
    as_sent: String,
    key: String,
}

impl DeviceUuid {
    pub fn parse(s: &str) -> Result<Self, IdError> {
        if s.is_empty() {
            return Err(IdError::Empty);
        }
        if s.len() != 36 {
            return Err(IdError::NotUuid);
        }
        let parsed = uuid::Uuid::try_parse(s).map_err(|_| IdError::NotUuid)?;
        Ok(DeviceUuid {
            as_sent: s.to_owned(),
            key: parsed.hyphenated().to_string(),
        })
    }

    pub fn new_random() -> Self {
        let key = uuid::Uuid::new_v4().hyphenated().to_string();
        DeviceUuid {
            as_sent: key.clone(),
            key,
        }
    }

    /// The spelling the device used; topics addressed to the device use it.
    pub fn as_str(&self) -> &str {
        &self.as_sent
    }

    /// Canonical lower-case form: the storage key.
    pub fn key(&self) -> &str {
        &self.key
    }
}

impl fmt::Display for DeviceUuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.as_sent)
    }
}

/// The host of a "host:port" address (a gateway's, a broker's), an IPv6
/// address without its brackets; the whole of it if it has no port.
pub fn host_of(address: &str) -> &str {
    address
        .rsplit_once(':')
        .map_or(address, |(host, _)| host)
        .trim_start_matches('[')
        .trim_end_matches(']')
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_host_of_an_address() {
        assert_eq!(super::host_of("gw.example.net:8884"), "gw.example.net");
        assert_eq!(super::host_of("[::1]:8883"), "::1");
        assert_eq!(super::host_of("127.0.0.1:8883"), "127.0.0.1");
        assert_eq!(super::host_of("localhost"), "localhost");
    }

    use super::*;

    #[test]
    fn segments_reject_wildcards_and_separators() {
        for bad in ["", "a/b", "a+", "#", "$SYS", "a\u{0}b", &"x".repeat(129)] {
            assert!(Segment::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(
            Segment::parse("home-wifi 5G").map(|s| s.to_string()),
            Ok("home-wifi 5G".into())
        );
    }

    #[test]
    fn client_ids_exclude_what_rumqttd_refuses() {
        for bad in ["a$b", "a/b", "+", "x#", ""] {
            assert!(check_client_id(bad).is_err(), "{bad:?} accepted");
        }
        assert!(check_client_id("verifier-cli-0f3a").is_ok());
    }

    #[test]
    fn uuid_keeps_spelling_and_canonical_key() {
        let u = DeviceUuid::parse("6F1C2B8E-0B5D-4A8F-9E8C-2B7D8E9F0A1B").unwrap();
        assert_eq!(u.as_str(), "6F1C2B8E-0B5D-4A8F-9E8C-2B7D8E9F0A1B");
        assert_eq!(u.key(), "6f1c2b8e-0b5d-4a8f-9e8c-2b7d8e9f0a1b");
    }

    #[test]
    fn uuid_rejects_other_forms() {
        for bad in [
            "",
            "6f1c2b8e0b5d4a8f9e8c2b7d8e9f0a1b",
            "{6f1c2b8e-0b5d-4a8f-9e8c-2b7d8e9f0a1}",
            "urn:uuid:6f1c2b8e-0b5d-4a8f-9e8c-2b7d8e9f0a1b",
            "6f1c2b8e-0b5d-4a8f-9e8c-2b7d8e9f0a/#",
        ] {
            assert!(DeviceUuid::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}

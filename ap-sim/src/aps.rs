//! The `--aps FILE` format: several APs for one process.
//!
//! ```toml
//! [[ap]]
//! id = "ap-1"
//! ssid = "factory-a"
//! password = "correct horse battery"
//! ```
//!
//! Each `[[ap]]` becomes one [`crate::ApConfig`] serving one SSID, started
//! exactly as a single AP is. Every problem is reported with the file's
//! line: a TOML syntax error, an unknown or missing key, an id or SSID that
//! cannot be a topic level, a bad Wi-Fi password, an id used twice, or an
//! SSID served by two APs of the file.

use protocol::onboarding::{check_ssid, check_wifi_password};
use serde::Deserialize;
use std::collections::HashMap;
use std::path::Path;
use toml::Spanned;

#[derive(Debug, thiserror::Error)]
pub enum ApsFileError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{origin}:{line}: {message}")]
    Invalid {
        origin: String,
        line: usize,
        message: String,
    },
}

/// One AP of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApEntry {
    pub id: String,
    pub ssid: String,
    pub password: String,
    /// Where its `[[ap]]` table starts, for messages.
    pub line: usize,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    ap: Vec<Spanned<RawAp>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAp {
    id: Spanned<String>,
    ssid: Spanned<String>,
    password: Spanned<String>,
}

/// Reads and checks an APs file.
pub fn load(path: &Path) -> Result<Vec<ApEntry>, ApsFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| ApsFileError::Read {
        path: path.display().to_string(),
        source,
    })?;
    parse(&text, &path.display().to_string())
}

/// Parses and checks the text of an APs file; `origin` names it in errors.
pub fn parse(text: &str, origin: &str) -> Result<Vec<ApEntry>, ApsFileError> {
    let invalid = |offset: usize, message: String| ApsFileError::Invalid {
        origin: origin.to_owned(),
        line: line_of(text, offset),
        message,
    };
    let raw: RawFile = toml::from_str(text).map_err(|e| {
        let offset = e.span().map_or(0, |s| s.start);
        invalid(offset, e.message().trim_end().to_owned())
    })?;
    if raw.ap.is_empty() {
        return Err(invalid(
            0,
            "no APs: add an [[ap]] table with id, ssid and password".into(),
        ));
    }
    let mut ids: HashMap<String, usize> = HashMap::new();
    let mut ssids: HashMap<String, (String, usize)> = HashMap::new();
    let mut entries = Vec::with_capacity(raw.ap.len());
    for table in raw.ap {
        let line = line_of(text, table.span().start);
        let ap = table.into_inner();
        let (id, ssid) = (ap.id.get_ref(), ap.ssid.get_ref());
        let at = |field: &Spanned<String>| field.span().start;
        protocol::Segment::parse(id)
            .and_then(|_| protocol::check_client_id(id))
            .map_err(|e| invalid(at(&ap.id), format!("AP id {id:?} {e}")))?;
        check_ssid(ssid).map_err(|e| invalid(at(&ap.ssid), format!("SSID {ssid:?} {e}")))?;
        // Never echo the password itself.
        check_wifi_password(ap.password.get_ref())
            .map_err(|e| invalid(at(&ap.password), format!("the password of {ssid:?} {e}")))?;
        if let Some(first) = ids.insert(id.clone(), line) {
            return Err(invalid(
                at(&ap.id),
                format!("AP id {id:?} is already used by the AP at line {first}"),
            ));
        }
        if let Some((other, first)) = ssids.insert(ssid.clone(), (id.clone(), line)) {
            return Err(invalid(
                at(&ap.ssid),
                format!("SSID {ssid:?} is already served by AP {other:?} (line {first}); one AP per SSID in a file"),
            ));
        }
        entries.push(ApEntry {
            id: ap.id.into_inner(),
            ssid: ap.ssid.into_inner(),
            password: ap.password.into_inner(),
            line,
        });
    }
    Ok(entries)
}

/// The 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "\
# two networks
[[ap]]
id = \"ap-1\"
ssid = \"factory-a\"
password = \"correct horse battery\"

[[ap]]
id = \"ap-2\"
ssid = \"factory b\"
password = \"staple battery horse\"
";

    fn error(text: &str) -> String {
        parse(text, "aps.toml").unwrap_err().to_string()
    }

    #[test]
    fn a_good_file_gives_every_ap_in_order() {
        let aps = parse(GOOD, "aps.toml").unwrap();
        let got: Vec<_> = aps
            .iter()
            .map(|a| (a.id.as_str(), a.ssid.as_str(), a.line))
            .collect();
        assert_eq!(got, [("ap-1", "factory-a", 2), ("ap-2", "factory b", 7)]);
        assert_eq!(aps[1].password, "staple battery horse");
    }

    #[test]
    fn the_checked_in_example_is_valid() {
        let example = include_str!("../../config/aps.example.toml");
        assert!(parse(example, "aps.example.toml").unwrap().len() >= 2);
    }

    #[test]
    fn duplicates_name_both_lines() {
        let twice = GOOD.replace("ap-2", "ap-1");
        assert_eq!(
            error(&twice),
            "aps.toml:8: AP id \"ap-1\" is already used by the AP at line 2"
        );
        let same_ssid = GOOD.replace("factory b", "factory-a");
        let err = error(&same_ssid);
        assert!(
            err.starts_with(
                "aps.toml:9: SSID \"factory-a\" is already served by AP \"ap-1\" (line 2)"
            ),
            "{err}"
        );
    }

    #[test]
    fn bad_values_are_refused_at_their_line() {
        let err = error(&GOOD.replace("ap-2", "ap/2"));
        assert!(err.starts_with("aps.toml:8: AP id \"ap/2\""), "{err}");
        let err = error(&GOOD.replace("ap-2", "ap$2"));
        assert!(err.starts_with("aps.toml:8: AP id"), "{err}");
        let err = error(&GOOD.replace("factory b", "factory/b"));
        assert!(err.starts_with("aps.toml:9: SSID \"factory/b\""), "{err}");
        let err = error(&GOOD.replace("staple battery horse", "short"));
        assert!(
            err.starts_with("aps.toml:10: the password of \"factory b\""),
            "{err}"
        );
        assert!(!err.contains("short"), "the password leaked: {err}");
    }

    #[test]
    fn unknown_and_missing_keys_are_refused_at_their_line() {
        let err = error(&GOOD.replace("password = \"staple", "pasword = \"staple"));
        assert!(err.starts_with("aps.toml:10: "), "{err}");
        assert!(err.contains("pasword"), "{err}");
        let err = error(&GOOD.replace("ssid = \"factory b\"\n", ""));
        assert!(err.starts_with("aps.toml:7: "), "{err}");
        assert!(err.contains("ssid"), "{err}");
        let err = error(&format!("{GOOD}\n[network]\nx = 1\n"));
        assert!(err.starts_with("aps.toml:12: "), "{err}");
        assert!(err.contains("network"), "{err}");
        let err = error("[[ap]]\nid = \"ap-1\nssid = \"x\"\n");
        assert!(err.starts_with("aps.toml:2: "), "{err}");
    }

    #[test]
    fn an_empty_file_is_refused() {
        assert!(error("").contains("no APs"));
        assert!(error("# nothing\n").contains("no APs"));
    }
}

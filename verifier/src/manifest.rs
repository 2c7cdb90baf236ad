//! The CSV manifest that `verifier import` reads: `uuid,pass_tmp,ssids` per
//! line, as a factory writes it.
//!
//! `ssids` are the SSIDs the device may onboard at, separated by `|`
//! ([`SSID_SEPARATOR`]), each trimmed: `home-wifi|office`. An SSID that
//! holds a `|` cannot be written here (enroll that device with
//! `verifier enroll --ssid`). An empty or missing third field is any SSID:
//! an old two-column manifest (`uuid,pass_tmp`) still imports, and its
//! devices may onboard at any SSID.
//!
//! A header line (its first field `uuid`), blank lines and lines starting
//! with `#` are skipped. Fields may be quoted (RFC 4180), so a pass_tmp may
//! hold a comma. Lines that do not have two or three fields are rejected
//! here; the verifier validates the values themselves.

use protocol::admin::{ImportRow, RejectedRow};
use std::io::{BufRead, BufReader, Read, Write};

/// What separates the SSIDs in the third column.
pub const SSID_SEPARATOR: char = '|';

/// The header [`write`] writes.
pub const HEADER: [&str; 3] = ["uuid", "pass_tmp", "ssids"];

/// Writes a manifest that [`parse`] reads back: the header, then one
/// `uuid,pass_tmp,ssids` row per device, quoted where a field needs it
/// (no SSIDs: an empty third field, any SSID). An SSID that holds the
/// separator, or is not what [`parse`] would read back (blank at either
/// end), is refused.
pub fn write<'a, W: Write>(
    out: W,
    rows: impl IntoIterator<Item = (&'a str, &'a str, &'a [String])>,
) -> Result<(), csv::Error> {
    let mut csv = csv::Writer::from_writer(out);
    csv.write_record(HEADER)?;
    for (uuid, pass_tmp, ssids) in rows {
        if let Some(bad) = ssids
            .iter()
            .find(|s| s.contains(SSID_SEPARATOR) || s.trim() != s.as_str())
        {
            return Err(csv::Error::from(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!(
                    "{uuid}: SSID {bad:?} cannot be written in a manifest (it holds {SSID_SEPARATOR:?} or blanks at an end)"
                ),
            )));
        }
        let joined = ssids.join(&SSID_SEPARATOR.to_string());
        csv.write_record([uuid, pass_tmp, joined.as_str()])?;
    }
    csv.flush()?;
    Ok(())
}

/// The third column's SSIDs: split at the separator, each trimmed. Empty:
/// any SSID. An empty piece (`a||b`) is kept, for the verifier to refuse.
pub fn split_ssids(field: &str) -> Vec<String> {
    if field.trim().is_empty() {
        return Vec::new();
    }
    field
        .split(SSID_SEPARATOR)
        .map(|s| s.trim().to_owned())
        .collect()
}

/// Rows to send, and lines rejected before sending. Line numbers are
/// physical lines of the file, counting blank and comment lines (the csv
/// crate's own positions skip those), so a report points at the right line.
pub fn parse<R: Read>(reader: R) -> (Vec<ImportRow>, Vec<RejectedRow>) {
    let mut rows = Vec::new();
    let mut rejected = Vec::new();
    for (index, line) in BufReader::new(reader).split(b'\n').enumerate() {
        let line_no = index as u64 + 1;
        let raw = match line {
            Ok(raw) => raw,
            Err(e) => {
                rejected.push(RejectedRow {
                    line: line_no,
                    uuid: String::new(),
                    reason: format!("unreadable: {e}"),
                });
                break;
            }
        };
        let text = raw.trim_ascii();
        if text.is_empty() || text.starts_with(b"#") {
            continue;
        }
        let fields = match split_fields(text) {
            Ok(f) => f,
            Err(reason) => {
                rejected.push(RejectedRow {
                    line: line_no,
                    uuid: String::new(),
                    reason,
                });
                continue;
            }
        };
        if line_no == 1
            && fields
                .first()
                .is_some_and(|f| f.eq_ignore_ascii_case("uuid"))
        {
            continue;
        }
        if !(2..=3).contains(&fields.len()) {
            rejected.push(RejectedRow {
                line: line_no,
                uuid: fields.first().cloned().unwrap_or_default(),
                reason: format!(
                    "expected 2 or 3 fields (uuid,pass_tmp[,ssids]), found {}",
                    fields.len()
                ),
            });
            continue;
        }
        let mut fields = fields.into_iter();
        rows.push(ImportRow {
            line: line_no,
            uuid: fields.next().unwrap_or_default(),
            pass_tmp: fields.next().unwrap_or_default(),
            ssids: fields
                .next()
                .as_deref()
                .map(split_ssids)
                .unwrap_or_default(),
        });
    }
    (rows, rejected)
}

/// One line's fields, with RFC 4180 quoting.
fn split_fields(line: &[u8]) -> Result<Vec<String>, String> {
    let mut csv = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(line);
    let record = match csv.byte_records().next() {
        Some(Ok(r)) => r,
        Some(Err(e)) => return Err(format!("unreadable line: {e}")),
        None => return Ok(Vec::new()),
    };
    record
        .iter()
        .map(|f| String::from_utf8(f.to_vec()).map_err(|_| "not UTF-8".to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rows_and_reports_bad_lines() {
        let text = "uuid,pass_tmp\n\
                    6f1c2b8e-0b5d-4a8f-9e8c-2b7d8e9f0a1b,abc\n\
                    \n\
                    # a comment\n\
                    only-one-field\n\
                    a,b,c,d\n\
                    00000000-0000-4000-8000-000000000001,\"with,comma\"\n";
        let (rows, rejected) = parse(text.as_bytes());
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].line, 2);
        assert!(rows[0].ssids.is_empty(), "two columns: any SSID");
        assert_eq!(rows[1].pass_tmp, "with,comma");
        assert_eq!(rejected.len(), 2);
        assert_eq!(rejected[0].line, 5);
        assert!(rejected[0].reason.contains("2 or 3 fields"), "{rejected:?}");
        assert!(rejected[0].reason.contains("found 1"), "{rejected:?}");
        assert_eq!(rejected[1].line, 6);
        assert!(rejected[1].reason.contains("found 4"), "{rejected:?}");
    }

    #[test]
    fn the_third_column_holds_ssids_separated_by_a_bar() {
        let text = "uuid,pass_tmp,ssids\n\
                    00000000-0000-4000-8000-000000000001,p1,home-wifi\n\
                    00000000-0000-4000-8000-000000000002,p2, home-wifi | office \n\
                    00000000-0000-4000-8000-000000000003,p3,\n\
                    00000000-0000-4000-8000-000000000004,p4,\"a,b|c\"\n\
                    00000000-0000-4000-8000-000000000005,p5,a||b\n";
        let (rows, rejected) = parse(text.as_bytes());
        assert!(rejected.is_empty(), "{rejected:?}");
        let ssids: Vec<Vec<String>> = rows.into_iter().map(|r| r.ssids).collect();
        assert_eq!(ssids[0], ["home-wifi"]);
        assert_eq!(ssids[1], ["home-wifi", "office"]);
        assert!(ssids[2].is_empty(), "an empty third field: any SSID");
        assert_eq!(ssids[3], ["a,b", "c"]);
        assert_eq!(ssids[4], ["a", "", "b"], "kept for the verifier to refuse");
    }

    #[test]
    fn what_write_writes_parse_reads() {
        let none: Vec<String> = Vec::new();
        let two = ["home-wifi".to_string(), "caf\u{e9}, 2nd floor".to_string()];
        let rows = [
            ("6f1c2b8e-0b5d-4a8f-9e8c-2b7d8e9f0a1b", "plain", &none[..]),
            (
                "00000000-0000-4000-8000-000000000001",
                "with,comma \"and quote\"",
                &two[..],
            ),
        ];
        let mut out = Vec::new();
        write(&mut out, rows).unwrap();
        let text = String::from_utf8(out.clone()).unwrap();
        assert!(text.starts_with("uuid,pass_tmp,ssids\n"), "{text}");
        let (parsed, rejected) = parse(out.as_slice());
        assert!(rejected.is_empty(), "{rejected:?}");
        let back: Vec<_> = parsed
            .iter()
            .map(|r| (r.uuid.as_str(), r.pass_tmp.as_str(), &r.ssids[..]))
            .collect();
        assert_eq!(back, rows);
    }

    #[test]
    fn an_ssid_that_would_not_read_back_is_not_written() {
        for bad in ["a|b", " lead", "trail "] {
            let ssids = [bad.to_string()];
            let row = ("00000000-0000-4000-8000-000000000001", "p", &ssids[..]);
            let err = write(Vec::new(), [row]).unwrap_err().to_string();
            assert!(err.contains("cannot be written"), "{bad:?}: {err}");
        }
    }
}

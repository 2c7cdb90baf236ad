//! The CSV manifest that `verifier import` reads: `uuid,pass_tmp` per line.
//!
//! A header line `uuid,pass_tmp`, blank lines and lines starting with `#`
//! are skipped. Fields may be quoted (RFC 4180), so a pass_tmp may hold a
//! comma. Lines that do not have exactly two fields are rejected here; the
//! verifier validates the values themselves.

use protocol::admin::{ImportRow, RejectedRow};
use std::io::{BufRead, BufReader, Read, Write};

/// Writes a manifest that [`parse`] reads back: the header, then one
/// `uuid,pass_tmp` row per device, quoted where a field needs it.
pub fn write<'a, W: Write>(
    out: W,
    rows: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<(), csv::Error> {
    let mut csv = csv::Writer::from_writer(out);
    csv.write_record(["uuid", "pass_tmp"])?;
    for (uuid, pass_tmp) in rows {
        csv.write_record([uuid, pass_tmp])?;
    }
    csv.flush()?;
    Ok(())
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
        match <[String; 2]>::try_from(fields) {
            Ok([uuid, pass_tmp]) => rows.push(ImportRow {
                line: line_no,
                uuid,
                pass_tmp,
            }),
            Err(other) => rejected.push(RejectedRow {
                line: line_no,
                uuid: other.first().cloned().unwrap_or_default(),
                reason: format!("expected 2 fields (uuid,pass_tmp), found {}", other.len()),
            }),
        }
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
                    a,b,c\n\
                    00000000-0000-4000-8000-000000000001,\"with,comma\"\n";
        let (rows, rejected) = parse(text.as_bytes());
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].line, 2);
        assert_eq!(rows[1].pass_tmp, "with,comma");
        assert_eq!(rejected.len(), 2);
        assert_eq!(rejected[0].line, 5);
        assert!(rejected[0].reason.contains("2 fields"));
        assert_eq!(rejected[1].line, 6);
    }

    #[test]
    fn what_write_writes_parse_reads() {
        let rows = [
            ("6f1c2b8e-0b5d-4a8f-9e8c-2b7d8e9f0a1b", "plain"),
            (
                "00000000-0000-4000-8000-000000000001",
                "with,comma \"and quote\"",
            ),
        ];
        let mut out = Vec::new();
        write(&mut out, rows).unwrap();
        let (parsed, rejected) = parse(out.as_slice());
        assert!(rejected.is_empty(), "{rejected:?}");
        let back: Vec<_> = parsed
            .iter()
            .map(|r| (r.uuid.as_str(), r.pass_tmp.as_str()))
            .collect();
        assert_eq!(back, rows);
    }
}

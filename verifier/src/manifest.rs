//! The CSV manifest that `verifier import` reads: `uuid,pass_tmp` per line.
//!
//! A header line `uuid,pass_tmp`, blank lines and lines starting with `#`
//! are skipped. Fields may be quoted (RFC 4180), so a pass_tmp may hold a
//! comma. Lines that do not have exactly two fields are rejected here; the
//! verifier validates the values themselves.

use protocol::admin::{ImportRow, RejectedRow};
use std::io::Read;

/// Rows to send, and lines rejected before sending.
pub fn parse<R: Read>(reader: R) -> (Vec<ImportRow>, Vec<RejectedRow>) {
    let mut csv = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .comment(Some(b'#'))
        .trim(csv::Trim::All)
        .from_reader(reader);
    let mut rows = Vec::new();
    let mut rejected = Vec::new();
    for (index, record) in csv.byte_records().enumerate() {
        let fallback_line = index as u64 + 1;
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map(|p| p.line()).unwrap_or(fallback_line);
                rejected.push(RejectedRow {
                    line,
                    uuid: String::new(),
                    reason: format!("unreadable line: {e}"),
                });
                continue;
            }
        };
        let line = record.position().map(|p| p.line()).unwrap_or(fallback_line);
        let fields: Vec<&[u8]> = record.iter().collect();
        if fields.iter().all(|f| f.is_empty()) {
            continue;
        }
        if line == 1
            && fields
                .first()
                .is_some_and(|f| f.eq_ignore_ascii_case(b"uuid"))
        {
            continue;
        }
        let text = |b: &[u8]| String::from_utf8(b.to_vec());
        match fields.as_slice() {
            [uuid, pass_tmp] => match (text(uuid), text(pass_tmp)) {
                (Ok(uuid), Ok(pass_tmp)) => rows.push(ImportRow {
                    line,
                    uuid,
                    pass_tmp,
                }),
                _ => rejected.push(RejectedRow {
                    line,
                    uuid: String::from_utf8_lossy(uuid).into_owned(),
                    reason: "not UTF-8".into(),
                }),
            },
            other => rejected.push(RejectedRow {
                line,
                uuid: other
                    .first()
                    .map(|f| String::from_utf8_lossy(f).into_owned())
                    .unwrap_or_default(),
                reason: format!("expected 2 fields (uuid,pass_tmp), found {}", other.len()),
            }),
        }
    }
    (rows, rejected)
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
}

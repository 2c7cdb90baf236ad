//! Fleet identities: generated like a factory would, read like
//! `verifier import` does (the format's owner is `verifier::manifest`).

use std::path::Path;

/// One device's factory identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub uuid: String,
    pub pass_tmp: String,
    /// The SSIDs it may onboard at, as the factory gave them; empty: any.
    pub ssids: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write { path: String, source: csv::Error },
    #[error("{path}, line {line}: {reason}")]
    Invalid {
        path: String,
        line: u64,
        reason: String,
    },
    #[error("{path} lists no devices")]
    Empty { path: String },
}

/// Characters of a generated pass_tmp: no look-alikes (0/O, 1/l/I).
const ALPHABET: &[u8] = b"23456789abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ";
const PASS_TMP_LEN: usize = 12;

/// `count` identities, the same for the same `seed`: random v4 UUIDs and
/// 12-character pass_tmps (about 70 bits), for any SSID.
pub fn generate(count: usize, seed: u64) -> Vec<Identity> {
    let mut rng = fastrand::Rng::with_seed(seed);
    (0..count)
        .map(|_| {
            let mut bytes = [0u8; 16];
            rng.fill(&mut bytes);
            let uuid = uuid::Builder::from_random_bytes(bytes)
                .into_uuid()
                .to_string();
            let pass_tmp = (0..PASS_TMP_LEN)
                .map(|_| char::from(ALPHABET[rng.usize(..ALPHABET.len())]))
                .collect();
            Identity {
                uuid,
                pass_tmp,
                ssids: Vec::new(),
            }
        })
        .collect()
}

/// Writes `identities` as a manifest `verifier import` reads.
pub fn write(path: &Path, identities: &[Identity]) -> Result<(), ManifestError> {
    let write_err = |source| ManifestError::Write {
        path: path.display().to_string(),
        source,
    };
    let file = std::fs::File::create(path).map_err(|e| write_err(e.into()))?;
    verifier::manifest::write(
        std::io::BufWriter::new(file),
        identities
            .iter()
            .map(|i| (i.uuid.as_str(), i.pass_tmp.as_str(), &i.ssids[..])),
    )
    .map_err(write_err)
}

/// Reads a manifest; any malformed line is an error naming the line.
pub fn read(path: &Path) -> Result<Vec<Identity>, ManifestError> {
    let name = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|source| ManifestError::Read {
        path: name.clone(),
        source,
    })?;
    let (rows, rejected) = verifier::manifest::parse(file);
    if let Some(bad) = rejected.into_iter().next() {
        return Err(ManifestError::Invalid {
            path: name,
            line: bad.line,
            reason: bad.reason,
        });
    }
    let mut identities = Vec::with_capacity(rows.len());
    for row in rows {
        let invalid = |reason: String| ManifestError::Invalid {
            path: name.clone(),
            line: row.line,
            reason,
        };
        protocol::DeviceUuid::parse(&row.uuid).map_err(|e| invalid(format!("uuid: {e}")))?;
        protocol::onboarding::check_pass_tmp(&row.pass_tmp)
            .map_err(|e| invalid(format!("pass_tmp {e}")))?;
        for ssid in &row.ssids {
            protocol::onboarding::check_ssid(ssid)
                .map_err(|e| invalid(format!("ssid {ssid:?} {e}")))?;
        }
        identities.push(Identity {
            uuid: row.uuid,
            pass_tmp: row.pass_tmp,
            ssids: row.ssids,
        });
    }
    if identities.is_empty() {
        return Err(ManifestError::Empty { path: name });
    }
    Ok(identities)
}

/// Slice `index` (1-based) of `count` equal slices: the part of a fleet
/// one of several processes runs. Every device is in exactly one slice.
pub fn slice<T>(items: &[T], index: usize, count: usize) -> &[T] {
    if count == 0 || index == 0 || index > count {
        return &[];
    }
    let start = items.len() * (index - 1) / count;
    let end = items.len() * index / count;
    &items[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_is_seeded_valid_and_round_trips() {
        let a = generate(50, 7);
        assert_eq!(a, generate(50, 7));
        assert_ne!(a, generate(50, 8));
        let uuids: std::collections::HashSet<_> = a.iter().map(|i| &i.uuid).collect();
        assert_eq!(uuids.len(), 50);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fleet.csv");
        write(&path, &a).unwrap();
        assert_eq!(read(&path).unwrap(), a);
    }

    #[test]
    fn ssids_round_trip_and_two_column_manifests_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let mut fleet = generate(3, 1);
        fleet[0].ssids = vec!["home-wifi".into()];
        fleet[1].ssids = vec!["home-wifi".into(), "office".into()];
        let path = dir.path().join("fleet.csv");
        write(&path, &fleet).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("uuid,pass_tmp,ssids\n"), "{text}");
        assert!(text.contains(",home-wifi|office\n"), "{text}");
        assert_eq!(read(&path).unwrap(), fleet);

        let old = dir.path().join("old.csv");
        let row = &fleet[2];
        std::fs::write(
            &old,
            format!("uuid,pass_tmp\n{},{}\n", row.uuid, row.pass_tmp),
        )
        .unwrap();
        assert_eq!(read(&old).unwrap(), std::slice::from_ref(row));

        std::fs::write(&old, format!("{},{},a/b\n", row.uuid, row.pass_tmp)).unwrap();
        let err = read(&old).unwrap_err().to_string();
        assert!(err.contains("line 1") && err.contains("ssid"), "{err}");
    }

    #[test]
    fn a_bad_line_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.csv");
        std::fs::write(&path, "uuid,pass_tmp\nnot-a-uuid,x\n").unwrap();
        let err = read(&path).unwrap_err().to_string();
        assert!(err.contains("line 2") && err.contains("uuid"), "{err}");
    }

    #[test]
    fn slices_partition_the_fleet() {
        let items: Vec<u32> = (0..10).collect();
        let parts: Vec<&[u32]> = (1..=3).map(|i| slice(&items, i, 3)).collect();
        assert_eq!(parts.concat(), items);
        assert!(slice(&items, 0, 3).is_empty() && slice(&items, 4, 3).is_empty());
    }
}

//! `import`: one batch of a manifest's rows. Each row is checked, then the
//! good ones go to the store as one batch, enrolled without replacing; a
//! bad or conflicting row is reported with its line, and does not stop the
//! others.

use super::enroll::{check_ssids, conflict};
use super::{internal, AdminResult};
use crate::store::{normalize_ssids, EnrollOutcome, EnrollRow, EnrollmentStore, StoreError};
use crate::worker::serve::Served;
use protocol::admin::{AdminOk, ImportReport, ImportRow, RejectedRow};
use protocol::onboarding::check_pass_tmp;
use protocol::DeviceUuid;
use tracing::info;

pub(super) async fn apply<S: EnrollmentStore>(
    worker: &Served<S>,
    rows: Vec<ImportRow>,
) -> AdminResult {
    let report = import(&*worker.store, rows).await.map_err(internal)?;
    worker.flush().await.map_err(internal)?;
    info!(
        added = report.added,
        added_any_ssid = report.added_any_ssid,
        unchanged = report.unchanged,
        rejected = report.rejected.len(),
        "import batch applied"
    );
    Ok(AdminOk::Imported(report))
}

/// Enrolls the rows that check out, and reports every row, rejected ones
/// in row order.
async fn import<S: EnrollmentStore>(
    store: &S,
    rows: Vec<ImportRow>,
) -> Result<ImportReport, StoreError> {
    let mut batch = Vec::with_capacity(rows.len());
    // Per row: None if it goes to the store, else why it was rejected.
    let checked: Vec<Option<String>> = rows
        .iter()
        .map(|row| match DeviceUuid::parse(&row.uuid) {
            Err(e) => Some(format!("uuid {e}")),
            Ok(id) => match check_pass_tmp(&row.pass_tmp) {
                Err(e) => Some(format!("pass_tmp {e}")),
                Ok(()) => match check_ssids(&row.ssids) {
                    Err(e) => Some(e),
                    Ok(()) => {
                        batch.push(EnrollRow {
                            uuid: id,
                            pass_tmp: row.pass_tmp.clone(),
                            ssids: normalize_ssids(&row.ssids),
                        });
                        None
                    }
                },
            },
        })
        .collect();
    let outcomes = store.import(&batch).await?;
    let mut outcomes = batch.iter().zip(outcomes);

    let mut report = ImportReport::default();
    for (row, rejected) in rows.into_iter().zip(checked) {
        let reason = match rejected {
            Some(reason) => reason,
            None => match outcomes.next().ok_or_else(too_few_outcomes)? {
                (sent, EnrollOutcome::Created | EnrollOutcome::Replaced) => {
                    report.added += 1;
                    if sent.ssids.is_empty() {
                        report.added_any_ssid += 1;
                    }
                    continue;
                }
                (_, EnrollOutcome::Unchanged) => {
                    report.unchanged += 1;
                    continue;
                }
                (sent, EnrollOutcome::Conflict) => {
                    let stored = store.get(&sent.uuid).await?;
                    conflict(stored.as_ref(), sent).into()
                }
            },
        };
        report.rejected.push(RejectedRow {
            line: row.line,
            uuid: row.uuid,
            reason,
        });
    }
    Ok(report)
}

/// A store that breaks [`EnrollmentStore::import`]'s one-outcome-per-row
/// contract: the batch is answered as a store failure.
fn too_few_outcomes() -> StoreError {
    StoreError::Backend("the store answered fewer outcomes than it was given rows".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    fn row(line: u64, uuid: &str, pass_tmp: &str) -> ImportRow {
        ImportRow {
            line,
            uuid: uuid.into(),
            pass_tmp: pass_tmp.into(),
            ssids: Vec::new(),
        }
    }

    #[tokio::test]
    async fn the_report_keeps_rejections_in_row_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let a = "00000000-0000-4000-8000-00000000000a";
        let b = "00000000-0000-4000-8000-00000000000b";
        store
            .enroll(&DeviceUuid::parse(a).unwrap(), "old", false)
            .await
            .unwrap();
        let rows = vec![
            row(1, a, "new"),
            row(2, "not-a-uuid", "p"),
            row(3, b, "p"),
            row(4, b, ""),
            row(5, a, "old"),
            row(6, b, "p"),
            row(7, b, "q"),
        ];
        let report = import(&store, rows).await.unwrap();
        assert_eq!((report.added, report.unchanged), (1, 2));
        let rejected: Vec<_> = report
            .rejected
            .iter()
            .map(|r| (r.line, r.uuid.as_str(), r.reason.as_str()))
            .collect();
        assert_eq!(rejected.len(), 4, "{rejected:?}");
        assert_eq!(
            rejected[0],
            (1, a, "already enrolled with another pass_tmp")
        );
        assert_eq!(rejected[1].0, 2);
        assert!(rejected[1].2.starts_with("uuid "), "{rejected:?}");
        assert_eq!(rejected[2].0, 4);
        assert!(rejected[2].2.starts_with("pass_tmp "), "{rejected:?}");
        assert_eq!(
            rejected[3],
            (7, b, "already enrolled with another pass_tmp")
        );
    }
}

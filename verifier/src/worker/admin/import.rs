//! `import`: one batch of a manifest's rows. Each row is checked and
//! enrolled without replacing; a bad or conflicting row is reported with
//! its line, and does not stop the others.

use super::{internal, AdminResult};
use crate::store::{EnrollOutcome, Store, StoreError};
use crate::worker::serve::Served;
use protocol::admin::{AdminOk, ImportReport, ImportRow, RejectedRow};
use protocol::onboarding::check_pass_tmp;
use protocol::DeviceUuid;
use tracing::info;

pub(super) async fn apply(worker: &Served, rows: Vec<ImportRow>) -> AdminResult {
    let report = import(&worker.store, rows).map_err(internal)?;
    worker.flush().await.map_err(internal)?;
    info!(
        added = report.added,
        unchanged = report.unchanged,
        rejected = report.rejected.len(),
        "import batch applied"
    );
    Ok(AdminOk::Imported(report))
}

fn import(store: &Store, rows: Vec<ImportRow>) -> Result<ImportReport, StoreError> {
    let mut report = ImportReport::default();
    for row in rows {
        let reject = |reason: String| RejectedRow {
            line: row.line,
            uuid: row.uuid.clone(),
            reason,
        };
        let id = match DeviceUuid::parse(&row.uuid) {
            Ok(id) => id,
            Err(e) => {
                report.rejected.push(reject(format!("uuid {e}")));
                continue;
            }
        };
        if let Err(e) = check_pass_tmp(&row.pass_tmp) {
            report.rejected.push(reject(format!("pass_tmp {e}")));
            continue;
        }
        match store.enroll(&id, &row.pass_tmp, false)? {
            EnrollOutcome::Created | EnrollOutcome::Replaced => report.added += 1,
            EnrollOutcome::Unchanged => report.unchanged += 1,
            EnrollOutcome::Conflict => {
                report
                    .rejected
                    .push(reject("already enrolled with another pass_tmp".into()));
            }
        }
    }
    Ok(report)
}

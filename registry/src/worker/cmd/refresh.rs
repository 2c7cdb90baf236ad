//! With a store shared by several registry instances: what another
//! instance changed in the gateway records (a registration, a drain, a
//! removal) is read back from the store every [`REFRESH`], and the counts
//! of assigned devices every [`RECOUNT_EVERY`] refreshes. Liveness is not
//! in the store: every instance hears every gateway's status itself.

use crate::store::RegistryStore;
use crate::worker::state::{GatewayState, Registry};
use std::time::Duration;
use tracing::{info, warn};

/// How often a registry on a shared store reads the gateway records back.
pub(crate) const REFRESH: Duration = Duration::from_secs(2);

/// Refreshes between two recounts of the assigned devices (which reads
/// every assignment's gateway).
const RECOUNT_EVERY: u32 = 15;

impl<S: RegistryStore> Registry<S> {
    pub(crate) async fn refresh(&mut self) {
        self.refreshes = self.refreshes.wrapping_add(1);
        let stored = match self.store.gateways().await {
            Ok(g) => g,
            Err(e) => return warn!(error = %e, "cannot read the gateway records back"),
        };
        let ids: std::collections::HashSet<&str> =
            stored.iter().map(|(id, _)| id.as_str()).collect();
        let gone: Vec<String> = self
            .gateways
            .iter()
            .filter(|(id, g)| g.record.registered && !ids.contains(id.as_str()))
            .map(|(id, _)| id.clone())
            .collect();
        for id in gone {
            info!(gateway_id = %id, "gateway removed by another registry instance");
            self.gateways.remove(&id);
            self.logins.set(&id, None);
        }
        for (id, record) in stored {
            self.logins.set(
                &id,
                record
                    .credential_sha256
                    .as_deref()
                    .filter(|_| record.registered),
            );
            match self.gateways.get_mut(&id) {
                Some(g) => {
                    if g.record.draining != record.draining {
                        info!(gateway_id = %id, draining = record.draining, "gateway drain mark changed by another registry instance");
                    }
                    g.record = record;
                }
                None => {
                    let state = GatewayState::new(&id, record, &self.metrics);
                    self.gateways.insert(id, state);
                }
            }
        }
        if self.refreshes.is_multiple_of(RECOUNT_EVERY) {
            self.recount().await;
        }
    }
}

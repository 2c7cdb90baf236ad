//! The read-only admin operations: `show` (a device's assignment and where
//! it was last seen), `history` (its audit log) and `gateways` (every
//! gateway with its liveness and counts).

use super::admin::{check_device, internal, refuse, AdminResult};
use crate::store::RegistryStore;
use crate::worker::state::Registry;
use protocol::registry_admin::{GatewayView, RegistryErrorCode, RegistryOk};

impl<S: RegistryStore> Registry<S> {
    pub(super) async fn show(&self, device_id: &str) -> AdminResult {
        check_device(device_id)?;
        match self.store.assignment(device_id).await.map_err(internal)? {
            Some(a) => self.view(device_id, &a, false).await,
            None => Err(refuse(
                RegistryErrorCode::NotFound,
                format!("{device_id} has no assignment"),
            )),
        }
    }

    pub(super) async fn history(&self, device_id: String) -> AdminResult {
        check_device(&device_id)?;
        let entries = self.store.history(&device_id).await.map_err(internal)?;
        if entries.is_empty() {
            return Err(refuse(
                RegistryErrorCode::NotFound,
                format!("{device_id} has no history"),
            ));
        }
        Ok(RegistryOk::History { device_id, entries })
    }

    pub(super) fn gateway_views(&self) -> RegistryOk {
        RegistryOk::Gateways {
            gateways: self
                .gateways
                .iter()
                .map(|(id, g)| GatewayView {
                    gateway_id: id.clone(),
                    address: g.record.address.clone(),
                    alive: g.alive,
                    draining: g.record.draining,
                    weight: g.record.weight,
                    assigned: g.assigned,
                    connected: g.connected.len() as u64,
                })
                .collect(),
        }
    }
}

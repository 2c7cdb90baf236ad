//! `assign` (a device that has no gateway yet) and `remap` (move one that
//! has). Both reply only once the change is durable and announced.

use super::admin::{check_device, internal, refuse, AdminResult};
use crate::store::{Assignment, RegistryStore};
use crate::worker::state::Registry;
use protocol::gateway::RedirectReason;
use protocol::now_ms;
use protocol::registry_admin::RegistryErrorCode;

impl<S: RegistryStore> Registry<S> {
    pub(super) async fn assign(&mut self, device_id: &str, gateway_id: &str) -> AdminResult {
        check_device(device_id)?;
        let current = self.store.assignment(device_id).await.map_err(internal)?;
        if let Some(a) = &current {
            if a.gateway_id == gateway_id {
                return self.view(device_id, a, false).await;
            }
            return Err(refuse(
                RegistryErrorCode::AlreadyAssigned,
                format!(
                    "{device_id} is assigned to {}; use remap to move it",
                    a.gateway_id
                ),
            ));
        }
        self.check_target(gateway_id)?;
        let mut batch = self.store.begin().await.map_err(internal)?;
        let m = self
            .set(&mut batch, device_id, gateway_id, None, "assign", None)
            .await
            .map_err(internal)?;
        self.commit(batch, std::slice::from_ref(&m))
            .await
            .map_err(internal)?;
        match self.store.assignment(device_id).await.map_err(internal)? {
            Some(a) => self.view(device_id, &a, true).await,
            None => Err(refuse(RegistryErrorCode::Internal, "assignment vanished")),
        }
    }

    pub(super) async fn remap(&mut self, device_id: &str, gateway_id: String) -> AdminResult {
        check_device(device_id)?;
        let Some(current) = self.store.assignment(device_id).await.map_err(internal)? else {
            return Err(refuse(
                RegistryErrorCode::NotFound,
                format!("{device_id} has no assignment; use assign"),
            ));
        };
        self.check_target(&gateway_id)?;
        if current.gateway_id == gateway_id {
            return self.view(device_id, &current, false).await;
        }
        let mut batch = self.store.begin().await.map_err(internal)?;
        let m = self
            .set(
                &mut batch,
                device_id,
                &gateway_id,
                Some(&current),
                "remap",
                Some(RedirectReason::Remapped),
            )
            .await
            .map_err(internal)?;
        self.commit(batch, std::slice::from_ref(&m))
            .await
            .map_err(internal)?;
        self.metrics.remap();
        let a = Assignment {
            gateway_id,
            epoch: m.epoch,
            updated_ms: now_ms(),
            device_key: m.device_key,
        };
        self.view(device_id, &a, true).await
    }
}

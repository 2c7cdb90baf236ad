//! `drain` (move a gateway's devices off it, one batch per request, and let
//! it take no new ones) and `undrain` (let it take devices again).

use super::admin::{internal, refuse, AdminResult};
use crate::policy::Policy;
use crate::store::RegistryStore;
use crate::worker::state::Registry;
use protocol::gateway::RedirectReason;
use protocol::registry_admin::{DrainReport, RegistryErrorCode, RegistryOk, MAX_DRAIN_BATCH};
use tracing::info;

impl<S: RegistryStore> Registry<S> {
    /// Marks the gateway draining and moves up to `limit` (at most
    /// [`MAX_DRAIN_BATCH`]) of its devices, to `to` or by policy, in one
    /// commit. The CLI repeats it until none remain.
    pub(super) async fn drain(
        &mut self,
        gateway_id: &str,
        to: Option<&str>,
        limit: usize,
    ) -> AdminResult {
        if !self.gateways.contains_key(gateway_id) {
            return Err(refuse(
                RegistryErrorCode::UnknownGateway,
                format!("no gateway {gateway_id:?}"),
            ));
        }
        if let Some(to) = to {
            if to == gateway_id {
                return Err(refuse(
                    RegistryErrorCode::BadRequest,
                    "cannot drain a gateway into itself",
                ));
            }
            self.check_target(to)?;
        } else if self.policy == Policy::Static {
            return Err(refuse(
                RegistryErrorCode::BadRequest,
                "the static policy allocates nothing: give --to",
            ));
        } else if self.candidates(Some(gateway_id)).is_empty() {
            return Err(refuse(
                RegistryErrorCode::NoGateway,
                "no other live gateway can take the devices",
            ));
        }
        // Only a drain that can proceed marks the gateway.
        if let Some(g) = self.gateways.get_mut(gateway_id) {
            if !g.record.draining {
                g.record.draining = true;
                let record = g.record.clone();
                self.store
                    .put_gateway(gateway_id, &record)
                    .await
                    .map_err(internal)?;
                info!(gateway_id, "gateway draining");
            }
        }
        let on_gateway = self
            .store
            .assignments_on(gateway_id)
            .await
            .map_err(internal)?;
        let mut batch = self.store.begin().await.map_err(internal)?;
        let mut moves = Vec::new();
        for (device, a) in on_gateway.iter().take(limit.clamp(1, MAX_DRAIN_BATCH)) {
            let target = match to {
                Some(t) => t.to_owned(),
                None => match self
                    .policy
                    .choose(device, &self.candidates(Some(gateway_id)))
                {
                    Some(t) => t.to_owned(),
                    None => break,
                },
            };
            let staged = self
                .set(
                    &mut batch,
                    device,
                    &target,
                    Some(a),
                    "drain",
                    Some(RedirectReason::Draining),
                )
                .await;
            match staged {
                Ok(m) => moves.push(m),
                Err(e) => {
                    // The batch is dropped unwritten; the counts it moved
                    // are taken back from the store.
                    self.recount().await;
                    return Err(internal(e));
                }
            }
        }
        // Also makes the draining mark durable, even when nothing moved.
        self.commit(batch, &moves).await.map_err(internal)?;
        Ok(RegistryOk::Drained(DrainReport {
            gateway_id: gateway_id.to_owned(),
            moved: moves.len() as u64,
            remaining: (on_gateway.len() - moves.len()) as u64,
        }))
    }

    pub(super) async fn undrain(&mut self, gateway_id: String) -> AdminResult {
        let Some(g) = self.gateways.get_mut(&gateway_id) else {
            return Err(refuse(
                RegistryErrorCode::UnknownGateway,
                format!("no gateway {gateway_id:?}"),
            ));
        };
        g.record.draining = false;
        let record = g.record.clone();
        self.store
            .put_gateway(&gateway_id, &record)
            .await
            .map_err(internal)?;
        self.flush().await.map_err(internal)?;
        Ok(RegistryOk::Undrained { gateway_id })
    }
}

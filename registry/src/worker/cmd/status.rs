//! `gateway/{id}/status`: a gateway announces itself (address, weight) or
//! goes down, by its own message or its last will. This is the only source
//! of liveness, and liveness is not persisted: only the address and weight
//! are stored.

use crate::store::{GatewayRecord, RegistryStore};
use crate::worker::state::{GatewayState, Registry};
use protocol::gateway::GatewayStatus;
use protocol::{decode, Segment};
use tracing::{debug, error, info, warn};

impl<S: RegistryStore> Registry<S> {
    pub(crate) async fn on_status(&mut self, gateway_id: &str, payload: &[u8]) {
        let status = match decode::<GatewayStatus>(payload) {
            Ok(s) if s.gateway_id == gateway_id && Segment::parse(gateway_id).is_ok() => s,
            Ok(_) => return warn!(gateway_id, "gateway status for another gateway ignored"),
            Err(e) => return warn!(gateway_id, error = %e, "malformed gateway status"),
        };
        if !status.alive {
            if let Some(g) = self.gateways.get_mut(gateway_id) {
                g.heard = true;
                if g.alive {
                    warn!(
                        gateway_id,
                        assigned = g.assigned,
                        "gateway down; its devices fail over when they re-query"
                    );
                }
                g.alive = false;
                g.connected.clear();
                g.connected_changed();
            }
            return;
        }
        if self.registration_required {
            return self.registered_up(gateway_id, &status);
        }
        let Some(address) = status.address.filter(|a| !a.is_empty()) else {
            return warn!(gateway_id, "gateway announced itself without an address");
        };
        let weight = status.weight.unwrap_or(1);
        let metrics = &self.metrics;
        let state = self
            .gateways
            .entry(gateway_id.to_owned())
            .or_insert_with(|| {
                let record = GatewayRecord {
                    registered: false,
                    credential_sha256: None,
                    address: String::new(),
                    weight,
                    draining: false,
                };
                GatewayState::new(gateway_id, record, metrics)
            });
        let changed = state.record.address != address || state.record.weight != weight;
        state.record.address = address;
        state.record.weight = weight;
        if !state.alive {
            info!(gateway_id, address = %state.record.address, weight, "gateway up");
        }
        state.alive = true;
        state.heard = true;
        if changed {
            let record = state.record.clone();
            if let Err(e) = self.store.put_gateway(gateway_id, &record).await {
                error!(gateway_id, error = %e, "cannot record gateway");
            }
        }
    }

    /// Secure mode: an `alive` from a registered gateway marks it up, and
    /// changes nothing else; from anyone else it is ignored. What the
    /// gateway says its address and weight are is not believed.
    fn registered_up(&mut self, gateway_id: &str, status: &GatewayStatus) {
        let Some(state) = self
            .gateways
            .get_mut(gateway_id)
            .filter(|g| g.record.registered)
        else {
            return warn!(target: "audit", gateway_id, "status of a gateway that is not registered ignored");
        };
        if status
            .address
            .as_deref()
            .is_some_and(|a| a != state.record.address)
        {
            debug!(gateway_id, announced = ?status.address, registered = %state.record.address, "announced address ignored: the registration's is used");
        }
        if !state.alive {
            info!(gateway_id, address = %state.record.address, weight = state.record.weight, "gateway up");
        }
        state.alive = true;
        state.heard = true;
    }
}

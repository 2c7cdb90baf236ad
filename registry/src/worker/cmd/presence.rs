//! `gateway/{id}/presence`: which devices connected to or left a gateway.
//! It keeps the connected set (and its gauge) and each device's last-seen
//! record, which is informational: written, never flushed on its own.

use crate::store::RegistryStore;
use crate::worker::state::Registry;
use protocol::gateway::{PresenceReport, MAX_ASSIGN_PAYLOAD};
use protocol::now_ms;
use protocol::registry_admin::LastSeen;
use tracing::{debug, warn};

impl<S: RegistryStore> Registry<S> {
    pub(crate) async fn on_presence(&mut self, gateway_id: &str, payload: &[u8]) {
        let report =
            match protocol::decode::decode_limited::<PresenceReport>(payload, MAX_ASSIGN_PAYLOAD) {
                Ok(r) => r,
                Err(e) => return warn!(gateway_id, error = %e, "malformed presence report"),
            };
        let Some(g) = self.gateways.get_mut(gateway_id) else {
            return debug!(gateway_id, "presence from an unknown gateway");
        };
        let now = now_ms();
        let mut seen = Vec::with_capacity(report.online.len() + report.offline.len());
        for (devices, online) in [(&report.online, true), (&report.offline, false)] {
            for device in devices {
                if online {
                    g.connected.insert(device.clone());
                } else {
                    g.connected.remove(device);
                }
                let at = LastSeen {
                    gateway_id: gateway_id.to_owned(),
                    at_ms: now,
                    online,
                };
                seen.push((device.as_str(), at));
            }
        }
        g.connected_changed();
        if let Err(e) = self.store.set_last_seen(&seen).await {
            warn!(error = %e, "cannot record presence");
        }
    }
}

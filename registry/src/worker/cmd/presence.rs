//! `gateway/{id}/presence`: which devices connected to or left a gateway.
//! It keeps the connected set (and its gauge) and each device's last-seen
//! record, which is informational: written, never flushed on its own.
//!
//! A report is untrusted input: ids that are not valid device ids are
//! dropped, and in secure mode a gateway is believed only about devices
//! assigned to it, so that neither the set nor the store grows with what
//! a gateway makes up.

use crate::store::RegistryStore;
use crate::worker::state::Registry;
use protocol::gateway::{check_device_id, PresenceReport, MAX_ASSIGN_PAYLOAD};
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
        if !self.gateways.contains_key(gateway_id) {
            return debug!(gateway_id, "presence from an unknown gateway");
        }
        let now = now_ms();
        let mut seen = Vec::with_capacity(report.online.len() + report.offline.len());
        let mut dropped = 0usize;
        for (devices, online) in [(&report.online, true), (&report.offline, false)] {
            for device in devices {
                if check_device_id(device).is_err() {
                    dropped += 1;
                    continue;
                }
                if self.registration_required && online {
                    match self.store.assignment(device).await {
                        Ok(Some(a)) if a.gateway_id == gateway_id => {}
                        Ok(_) => {
                            dropped += 1;
                            continue;
                        }
                        Err(e) => {
                            warn!(error = %e, "cannot check a reported device");
                            dropped += 1;
                            continue;
                        }
                    }
                }
                let Some(g) = self.gateways.get_mut(gateway_id) else {
                    return;
                };
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
        if let Some(g) = self.gateways.get(gateway_id) {
            g.connected_changed();
        }
        if dropped > 0 {
            warn!(target: "audit", gateway_id, dropped, "presence of devices not assigned to the gateway, or not valid ids, ignored");
        }
        if let Err(e) = self.store.set_last_seen(&seen).await {
            warn!(error = %e, "cannot record presence");
        }
    }
}

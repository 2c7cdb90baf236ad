//! `gateway/{id}/presence`: which devices connected to or left a gateway.
//! It keeps the connected set (and its gauge) and each device's last-seen
//! record, which is informational: written, never flushed on its own.
//!
//! A report is untrusted input, and checked in this order:
//! - it must come from a known gateway, within that gateway's rate
//!   ([`crate::worker::rate`]), decode, and carry at most
//!   [`MAX_PRESENCE_IDS`] ids per list; otherwise it is dropped unread,
//!   counted by reason (`platform_presence_reports_dropped_total`);
//! - each id, online or offline, must be a valid device id and, in secure
//!   mode, assigned to the reporting gateway. The assignments of a
//!   report's ids are read in one store read. An id that fails changes
//!   nothing in the store; the report's failures are counted
//!   (`platform_presence_ids_ignored_total`) and audited in one line.
//!
//! So neither the connected set nor the store grows with what a gateway
//! makes up. One exception keeps the set true without growing anything:
//! a device the gateway reported online, then reassigned elsewhere, is
//! still taken off its connected set when the gateway reports it offline.
//! In the walkthrough mode, which protects nothing, a valid id is believed
//! without its assignment being read.

use crate::store::{Assignment, RegistryStore, StoreError};
use crate::worker::rate::{Admit, PRESENCE_BURST, PRESENCE_PER_SEC};
use crate::worker::state::Registry;
use protocol::gateway::{check_device_id, PresenceReport, MAX_ASSIGN_PAYLOAD, MAX_PRESENCE_IDS};
use protocol::now_ms;
use protocol::registry_admin::LastSeen;
use std::collections::{HashMap, HashSet};
use std::time::Instant;
use tracing::{debug, warn};

impl<S: RegistryStore> Registry<S> {
    pub(crate) async fn on_presence(&mut self, gateway_id: &str, payload: &[u8]) {
        if !self.gateways.contains_key(gateway_id) {
            return debug!(gateway_id, "presence from an unknown gateway");
        }
        if let Admit::No { log } = self.presence_limits.admit(gateway_id, Instant::now()) {
            self.metrics.presence_dropped("rate_limited");
            if let Some(dropped) = log {
                warn!(
                    target: "audit",
                    gateway_id,
                    dropped,
                    burst = PRESENCE_BURST,
                    per_sec = PRESENCE_PER_SEC,
                    "presence reports dropped: over the gateway's rate"
                );
            }
            return;
        }
        let report = match protocol::decode::decode_limited::<PresenceReport>(
            payload,
            MAX_ASSIGN_PAYLOAD,
        ) {
            Ok(r) => r,
            Err(e) => {
                self.metrics.presence_dropped("malformed");
                return warn!(target: "audit", gateway_id, error = %e, "malformed presence report dropped");
            }
        };
        if report.online.len() > MAX_PRESENCE_IDS || report.offline.len() > MAX_PRESENCE_IDS {
            self.metrics.presence_dropped("too_many_ids");
            return warn!(
                target: "audit",
                gateway_id,
                online = report.online.len(),
                offline = report.offline.len(),
                max = MAX_PRESENCE_IDS,
                "presence report dropped: a list longer than a report may carry"
            );
        }
        self.apply_presence(gateway_id, &report).await;
    }

    /// Believes what `report` says of the devices assigned to `gateway_id`
    /// (secure mode) or of any valid device id (walkthrough).
    async fn apply_presence(&mut self, gateway_id: &str, report: &PresenceReport) {
        let valid = |id: &&String| check_device_id(id).is_ok();
        let ids: HashSet<&String> = report
            .online
            .iter()
            .chain(&report.offline)
            .filter(valid)
            .collect();
        let assigned = self
            .assigned_here(gateway_id, ids)
            .await
            .unwrap_or_else(|e| {
                warn!(gateway_id, error = %e, "cannot check a presence report; ignored");
                Assigned::These(HashSet::new())
            });
        let believed = |device: &str| match &assigned {
            Assigned::All => true,
            Assigned::These(here) => here.contains(device),
        };
        let Some(g) = self.gateways.get_mut(gateway_id) else {
            return;
        };
        let now = now_ms();
        let mut seen = Vec::new();
        let (mut malformed, mut unassigned) = (0usize, 0usize);
        for (devices, online) in [(&report.online, true), (&report.offline, false)] {
            for device in devices {
                if check_device_id(device).is_err() {
                    malformed += 1;
                    continue;
                }
                if !believed(device) {
                    // Taking a device off the set shrinks it: only a
                    // device once believed online here is in it.
                    if online || !g.connected.remove(device.as_str()) {
                        unassigned += 1;
                    }
                    continue;
                }
                if online {
                    g.connected.insert(device.clone());
                } else {
                    g.connected.remove(device.as_str());
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
        if malformed + unassigned > 0 {
            self.metrics
                .presence_ids_ignored((malformed + unassigned) as u64);
            warn!(
                target: "audit",
                gateway_id,
                malformed,
                unassigned,
                "presence of devices not assigned to the gateway, or not valid ids, ignored"
            );
        }
        if seen.is_empty() {
            return;
        }
        if let Err(e) = self.store.set_last_seen(&seen).await {
            warn!(error = %e, "cannot record presence");
        }
    }

    /// Which of `ids` are assigned to `gateway_id`, in one store read; in
    /// the walkthrough mode, all of them, unread.
    async fn assigned_here(
        &self,
        gateway_id: &str,
        ids: HashSet<&String>,
    ) -> Result<Assigned, StoreError> {
        if !self.registration_required {
            return Ok(Assigned::All);
        }
        if ids.is_empty() {
            return Ok(Assigned::These(HashSet::new()));
        }
        let ids: Vec<String> = ids.into_iter().cloned().collect();
        let found: HashMap<String, Assignment> = self.store.assignments_of(&ids).await?;
        Ok(Assigned::These(
            found
                .into_iter()
                .filter(|(_, a)| a.gateway_id == gateway_id)
                .map(|(d, _)| d)
                .collect(),
        ))
    }
}

/// The devices of a report assigned to the reporting gateway.
enum Assigned {
    /// Walkthrough mode: every valid id is believed.
    All,
    These(HashSet<String>),
}

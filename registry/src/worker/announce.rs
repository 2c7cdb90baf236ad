//! Telling the gateways about assignment changes, once they are durable.
//!
//! **Flush before announce.** [`Registry::commit`] is the only caller of
//! [`Registry::announce`], and it announces only once the batch's commit
//! has returned: an assignment anyone has heard of (a gateway, the device,
//! an admin) survives `kill -9`.
//!
//! **Admit the new before redirecting from the old.** For a batch of moves,
//! every new gateway gets its `add` first, then the old ones their `remove`
//! and the redirect notices. This is publish order, not a delivery
//! guarantee across two agents: a device that still arrives first is
//! refused, and asks again after a backoff.

use super::state::Registry;
use crate::store::{RegistryStore, StoreBatch, StoreError};
use protocol::gateway::{
    AssignUpdate, GatewayAnswer, Redirect, RedirectBatch, RedirectReason, ASSIGN_CHUNK,
    REDIRECT_CHUNK,
};
use protocol::topics;
use std::collections::HashMap;
use std::time::Instant;

/// One assignment change, announced to the gateways after it is durable.
#[derive(Clone)]
pub(super) struct Move {
    pub(super) device_id: String,
    pub(super) from: Option<String>,
    pub(super) to: String,
    pub(super) epoch: u64,
    /// The device's key, kept with its assignment: signed into the new
    /// assignment the redirect notice carries.
    pub(super) device_key: Option<String>,
    /// Whether the old gateway sends the device a redirect notice, and why.
    pub(super) notify: Option<RedirectReason>,
    /// As in the audit log: policy, failover, assign, remap, drain.
    pub(super) reason: &'static str,
}

impl<S: RegistryStore> Registry<S> {
    /// Commits the batch that staged `moves`, timing it, and once they
    /// are durable announces them. If the commit fails nothing is
    /// announced, and the counts are reloaded from the store.
    pub(super) async fn commit(
        &mut self,
        batch: S::Batch,
        moves: &[Move],
    ) -> Result<(), StoreError> {
        let started = Instant::now();
        let result = batch.commit().await;
        self.metrics.store_flush("registry", started.elapsed());
        if let Err(e) = result {
            self.recount().await;
            return Err(e);
        }
        self.announce(moves).await;
        Ok(())
    }

    /// Tells the gateways about durable changes: the new gateway admits
    /// the device first, then the old one forgets it and redirects it.
    async fn announce(&self, moves: &[Move]) {
        let mut adds: HashMap<&str, Vec<(String, u64)>> = HashMap::new();
        let mut removes: HashMap<&str, Vec<(String, u64)>> = HashMap::new();
        for m in moves {
            self.metrics.assignment(m.reason);
            adds.entry(&m.to)
                .or_default()
                .push((m.device_id.clone(), m.epoch));
            if let Some(from) = m.from.as_deref().filter(|f| *f != m.to) {
                removes
                    .entry(from)
                    .or_default()
                    .push((m.device_id.clone(), m.epoch));
            }
        }
        // Each change carries its epoch: another registry instance may
        // announce a newer change of the same device on its own link.
        for (gw, devices) in adds {
            for chunk in devices.chunks(ASSIGN_CHUNK) {
                let update = AssignUpdate {
                    add: chunk.iter().map(|(d, _)| d.clone()).collect(),
                    epochs: chunk.iter().map(|(_, e)| *e).collect(),
                    ..Default::default()
                };
                self.publish(topics::gateway_assign(gw), &update);
            }
        }
        for (gw, devices) in removes {
            for chunk in devices.chunks(ASSIGN_CHUNK) {
                let update = AssignUpdate {
                    remove: chunk.iter().map(|(d, _)| d.clone()).collect(),
                    epochs: chunk.iter().map(|(_, e)| *e).collect(),
                    ..Default::default()
                };
                self.publish(topics::gateway_assign(gw), &update);
            }
        }
        let mut notices: HashMap<&str, Vec<Redirect>> = HashMap::new();
        for m in moves {
            if let (Some(from), Some(reason)) = (m.from.as_deref(), m.notify) {
                if from != m.to {
                    let assignment = match self.assigned(
                        &m.device_id,
                        &m.to,
                        m.epoch,
                        m.device_key.as_deref(),
                    ) {
                        GatewayAnswer::Assigned(a) => Some(a),
                        GatewayAnswer::Refused(_) => None,
                    };
                    notices.entry(from).or_default().push(Redirect {
                        device_id: m.device_id.clone(),
                        reason,
                        epoch: m.epoch,
                        assignment,
                    });
                }
            }
        }
        for (gw, redirects) in notices {
            match self.gateways.get(gw) {
                Some(g) => g.redirects.inc_by(redirects.len() as u64),
                None => self.metrics.redirects(gw).inc_by(redirects.len() as u64),
            };
            for chunk in redirects.chunks(REDIRECT_CHUNK) {
                let batch = RedirectBatch {
                    redirects: chunk.to_vec(),
                };
                self.publish(topics::gateway_notify(gw), &batch);
            }
        }
    }
}

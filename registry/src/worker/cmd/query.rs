//! `registry/query`: a device asks for its gateway. The queries waiting
//! together come here as one batch (the group commit of `serve`); each is
//! resolved from the store, allocating by policy when the device has no
//! assignment or its gateway is dead. A query carrying the device's key
//! (secure mode) records it with the assignment when it is new, so that
//! every assignment signed for the device from then on names it, a move's
//! too: the device's gateway login must be signed by that key.

use super::CONFLICT_RETRIES;
use crate::policy::Policy;
use crate::store::{Assignment, RegistryStore, StoreBatch, StoreError};
use crate::worker::announce::Move;
use crate::worker::state::Registry;
use protocol::gateway::{GatewayAnswer, GatewayErrorCode, GatewayQuery};
use protocol::{decode, peek_str_field, topics};
use std::time::Instant;
use tracing::{debug, error, warn};

/// How a query is answered: at once, or once what it staged is durable.
enum Resolved {
    Now(GatewayAnswer),
    /// A new assignment, its key included.
    Moved(Move),
    /// The device's key, new, on its current assignment.
    Keyed {
        gateway_id: String,
        epoch: u64,
        device_key: String,
    },
}

impl<S: RegistryStore> Registry<S> {
    /// Answers a batch of gateway queries.
    pub(crate) async fn on_queries(&mut self, payloads: Vec<bytes::Bytes>) {
        let started = Instant::now();
        let mut refused: Vec<(String, GatewayAnswer)> = Vec::new();
        let mut queries: Vec<GatewayQuery> = Vec::with_capacity(payloads.len());
        for payload in &payloads {
            match decode::<GatewayQuery>(payload).and_then(|q| q.validate().map(|()| q)) {
                Ok(q) => queries.push(q),
                Err(e) => {
                    warn!(error = %e, "malformed gateway query");
                    if let Some(id) = peek_str_field(payload, "device_id")
                        .filter(|id| protocol::check_client_id(id).is_ok())
                    {
                        let answer = GatewayAnswer::refused(
                            &id,
                            GatewayErrorCode::BadRequest,
                            e.to_string(),
                        );
                        refused.push((id, answer));
                    } else {
                        // Nobody to answer; it still counts as refused.
                        self.metrics.gateway_query(false);
                    }
                }
            }
        }
        let mut answers = Vec::with_capacity(queries.len() + refused.len());
        answers.extend(refused);
        answers.extend(self.resolve_all(&queries).await);
        for (device_id, answer) in answers {
            let assigned = matches!(answer, GatewayAnswer::Assigned(_));
            self.publish(topics::device_gateway(&device_id), &answer);
            self.metrics.gateway_query(assigned);
            self.metrics.query_answered(started.elapsed());
        }
    }

    /// Resolves every query of a group in one store batch, made durable by
    /// its one commit before any answer, so a thousand devices failing
    /// over cost one commit, not a thousand. A commit that lost a race to
    /// another registry instance changed nothing; the group is resolved
    /// again from what is stored now (up to [`CONFLICT_RETRIES`] times in
    /// all), so a device gets the assignment that won, never one that was
    /// not recorded.
    async fn resolve_all(&mut self, queries: &[GatewayQuery]) -> Vec<(String, GatewayAnswer)> {
        let devices: Vec<String> = queries.iter().map(|q| q.device_id.clone()).collect();
        let mut attempt = 1;
        loop {
            let mut batch = match self.store.begin().await {
                Ok(b) => b,
                Err(e) => {
                    error!(error = %e, devices = devices.len(), "cannot start a store batch");
                    return devices
                        .iter()
                        .map(|d| (d.clone(), storage_failure(d)))
                        .collect();
                }
            };
            if let Err(e) = batch.prefetch(&devices).await {
                error!(error = %e, devices = devices.len(), "store lookup failed");
                return devices
                    .iter()
                    .map(|d| (d.clone(), storage_failure(d)))
                    .collect();
            }
            let mut resolved: Vec<(String, Resolved)> = Vec::with_capacity(devices.len());
            let mut moves = Vec::new();
            let mut keyed = false;
            for query in queries {
                let r = self.resolve(&mut batch, query).await;
                match &r {
                    Resolved::Moved(m) => moves.push(m.clone()),
                    Resolved::Keyed { .. } => keyed = true,
                    Resolved::Now(_) => {}
                }
                resolved.push((query.device_id.clone(), r));
            }
            let durable = if moves.is_empty() && !keyed {
                // Nothing changed: nothing to commit.
                true
            } else {
                match self.commit(batch, &moves).await {
                    Ok(()) => true,
                    Err(StoreError::Conflict { device_id, .. }) if attempt < CONFLICT_RETRIES => {
                        debug!(
                            device_id,
                            attempt,
                            "another registry changed a device first; resolving the group again"
                        );
                        attempt += 1;
                        continue;
                    }
                    Err(e) => {
                        error!(error = %e, devices = moves.len(), "commit failed; the assignments are not confirmed");
                        false
                    }
                }
            };
            return resolved
                .into_iter()
                .map(|(device_id, r)| {
                    let answer = match r {
                        Resolved::Now(answer) => answer,
                        Resolved::Moved(m) if durable => {
                            self.assigned(&device_id, &m.to, m.epoch, m.device_key.as_deref())
                        }
                        Resolved::Keyed {
                            gateway_id,
                            epoch,
                            device_key,
                        } if durable => {
                            self.assigned(&device_id, &gateway_id, epoch, Some(&device_key))
                        }
                        Resolved::Moved(_) | Resolved::Keyed { .. } => storage_failure(&device_id),
                    };
                    (device_id, answer)
                })
                .collect();
        }
    }

    /// The device's live gateway, allocating one if it has none or its
    /// gateway is dead. A new assignment, or a new key, is staged in
    /// `batch`, not yet durable: the caller commits before answering.
    /// Reads go through the batch, so a device queried twice in one batch
    /// is allocated once.
    async fn resolve(&mut self, batch: &mut S::Batch, query: &GatewayQuery) -> Resolved {
        let device_id = query.device_id.as_str();
        let current = match batch.assignment(device_id).await {
            Ok(a) => a,
            Err(e) => {
                error!(device_id, error = %e, "store lookup failed");
                return Resolved::Now(storage_failure(device_id));
            }
        };
        if let Some(a) = &current {
            if self.is_alive(&a.gateway_id) || self.presumed_alive(&a.gateway_id) {
                return self.keep(batch, query, a).await;
            }
        } else if !self.allow_unknown {
            return Resolved::Now(GatewayAnswer::refused(
                device_id,
                GatewayErrorCode::Unassigned,
                "this device is not registered",
            ));
        }
        let reason = if current.is_some() {
            "failover"
        } else {
            "policy"
        };
        let choice = self
            .policy
            .choose(device_id, &self.candidates(None))
            .map(str::to_owned);
        let Some(to) = choice else {
            return Resolved::Now(if self.policy == Policy::Static && current.is_none() {
                GatewayAnswer::refused(
                    device_id,
                    GatewayErrorCode::Unassigned,
                    "no gateway is assigned to this device",
                )
            } else {
                GatewayAnswer::refused(
                    device_id,
                    GatewayErrorCode::NoGateway,
                    "no live gateway can take this device",
                )
            });
        };
        let mut m = match self
            .set(batch, device_id, &to, current.as_ref(), reason, None)
            .await
        {
            Ok(m) => m,
            Err(e) => {
                error!(device_id, error = %e, "cannot record assignment");
                return Resolved::Now(storage_failure(device_id));
            }
        };
        if let Some(key) = &query.device_key {
            if let Err(e) = batch.set_device_key(device_id, key).await {
                error!(device_id, error = %e, "cannot record the device key");
                return Resolved::Now(storage_failure(device_id));
            }
            m.device_key = Some(key.clone());
        }
        Resolved::Moved(m)
    }

    /// The device stays on its live gateway `current`: answered at once,
    /// unless the query brings a key other than the one recorded, which is
    /// staged first.
    async fn keep(
        &mut self,
        batch: &mut S::Batch,
        query: &GatewayQuery,
        current: &Assignment,
    ) -> Resolved {
        let device_id = query.device_id.as_str();
        let Some(key) = query
            .device_key
            .as_deref()
            .filter(|k| current.device_key.as_deref() != Some(*k))
        else {
            let key = query
                .device_key
                .as_deref()
                .or(current.device_key.as_deref());
            return Resolved::Now(self.assigned(
                device_id,
                &current.gateway_id,
                current.epoch,
                key,
            ));
        };
        match batch.set_device_key(device_id, key).await {
            Ok(_) => {
                debug!(device_id, gateway_id = %current.gateway_id, "device key recorded");
                Resolved::Keyed {
                    gateway_id: current.gateway_id.clone(),
                    epoch: current.epoch,
                    device_key: key.to_owned(),
                }
            }
            Err(e) => {
                error!(device_id, error = %e, "cannot record the device key");
                Resolved::Now(storage_failure(device_id))
            }
        }
    }
}

/// The refusal of a device whose assignment the store could not read or
/// make durable: nothing was decided, and the device asks again.
fn storage_failure(device_id: &str) -> GatewayAnswer {
    GatewayAnswer::refused(
        device_id,
        GatewayErrorCode::Unavailable,
        "the registry's store is unavailable; ask again",
    )
}

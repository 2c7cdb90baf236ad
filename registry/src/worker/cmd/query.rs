//! `registry/query`: a device asks for its gateway. The queries waiting
//! together come here as one batch (the group commit of `serve`); each is
//! resolved from the store, allocating by policy when the device has no
//! assignment or its gateway is dead.

use crate::policy::Policy;
use crate::store::{RegistryStore, StoreBatch};
use crate::worker::announce::Move;
use crate::worker::state::Registry;
use protocol::gateway::{GatewayAnswer, GatewayErrorCode, GatewayQuery};
use protocol::{decode, peek_str_field, topics};
use std::time::Instant;
use tracing::{error, warn};

/// How a query is answered: at once, or once its new assignment is durable.
enum Resolved {
    Now(GatewayAnswer),
    Moved(Move),
}

impl<S: RegistryStore> Registry<S> {
    /// Answers a batch of gateway queries. Every new assignment among them
    /// is staged in one store batch and made durable by its one commit
    /// before any answer goes out, so a thousand devices failing over cost
    /// one fsync, not a thousand.
    pub(crate) async fn on_queries(&mut self, payloads: Vec<bytes::Bytes>) {
        let started = Instant::now();
        let mut answers: Vec<(String, Resolved)> = Vec::with_capacity(payloads.len());
        let mut moves = Vec::new();
        let mut batch = match self.store.begin().await {
            Ok(b) => Some(b),
            Err(e) => {
                error!(error = %e, devices = payloads.len(), "cannot start a store batch");
                None
            }
        };
        for payload in &payloads {
            let query = match decode::<GatewayQuery>(payload).and_then(|q| q.validate().map(|()| q))
            {
                Ok(q) => q,
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
                        answers.push((id, Resolved::Now(answer)));
                    } else {
                        // Nobody to answer; it still counts as refused.
                        self.metrics.gateway_query(false);
                    }
                    continue;
                }
            };
            let resolved = match batch.as_mut() {
                Some(b) => self.resolve(b, &query.device_id).await,
                None => Resolved::Now(storage_failure(&query.device_id)),
            };
            if let Resolved::Moved(m) = &resolved {
                moves.push(m.clone());
            }
            answers.push((query.device_id, resolved));
        }
        let durable = match batch {
            Some(b) if !moves.is_empty() => match self.commit(b, &moves).await {
                Ok(()) => true,
                Err(e) => {
                    error!(error = %e, devices = moves.len(), "commit failed; the assignments are not confirmed");
                    false
                }
            },
            // Nothing changed: nothing to commit.
            _ => true,
        };
        for (device_id, resolved) in answers {
            let answer = match resolved {
                Resolved::Now(answer) => answer,
                Resolved::Moved(m) if durable => self.assigned(&device_id, &m.to, m.epoch),
                Resolved::Moved(_) => storage_failure(&device_id),
            };
            let assigned = matches!(answer, GatewayAnswer::Assigned(_));
            self.publish(topics::device_gateway(&device_id), &answer);
            self.metrics.gateway_query(assigned);
            self.metrics.query_answered(started.elapsed());
        }
    }

    /// The device's live gateway, allocating one if it has none or its
    /// gateway is dead. A new assignment is staged in `batch`, not yet
    /// durable: the caller commits before answering. Reads go through the
    /// batch, so a device queried twice in one batch is allocated once.
    async fn resolve(&mut self, batch: &mut S::Batch, device_id: &str) -> Resolved {
        let current = match batch.assignment(device_id).await {
            Ok(a) => a,
            Err(e) => {
                error!(device_id, error = %e, "store lookup failed");
                return Resolved::Now(storage_failure(device_id));
            }
        };
        if let Some(a) = &current {
            if self.is_alive(&a.gateway_id) || self.presumed_alive(&a.gateway_id) {
                return Resolved::Now(self.assigned(device_id, &a.gateway_id, a.epoch));
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
        match self
            .set(batch, device_id, &to, current.as_ref(), reason, None)
            .await
        {
            Ok(m) => Resolved::Moved(m),
            Err(e) => {
                error!(device_id, error = %e, "cannot record assignment");
                Resolved::Now(storage_failure(device_id))
            }
        }
    }
}

/// The refusal of a device whose assignment the store could not read or
/// make durable.
fn storage_failure(device_id: &str) -> GatewayAnswer {
    GatewayAnswer::refused(
        device_id,
        GatewayErrorCode::NoGateway,
        "registry storage failure",
    )
}

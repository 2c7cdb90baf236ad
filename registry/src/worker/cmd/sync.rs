//! `registry/sync`: a gateway agent asks for its snapshot, every device
//! assigned to it. The first chunk has `reset` set, so the agent forgets
//! what it had: a move whose announcement it missed is settled here.

use crate::store::RegistryStore;
use crate::worker::state::Registry;
use protocol::gateway::{AssignUpdate, SyncRequest, ASSIGN_CHUNK};
use protocol::{decode, topics, Segment};
use tracing::{debug, error, warn};

impl<S: RegistryStore> Registry<S> {
    pub(crate) async fn on_sync(&mut self, payload: &[u8]) {
        let req = match decode::<SyncRequest>(payload) {
            Ok(r) if Segment::parse(&r.gateway_id).is_ok() => r,
            _ => return warn!("malformed sync request"),
        };
        let devices: Vec<String> = match self.store.assignments_on(&req.gateway_id).await {
            Ok(on) => on.into_iter().map(|(device, _)| device).collect(),
            Err(e) => return error!(error = %e, "cannot read assignments"),
        };
        debug!(gateway_id = %req.gateway_id, devices = devices.len(), "sending assignment snapshot");
        let mut chunks = devices.chunks(ASSIGN_CHUNK);
        let first = AssignUpdate {
            reset: true,
            add: chunks.next().map(<[String]>::to_vec).unwrap_or_default(),
            ..Default::default()
        };
        let topic = topics::gateway_assign(&req.gateway_id);
        self.publish(topic.clone(), &first);
        for chunk in chunks {
            let update = AssignUpdate {
                add: chunk.to_vec(),
                ..Default::default()
            };
            self.publish(topic.clone(), &update);
        }
    }
}

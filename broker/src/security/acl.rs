//! The platform broker's topic ACL is the verifier's
//! ([`verifier::auth::acl`]: one set of rules, which an external broker
//! is served over HTTP too); this maps rumqttd's question onto it.

use crate::admission::{AclAction, AclRequest};
use verifier::auth::{Action, Request};

/// rumqttd's PUBLISH, SUBSCRIBE filter or last will, as the ACL asks it.
pub(super) fn request<'a>(request: &AclRequest<'a>) -> Request<'a> {
    Request {
        action: match request.action {
            AclAction::Publish => Action::Publish,
            AclAction::Subscribe => Action::Subscribe,
        },
        topic: request.topic,
        payload: request.payload,
        retain: request.retain,
    }
}

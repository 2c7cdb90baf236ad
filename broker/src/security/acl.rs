//! The platform broker's topic ACL for each role but admin (who may use
//! every topic). It asks protocol what a topic is and whose it is
//! ([`Topic::parse`], [`Topic::owner`]); it spells no topic itself, so the
//! grammar has one owner.

use crate::admission::AclAction;
use protocol::topics::{Level, Owner, Topic};

/// An AP reads access requests and proofs, and its verifier answers and
/// confirmations; it writes verification requests, challenges and
/// responses to devices, prompts and outcome reports.
pub(super) fn ap_may(topic: &str, action: AclAction) -> bool {
    let Some(topic) = Topic::parse(topic) else {
        return false;
    };
    match action {
        AclAction::Subscribe => matches!(
            topic,
            Topic::AccessRequest { .. }
                | Topic::AccessProof { .. }
                | Topic::VerifyResponse { .. }
                | Topic::ApConfirm { .. }
                | Topic::ApPrompt { .. }
        ),
        AclAction::Publish => match topic {
            Topic::VerifyRequest => true,
            Topic::AccessResponse { .. }
            | Topic::AccessChallenge { .. }
            | Topic::ApPrompt { .. }
            | Topic::ApConfirm { .. }
            | Topic::ApOutcome { .. } => topic.is_name(),
            _ => false,
        },
    }
}

/// A gateway agent reads its assignments and redirect requests; it
/// writes its status and presence and asks for its snapshot.
pub(super) fn gateway_may(topic: &str, action: AclAction) -> bool {
    let Some(topic) = Topic::parse(topic) else {
        return false;
    };
    match action {
        AclAction::Subscribe => matches!(
            topic,
            Topic::GatewayAssign { .. } | Topic::GatewayNotify { .. }
        ),
        AclAction::Publish => match topic {
            Topic::RegistrySync => true,
            Topic::GatewayStatus { .. } | Topic::GatewayPresence { .. } => topic.is_name(),
            _ => false,
        },
    }
}

/// A device reads only its own topics; it writes access requests and
/// proofs, and gateway queries.
pub(super) fn device_may(client_id: &str, topic: &str, action: AclAction) -> bool {
    let Some(topic) = Topic::parse(topic) else {
        return false;
    };
    match action {
        AclAction::Subscribe => topic.owner() == Owner::Device(Level::Id(client_id)),
        AclAction::Publish => match topic {
            Topic::RegistryQuery => true,
            Topic::AccessRequest { .. } | Topic::AccessProof { .. } => topic.is_name(),
            _ => false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UUID: &str = "6f1c2b8e-0b5d-4a8f-9e8c-2b7d8e9f0a1b";

    #[test]
    fn each_role_is_confined_to_its_topics() {
        use AclAction::*;
        assert!(device_may(
            UUID,
            &format!("device/{UUID}/gateway"),
            Subscribe
        ));
        assert!(!device_may(UUID, "device/other/gateway", Subscribe));
        assert!(!device_may(UUID, "#", Subscribe));
        assert!(!device_may(UUID, "device/+/access/response", Subscribe));
        assert!(!device_may(UUID, &format!("device/{UUID}/#"), Subscribe));
        assert!(device_may(UUID, "registry/query", Publish));
        assert!(device_may(UUID, "wlan/home/access/request", Publish));
        assert!(!device_may(UUID, "registry/admin/request", Publish));
        assert!(!device_may(UUID, "verifier/admin/request", Publish));
        assert!(!device_may(
            UUID,
            &format!("device/{UUID}/gateway"),
            Publish
        ));
        assert!(!device_may(UUID, "ap/ap-1/verify/response", Publish));

        assert!(ap_may("wlan/+/access/request", Subscribe));
        assert!(ap_may("ap/ap-1/verify/response", Subscribe));
        assert!(!ap_may("#", Subscribe));
        assert!(!ap_may("device/+/gateway", Subscribe));
        assert!(!ap_may("device/+/access/response", Subscribe));
        assert!(ap_may(&format!("device/{UUID}/access/response"), Publish));
        assert!(ap_may("verifier/verify/request", Publish));
        assert!(!ap_may("registry/admin/request", Publish));
        assert!(!ap_may(&format!("device/{UUID}/gateway"), Publish));

        assert!(gateway_may("gateway/gw-1/assign", Subscribe));
        assert!(!gateway_may("gateway/#", Subscribe));
        assert!(!gateway_may("#", Subscribe));
        assert!(gateway_may("gateway/gw-1/status", Publish));
        assert!(gateway_may("registry/sync", Publish));
        assert!(!gateway_may("registry/admin/request", Publish));
        assert!(!gateway_may(&format!("device/{UUID}/gateway"), Publish));
    }
}

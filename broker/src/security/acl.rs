//! The platform broker's topic ACL: each identity is bound to its own
//! topics. It asks protocol what a topic is and whose it is
//! ([`Topic::parse`], [`Topic::owner`]); it spells no topic itself, so the
//! grammar has one owner. Where a message names an identity in its
//! payload too (a verification request its AP, a query its device), the
//! payload must name the publisher, so that the workers can believe it.
//!
//! - an admin may do anything, and is the only one who may retain;
//! - AP `A` reads access requests and proofs of the SSIDs it is registered
//!   for, and its own verifier answers, prompts and confirmations; it
//!   writes verification requests as itself, challenges and responses to
//!   devices, and its own prompts, confirmations and outcome reports;
//! - gateway `G` reads its own assignments and redirect requests, and
//!   writes its own status (as itself), presence and snapshot requests;
//! - a device reads only its own topics, and writes access requests,
//!   proofs and gateway queries as itself;
//! - a device not onboarded yet reads only its own access answers,
//!   challenges and confirmations, and writes only access requests and
//!   proofs as itself, at a bounded rate.

use crate::admission::{AclAction, AclRequest};
use protocol::topics::{Level, Owner, Topic};
use protocol::DeviceUuid;

/// Whose rules apply to a client, as its username says (the login was
/// checked at CONNECT).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Who<'a> {
    Admin,
    Ap(&'a str),
    Gateway(&'a str),
    Device(&'a str),
    /// A device not onboarded yet (its client id is its UUID): it may only
    /// onboard.
    Onboarding,
    /// Admitted under no identity this ACL knows: may do nothing.
    Nobody,
}

/// Whether `who`, connected as `client_id`, may make `request`.
/// `ssids(ap_id)` are the SSIDs an AP is registered for, asked only when
/// an AP subscribes to an SSID's topics.
pub(super) fn may(
    who: &Who,
    client_id: &str,
    request: &AclRequest,
    ssids: impl Fn(&str) -> Vec<String>,
) -> bool {
    if *who == Who::Admin {
        return true;
    }
    if request.retain {
        return false;
    }
    let Some(topic) = Topic::parse(request.topic) else {
        return false;
    };
    match *who {
        Who::Ap(ap_id) => ap_may(ap_id, &topic, request, ssids),
        Who::Gateway(gateway_id) => gateway_may(gateway_id, &topic, request),
        Who::Device(_) => device_may(client_id, &topic, request),
        Who::Onboarding => onboarding_may(client_id, &topic, request),
        Who::Admin | Who::Nobody => false,
    }
}

fn ap_may(
    ap_id: &str,
    topic: &Topic,
    request: &AclRequest,
    ssids: impl Fn(&str) -> Vec<String>,
) -> bool {
    let own = topic.owner() == Owner::Ap(Level::Id(ap_id));
    match request.action {
        AclAction::Subscribe => match topic.owner() {
            Owner::Ssid(Level::Id(ssid)) => ssids(ap_id).iter().any(|s| s == ssid),
            _ => {
                own && matches!(
                    topic,
                    Topic::VerifyResponse { .. } | Topic::ApConfirm { .. } | Topic::ApPrompt { .. }
                )
            }
        },
        AclAction::Publish => match topic {
            Topic::VerifyRequest => names(request.payload, "ap_id", ap_id),
            Topic::AccessResponse { .. } | Topic::AccessChallenge { .. } => topic.is_name(),
            Topic::ApPrompt { .. } | Topic::ApConfirm { .. } | Topic::ApOutcome { .. } => own,
            _ => false,
        },
    }
}

fn gateway_may(gateway_id: &str, topic: &Topic, request: &AclRequest) -> bool {
    let own = topic.owner() == Owner::Gateway(Level::Id(gateway_id));
    match request.action {
        AclAction::Subscribe => {
            own && matches!(
                topic,
                Topic::GatewayAssign { .. } | Topic::GatewayNotify { .. }
            )
        }
        AclAction::Publish => match topic {
            Topic::RegistrySync => names(request.payload, "gateway_id", gateway_id),
            Topic::GatewayStatus { .. } => own && names(request.payload, "gateway_id", gateway_id),
            Topic::GatewayPresence { .. } => own,
            _ => false,
        },
    }
}

fn device_may(client_id: &str, topic: &Topic, request: &AclRequest) -> bool {
    match request.action {
        AclAction::Subscribe => topic.owner() == Owner::Device(Level::Id(client_id)),
        AclAction::Publish => match topic {
            Topic::RegistryQuery => names(request.payload, "device_id", client_id),
            Topic::AccessRequest { .. } | Topic::AccessProof { .. } => {
                topic.is_name() && names_device(request.payload, client_id)
            }
            _ => false,
        },
    }
}

/// A device that is onboarding reads its access answers, challenges and
/// its user's confirmations, and sends access requests and proofs, as
/// itself; nothing else (no gateway query: it has no credential yet).
fn onboarding_may(client_id: &str, topic: &Topic, request: &AclRequest) -> bool {
    match request.action {
        AclAction::Subscribe => {
            topic.owner() == Owner::Device(Level::Id(client_id))
                && matches!(
                    topic,
                    Topic::AccessResponse { .. }
                        | Topic::AccessChallenge { .. }
                        | Topic::DeviceConfirm { .. }
                )
        }
        AclAction::Publish => {
            matches!(
                topic,
                Topic::AccessRequest { .. } | Topic::AccessProof { .. }
            ) && topic.is_name()
                && names_device(request.payload, client_id)
        }
    }
}

/// Whether the JSON `payload`'s string `field` is `id`.
fn names(payload: &[u8], field: &str, id: &str) -> bool {
    protocol::peek_str_field(payload, field).is_some_and(|v| v == id)
}

/// Whether the JSON `payload`'s `uuid` is the device `client_id`, in any
/// spelling of the same UUID.
fn names_device(payload: &[u8], client_id: &str) -> bool {
    let Some(uuid) = protocol::peek_str_field(payload, "uuid") else {
        return false;
    };
    match (DeviceUuid::parse(&uuid), DeviceUuid::parse(client_id)) {
        (Ok(a), Ok(b)) => a.key() == b.key(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UUID: &str = "6f1c2b8e-0b5d-4a8f-9e8c-2b7d8e9f0a1b";
    const OTHER: &str = "00000000-0000-4000-8000-000000000001";

    fn req<'a>(action: AclAction, topic: &'a str, payload: &'a [u8]) -> AclRequest<'a> {
        AclRequest {
            action,
            topic,
            payload,
            retain: false,
        }
    }

    fn ap_may_(topic: &str, action: AclAction, payload: &[u8]) -> bool {
        may(
            &Who::Ap("ap-1"),
            "ap.ap-1",
            &req(action, topic, payload),
            |id| {
                if id == "ap-1" {
                    vec!["home".into()]
                } else {
                    Vec::new()
                }
            },
        )
    }

    fn gateway_may_(topic: &str, action: AclAction, payload: &[u8]) -> bool {
        may(
            &Who::Gateway("gw-1"),
            "gateway.gw-1",
            &req(action, topic, payload),
            |_| Vec::new(),
        )
    }

    fn device_may_(topic: &str, action: AclAction, payload: &[u8]) -> bool {
        may(
            &Who::Device(UUID),
            UUID,
            &req(action, topic, payload),
            |_| Vec::new(),
        )
    }

    #[test]
    fn an_ap_is_bound_to_its_own_topics_and_ssids() {
        use AclAction::*;
        assert!(ap_may_("wlan/home/access/request", Subscribe, b""));
        assert!(ap_may_("wlan/home/access/proof", Subscribe, b""));
        assert!(
            !ap_may_("wlan/office/access/request", Subscribe, b""),
            "not its SSID"
        );
        assert!(
            !ap_may_("wlan/+/access/request", Subscribe, b""),
            "every SSID"
        );
        assert!(ap_may_("ap/ap-1/verify/response", Subscribe, b""));
        assert!(!ap_may_("ap/ap-2/verify/response", Subscribe, b""));
        assert!(!ap_may_("ap/+/prompt", Subscribe, b""));
        assert!(ap_may_("ap/ap-1/confirm", Subscribe, b""));
        assert!(!ap_may_("#", Subscribe, b""));
        assert!(!ap_may_("device/+/access/response", Subscribe, b""));

        let as_me = br#"{"request_id":"r","ap_id":"ap-1","uuid":"u","ap_key":"k"}"#;
        let as_other = br#"{"request_id":"r","ap_id":"ap-9","uuid":"u","ap_key":"k"}"#;
        assert!(ap_may_("verifier/verify/request", Publish, as_me));
        assert!(
            !ap_may_("verifier/verify/request", Publish, as_other),
            "a claimed ap_id"
        );
        assert!(ap_may_(
            &format!("device/{UUID}/access/response"),
            Publish,
            b"{}"
        ));
        assert!(ap_may_(
            &format!("device/{UUID}/access/challenge"),
            Publish,
            b"{}"
        ));
        assert!(ap_may_("ap/ap-1/prompt", Publish, b"{}"));
        assert!(ap_may_("ap/ap-1/outcome", Publish, b"{}"));
        assert!(
            !ap_may_("ap/ap-2/confirm", Publish, b"{}"),
            "another AP's prompt"
        );
        assert!(!ap_may_("ap/ap-2/outcome", Publish, b"{}"));
        assert!(!ap_may_("wlan/home/access/request", Publish, b"{}"));
        assert!(!ap_may_("registry/admin/request", Publish, b"{}"));
        assert!(!ap_may_(&format!("device/{UUID}/gateway"), Publish, b"{}"));
    }

    #[test]
    fn a_gateway_is_bound_to_its_own_topics() {
        use AclAction::*;
        assert!(gateway_may_("gateway/gw-1/assign", Subscribe, b""));
        assert!(gateway_may_("gateway/gw-1/notify", Subscribe, b""));
        assert!(!gateway_may_("gateway/gw-2/assign", Subscribe, b""));
        assert!(!gateway_may_("gateway/+/assign", Subscribe, b""));
        assert!(!gateway_may_("gateway/#", Subscribe, b""));
        let me = br#"{"gateway_id":"gw-1","alive":true,"address":"x:1"}"#;
        let other = br#"{"gateway_id":"gw-2","alive":true,"address":"x:1"}"#;
        assert!(gateway_may_("gateway/gw-1/status", Publish, me));
        assert!(
            !gateway_may_("gateway/gw-2/status", Publish, other),
            "the hijack"
        );
        assert!(!gateway_may_("gateway/gw-1/status", Publish, other));
        assert!(gateway_may_("gateway/gw-1/presence", Publish, b"{}"));
        assert!(!gateway_may_("gateway/gw-2/presence", Publish, b"{}"));
        assert!(gateway_may_(
            "registry/sync",
            Publish,
            br#"{"gateway_id":"gw-1"}"#
        ));
        assert!(!gateway_may_(
            "registry/sync",
            Publish,
            br#"{"gateway_id":"gw-2"}"#
        ));
        assert!(!gateway_may_("registry/admin/request", Publish, b"{}"));
        assert!(!gateway_may_(
            &format!("device/{UUID}/gateway"),
            Publish,
            b"{}"
        ));
    }

    #[test]
    fn a_device_reads_its_own_topics_and_speaks_only_for_itself() {
        use AclAction::*;
        assert!(device_may_(
            &format!("device/{UUID}/gateway"),
            Subscribe,
            b""
        ));
        assert!(!device_may_("device/other/gateway", Subscribe, b""));
        assert!(!device_may_("#", Subscribe, b""));
        assert!(!device_may_("device/+/access/response", Subscribe, b""));
        assert!(!device_may_(&format!("device/{UUID}/#"), Subscribe, b""));
        let query = format!(r#"{{"device_id":"{UUID}"}}"#);
        let other_query = format!(r#"{{"device_id":"{OTHER}"}}"#);
        assert!(device_may_("registry/query", Publish, query.as_bytes()));
        assert!(!device_may_(
            "registry/query",
            Publish,
            other_query.as_bytes()
        ));
        let request = format!(r#"{{"uuid":"{}","ssid":"home"}}"#, UUID.to_uppercase());
        let other_request = format!(r#"{{"uuid":"{OTHER}","ssid":"home"}}"#);
        assert!(device_may_(
            "wlan/home/access/request",
            Publish,
            request.as_bytes()
        ));
        assert!(device_may_(
            "wlan/home/access/proof",
            Publish,
            request.as_bytes()
        ));
        assert!(!device_may_(
            "wlan/home/access/request",
            Publish,
            other_request.as_bytes()
        ));
        assert!(!device_may_(
            "wlan/+/access/request",
            Publish,
            request.as_bytes()
        ));
        assert!(!device_may_("registry/admin/request", Publish, b"{}"));
        assert!(!device_may_("verifier/admin/request", Publish, b"{}"));
        assert!(!device_may_(
            &format!("device/{UUID}/gateway"),
            Publish,
            b"{}"
        ));
        assert!(!device_may_("ap/ap-1/verify/response", Publish, b"{}"));
    }

    #[test]
    fn an_onboarding_device_may_only_onboard() {
        use AclAction::*;
        let may_ = |topic: &str, action, payload: &[u8]| {
            may(&Who::Onboarding, UUID, &req(action, topic, payload), |_| {
                Vec::new()
            })
        };
        assert!(may_(
            &format!("device/{UUID}/access/response"),
            Subscribe,
            b""
        ));
        assert!(may_(
            &format!("device/{UUID}/access/challenge"),
            Subscribe,
            b""
        ));
        assert!(may_(&format!("device/{UUID}/confirm"), Subscribe, b""));
        assert!(!may_(&format!("device/{UUID}/gateway"), Subscribe, b""));
        assert!(!may_(
            &format!("device/{OTHER}/access/response"),
            Subscribe,
            b""
        ));
        let own = format!(r#"{{"uuid":"{UUID}","ssid":"home"}}"#);
        let other = format!(r#"{{"uuid":"{OTHER}","ssid":"home"}}"#);
        assert!(may_("wlan/home/access/request", Publish, own.as_bytes()));
        assert!(may_("wlan/home/access/proof", Publish, own.as_bytes()));
        assert!(!may_("wlan/home/access/request", Publish, other.as_bytes()));
        let query = format!(r#"{{"device_id":"{UUID}"}}"#);
        assert!(!may_("registry/query", Publish, query.as_bytes()));
    }

    #[test]
    fn only_an_admin_retains_and_nobody_may_do_anything() {
        let retained = AclRequest {
            action: AclAction::Publish,
            topic: "ap/ap-1/prompt",
            payload: b"{}",
            retain: true,
        };
        assert!(may(&Who::Admin, "cli", &retained, |_| Vec::new()));
        assert!(!may(&Who::Ap("ap-1"), "ap.ap-1", &retained, |_| Vec::new()));
        let plain = req(AclAction::Subscribe, "ap/ap-1/prompt", b"");
        assert!(!may(&Who::Nobody, "x", &plain, |_| Vec::new()));
    }
}

//! What a topic is: the parsed form of every topic and subscription filter
//! of the platform, with the identity it belongs to.
//!
//! The builders in [`super`] write the grammar; this module reads it back,
//! so that nobody else has to. The broker's ACL asks [`Topic::parse`] what
//! a client wants to publish or subscribe to, and [`Topic::owner`] whose it
//! is, instead of matching strings itself.

use super::{
    REGISTRY_ADMIN_REPLY, REGISTRY_ADMIN_REQUEST, REGISTRY_QUERY, REGISTRY_SYNC,
    VERIFIER_ADMIN_REPLY, VERIFIER_ADMIN_REQUEST, VERIFY_REQUEST,
};

/// One identity level of a topic: an id, or `+` in a subscription filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level<'a> {
    Id(&'a str),
    /// The single-level wildcard: every id at once.
    Any,
}

impl<'a> Level<'a> {
    /// The level of a topic or filter: `+` alone is [`Level::Any`]; any
    /// other use of a wildcard, or an empty level, is no identity at all.
    fn parse(level: &'a str) -> Option<Self> {
        match level {
            "+" => Some(Level::Any),
            "" => None,
            id if id.contains(['+', '#']) => None,
            id => Some(Level::Id(id)),
        }
    }

    /// The id, unless this is a wildcard.
    pub fn id(self) -> Option<&'a str> {
        match self {
            Level::Id(id) => Some(id),
            Level::Any => None,
        }
    }

    /// Whether this level is exactly `id`.
    pub fn is(self, id: &str) -> bool {
        self == Level::Id(id)
    }
}

/// Whose a topic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner<'a> {
    /// `device/{id}/…`: one device's own topics, on the platform broker
    /// and on its gateway.
    Device(Level<'a>),
    /// `wlan/{ssid}/…`: what the devices asking for one network publish,
    /// and its AP reads.
    Ssid(Level<'a>),
    /// `ap/{ap_id}/…`: one AP's exchanges with the verifier and its user.
    Ap(Level<'a>),
    /// `gateway/{gateway_id}/…`: one gateway agent's exchanges with the
    /// registry.
    Gateway(Level<'a>),
    /// The workers' fixed topics (`verifier/…`, `registry/…`).
    Platform,
}

/// Every topic of the platform (the list in [`super`]'s doc), parsed. A
/// subscription filter parses too, with `+` as [`Level::Any`] in an
/// identity level; `#`, and `+` anywhere else, make it no platform topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topic<'a> {
    /// `wlan/{ssid}/access/request`
    AccessRequest { ssid: Level<'a> },
    /// `wlan/{ssid}/access/proof`
    AccessProof { ssid: Level<'a> },
    /// `device/{uuid}/access/response`
    AccessResponse { uuid: Level<'a> },
    /// `device/{uuid}/access/challenge`
    AccessChallenge { uuid: Level<'a> },
    /// `device/{uuid}/confirm`
    DeviceConfirm { uuid: Level<'a> },
    /// `device/{device_id}/gateway`
    DeviceGateway { device_id: Level<'a> },
    /// `device/{device_id}/redirect`
    DeviceRedirect { device_id: Level<'a> },
    /// `device/{device_id}/presence`
    DevicePresence { device_id: Level<'a> },
    /// Any other `device/{device_id}/…`: a device's own telemetry on its
    /// gateway. `rest` holds no wildcard.
    DeviceOther { device_id: Level<'a>, rest: &'a str },
    /// `verifier/verify/request`
    VerifyRequest,
    /// `ap/{ap_id}/verify/response`
    VerifyResponse { ap_id: Level<'a> },
    /// `ap/{ap_id}/prompt`
    ApPrompt { ap_id: Level<'a> },
    /// `ap/{ap_id}/confirm`
    ApConfirm { ap_id: Level<'a> },
    /// `ap/{ap_id}/outcome`
    ApOutcome { ap_id: Level<'a> },
    /// `verifier/admin/request`
    VerifierAdminRequest,
    /// `verifier/admin/reply`
    VerifierAdminReply,
    /// `registry/query`
    RegistryQuery,
    /// `registry/sync`
    RegistrySync,
    /// `registry/admin/request`
    RegistryAdminRequest,
    /// `registry/admin/reply`
    RegistryAdminReply,
    /// `gateway/{gateway_id}/status`
    GatewayStatus { gateway_id: Level<'a> },
    /// `gateway/{gateway_id}/assign`
    GatewayAssign { gateway_id: Level<'a> },
    /// `gateway/{gateway_id}/notify`
    GatewayNotify { gateway_id: Level<'a> },
    /// `gateway/{gateway_id}/presence`
    GatewayPresence { gateway_id: Level<'a> },
}

impl<'a> Topic<'a> {
    /// What `topic` (a topic name or a subscription filter) is, or None if
    /// it is no topic of the platform.
    pub fn parse(topic: &'a str) -> Option<Self> {
        match topic {
            VERIFY_REQUEST => return Some(Topic::VerifyRequest),
            VERIFIER_ADMIN_REQUEST => return Some(Topic::VerifierAdminRequest),
            VERIFIER_ADMIN_REPLY => return Some(Topic::VerifierAdminReply),
            REGISTRY_QUERY => return Some(Topic::RegistryQuery),
            REGISTRY_SYNC => return Some(Topic::RegistrySync),
            REGISTRY_ADMIN_REQUEST => return Some(Topic::RegistryAdminRequest),
            REGISTRY_ADMIN_REPLY => return Some(Topic::RegistryAdminReply),
            _ => {}
        }
        let (root, _) = topic.split_once('/')?;
        let (id, tail) = namespace(root, topic)?;
        let id = Level::parse(id)?;
        let parsed = match (root, tail) {
            ("wlan", "access/request") => Topic::AccessRequest { ssid: id },
            ("wlan", "access/proof") => Topic::AccessProof { ssid: id },
            ("device", "access/response") => Topic::AccessResponse { uuid: id },
            ("device", "access/challenge") => Topic::AccessChallenge { uuid: id },
            ("device", "confirm") => Topic::DeviceConfirm { uuid: id },
            ("device", "gateway") => Topic::DeviceGateway { device_id: id },
            ("device", "redirect") => Topic::DeviceRedirect { device_id: id },
            ("device", "presence") => Topic::DevicePresence { device_id: id },
            ("device", rest) if !rest.contains(['+', '#']) => Topic::DeviceOther {
                device_id: id,
                rest,
            },
            ("ap", "verify/response") => Topic::VerifyResponse { ap_id: id },
            ("ap", "prompt") => Topic::ApPrompt { ap_id: id },
            ("ap", "confirm") => Topic::ApConfirm { ap_id: id },
            ("ap", "outcome") => Topic::ApOutcome { ap_id: id },
            ("gateway", "status") => Topic::GatewayStatus { gateway_id: id },
            ("gateway", "assign") => Topic::GatewayAssign { gateway_id: id },
            ("gateway", "notify") => Topic::GatewayNotify { gateway_id: id },
            ("gateway", "presence") => Topic::GatewayPresence { gateway_id: id },
            _ => return None,
        };
        Some(parsed)
    }

    /// Whose topic this is.
    pub fn owner(&self) -> Owner<'a> {
        match *self {
            Topic::AccessRequest { ssid } | Topic::AccessProof { ssid } => Owner::Ssid(ssid),
            Topic::AccessResponse { uuid }
            | Topic::AccessChallenge { uuid }
            | Topic::DeviceConfirm { uuid } => Owner::Device(uuid),
            Topic::DeviceGateway { device_id }
            | Topic::DeviceRedirect { device_id }
            | Topic::DevicePresence { device_id }
            | Topic::DeviceOther { device_id, .. } => Owner::Device(device_id),
            Topic::VerifyResponse { ap_id }
            | Topic::ApPrompt { ap_id }
            | Topic::ApConfirm { ap_id }
            | Topic::ApOutcome { ap_id } => Owner::Ap(ap_id),
            Topic::GatewayStatus { gateway_id }
            | Topic::GatewayAssign { gateway_id }
            | Topic::GatewayNotify { gateway_id }
            | Topic::GatewayPresence { gateway_id } => Owner::Gateway(gateway_id),
            Topic::VerifyRequest
            | Topic::VerifierAdminRequest
            | Topic::VerifierAdminReply
            | Topic::RegistryQuery
            | Topic::RegistrySync
            | Topic::RegistryAdminRequest
            | Topic::RegistryAdminReply => Owner::Platform,
        }
    }

    /// Whether this is a topic name, one that can be published to: no
    /// level of it is a wildcard.
    pub fn is_name(&self) -> bool {
        match self.owner() {
            Owner::Device(level)
            | Owner::Ssid(level)
            | Owner::Ap(level)
            | Owner::Gateway(level) => level != Level::Any,
            Owner::Platform => true,
        }
    }
}

/// The id level of a `{root}/{id}/…` topic and the rest after it: how
/// every per-identity topic of the platform is laid out.
pub(super) fn namespace<'a>(root: &str, topic: &'a str) -> Option<(&'a str, &'a str)> {
    let rest = topic.strip_prefix(root)?.strip_prefix('/')?;
    let (id, tail) = rest.split_once('/')?;
    (!id.is_empty()).then_some((id, tail))
}

#[cfg(test)]
mod tests {
    use super::super::*;
    use super::*;

    #[test]
    fn every_builder_parses_back_to_its_topic_and_owner() {
        let id = Level::Id;
        for (topic, parsed, owner) in [
            (
                access_request("home"),
                Topic::AccessRequest { ssid: id("home") },
                Owner::Ssid(id("home")),
            ),
            (
                access_proof("home"),
                Topic::AccessProof { ssid: id("home") },
                Owner::Ssid(id("home")),
            ),
            (
                access_response("u"),
                Topic::AccessResponse { uuid: id("u") },
                Owner::Device(id("u")),
            ),
            (
                access_challenge("u"),
                Topic::AccessChallenge { uuid: id("u") },
                Owner::Device(id("u")),
            ),
            (
                device_confirm("u"),
                Topic::DeviceConfirm { uuid: id("u") },
                Owner::Device(id("u")),
            ),
            (
                device_gateway("d"),
                Topic::DeviceGateway { device_id: id("d") },
                Owner::Device(id("d")),
            ),
            (
                device_redirect("d"),
                Topic::DeviceRedirect { device_id: id("d") },
                Owner::Device(id("d")),
            ),
            (
                device_presence("d"),
                Topic::DevicePresence { device_id: id("d") },
                Owner::Device(id("d")),
            ),
            (
                verify_response("ap-1"),
                Topic::VerifyResponse { ap_id: id("ap-1") },
                Owner::Ap(id("ap-1")),
            ),
            (
                ap_prompt("ap-1"),
                Topic::ApPrompt { ap_id: id("ap-1") },
                Owner::Ap(id("ap-1")),
            ),
            (
                ap_confirm("ap-1"),
                Topic::ApConfirm { ap_id: id("ap-1") },
                Owner::Ap(id("ap-1")),
            ),
            (
                ap_outcome("ap-1"),
                Topic::ApOutcome { ap_id: id("ap-1") },
                Owner::Ap(id("ap-1")),
            ),
            (
                gateway_status("gw"),
                Topic::GatewayStatus {
                    gateway_id: id("gw"),
                },
                Owner::Gateway(id("gw")),
            ),
            (
                gateway_assign("gw"),
                Topic::GatewayAssign {
                    gateway_id: id("gw"),
                },
                Owner::Gateway(id("gw")),
            ),
            (
                gateway_notify("gw"),
                Topic::GatewayNotify {
                    gateway_id: id("gw"),
                },
                Owner::Gateway(id("gw")),
            ),
            (
                gateway_presence("gw"),
                Topic::GatewayPresence {
                    gateway_id: id("gw"),
                },
                Owner::Gateway(id("gw")),
            ),
            (VERIFY_REQUEST.into(), Topic::VerifyRequest, Owner::Platform),
            (REGISTRY_QUERY.into(), Topic::RegistryQuery, Owner::Platform),
            (REGISTRY_SYNC.into(), Topic::RegistrySync, Owner::Platform),
        ] {
            assert_eq!(Topic::parse(&topic), Some(parsed), "{topic}");
            assert_eq!(parsed.owner(), owner, "{topic}");
            assert!(parsed.is_name(), "{topic}");
        }
    }

    #[test]
    fn filters_parse_with_plus_as_any_and_nothing_else_wild() {
        let any = Topic::parse(AP_OUTCOME_ALL).unwrap();
        assert_eq!(any, Topic::ApOutcome { ap_id: Level::Any });
        assert!(!any.is_name());
        assert_eq!(
            Topic::parse("wlan/+/access/request"),
            Some(Topic::AccessRequest { ssid: Level::Any })
        );
        for not_ours in [
            "#",
            "device/#",
            "device/u/#",
            "device/u/+",
            "device/a+b/gateway",
            "gateway/#/assign",
            "wlan//access/request",
            "wlan/a/b/access/request",
            "ap/+/verify/+",
            "registry/+",
            "device/u",
            "elsewhere/u/x",
            "",
        ] {
            assert_eq!(Topic::parse(not_ours), None, "{not_ours:?}");
        }
        assert_eq!(
            Topic::parse("device/u/telemetry/temp"),
            Some(Topic::DeviceOther {
                device_id: Level::Id("u"),
                rest: "telemetry/temp"
            })
        );
    }
}

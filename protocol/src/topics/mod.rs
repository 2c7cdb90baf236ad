//! Every MQTT topic of the platform: builders, subscription filters and
//! parsers. Identifiers spliced in here must already be validated
//! ([`crate::Segment`], [`crate::DeviceUuid`]).
//!
//! Device-facing topics (fixed, relied on outside this repository):
//! - `wlan/{ssid}/access/request`: device -> AP
//! - `device/{uuid}/access/response`: AP -> device
//! - `device/{uuid}/confirm`: the device's user -> device
//! - `device/{uuid}/access/challenge`: AP -> device (secure mode)
//! - `wlan/{ssid}/access/proof`: device -> AP (secure mode)
//!
//! Internal topics:
//! - `verifier/verify/request`: AP -> verifier
//! - `ap/{ap_id}/verify/response`: verifier -> AP
//! - `ap/{ap_id}/prompt`: AP -> its user
//! - `ap/{ap_id}/confirm`: the AP's user -> AP
//! - `ap/{ap_id}/outcome`: AP -> verifier (how a request ended, for metrics)
//! - `verifier/admin/request`, `verifier/admin/reply`: admin CLI <-> verifier
//!
//! Gateway assignment, device-facing and fixed:
//! - `registry/query` (platform broker): device -> registry
//! - `device/{device_id}/gateway` (platform broker): registry -> device
//! - `device/{device_id}/redirect` (gateway broker): gateway -> device
//!
//! Gateway assignment, internal:
//! - `device/{device_id}/presence` (gateway broker): device -> gateway agent
//! - `gateway/{gateway_id}/status`: agent -> registry (liveness, last will)
//! - `gateway/{gateway_id}/assign`: registry -> agent (who may connect)
//! - `gateway/{gateway_id}/notify`: registry -> agent (send a redirect)
//! - `gateway/{gateway_id}/presence`: agent -> registry (who is connected)
//! - `registry/sync`: agent -> registry (send my snapshot)
//! - `registry/admin/request`, `registry/admin/reply`: admin CLI <-> registry
//!
//! Diagnostics, used by no platform component:
//! - `bench/{tag}/request`, `bench/{tag}/reply`: the bench's round-trip
//!   floor, one admin client to another through the platform broker
//!
//! [`Topic::parse`] reads any of them back, with the identity it belongs
//! to ([`Topic::owner`]).

mod parse;

pub use parse::{Level, Owner, Topic};

/// AP -> verifier verification messages.
pub const VERIFY_REQUEST: &str = "verifier/verify/request";
/// Admin CLI -> verifier.
pub const VERIFIER_ADMIN_REQUEST: &str = "verifier/admin/request";
/// Verifier -> admin CLIs. One shared topic: replies pair up by
/// `request_id`, and a shared topic keeps rumqttd from creating a commit
/// log per CLI invocation.
pub const VERIFIER_ADMIN_REPLY: &str = "verifier/admin/reply";

/// Every AP's outcome reports, for the verifier's metrics.
pub const AP_OUTCOME_ALL: &str = "ap/+/outcome";

/// Devices -> registry: "which gateway is mine?"
pub const REGISTRY_QUERY: &str = "registry/query";
/// Gateway agents -> registry: "send my assignment snapshot".
pub const REGISTRY_SYNC: &str = "registry/sync";
pub const REGISTRY_ADMIN_REQUEST: &str = "registry/admin/request";
pub const REGISTRY_ADMIN_REPLY: &str = "registry/admin/reply";
/// Every gateway's status, for the registry.
pub const GATEWAY_STATUS_ALL: &str = "gateway/+/status";
/// Every gateway's presence reports, for the registry.
pub const GATEWAY_PRESENCE_ALL: &str = "gateway/+/presence";
/// Every device's presence, for a gateway agent on its own broker.
pub const DEVICE_PRESENCE_ALL: &str = "device/+/presence";

/// The shared subscription (MQTT 5, and Mosquitto, EMQX, VerneMQ and
/// rumqttd on 3.1.1 too) of `filter` by group `group`: each message goes to
/// one subscriber of the group. Use one group name per filter: rumqttd
/// keys a group by its name alone, so one name on two filters would share
/// one cursor. [`share_group`] names the group of a worker's filter.
pub fn shared(group: &str, filter: &str) -> String {
    format!("$share/{group}/{filter}")
}

/// The group name a worker's instances share `filter` under: the
/// worker's `prefix` and the filter's levels, wildcards spelled out, so
/// that two filters never get one name (`registry`, `registry/query` ->
/// `registry.registry-query`; `ap/+/outcome` -> `….ap-any-outcome`).
pub fn share_group(prefix: &str, filter: &str) -> String {
    let levels: Vec<&str> = filter
        .split('/')
        .map(|l| match l {
            "+" => "any",
            "#" => "all",
            other => other,
        })
        .collect();
    format!("{prefix}.{}", levels.join("-"))
}

/// How a worker subscribes to one of its request topics: shared by the
/// group [`share_group`] names under `prefix`, or, without a prefix, plainly.
pub fn request_filter(prefix: Option<&str>, filter: &str) -> String {
    match prefix {
        Some(prefix) => shared(&share_group(prefix, filter), filter),
        None => filter.to_owned(),
    }
}

pub fn device_gateway(device_id: &str) -> String {
    format!("device/{device_id}/gateway")
}

pub fn device_redirect(device_id: &str) -> String {
    format!("device/{device_id}/redirect")
}

pub fn device_presence(device_id: &str) -> String {
    format!("device/{device_id}/presence")
}

pub fn gateway_status(gateway_id: &str) -> String {
    format!("gateway/{gateway_id}/status")
}

pub fn gateway_assign(gateway_id: &str) -> String {
    format!("gateway/{gateway_id}/assign")
}

pub fn gateway_notify(gateway_id: &str) -> String {
    format!("gateway/{gateway_id}/notify")
}

pub fn gateway_presence(gateway_id: &str) -> String {
    format!("gateway/{gateway_id}/presence")
}

pub fn access_request(ssid: &str) -> String {
    format!("wlan/{ssid}/access/request")
}

pub fn access_response(uuid: &str) -> String {
    format!("device/{uuid}/access/response")
}

/// AP -> device, secure mode: the AP's half of the handshake.
pub fn access_challenge(uuid: &str) -> String {
    format!("device/{uuid}/access/challenge")
}

/// Device -> AP, secure mode: the device's proof.
pub fn access_proof(ssid: &str) -> String {
    format!("wlan/{ssid}/access/proof")
}

pub fn device_confirm(uuid: &str) -> String {
    format!("device/{uuid}/confirm")
}

pub fn verify_response(ap_id: &str) -> String {
    format!("ap/{ap_id}/verify/response")
}

pub fn ap_prompt(ap_id: &str) -> String {
    format!("ap/{ap_id}/prompt")
}

pub fn ap_confirm(ap_id: &str) -> String {
    format!("ap/{ap_id}/confirm")
}

pub fn ap_outcome(ap_id: &str) -> String {
    format!("ap/{ap_id}/outcome")
}

/// The bench's round-trip floor: requests of run `tag`.
pub fn bench_request(tag: &str) -> String {
    format!("bench/{tag}/request")
}

/// The bench's round-trip floor: replies of run `tag`.
pub fn bench_reply(tag: &str) -> String {
    format!("bench/{tag}/reply")
}

/// The gateway id of a `gateway/{gateway_id}/…` topic and the rest after it.
pub fn parse_gateway_topic(topic: &str) -> Option<(&str, &str)> {
    parse::namespace("gateway", topic)
}

/// The AP id of an `ap/{ap_id}/…` topic and the rest after it.
pub fn parse_ap_topic(topic: &str) -> Option<(&str, &str)> {
    parse::namespace("ap", topic)
}

/// The UUID of a `device/{uuid}/…` topic and the rest after it.
pub fn parse_device_topic(topic: &str) -> Option<(&str, &str)> {
    parse::namespace("device", topic)
}

/// The SSID of a `wlan/{ssid}/access/request` topic.
pub fn parse_access_request(topic: &str) -> Option<&str> {
    match Topic::parse(topic)? {
        Topic::AccessRequest { ssid } => ssid.id(),
        _ => None,
    }
}

/// The SSID of a `wlan/{ssid}/access/proof` topic.
pub fn parse_access_proof(topic: &str) -> Option<&str> {
    match Topic::parse(topic)? {
        Topic::AccessProof { ssid } => ssid.id(),
        _ => None,
    }
}

/// The AP id of an `ap/{ap_id}/outcome` topic.
pub fn parse_ap_outcome(topic: &str) -> Option<&str> {
    match Topic::parse(topic)? {
        Topic::ApOutcome { ap_id } => ap_id.id(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_filter_gets_a_group_name_of_its_own() {
        let filters = [
            REGISTRY_QUERY,
            REGISTRY_SYNC,
            REGISTRY_ADMIN_REQUEST,
            VERIFY_REQUEST,
            VERIFIER_ADMIN_REQUEST,
            AP_OUTCOME_ALL,
            GATEWAY_STATUS_ALL,
        ];
        let names: std::collections::HashSet<String> =
            filters.iter().map(|f| share_group("w", f)).collect();
        assert_eq!(names.len(), filters.len());
        assert_eq!(
            share_group("registry", REGISTRY_QUERY),
            "registry.registry-query"
        );
        assert_eq!(share_group("v", AP_OUTCOME_ALL), "v.ap-any-outcome");
        assert_eq!(
            shared("registry.registry-query", REGISTRY_QUERY),
            "$share/registry.registry-query/registry/query"
        );
        assert_eq!(
            request_filter(Some("registry"), REGISTRY_QUERY),
            "$share/registry.registry-query/registry/query"
        );
        assert_eq!(request_filter(None, REGISTRY_QUERY), REGISTRY_QUERY);
    }

    #[test]
    fn builders_and_parsers_agree() {
        assert_eq!(parse_access_request(&access_request("home")), Some("home"));
        assert_eq!(parse_access_request("wlan//access/request"), None);
        assert_eq!(parse_access_request("wlan/a/b/access/request"), None);
        assert_eq!(
            parse_ap_topic(&verify_response("ap-1")),
            Some(("ap-1", "verify/response"))
        );
        assert_eq!(
            parse_ap_topic(&ap_confirm("ap-1")),
            Some(("ap-1", "confirm"))
        );
        assert_eq!(parse_ap_outcome(&ap_outcome("ap-1")), Some("ap-1"));
        assert_eq!(parse_ap_outcome("ap/ap-1/outcome/x"), None);
        assert_eq!(parse_ap_outcome(&ap_confirm("ap-1")), None);
        assert_eq!(
            parse_device_topic(&device_confirm("u")),
            Some(("u", "confirm"))
        );
        assert_eq!(
            parse_device_topic(&access_response("u")),
            Some(("u", "access/response"))
        );
    }
}

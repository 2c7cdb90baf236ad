//! The platform's topic ACL: each identity is bound to its own topics. It
//! asks protocol what a topic is and whose it is ([`Topic::parse`],
//! [`Topic::owner`]); it spells no topic itself, so the grammar has one
//! owner. Where a message names an identity in its payload too (a
//! verification request its AP, a query its device), the payload must
//! name the publisher, so that the workers can believe it.
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
//!   proofs as itself, at a bounded rate ([`super::Auth::allow`]).
//!
//! [`may`] is the in-process decision, asked on every PUBLISH, SUBSCRIBE
//! filter and last will. [`grants`] is the same table as a list of
//! topics, per identity, from which [`emqx_rules`] makes the ACL an EMQX
//! broker gets in its authentication reply. EMQX rules see topics, not
//! payloads: what [`may`] checks in a payload (each [`Grant::payload`]),
//! and the onboarding rate, an external EMQX does not enforce.

use protocol::topics::{self, Level, Owner, Topic};
use protocol::DeviceUuid;
use serde::Serialize;

/// What a client asks to do with a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Publish,
    Subscribe,
}

/// One PUBLISH (or last will), or one SUBSCRIBE filter.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub action: Action,
    /// The topic name, or the subscription filter.
    pub topic: &'a str,
    /// The message (empty for a subscription).
    pub payload: &'a [u8],
    pub retain: bool,
}

/// Whose rules apply to a client, as its username says (the login was
/// checked at CONNECT).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Who<'a> {
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
pub fn may(
    who: &Who,
    client_id: &str,
    request: &Request,
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
    request: &Request,
    ssids: impl Fn(&str) -> Vec<String>,
) -> bool {
    let own = topic.owner() == Owner::Ap(Level::Id(ap_id));
    match request.action {
        Action::Subscribe => match topic.owner() {
            Owner::Ssid(Level::Id(ssid)) => ssids(ap_id).iter().any(|s| s == ssid),
            _ => {
                own && matches!(
                    topic,
                    Topic::VerifyResponse { .. } | Topic::ApConfirm { .. } | Topic::ApPrompt { .. }
                )
            }
        },
        Action::Publish => match topic {
            Topic::VerifyRequest => names(request.payload, "ap_id", ap_id),
            Topic::AccessResponse { .. } | Topic::AccessChallenge { .. } => topic.is_name(),
            Topic::ApPrompt { .. } | Topic::ApConfirm { .. } | Topic::ApOutcome { .. } => own,
            _ => false,
        },
    }
}

fn gateway_may(gateway_id: &str, topic: &Topic, request: &Request) -> bool {
    let own = topic.owner() == Owner::Gateway(Level::Id(gateway_id));
    match request.action {
        Action::Subscribe => {
            own && matches!(
                topic,
                Topic::GatewayAssign { .. } | Topic::GatewayNotify { .. }
            )
        }
        Action::Publish => match topic {
            Topic::RegistrySync => names(request.payload, "gateway_id", gateway_id),
            Topic::GatewayStatus { .. } => own && names(request.payload, "gateway_id", gateway_id),
            Topic::GatewayPresence { .. } => own,
            _ => false,
        },
    }
}

fn device_may(client_id: &str, topic: &Topic, request: &Request) -> bool {
    match request.action {
        Action::Subscribe => topic.owner() == Owner::Device(Level::Id(client_id)),
        Action::Publish => match topic {
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
fn onboarding_may(client_id: &str, topic: &Topic, request: &Request) -> bool {
    let Some(client_id) = protocol::logins::onboarding_device(client_id) else {
        return false;
    };
    match request.action {
        Action::Subscribe => {
            topic.owner() == Owner::Device(Level::Id(client_id))
                && matches!(
                    topic,
                    Topic::AccessResponse { .. }
                        | Topic::AccessChallenge { .. }
                        | Topic::DeviceConfirm { .. }
                )
        }
        Action::Publish => {
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

/// One thing an identity may do: an action on a topic of the platform's
/// grammar, where an identity level of [`Level::Any`] stands for every id
/// (MQTT's `+`). A topic name may be published; only filters without a
/// wildcard are granted for subscribing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant<'a> {
    pub action: Action,
    pub topic: Topic<'a>,
    /// The payload field [`may`] also requires to name the publisher, if
    /// any. A broker that matches topics only (EMQX's rules) cannot check
    /// it: there the grant is wider.
    pub payload: Option<&'static str>,
}

impl Grant<'_> {
    fn new(action: Action, topic: Topic<'_>) -> Grant<'_> {
        Grant {
            action,
            topic,
            payload: None,
        }
    }

    fn naming(mut self, field: &'static str) -> Self {
        self.payload = Some(field);
        self
    }
}

/// Everything `who`, connected as `client_id`, may do, as [`may`] decides
/// it, but for two things a list of topics cannot say: what [`may`] checks
/// in a payload ([`Grant::payload`]), and a device's own topics beyond the
/// platform's (`device/ID/anything`, which a device reads on its gateway,
/// not here). An AP's SSIDs are `ssids`. An admin has no grants: it may do
/// anything, and an external broker is told it is a superuser.
pub fn grants<'a>(who: &Who<'a>, client_id: &'a str, ssids: &'a [String]) -> Vec<Grant<'a>> {
    use Action::{Publish, Subscribe};
    let id = Level::Id;
    match *who {
        Who::Ap(ap_id) => {
            let mut g = Vec::new();
            for ssid in ssids {
                g.push(Grant::new(
                    Subscribe,
                    Topic::AccessRequest { ssid: id(ssid) },
                ));
                g.push(Grant::new(Subscribe, Topic::AccessProof { ssid: id(ssid) }));
            }
            let ap = id(ap_id);
            g.extend([
                Grant::new(Subscribe, Topic::VerifyResponse { ap_id: ap }),
                Grant::new(Subscribe, Topic::ApConfirm { ap_id: ap }),
                Grant::new(Subscribe, Topic::ApPrompt { ap_id: ap }),
                Grant::new(Publish, Topic::VerifyRequest).naming("ap_id"),
                Grant::new(Publish, Topic::AccessResponse { uuid: Level::Any }),
                Grant::new(Publish, Topic::AccessChallenge { uuid: Level::Any }),
                Grant::new(Publish, Topic::ApPrompt { ap_id: ap }),
                Grant::new(Publish, Topic::ApConfirm { ap_id: ap }),
                Grant::new(Publish, Topic::ApOutcome { ap_id: ap }),
            ]);
            g
        }
        Who::Gateway(gateway_id) => {
            let gw = id(gateway_id);
            vec![
                Grant::new(Subscribe, Topic::GatewayAssign { gateway_id: gw }),
                Grant::new(Subscribe, Topic::GatewayNotify { gateway_id: gw }),
                Grant::new(Publish, Topic::RegistrySync).naming("gateway_id"),
                Grant::new(Publish, Topic::GatewayStatus { gateway_id: gw }).naming("gateway_id"),
                Grant::new(Publish, Topic::GatewayPresence { gateway_id: gw }),
            ]
        }
        Who::Device(_) => {
            let me = id(client_id);
            vec![
                Grant::new(Subscribe, Topic::AccessResponse { uuid: me }),
                Grant::new(Subscribe, Topic::AccessChallenge { uuid: me }),
                Grant::new(Subscribe, Topic::DeviceConfirm { uuid: me }),
                Grant::new(Subscribe, Topic::DeviceGateway { device_id: me }),
                Grant::new(Subscribe, Topic::DeviceRedirect { device_id: me }),
                Grant::new(Subscribe, Topic::DevicePresence { device_id: me }),
                Grant::new(Publish, Topic::RegistryQuery).naming("device_id"),
                Grant::new(Publish, Topic::AccessRequest { ssid: Level::Any }).naming("uuid"),
                Grant::new(Publish, Topic::AccessProof { ssid: Level::Any }).naming("uuid"),
            ]
        }
        Who::Onboarding => {
            let Some(uuid) = protocol::logins::onboarding_device(client_id) else {
                return Vec::new();
            };
            let me = id(uuid);
            vec![
                Grant::new(Subscribe, Topic::AccessResponse { uuid: me }),
                Grant::new(Subscribe, Topic::AccessChallenge { uuid: me }),
                Grant::new(Subscribe, Topic::DeviceConfirm { uuid: me }),
                Grant::new(Publish, Topic::AccessRequest { ssid: Level::Any }).naming("uuid"),
                Grant::new(Publish, Topic::AccessProof { ssid: Level::Any }).naming("uuid"),
            ]
        }
        Who::Admin | Who::Nobody => Vec::new(),
    }
}

/// `topic` as a topic string, by protocol's builders, with `any` in an
/// identity level that is [`Level::Any`]. None for a device's own other
/// topics, which have no builder (and are never granted).
fn spell(topic: &Topic, any: &str) -> Option<String> {
    let id = |level: Level<'_>| match level {
        Level::Id(id) => id.to_owned(),
        Level::Any => any.to_owned(),
    };
    Some(match *topic {
        Topic::AccessRequest { ssid } => topics::access_request(&id(ssid)),
        Topic::AccessProof { ssid } => topics::access_proof(&id(ssid)),
        Topic::AccessResponse { uuid } => topics::access_response(&id(uuid)),
        Topic::AccessChallenge { uuid } => topics::access_challenge(&id(uuid)),
        Topic::DeviceConfirm { uuid } => topics::device_confirm(&id(uuid)),
        Topic::DeviceGateway { device_id } => topics::device_gateway(&id(device_id)),
        Topic::DeviceRedirect { device_id } => topics::device_redirect(&id(device_id)),
        Topic::DevicePresence { device_id } => topics::device_presence(&id(device_id)),
        Topic::DeviceOther { .. } => return None,
        Topic::VerifyRequest => topics::VERIFY_REQUEST.to_owned(),
        Topic::VerifyResponse { ap_id } => topics::verify_response(&id(ap_id)),
        Topic::ApPrompt { ap_id } => topics::ap_prompt(&id(ap_id)),
        Topic::ApConfirm { ap_id } => topics::ap_confirm(&id(ap_id)),
        Topic::ApOutcome { ap_id } => topics::ap_outcome(&id(ap_id)),
        Topic::VerifierAdminRequest => topics::VERIFIER_ADMIN_REQUEST.to_owned(),
        Topic::VerifierAdminReply => topics::VERIFIER_ADMIN_REPLY.to_owned(),
        Topic::RegistryQuery => topics::REGISTRY_QUERY.to_owned(),
        Topic::RegistrySync => topics::REGISTRY_SYNC.to_owned(),
        Topic::RegistryAdminRequest => topics::REGISTRY_ADMIN_REQUEST.to_owned(),
        Topic::RegistryAdminReply => topics::REGISTRY_ADMIN_REPLY.to_owned(),
        Topic::GatewayStatus { gateway_id } => topics::gateway_status(&id(gateway_id)),
        Topic::GatewayAssign { gateway_id } => topics::gateway_assign(&id(gateway_id)),
        Topic::GatewayNotify { gateway_id } => topics::gateway_notify(&id(gateway_id)),
        Topic::GatewayPresence { gateway_id } => topics::gateway_presence(&id(gateway_id)),
    })
}

/// One rule of an EMQX ≥ 5.8 client ACL, as its authentication reply
/// carries it (the `acl` list: `permission`, `action`, `topic`, and for a
/// publish `retain`). EMQX checks the rules in order, and the first that
/// matches decides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EmqxRule {
    pub permission: Permission,
    pub action: EmqxAction,
    /// A topic filter; `eq ` before it makes EMQX match it literally (no
    /// wildcard, no `${…}` placeholder).
    pub topic: String,
    /// For a publish rule: `false` makes it match only messages that are
    /// not retained.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retain: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Permission {
    Allow,
    Deny,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EmqxAction {
    Publish,
    Subscribe,
    All,
}

impl From<Action> for EmqxAction {
    fn from(action: Action) -> Self {
        match action {
            Action::Publish => EmqxAction::Publish,
            Action::Subscribe => EmqxAction::Subscribe,
        }
    }
}

/// The EMQX ACL of `who`, connected as `client_id` (an AP serving
/// `ssids`): its [`grants`] as rules, each concrete topic matched
/// literally (`eq`), a publish to every id as `+`; before them a deny of
/// the empty id a `+` also matches (which no platform topic has); no
/// retained message; and last a deny of everything else.
///
/// Wider than [`may`] only where a topic says too little: the payload
/// checks ([`Grant::payload`]) and the onboarding rate are not in it. The
/// last rule denies `#`, which per MQTT matches no `$` topic: EMQX must
/// deny what no rule matches (`authorization.no_match = deny`).
pub fn emqx_rules(who: &Who, client_id: &str, ssids: &[String]) -> Vec<EmqxRule> {
    let grants = grants(who, client_id, ssids);
    let mut rules = Vec::new();
    for grant in grants.iter().filter(|g| !g.topic.is_name()) {
        if let Some(empty) = spell(&grant.topic, "") {
            rules.push(EmqxRule {
                permission: Permission::Deny,
                action: grant.action.into(),
                topic: format!("eq {empty}"),
                retain: None,
            });
        }
    }
    for grant in &grants {
        let Some(topic) = spell(&grant.topic, "+") else {
            continue;
        };
        rules.push(EmqxRule {
            permission: Permission::Allow,
            action: grant.action.into(),
            topic: if grant.topic.is_name() {
                format!("eq {topic}")
            } else {
                topic
            },
            retain: (grant.action == Action::Publish).then_some(false),
        });
    }
    rules.push(EmqxRule {
        permission: Permission::Deny,
        action: EmqxAction::All,
        topic: "#".to_owned(),
        retain: None,
    });
    rules
}

#[cfg(test)]
mod tests {
    use super::*;

    const UUID: &str = "6f1c2b8e-0b5d-4a8f-9e8c-2b7d8e9f0a1b";
    const OTHER: &str = "00000000-0000-4000-8000-000000000001";

    fn req<'a>(action: Action, topic: &'a str, payload: &'a [u8]) -> Request<'a> {
        Request {
            action,
            topic,
            payload,
            retain: false,
        }
    }

    fn home(id: &str) -> Vec<String> {
        if id == "ap-1" {
            vec!["home".into()]
        } else {
            Vec::new()
        }
    }

    fn ap_may_(topic: &str, action: Action, payload: &[u8]) -> bool {
        may(
            &Who::Ap("ap-1"),
            "ap.ap-1",
            &req(action, topic, payload),
            home,
        )
    }

    fn gateway_may_(topic: &str, action: Action, payload: &[u8]) -> bool {
        may(
            &Who::Gateway("gw-1"),
            "gateway.gw-1",
            &req(action, topic, payload),
            |_| Vec::new(),
        )
    }

    fn device_may_(topic: &str, action: Action, payload: &[u8]) -> bool {
        may(
            &Who::Device(UUID),
            UUID,
            &req(action, topic, payload),
            |_| Vec::new(),
        )
    }

    #[test]
    fn an_ap_is_bound_to_its_own_topics_and_ssids() {
        use Action::*;
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
        use Action::*;
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
        use Action::*;
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
        use Action::*;
        let session = format!("{UUID}.s1");
        let may_ = |topic: &str, action, payload: &[u8]| {
            may(
                &Who::Onboarding,
                &session,
                &req(action, topic, payload),
                |_| Vec::new(),
            )
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
        // The bare UUID is no onboarding session's client id.
        let bare = req(Publish, "wlan/home/access/request", own.as_bytes());
        assert!(!may(&Who::Onboarding, UUID, &bare, |_| Vec::new()));
    }

    #[test]
    fn only_an_admin_retains_and_nobody_may_do_anything() {
        let retained = Request {
            action: Action::Publish,
            topic: "ap/ap-1/prompt",
            payload: b"{}",
            retain: true,
        };
        assert!(may(&Who::Admin, "cli", &retained, |_| Vec::new()));
        assert!(!may(&Who::Ap("ap-1"), "ap.ap-1", &retained, |_| Vec::new()));
        let plain = req(Action::Subscribe, "ap/ap-1/prompt", b"");
        assert!(!may(&Who::Nobody, "x", &plain, |_| Vec::new()));
    }

    // --- the EMQX rules against the in-process ACL ---

    const ONBOARDING_SESSION: &str = "6f1c2b8e-0b5d-4a8f-9e8c-2b7d8e9f0a1b.s1";

    /// Every identity the ACL knows, as it connects, with its SSIDs.
    fn identities() -> Vec<(Who<'static>, &'static str, Vec<String>)> {
        vec![
            (Who::Ap("ap-1"), "ap.ap-1", vec!["home".to_owned()]),
            (Who::Ap("ap-1"), "ap.ap-1.phone", vec!["home".to_owned()]),
            (Who::Gateway("gw-1"), "gateway.gw-1", Vec::new()),
            (Who::Device(UUID), UUID, Vec::new()),
            (Who::Onboarding, ONBOARDING_SESSION, Vec::new()),
            (Who::Nobody, "x", Vec::new()),
        ]
    }

    /// What an honest client sends: every payload field the ACL reads
    /// names the publisher (each identity reads only its own field).
    fn honest() -> Vec<u8> {
        format!(r#"{{"ap_id":"ap-1","gateway_id":"gw-1","device_id":"{UUID}","uuid":"{UUID}"}}"#)
            .into_bytes()
    }

    /// Topics and filters to try: every topic of the grammar with the
    /// identities' own ids, others', `+`, `#` and an empty id, and some
    /// that are no platform topic at all.
    fn samples() -> Vec<String> {
        let ids = [
            "ap-1", "ap-2", "gw-1", "gw-2", UUID, OTHER, "home", "office", "+", "#", "",
        ];
        let builders: [fn(&str) -> String; 16] = [
            topics::access_request,
            topics::access_proof,
            topics::access_response,
            topics::access_challenge,
            topics::device_confirm,
            topics::device_gateway,
            topics::device_redirect,
            topics::device_presence,
            topics::verify_response,
            topics::ap_prompt,
            topics::ap_confirm,
            topics::ap_outcome,
            topics::gateway_status,
            topics::gateway_assign,
            topics::gateway_notify,
            topics::gateway_presence,
        ];
        let mut out: Vec<String> = builders
            .iter()
            .flat_map(|b| ids.iter().map(move |id| b(id)))
            .collect();
        out.extend(
            [
                topics::VERIFY_REQUEST,
                topics::VERIFIER_ADMIN_REQUEST,
                topics::VERIFIER_ADMIN_REPLY,
                topics::REGISTRY_QUERY,
                topics::REGISTRY_SYNC,
                topics::REGISTRY_ADMIN_REQUEST,
                topics::REGISTRY_ADMIN_REPLY,
                topics::AP_OUTCOME_ALL,
                topics::GATEWAY_STATUS_ALL,
                "#",
                "+",
                "wlan/#",
                "device/+/+",
                "$SYS/brokers",
                "",
            ]
            .map(str::to_owned),
        );
        out.push(format!("device/{UUID}/#"));
        out.push(format!("device/{UUID}/telemetry/temp"));
        out.push(format!("device/{UUID}/+"));
        out
    }

    /// EMQX's matching of one topic against a rule's, as its docs describe
    /// it: `eq ` is literal; otherwise `+` is any one level (an empty one
    /// too), `#` the rest, and a wildcard at the start matches no `$`
    /// topic. A client's subscription filter is matched word by word, so a
    /// rule's `+` matches a filter's `+` or `#` as well.
    fn emqx_topic_matches(rule: &str, topic: &str) -> bool {
        if let Some(exact) = rule.strip_prefix("eq ") {
            return exact == topic;
        }
        if topic.starts_with('$') && (rule.starts_with('+') || rule.starts_with('#')) {
            return false;
        }
        let mut r = rule.split('/');
        let mut t = topic.split('/');
        loop {
            match (r.next(), t.next()) {
                (Some("#"), _) => return true,
                (Some("+"), Some(_)) => {}
                (Some(a), Some(b)) if a == b => {}
                (None, None) => return true,
                _ => return false,
            }
        }
    }

    /// Whether EMQX lets a client with `rules` make `request`: the first
    /// rule that matches decides; none matching is a denial
    /// (`no_match = deny`, as docs/SECURITY.md requires).
    fn emqx_allows(rules: &[EmqxRule], request: &Request) -> bool {
        // MQTT forbids a wildcard in a PUBLISH's topic: EMQX refuses one
        // before it asks its ACL.
        if request.action == Action::Publish && request.topic.contains(['+', '#']) {
            return false;
        }
        for rule in rules {
            let action = matches!(
                (rule.action, request.action),
                (EmqxAction::All, _)
                    | (EmqxAction::Publish, Action::Publish)
                    | (EmqxAction::Subscribe, Action::Subscribe)
            );
            let retain = rule.retain.is_none() || rule.retain == Some(request.retain);
            if action && retain && emqx_topic_matches(&rule.topic, request.topic) {
                return rule.permission == Permission::Allow;
            }
        }
        false
    }

    #[test]
    fn every_topic_the_emqx_rules_allow_the_in_process_acl_allows() {
        let payload = honest();
        for (who, client_id, ssids) in identities() {
            let rules = emqx_rules(&who, client_id, &ssids);
            let mut allowed = 0;
            for topic in samples() {
                for action in [Action::Publish, Action::Subscribe] {
                    for retain in [false, true] {
                        let request = Request {
                            action,
                            topic: &topic,
                            payload: &payload,
                            retain: retain && action == Action::Publish,
                        };
                        if emqx_allows(&rules, &request) {
                            allowed += 1;
                            assert!(
                                may(&who, client_id, &request, |_| ssids.clone()),
                                "{who:?} as {client_id}: EMQX allows {action:?} {topic:?} (retain {retain}), the platform does not"
                            );
                        }
                    }
                }
            }
            if who != Who::Nobody {
                assert!(allowed > 0, "{who:?}: the sample covers nothing");
            }
        }
    }

    #[test]
    fn the_emqx_rules_leave_out_only_what_topics_cannot_say() {
        let payload = honest();
        for (who, client_id, ssids) in identities() {
            let rules = emqx_rules(&who, client_id, &ssids);
            for topic in samples() {
                for action in [Action::Publish, Action::Subscribe] {
                    let request = Request {
                        action,
                        topic: &topic,
                        payload: &payload,
                        retain: false,
                    };
                    if !may(&who, client_id, &request, |_| ssids.clone()) {
                        continue;
                    }
                    // A device's own topics beyond the platform's are read
                    // on its gateway; no rule can list them concretely.
                    let device_other =
                        matches!(Topic::parse(&topic), Some(Topic::DeviceOther { .. }));
                    assert!(
                        emqx_allows(&rules, &request) || device_other,
                        "{who:?} as {client_id}: the platform allows {action:?} {topic:?}, EMQX would not"
                    );
                }
            }
        }
    }

    #[test]
    fn the_rules_payloads_and_retain_are_what_emqx_cannot_check() {
        let rules = emqx_rules(&Who::Device(UUID), UUID, &[]);
        let lying = format!(r#"{{"device_id":"{OTHER}"}}"#);
        let request = Request {
            action: Action::Publish,
            topic: topics::REGISTRY_QUERY,
            payload: lying.as_bytes(),
            retain: false,
        };
        assert!(
            emqx_allows(&rules, &request),
            "a topic says nothing of the payload"
        );
        assert!(!may(&Who::Device(UUID), UUID, &request, |_| Vec::new()));
        let retained = Request {
            retain: true,
            payload: &honest(),
            ..request
        };
        assert!(
            !emqx_allows(&rules, &retained),
            "nobody but an admin retains"
        );
    }

    #[test]
    fn every_grant_is_a_topic_of_the_grammar_and_filters_are_exact() {
        for (who, client_id, ssids) in identities() {
            for grant in grants(&who, client_id, &ssids) {
                let topic = spell(&grant.topic, "+").expect("a granted topic has a builder");
                assert_eq!(Topic::parse(&topic), Some(grant.topic), "{topic}");
                if grant.action == Action::Subscribe {
                    assert!(
                        grant.topic.is_name(),
                        "{who:?} subscribes to {topic} with a wildcard"
                    );
                }
            }
        }
    }

    #[test]
    fn an_aps_rules_name_its_ssids_and_its_own_topics() {
        let ssids = vec!["home".to_owned()];
        let rules = emqx_rules(&Who::Ap("ap-1"), "ap.ap-1", &ssids);
        let json = serde_json::to_value(&rules).unwrap();
        let rules = json.as_array().unwrap();
        assert!(rules.contains(&serde_json::json!(
            {"permission": "allow", "action": "subscribe", "topic": "eq wlan/home/access/request"}
        )));
        assert!(rules.contains(&serde_json::json!(
            {"permission": "allow", "action": "publish", "topic": "device/+/access/challenge", "retain": false}
        )));
        assert!(rules.contains(&serde_json::json!(
            {"permission": "deny", "action": "publish", "topic": "eq device//access/challenge"}
        )));
        assert_eq!(
            rules.last(),
            Some(&serde_json::json!({"permission": "deny", "action": "all", "topic": "#"}))
        );
    }
}

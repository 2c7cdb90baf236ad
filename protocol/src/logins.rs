//! Who logs in as what on the platform broker: the MQTT username of each
//! identity, and the client ids that belong to it. The broker admits and
//! confines each identity by its username; clients build theirs here.
//!
//! - an admin: a configured name (e.g. `admin`), any client id that is no
//!   other identity's;
//! - AP `A`: username `ap.A`; client id `ap.A`, or `ap.A.NAME` for another
//!   session of the same identity (its user confirming prompts);
//! - gateway `G`: username `gateway.G`; client id `gateway.G` or
//!   `gateway.G.NAME`;
//! - a device: username = client id = its UUID, with its login token once
//!   onboarded;
//! - a device not onboarded yet: username [`ONBOARDING_USER`], client id
//!   `UUID.SESSION` ([`onboarding_client_id`]), no password: it may only
//!   onboard. The session part is the device's own random choice, so no
//!   stranger's connection for the same UUID takes the device's client id
//!   (nor kicks it off), and the bare UUID stays the onboarded device's.

use crate::DeviceUuid;

/// The username of a device that has no login key yet.
pub const ONBOARDING_USER: &str = "onboarding";

/// Client ids of the platform's own clients, which only the process's
/// internal login may use.
pub const INTERNAL_CLIENT_IDS: [&str; 3] = ["verifier", "registry", "platform-startup-probe"];

const AP_PREFIX: &str = "ap.";
const GATEWAY_PREFIX: &str = "gateway.";

/// The username (and main client id) of AP `ap_id`.
pub fn ap_login(ap_id: &str) -> String {
    format!("{AP_PREFIX}{ap_id}")
}

/// The username (and main client id) of gateway `gateway_id`'s agent.
pub fn gateway_login(gateway_id: &str) -> String {
    format!("{GATEWAY_PREFIX}{gateway_id}")
}

/// What a username says its holder is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Login<'a> {
    Ap(&'a str),
    Gateway(&'a str),
    Device(&'a str),
    Onboarding,
    /// Anything else: an admin's name, or nobody's.
    Named(&'a str),
}

impl<'a> Login<'a> {
    pub fn parse(username: &'a str) -> Self {
        if let Some(id) = username.strip_prefix(AP_PREFIX).filter(|id| !id.is_empty()) {
            return Login::Ap(id);
        }
        if let Some(id) = username
            .strip_prefix(GATEWAY_PREFIX)
            .filter(|id| !id.is_empty())
        {
            return Login::Gateway(id);
        }
        if username == ONBOARDING_USER {
            return Login::Onboarding;
        }
        if DeviceUuid::parse(username).is_ok() {
            return Login::Device(username);
        }
        Login::Named(username)
    }
}

/// Whether `client_id` belongs to the identity logged in as `username`
/// (an AP's or a gateway's): the username itself, or a named session of
/// it.
pub fn client_id_belongs(username: &str, client_id: &str) -> bool {
    client_id == username
        || client_id
            .strip_prefix(username)
            .and_then(|rest| rest.strip_prefix('.'))
            .is_some_and(|name| !name.is_empty())
}

/// The most characters of an onboarding client id's session part.
pub const MAX_ONBOARDING_SESSION: usize = 32;

/// A client id for one onboarding session of device `uuid`:
/// `UUID.SESSION`, SESSION fresh and random.
pub fn onboarding_client_id(uuid: &str) -> String {
    format!("{uuid}.{}", crate::crypto::random_b64(6))
}

/// The device an onboarding client id (`UUID.SESSION`, SESSION 1 to
/// [`MAX_ONBOARDING_SESSION`] characters of `A-Za-z0-9_-`) onboards, as
/// spelled in it. None for anything else, the bare UUID included.
pub fn onboarding_device(client_id: &str) -> Option<&str> {
    let (uuid, session) = client_id.split_once('.')?;
    let session_ok = (1..=MAX_ONBOARDING_SESSION).contains(&session.len())
        && session
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    (session_ok && DeviceUuid::parse(uuid).is_ok()).then_some(uuid)
}

/// Whether `client_id` is an identity's own, so that nobody else, an admin
/// included, may take it (rumqttd would kick its holder off and fire its
/// last will): a device's UUID, an AP's or a gateway's, or the platform's.
pub fn reserved_client_id(client_id: &str) -> bool {
    DeviceUuid::parse(client_id).is_ok()
        || client_id.starts_with(AP_PREFIX)
        || client_id.starts_with(GATEWAY_PREFIX)
        || INTERNAL_CLIENT_IDS.contains(&client_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    const UUID: &str = "6f1c2b8e-0b5d-4a8f-9e8c-2b7d8e9f0a1b";

    #[test]
    fn an_onboarding_client_id_names_its_device_and_a_session() {
        let id = onboarding_client_id(UUID);
        assert_eq!(onboarding_device(&id), Some(UUID));
        assert_ne!(id, onboarding_client_id(UUID), "a fresh session each time");
        let upper = format!("{}.s1", UUID.to_ascii_uppercase());
        assert_eq!(onboarding_device(&upper), Some(&upper[..36]));
        for bad in [
            UUID.to_owned(),
            format!("{UUID}."),
            format!("{UUID}.a/b"),
            format!("{UUID}.{}", "x".repeat(33)),
            "not-a-uuid.s1".to_owned(),
        ] {
            assert_eq!(onboarding_device(&bad), None, "{bad}");
        }
    }

    #[test]
    fn usernames_name_their_identity() {
        assert_eq!(Login::parse(&ap_login("ap-1")), Login::Ap("ap-1"));
        assert_eq!(Login::parse(&gateway_login("gw.x")), Login::Gateway("gw.x"));
        assert_eq!(Login::parse(UUID), Login::Device(UUID));
        assert_eq!(Login::parse(ONBOARDING_USER), Login::Onboarding);
        assert_eq!(Login::parse("admin"), Login::Named("admin"));
        assert_eq!(Login::parse("ap."), Login::Named("ap."));
    }

    #[test]
    fn client_ids_belong_to_their_identity_only() {
        assert!(client_id_belongs("ap.ap-1", "ap.ap-1"));
        assert!(client_id_belongs("ap.ap-1", "ap.ap-1.phone"));
        assert!(!client_id_belongs("ap.ap-1", "ap.ap-10"));
        assert!(!client_id_belongs("ap.ap-1", "ap.ap-1."));
        assert!(!client_id_belongs("ap.ap-1", "ap.ap-2"));
        for taken in [UUID, "ap.ap-1", "gateway.gw-1", "registry", "verifier"] {
            assert!(reserved_client_id(taken), "{taken}");
        }
        assert!(!reserved_client_id("verifier-cli-0f3a"));
        assert!(!reserved_client_id("admin-1"));
    }
}

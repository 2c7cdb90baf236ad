//! Who may connect to the platform broker, and what each may publish and
//! subscribe to (docs/SECURITY.md).
//!
//! Secure mode (the default):
//! - **admin**, **ap** and **gateway** users log in with a password whose
//!   SHA-256 is in the config (`[[security.users]]`), or, for a role with
//!   no user configured, in `{data-dir}/credentials/{role}.token`, created
//!   on first start;
//! - a **device** logs in as itself: client id = username = its UUID, and
//!   the password is [`protocol::crypto::device_login`] of its pass_tmp;
//! - no role user may take a device's UUID as its client id;
//! - the ACL confines each role to its topics, and every refusal is
//!   audited (tracing target `audit`).
//!
//! Walkthrough mode admits any client with a username and allows every
//! topic: the literal onboarding issue's contract, for mosquitto_pub.

use crate::embedded::{AclAction, Admission};
use protocol::crypto::{ct_eq, sha256_hex, PlatformKey};
use protocol::{topics, DeviceUuid};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock, Weak};
use tracing::{info, warn};
use verifier::Lockout;

#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} does not hold a platform key (64 hex digits): {reason}")]
    BadKey { path: PathBuf, reason: String },
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Authentication by role, the topic ACL, sealed onboarding, signed
    /// assignments.
    #[default]
    Secure,
    /// Plaintext pass_tmp and Wi-Fi password, any client, any topic.
    Walkthrough,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Admin,
    Ap,
    Gateway,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Admin, Role::Ap, Role::Gateway];

    pub fn name(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Ap => "ap",
            Role::Gateway => "gateway",
        }
    }
}

/// One `[[security.users]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    /// The MQTT username.
    pub name: String,
    pub role: Role,
    /// SHA-256 of the password, 64 hex digits: `printf %s PASSWORD | sha256sum`.
    pub password_sha256: String,
}

/// `[security]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecuritySection {
    pub mode: Mode,
    /// The platform's Ed25519 key (hex seed), relative to the data dir;
    /// created on first start. Its public half goes next to it, `.pub`.
    pub signing_key_file: PathBuf,
    pub users: Vec<User>,
    /// Failed access attempts before a UUID is locked out.
    pub max_failures: u32,
    /// How long a locked-out UUID stays locked, in seconds.
    pub lockout_secs: u64,
    /// Verification requests each AP may make per second (burst: the same).
    pub ap_rate_per_sec: u32,
}

impl Default for SecuritySection {
    fn default() -> Self {
        SecuritySection {
            mode: Mode::Secure,
            signing_key_file: PathBuf::from("platform.key"),
            users: Vec::new(),
            max_failures: 5,
            lockout_secs: 300,
            ap_rate_per_sec: 500,
        }
    }
}

impl SecuritySection {
    pub fn validate(&self) -> Result<(), String> {
        for (i, u) in self.users.iter().enumerate() {
            let h = &u.password_sha256;
            if h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(format!(
                    "users[{i}].password_sha256 must be 64 hex digits (printf %s PASSWORD | sha256sum)"
                ));
            }
            if u.name.is_empty() || DeviceUuid::parse(&u.name).is_ok() {
                return Err(format!(
                    "users[{i}].name {:?} must be non-empty and not a device UUID",
                    u.name
                ));
            }
        }
        if self.max_failures == 0 || self.ap_rate_per_sec == 0 {
            return Err("max_failures and ap_rate_per_sec must be at least 1".into());
        }
        Ok(())
    }
}

/// Loads the platform's signing key, creating it (mode 0600) on first
/// start, and writes its public half to `{file}.pub`.
pub fn load_or_create_key(path: &Path) -> Result<PlatformKey, SecurityError> {
    let key = match std::fs::read_to_string(path) {
        Ok(text) => PlatformKey::from_seed_hex(&text).map_err(|e| SecurityError::BadKey {
            path: path.to_owned(),
            reason: e.to_string(),
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = PlatformKey::generate();
            write_secret(path, &format!("{}\n", key.seed_hex()))?;
            info!(path = %path.display(), "created the platform signing key");
            key
        }
        Err(source) => {
            return Err(SecurityError::Read {
                path: path.to_owned(),
                source,
            })
        }
    };
    let public = public_key_path(path);
    std::fs::write(&public, format!("{}\n", key.public().to_hex())).map_err(|source| {
        SecurityError::Write {
            path: public.clone(),
            source,
        }
    })?;
    Ok(key)
}

pub fn public_key_path(key: &Path) -> PathBuf {
    let mut name = key.as_os_str().to_owned();
    name.push(".pub");
    PathBuf::from(name)
}

/// Writes a new secret file (mode 0600) so that a crash at any point
/// leaves either no file or the whole one: written and synced under a
/// temporary name, renamed into place, then the directory synced. A
/// half-written key would otherwise stop the next start until someone
/// deleted it by hand.
fn write_secret(path: &Path, text: &str) -> Result<(), SecurityError> {
    use std::io::Write;
    let write = |source| SecurityError::Write {
        path: path.to_owned(),
        source,
    };
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir).map_err(write)?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    // A leftover from a crash is replaced, never reused: its mode may not
    // be 0600.
    match std::fs::remove_file(&tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(write(e)),
        _ => {}
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&tmp).map_err(write)?;
    file.write_all(text.as_bytes()).map_err(write)?;
    file.sync_all().map_err(write)?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(write)?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(write)
}

/// The users of `section`, plus one bootstrap user per role that has
/// none: `{role}` with the password in `{credentials}/{role}.token`,
/// created on first start.
pub fn users_with_bootstrap(
    section: &SecuritySection,
    credentials: &Path,
) -> Result<HashMap<String, (Role, String)>, SecurityError> {
    let mut users: HashMap<String, (Role, String)> = section
        .users
        .iter()
        .map(|u| {
            (
                u.name.clone(),
                (u.role, u.password_sha256.to_ascii_lowercase()),
            )
        })
        .collect();
    for role in Role::ALL {
        if users.values().any(|(r, _)| *r == role) {
            continue;
        }
        let path = credentials.join(format!("{}.token", role.name()));
        let token = match std::fs::read_to_string(&path) {
            Ok(t) => t.trim().to_owned(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let token = protocol::crypto::random_b64(24);
                write_secret(&path, &format!("{token}\n"))?;
                info!(role = role.name(), path = %path.display(), "created a bootstrap credential");
                token
            }
            Err(source) => return Err(SecurityError::Read { path, source }),
        };
        users.insert(role.name().to_owned(), (role, sha256_hex(&token)));
    }
    Ok(users)
}

/// Checks a device's login; the verifier's store implements it.
pub trait DeviceDirectory: Send + Sync + 'static {
    /// Whether `password` is the login of enrolled device `uuid`.
    fn login_ok(&self, uuid: &DeviceUuid, password: &str) -> bool;
}

impl DeviceDirectory for verifier::Store {
    fn login_ok(&self, uuid: &DeviceUuid, password: &str) -> bool {
        match self.get(uuid) {
            Ok(Some(e)) => ct_eq(
                &protocol::crypto::device_login(uuid.as_str(), &e.pass_tmp),
                password,
            ),
            Ok(None) => false,
            Err(e) => {
                warn!(error = %e, "cannot read the verifier store for a login");
                false
            }
        }
    }
}

/// The platform broker's admission and ACL.
pub struct PlatformAuth {
    mode: Mode,
    /// Failed device logins per UUID: a login is derived from pass_tmp, so
    /// it is a guessing oracle and gets the same lockout as onboarding.
    logins: Lockout,
    users: HashMap<String, (Role, String)>,
    /// Set once the verifier's store is open; devices are refused before
    /// and after it. Weak: the broker thread outlives a stopped platform,
    /// and must not keep the verifier's database open (and locked).
    devices: OnceLock<Weak<dyn DeviceDirectory>>,
}

enum Who {
    Role(Role),
    Device,
}

impl PlatformAuth {
    pub fn new(mode: Mode, users: HashMap<String, (Role, String)>) -> Self {
        let defaults = SecuritySection::default();
        PlatformAuth {
            mode,
            logins: Lockout::new(
                defaults.max_failures,
                std::time::Duration::from_secs(defaults.lockout_secs),
            ),
            users,
            devices: OnceLock::new(),
        }
    }

    /// The lockout policy for device logins.
    pub fn with_lockout(mut self, max_failures: u32, lockout: std::time::Duration) -> Self {
        self.logins = Lockout::new(max_failures, lockout);
        self
    }

    pub fn set_devices(&self, devices: &Arc<dyn DeviceDirectory>) {
        let _ = self.devices.set(Arc::downgrade(devices));
    }

    fn who(&self, username: &str) -> Who {
        match self.users.get(username) {
            Some((role, _)) => Who::Role(*role),
            None => Who::Device,
        }
    }
}

impl Admission for PlatformAuth {
    fn admit(&self, client_id: &str, username: &str, password: &str) -> bool {
        if self.mode == Mode::Walkthrough {
            return true;
        }
        let refuse = |reason: &str| {
            warn!(target: "audit", client_id, username, reason, "platform connect refused");
            false
        };
        if let Some((role, hash)) = self.users.get(username) {
            if !ct_eq(&sha256_hex(password), hash) {
                return refuse("wrong password");
            }
            if DeviceUuid::parse(client_id).is_ok() {
                return refuse("a role user may not use a device's id");
            }
            info!(target: "audit", client_id, username, role = role.name(), "connected");
            return true;
        }
        let Ok(uuid) = DeviceUuid::parse(username) else {
            return refuse("unknown user");
        };
        if client_id != username {
            return refuse("a device must connect with its own id as client id");
        }
        if self.logins.locked(uuid.key()).is_some() {
            return refuse("device locked out after failed logins");
        }
        match self.devices.get().and_then(Weak::upgrade) {
            Some(d) if d.login_ok(&uuid, password) => {
                self.logins.clear(uuid.key());
                true
            }
            Some(_) => {
                self.logins.fail(uuid.key());
                refuse("wrong device login or not enrolled")
            }
            None => refuse("the verifier is not serving yet"),
        }
    }

    fn allow(&self, client_id: &str, username: &str, topic: &str, action: AclAction) -> bool {
        if self.mode == Mode::Walkthrough {
            return true;
        }
        let ok = match self.who(username) {
            Who::Role(Role::Admin) => true,
            Who::Role(Role::Ap) => ap_may(topic, action),
            Who::Role(Role::Gateway) => gateway_may(topic, action),
            Who::Device => device_may(client_id, topic, action),
        };
        if !ok {
            warn!(target: "audit", client_id, username, topic, ?action, "refused by the platform ACL");
        }
        ok
    }
}

fn segments(topic: &str) -> Vec<&str> {
    topic.split('/').collect()
}

/// An AP reads access requests and proofs, and its verifier answers and
/// confirmations; it writes verification requests, challenges and
/// responses to devices, prompts and outcome reports.
fn ap_may(topic: &str, action: AclAction) -> bool {
    let s = segments(topic);
    match action {
        AclAction::Subscribe => matches!(
            s.as_slice(),
            ["wlan", _, "access", "request" | "proof"]
                | ["ap", _, "verify", "response"]
                | ["ap", _, "confirm" | "prompt"]
        ),
        AclAction::Publish => {
            topic == topics::VERIFY_REQUEST
                || matches!(
                    s.as_slice(),
                    ["device", id, "access", "response" | "challenge"] if !is_wild(id)
                )
                || matches!(s.as_slice(), ["ap", id, "prompt" | "confirm" | "outcome"] if !is_wild(id))
        }
    }
}

/// A gateway agent reads its assignments and redirect requests; it
/// writes its status and presence and asks for its snapshot.
fn gateway_may(topic: &str, action: AclAction) -> bool {
    let s = segments(topic);
    match action {
        AclAction::Subscribe => {
            matches!(s.as_slice(), ["gateway", id, "assign" | "notify"] if !is_wild_multi(id))
        }
        AclAction::Publish => {
            topic == topics::REGISTRY_SYNC
                || matches!(s.as_slice(), ["gateway", id, "status" | "presence"] if !is_wild(id))
        }
    }
}

/// A device reads only its own topics; it writes access requests and
/// proofs, and gateway queries.
fn device_may(client_id: &str, topic: &str, action: AclAction) -> bool {
    let s = segments(topic);
    match action {
        AclAction::Subscribe => {
            matches!(s.as_slice(), ["device", id, ..] if *id == client_id)
                && !topic.contains('#')
                && !topic.contains('+')
        }
        AclAction::Publish => {
            topic == topics::REGISTRY_QUERY
                || matches!(s.as_slice(), ["wlan", ssid, "access", "request" | "proof"] if !is_wild(ssid))
        }
    }
}

fn is_wild(segment: &str) -> bool {
    segment.contains(['+', '#'])
}

/// `gateway/+/assign` is allowed for a gateway agent; `#` is not.
fn is_wild_multi(segment: &str) -> bool {
    segment.contains('#')
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

    #[test]
    fn bootstrap_credentials_are_created_once_and_hashed() {
        let dir = tempfile::tempdir().unwrap();
        let section = SecuritySection::default();
        let users = users_with_bootstrap(&section, dir.path()).unwrap();
        let token = std::fs::read_to_string(dir.path().join("admin.token")).unwrap();
        assert_eq!(users["admin"], (Role::Admin, sha256_hex(token.trim())));
        let again = users_with_bootstrap(&section, dir.path()).unwrap();
        assert_eq!(users, again);
        let auth = PlatformAuth::new(Mode::Secure, users);
        assert!(auth.admit("cli-1", "admin", token.trim()));
        assert!(!auth.admit("cli-1", "admin", "guess"));
        assert!(!auth.admit(UUID, "admin", token.trim()), "a device's id");
        assert!(!auth.admit("x", "nobody", ""));
        assert!(!auth.admit(UUID, UUID, "x"), "no verifier yet");
    }

    #[test]
    fn the_key_is_created_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("platform.key");
        let a = load_or_create_key(&path).unwrap();
        let b = load_or_create_key(&path).unwrap();
        assert_eq!(a.public(), b.public());
        let public = std::fs::read_to_string(public_key_path(&path)).unwrap();
        assert_eq!(public.trim(), a.public().to_hex());
        std::fs::write(&path, "junk").unwrap();
        assert!(load_or_create_key(&path).is_err());
    }

    #[test]
    fn a_crash_while_creating_the_key_leaves_no_half_key() {
        // A crash mid-write leaves only the temporary file, which the next
        // start overwrites; the key itself appears whole or not at all.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("platform.key");
        std::fs::write(dir.path().join("platform.key.tmp"), "half").unwrap();
        let key = load_or_create_key(&path).unwrap();
        assert!(!dir.path().join("platform.key.tmp").exists());
        assert_eq!(load_or_create_key(&path).unwrap().public(), key.public());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}

//! Who may connect to the platform broker, and what each may publish and
//! subscribe to (docs/SECURITY.md).
//!
//! Secure mode (the default):
//! - **admins** log in with a password whose SHA-256 is in the config
//!   (`[[security.users]]`), or, with none configured, the bootstrap
//!   token in `{data-dir}/credentials/admin.token`, created on first start;
//! - every **AP** and every **gateway** is its own identity, registered
//!   with its own credential (stored hashed), and logs in as `ap.ID` or
//!   `gateway.ID` ([`protocol::logins`]);
//! - a **device** logs in as itself: client id = username = its UUID;
//! - a client id belongs to its username, and nobody takes another
//!   identity's;
//! - the ACL binds each identity to its own topics, and every refusal is
//!   audited (tracing target `audit`).
//!
//! Walkthrough mode admits any client with a username and allows every
//! topic: the literal onboarding issue's contract, for mosquitto_pub.

mod acl;
mod platform_auth;
mod secrets;
mod settings;

pub use platform_auth::{Directory, Enrolled, PlatformAuth};
pub use secrets::{
    bootstrap_aps, load_or_create_key, public_key_path, users_with_bootstrap, SecurityError,
};
pub use settings::{BootstrapAp, Mode, Role, SecuritySection, User};

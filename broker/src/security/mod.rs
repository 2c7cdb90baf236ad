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

mod acl;
mod platform_auth;
mod secrets;
mod settings;

pub use platform_auth::{DeviceDirectory, PlatformAuth};
pub use secrets::{
    bootstrap_aps, load_or_create_key, public_key_path, users_with_bootstrap, SecurityError,
};
pub use settings::{BootstrapAp, Mode, Role, SecuritySection, User};

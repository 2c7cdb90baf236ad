//! The platform's logins and topic ACL, decided once, for two callers:
//!
//! - the platform broker's embedded rumqttd, in-process and synchronously
//!   (`broker::security`, through [`Directory`], which the sled [`Store`]
//!   answers from memory);
//! - an external broker (EMQX ≥ 5.8, VerneMQ) over HTTP ([`http`]),
//!   asynchronously, from any [`EnrollmentStore`].
//!
//! Who is who (docs/SECURITY.md, *Mechanisms*):
//! - an admin, by the password of a configured (or bootstrap) admin user;
//! - AP `A`, as `ap.A`, by the credential it was registered with (the
//!   verifier's store keeps its hash and its SSIDs);
//! - gateway `G`, as `gateway.G`, by the credential it was registered with
//!   (the registry keeps its hash: [`registry::GatewayLogins`]);
//! - a device, as its UUID, with a fresh token signed by the key it
//!   registered when it was onboarded (nothing in it to test a guess of
//!   pass_tmp against, and a replay is refused: `replay.rs`);
//! - a device onboarding, as [`protocol::logins::ONBOARDING_USER`] with
//!   its UUID as client id and no password: it may only onboard, and a
//!   second such connection does not kick off the first while it onboards
//!   (`holds.rs`).
//!
//! A login is decided in three steps, so that each caller fetches the one
//! record it needs its own way: [`Auth::classify`] reads the username
//! (and settles what needs no record: admins, gateways), [`Claim::lookup`]
//! names the record to fetch, and [`Auth::verify`] checks the password or
//! token against it. [`Auth::admit_sync`] and [`Auth::admit_async`] are
//! the two ways through. What an admitted client may then publish and
//! subscribe to is [`acl`].
//!
//! [`Store`]: crate::Store
//! [`EnrollmentStore`]: crate::EnrollmentStore

pub mod acl;
mod directory;
mod holds;
pub mod http;
mod login;
mod replay;

pub use acl::{may, Action, Grant, Request, Who};
pub use directory::{Directory, Enrolled};
pub use http::{router, serve, HttpAuth};
pub use login::{Admitted, Auth, Claim, Credentials, Lookup, Record, Refusal, RefusalKind};
pub use replay::SeenTokens;

use std::time::Duration;

/// How far a device login token's time may be from the verifier's clock.
pub const LOGIN_SKEW: Duration = Duration::from_secs(120);

/// How long a connection made to onboard keeps another connection for the
/// same device out: longer than an onboarding that waits for its user
/// (60 s), short enough that a connection left behind (a device that lost
/// its network) gives way.
pub const ONBOARDING_HOLD: Duration = Duration::from_secs(90);

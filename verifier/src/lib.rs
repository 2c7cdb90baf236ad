//! The verifier: the server side of Wi-Fi onboarding.
//!
//! It owns the factory mapping UUID -> pass_tmp (behind a trait, in sled
//! today, see [`store`]),
//! answers APs' verification messages with the stored pass_tmp, and serves
//! admin requests (enroll, import, remove, show, list) over MQTT
//! ([`worker`]). sled is single-process, so the admin CLI never opens the
//! database: it talks to the running worker through [`client`].
//!
//! Invariant: an admin request is answered `ok` only after its change is
//! flushed to disk.

#![forbid(unsafe_code)]

pub mod auth;
pub mod client;
pub mod manifest;
pub mod pacing;
pub mod store;
pub mod worker;

pub use client::{AdminClient, ClientError};
pub use pacing::Pacing;
pub use store::{ApRecord, EnrollmentStore, PgStore, Store, StoreError};
pub use worker::{run, start, SecureVerify, VerifierConfig, VerifierError, Worker};

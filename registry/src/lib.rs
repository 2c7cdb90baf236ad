//! The gateway registry: device id -> gateway id, gateway id -> address.
//!
//! Devices know only the platform broker. They ask the registry for their
//! gateway on `registry/query`; the registry answers from its store
//! ([`store`], sled today), allocating by [`policy`] when a device has no
//! assignment or its gateway is dead. It learns gateways' liveness from their status
//! messages and last wills, keeps each gateway agent's list of admitted
//! devices current, and on a remap or drain tells the old gateway to send
//! the device a redirect notice ([`worker`]). Admins drive it over MQTT
//! through [`client`], never by opening the database. Gateways are
//! registered identities: in secure mode the registry believes only a
//! registered gateway, at the address and weight of its registration, and
//! [`GatewayLogins`] tells the platform broker how each logs in.
//!
//! Invariant: an assignment is flushed to disk before anyone hears of it:
//! the device's answer, the CLI's reply, the gateways' updates.

#![forbid(unsafe_code)]

pub mod client;
pub mod logins;
pub mod policy;
pub mod store;
pub mod worker;

pub use client::{RegistryClient, RegistryClientError};
pub use logins::GatewayLogins;
pub use policy::Policy;
pub use store::{PgStore, RegistryStore, SledStore, StoreBatch, StoreError};
pub use worker::{start, CertificateSigner, RegistryConfig, RegistryError, Worker};

/// The store [`start`] opens in `db_dir`: the name under which tools and
/// tests open a stopped registry's database.
pub type Store = SledStore;

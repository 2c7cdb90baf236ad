//! The gateway registry: device id -> gateway id, gateway id -> address.
//!
//! Not built yet. This crate holds the place in the workspace for the
//! gateway-assignment work (registry worker, allocation policies, admin
//! CLI); nothing depends on it today.

#![forbid(unsafe_code)]

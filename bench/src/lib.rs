//! The platform's benchmark scenarios (see docs/BENCHMARKS.md). Each run
//! starts the release binaries as a user would, on free ports in a scratch
//! directory, and drives a fleet in this process through
//! `device_sim::fleet`, the code `device-sim fleet` runs.

#![forbid(unsafe_code)]

pub mod scenarios;

//! Runs the workspace's binaries as child processes, as an operator would,
//! for the tests that need a real process (to SIGKILL it, to SIGTERM it, to
//! read its exit code) and for the benchmarks (to measure its memory).
//!
//! One blocking implementation: [`Spawn`] starts a program with its output
//! in a log file, and the [`Proc`] it returns waits for a line in that log,
//! signals, reaps and measures the child, and kills it when dropped, so a
//! failing test or benchmark leaves nothing running. [`WorkspaceBin`] and
//! [`beside_current_exe`] find the binaries to run, [`run`] runs one to
//! completion, [`free_port`] picks a loopback port for it.
//!
//! Architecture invariant: this crate knows nothing of the platform. It
//! depends on none of the workspace's crates and speaks no MQTT; what a
//! process is started with and waited for is up to its caller. Async
//! callers wrap the blocking waits (`tokio::task::block_in_place`).
//!
//! Linux only: signals go through kill(1) (the workspace forbids unsafe
//! code, so no libc call) and memory is read from /proc.

#![forbid(unsafe_code)]

mod bins;
mod error;
mod proc;
mod services;
mod system;

pub use bins::{beside_current_exe, WorkspaceBin};
pub use error::Error;
pub use proc::{Proc, Spawn};
pub use services::{Mosquitto, Postgres, POSTGRES_USER};
pub use system::{cpu_ms, cpu_ms_tree, free_port, rss_bytes, run};

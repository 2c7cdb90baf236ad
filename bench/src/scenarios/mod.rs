//! The benchmark scenarios. Each starts a fresh platform from the release
//! binaries, measures the `rtt` floor on it, runs the flow, and prints the
//! figures and the same-run ratio of the flow to the floor.
//!
//! One scenario per file; the platform they share is in `platform`, the
//! measuring and printing in `report`.

mod connect;
mod cpu;
mod drain;
mod failover;
mod hold;
mod life;
mod onboard;
mod platform;
mod report;
mod rtt;
mod scale_out;
mod soak;
mod standby;
mod stranded;
mod topics;
mod wide;

pub use connect::connect;
pub use drain::drain;
pub use failover::failover;
pub use hold::hold;
pub use life::life;
pub use onboard::onboard;
pub use platform::{Platform, Setup};
pub use report::{Mode, Outcome};
pub use rtt::{rtt, rtt_only};
pub use scale_out::scale_out;
pub use soak::{soak, SoakOptions};
pub use topics::topics;
pub use wide::wide;

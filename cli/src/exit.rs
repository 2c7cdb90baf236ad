//! Exit codes that mean the same in every binary, so that a script
//! driving several of them can tell a refusal from an outage the same way.
//! A binary with an outcome of its own (device-sim's `declined`) defines
//! it next to these, from 4 up.

/// Done as asked.
pub const OK: u8 = 0;
/// The platform answered, and said no: unknown device, already enrolled,
/// a dead gateway, access refused.
pub const REFUSED: u8 = 1;
/// A bad command line (clap's own code), or a bad input file.
pub const USAGE: u8 = 2;
/// The platform could not be reached, or did not answer in time.
pub const UNREACHABLE: u8 = 3;

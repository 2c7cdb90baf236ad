//! The one log subscriber a binary installs. Libraries only emit
//! `tracing` events; which of them are shown, and where, is the binary's
//! choice, made here the same way for every binary.

/// Where a binary's logs go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogOutput {
    /// Services: logs are their output.
    Stdout,
    /// Interactive tools: stdout is for results.
    Stderr,
}

/// Installs the log subscriber of a binary: `RUST_LOG`, or `default` when
/// it is unset. Only a binary's `main` calls this; libraries never install
/// a subscriber.
pub fn init_logging(default: &str, output: LogOutput) {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| default.into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match output {
        LogOutput::Stdout => builder.init(),
        LogOutput::Stderr => builder.with_writer(std::io::stderr).init(),
    }
}

//! The async runtime of a binary, started the same way everywhere, with a
//! failure to start it reported rather than panicked on.

/// The async runtime of a binary, or the exit code to stop with after
/// printing why it could not start.
pub fn runtime(
    failure: std::process::ExitCode,
) -> Result<tokio::runtime::Runtime, std::process::ExitCode> {
    tokio::runtime::Runtime::new().map_err(|e| {
        eprintln!("error: cannot start the async runtime: {e}");
        failure
    })
}

//! Ctrl-C and SIGTERM as a cancellation: how every long-running binary
//! learns that it should drain and stop.

use tokio_util::sync::CancellationToken;
use tracing::info;

/// Cancels `token` on Ctrl-C or SIGTERM. Binaries spawn this once; every
/// service drains on the token.
pub async fn cancel_on_signal(token: CancellationToken) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => info!("Ctrl-C received; shutting down"),
                    _ = term.recv() => info!("SIGTERM received; shutting down"),
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    token.cancel();
}

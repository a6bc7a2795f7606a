//! Helpers shared by the examples beside this crate; run an example with
//! `cargo run --example NAME` from the workspace root.

/// Logs through `tracing-subscriber`, filtered by `RUST_LOG` (default
/// `info`), e.g. `RUST_LOG=ws_server=debug`.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).init();
}

/// Completes on Ctrl-C (SIGINT) or, on Unix, SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
    tracing::info!("shutdown signal received");
}

/// Sets a server's heartbeat to a ping every `interval_ms` milliseconds,
/// with half of that for the pong (the interval must exceed the timeout).
pub fn heartbeat(server: ws_server::ServerBuilder, interval_ms: u64) -> ws_server::ServerBuilder {
    let interval = std::time::Duration::from_millis(interval_ms.max(2));
    server
        .ping_interval(Some(interval))
        .ping_timeout(Some(interval / 2))
}

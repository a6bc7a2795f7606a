//! What the accept loop does besides accepting: tell an error about one
//! connection from a shortage of the process's resources, answer
//! connections over the limit, and check the limit against the
//! descriptors the process may open.

use std::io;
use std::time::Duration;

use bytes::BytesMut;
use http::{HeaderValue, StatusCode, header};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use ws_proto::Rejection;

use super::ServerBuilder;

/// How long the accept loop waits after running out of descriptors or
/// memory: long enough for connections to end and free some, short enough
/// that no one notices.
pub(super) const RESOURCE_BACKOFF: Duration = Duration::from_millis(50);

/// The most answers of 503 in flight at once; past it a connection over
/// the limit is closed without one, so that a flood of them costs no more
/// than this many tasks.
pub(super) const MAX_BUSY_ANSWERS: usize = 256;

/// What an error from `accept` means for the loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AcceptError {
    /// The process is out of descriptors, or the system out of memory or
    /// buffers: accepting again at once would fail the same way.
    Resources,
    /// The pending connection failed before it was accepted (reset,
    /// aborted, refused by a firewall rule...): the next one is fine.
    Connection,
}

/// Sorts an error from `accept` (accept(2) on Linux: "EMFILE", "ENFILE",
/// "ENOBUFS", "ENOMEM" are the process's or the system's; the others
/// concern the connection being accepted).
pub(super) fn classify(error: &io::Error) -> AcceptError {
    // EMFILE, ENFILE, ENOBUFS, ENOMEM on Linux and the BSDs alike, but for
    // ENOBUFS, whose number differs.
    const EMFILE: i32 = 24;
    const ENFILE: i32 = 23;
    const ENOMEM: i32 = 12;
    #[cfg(target_os = "linux")]
    const ENOBUFS: i32 = 105;
    #[cfg(not(target_os = "linux"))]
    const ENOBUFS: i32 = 55;
    match error.raw_os_error() {
        Some(EMFILE | ENFILE | ENOMEM | ENOBUFS) => AcceptError::Resources,
        _ if error.kind() == io::ErrorKind::OutOfMemory => AcceptError::Resources,
        _ => AcceptError::Connection,
    }
}

/// The process's soft limit on open descriptors, where the system says
/// (Linux's `/proc/self/limits`); `None` elsewhere or when unlimited.
pub(super) fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Warns at start-up when `max_connections` cannot be reached: each
/// connection takes a descriptor, and the process runs out first (the
/// usual soft limit is 1 024). Accepting then fails with "too many open
/// files" instead of answering 503.
pub(super) fn check_descriptor_limit(max_connections: usize) {
    if let Some(limit) = open_files_limit()
        && max_connections as u64 >= limit
    {
        tracing::warn!(
            max_connections,
            open_files_limit = limit,
            "max_connections is above the open files limit: raise it (ulimit -n, or \
             LimitNOFILE= in a systemd unit) or lower max_connections"
        );
    }
}

/// Answers a connection over the limit with 503 and closes it (after the
/// TLS handshake, on a TLS server).
pub(super) async fn reject_busy(stream: TcpStream, builder: &ServerBuilder) {
    #[cfg(feature = "tls")]
    if let Some(tls) = &builder.tls {
        if let Ok(Ok(stream)) = timeout(Duration::from_secs(1), tls.acceptor.accept(stream)).await {
            write_busy(stream).await;
        }
        return;
    }
    let _ = builder;
    write_busy(stream).await;
}

async fn write_busy<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S) {
    let mut out = BytesMut::new();
    Rejection::new(StatusCode::SERVICE_UNAVAILABLE)
        .header(header::RETRY_AFTER, HeaderValue::from_static("1"))
        .body("too many connections\n")
        .write(&mut out);
    let _ = timeout(Duration::from_secs(1), async {
        stream.write_all(&out).await?;
        stream.shutdown().await
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptor_shortages_are_told_from_connection_errors() {
        for resources in [24, 23, 12] {
            let error = io::Error::from_raw_os_error(resources);
            assert_eq!(classify(&error), AcceptError::Resources, "{error}");
        }
        for connection in [
            io::ErrorKind::ConnectionAborted,
            io::ErrorKind::ConnectionReset,
            io::ErrorKind::PermissionDenied,
        ] {
            assert_eq!(classify(&connection.into()), AcceptError::Connection);
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_open_files_limit_is_read_from_proc() {
        assert!(open_files_limit().is_some_and(|limit| limit > 0));
    }
}

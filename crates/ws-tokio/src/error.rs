//! Errors of an open connection.

use ws_proto::{CloseCode, ProtocolError};

/// Why a connection failed, or why a message could not be sent.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The peer broke RFC 6455 or a configured limit; the connection was
    /// failed with the error's close code.
    #[error("protocol error: {0}")]
    Protocol(#[from] ProtocolError),
    /// The transport failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The peer did not answer a keepalive ping within `ping_timeout`.
    #[error("keepalive ping timed out")]
    KeepaliveTimeout,
    /// The connection was dropped for not keeping up with its broadcast
    /// queue: its [`Feed`](crate::Feed) evicted it (`ws_server`'s
    /// `SlowConsumer::Disconnect`).
    #[error("disconnected as a slow consumer (close code {0})")]
    Evicted(CloseCode),
    /// The transport ended without a close handshake (close code 1006).
    #[error("connection lost without a close frame")]
    ConnectionLost,
    /// The connection is closing or closed: nothing more can be sent.
    #[error("connection closed{}", .0.map(|c| format!(" with code {c}")).unwrap_or_default())]
    Closed(Option<CloseCode>),
    /// [`WebSocketSender::try_send`](crate::WebSocketSender::try_send): the
    /// outgoing queue is at its high-water mark.
    #[error("outgoing queue is full")]
    Full,
    /// The message may not be sent (an oversized control frame, an invalid
    /// close code or reason).
    #[error("invalid message: {0}")]
    InvalidMessage(#[from] ws_proto::SendError),
}

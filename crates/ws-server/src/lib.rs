//! The Tokio WebSocket server.
//!
//! `serve(handler, addr)` accepts connections, runs the opening handshake,
//! and calls `handler` with one [`WebSocket`] per connection. The echo
//! server is a few lines:
//!
//! ```no_run
//! use futures_util::{SinkExt, StreamExt};
//!
//! #[tokio::main]
//! async fn main() -> std::io::Result<()> {
//!     ws_server::serve(
//!         |mut ws: ws_server::WebSocket| async move {
//!             while let Some(Ok(message)) = ws.next().await {
//!                 if ws.send(message).await.is_err() {
//!                     break;
//!                 }
//!             }
//!         },
//!         "127.0.0.1:9001",
//!     )
//!     .await
//! }
//! ```
//!
//! Each connection is one task in which the handler runs beside a driver
//! that owns the socket and the `ws-proto` core. The driver answers pings,
//! runs the keepalive, completes the closing handshake and enforces the
//! timeouts whatever the handler is doing, and gathers every message the
//! handler queued while it was busy into one write.
//!
//! A handler that answers each message at once, without awaiting, can
//! instead be called by the driver itself, as it decodes each message:
//! [`ServerBuilder::serve_inline`] takes a [`MessageHandler`] (any
//! `FnMut(Message, &mut Reply)`), which answers through a [`Reply`]
//! straight into the connection's output. No queue, no second future, no
//! wake between the two: the fastest way to serve, where it fits.
//!
//! [`Server::builder`] sets the rest: limits, timeouts, keepalive, origin
//! allow-list, subprotocols, a handshake hook for authentication and
//! routing, a health-check path, the connection cap, backpressure, and
//! `wss://` with `ServerBuilder::tls` (feature `tls`, on by default).
//!
//! For one-to-many servers, a [`Hub`] holds connections in rooms and
//! publishes to them: each message is framed once and shared by every
//! recipient, and each recipient has a bounded queue with a
//! [`SlowConsumer`] policy. See `docs/broadcast.md`.

mod hub;
mod outbox;
mod server;
mod tasks;
#[cfg(feature = "tls")]
mod tls;

/// Locks one of the server's short critical sections (a hub's state, the
/// connection tasks' bookkeeping, the stop signal's waiters, a join's task
/// waker). Nothing panics while holding any of them; should anything, what
/// they guard is still consistent, so the poison is ignored.
pub(crate) fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poison| poison.into_inner())
}

pub use hub::{
    Audience, Backplane, Delivery, Hub, HubBuilder, Member, MemberId, Publication, WeakHub,
};
pub use outbox::{OutboxLimits, SharedFrame, SlowConsumer};
/// rustls, whose `ServerConfig` [`TlsConfig::from_rustls`] takes.
#[cfg(feature = "tls")]
pub use rustls;
pub use server::{
    Accept, HandshakeRequest, HandshakeResult, Listen, Serve, Server, ServerBuilder, serve,
};
#[cfg(feature = "tls")]
pub use tls::{TlsConfig, TlsError};
/// The sans-I/O core, whose types ([`Message`],
/// [`CloseCode`], ...) appear in this API.
pub use ws_proto as proto;
/// The `http` crate, whose types appear in this API.
pub use ws_proto::http;
pub use ws_proto::{CloseCode, CloseFrame, DeflateParams, Message, PerMessageDeflate, Utf8Bytes};
pub use ws_tokio::{
    Error, MessageHandler, Reply, Settings, WebSocket, WebSocketReceiver, WebSocketSender,
};

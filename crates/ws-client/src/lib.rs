//! The Tokio WebSocket client.
//!
//! [`connect`] opens a connection and returns a [`WebSocket`] (the same type
//! a `ws-server` handler gets) and the server's 101 response:
//!
//! ```no_run
//! use futures_util::StreamExt;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let (mut ws, response) = ws_client::connect("ws://127.0.0.1:9001/chat").await?;
//! println!("subprotocol: {:?}", response.protocol);
//! ws.send_text("Hello, Server").await?;
//! while let Some(message) = ws.next().await {
//!     println!("{:?}", message?);
//! }
//! # Ok(())
//! # }
//! ```
//!
//! [`Client::builder`] sets the rest: headers, cookies, `Origin`,
//! subprotocols, connect and handshake timeouts, frame limits, the
//! heartbeat, the masking-key source, and for `wss://` URLs (feature `tls`,
//! on by default) the trusted roots. [`ClientBuilder::build`] checks
//! them: in particular the heartbeat needs `ping_interval > ping_timeout`,
//! the rule users of Python's websocket-client know.
//!
//! # Proxies
//!
//! [`ClientBuilder::proxy`] connects through an HTTP (`CONNECT`), HTTPS or
//! SOCKS5 proxy; without it, the environment is read as curl reads it
//! (`HTTPS_PROXY` for `wss://`, `HTTP_PROXY` for `ws://`, `ALL_PROXY`,
//! `NO_PROXY`), so an application behind a proxy works with no code change;
//! [`ClientBuilder::no_proxy`] turns that off. Failures are
//! [`ConnectError::ProxyAuth`], [`ConnectError::ProxyRefused`] (with the
//! proxy's status), [`ConnectError::Socks`] (with the named reply code),
//! [`ConnectError::ProxyUnreachable`] (retryable) and
//! [`ConnectError::ProxyProtocol`].
//!
//! # Heartbeat
//!
//! By default the client pings every 20 s. When a pong has not come 10 s
//! after its ping, the connection fails: the next [`WebSocket::recv`]
//! returns [`Error::KeepaliveTimeout`] (the heartbeat-timeout error, never a
//! generic I/O error) and the socket is closed with code 1011. Only the pong
//! carrying the latest ping's payload counts; stray, late and duplicate
//! pongs change nothing. [`WebSocket::last_pong_rtt`] gives the round trip
//! of the last answered ping.
//!
//! # Styles
//!
//! - Stream and sink: `ws.next().await`, `ws.send(..)`, or `recv`,
//!   `send_text`, `send_binary`, `close`.
//! - Short-lived, like Python's `create_connection`: connect, `send_text`,
//!   `recv`, `close`.
//! - Callbacks, like Python's `WebSocketApp`: implement [`Callbacks`] and run
//!   [`App::run_forever`], optionally with [`Reconnect`].
//!
//! # Logging
//!
//! Through `tracing`: the handshake at debug, frames at trace. With
//! `tracing-subscriber`, `RUST_LOG=ws_client=trace,ws_tokio=trace` plays the
//! role of Python's `websocket.enableTrace(True)`.

mod app;
mod client;
mod error;
mod net;
mod proxy;
#[cfg(feature = "tls")]
mod tls;

pub use app::{App, AppError, Callbacks, Reconnect};
pub use client::{Client, ClientBuilder, connect};
pub use error::{BuildError, ConnectError};
pub use proxy::SocksReply;
/// rustls, whose `ClientConfig` [`ClientBuilder::tls_config`] takes.
#[cfg(feature = "tls")]
pub use rustls;
/// Certificate types, for [`ClientBuilder::add_root_certificate`].
#[cfg(feature = "tls")]
pub use rustls_pki_types as pki_types;
/// The sans-I/O core, whose types appear in this API.
pub use ws_proto as proto;
/// The `http` crate, whose types appear in this API.
pub use ws_proto::http;
pub use ws_proto::{
    CloseCode, CloseFrame, ConfigError, DeflateParams, HandshakeResponse, Message,
    PerMessageDeflate, RejectedResponse, ResponseError, Utf8Bytes,
};
pub use ws_tokio::{Error, Settings, WebSocket, WebSocketReceiver, WebSocketSender};

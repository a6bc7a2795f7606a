//! A sans-I/O implementation of the WebSocket protocol (RFC 6455).
//!
//! This crate does no network I/O, reads no clock and keeps no global
//! state. It turns bytes received from a peer into messages and events, and
//! messages to send into bytes, in buffers the caller owns. The Tokio
//! drivers `ws-server` and `ws-client` move those bytes between a socket and
//! a [`Connection`]; any other runtime, or a test, can do the same.
//!
//! ```text
//!            +------------------ Connection ------------------+
//!  socket    |                                                |   application
//!  bytes --->| handle_bytes / read_buffer --> poll_message -->|--> Message
//!            |                                                |
//!  bytes <---| out buffer <-- send / close / poll_transmit <--|<-- Message
//!            +------------------------------------------------+
//! ```
//!
//! The layers:
//!
//! - the opening handshake ([`ClientRequest`], [`ClientHandshake`],
//!   [`RequestParser`], [`validate_request`], [`write_accept`]): an HTTP/1.1
//!   upgrade, parsed incrementally within limits;
//! - frames ([`FrameHeader`], [`apply_mask`]): decoded incrementally, with
//!   the number of bytes still needed;
//! - the [`Connection`]: message assembly, UTF-8 validation as bytes arrive,
//!   control frames, the closing handshake, and every protocol error mapped
//!   to its close code.
//!
//! # A round trip
//!
//! ```
//! use bytes::BytesMut;
//! use ws_proto::{Config, Connection, Message, Role};
//!
//! let mut client = Connection::new(Role::Client, Config::default());
//! let mut server = Connection::new(Role::Server, Config::default());
//!
//! let mut wire = BytesMut::new();
//! client.send(&Message::text("hello"), &mut wire).unwrap();
//! server.handle_bytes(&wire);
//! assert_eq!(server.poll_message().unwrap(), Some(Message::text("hello")));
//! assert_eq!(server.poll_message().unwrap(), None); // needs more bytes
//! ```
//!
//! `docs/design.md` in the repository describes the run loop a driver
//! follows; `docs/limits.md` explains every limit and its default.

mod close;
mod close_code;
mod config;
mod connection;
pub mod deflate;
mod error;
mod frame;
mod handshake;
mod mask;
mod message;
mod opcode;
mod timers;
mod utf8;

pub use bytes::{Bytes, BytesMut};
pub use close::{CloseFrame, MAX_CLOSE_REASON_LEN};
pub use close_code::CloseCode;
pub use config::{Config, ConfigError};
pub use connection::{Connection, ConnectionBuilder, Role, State};
pub use deflate::{DeflateParams, DeflateResponseError, PerMessageDeflate, SharedCompression};
pub use error::{ProtocolError, SendError};
pub use frame::{Decoded, FrameHeader, MAX_HEADER_LEN};
pub use handshake::{
    ClientHandshake, ClientRequest, HandshakeResponse, HeaderError, RejectedResponse, Rejection,
    RequestError, RequestLimits, RequestParser, ResponseError, UpgradeRequest, accept_key,
    generate_key, validate_request, write_accept,
};
/// Re-exported for the handshake types.
pub use http;
#[cfg(feature = "test-support")]
#[doc(hidden)]
pub use mask::apply_mask_reference;
pub use mask::{MaskKeySource, RandomMaskKeys, apply_mask, apply_mask_at};
pub use message::Message;
pub use opcode::OpCode;
pub use timers::Timeout;
pub use utf8::{InvalidUtf8, Utf8Bytes, Utf8Validator};

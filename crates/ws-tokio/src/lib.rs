//! Runs a `ws-proto` connection over a Tokio byte stream.
//!
//! This is the layer `ws-server` and `ws-client` share once the opening
//! handshake is done: [`start`] takes a stream, a sans-I/O
//! [`Connection`](ws_proto::Connection) and the [`Settings`], and returns
//! the application's [`WebSocket`] plus the driver future that moves bytes
//! between the two.
//!
//! ```text
//!  application                 driver future                  socket
//!  WebSocket ──commands──▶ ┌─────────────────────┐ ──bytes──▶ Transport
//!            ◀─messages─── │ ws_proto::Connection │ ◀─bytes───
//!                          └─────────────────────┘
//! ```
//!
//! The driver answers pings, runs the keepalive, completes the closing
//! handshake and enforces its timeout whatever the application is doing. It
//! gathers every message queued while a write was in progress, or while
//! received input was being decoded, into one write; a message sent on an
//! idle connection leaves at once. An idle connection holds no read or write
//! buffer: on a [`TcpStream`](tokio::net::TcpStream) the driver waits for
//! readability before it allocates one.
//!
//! [`start_inline`] is the other way to run a connection: the driver calls
//! a [`MessageHandler`] with each message as it decodes it, and the handler
//! answers through a [`Reply`] straight into the output, with no queue and
//! no wake between them. It suits handlers that answer at once, without
//! awaiting.
//!
//! Most applications never call [`start`] themselves: they use
//! `ws_server::serve` or `ws_client::connect`, which re-export [`WebSocket`]
//! and [`Error`].

mod driver;
mod error;
mod feed;
mod handshake;
mod inline;
mod output;
mod session;
mod settings;
mod sync;
mod timer;
mod transport;
#[cfg(any(test, feature = "test-support"))]
#[doc(hidden)]
pub mod wake_count;
mod websocket;

pub use driver::{start, start_inline};
pub use error::Error;
pub use feed::{AttachError, Doorbell, Feed, FrameSink};
pub use handshake::Handshake;
pub use inline::{MessageHandler, Reply};
pub use settings::Settings;
pub use sync::{Join, JoinTask, Stop, Stopped};
pub use timer::deadline_after;
pub use transport::Transport;
pub use websocket::{WebSocket, WebSocketReceiver, WebSocketSender};

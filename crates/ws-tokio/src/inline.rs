//! Message handlers run inside the driver: each message is handled as it
//! is decoded, and answered straight into the connection's output.
//!
//! A [`WebSocket`](crate::WebSocket) handler and the driver are two futures
//! with a queue each way between them: every message is pushed and popped
//! under a lock, and the handler is woken for it, and so is the driver for
//! the answer. That is what lets a handler await anything (a database, a
//! timer, another connection) between two messages. A handler that answers
//! each message at once, without awaiting, needs none of it: the driver can
//! call it as it decodes, and the answer joins the same write as every
//! other answer to the same read.

use ws_proto::{CloseCode, CloseFrame, Connection, Message, SendError};

use crate::Error;
use crate::driver::Output;

/// A handler the driver calls with each message as it decodes it (see
/// [`start_inline`](crate::start_inline)).
///
/// It runs inside the driver's poll, on a runtime worker: it must not block,
/// and it cannot await. Work that must wait belongs in a task of its own,
/// which answers through a clone of the connection's
/// [`WebSocket`](crate::WebSocket).
///
/// Any `FnMut(Message, &mut Reply<'_>)` is a handler.
pub trait MessageHandler: Send + 'static {
    /// Handles one message: text and binary ones, and pings and pongs if
    /// the settings ask for control frames
    /// ([`Settings::control_frames`](crate::Settings::control_frames)).
    /// Pings are answered, and the closing handshake completed, by the
    /// driver whatever this does.
    fn handle_message(&mut self, message: Message, reply: &mut Reply<'_>);

    /// Called once, when the connection has ended: `error` is why it ended
    /// if it did not end with a closing handshake (the peer broke the
    /// protocol, the transport failed, the keepalive timed out). Does
    /// nothing unless implemented.
    fn handle_end(&mut self, error: Option<&Error>) {
        let _ = error;
    }
}

impl<F: FnMut(Message, &mut Reply<'_>) + Send + 'static> MessageHandler for F {
    fn handle_message(&mut self, message: Message, reply: &mut Reply<'_>) {
        self(message, reply);
    }
}

impl MessageHandler for Box<dyn MessageHandler> {
    fn handle_message(&mut self, message: Message, reply: &mut Reply<'_>) {
        (**self).handle_message(message, reply);
    }

    fn handle_end(&mut self, error: Option<&Error>) {
        (**self).handle_end(error);
    }
}

/// What a [`MessageHandler`] answers with: frames are encoded into the
/// connection's output as they are sent, and written once the input read
/// together with the message has been handled.
pub struct Reply<'a> {
    pub(crate) conn: &'a mut Connection,
    pub(crate) out: &'a mut Output,
}

impl std::fmt::Debug for Reply<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reply")
            .field("state", &self.conn.state())
            .finish_non_exhaustive()
    }
}

impl Reply<'_> {
    /// Sends `message`.
    ///
    /// Nothing waits here: the frame joins the output at once. Once the
    /// output holds more than the driver writes in one go (256 KiB), the
    /// driver handles no more messages, and reads no more, until the peer
    /// has taken enough of it; so a peer that does not read cannot make
    /// the answers grow without bound.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] once a close frame was sent, and
    /// [`Error::InvalidMessage`] for a message that may not be sent (a
    /// control frame over 125 bytes).
    pub fn send(&mut self, message: &Message) -> Result<(), Error> {
        crate::driver::send_into(self.conn, message, self.out).map_err(error)
    }

    /// Starts the closing handshake with `code` and `reason` (the driver
    /// completes it, within the close timeout). Data frames that arrive
    /// after it, before the peer's close frame, are discarded unhandled (RFC
    /// 6455 section 1.4).
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] if a close frame was already sent, and
    /// [`Error::InvalidMessage`] for a code that may not be sent or a reason
    /// over 123 bytes.
    pub fn close(&mut self, code: CloseCode, reason: &str) -> Result<(), Error> {
        let frame = CloseFrame::new(code, reason);
        self.conn
            .close(Some(frame), &mut self.out.tail)
            .map_err(error)
    }
}

fn error(error: SendError) -> Error {
    match error {
        SendError::Closed => Error::Closed(None),
        other => Error::InvalidMessage(other),
    }
}

/// Where the driver puts the messages it decodes: across the link to a
/// [`WebSocket`](crate::WebSocket) ([`ToLink`]), or into a handler it
/// calls ([`Inline`]).
pub(crate) trait Deliver: Send + 'static {
    /// Whether messages go to [`handle`](Self::handle) rather than across
    /// the link. A constant, so that each driver compiles only its own
    /// path.
    const INLINE: bool;

    fn handle(&mut self, message: Message, reply: &mut Reply<'_>);

    fn end(&mut self, error: Option<&Error>);
}

/// Messages go across the link: the driver of a [`WebSocket`](crate::WebSocket).
pub(crate) struct ToLink;

impl Deliver for ToLink {
    const INLINE: bool = false;

    fn handle(&mut self, _: Message, _: &mut Reply<'_>) {}

    fn end(&mut self, _: Option<&Error>) {}
}

/// Messages go to a handler the driver calls.
pub(crate) struct Inline<H>(pub(crate) H);

impl<H: MessageHandler> Deliver for Inline<H> {
    const INLINE: bool = true;

    #[inline]
    fn handle(&mut self, message: Message, reply: &mut Reply<'_>) {
        self.0.handle_message(message, reply);
    }

    fn end(&mut self, error: Option<&Error>) {
        self.0.handle_end(error);
    }
}

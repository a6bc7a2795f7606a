//! The two ways a driver hands over what it decodes: across the link to a
//! [`WebSocket`](crate::WebSocket) that a handler future reads
//! ([`ToLink`]), or to a [`MessageHandler`] it calls itself ([`Inline`]).
//! Everything that differs between the two is here; the run loop is shared.

use ws_proto::{CloseCode, CloseFrame, Message};

use super::{COALESCE_LIMIT, DriverState, Incoming, Room};
use crate::inline::{MessageHandler, Reply};
use crate::transport::Transport;

/// A delivery mode: the driver's steps that depend on where messages go,
/// as functions of the driver's state (each mode compiles only its own).
pub(super) trait Deliver: Sized + Send + 'static {
    /// How many messages may be decoded before the application must catch
    /// up.
    fn room<S: Transport>(inner: &mut DriverState<S, Self>) -> usize;

    /// Takes one decoded message (`None`: a frame with nothing for the
    /// application, such as a ping it did not ask for), counting it against
    /// `free`. Returns whether decoding stops here.
    fn take<S: Transport>(
        inner: &mut DriverState<S, Self>,
        message: Option<Message>,
        free: &mut usize,
    ) -> bool;

    /// Decoding stopped: hands over what was taken, within `free`. Returns
    /// whether the application has messages to answer (the driver then
    /// lets it run before going on).
    fn hand_over<S: Transport>(inner: &mut DriverState<S, Self>, free: usize) -> bool;

    /// The peer broke the protocol: hands the application the error after
    /// the messages before it. Returns whether it may still answer them,
    /// ahead of the failure's close frame (the driver's grace phase).
    fn hand_over_failure<S: Transport>(inner: &mut DriverState<S, Self>) -> bool;

    /// Every sender is gone.
    fn senders_gone<S: Transport>(inner: &mut DriverState<S, Self>);

    /// The connection has ended: the application learns how.
    fn end<S: Transport>(inner: &mut DriverState<S, Self>);
}

/// Messages go across the link, to the connection's
/// [`WebSocket`](crate::WebSocket).
pub(crate) struct ToLink;

impl Deliver for ToLink {
    #[inline]
    fn room<S: Transport>(inner: &mut DriverState<S, Self>) -> usize {
        match inner.incoming {
            Incoming::Open { free } if free > 0 => return free as usize,
            Incoming::Open { .. } => {}
            Incoming::Shut => return usize::MAX,
        }
        match inner.link.room() {
            Room::Free(free) => free,
            // Nobody is reading: messages are decoded and dropped.
            Room::Gone => {
                inner.incoming = Incoming::Shut;
                usize::MAX
            }
        }
    }

    #[inline]
    fn take<S: Transport>(
        inner: &mut DriverState<S, Self>,
        message: Option<Message>,
        free: &mut usize,
    ) -> bool {
        if let Some(message) = message.filter(|_| inner.incoming.is_open()) {
            inner.work.get().received.push_back(Ok(message));
            *free -= 1;
        }
        false
    }

    #[inline]
    fn hand_over<S: Transport>(inner: &mut DriverState<S, Self>, free: usize) -> bool {
        let Some(buffers) = &mut inner.work.0 else {
            return false;
        };
        let delivered = !buffers.received.is_empty();
        inner.link_used |= delivered;
        let room = inner.link.deliver(&mut buffers.received);
        inner.note_room(room.unwrap_or(Room::Free(free)));
        delivered
    }

    fn hand_over_failure<S: Transport>(inner: &mut DriverState<S, Self>) -> bool {
        if !inner.incoming.is_open() {
            return false;
        }
        let Some(error) = inner.failure.take() else {
            return false;
        };
        inner.deliver_failure(*error);
        inner.link_used = true;
        true
    }

    fn senders_gone<S: Transport>(inner: &mut DriverState<S, Self>) {
        // The application dropped every handle: it is done.
        let frame = CloseFrame::new(CloseCode::NORMAL, "");
        let _ = inner.conn.close(Some(frame), &mut inner.work.out().tail);
    }

    fn end<S: Transport>(inner: &mut DriverState<S, Self>) {
        if let Some(failure) = inner.failure.take()
            && inner.incoming.is_open()
        {
            inner.deliver_failure(*failure);
        }
    }
}

/// Messages go to a handler the driver calls.
pub(crate) struct Inline<H>(pub(crate) H);

impl<H: MessageHandler> Deliver for Inline<H> {
    #[inline]
    fn room<S: Transport>(_: &mut DriverState<S, Self>) -> usize {
        // The handler is called for each message: no queue to fill.
        usize::MAX
    }

    #[inline]
    fn take<S: Transport>(
        inner: &mut DriverState<S, Self>,
        message: Option<Message>,
        _: &mut usize,
    ) -> bool {
        if let Some(message) = message {
            let out = inner.work.out();
            let reply = &mut Reply {
                conn: &mut inner.conn,
                out,
            };
            inner.deliver.0.handle_message(message, reply);
        }
        // The handler's answers are not written as fast as it makes them:
        // the rest of the input waits in the read buffer (and the socket is
        // not read) until they are.
        inner.work.out_len() >= COALESCE_LIMIT
    }

    #[inline]
    fn hand_over<S: Transport>(_: &mut DriverState<S, Self>, _: usize) -> bool {
        // Answered as decoded: nothing waits for the application.
        false
    }

    fn hand_over_failure<S: Transport>(_: &mut DriverState<S, Self>) -> bool {
        // Every message before the error was answered as it was decoded:
        // the close frame follows at once.
        false
    }

    fn senders_gone<S: Transport>(_: &mut DriverState<S, Self>) {
        // The handler is called from the driver: the connection stays open
        // without any `WebSocket`.
    }

    fn end<S: Transport>(inner: &mut DriverState<S, Self>) {
        let failure = inner.failure.take();
        inner.deliver.0.handle_end(failure.as_deref());
    }
}

//! The application's side of a connection: [`WebSocket`] and its halves.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use std::future::poll_fn;

use futures_util::{Sink, Stream};
use http::{HeaderMap, Request, Response};
use ws_proto::{CloseCode, CloseFrame, Message, Utf8Bytes};

use crate::error::Error;
use crate::feed::{AttachError, Doorbell, Feed};
use crate::session::Session;
use crate::sync::{Batch, Link, payload_len};

/// An open WebSocket connection.
///
/// Receive with [`recv`](Self::recv) or as a [`Stream`] of text and binary
/// messages; send with [`send`](Self::send), the shortcuts, or as a
/// [`Sink`]. Pings are answered and the closing handshake is completed by
/// the connection's driver, whether or not the application is reading.
///
/// [`split`](Self::split) gives a receiver and a cloneable sender for use in
/// separate tasks. The two halves share no lock: each hands messages to the
/// driver through its own queue, in a critical section of a push or a pop
/// that never waits on I/O.
#[derive(Debug)]
pub struct WebSocket {
    /// Both halves in one pointer (a handler keeps its `WebSocket` in its
    /// future for the connection's whole life); taken only by `split`, and
    /// by `drop`, which ends both halves.
    shared: Option<Arc<Session>>,
    /// Received messages taken from the link in one batch.
    batch: Batch,
}

/// The receiving half of a [`WebSocket`].
#[derive(Debug)]
pub struct WebSocketReceiver {
    shared: Arc<Session>,
    /// Received messages taken from the link in one batch.
    batch: Batch,
}

/// The sending half of a [`WebSocket`]. Clones send on the same connection;
/// the connection closes with 1000 once every sender and the receiver are
/// dropped.
pub struct WebSocketSender {
    shared: Arc<Session>,
}

impl Clone for WebSocketSender {
    fn clone(&self) -> Self {
        self.shared.link.add_sender();
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl Drop for WebSocketSender {
    fn drop(&mut self) {
        self.shared.link.drop_sender();
    }
}

impl Drop for WebSocketReceiver {
    fn drop(&mut self) {
        self.shared.link.drop_receiver();
    }
}

impl Drop for WebSocket {
    fn drop(&mut self) {
        if let Some(shared) = self.shared.take() {
            shared.link.drop_receiver();
            shared.link.drop_sender();
        }
    }
}

impl std::fmt::Debug for WebSocketSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSocketSender")
            .field("queued_bytes", &self.shared.link.queued())
            .field("high_water", &self.shared.link.high_water())
            .finish_non_exhaustive()
    }
}

macro_rules! accessors {
    () => {
        /// The upgrade request: method, URI, headers. A server sees the
        /// client's; a client sees the one it sent.
        ///
        /// Built on first use: a connection keeps its request compactly
        /// until then. [`path`](Self::path) and [`query`](Self::query) do
        /// not build it.
        pub fn request(&self) -> &Request<()> {
            self.info().request.request()
        }

        /// The request path, such as `/chat`.
        pub fn path(&self) -> &str {
            self.info().request.path()
        }

        /// The request query, without the `?`.
        pub fn query(&self) -> Option<&str> {
            self.info().request.query()
        }

        /// The upgrade request's headers.
        pub fn headers(&self) -> &HeaderMap {
            self.request().headers()
        }

        /// The 101 response, on a client.
        pub fn response(&self) -> Option<&Response<()>> {
            self.info().response.as_deref()
        }

        /// The peer's address, when the transport has one.
        pub fn peer_addr(&self) -> Option<SocketAddr> {
            self.info().peer
        }

        /// The subprotocol chosen during the handshake.
        pub fn protocol(&self) -> Option<&str> {
            self.info().protocol.as_deref()
        }

        /// permessage-deflate as the handshake settled it; `None` when the
        /// connection runs without compression.
        pub fn compression(&self) -> Option<ws_proto::DeflateParams> {
            self.info().compression.as_ref().map(|c| c.params)
        }

        /// On a server connection whose permessage-deflate keeps no
        /// context, the compression a broadcast shares with it: frames
        /// compressed once with it go to every connection with the same
        /// value. A hub uses it; `None` otherwise.
        pub fn shared_compression(&self) -> Option<ws_proto::SharedCompression> {
            self.info().compression.as_ref().and_then(|c| c.shared)
        }

        /// The round-trip time of the last keepalive ping that was answered;
        /// `None` before the first pong.
        pub fn last_pong_rtt(&self) -> Option<Duration> {
            match self.info().rtt.load(Ordering::Relaxed) {
                0 => None,
                micros => Some(Duration::from_micros(u64::from(micros - 1))),
            }
        }

        /// The close frame the peer sent, once it has: its code and reason.
        /// `None` while the connection is open, and after a close frame
        /// with no code or a connection lost without one.
        pub fn close_frame(&self) -> Option<&CloseFrame> {
            self.info().peer_close.get().map(|frame| &**frame)
        }

        /// Whether this end started the closing handshake: the application
        /// closed the connection (or dropped it), a keepalive timed out, or
        /// a shutdown began. False when the peer closed first or the
        /// connection was lost.
        pub fn initiated_close(&self) -> bool {
            self.info().initiated_close.load(Ordering::Relaxed)
        }

        /// Attaches a [`Feed`]: frames queued by others (a broadcast
        /// hub's queue for this connection) that the driver writes between
        /// the connection's own messages, without a copy for large ones.
        /// `make` gets the [`Doorbell`] the feed rings when it has frames.
        ///
        /// A connection takes one feed for its life, made on the first
        /// call: a connection that never broadcasts does not pay for one.
        /// Later calls return that feed.
        ///
        /// # Errors
        ///
        /// [`AttachError::Client`] on a client connection, whose frames
        /// must each be masked; [`AttachError::Ended`] once the connection
        /// has ended; [`AttachError::OtherFeed`] if a feed of another type
        /// is attached.
        pub fn attach_feed<F: Feed>(
            &self,
            make: impl FnOnce(Doorbell) -> F,
        ) -> Result<Arc<F>, AttachError> {
            self.info().attach_feed(make)
        }
    };
}

impl WebSocket {
    accessors!();

    pub(crate) fn new(shared: Arc<Session>) -> Self {
        Self {
            shared: Some(shared),
            batch: Batch::default(),
        }
    }

    fn info(&self) -> &Session {
        held(&self.shared)
    }

    /// The next text or binary message; `None` once the connection has
    /// closed cleanly. An `Err` reports why it did not close cleanly, and is
    /// followed by `None`.
    ///
    /// Cancel-safe: used in `tokio::select!`, a message is never lost.
    pub fn recv(&mut self) -> impl Future<Output = Option<Result<Message, Error>>> + '_ {
        poll_fn(|cx| self.poll_recv(cx))
    }

    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Message, Error>>> {
        // The field, not `info()`: the batch is borrowed beside it.
        held(&self.shared).link.poll_recv(&mut self.batch, cx)
    }

    /// Receives every text or binary message that has arrived, at most
    /// `limit`, appending them to `buffer` (as Tokio's
    /// `mpsc::Receiver::recv_many`); waits only while none has. Returns how
    /// many were appended: 0 once the connection has closed cleanly, or if
    /// `limit` is 0.
    ///
    /// Messages that arrived together (a client sends faster than the
    /// handler takes them) are taken under one lock, and can be handled as
    /// one batch: `ws_server::Hub::publish_many` publishes them with one
    /// push per recipient.
    ///
    /// Cancel-safe: used in `tokio::select!`, a message is never lost.
    ///
    /// # Errors
    ///
    /// Why the connection did not close cleanly, as [`recv`](Self::recv)
    /// reports it: returned by a call of its own, after the messages that
    /// came before it, and followed by `Ok(0)`.
    pub fn recv_many<'a>(
        &'a mut self,
        buffer: &'a mut Vec<Message>,
        limit: usize,
    ) -> impl Future<Output = Result<usize, Error>> + 'a {
        poll_fn(move |cx| {
            held(&self.shared)
                .link
                .poll_recv_many(&mut self.batch, buffer, limit, cx)
        })
    }

    /// Sends a message, waiting while the outgoing queue is at its
    /// high-water mark.
    ///
    /// Cancel-safe: when cancelled, the message was either queued whole or
    /// not at all.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] once the connection is closing or closed.
    pub fn send(
        &mut self,
        message: impl Into<Message>,
    ) -> impl Future<Output = Result<(), Error>> + '_ {
        SendMessage::new(self.info(), message.into())
    }

    /// As [`send`](Self::send), but never compressed, whatever the
    /// message's size, on a connection that runs permessage-deflate: for
    /// data known not to shrink (images, archives), or a message that must
    /// go out as it is. The same as `send` on a connection without
    /// compression. Cancel-safe.
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send).
    pub fn send_uncompressed(
        &mut self,
        message: impl Into<Message>,
    ) -> impl Future<Output = Result<(), Error>> + '_ {
        send_uncompressed(self.info(), message.into())
    }

    /// Sends every message in `messages`, in order, leaving it empty;
    /// waits while the outgoing queue is at its high-water mark. As many as
    /// the queue has room for are queued under one lock, rather than one
    /// each: with [`recv_many`](Self::recv_many), a relay or an echo sends
    /// what arrived together at about the cost of one message.
    ///
    /// Cancel-safe: when cancelled, the messages not yet queued are still
    /// in `messages`, in order.
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send), for the first message that cannot be
    /// queued: it is removed, and the messages after it are left in
    /// `messages`.
    pub fn send_many<'a>(
        &'a mut self,
        messages: &'a mut Vec<Message>,
    ) -> impl Future<Output = Result<(), Error>> + 'a {
        poll_fn(move |cx| poll_send_many(self.info(), messages, cx))
    }

    /// Sends a text message.
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send).
    pub fn send_text(
        &mut self,
        text: impl Into<Utf8Bytes>,
    ) -> impl Future<Output = Result<(), Error>> + '_ {
        SendMessage::new(self.info(), Message::Text(text.into()))
    }

    /// Sends a binary message.
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send).
    pub fn send_binary(
        &mut self,
        data: impl Into<bytes::Bytes>,
    ) -> impl Future<Output = Result<(), Error>> + '_ {
        SendMessage::new(self.info(), Message::Binary(data.into()))
    }

    /// Starts the closing handshake with `code` and `reason`, then waits
    /// until the connection has closed (the peer's close frame arrived, or
    /// the close timeout expired). Messages still arriving are discarded.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidMessage`] for a code that may not be sent or a reason
    /// over 123 bytes; [`Error::Closed`] if the connection was already
    /// closed.
    pub async fn close(mut self, code: CloseCode, reason: &str) -> Result<(), Error> {
        start_close(self.info(), code, reason)?;
        while self.recv().await.is_some() {}
        Ok(())
    }

    /// Splits into a receiver and a sender for use in two tasks.
    pub fn split(mut self) -> (WebSocketReceiver, WebSocketSender) {
        let Some(shared) = self.shared.take() else {
            unreachable!("a WebSocket holds its state until split or dropped");
        };
        // The sender this `WebSocket` counted as becomes the sender half.
        let receiver = WebSocketReceiver {
            shared: shared.clone(),
            batch: std::mem::take(&mut self.batch),
        };
        (receiver, WebSocketSender { shared })
    }
}

/// A `WebSocket`'s state: taken only by `split` and `drop`, which consume
/// the `WebSocket`, so it is there whenever a method runs.
fn held(shared: &Option<Arc<Session>>) -> &Arc<Session> {
    match shared {
        Some(shared) => shared,
        None => unreachable!("a WebSocket holds its state until split or dropped"),
    }
}

impl WebSocketReceiver {
    accessors!();

    fn info(&self) -> &Session {
        &self.shared
    }

    /// As [`WebSocket::recv`]. Cancel-safe.
    pub fn recv(&mut self) -> impl Future<Output = Option<Result<Message, Error>>> + '_ {
        poll_fn(|cx| self.poll_recv(cx))
    }

    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Message, Error>>> {
        self.shared.link.poll_recv(&mut self.batch, cx)
    }

    /// As [`WebSocket::recv_many`]. Cancel-safe.
    ///
    /// # Errors
    ///
    /// As [`WebSocket::recv_many`].
    pub fn recv_many<'a>(
        &'a mut self,
        buffer: &'a mut Vec<Message>,
        limit: usize,
    ) -> impl Future<Output = Result<usize, Error>> + 'a {
        poll_fn(move |cx| {
            self.shared
                .link
                .poll_recv_many(&mut self.batch, buffer, limit, cx)
        })
    }
}

impl WebSocketSender {
    accessors!();

    fn info(&self) -> &Session {
        &self.shared
    }

    /// As [`WebSocket::send`]. Cancel-safe.
    ///
    /// The returned future owns what it needs, so it does not borrow the
    /// sender.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] once the connection is closing or closed.
    pub fn send(
        &self,
        message: impl Into<Message>,
    ) -> impl Future<Output = Result<(), Error>> + Send + 'static {
        SendMessage::new(self.shared.clone(), message.into())
    }

    /// As [`WebSocket::send_uncompressed`]. Cancel-safe.
    ///
    /// # Errors
    ///
    /// As [`WebSocket::send`].
    pub fn send_uncompressed(
        &self,
        message: impl Into<Message>,
    ) -> impl Future<Output = Result<(), Error>> + '_ {
        send_uncompressed(&self.shared, message.into())
    }

    /// Sends without waiting.
    ///
    /// # Errors
    ///
    /// [`Error::Full`] when the outgoing queue is at its high-water mark;
    /// [`Error::Closed`] once the connection is closing or closed.
    pub fn try_send(&self, message: impl Into<Message>) -> Result<(), Error> {
        match checked(message.into())? {
            Checked::Close(frame) => self.shared.link.close(frame),
            Checked::Data(message) => {
                let units = cost(&self.shared.link, &message);
                self.shared
                    .link
                    .try_send(message, units, None)
                    .map_err(|(_, error)| error)
            }
        }
    }

    /// As [`WebSocket::send_many`]. Cancel-safe.
    ///
    /// # Errors
    ///
    /// As [`WebSocket::send_many`].
    pub fn send_many<'a>(
        &'a self,
        messages: &'a mut Vec<Message>,
    ) -> impl Future<Output = Result<(), Error>> + 'a {
        poll_fn(move |cx| poll_send_many(&self.shared, messages, cx))
    }

    /// Starts the closing handshake without waiting for it to finish.
    ///
    /// # Errors
    ///
    /// As [`WebSocket::close`].
    pub fn close(&self, code: CloseCode, reason: &str) -> Result<(), Error> {
        start_close(&self.shared, code, reason)
    }
}

/// Queues the close frame of `code` and `reason`, once checked.
fn start_close(shared: &Session, code: CloseCode, reason: &str) -> Result<(), Error> {
    let frame = CloseFrame::new(code, reason);
    frame.check_sendable()?;
    shared.link.close(Some(frame))
}

/// A message sorted for the link: a close, or anything else.
enum Checked {
    Close(Option<CloseFrame>),
    Data(Message),
}

/// Sorts a message for the link, refusing what the driver could not send:
/// every send path (`send`, `try_send`, `send_many`, the `Sink`) goes
/// through here, so an unsendable close frame is the caller's error, not a
/// close that silently never happens.
#[inline]
fn checked(message: Message) -> Result<Checked, Error> {
    match message {
        message if queued_as_is(&message) => Ok(Checked::Data(message)),
        Message::Close(frame) => {
            // RFC 6455 section 7.4.1: 1005, 1006 and 1015 "MUST NOT be set
            // as a status code in a Close control frame by an endpoint";
            // section 5.5: a control frame's payload is at most 125 bytes,
            // so a reason at most 123.
            if let Some(frame) = &frame {
                frame.check_sendable()?;
            }
            Ok(Checked::Close(frame))
        }
        message => Err(ws_proto::SendError::ControlFrameTooLong(payload_len(&message)).into()),
    }
}

/// Whether a message goes into the command queue as it is: anything but a
/// close, or a ping or pong over 125 bytes (RFC 6455 section 5.5: "All
/// control frames MUST have a payload length of 125 bytes or less"), which
/// [`checked`] sorts out.
#[inline]
fn queued_as_is(message: &Message) -> bool {
    match message {
        Message::Close(_) => false,
        Message::Ping(data) | Message::Pong(data) => data.len() <= 125,
        _ => true,
    }
}

/// Queues `messages` from the front as the budget allows, under one lock
/// of the queue for each run of them that goes in as it is.
fn poll_send_many(
    shared: &Session,
    messages: &mut Vec<Message>,
    cx: &mut Context<'_>,
) -> Poll<Result<(), Error>> {
    let units = |message: &Message| queued_as_is(message).then(|| cost(&shared.link, message));
    loop {
        ready!(shared.link.poll_send_many(messages, units, cx))?;
        if messages.is_empty() {
            return Poll::Ready(Ok(()));
        }
        // A close, or a control message too long to send.
        if let Checked::Close(frame) = checked(messages.remove(0))? {
            shared.link.close(frame)?;
        }
    }
}

/// The budget units a message takes: its payload length, at least 1, at
/// most the whole budget (so that any message fits an empty queue).
#[inline]
fn cost(link: &Link, message: &Message) -> usize {
    payload_len(message).clamp(1, link.high_water())
}

/// The future of a send: queues a message, waiting while the outgoing
/// queue is at its high-water mark. Cancel-safe: the message is queued
/// whole or not at all.
///
/// Written by hand so that it is small (the message and the link, no
/// async state): a handler that awaits it keeps it in its own future.
struct SendMessage<L> {
    shared: L,
    state: Sending,
}

enum Sending {
    /// A data message. The budget units it takes are counted again at each
    /// poll, rather than kept: a handler keeps this future in its own.
    Data(Message),
    Close(Option<CloseFrame>),
    Failed(Error),
    Done,
}

impl<L: std::ops::Deref<Target = Session>> SendMessage<L> {
    fn new(shared: L, message: Message) -> Self {
        let state = match checked(message) {
            Ok(Checked::Data(message)) => Sending::Data(message),
            Ok(Checked::Close(frame)) => Sending::Close(frame),
            Err(error) => Sending::Failed(error),
        };
        Self { shared, state }
    }
}

impl<L: std::ops::Deref<Target = Session> + Unpin> Future for SendMessage<L> {
    type Output = Result<(), Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        match std::mem::replace(&mut this.state, Sending::Done) {
            Sending::Data(message) => {
                let units = cost(&this.shared.link, &message);
                match this.shared.link.try_send(message, units, Some(cx)) {
                    Ok(()) => Poll::Ready(Ok(())),
                    Err((message, Error::Full)) => {
                        this.state = Sending::Data(message);
                        Poll::Pending
                    }
                    Err((_, error)) => Poll::Ready(Err(error)),
                }
            }
            Sending::Close(frame) => Poll::Ready(this.shared.link.close(frame)),
            Sending::Failed(error) => Poll::Ready(Err(error)),
            Sending::Done => Poll::Ready(Ok(())),
        }
    }
}

impl Stream for WebSocketReceiver {
    type Item = Result<Message, Error>;
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_recv(cx)
    }
}

impl Stream for WebSocket {
    type Item = Result<Message, Error>;
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_recv(cx)
    }
}

/// The [`Sink`] of both [`WebSocketSender`] and [`WebSocket`], on their
/// shared state, and the uncompressed send.
mod sink;

use sink::send_uncompressed;

impl Sink<Message> for WebSocketSender {
    type Error = Error;

    /// Waits while the outgoing queue is at its high-water mark.
    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        sink::poll_ready(&self.shared, cx)
    }

    /// Queues the message: once `poll_ready` found room, the queue may pass
    /// its high-water mark by at most this message.
    fn start_send(self: Pin<&mut Self>, message: Message) -> Result<(), Error> {
        sink::start_send(&self.shared, message)
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        sink::poll_close(&self.shared)
    }
}

impl Sink<Message> for WebSocket {
    type Error = Error;
    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        sink::poll_ready(self.info(), cx)
    }
    fn start_send(self: Pin<&mut Self>, message: Message) -> Result<(), Error> {
        sink::start_send(self.info(), message)
    }
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Poll::Ready(Ok(()))
    }
    fn poll_close(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        sink::poll_close(self.info())
    }
}

//! The application's side of a connection: [`WebSocket`] and its halves.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::{Sink, Stream};
use http::{HeaderMap, Request, Response};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use ws_proto::{CloseCode, CloseFrame, Message, Role, Utf8Bytes};

use crate::error::Error;
use crate::outbox::Outbox;

/// What the opening handshake established: the request, the response, the
/// peer and the subprotocol.
#[derive(Debug, Clone)]
pub struct Handshake {
    request: Request<()>,
    response: Option<Response<()>>,
    peer: Option<SocketAddr>,
    protocol: Option<String>,
}

impl Handshake {
    /// A handshake made of this upgrade request, with no response, peer or
    /// subprotocol recorded yet.
    pub fn new(request: Request<()>) -> Self {
        Self {
            request,
            response: None,
            peer: None,
            protocol: None,
        }
    }

    /// Records the 101 response (a client keeps the one it received).
    pub fn with_response(mut self, response: Response<()>) -> Self {
        self.response = Some(response);
        self
    }

    /// Records the peer's address.
    pub fn with_peer(mut self, peer: SocketAddr) -> Self {
        self.peer = Some(peer);
        self
    }

    /// Records the subprotocol chosen.
    pub fn with_protocol(mut self, protocol: Option<String>) -> Self {
        self.protocol = protocol;
        self
    }

    /// The upgrade request.
    pub fn request(&self) -> &Request<()> {
        &self.request
    }

    /// The 101 response, if recorded.
    pub fn response(&self) -> Option<&Response<()>> {
        self.response.as_ref()
    }

    /// The peer's address, if recorded.
    pub fn peer(&self) -> Option<SocketAddr> {
        self.peer
    }

    /// The subprotocol chosen, if any.
    pub fn protocol(&self) -> Option<&str> {
        self.protocol.as_deref()
    }
}

/// What the driver and both halves share.
#[derive(Debug)]
pub(crate) struct Shared {
    handshake: Handshake,
    /// The round trip of the last keepalive ping answered, in microseconds
    /// plus one; 0 before the first.
    rtt: AtomicU64,
    /// The close frame the peer sent, once it has.
    peer_close: OnceLock<CloseFrame>,
    /// Whether this end sent the first close frame.
    initiated_close: AtomicBool,
    /// Broadcast frames waiting for the driver (server connections).
    outbox: Arc<Outbox>,
    role: Role,
}

impl Shared {
    pub(crate) fn new(handshake: Handshake, role: Role) -> Self {
        Self {
            handshake,
            outbox: Arc::default(),
            role,
            rtt: AtomicU64::new(0),
            peer_close: OnceLock::new(),
            initiated_close: AtomicBool::new(false),
        }
    }

    pub(crate) fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    pub(crate) fn record_initiated_close(&self) {
        self.initiated_close.store(true, Ordering::Relaxed);
    }

    pub(crate) fn record_rtt(&self, rtt: Duration) {
        let micros = u64::try_from(rtt.as_micros()).unwrap_or(u64::MAX - 1);
        self.rtt.store(micros + 1, Ordering::Relaxed);
    }

    pub(crate) fn record_close(&self, frame: CloseFrame) {
        let _ = self.peer_close.set(frame);
    }
}

/// A command from the application to the connection's driver.
pub(crate) enum Command {
    /// A message, and the units of the byte budget it holds: the driver
    /// gives them back once the message is encoded.
    Send(Message, u32),
    Close(Option<CloseFrame>),
}

/// An open WebSocket connection.
///
/// Receive with [`recv`](Self::recv) or as a [`Stream`] of text and binary
/// messages; send with [`send`](Self::send), the shortcuts, or as a
/// [`Sink`]. Pings are answered and the closing handshake is completed by
/// the connection's driver, whether or not the application is reading.
///
/// [`split`](Self::split) gives a receiver and a cloneable sender for use in
/// separate tasks; neither takes a lock to send or receive.
#[derive(Debug)]
pub struct WebSocket {
    receiver: WebSocketReceiver,
    sender: WebSocketSender,
}

/// The receiving half of a [`WebSocket`].
#[derive(Debug)]
pub struct WebSocketReceiver {
    incoming: mpsc::Receiver<Result<Message, Error>>,
    info: Arc<Shared>,
}

/// The sending half of a [`WebSocket`]. Clones send on the same connection;
/// the connection closes with 1000 once every sender and the receiver are
/// dropped.
pub struct WebSocketSender {
    commands: mpsc::UnboundedSender<Command>,
    budget: Arc<Semaphore>,
    high_water: usize,
    info: Arc<Shared>,
    /// `Sink::poll_ready` waits for one unit of budget and keeps it here for
    /// the next `start_send`.
    reserved: Option<OwnedSemaphorePermit>,
    acquiring: Option<Acquire>,
}

type Acquire =
    Pin<Box<dyn Future<Output = Result<OwnedSemaphorePermit, tokio::sync::AcquireError>> + Send>>;

impl Clone for WebSocketSender {
    fn clone(&self) -> Self {
        Self {
            commands: self.commands.clone(),
            budget: self.budget.clone(),
            high_water: self.high_water,
            info: self.info.clone(),
            reserved: None,
            acquiring: None,
        }
    }
}

impl std::fmt::Debug for WebSocketSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSocketSender")
            .field(
                "queued_bytes",
                &(self.high_water - self.budget.available_permits()),
            )
            .field("high_water", &self.high_water)
            .finish_non_exhaustive()
    }
}

macro_rules! accessors {
    () => {
        /// The upgrade request: method, URI, headers. A server sees the
        /// client's; a client sees the one it sent.
        pub fn request(&self) -> &Request<()> {
            &self.info().handshake.request
        }

        /// The request path, such as `/chat`.
        pub fn path(&self) -> &str {
            self.request().uri().path()
        }

        /// The request query, without the `?`.
        pub fn query(&self) -> Option<&str> {
            self.request().uri().query()
        }

        /// The upgrade request's headers.
        pub fn headers(&self) -> &HeaderMap {
            self.request().headers()
        }

        /// The 101 response, on a client.
        pub fn response(&self) -> Option<&Response<()>> {
            self.info().handshake.response.as_ref()
        }

        /// The peer's address, when the transport has one.
        pub fn peer_addr(&self) -> Option<SocketAddr> {
            self.info().handshake.peer
        }

        /// The subprotocol chosen during the handshake.
        pub fn protocol(&self) -> Option<&str> {
            self.info().handshake.protocol.as_deref()
        }

        /// The round-trip time of the last keepalive ping that was answered;
        /// `None` before the first pong.
        pub fn last_pong_rtt(&self) -> Option<Duration> {
            match self.info().rtt.load(Ordering::Relaxed) {
                0 => None,
                micros => Some(Duration::from_micros(micros - 1)),
            }
        }

        /// The close frame the peer sent, once it has: its code and reason.
        /// `None` while the connection is open, and after a close frame
        /// with no code or a connection lost without one.
        pub fn close_frame(&self) -> Option<&CloseFrame> {
            self.info().peer_close.get()
        }

        /// Whether this end started the closing handshake: the application
        /// closed the connection (or dropped it), a keepalive timed out, or
        /// a shutdown began. False when the peer closed first or the
        /// connection was lost.
        pub fn initiated_close(&self) -> bool {
            self.info().initiated_close.load(Ordering::Relaxed)
        }

        /// The connection's broadcast queue, on a server connection: frames
        /// pushed there are written by the driver without a copy, under the
        /// queue's own bound and slow-consumer policy (see `ws_server::Hub`).
        /// `None` on a client, whose frames must be masked one by one.
        pub fn outbox(&self) -> Option<&Arc<Outbox>> {
            (self.info().role == Role::Server).then_some(&self.info().outbox)
        }
    };
}

impl WebSocket {
    accessors!();

    pub(crate) fn new(
        incoming: mpsc::Receiver<Result<Message, Error>>,
        commands: mpsc::UnboundedSender<Command>,
        budget: Arc<Semaphore>,
        high_water: usize,
        info: Arc<Shared>,
    ) -> Self {
        Self {
            receiver: WebSocketReceiver {
                incoming,
                info: info.clone(),
            },
            sender: WebSocketSender {
                commands,
                budget,
                high_water,
                info,
                reserved: None,
                acquiring: None,
            },
        }
    }

    fn info(&self) -> &Shared {
        &self.receiver.info
    }

    /// The next text or binary message; `None` once the connection has
    /// closed cleanly. An `Err` reports why it did not close cleanly, and is
    /// followed by `None`.
    ///
    /// Cancel-safe: used in `tokio::select!`, a message is never lost.
    pub async fn recv(&mut self) -> Option<Result<Message, Error>> {
        self.receiver.recv().await
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
    pub async fn send(&mut self, message: impl Into<Message>) -> Result<(), Error> {
        self.sender.send(message).await
    }

    /// Sends a text message.
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send).
    pub async fn send_text(&mut self, text: impl Into<Utf8Bytes>) -> Result<(), Error> {
        self.sender.send(Message::Text(text.into())).await
    }

    /// Sends a binary message.
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send).
    pub async fn send_binary(&mut self, data: impl Into<bytes::Bytes>) -> Result<(), Error> {
        self.sender.send(Message::Binary(data.into())).await
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
        self.sender.close(code, reason)?;
        while self.receiver.recv().await.is_some() {}
        Ok(())
    }

    /// Splits into a receiver and a sender for use in two tasks.
    pub fn split(self) -> (WebSocketReceiver, WebSocketSender) {
        (self.receiver, self.sender)
    }
}

impl WebSocketReceiver {
    accessors!();

    fn info(&self) -> &Shared {
        &self.info
    }

    /// As [`WebSocket::recv`]. Cancel-safe.
    pub async fn recv(&mut self) -> Option<Result<Message, Error>> {
        self.incoming.recv().await
    }
}

impl WebSocketSender {
    accessors!();

    fn info(&self) -> &Shared {
        &self.info
    }

    /// The permits a message of `len` bytes takes from the budget: its
    /// length, at least 1, at most the whole budget.
    fn cost(&self, len: usize) -> u32 {
        len.clamp(1, self.high_water).min(u32::MAX as usize) as u32
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
        let message = message.into();
        let cost = self.cost(payload_len(&message));
        let budget = self.budget.clone();
        let commands = self.commands.clone();
        async move {
            let permit = budget
                .acquire_many_owned(cost)
                .await
                .map_err(|_| Error::Closed(None))?;
            queue(&commands, message, Some(permit))
        }
    }

    /// Sends without waiting.
    ///
    /// # Errors
    ///
    /// [`Error::Full`] when the outgoing queue is at its high-water mark;
    /// [`Error::Closed`] once the connection is closing or closed.
    pub fn try_send(&self, message: impl Into<Message>) -> Result<(), Error> {
        let message = message.into();
        let permit = match self
            .budget
            .clone()
            .try_acquire_many_owned(self.cost(payload_len(&message)))
        {
            Ok(permit) => permit,
            Err(tokio::sync::TryAcquireError::NoPermits) => return Err(Error::Full),
            Err(tokio::sync::TryAcquireError::Closed) => return Err(Error::Closed(None)),
        };
        self.queue(message, Some(permit))
    }

    /// Starts the closing handshake without waiting for it to finish.
    ///
    /// # Errors
    ///
    /// As [`WebSocket::close`].
    pub fn close(&self, code: CloseCode, reason: &str) -> Result<(), Error> {
        let frame = CloseFrame::new(code, reason);
        frame.check_sendable()?;
        self.commands
            .send(Command::Close(Some(frame)))
            .map_err(|_| Error::Closed(None))
    }

    fn queue(&self, message: Message, permit: Option<OwnedSemaphorePermit>) -> Result<(), Error> {
        queue(&self.commands, message, permit)
    }
}

fn queue(
    commands: &mpsc::UnboundedSender<Command>,
    message: Message,
    permit: Option<OwnedSemaphorePermit>,
) -> Result<(), Error> {
    if let Message::Ping(data) | Message::Pong(data) = &message
        && data.len() > 125
    {
        return Err(ws_proto::SendError::ControlFrameTooLong(data.len()).into());
    }
    let command = match message {
        Message::Close(frame) => Command::Close(frame),
        message => {
            // The units travel with the message as a count, and the driver
            // returns them in one batch per pass: cheaper than a permit
            // object (and its semaphore handle) per message.
            let units = permit.map_or(0, |permit| {
                let units = permit.num_permits() as u32;
                permit.forget();
                units
            });
            Command::Send(message, units)
        }
    };
    commands.send(command).map_err(|_| Error::Closed(None))
}

pub(crate) fn payload_len(message: &Message) -> usize {
    match message {
        Message::Text(text) => text.len(),
        Message::Binary(data) | Message::Ping(data) | Message::Pong(data) => data.len(),
        Message::Close(_) => 0,
    }
}

impl Stream for WebSocketReceiver {
    type Item = Result<Message, Error>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.incoming.poll_recv(cx)
    }
}

impl Stream for WebSocket {
    type Item = Result<Message, Error>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.receiver).poll_next(cx)
    }
}

impl Sink<Message> for WebSocketSender {
    type Error = Error;

    /// Waits while the outgoing queue is at its high-water mark.
    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        if self.reserved.is_some() {
            return Poll::Ready(Ok(()));
        }
        let budget = self.budget.clone();
        let acquiring = self
            .acquiring
            .get_or_insert_with(|| Box::pin(budget.acquire_many_owned(1)));
        let result = std::task::ready!(acquiring.as_mut().poll(cx));
        self.acquiring = None;
        match result {
            Ok(permit) => {
                self.reserved = Some(permit);
                Poll::Ready(Ok(()))
            }
            Err(_) => Poll::Ready(Err(Error::Closed(None))),
        }
    }

    /// Queues the message with the unit of budget `poll_ready` reserved,
    /// plus as much of the rest of its size as is free: the queue may pass
    /// its high-water mark by at most one message.
    fn start_send(mut self: Pin<&mut Self>, message: Message) -> Result<(), Error> {
        let mut permit = self.reserved.take();
        let rest = self.cost(payload_len(&message)).saturating_sub(1);
        if rest > 0
            && let Ok(more) = self.budget.clone().try_acquire_many_owned(rest)
        {
            match &mut permit {
                Some(permit) => permit.merge(more),
                None => permit = Some(more),
            }
        }
        self.queue(message, permit)
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let _ = self.commands.send(Command::Close(None));
        Poll::Ready(Ok(()))
    }
}

impl Sink<Message> for WebSocket {
    type Error = Error;
    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Pin::new(&mut self.sender).poll_ready(cx)
    }
    fn start_send(mut self: Pin<&mut Self>, message: Message) -> Result<(), Error> {
        Pin::new(&mut self.sender).start_send(message)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Pin::new(&mut self.sender).poll_flush(cx)
    }
    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Pin::new(&mut self.sender).poll_close(cx)
    }
}

//! The connection driver: one loop that moves bytes between a transport and
//! the `ws-proto` core, and messages between the core and the application.

use std::collections::VecDeque;
use std::future::{Future, poll_fn};
use std::io::{self, IoSlice};
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::{Instant, sleep_until, timeout};
use ws_proto::{CloseCode, CloseFrame, Connection, Message, Role, State};

use crate::error::Error;
use crate::link::{Command, DriverLink, Link, Received, Room};
use crate::transport::Transport;
use crate::websocket::{Handshake, Shared, WebSocket, payload_len};

/// Bytes reserved in the read buffer before a read.
const READ_CHUNK: usize = 8 * 1024;
/// The most reserved for one read when a large frame is arriving: its
/// header announced the size (within the limits), so the buffer grows once
/// and the frame arrives in few reads.
const READ_MAX: usize = 1 << 20;
/// Payloads from this size on are written from the application's buffer
/// (a vectored write) instead of being copied into the output.
const SHARE_PAYLOAD_MIN: usize = 16 * 1024;
/// Outgoing bytes gathered into one write before the socket is written.
const COALESCE_LIMIT: usize = 256 * 1024;
/// After a protocol error, how long the application has to take the
/// messages received before it (and answer them) before the close frame
/// leaves; at most the close timeout.
const ANSWER_GRACE: Duration = Duration::from_secs(1);

/// How a connection behaves once open: keepalive, timeouts, queues.
///
/// Every setting has a documented default; `ws-server` and `ws-client` expose
/// them on their builders.
#[derive(Debug, Clone)]
pub struct Settings {
    ping_interval: Option<Duration>,
    ping_timeout: Option<Duration>,
    close_timeout: Duration,
    write_high_water: usize,
    incoming_queue: usize,
    control_frames: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            ping_interval: Some(Duration::from_secs(20)),
            ping_timeout: Some(Duration::from_secs(20)),
            close_timeout: Duration::from_secs(10),
            write_high_water: 1 << 20,
            incoming_queue: 16,
            control_frames: false,
        }
    }
}

impl Settings {
    /// How often a keepalive ping is sent, counted from the previous ping;
    /// `None` sends none. Default: 20 s. No second ping is sent while the
    /// first awaits its pong.
    pub fn ping_interval(mut self, interval: Option<Duration>) -> Self {
        self.ping_interval = interval;
        self
    }

    /// How long to wait for the pong of a keepalive ping before failing the
    /// connection with [`Error::KeepaliveTimeout`] and close code 1011;
    /// `None` waits forever. Default: 20 s.
    pub fn ping_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.ping_timeout = timeout;
        self
    }

    /// How long to wait for the peer's close frame after sending ours, and
    /// for the final writes. Incoming data does not extend it. Default: 10 s.
    pub fn close_timeout(mut self, timeout: Duration) -> Self {
        self.close_timeout = timeout;
        self
    }

    /// Bytes of outgoing payload queued before `send().await` waits and
    /// `try_send` reports [`Error::Full`]. Default: 1 MiB.
    pub fn write_high_water(mut self, bytes: usize) -> Self {
        self.write_high_water = bytes.max(1);
        self
    }

    /// Received messages queued for the application before the driver stops
    /// reading the socket (TCP backpressure). Default: 16.
    pub fn incoming_queue(mut self, messages: usize) -> Self {
        self.incoming_queue = messages.max(1);
        self
    }

    /// Also deliver received pings and pongs to the application, after the
    /// driver has answered them. Default: off.
    pub fn control_frames(mut self, deliver: bool) -> Self {
        self.control_frames = deliver;
        self
    }

    /// The keepalive interval.
    pub fn get_ping_interval(&self) -> Option<Duration> {
        self.ping_interval
    }

    /// The keepalive pong deadline.
    pub fn get_ping_timeout(&self) -> Option<Duration> {
        self.ping_timeout
    }

    /// The close timeout.
    pub fn get_close_timeout(&self) -> Duration {
        self.close_timeout
    }
}

/// Starts a connection whose opening handshake is done.
///
/// Returns the application's [`WebSocket`] and the driver future, which must
/// be polled (spawned, or joined with the application's own future) for the
/// connection to make progress. The driver ends once the connection has
/// closed and the transport is shut down. When `shutdown` completes, the
/// driver starts the closing handshake with 1001 Going Away.
///
/// A client driver waits, after the closing handshake, for the server to
/// close the TCP connection first (RFC 6455 section 7.1.1), up to the close
/// timeout.
pub fn start<S: Transport>(
    stream: S,
    conn: Connection,
    handshake: Handshake,
    settings: &Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> (WebSocket, impl Future<Output = ()> + Send + 'static) {
    let link = Arc::new(Link::new(
        settings.incoming_queue,
        settings.write_high_water,
    ));
    let shared = Arc::new(Shared::new(handshake, conn.role()));
    let ws = WebSocket::new(link.clone(), shared.clone());
    let driver = drive(
        stream,
        conn,
        DriverLink(link),
        settings.clone(),
        shared,
        Box::pin(shutdown),
    );
    (ws, driver)
}

/// The bytes waiting to be written, in order: whole pieces (broadcast
/// frames shared with other connections, and sealed runs of encoded
/// frames), then the buffer frames are being encoded into.
#[derive(Default)]
struct Output {
    chunks: VecDeque<Bytes>,
    chunk_bytes: usize,
    tail: BytesMut,
}

/// The most pieces handed to one vectored write.
const MAX_IOVECS: usize = 64;

impl Output {
    fn len(&self) -> usize {
        self.chunk_bytes + self.tail.len()
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends a shared frame after everything encoded so far, without
    /// copying it.
    fn push_shared(&mut self, frame: Bytes) {
        if !self.tail.is_empty() {
            let sealed = self.tail.split().freeze();
            self.chunk_bytes += sealed.len();
            self.chunks.push_back(sealed);
        }
        self.chunk_bytes += frame.len();
        self.chunks.push_back(frame);
    }

    /// Drops the first `n` bytes, which were written.
    fn advance(&mut self, mut n: usize) {
        while n > 0 {
            match self.chunks.front_mut() {
                Some(front) if n >= front.len() => {
                    n -= front.len();
                    self.chunk_bytes -= front.len();
                    self.chunks.pop_front();
                }
                Some(front) => {
                    front.advance(n);
                    self.chunk_bytes -= n;
                    n = 0;
                }
                None => {
                    self.tail.advance(n);
                    n = 0;
                }
            }
        }
        if self.is_empty() {
            // Give the buffer back: a burst's output can be large.
            self.tail = BytesMut::new();
        }
    }

    fn clear(&mut self) {
        self.chunks.clear();
        self.chunk_bytes = 0;
        self.tail = BytesMut::new();
    }

    fn poll_write<S: Transport>(
        &self,
        stream: &mut S,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<usize>> {
        if self.chunks.is_empty() {
            return Pin::new(stream).poll_write(cx, &self.tail);
        }
        let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
        let mut count = 0;
        for piece in self.chunks.iter().map(|b| &b[..]).chain([&self.tail[..]]) {
            if count == MAX_IOVECS {
                break;
            }
            if !piece.is_empty() {
                slices[count] = IoSlice::new(piece);
                count += 1;
            }
        }
        Pin::new(stream).poll_write_vectored(cx, &slices[..count])
    }

    /// Writes everything, within `limit`.
    async fn flush<S: Transport>(&mut self, stream: &mut S, limit: Duration) {
        let _ = timeout(limit, async {
            while !self.is_empty() {
                match poll_fn(|cx| self.poll_write(stream, cx)).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => self.advance(n),
                }
            }
        })
        .await;
        self.clear();
    }
}

/// What one poll of the transport did.
enum Io {
    Wrote(usize),
    Read(usize),
}

/// Writes `out` if it holds anything, and reads if `read` allows, whichever
/// is ready first.
///
/// A read first waits for readiness with an empty buffer: an idle connection
/// gives its read buffer back and allocates one only when bytes arrive.
fn poll_io<S: Transport>(
    stream: &mut S,
    out: &Output,
    conn: &mut Connection,
    read: bool,
    idle: &mut impl FnMut(),
    cx: &mut Context<'_>,
) -> Poll<io::Result<Io>> {
    if !out.is_empty()
        && let Poll::Ready(written) = out.poll_write(stream, cx)
    {
        return Poll::Ready(written.map(Io::Wrote));
    }
    if !read {
        return Poll::Pending;
    }
    if conn.read_buffer().is_empty() {
        match stream.poll_read_ready(cx) {
            Poll::Pending => {
                conn.release_idle_buffers();
                idle();
                return Poll::Pending;
            }
            Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
            Poll::Ready(Ok(())) => {}
        }
    }
    let want = conn.bytes_wanted().clamp(READ_CHUNK, READ_MAX);
    let buf = conn.read_buffer();
    let spare = buf.capacity() - buf.len();
    if spare < 1024 || spare < want {
        buf.reserve(want);
    }
    let read = pin!(stream.read_buf(buf)).poll(cx).map_ok(Io::Read);
    if read.is_pending() {
        // Readiness was stale (as it is after the handshake's reads): the
        // transport has now cleared it, and the next poll waits for it
        // without a buffer.
        conn.release_idle_buffers();
    }
    read
}

/// The driver's loop.
///
/// Not an async fn: the block below uses the arguments in place, where an
/// async fn would keep a second copy of each in the future. The shutdown
/// future comes boxed for the same reason (pinning it here would move it).
#[allow(clippy::manual_async_fn)]
fn drive<S: Transport>(
    mut stream: S,
    mut conn: Connection,
    link: DriverLink,
    settings: Settings,
    shared: Arc<Shared>,
    mut shutdown: Pin<Box<dyn Future<Output = ()> + Send>>,
) -> impl Future<Output = ()> + Send {
    async move {
        let mut out = Output::default();
        // Received messages on their way to the application, and commands on
        // their way from it: moved across the link in batches.
        let mut received: VecDeque<Received> = VecDeque::new();
        let mut commands: VecDeque<Command> = VecDeque::new();
        // Whether anything crossed the link since its buffers were last
        // given back: only then is there something to give back.
        let mut link_used = false;
        let outbox = shared.outbox();
        let broadcasts = conn.role() == Role::Server;
        let mut eof = false;
        let mut commands_open = true;
        let mut incoming_open = true;
        let mut shutdown_seen = false;
        let mut failure: Option<Error> = None;
        let mut ping_seq: u64 = 0;
        let mut ping_sent = Instant::now();
        let mut next_ping = settings
            .ping_interval
            .map(|interval| Instant::now() + interval);
        let mut pong_deadline: Option<Instant> = None;
        let mut awaiting_pong = false;
        let mut close_deadline: Option<Instant> = None;
        // One timer for the earliest deadline, reset only when that changes:
        // registering a timer on every pass of the loop would cost more than
        // the rest of a small message's trip.
        let mut timer = pin!(sleep_until(Instant::now()));
        let mut armed: Option<Instant> = None;

        loop {
            // 1. Decode what was received, as far as the application keeps up.
            let mut blocked = false;
            if conn.state() != State::Closed {
                let mut free = match link.room() {
                    Room::Free(free) if incoming_open => free,
                    // Nobody is reading: messages are decoded and dropped.
                    _ => {
                        incoming_open = false;
                        usize::MAX
                    }
                };
                while conn.state() != State::Closed {
                    if free == 0 {
                        blocked = true;
                        break;
                    }
                    let deliver = match conn.poll_message() {
                        Ok(Some(message @ (Message::Text(_) | Message::Binary(_)))) => {
                            tracing::trace!(len = payload_len(&message), "received message");
                            Some(message)
                        }
                        Ok(Some(Message::Pong(payload))) => {
                            tracing::trace!(len = payload.len(), "received pong");
                            // Only the pong of the latest keepalive ping counts:
                            // a stray, late or duplicate pong changes nothing.
                            if awaiting_pong && payload[..] == ping_seq.to_be_bytes() {
                                awaiting_pong = false;
                                pong_deadline = None;
                                shared.record_rtt(ping_sent.elapsed());
                            }
                            settings.control_frames.then_some(Message::Pong(payload))
                        }
                        Ok(Some(Message::Ping(payload))) => {
                            tracing::trace!(len = payload.len(), "received ping");
                            // Answer each ping of a burst while the output has
                            // room; past that, the core keeps only the latest
                            // pong owed.
                            if out.len() < COALESCE_LIMIT {
                                conn.poll_transmit(&mut out.tail);
                            }
                            settings.control_frames.then_some(Message::Ping(payload))
                        }
                        Ok(Some(Message::Close(frame))) => {
                            tracing::debug!(?frame, "received close");
                            if let Some(frame) = frame {
                                shared.record_close(frame);
                            }
                            None
                        }
                        Ok(None) => break,
                        Err(error) => {
                            tracing::debug!(%error, "protocol error");
                            failure = Some(error.into());
                            break;
                        }
                    };
                    if let Some(message) = deliver.filter(|_| incoming_open) {
                        received.push_back(Ok(message));
                        free -= 1;
                    }
                }
                link_used |= !received.is_empty();
                link.deliver(&mut received);
            }
            if let Some(error) = failure.take_if(|_| conn.state() == State::Closed && incoming_open)
            {
                // The peer broke the protocol. Let the application answer the
                // messages it was given before the error: hand it the error
                // after them, and once it has taken everything (so its answers
                // are queued), send them ahead of the failure's close frame.
                let grace = settings.close_timeout.min(ANSWER_GRACE);
                received.push_back(Err(error));
                link.deliver(&mut received);
                link_used = true;
                let _ = timeout(
                    grace,
                    poll_fn(|cx| {
                        loop {
                            if link.drained() {
                                return Poll::Ready(());
                            }
                            std::task::ready!(link.poll_driver(cx, false, false));
                        }
                    }),
                )
                .await;
                incoming_open = false;
                link.take_commands(&mut commands, usize::MAX);
                for command in commands.drain(..) {
                    apply(&mut conn, command, &mut out);
                }
            }

            // 2. Gather what the application queued.
            if commands_open && out.len() < COALESCE_LIMIT {
                let taken = link.take_commands(&mut commands, COALESCE_LIMIT - out.len());
                link_used |= !commands.is_empty();
                for command in commands.drain(..) {
                    apply(&mut conn, command, &mut out);
                }
                if taken.senders_gone {
                    commands_open = false;
                    // Every sender is gone: the application is done.
                    let frame = CloseFrame::new(CloseCode::NORMAL, "");
                    let _ = conn.close(Some(frame), &mut out.tail);
                }
            }
            conn.poll_transmit(&mut out.tail);
            // 2b. Take broadcast frames while the output has room.
            if broadcasts && conn.state() == State::Open {
                let room = COALESCE_LIMIT.saturating_sub(out.len());
                if let Err(code) = outbox.drain(room, |frame| out.push_shared(frame)) {
                    // A slow consumer to disconnect: what it has not taken is
                    // discarded, and the close frame is tried once, without
                    // waiting on a peer that is not reading.
                    tracing::debug!(%code, "slow consumer: disconnecting");
                    out.clear();
                    let _ = conn.close(Some(CloseFrame::new(code, "slow consumer")), &mut out.tail);
                    let _ = poll_fn(|cx| Poll::Ready(out.poll_write(&mut stream, cx))).await;
                    shared.record_initiated_close();
                    failure = Some(Error::Evicted(code));
                    break;
                }
            }
            if conn.is_awaiting_close() && close_deadline.is_none() {
                // A close frame sent before any was received: this end started.
                shared.record_initiated_close();
                close_deadline = Some(Instant::now() + settings.close_timeout);
            }

            // 3. Done once closed and flushed, or once the peer has gone.
            if eof || conn.state() == State::Closed {
                out.flush(&mut stream, settings.close_timeout).await;
                break;
            }

            // Stop reading while the peer is not taking what we write: a ping
            // flood then cannot grow the output without bound.
            let can_read = !blocked && out.len() < COALESCE_LIMIT;
            let want_commands = commands_open && out.len() < COALESCE_LIMIT;
            let ping_due = next_ping.filter(|_| !awaiting_pong && conn.state() == State::Open);
            let deadline = [ping_due, pong_deadline, close_deadline]
                .into_iter()
                .flatten()
                .min();
            if deadline != armed {
                if let Some(deadline) = deadline {
                    timer.as_mut().reset(deadline);
                }
                armed = deadline;
            }
            let mut idle = || {
                // Nothing to read: give back the link's buffers and the
                // batches', if a message crossed since the last time.
                if std::mem::take(&mut link_used) {
                    link.release_idle_buffers();
                    received = VecDeque::new();
                    commands = VecDeque::new();
                }
            };
            tokio::select! {
                biased;
                io = poll_fn(|cx| poll_io(&mut stream, &out, &mut conn, can_read, &mut idle, cx)) => match io {
                    Ok(Io::Wrote(0)) => { failure.get_or_insert(Error::ConnectionLost); break; }
                    Ok(Io::Wrote(n)) => out.advance(n),
                    Ok(Io::Read(0)) => {
                        conn.handle_eof();
                        eof = true;
                        if conn.close_received().is_none() {
                            failure.get_or_insert(Error::ConnectionLost);
                        }
                    }
                    Ok(Io::Read(_)) => {}
                    Err(error) => { failure.get_or_insert(error.into()); break; }
                },
                () = poll_fn(|cx| link.poll_driver(cx, want_commands, blocked)) => {}
                () = poll_fn(|cx| outbox.poll_signal(cx)), if broadcasts && conn.state() == State::Open => {}
                () = &mut timer, if armed.is_some() => {
                    // Re-arm on the next pass, whatever fired.
                    armed = None;
                    let now = Instant::now();
                    if close_deadline.is_some_and(|d| d <= now) {
                        tracing::debug!("close timeout: the peer did not answer the close frame");
                        break;
                    }
                    if pong_deadline.is_some_and(|d| d <= now) {
                        tracing::debug!("keepalive ping timed out");
                        failure = Some(Error::KeepaliveTimeout);
                        shared.record_initiated_close();
                        let frame = CloseFrame::new(CloseCode::INTERNAL_ERROR, "keepalive ping timeout");
                        let _ = conn.close(Some(frame), &mut out.tail);
                        out.flush(&mut stream, settings.close_timeout).await;
                        break;
                    }
                    if ping_due.is_some_and(|d| d <= now) {
                        ping_seq += 1;
                        let ping = Message::Ping(ping_seq.to_be_bytes().to_vec().into());
                        let _ = conn.send(&ping, &mut out.tail);
                        ping_sent = now;
                        awaiting_pong = true;
                        pong_deadline = settings.ping_timeout.map(|t| ping_sent + t);
                        next_ping = settings.ping_interval.map(|interval| ping_sent + interval);
                        tracing::trace!(seq = ping_seq, "sent keepalive ping");
                    }
                }
                () = shutdown.as_mut(), if !shutdown_seen => {
                    shutdown_seen = true;
                    let frame = CloseFrame::new(CloseCode::GOING_AWAY, "shutting down");
                    let _ = conn.close(Some(frame), &mut out.tail);
                }
            }
        }

        outbox.close();
        link.close_sends();
        tracing::debug!(code = %conn.close_code(), "connection closed");
        // RFC 6455 section 7.1.1: "the underlying TCP connection, in most normal
        // cases, SHOULD be closed first by the server, so that it holds the
        // TIME_WAIT state and not the client". After a clean closing handshake a
        // client waits for the server's end of stream (below); anyone else
        // closes now.
        let client_waits = conn.role() == Role::Client
            && !eof
            && conn.close_received().is_some()
            && failure.is_none();
        if !client_waits {
            let _ = timeout(settings.close_timeout, stream.shutdown()).await;
        }
        if let Some(failure) = failure
            && incoming_open
        {
            received.push_back(Err(failure));
            link.deliver(&mut received);
        }
        // The application's stream ends here: `close().await` returns once the
        // closing handshake is done, not after the wait for the server.
        drop(link);
        if client_waits {
            let _ = timeout(settings.close_timeout, async {
                let mut scratch = [0u8; 512];
                while let Ok(1..) = tokio::io::AsyncReadExt::read(&mut stream, &mut scratch).await {
                }
            })
            .await;
            let _ = timeout(settings.close_timeout, stream.shutdown()).await;
        }
    }
}

/// Applies one command.
fn apply(conn: &mut Connection, command: Command, output: &mut Output) {
    let out = &mut output.tail;
    match command {
        Command::Send(message, _) => {
            tracing::trace!(len = payload_len(&message), "sending message");
            // A send after close is dropped: the application learns it from
            // its next send, which finds the queue closed.
            if let Ok(Some(payload)) = conn.send_vectored(&message, out, SHARE_PAYLOAD_MIN) {
                output.push_shared(payload);
            }
        }
        Command::Close(frame) => {
            tracing::debug!(?frame, "closing");
            let _ = conn.close(frame, out);
        }
    }
}

//! The connection driver: one loop that moves bytes between a transport and
//! the `ws-proto` core, and messages between the core and the application.

use std::collections::VecDeque;
use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, ReadBuf};
use tokio::time::{Instant, Sleep, sleep_until};
use ws_proto::{CloseCode, CloseFrame, Connection, Message, Role, State, Timeout};

use crate::error::Error;
use crate::inline::{Deliver, Inline, MessageHandler, Reply, ToLink};
use crate::link::{Command, DriverLink, Link, Received, Room};
use crate::outbox::Piece;
use crate::transport::Transport;
use crate::websocket::{Handshake, Shared, WebSocket, payload_len};

/// Bytes reserved in the read buffer before a read.
const READ_CHUNK: usize = 8 * 1024;
/// Below this much room, the read buffer grows (or is compacted) first.
const READ_MIN: usize = 1024;
/// The most reserved for one read when a large frame is arriving: its
/// header announced the size (within the limits), so the buffer grows once
/// and the frame arrives in few reads.
const READ_MAX: usize = 1 << 20;
/// Payloads from this size on are written from the application's buffer
/// (a vectored write) instead of being copied into the output.
const SHARE_PAYLOAD_MIN: usize = 16 * 1024;
/// Outgoing bytes gathered into one write before the socket is written.
const COALESCE_LIMIT: usize = 256 * 1024;
/// How long a connection whose socket went idle keeps its buffers (the
/// read buffer, the link's queues) before giving them back. A connection
/// trading messages goes idle between every two of them: giving the
/// buffers back each time would allocate them again for the next message.
const RELEASE_AFTER: Duration = Duration::from_millis(500);
/// After a protocol error, how long the application has to take the
/// messages received before it (and answer them) before the close frame
/// leaves; at most the close timeout.
const ANSWER_GRACE: Duration = Duration::from_secs(1);

/// How a connection's driver queues messages between the socket and the
/// application. The keepalive and the close timeout belong to the protocol
/// core: they are in the connection's [`Config`](ws_proto::Config).
///
/// Every setting has a documented default; `ws-server` and `ws-client` expose
/// them on their builders.
#[derive(Debug, Clone)]
pub struct Settings {
    write_high_water: usize,
    incoming_queue: usize,
    control_frames: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            write_high_water: 1 << 20,
            incoming_queue: 16,
            control_frames: false,
        }
    }
}

impl Settings {
    /// Bytes of outgoing payload queued before `send().await` waits and
    /// `try_send` reports [`Error::Full`]. Default: 1 MiB; at most 4 GiB
    /// (a larger value counts as 4 GiB).
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
    settings: &Arc<Settings>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> (WebSocket, impl Future<Output = ()> + Send + 'static) {
    open(stream, conn, handshake, settings, shutdown)
}

/// Starts a connection whose messages go to a handler the driver calls as
/// it decodes them, instead of across a queue to a [`WebSocket`]: `handler`
/// makes it, from the connection's [`WebSocket`].
///
/// The handler answers through a [`Reply`], straight into the output. The
/// `WebSocket` receives no messages; it can still send (from another task,
/// say), close, read the handshake, and be kept or cloned for that, or
/// dropped: the connection stays open until either side closes it or
/// `shutdown` completes. Everything else is as with [`start`].
pub fn start_inline<S: Transport, H: MessageHandler>(
    stream: S,
    conn: Connection,
    handshake: Handshake,
    settings: &Arc<Settings>,
    shutdown: impl Future<Output = ()> + Send + 'static,
    handler: impl FnOnce(WebSocket) -> H,
) -> impl Future<Output = ()> + Send + 'static {
    let shared = shared_for(handshake, &conn, settings);
    let deliver = Inline(handler(WebSocket::new(shared.clone())));
    let link = DriverLink(shared);
    drive(stream, conn, link, Arc::clone(settings), shutdown, deliver)
}

/// [`start`], with the driver's type named (for the tests to look inside).
fn open<S: Transport, F: Future<Output = ()> + Send + 'static>(
    stream: S,
    conn: Connection,
    handshake: Handshake,
    settings: &Arc<Settings>,
    shutdown: F,
) -> (WebSocket, Driver<S, F, ToLink>) {
    let shared = shared_for(handshake, &conn, settings);
    let ws = WebSocket::new(shared.clone());
    let link = DriverLink(shared);
    let driver = drive(stream, conn, link, Arc::clone(settings), shutdown, ToLink);
    (ws, driver)
}

/// The state a connection's driver shares with its `WebSocket` handles.
fn shared_for(handshake: Handshake, conn: &Connection, settings: &Settings) -> Arc<Shared> {
    let link = Link::new(settings.incoming_queue, settings.write_high_water);
    Arc::new(Shared::new(link, handshake, conn.role()))
}

/// The bytes waiting to be written, in order: whole pieces (broadcast
/// frames shared with other connections, and sealed runs of encoded
/// frames), then the buffer frames are being encoded into.
#[derive(Default)]
pub(crate) struct Output {
    chunks: VecDeque<Bytes>,
    chunk_bytes: usize,
    pub(crate) tail: BytesMut,
}

/// The largest output buffer kept once everything in it was written.
const KEEP_OUTPUT: usize = 16 * 1024;

/// Shared frames (broadcasts) up to this size are copied into the output.
const COPY_SHARED_MAX: usize = 1024;

/// The most pieces handed to one vectored write.
const MAX_IOVECS: usize = 64;

impl Output {
    fn len(&self) -> usize {
        self.chunk_bytes + self.tail.len()
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends a shared frame after everything encoded so far. A small one
    /// is copied: as a piece of its own it would cost more than its bytes,
    /// in memory (a handle per frame) and in the vectored write (which
    /// takes `MAX_IOVECS` pieces at a time). A large one is queued without
    /// copying.
    fn push_shared(&mut self, frame: Bytes) {
        if frame.len() <= COPY_SHARED_MAX {
            self.tail.extend_from_slice(&frame);
            return;
        }
        if !self.tail.is_empty() {
            let sealed = self.tail.split().freeze();
            self.chunk_bytes += sealed.len();
            self.chunks.push_back(sealed);
        }
        self.chunk_bytes += frame.len();
        self.chunks.push_back(frame);
    }

    /// Appends a run of small broadcast frames, taking every byte of `run`:
    /// into an empty output the buffers are swapped, and nothing is copied.
    fn take_run(&mut self, run: &mut BytesMut) {
        if self.tail.is_empty() {
            std::mem::swap(&mut self.tail, run);
        } else {
            self.tail.extend_from_slice(run);
            run.clear();
        }
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
                None if n >= self.tail.len() => {
                    // Truncated rather than advanced: the buffer keeps its
                    // start, so the next frames are encoded at the front
                    // without a `reserve` first moving the space back.
                    self.tail.clear();
                    n = 0;
                }
                None => {
                    self.tail.advance(n);
                    n = 0;
                }
            }
        }
        // Once everything is written, a buffer grown by a burst is given
        // back; a smaller one is kept (already cleared above) for the next
        // pass's frames, rather than grown anew a reallocation at a time.
        if self.is_empty() && self.tail.capacity() > KEEP_OUTPUT {
            self.tail = BytesMut::new();
        }
    }

    /// Gives the buffer back if nothing is waiting (the socket is idle).
    fn release_idle_buffer(&mut self) {
        if self.is_empty() {
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
}

/// The driver's working buffers: the output, and the batches of messages
/// and commands on their way across the link.
#[derive(Default)]
struct Buffers {
    out: Output,
    received: VecDeque<Received>,
    commands: VecDeque<Command>,
}

/// The [`Buffers`], boxed and made on first use. They are dropped with the
/// other buffers once the socket has been idle for [`RELEASE_AFTER`] with
/// nothing in them: an idle connection then holds one pointer instead of
/// their 136 bytes, and a connection that never sends makes none.
#[derive(Default)]
struct Work(Option<Box<Buffers>>);

impl Work {
    #[inline]
    fn get(&mut self) -> &mut Buffers {
        match self.0 {
            Some(ref mut buffers) => buffers,
            None => Self::make(&mut self.0),
        }
    }

    /// Kept out of line: the driver asks for the buffers many times per
    /// message, and makes them only after an idle spell.
    #[cold]
    #[inline(never)]
    fn make(slot: &mut Option<Box<Buffers>>) -> &mut Buffers {
        slot.insert(Box::default())
    }

    #[inline]
    fn out(&mut self) -> &mut Output {
        &mut self.get().out
    }

    /// The bytes waiting to be written.
    #[inline]
    fn out_len(&self) -> usize {
        self.0.as_ref().map_or(0, |buffers| buffers.out.len())
    }

    #[inline]
    fn is_made(&self) -> bool {
        self.0.is_some()
    }

    /// Drops the buffers if nothing waits in them; otherwise gives back
    /// the output's buffer if it is empty.
    fn release_idle(&mut self) {
        if let Some(buffers) = &mut self.0 {
            if buffers.out.is_empty() && buffers.received.is_empty() && buffers.commands.is_empty()
            {
                self.0 = None;
            } else {
                buffers.out.release_idle_buffer();
            }
        }
    }
}

/// What one poll of the transport did.
enum Io {
    Wrote(usize),
    Read(usize),
}

pin_project_lite::pin_project! {
    /// One timer for whichever deadline comes first, reset only when that
    /// deadline changes: registering a timer on every pass would cost more
    /// than the rest of a small message's trip.
    struct Timer {
        #[pin]
        sleep: Sleep,
        // Whether the sleep's deadline stands.
        armed: bool,
        // The waker the sleep was last polled with, while it stands: the
        // sleep need not be polled again until it fires or the waker
        // changes.
        registered: Option<Waker>,
    }
}

impl Timer {
    fn new() -> Self {
        Self {
            sleep: sleep_until(Instant::now()),
            armed: false,
            registered: None,
        }
    }

    /// Sets the deadline (`None`: none).
    fn arm(self: Pin<&mut Self>, deadline: Option<Instant>) {
        let this = self.project();
        match deadline {
            Some(deadline) if !*this.armed || this.sleep.deadline() != deadline => {
                this.sleep.reset(deadline);
                *this.registered = None;
                *this.armed = true;
            }
            Some(_) => {}
            None => *this.armed = false,
        }
    }

    /// Whether the deadline has passed; it is then disarmed.
    fn poll_fired(self: Pin<&mut Self>, cx: &mut Context<'_>) -> bool {
        let this = self.project();
        if !*this.armed {
            return false;
        }
        let registered = this
            .registered
            .as_ref()
            .is_some_and(|waker| waker.will_wake(cx.waker()));
        if registered && !this.sleep.is_elapsed() {
            // Polled before with this waker, which the sleep will wake.
            return false;
        }
        if this.sleep.poll(cx).is_ready() {
            *this.armed = false;
            *this.registered = None;
            return true;
        }
        if !registered {
            *this.registered = Some(cx.waker().clone());
        }
        false
    }
}

/// Where the driver is in the connection's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Moving messages both ways.
    Open,
    /// The peer broke the protocol: the application has until the timer to
    /// take the messages received before it, so that its answers leave
    /// ahead of the close frame.
    Grace,
    /// Writing what is left, until the timer.
    Flush,
    /// A client after a clean closing handshake: waits, until the timer,
    /// for the server to close the TCP connection first.
    AwaitEof,
    /// Shutting the transport down, until the timer.
    Shutdown,
    Done,
}

pin_project_lite::pin_project! {
    /// The connection's driver: a future polled by hand, holding only the
    /// connection's state (no `select!` state, no locals kept across
    /// awaits), so that an idle connection costs little.
    struct Driver<S, F, D> {
        #[pin]
        timer: Timer,
        // Held here, not boxed: a box would be an allocation of its own
        // for each connection. Empty once it has completed.
        #[pin]
        shutdown: Option<F>,
        state: Inner<S, D>,
    }
}

/// Everything the driver holds apart from its timer.
struct Inner<S, D> {
    stream: S,
    conn: Connection,
    /// Where decoded messages go: a zero-sized marker for the link, or the
    /// application's handler.
    deliver: D,
    link: DriverLink,
    /// Shared with every connection started with the same settings.
    settings: Arc<Settings>,
    /// The output, and the messages received and commands taken, moved
    /// across the link in batches.
    work: Work,
    /// Boxed: a connection spends nearly all its life without one.
    failure: Option<Box<Error>>,
    phase: Phase,
    eof: bool,
    commands_open: bool,
    incoming_open: bool,
    /// The receiver's queue is full: the socket is not read.
    blocked: bool,
    /// Room in the receiver's queue as of the last look under its lock: a
    /// lower bound until the driver queues more, since only the receiver
    /// takes from it. While above zero, decoding needs no lock to find room.
    free: u32,
    /// Whether anything crossed the link since its buffers were last given
    /// back: only then is there something to give back.
    link_used: bool,
    /// Broadcast frames may be waiting in the outbox.
    outbox_pending: bool,
    /// Commands may be waiting in the link.
    commands_pending: bool,
    /// When to give the buffers back, once the socket went idle holding
    /// some.
    release_at: Option<Instant>,
}

/// The driver's loop.
fn drive<S: Transport, F: Future<Output = ()>, D: Deliver>(
    stream: S,
    conn: Connection,
    link: DriverLink,
    settings: Arc<Settings>,
    shutdown: F,
    deliver: D,
) -> Driver<S, F, D> {
    let mut conn = conn;
    // The core's clock starts: the first keepalive ping is timed from now.
    let _ = conn.handle_timeout(Instant::now().into_std());
    Driver {
        timer: Timer::new(),
        shutdown: Some(shutdown),
        state: Inner {
            stream,
            conn,
            deliver,
            link,
            settings,
            work: Work::default(),
            failure: None,
            phase: Phase::Open,
            eof: false,
            commands_open: true,
            incoming_open: true,
            blocked: false,
            free: 0,
            link_used: false,
            outbox_pending: true,
            commands_pending: true,
            release_at: None,
        },
    }
}

impl<S: Transport, F: Future<Output = ()>, D: Deliver> Future for Driver<S, F, D> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.project();
        let mut timer = this.timer;
        let mut shutdown = this.shutdown;
        let state = this.state;
        loop {
            // Each step returns `Ready` once it has moved to another phase.
            let step = match state.phase {
                Phase::Open => state.poll_open(cx, timer.as_mut(), shutdown.as_mut()),
                Phase::Grace => state.poll_grace(cx, timer.as_mut()),
                Phase::Flush => state.poll_flush(cx, timer.as_mut()),
                Phase::AwaitEof => state.poll_await_eof(cx, timer.as_mut()),
                Phase::Shutdown => state.poll_shutdown(cx, timer.as_mut()),
                Phase::Done => return Poll::Ready(()),
            };
            std::task::ready!(step);
        }
    }
}

impl<S: Transport, D: Deliver> Inner<S, D> {
    /// The open connection: decode, hand over, gather, write, wait.
    fn poll_open<F: Future<Output = ()>>(
        &mut self,
        cx: &mut Context<'_>,
        mut timer: Pin<&mut Timer>,
        mut shutdown: Pin<&mut Option<F>>,
    ) -> Poll<()> {
        loop {
            // 1. Decode what was received, as far as the application keeps up.
            let delivered = self.decode();
            if !D::INLINE
                && self.conn.state() == State::Closed
                && self.incoming_open
                && let Some(error) = self.failure.take()
            {
                // The peer broke the protocol. Let the application answer the
                // messages it was given before the error: hand it the error
                // after them, and once it has taken everything (so its answers
                // are queued), send them ahead of the failure's close frame.
                self.deliver_failure(*error);
                self.link_used = true;
                let grace = self.conn.config().close_timeout.min(ANSWER_GRACE);
                timer.as_mut().arm(Instant::now().checked_add(grace));
                self.phase = Phase::Grace;
                return Poll::Ready(());
            }

            if delivered && self.failure.is_none() {
                // Let the application answer before going on: the driver
                // asks to be polled again and returns. Run in the same task
                // as the handler (as a server runs it), this costs no trip
                // through the scheduler; the answers are then taken and
                // written in one pass, instead of this pass going on to
                // register its wakers and the timer for a sleep it would
                // leave at once.
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }

            // 2. Gather what the application queued. The queue is locked
            // only when a push into it woke the driver, or when commands
            // were left there: a push into a non-empty queue wakes nobody.
            if self.link.take_notified() {
                self.commands_pending = true;
            }
            if self.commands_open && self.commands_pending && self.work.out_len() < COALESCE_LIMIT {
                let room = COALESCE_LIMIT - self.work.out_len();
                let taken = self
                    .link
                    .take_commands(|| &mut self.work.get().commands, room);
                self.commands_pending = taken.more;
                self.link_used |= taken.some;
                self.apply_commands();
                if taken.senders_gone {
                    self.commands_open = false;
                    // Every sender is gone: the application is done, unless
                    // its handler is called from here.
                    if !D::INLINE {
                        let frame = CloseFrame::new(CloseCode::NORMAL, "");
                        let _ = self.conn.close(Some(frame), &mut self.work.out().tail);
                    }
                }
            }
            if self.conn.has_pending_output() {
                self.conn.poll_transmit(&mut self.work.out().tail);
            }
            // 2b. Take broadcast frames while the output has room.
            if let Err(code) = self.take_broadcasts() {
                // A slow consumer to disconnect: what it has not taken is
                // discarded, and the close frame is tried once, without
                // waiting on a peer that is not reading.
                tracing::debug!(%code, "slow consumer: disconnecting");
                let out = self.work.out();
                out.clear();
                let frame = CloseFrame::new(code, "slow consumer");
                let _ = self.conn.close(Some(frame), &mut out.tail);
                let _ = out.poll_write(&mut self.stream, cx);
                self.link.shared().record_initiated_close();
                self.failure = Some(Box::new(Error::Evicted(code)));
                self.finish(timer);
                return Poll::Ready(());
            }
            if self.conn.is_awaiting_close() {
                // A close frame sent before any was received: this end
                // started. The core times the wait for the peer's.
                self.link.shared().record_initiated_close();
            }

            // 3. Done once closed and flushed, or once the peer has gone.
            if self.eof || self.conn.state() == State::Closed {
                self.enter(Phase::Flush, timer);
                return Poll::Ready(());
            }

            // 4. Wait for the socket, the application, a broadcast, a
            // deadline or the server's shutdown, in that order.
            // Stop reading while the peer is not taking what we write: a ping
            // flood then cannot grow the output without bound.
            let can_read = !self.blocked && self.work.out_len() < COALESCE_LIMIT;
            if let Poll::Ready(io) = self.poll_io(can_read, cx) {
                match io {
                    Ok(Io::Wrote(0)) => {
                        self.failure
                            .get_or_insert_with(|| Box::new(Error::ConnectionLost));
                        self.finish(timer);
                        return Poll::Ready(());
                    }
                    Ok(Io::Wrote(_)) => {}
                    Ok(Io::Read(0)) => {
                        self.conn.handle_eof();
                        self.eof = true;
                        if self.conn.close_received().is_none() {
                            self.failure
                                .get_or_insert_with(|| Box::new(Error::ConnectionLost));
                        }
                    }
                    Ok(Io::Read(_)) => {}
                    Err(error) => {
                        self.failure.get_or_insert_with(|| Box::new(error.into()));
                        self.finish(timer);
                        return Poll::Ready(());
                    }
                }
                continue;
            }
            let want_commands = self.commands_open && self.work.out_len() < COALESCE_LIMIT;
            if want_commands && self.commands_pending {
                // Commands were left in the queue and there is room for
                // them now: further pushes will not wake the driver, so it
                // takes them before it sleeps.
                continue;
            }
            if self.outbox_pending && self.broadcasts() && self.work.out_len() < COALESCE_LIMIT {
                // Likewise for broadcast frames left in the outbox, now
                // that a write made room.
                continue;
            }
            if self.link.poll_driver(cx, self.blocked).is_ready() {
                self.commands_pending = true;
                continue;
            }
            if self.broadcasts()
                && let Some(outbox) = self.link.shared().outbox()
                && outbox.poll_signal(cx).is_ready()
            {
                self.outbox_pending = true;
                continue;
            }
            let core_deadline = self.conn.poll_timeout().map(Instant::from_std);
            let deadline = match (core_deadline, self.release_at) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            timer.as_mut().arm(deadline);
            if timer.as_mut().poll_fired(cx) {
                let now = Instant::now();
                if self.release_at.is_some_and(|d| d <= now) {
                    self.release_at = None;
                    self.release_idle_buffers();
                }
                match self.conn.handle_timeout(now.into_std()) {
                    Some(Timeout::Close) => {
                        tracing::debug!("close timeout: the peer did not answer the close frame");
                        self.finish(timer);
                        return Poll::Ready(());
                    }
                    Some(Timeout::Keepalive) => {
                        tracing::debug!("keepalive ping timed out");
                        self.failure = Some(Box::new(Error::KeepaliveTimeout));
                        self.link.shared().record_initiated_close();
                        self.conn.poll_transmit(&mut self.work.out().tail);
                        self.enter(Phase::Flush, timer);
                        return Poll::Ready(());
                    }
                    _ => {}
                }
                if let Some(rtt) = self.conn.rtt() {
                    self.link.shared().record_rtt(rtt);
                }
                continue;
            }
            if let Some(signal) = shutdown.as_mut().as_pin_mut()
                && signal.poll(cx).is_ready()
            {
                shutdown.set(None);
                let frame = CloseFrame::new(CloseCode::GOING_AWAY, "shutting down");
                let _ = self.conn.close(Some(frame), &mut self.work.out().tail);
                continue;
            }
            return Poll::Pending;
        }
    }

    /// Decodes received bytes into messages for the application, answering
    /// pings and noting pongs, while its queue has room. Returns whether
    /// messages were handed over.
    fn decode(&mut self) -> bool {
        self.blocked = false;
        // Nothing received, nothing to decode (and no lock to take for
        // room): the core holds no partial frame's bytes outside this
        // buffer.
        if self.conn.state() == State::Closed || self.conn.read_buffer().is_empty() {
            return false;
        }
        let mut free = if D::INLINE {
            // The handler is called for each message: no queue to fill.
            usize::MAX
        } else if self.free > 0 && self.incoming_open {
            self.free as usize
        } else {
            match self.link.room() {
                Room::Free(free) if self.incoming_open => free,
                // Nobody is reading: messages are decoded and dropped.
                _ => {
                    self.incoming_open = false;
                    usize::MAX
                }
            }
        };
        while self.conn.state() != State::Closed {
            if free == 0 {
                self.blocked = true;
                break;
            }
            let deliver = match self.conn.poll_message() {
                Ok(Some(message @ (Message::Text(_) | Message::Binary(_)))) => {
                    tracing::trace!(len = payload_len(&message), "received message");
                    Some(message)
                }
                Ok(Some(Message::Pong(payload))) => {
                    // The core matched it against the latest keepalive
                    // ping; its round trip is measured at the next timer.
                    tracing::trace!(len = payload.len(), "received pong");
                    self.settings
                        .control_frames
                        .then_some(Message::Pong(payload))
                }
                Ok(Some(Message::Ping(payload))) => {
                    tracing::trace!(len = payload.len(), "received ping");
                    // Answer each ping of a burst while the output has room;
                    // past that, the core keeps only the latest pong owed.
                    if self.work.out_len() < COALESCE_LIMIT {
                        self.conn.poll_transmit(&mut self.work.out().tail);
                    }
                    self.settings
                        .control_frames
                        .then_some(Message::Ping(payload))
                }
                Ok(Some(Message::Close(frame))) => {
                    tracing::debug!(?frame, "received close");
                    if let Some(frame) = frame {
                        self.link.shared().record_close(frame);
                    }
                    None
                }
                Ok(None) => break,
                Err(error) => {
                    tracing::debug!(%error, "protocol error");
                    self.failure = Some(Box::new(error.into()));
                    break;
                }
            };
            if D::INLINE {
                if let Some(message) = deliver {
                    let out = self.work.out();
                    let reply = &mut Reply {
                        conn: &mut self.conn,
                        out,
                    };
                    self.deliver.handle(message, reply);
                }
                if self.work.out_len() >= COALESCE_LIMIT {
                    // The handler's answers are not written as fast as it
                    // makes them: the rest of the input waits in the read
                    // buffer (and the socket is not read) until they are.
                    break;
                }
            } else if let Some(message) = deliver.filter(|_| self.incoming_open) {
                self.work.get().received.push_back(Ok(message));
                free -= 1;
            }
            if self.conn.read_buffer().is_empty() {
                // The read ended on a frame's end, as it mostly does: the
                // core would only find that it needs more.
                break;
            }
        }
        let Some(buffers) = &mut self.work.0 else {
            return false;
        };
        if D::INLINE {
            return false;
        }
        let delivered = !buffers.received.is_empty();
        self.link_used |= delivered;
        let room = self.link.deliver(&mut buffers.received);
        self.note_room(room.unwrap_or(Room::Free(free)));
        delivered
    }

    /// Keeps what the driver learned of the receiver's room.
    fn note_room(&mut self, room: Room) {
        self.free = match room {
            Room::Free(free) => u32::try_from(free).unwrap_or(u32::MAX),
            Room::Gone => {
                self.incoming_open = false;
                0
            }
        };
    }

    /// Applies the commands taken from the link, in order.
    fn apply_commands(&mut self) {
        let Some(buffers) = &mut self.work.0 else {
            return;
        };
        while let Some(command) = buffers.commands.pop_front() {
            apply(&mut self.conn, command, &mut buffers.out);
        }
    }

    fn broadcasts(&self) -> bool {
        self.conn.role() == Role::Server && self.conn.state() == State::Open
    }

    /// Moves broadcast frames into the output while it has room.
    ///
    /// # Errors
    ///
    /// The close code, once the connection has been evicted.
    fn take_broadcasts(&mut self) -> Result<(), CloseCode> {
        if !self.broadcasts() || !self.outbox_pending {
            return Ok(());
        }
        let Some(outbox) = self.link.shared().outbox() else {
            // Not made yet: the driver is woken when it is.
            self.outbox_pending = false;
            return Ok(());
        };
        let room = COALESCE_LIMIT.saturating_sub(self.work.out_len());
        let work = &mut self.work;
        let more = outbox.drain(room, |piece| match piece {
            Piece::Shared(frame) => work.out().push_shared(frame),
            Piece::Run(run) => work.out().take_run(run),
        })?;
        self.outbox_pending = more;
        Ok(())
    }

    /// Writes `out` if it holds anything, and reads if `read` allows:
    /// returns what a write did (advanced past already) unless it emptied
    /// `out`, and then what a read did, if anything.
    ///
    /// A connection that gave its read buffer back waits for readiness
    /// without one, and allocates one only when bytes arrive.
    fn poll_io(&mut self, read: bool, cx: &mut Context<'_>) -> Poll<io::Result<Io>> {
        if let Some(buffers) = &mut self.work.0
            && !buffers.out.is_empty()
            && let Poll::Ready(written) = buffers.out.poll_write(&mut self.stream, cx)
        {
            match written {
                Ok(n) if n > 0 => {
                    buffers.out.advance(n);
                    // Once everything is written, go on to read in the
                    // same pass: the pass before it is spent.
                    if !buffers.out.is_empty() || !read {
                        return Poll::Ready(Ok(Io::Wrote(n)));
                    }
                }
                other => return Poll::Ready(other.map(Io::Wrote)),
            }
        }
        if !read {
            return Poll::Pending;
        }
        // A connection that gave its buffer back waits for readiness
        // without one; one that holds a buffer reads straight away (a read
        // costs no call while the socket is known not to be readable).
        let bufferless = self.conn.read_buffer().capacity() == 0;
        if bufferless {
            match self.stream.poll_read_ready(cx) {
                Poll::Pending => {
                    self.note_idle();
                    return Poll::Pending;
                }
                Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                Poll::Ready(Ok(())) => {}
            }
        }
        // Room for more than the rest of the frame: a read that then comes
        // back short shows the socket drained, and the transport clears its
        // readiness (Tokio's does) instead of the next read finding out with
        // a failed call.
        let wanted = self.conn.bytes_wanted();
        let buf = self.conn.read_buffer();
        let spare = buf.capacity() - buf.len();
        if spare < READ_MIN || spare <= wanted {
            buf.reserve((wanted + READ_CHUNK).min(READ_MAX));
        }
        let read = pin!(self.stream.read_buf(buf)).poll(cx).map_ok(Io::Read);
        if read.is_pending() {
            if bufferless {
                // Readiness was stale (as it is after the handshake's
                // reads): the transport has now cleared it, and the next
                // poll waits for it without a buffer.
                self.conn.release_idle_buffers();
            } else {
                self.note_idle();
            }
        }
        read
    }

    /// The socket has nothing to read: the buffers held are given back
    /// after [`RELEASE_AFTER`], unless traffic resumes first.
    fn note_idle(&mut self) {
        if self.release_at.is_none()
            && self.conn.read_buffer().is_empty()
            && (self.link_used || self.conn.read_buffer().capacity() > 0 || self.work.is_made())
        {
            self.release_at = Some(Instant::now() + RELEASE_AFTER);
        }
    }

    /// Gives back the read buffer if it is empty, and the link's buffers and
    /// the batches' if a message crossed since the last time.
    fn release_idle_buffers(&mut self) {
        self.conn.release_idle_buffers();
        self.work.release_idle();
        if let Some(outbox) = self.link.shared().outbox() {
            outbox.release_idle();
        }
        if std::mem::take(&mut self.link_used) {
            self.link.release_idle_buffers();
        }
    }

    /// The application's time after a protocol error (see [`Phase::Grace`]).
    fn poll_grace(&mut self, cx: &mut Context<'_>, mut timer: Pin<&mut Timer>) -> Poll<()> {
        while !self.link.drained() {
            if self.link.poll_driver(cx, false).is_pending() {
                if !timer.as_mut().poll_fired(cx) {
                    return Poll::Pending;
                }
                break;
            }
        }
        self.incoming_open = false;
        self.link
            .take_commands(|| &mut self.work.get().commands, usize::MAX);
        self.apply_commands();
        timer.arm(None);
        self.phase = Phase::Open;
        Poll::Ready(())
    }

    /// Moves to one of the closing phases, each bounded by a close timeout
    /// of its own.
    fn enter(&mut self, phase: Phase, timer: Pin<&mut Timer>) {
        // A close timeout beyond what the clock holds means no deadline.
        timer.arm(Instant::now().checked_add(self.conn.config().close_timeout));
        self.phase = phase;
    }

    /// Writes everything, within the close timeout, then finishes.
    fn poll_flush(&mut self, cx: &mut Context<'_>, mut timer: Pin<&mut Timer>) -> Poll<()> {
        if let Some(buffers) = &mut self.work.0 {
            let out = &mut buffers.out;
            while !out.is_empty() {
                match out.poll_write(&mut self.stream, cx) {
                    Poll::Ready(Ok(0) | Err(_)) => break,
                    Poll::Ready(Ok(n)) => out.advance(n),
                    Poll::Pending if timer.as_mut().poll_fired(cx) => break,
                    Poll::Pending => return Poll::Pending,
                }
            }
            out.clear();
        }
        self.finish(timer);
        Poll::Ready(())
    }

    /// The connection is over: no more sends or broadcasts, and the
    /// transport is shut down.
    fn finish(&mut self, timer: Pin<&mut Timer>) {
        self.link.shared().close_outbox();
        self.link.close_sends();
        tracing::debug!(code = %self.conn.close_code(), "connection closed");
        // RFC 6455 section 7.1.1: "the underlying TCP connection, in most
        // normal cases, SHOULD be closed first by the server, so that it
        // holds the TIME_WAIT state and not the client". After a clean
        // closing handshake a client waits for the server's end of stream;
        // anyone else closes now.
        let client_waits = self.conn.role() == Role::Client
            && !self.eof
            && self.conn.close_received().is_some()
            && self.failure.is_none();
        if client_waits {
            // The application's stream ends here: `close().await` returns
            // once the closing handshake is done, not after the wait for
            // the server.
            self.end_link();
            self.enter(Phase::AwaitEof, timer);
        } else {
            self.enter(Phase::Shutdown, timer);
        }
    }

    /// Hands the application the failure, if any, and ends its stream.
    fn end_link(&mut self) {
        if D::INLINE {
            let failure = self.failure.take();
            self.deliver.end(failure.as_deref());
        } else if let Some(failure) = self.failure.take()
            && self.incoming_open
        {
            self.deliver_failure(*failure);
        }
        self.link.shut();
    }

    /// Hands the application the connection's failure, after the messages
    /// delivered before it.
    fn deliver_failure(&mut self, failure: Error) {
        let received = &mut self.work.get().received;
        received.push_back(Err(failure));
        if let Some(room) = self.link.deliver(received) {
            self.note_room(room);
        }
    }

    /// Reads and discards until the server closes, or the timer.
    fn poll_await_eof(&mut self, cx: &mut Context<'_>, mut timer: Pin<&mut Timer>) -> Poll<()> {
        let mut scratch = [0u8; 512];
        loop {
            let mut buf = ReadBuf::new(&mut scratch);
            match Pin::new(&mut self.stream).poll_read(cx, &mut buf) {
                Poll::Ready(Ok(())) if !buf.filled().is_empty() => {}
                Poll::Ready(_) => break,
                Poll::Pending if timer.as_mut().poll_fired(cx) => break,
                Poll::Pending => return Poll::Pending,
            }
        }
        self.enter(Phase::Shutdown, timer);
        Poll::Ready(())
    }

    /// Shuts the transport down, within the timer; then the driver is done.
    fn poll_shutdown(&mut self, cx: &mut Context<'_>, mut timer: Pin<&mut Timer>) -> Poll<()> {
        if Pin::new(&mut self.stream).poll_shutdown(cx).is_pending()
            && !timer.as_mut().poll_fired(cx)
        {
            return Poll::Pending;
        }
        self.end_link();
        self.phase = Phase::Done;
        Poll::Ready(())
    }
}

/// Encodes `message` into `output`; a large payload is queued as it is,
/// after its header, instead of copied.
#[inline]
pub(crate) fn send_into(
    conn: &mut Connection,
    message: &Message,
    output: &mut Output,
) -> Result<(), ws_proto::SendError> {
    tracing::trace!(len = payload_len(message), "sending message");
    if let Some(payload) = conn.send_vectored(message, &mut output.tail, SHARE_PAYLOAD_MIN)? {
        output.push_shared(payload);
    }
    Ok(())
}

/// Applies one command.
fn apply(conn: &mut Connection, command: Command, output: &mut Output) {
    match command {
        Command::Send(message, _) => {
            // A send after close is dropped: the application learns it from
            // its next send, which finds the queue closed.
            let _ = send_into(conn, &message, output);
        }
        Command::Close(frame) => {
            tracing::debug!(?frame, "closing");
            let _ = conn.close(frame, &mut output.tail);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::future::poll_fn;

    use futures_util::StreamExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use ws_proto::{Config, apply_mask};

    use super::*;
    use crate::wake_count::WakeCount;

    /// Runs `work` while polling `driver` alongside it, as a server's task
    /// joins the two.
    async fn beside<F: Future>(mut driver: Pin<&mut impl Future>, work: F) -> F::Output {
        let mut work = pin!(work);
        poll_fn(|cx| {
            let _ = driver.as_mut().poll(cx);
            work.as_mut().poll(cx)
        })
        .await
    }

    /// What the driver holds in buffers: the read buffer, the output's (if
    /// its working buffers are made), and the link's queues.
    fn held<F>(driver: Pin<&mut Driver<TcpStream, F, ToLink>>) -> (usize, Option<usize>, bool) {
        let state = driver.project().state;
        let read = state.conn.read_buffer().capacity();
        let output = state.work.0.as_ref().map(|work| work.out.tail.capacity());
        (read, output, state.link_used)
    }

    /// A server connection over loopback: the client's socket, the
    /// application's side and the driver (never told to shut down).
    async fn server_connection(
        settings: Settings,
        config: Config,
    ) -> (
        TcpStream,
        WebSocket,
        Driver<TcpStream, std::future::Pending<()>, ToLink>,
    ) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (stream, _) = listener.accept().await.unwrap();
        let conn = Connection::new(Role::Server, config);
        let handshake = Handshake::new(http::Request::new(()));
        let settings = Arc::new(settings);
        let (ws, driver) = open(stream, conn, handshake, &settings, std::future::pending());
        (client, ws, driver)
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_gives_its_buffers_back_half_a_second_after_going_idle() {
        let (mut client, mut ws, driver) =
            server_connection(Settings::default(), Config::default()).await;
        let mut driver = pin!(driver);

        // A masked 5-byte text frame, echoed by the application.
        let key = [1, 2, 3, 4];
        let mut payload = *b"hello";
        apply_mask(&mut payload, key);
        let mut frame = vec![0x81, 0x85, 1, 2, 3, 4];
        frame.extend(payload);
        client.write_all(&frame).await.unwrap();
        let message = beside(driver.as_mut(), ws.next()).await.unwrap().unwrap();
        beside(driver.as_mut(), ws.send(message)).await.unwrap();
        let mut echo = [0u8; 7];
        beside(driver.as_mut(), client.read_exact(&mut echo))
            .await
            .unwrap();
        assert_eq!(&echo, b"\x81\x05hello");

        let (read, output, link) = held(driver.as_mut());
        assert!(
            read > 0 && output > Some(0) && link,
            "buffers kept while busy"
        );
        beside(driver.as_mut(), tokio::time::sleep(RELEASE_AFTER / 2)).await;
        let (read, output, _) = held(driver.as_mut());
        assert!(
            read > 0 && output > Some(0),
            "still kept: traffic may resume"
        );
        beside(driver.as_mut(), tokio::time::sleep(RELEASE_AFTER)).await;
        assert_eq!(held(driver.as_mut()), (0, None, false), "given back");

        // And the connection still works, from a buffer allocated anew.
        client.write_all(&frame).await.unwrap();
        let message = beside(driver.as_mut(), ws.next()).await.unwrap().unwrap();
        assert_eq!(message.as_text(), Some("hello"));
    }

    /// A masked text frame of `text`, as a client sends it.
    fn client_text(text: &str) -> Vec<u8> {
        let key = [1, 2, 3, 4];
        let mut payload = text.as_bytes().to_vec();
        apply_mask(&mut payload, key);
        let mut frame = vec![0x81, 0x80 | payload.len() as u8];
        frame.extend(key);
        frame.extend(payload);
        frame
    }

    #[tokio::test(start_paused = true)]
    async fn the_driver_queues_no_more_than_the_incoming_bound_for_an_application_that_does_not_read()
     {
        let settings = Settings::default().incoming_queue(4);
        let (mut client, mut ws, driver) = server_connection(settings, Config::default()).await;
        let mut driver = pin!(driver);
        let step = Duration::from_millis(10);
        let mut batch = Vec::new();

        // Three taken: the queue has room for four again, which the driver
        // learns only as it queues more.
        for n in 0..3 {
            client
                .write_all(&client_text(&n.to_string()))
                .await
                .unwrap();
        }
        beside(driver.as_mut(), tokio::time::sleep(step)).await;
        assert_eq!(ws.recv_many(&mut batch, 100).await.unwrap(), 3);

        // Twenty more, in one write, while the application reads nothing.
        let burst: Vec<u8> = (3..23).flat_map(|n| client_text(&n.to_string())).collect();
        client.write_all(&burst).await.unwrap();
        beside(driver.as_mut(), tokio::time::sleep(step)).await;
        batch.clear();
        // Taken without polling the driver: only what it had queued.
        assert_eq!(ws.recv_many(&mut batch, 100).await.unwrap(), 4, "the bound");

        // The rest follows, in order, once the driver runs again.
        while batch.len() < 20 {
            let limit = 100;
            beside(driver.as_mut(), ws.recv_many(&mut batch, limit))
                .await
                .unwrap();
        }
        let texts: Vec<_> = batch.iter().filter_map(Message::as_text).collect();
        let expected: Vec<_> = (3..23).map(|n| n.to_string()).collect();
        assert_eq!(texts, expected);
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_connection_makes_no_buffers_and_a_keepalive_ping_gives_them_back() {
        let interval = Duration::from_secs(5);
        let config = Config::default()
            .ping_interval(Some(interval))
            .ping_timeout(None);
        let (mut client, _ws, driver) = server_connection(Settings::default(), config).await;
        let mut driver = pin!(driver);

        beside(driver.as_mut(), tokio::time::sleep(interval / 2)).await;
        assert_eq!(held(driver.as_mut()), (0, None, false), "nothing made");

        // The keepalive ping is written from working buffers made for it...
        beside(driver.as_mut(), tokio::time::sleep(interval / 2)).await;
        let mut ping = [0u8; 10];
        beside(driver.as_mut(), client.read_exact(&mut ping))
            .await
            .unwrap();
        assert_eq!(ping[..2], [0x89, 8], "a ping with an 8-byte payload");
        assert!(held(driver.as_mut()).1.is_some(), "made for the ping");
        // ...which go once the socket has been idle for a while.
        beside(driver.as_mut(), tokio::time::sleep(RELEASE_AFTER * 2)).await;
        assert_eq!(held(driver.as_mut()), (0, None, false), "given back");
    }

    #[tokio::test(start_paused = true)]
    async fn the_timer_fires_for_the_waker_it_was_last_polled_with() {
        let mut timer = pin!(Timer::new());
        let (first, second) = (WakeCount::new(), WakeCount::new());
        let (first_waker, second_waker) = (first.waker(), second.waker());
        let step = Duration::from_millis(100);
        timer.as_mut().arm(Some(Instant::now() + step));
        // Asked again and again with one waker: not fired.
        for _ in 0..3 {
            assert!(
                !timer
                    .as_mut()
                    .poll_fired(&mut Context::from_waker(&first_waker))
            );
        }
        // Polled with another waker: that one is registered instead.
        assert!(
            !timer
                .as_mut()
                .poll_fired(&mut Context::from_waker(&second_waker))
        );
        tokio::time::advance(step).await;
        assert_eq!((first.count(), second.count()), (0, 1), "the last waker");
        assert!(
            timer
                .as_mut()
                .poll_fired(&mut Context::from_waker(&second_waker))
        );
        assert!(
            !timer
                .as_mut()
                .poll_fired(&mut Context::from_waker(&second_waker)),
            "disarmed once fired"
        );

        // Armed again, with the same waker as before: it fires again.
        timer.as_mut().arm(Some(Instant::now() + step));
        assert!(
            !timer
                .as_mut()
                .poll_fired(&mut Context::from_waker(&second_waker))
        );
        tokio::time::advance(step).await;
        assert_eq!(second.count(), 2);
        assert!(
            timer
                .as_mut()
                .poll_fired(&mut Context::from_waker(&second_waker))
        );
    }
}

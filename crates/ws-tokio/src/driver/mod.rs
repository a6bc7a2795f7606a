//! The connection driver: one loop that moves bytes between a transport and
//! the `ws-proto` core, and messages between the core and the application.

use std::future::Future;
use std::io;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::time::Instant;
use ws_proto::{CloseCode, CloseFrame, Connection, Message, Role, State};

mod closing;
mod deadlines;
mod deliver;
mod work;

use work::Work;

use crate::error::Error;
use crate::handshake::Handshake;
use crate::inline::MessageHandler;

use self::deadlines::Deadlines;
use self::deliver::{Deliver, Inline, ToLink};
use crate::output::{Output, send_into};
use crate::session::{DriverLink, Session};
use crate::settings::Settings;
use crate::sync::{Command, Link, Room, payload_len};
use crate::timer::Timer;
use crate::transport::Transport;
use crate::websocket::WebSocket;

/// Bytes reserved in the read buffer before a read.
const READ_CHUNK: usize = 8 * 1024;
/// The most reserved for the rest of a frame beyond what has arrived of
/// it, before more arrives (see `poll_io`).
const READ_AHEAD: usize = 64 * 1024;
/// Below this much room, the read buffer grows (or is compacted) first.
const READ_MIN: usize = 1024;
/// The most reserved for one read when a large frame is arriving (the
/// buffer grows to at most five times what has arrived, up to this much
/// at a time).
const READ_MAX: usize = 1 << 20;
/// I/O passes in a row, within one poll, after which the deadlines are
/// looked at even though the socket is still busy.
const DEADLINE_PASSES: u32 = 32;
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
/// The handler answers through a [`Reply`](crate::Reply), straight into the output. The
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
fn shared_for(handshake: Handshake, conn: &Connection, settings: &Settings) -> Arc<Session> {
    let link = Link::new(
        settings.incoming_queue.max(1),
        settings.write_high_water.max(1),
    );
    Arc::new(Session::new(link, handshake, conn))
}

/// What one poll of the transport did.
enum Io {
    Wrote(usize),
    Read(usize),
}

/// The application's command queue, as the driver last found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Commands {
    /// Commands may be waiting: a push woke the driver, or its last take
    /// left some behind (a push into a non-empty queue wakes nobody).
    Waiting,
    /// Every command was taken; the next push wakes the driver.
    Taken,
    /// Every sender is gone: nothing more will come.
    Gone,
}

impl Commands {
    /// A push woke the driver.
    fn notified(&mut self) {
        if *self == Self::Taken {
            *self = Self::Waiting;
        }
    }
}

/// The application's side of received messages, as the driver knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Incoming {
    /// Messages are handed over. `free` is the room in the receiver's queue
    /// as of the last look under its lock: a lower bound until the driver
    /// queues more, since only the receiver takes from it. While above
    /// zero, decoding needs no lock to find room.
    Open { free: u32 },
    /// Nobody takes messages any more (the receiver is gone, or was given
    /// the error that ended the connection): decoded messages are dropped.
    Shut,
}

impl Incoming {
    fn is_open(self) -> bool {
        self != Self::Shut
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
        state: DriverState<S, D>,
    }
}

/// Everything the driver holds apart from its timer.
struct DriverState<S, D> {
    stream: S,
    conn: Connection,
    /// Where decoded messages go: a zero-sized marker for the link, or the
    /// application's handler.
    deliver: D,
    link: DriverLink,
    /// Session with every connection started with the same settings.
    settings: Arc<Settings>,
    /// The output, and the messages received and commands taken, moved
    /// across the link in batches.
    work: Work,
    /// Boxed: a connection spends nearly all its life without one.
    failure: Option<Box<Error>>,
    phase: Phase,
    eof: bool,
    /// The application's command queue, as far as the driver knows.
    commands: Commands,
    /// Whether the application still takes received messages, and how
    /// many more fit.
    incoming: Incoming,
    /// The receiver's queue is full: the socket is not read.
    blocked: bool,
    /// Whether anything crossed the link since its buffers were last given
    /// back: only then is there something to give back.
    link_used: bool,
    /// Frames may be waiting in the feed.
    feed_pending: bool,
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
        state: DriverState {
            stream,
            conn,
            deliver,
            link,
            settings,
            work: Work::default(),
            failure: None,
            phase: Phase::Open,
            eof: false,
            commands: Commands::Waiting,
            incoming: Incoming::Open { free: 0 },
            blocked: false,
            link_used: false,
            feed_pending: true,
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

impl<S: Transport, D: Deliver> DriverState<S, D> {
    /// The open connection: decode, hand over, gather, write, wait.
    fn poll_open<F: Future<Output = ()>>(
        &mut self,
        cx: &mut Context<'_>,
        mut timer: Pin<&mut Timer>,
        mut shutdown: Pin<&mut Option<F>>,
    ) -> Poll<()> {
        let mut io_passes = 0u32;
        loop {
            // 1. Decode what was received, as far as the application keeps up.
            let delivered = self.decode();
            if self.conn.state() == State::Closed && D::hand_over_failure(self) {
                // The peer broke the protocol. Let the application answer the
                // messages it was given before the error: it has the error
                // after them, and once it has taken everything (so its
                // answers are queued), they go ahead of the failure's close
                // frame.
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
                self.commands.notified();
            }
            if self.commands == Commands::Waiting && self.work.out_len() < COALESCE_LIMIT {
                let room = COALESCE_LIMIT - self.work.out_len();
                let taken = self
                    .link
                    .take_commands(|| &mut self.work.get().commands, room);
                self.link_used |= taken.some;
                self.apply_commands();
                self.commands = if taken.senders_gone {
                    D::senders_gone(self);
                    Commands::Gone
                } else if taken.more {
                    Commands::Waiting
                } else {
                    Commands::Taken
                };
            }
            if self.conn.has_pending_output() {
                self.conn.poll_transmit(&mut self.work.out().tail);
            }
            // 2b. Take broadcast frames while the output has room.
            if let Err(code) = self.take_broadcasts() {
                // A slow consumer to disconnect: what its feed still holds
                // is discarded (the feed did), and the close frame goes
                // after what is already in the output, the frame being
                // written included: cut short, its payload would swallow
                // the close frame (issue 25, item 8). The output is
                // bounded, and the flush by the close timeout.
                tracing::debug!(%code, "slow consumer: disconnecting");
                let frame = CloseFrame::new(code, "slow consumer");
                let _ = self.conn.close(Some(frame), &mut self.work.out().tail);
                self.link.shared().record_initiated_close();
                self.failure = Some(Box::new(Error::Evicted(code)));
                self.enter(Phase::Flush, timer);
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
            // While the application's queue is full the socket is not read,
            // and the peer's pong may be among the bytes left there: the
            // keepalive does not fail a healthy peer for a slow application
            // (issue 25, item 13).
            self.conn.hold_reading(self.blocked);
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
                // The deadlines and the shutdown are looked at every so
                // many passes too, not only once the socket has nothing: a
                // peer that keeps sending (while we wait for its close
                // frame, say) must not starve them (issue 25, item 5). A
                // Tokio socket stops a busy task once its budget is spent,
                // and the timer is read without spending any; a transport
                // that never says Pending is caught here.
                io_passes = io_passes.wrapping_add(1);
                if io_passes.is_multiple_of(DEADLINE_PASSES)
                    && self.poll_deadlines(cx, timer.as_mut(), shutdown.as_mut())
                        == Deadlines::Ended
                {
                    return Poll::Ready(());
                }
                continue;
            }
            if self.commands == Commands::Waiting && self.work.out_len() < COALESCE_LIMIT {
                // Commands were left in the queue and there is room for
                // them now: further pushes will not wake the driver, so it
                // takes them before it sleeps.
                continue;
            }
            if self.feed_pending && self.broadcasts() && self.work.out_len() < COALESCE_LIMIT {
                // Likewise for frames left in the feed, now
                // that a write made room.
                continue;
            }
            if self.link.poll_driver(cx, self.blocked).is_ready() {
                self.commands.notified();
                continue;
            }
            if self.broadcasts()
                && let Some((_, doorbell)) = self.link.shared().feed()
                && doorbell.poll(cx).is_ready()
            {
                self.feed_pending = true;
                continue;
            }
            match self.poll_deadlines(cx, timer.as_mut(), shutdown.as_mut()) {
                Deadlines::Quiet => {}
                Deadlines::Acted => continue,
                Deadlines::Ended => return Poll::Ready(()),
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
        let mut free = D::room(self);
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
            if D::take(self, deliver, &mut free) {
                break;
            }
            if self.conn.read_buffer().is_empty() {
                // The read ended on a frame's end, as it mostly does: the
                // core would only find that it needs more.
                break;
            }
        }
        D::hand_over(self, free)
    }

    /// Keeps what the driver learned of the receiver's room.
    fn note_room(&mut self, room: Room) {
        if self.incoming.is_open() {
            self.incoming = match room {
                Room::Free(free) => Incoming::Open {
                    free: u32::try_from(free).unwrap_or(u32::MAX),
                },
                Room::Gone => Incoming::Shut,
            };
        }
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

    /// Moves frames from the feed into the output while it has room.
    ///
    /// # Errors
    ///
    /// The close code, once the feed evicted the connection.
    fn take_broadcasts(&mut self) -> Result<(), CloseCode> {
        if !self.broadcasts() || !self.feed_pending {
            return Ok(());
        }
        let Some((feed, _)) = self.link.shared().feed() else {
            // None attached yet: the driver is woken when one is.
            self.feed_pending = false;
            return Ok(());
        };
        let room = COALESCE_LIMIT.saturating_sub(self.work.out_len());
        self.feed_pending = feed.drain(room, self.work.out())?;
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
        //
        // The room follows the bytes that have arrived, not what a frame's
        // header announces: at most `READ_AHEAD` beyond them, or four
        // times what the buffer holds once that is more. A header
        // announcing 1 MiB followed by a stall, or by a trickle, costs
        // 72 KiB, not 1 MiB; a frame of up to 64 KiB arrives into one
        // allocation, and a larger one grows it in few steps, each copying
        // only what arrived before it.
        let wanted = self.conn.bytes_wanted();
        let buf = self.conn.read_buffer();
        let spare = buf.capacity() - buf.len();
        let room = (wanted.min((4 * buf.len()).max(READ_AHEAD)) + READ_CHUNK).min(READ_MAX);
        if spare < READ_MIN || (spare <= wanted && spare + READ_CHUNK < room) {
            buf.reserve(room);
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
        if let Some((feed, _)) = self.link.shared().feed() {
            feed.release_idle();
        }
        if std::mem::take(&mut self.link_used) {
            self.link.release_idle_buffers();
        }
    }
}

/// Applies one command.
fn apply(conn: &mut Connection, command: Command, output: &mut Output) {
    match command {
        Command::Send(message, _) => {
            // A send after close is dropped: the application learns it from
            // its next send, which finds the queue closed.
            let _ = send_into(conn, &message, output);
        }
        Command::SendUncompressed(message, _) => {
            let _ = conn.send_uncompressed(&message, &mut output.tail);
        }
        Command::Close(frame) => {
            tracing::debug!(?frame, "closing");
            let _ = conn.close(frame, &mut output.tail);
        }
    }
}

#[cfg(test)]
mod tests;

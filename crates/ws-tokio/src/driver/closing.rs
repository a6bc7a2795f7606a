//! The driver's phases after the open connection: the application's grace
//! after a protocol error, the final flush, a client's wait for the server
//! to close first, and the transport's shutdown, each bounded by the close
//! timeout.

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::ReadBuf;
use tokio::time::Instant;
use ws_proto::Role;

use super::{Deliver, DriverState, Incoming, Phase};
use crate::error::Error;
use crate::timer::Timer;
use crate::transport::Transport;

impl<S: Transport, D: Deliver> DriverState<S, D> {
    /// The application's time after a protocol error (see [`Phase::Grace`]).
    pub(super) fn poll_grace(
        &mut self,
        cx: &mut Context<'_>,
        mut timer: Pin<&mut Timer>,
    ) -> Poll<()> {
        while !self.link.drained() {
            if self.link.poll_driver(cx, false).is_pending() {
                if !timer.as_mut().poll_fired(cx) {
                    return Poll::Pending;
                }
                break;
            }
        }
        self.incoming = Incoming::Shut;
        self.link
            .take_commands(|| &mut self.work.get().commands, usize::MAX);
        self.apply_commands();
        timer.arm(None);
        self.phase = Phase::Open;
        Poll::Ready(())
    }

    /// Moves to one of the closing phases, each bounded by a close timeout
    /// of its own.
    pub(super) fn enter(&mut self, phase: Phase, timer: Pin<&mut Timer>) {
        // A close timeout beyond what the clock holds means no deadline.
        timer.arm(Instant::now().checked_add(self.conn.config().close_timeout));
        self.phase = phase;
    }

    /// Writes everything, within the close timeout, then finishes.
    pub(super) fn poll_flush(
        &mut self,
        cx: &mut Context<'_>,
        mut timer: Pin<&mut Timer>,
    ) -> Poll<()> {
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
    pub(super) fn finish(&mut self, timer: Pin<&mut Timer>) {
        self.link.shared().close_feed();
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
    pub(super) fn end_link(&mut self) {
        D::end(self);
        self.link.shut();
    }

    /// Hands the application the connection's failure, after the messages
    /// delivered before it.
    pub(super) fn deliver_failure(&mut self, failure: Error) {
        let received = &mut self.work.get().received;
        received.push_back(Err(failure));
        if let Some(room) = self.link.deliver(received) {
            self.note_room(room);
        }
    }

    /// Reads and discards until the server closes, or the timer.
    pub(super) fn poll_await_eof(
        &mut self,
        cx: &mut Context<'_>,
        mut timer: Pin<&mut Timer>,
    ) -> Poll<()> {
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
    pub(super) fn poll_shutdown(
        &mut self,
        cx: &mut Context<'_>,
        mut timer: Pin<&mut Timer>,
    ) -> Poll<()> {
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

//! The open connection's deadlines: the core's (keepalive, close), the
//! release of idle buffers, and the server's shutdown, looked at on every
//! pass of the run loop.

use std::future::Future;
use std::pin::Pin;
use std::task::Context;

use tokio::time::Instant;
use ws_proto::{CloseCode, CloseFrame, Timeout};

use super::{Deliver, DriverState, Phase};
use crate::error::Error;
use crate::timer::Timer;
use crate::transport::Transport;

/// What [`DriverState::poll_deadlines`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Deadlines {
    /// Nothing was due.
    Quiet,
    /// Something was due and was done: look at everything again.
    Acted,
    /// The open connection is over: the driver moved to another phase.
    Ended,
}

impl<S: Transport, D: Deliver> DriverState<S, D> {
    /// Fires what is due: the core's deadlines (keepalive, close), the
    /// release of idle buffers, and the server's shutdown. Each is an
    /// atomic load or two while nothing is due.
    pub(super) fn poll_deadlines<F: Future<Output = ()>>(
        &mut self,
        cx: &mut Context<'_>,
        mut timer: Pin<&mut Timer>,
        mut shutdown: Pin<&mut Option<F>>,
    ) -> Deadlines {
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
                    return Deadlines::Ended;
                }
                Some(Timeout::Keepalive) => {
                    tracing::debug!("keepalive ping timed out");
                    self.failure = Some(Box::new(Error::KeepaliveTimeout));
                    self.link.shared().record_initiated_close();
                    self.conn.poll_transmit(&mut self.work.out().tail);
                    self.enter(Phase::Flush, timer);
                    return Deadlines::Ended;
                }
                _ => {}
            }
            if let Some(rtt) = self.conn.rtt() {
                self.link.shared().record_rtt(rtt);
            }
            return Deadlines::Acted;
        }
        if let Some(signal) = shutdown.as_mut().as_pin_mut()
            && signal.poll(cx).is_ready()
        {
            shutdown.set(None);
            let frame = CloseFrame::new(CloseCode::GOING_AWAY, "shutting down");
            let _ = self.conn.close(Some(frame), &mut self.work.out().tail);
            return Deadlines::Acted;
        }
        Deadlines::Quiet
    }
}

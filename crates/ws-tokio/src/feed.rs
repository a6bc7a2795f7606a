//! Frames queued for a server connection by others: the one input through
//! which a broadcast (`ws_server::Hub`'s per-connection queue) reaches a
//! connection's driver, written between the connection's own messages.
//!
//! ```text
//!  publisher ──push──▶ your Feed ──ring──▶ Doorbell ──wakes──▶ driver
//!                          ▲                                     │
//!                          └──────── drain(budget, sink) ◀───────┘
//! ```
//!
//! The feed keeps its frames and its bound; the driver only asks it for
//! bytes when its output has room, so a recipient that stops reading costs
//! what the feed allows, never more.

use std::any::Any;
use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use ws_proto::CloseCode;

use crate::output::Output;
use crate::sync::Signal;

/// A queue of ready-made server frames that a connection's driver writes
/// between its own messages; attach one with
/// [`WebSocket::attach_feed`](crate::WebSocket::attach_feed).
///
/// The driver calls these methods from its task, never while the feed is
/// being pushed to by the same call stack. Every byte handed to the sink
/// must be whole, unmasked frames of data messages (as
/// `ws_server::SharedFrame` encodes them): the driver writes them as they
/// are, between two of its own messages.
pub trait Feed: Any + Send + Sync {
    /// Hands frames to `sink`, in order, while `budget` bytes allow (at
    /// least one frame if `budget` is not 0); returns whether frames are
    /// left. Called after the feed rang its [`Doorbell`], and again while
    /// it returns `true` and the output has room.
    ///
    /// # Errors
    ///
    /// A close code to end the connection with (the slow-consumer
    /// policy's eviction): the driver discards its unwritten output after
    /// the frame being written, sends a close frame with this code and
    /// drops the connection without waiting for the answer.
    fn drain(&self, budget: usize, sink: &mut dyn FrameSink) -> Result<bool, CloseCode>;

    /// The connection went idle: give back buffers kept for speed, if the
    /// feed holds no frames.
    fn release_idle(&self) {}

    /// The connection has ended: nothing more will be drained, and frames
    /// pushed from now on should be refused.
    fn close(&self);
}

/// Where [`Feed::drain`] puts frames: the driver's output.
pub trait FrameSink {
    /// Appends frames kept in shared memory; large ones are written
    /// without a copy.
    fn push_shared(&mut self, frames: Bytes);

    /// Takes every byte of `run` (frames back to back), leaving it empty:
    /// swapped with the output's own buffer when that is empty, copied
    /// otherwise.
    fn take_run(&mut self, run: &mut BytesMut);
}

impl FrameSink for Output {
    fn push_shared(&mut self, frames: Bytes) {
        Output::push_shared(self, frames);
    }

    fn take_run(&mut self, run: &mut BytesMut) {
        Output::take_run(self, run);
    }
}

/// Wakes a connection's driver to [`drain`](Feed::drain) its feed. Cheap
/// to ring: a flag, and a wake only when the driver is asleep on it.
///
/// A doorbell made with `Default` is attached to no connection (for
/// testing a feed): rings are only recorded.
#[derive(Clone, Default)]
pub struct Doorbell(Arc<Signal>);

impl fmt::Debug for Doorbell {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Doorbell").finish_non_exhaustive()
    }
}

impl Doorbell {
    /// Tells the driver the feed has something new: frames after an
    /// empty queue, or an eviction. Rings while the driver is still
    /// draining earlier frames are not needed (it drains until the feed
    /// says nothing is left).
    pub fn ring(&self) {
        self.0.raise();
    }

    /// Whether the doorbell rang since the last call; clears it. For
    /// testing a feed with a doorbell attached to no connection: on an
    /// attached one it would steal the driver's wake.
    #[doc(hidden)]
    pub fn take_ring(&self) -> bool {
        self.0.take()
    }

    pub(crate) fn poll(&self, cx: &mut Context<'_>) -> Poll<()> {
        self.0.poll(cx)
    }

    /// The driver has ended: drops its waker.
    pub(crate) fn release(&self) {
        self.0.release();
    }
}

/// Why [`WebSocket::attach_feed`](crate::WebSocket::attach_feed) attached
/// nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AttachError {
    /// A client connection: each of its frames must be masked with a key
    /// of its own, so frames made for others cannot be written as they
    /// are.
    #[error("a client connection takes no feed: its frames must each be masked")]
    Client,
    /// The connection has ended.
    #[error("the connection has ended")]
    Ended,
    /// A feed of another type is attached already.
    #[error("a feed of another type is attached already")]
    OtherFeed,
}

/// A connection's feed slot, in its session.
pub(crate) enum Attached {
    Feed(Arc<dyn Feed>, Doorbell),
    /// The connection ended before a feed was attached.
    Ended,
}

impl fmt::Debug for Attached {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Feed(..) => f.write_str("Feed"),
            Self::Ended => f.write_str("Ended"),
        }
    }
}

impl Attached {
    /// The feed and its doorbell, if one is attached.
    pub(crate) fn feed(&self) -> Option<(&dyn Feed, &Doorbell)> {
        match self {
            Self::Feed(feed, doorbell) => Some((&**feed, doorbell)),
            Self::Ended => None,
        }
    }
}

/// The attached feed as its own type, when it is one.
pub(crate) fn downcast<F: Feed>(attached: &Attached) -> Result<Arc<F>, AttachError> {
    match attached {
        Attached::Feed(feed, _) => {
            let any: Arc<dyn Any + Send + Sync> = feed.clone();
            any.downcast().map_err(|_| AttachError::OtherFeed)
        }
        Attached::Ended => Err(AttachError::Ended),
    }
}

//! Broadcast support: frames encoded once and shared by every recipient,
//! and each connection's bounded queue of them.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use ws_proto::{CloseCode, FrameHeader, Message, OpCode, SendError};

use crate::signal::Signal;

/// A data message encoded once as a server frame, to be sent to many
/// connections. Server frames are not masked, so every recipient gets the
/// very same bytes: cloning a `SharedFrame` copies a pointer, not the
/// payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedFrame {
    bytes: Bytes,
}

impl SharedFrame {
    /// Encodes a text or binary message as one unmasked frame.
    ///
    /// # Errors
    ///
    /// [`SendError::NotData`] for a control or close message: those belong
    /// to one connection, not to a broadcast.
    pub fn new(message: &Message) -> Result<Self, SendError> {
        let (opcode, payload) = match message {
            Message::Text(text) => (OpCode::Text, text.as_bytes()),
            Message::Binary(data) => (OpCode::Binary, &data[..]),
            _ => return Err(SendError::NotData),
        };
        let header = FrameHeader::unfragmented(opcode, None, payload.len());
        let mut bytes = BytesMut::with_capacity(header.encoded_len() + payload.len());
        header.encode(&mut bytes);
        bytes.extend_from_slice(payload);
        Ok(Self {
            bytes: bytes.freeze(),
        })
    }

    /// The frame's size on the wire, header included.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether the frame is empty (never: a frame has a header).
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The encoded frame.
    pub fn as_bytes(&self) -> &Bytes {
        &self.bytes
    }
}

/// What a connection's broadcast queue does when a frame arrives and the
/// queue is full: the recipient is not reading as fast as frames are
/// published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SlowConsumer {
    /// Drop the frame that does not fit. The recipient misses the newest
    /// frames and keeps an unbroken run of older ones.
    DropNewest,
    /// Drop the oldest queued frames until the new one fits. The recipient
    /// misses older frames and sees the most recent state.
    DropOldest,
    /// Disconnect the recipient: its queue is discarded, the close frame is
    /// tried with this code (1008 Policy Violation, or 1013 Try Again
    /// Later), and the connection is dropped without waiting for it.
    Disconnect(CloseCode),
}

/// What became of a frame offered to a connection's queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Pushed {
    /// Queued.
    Queued,
    /// Not queued: the queue was full ([`SlowConsumer::DropNewest`]).
    DroppedNewest,
    /// Queued, after dropping this many older frames
    /// ([`SlowConsumer::DropOldest`]).
    DroppedOldest(usize),
    /// Not queued: the recipient was disconnected, now or before.
    Disconnected,
}

/// The bound and policy of a connection's broadcast queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboxLimits {
    /// The most bytes of frames queued (default 1 MiB). A frame larger than
    /// this on its own is still queued when the queue is empty, so that
    /// one large message is not lost forever.
    pub max_bytes: usize,
    /// The most frames queued (default 1 024).
    pub max_frames: usize,
    /// What to do when a frame does not fit (default
    /// [`SlowConsumer::DropNewest`]).
    pub policy: SlowConsumer,
}

impl Default for OutboxLimits {
    fn default() -> Self {
        Self {
            max_bytes: 1 << 20,
            max_frames: 1024,
            policy: SlowConsumer::DropNewest,
        }
    }
}

#[derive(Debug, Default)]
struct Queue {
    frames: VecDeque<Bytes>,
    bytes: usize,
    /// Set once the connection must be dropped; the driver acts on it.
    evicted: Option<CloseCode>,
    /// Set once the connection has ended: nothing more is queued.
    closed: bool,
}

/// A connection's queue of broadcast frames, drained by its driver.
///
/// A publisher [`push`](Self::push)es; the driver takes frames whenever its
/// output has room, without copying those over 1 KiB. The queue is bounded by
/// [`OutboxLimits`], so a recipient that stops reading costs at most
/// `max_bytes` however fast others publish.
#[derive(Debug, Default)]
pub struct Outbox {
    queue: Mutex<Queue>,
    dropped: AtomicU64,
    /// Raised when the driver has something to look at.
    signal: Signal,
}

impl Outbox {
    /// Offers a frame under `limits`.
    pub fn push(&self, frame: &SharedFrame, limits: &OutboxLimits) -> Pushed {
        let len = frame.len();
        let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        if queue.closed || queue.evicted.is_some() {
            return Pushed::Disconnected;
        }
        let fits = |q: &Queue| {
            q.frames.is_empty()
                || (q.bytes + len <= limits.max_bytes && q.frames.len() < limits.max_frames)
        };
        let mut outcome = Pushed::Queued;
        if !fits(&queue) {
            match limits.policy {
                SlowConsumer::DropNewest => {
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                    return Pushed::DroppedNewest;
                }
                SlowConsumer::DropOldest => {
                    let mut dropped = 0;
                    while !fits(&queue) {
                        let Some(old) = queue.frames.pop_front() else {
                            break;
                        };
                        queue.bytes -= old.len();
                        dropped += 1;
                    }
                    self.dropped.fetch_add(dropped as u64, Ordering::Relaxed);
                    outcome = Pushed::DroppedOldest(dropped);
                }
                SlowConsumer::Disconnect(code) => {
                    let discarded = queue.frames.len() as u64;
                    queue.frames.clear();
                    queue.bytes = 0;
                    queue.evicted = Some(code);
                    drop(queue);
                    self.dropped.fetch_add(discarded + 1, Ordering::Relaxed);
                    self.wake();
                    return Pushed::Disconnected;
                }
            }
        }
        queue.bytes += len;
        queue.frames.push_back(frame.bytes.clone());
        let first = queue.frames.len() == 1;
        drop(queue);
        if first {
            // The driver drains the whole queue each time it wakes, so only
            // the first frame of a batch needs to wake it.
            self.wake();
        }
        outcome
    }

    /// Frames dropped by the slow-consumer policy so far, including those
    /// discarded on a disconnect.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Bytes of frames queued now.
    pub fn queued_bytes(&self) -> usize {
        self.lock().bytes
    }

    /// Whether the connection has ended or been evicted.
    pub fn is_closed(&self) -> bool {
        let queue = self.lock();
        queue.closed || queue.evicted.is_some()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The driver's side: hands frames to `take` while `budget` bytes allow
    /// (at least one frame if `budget` is not 0). Returns whether frames are
    /// left.
    ///
    /// # Errors
    ///
    /// The close code, once the connection has been evicted.
    pub(crate) fn drain(
        &self,
        budget: usize,
        mut take: impl FnMut(Bytes),
    ) -> Result<bool, CloseCode> {
        let mut queue = self.lock();
        if let Some(code) = queue.evicted {
            return Err(code);
        }
        let mut taken = 0;
        while let Some(frame) = queue.frames.front() {
            if budget == 0 || (taken > 0 && taken + frame.len() > budget) {
                break;
            }
            taken += frame.len();
            let frame = queue.frames.pop_front().unwrap_or_default();
            queue.bytes -= frame.len();
            take(frame);
        }
        Ok(!queue.frames.is_empty())
    }

    /// The driver's side: the connection has ended.
    pub(crate) fn close(&self) {
        let mut queue = self.lock();
        queue.closed = true;
        queue.frames.clear();
        queue.bytes = 0;
    }

    fn wake(&self) {
        self.signal.raise();
    }

    /// The driver's side: ready once something was pushed or the
    /// connection evicted since the last time it was ready.
    pub(crate) fn poll_signal(&self, cx: &mut Context<'_>) -> Poll<()> {
        self.signal.poll(cx)
    }
}

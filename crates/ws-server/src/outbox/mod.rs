//! Broadcast support beside the hub: frames encoded once and shared by
//! every recipient, and each connection's bounded queue of them, attached
//! to the connection as its [`Feed`].

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use bytes::{Buf, Bytes, BytesMut};
use ws_proto::{CloseCode, Decoded, FrameHeader, Message, OpCode, SendError, SharedCompression};
use ws_tokio::{Doorbell, Feed, FrameSink};

use crate::lock;

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

    /// `message` compressed with `compression` as one frame, or `None` when
    /// it goes plain (under the threshold, or not text or binary).
    pub(crate) fn compressed(message: &Message, compression: SharedCompression) -> Option<Self> {
        compression
            .compress_frame(message)
            .map(|bytes| Self { bytes })
    }
}

/// Frames published together, to be offered to many connections in
/// order: with the small ones also joined back to back, once, so that a
/// queue with room for the whole batch takes it in one copy
/// ([`Outbox::push_batch`]) instead of one per frame.
#[derive(Debug, Clone)]
pub(crate) struct FrameBatch {
    frames: Vec<SharedFrame>,
    /// The frames back to back, when there are several and each is small
    /// enough to be copied into a queue.
    joined: Option<Bytes>,
}

impl FrameBatch {
    /// A batch of `frames`, in order.
    pub(crate) fn new(frames: Vec<SharedFrame>) -> Self {
        let joinable = frames.len() > 1 && frames.iter().all(|f| f.len() <= RUN_MAX);
        let joined = joinable.then(|| {
            let mut joined = BytesMut::with_capacity(frames.iter().map(SharedFrame::len).sum());
            for frame in &frames {
                joined.extend_from_slice(&frame.bytes);
            }
            joined.freeze()
        });
        Self { frames, joined }
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
    /// Later) after the frames already in the connection's output (bounded:
    /// about 256 KiB, or one large frame; the one being written is never
    /// cut short), and
    /// the connection is dropped without waiting for the answer; within
    /// the close timeout in all.
    Disconnect(CloseCode),
}

/// What became of a frame offered to a connection's queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub(crate) enum Pushed {
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

/// Frames up to this size are copied into the queue's run instead of
/// queued as shared handles (see [`Queue`]).
const RUN_MAX: usize = 1024;

/// Small frames are copied only while the queue holds at most this many
/// bytes: past it they are queued as handles, as large frames are...
const RUN_LIMIT: usize = 16 * 1024;

/// ...except frames no larger than a handle's entry in the queue, which
/// are always copied: a copy takes no more room than the handle would.
const TINY: usize = std::mem::size_of::<(Bytes, usize)>();

/// A connection's queued frames, oldest first: `pieces`, then `run`.
///
/// A small frame is copied into `run`, back to back with the small frames
/// before it. Queuing it as a handle on the shared frame would cost more
/// than its bytes: an atomic increment of the shared count by the
/// publisher and a decrement by this connection's driver, on a cache line
/// that every recipient's driver touches, plus an entry per frame; the
/// driver would then copy the frame into its output anyway. A run is taken
/// whole, usually by swapping buffers with the driver's empty output.
///
/// A large frame is queued as a handle, without copying, after sealing the
/// run before it into a piece of its own; so is a small frame once the
/// queue holds [`RUN_LIMIT`] bytes, unless it is [`TINY`]. A member that
/// falls behind then queues handles on frames shared with the others, as
/// it would without runs, and its copies take at most the room the
/// handles would.
#[derive(Debug, Default)]
struct Queue {
    /// Whole pieces: large frames, and sealed runs; each with how many
    /// frames it holds.
    pieces: VecDeque<(Bytes, usize)>,
    /// Small frames queued after the last piece.
    run: BytesMut,
    /// How many frames `run` holds.
    run_frames: usize,
    /// Frames queued in all.
    frames: usize,
    bytes: usize,
    /// Set once the connection must be dropped; the driver acts on it.
    evicted: Option<CloseCode>,
    /// Set once the connection has ended: nothing more is queued.
    closed: bool,
}

/// The length of the frame at the start of `buf`, header included: one
/// of the well-formed server frames [`SharedFrame::new`] encodes.
fn frame_len(buf: &[u8]) -> usize {
    match FrameHeader::decode(buf) {
        Ok(Decoded::Done { value, consumed }) => consumed + value.payload_len as usize,
        _ => buf.len(),
    }
}

/// How many bytes of the `count` frames in `buf` fit in `budget` (the
/// first one whatever its size), and how many frames those are.
fn frames_within(buf: &[u8], count: usize, budget: usize) -> (usize, usize) {
    if buf.len() <= budget {
        return (buf.len(), count);
    }
    let (mut len, mut frames) = (0, 0);
    while len < buf.len() {
        let next = frame_len(&buf[len..]);
        if frames > 0 && len + next > budget {
            break;
        }
        len += next;
        frames += 1;
    }
    (len, frames)
}

impl Queue {
    /// Whether frames may still be queued: the connection has neither
    /// ended nor been evicted.
    #[inline]
    fn open(&self) -> bool {
        !self.closed && self.evicted.is_none()
    }

    /// Whether a frame of `len` bytes fits within `limits` now. An empty
    /// queue takes any frame, so that one larger than the bound is not
    /// lost forever.
    #[inline]
    fn fits(&self, len: usize, limits: &OutboxLimits) -> bool {
        self.frames == 0
            || (self.bytes + len <= limits.max_bytes && self.frames < limits.max_frames)
    }

    #[inline]
    fn push(&mut self, frame: &Bytes) {
        let copy = frame.len() <= TINY
            || (frame.len() <= RUN_MAX && self.bytes + frame.len() <= RUN_LIMIT);
        if copy {
            self.copy_into_run(frame, 1);
        } else {
            self.seal_run();
            self.pieces.push_back((frame.clone(), 1));
            self.frames += 1;
            self.bytes += frame.len();
        }
    }

    /// Appends `count` small frames, back to back in `frames`, to the run.
    #[inline]
    fn copy_into_run(&mut self, frames: &[u8], count: usize) {
        self.run.extend_from_slice(frames);
        self.run_frames += count;
        self.frames += count;
        self.bytes += frames.len();
    }

    /// Makes the run a piece, so that a large frame can follow it.
    fn seal_run(&mut self) {
        if self.run_frames > 0 {
            let run = std::mem::take(&mut self.run).freeze();
            self.pieces.push_back((run, self.run_frames));
            self.run_frames = 0;
        }
    }

    /// Drops the oldest frame; whether there was one.
    fn pop_oldest(&mut self) -> bool {
        let len = if let Some((piece, count)) = self.pieces.front_mut() {
            if *count == 1 {
                let len = piece.len();
                self.pieces.pop_front();
                len
            } else {
                let len = frame_len(piece);
                piece.advance(len);
                *count -= 1;
                len
            }
        } else if self.run_frames > 0 {
            let len = frame_len(&self.run);
            self.run.advance(len);
            self.run_frames -= 1;
            len
        } else {
            return false;
        };
        self.frames -= 1;
        self.bytes -= len;
        true
    }

    fn clear(&mut self) {
        self.pieces.clear();
        self.run.clear();
        self.run_frames = 0;
        self.frames = 0;
        self.bytes = 0;
    }
}

/// Offers `frames` to a locked queue, in order, calling `each` with what
/// became of each. Returns whether the driver needs waking, and how many
/// frames were dropped.
fn push_locked<'a>(
    queue: &mut Queue,
    frames: impl IntoIterator<Item = &'a SharedFrame>,
    limits: &OutboxLimits,
    mut each: impl FnMut(Pushed),
) -> (bool, u64) {
    let mut wake = false;
    let mut dropped = 0;
    for frame in frames {
        let bytes = &frame.bytes;
        if queue.open() && queue.fits(bytes.len(), limits) {
            // The common case, without the policy's bookkeeping. The
            // driver drains the whole queue each time it wakes, so only
            // the first frame queued needs to wake it.
            queue.push(bytes);
            wake |= queue.frames == 1;
            each(Pushed::Queued);
            continue;
        }
        let (outcome, lost) = offer(queue, bytes, limits);
        dropped += lost;
        wake |= match outcome {
            Pushed::Queued | Pushed::DroppedOldest(_) => queue.frames == 1,
            // Evicted now: the driver acts on it.
            Pushed::Disconnected => lost > 0,
            _ => false,
        };
        each(outcome);
    }
    (wake, dropped)
}

/// Offers one frame to a locked queue under `limits`. Returns what became
/// of it, and how many frames it made the queue drop: the frame itself, or
/// older ones, or (evicting the connection) every queued one and itself.
///
/// [`push_locked`] queues a frame that fits an open queue itself; this is
/// the rest: a closed queue, and the slow-consumer policy.
#[cold]
fn offer(queue: &mut Queue, frame: &Bytes, limits: &OutboxLimits) -> (Pushed, u64) {
    if !queue.open() {
        return (Pushed::Disconnected, 0);
    }
    let len = frame.len();
    let mut outcome = (Pushed::Queued, 0);
    if !queue.fits(len, limits) {
        match limits.policy {
            SlowConsumer::DropNewest => return (Pushed::DroppedNewest, 1),
            SlowConsumer::DropOldest => {
                let mut dropped = 0;
                while !queue.fits(len, limits) && queue.pop_oldest() {
                    dropped += 1;
                }
                outcome = (Pushed::DroppedOldest(dropped), dropped as u64);
            }
            SlowConsumer::Disconnect(code) => {
                let discarded = queue.frames as u64;
                queue.clear();
                queue.evicted = Some(code);
                return (Pushed::Disconnected, discarded + 1);
            }
        }
    }
    queue.push(frame);
    outcome
}

/// What [`Outbox::drain_with`] hands the driver, in order.
pub(crate) enum Piece<'a> {
    /// A large frame, or a sealed run of small ones.
    Shared(Bytes),
    /// Small frames back to back. The driver takes every byte, leaving
    /// the buffer empty: it swaps it with its own empty output, or copies
    /// from it.
    Run(&'a mut BytesMut),
}

/// A connection's queue of broadcast frames, drained by its driver.
///
/// A publisher [`push`](Self::push)es; the driver takes frames whenever its
/// output has room, without copying those over 1 KiB. The queue is bounded by
/// [`OutboxLimits`], so a recipient that stops reading costs at most
/// `max_bytes` however fast others publish.
#[derive(Debug)]
pub(crate) struct Outbox {
    queue: Mutex<Queue>,
    dropped: AtomicU64,
    /// Rung when the driver has something to look at.
    doorbell: Doorbell,
    /// The connection's shared compression, if it has one: it takes
    /// frames compressed once for every member with the same.
    compression: Option<SharedCompression>,
}

impl Outbox {
    /// An empty queue that rings `doorbell` when it has frames for the
    /// driver.
    #[cfg(test)]
    pub(crate) fn new(doorbell: Doorbell) -> Self {
        Self::compressed(doorbell, None)
    }

    /// As [`new`](Self::new), for a connection that takes frames
    /// compressed with `compression`.
    pub(crate) fn compressed(doorbell: Doorbell, compression: Option<SharedCompression>) -> Self {
        Self {
            queue: Mutex::default(),
            dropped: AtomicU64::new(0),
            doorbell,
            compression,
        }
    }

    /// The compression this connection's frames are made with, if any.
    pub(crate) fn compression(&self) -> Option<SharedCompression> {
        self.compression
    }

    /// A closed queue: for a connection that had ended before it joined
    /// the hub. Every frame offered to it is refused.
    pub(crate) fn closed() -> Self {
        let outbox = Self::compressed(Doorbell::default(), None);
        outbox.lock().closed = true;
        outbox
    }

    /// Offers a frame under `limits` (the hub offers several at once).
    #[cfg(test)]
    pub(crate) fn push(&self, frame: &SharedFrame, limits: &OutboxLimits) -> Pushed {
        let mut pushed = Pushed::Disconnected;
        self.push_many([frame], limits, |outcome| pushed = outcome);
        pushed
    }

    /// Offers several frames under `limits`, in order, under one lock of
    /// the queue rather than one each, and calls `each` with what became of
    /// each frame. A publisher with many frames for one connection pays
    /// for the lock, which the connection's driver also takes, once.
    /// `each` runs while the queue is locked: it must not call this outbox.
    pub(crate) fn push_many<'a>(
        &self,
        frames: impl IntoIterator<Item = &'a SharedFrame>,
        limits: &OutboxLimits,
        each: impl FnMut(Pushed),
    ) {
        let mut queue = self.lock();
        let (wake, dropped) = push_locked(&mut queue, frames, limits, each);
        drop(queue);
        self.settle(wake, dropped);
    }

    /// Offers the frames of `batch` as [`push_many`](Self::push_many)
    /// does, with the same outcomes; when the queue is open and has room
    /// for the whole batch as copies, it takes the joined frames in one
    /// copy. As there, `each` runs while the queue is locked.
    pub(crate) fn push_batch(
        &self,
        batch: &FrameBatch,
        limits: &OutboxLimits,
        mut each: impl FnMut(Pushed),
    ) {
        let mut queue = self.lock();
        if let Some(joined) = &batch.joined {
            let count = batch.frames.len();
            let bytes = queue.bytes + joined.len();
            // Room for every frame under the bounds, and each would be
            // copied into the run (see `Queue::push`): the same outcome as
            // one frame at a time.
            if queue.open()
                && queue.frames + count <= limits.max_frames
                && bytes <= limits.max_bytes
                && bytes <= RUN_LIMIT
            {
                let wake = queue.frames == 0;
                queue.copy_into_run(joined, count);
                for _ in 0..count {
                    each(Pushed::Queued);
                }
                drop(queue);
                self.settle(wake, 0);
                return;
            }
        }
        let (wake, dropped) = push_locked(&mut queue, &batch.frames, limits, each);
        drop(queue);
        self.settle(wake, dropped);
    }

    /// After a push, with the queue unlocked: counts what was dropped, and
    /// wakes the driver if it has something new to look at.
    fn settle(&self, wake: bool, dropped: u64) {
        if dropped > 0 {
            self.dropped.fetch_add(dropped, Ordering::Relaxed);
        }
        if wake {
            self.wake();
        }
    }

    /// Frames dropped by the slow-consumer policy so far, including those
    /// discarded on a disconnect.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Bytes of frames queued now.
    pub(crate) fn queued_bytes(&self) -> usize {
        self.lock().bytes
    }

    /// Whether the connection has ended or been evicted.
    #[cfg(test)]
    pub(crate) fn is_closed(&self) -> bool {
        let queue = self.lock();
        queue.closed || queue.evicted.is_some()
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        lock(&self.queue)
    }

    /// The driver's side: hands frames to `take`, in order, while `budget`
    /// bytes allow (at least one frame if `budget` is not 0). Returns
    /// whether frames are left.
    ///
    /// # Errors
    ///
    /// The close code, once the connection has been evicted.
    pub(crate) fn drain_with(
        &self,
        budget: usize,
        mut take: impl FnMut(Piece<'_>),
    ) -> Result<bool, CloseCode> {
        let mut queue = self.lock();
        let queue = &mut *queue;
        if let Some(code) = queue.evicted {
            return Err(code);
        }
        if budget == 0 {
            return Ok(queue.frames > 0);
        }
        let mut left = budget;
        let mut first = true;
        while let Some((piece, count)) = queue.pieces.front_mut() {
            let (len, frames) = frames_within(piece, *count, left);
            if len > left && !first {
                return Ok(true);
            }
            let taken = if frames == *count {
                queue.pieces.pop_front().unwrap_or_default().0
            } else {
                *count -= frames;
                piece.split_to(len)
            };
            queue.frames -= frames;
            queue.bytes -= len;
            take(Piece::Shared(taken));
            first = false;
            if len >= left {
                return Ok(queue.frames > 0);
            }
            left -= len;
        }
        if queue.run_frames > 0 {
            let (len, frames) = frames_within(&queue.run, queue.run_frames, left);
            if len > left && !first {
                return Ok(true);
            }
            queue.frames -= frames;
            queue.bytes -= len;
            queue.run_frames -= frames;
            if queue.run_frames == 0 {
                take(Piece::Run(&mut queue.run));
                queue.run.clear();
            } else {
                take(Piece::Run(&mut queue.run.split_to(len)));
            }
        }
        Ok(queue.frames > 0)
    }

    fn wake(&self) {
        self.doorbell.ring();
    }
}

impl Feed for Outbox {
    fn drain(&self, budget: usize, sink: &mut dyn FrameSink) -> Result<bool, CloseCode> {
        self.drain_with(budget, |piece| match piece {
            Piece::Shared(frames) => sink.push_shared(frames),
            Piece::Run(run) => sink.take_run(run),
        })
    }

    /// Gives back the queue's buffers if it is empty (the connection is
    /// idle).
    fn release_idle(&self) {
        let mut queue = self.lock();
        if queue.frames == 0 {
            queue.run = BytesMut::new();
            queue.pieces = VecDeque::new();
        }
    }

    /// The connection has ended: the queue is emptied and refuses frames.
    fn close(&self) {
        let mut queue = self.lock();
        queue.closed = true;
        queue.clear();
    }
}

#[cfg(test)]
mod tests;

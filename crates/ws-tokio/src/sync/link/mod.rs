//! The hand-off between the application's halves and the driver.
//!
//! Two queues, each behind its own short-lived mutex: received messages
//! (driver to [`WebSocketReceiver`](crate::WebSocketReceiver)) and commands
//! (every [`WebSocketSender`](crate::WebSocketSender) clone to the driver).
//! The receiver and the senders never touch the same lock, so the two
//! halves of a split connection do not contend with each other; each meets
//! the driver only for a push or a pop, never across I/O.
//!
//! The driver moves whole batches: it appends every message decoded from
//! one read under one lock, and takes every queued command under one lock
//! (swapping buffers when all of them fit). An idle connection's queues hold
//! no allocation: the driver gives their buffers back when its socket has
//! nothing to read.
//!
//! The receiver takes received messages a batch at a time: the whole queue
//! under one lock, then one message per call from its own [`Batch`] without
//! any, so a read that brought many messages costs one lock, not one each.
//! The driver still counts a batch as queued until its last message has been
//! returned, so the bound on received messages and the moment everything
//! counts as taken are what they would be with one pop per message.
//!
//! Wakeups are edge-triggered: a push wakes the other side only when the
//! queue was empty (or the driver said it was waiting for room), so a burst
//! costs one wakeup.
//!
//! Why not Tokio's `mpsc` (two channels and a `Semaphore` for the byte
//! budget): those allocate their shared state and a first block of 32 slots
//! when made, and keep them. A build creating them beside the link held
//! 6 660 bytes per idle connection against 2 000 (5 000 connections, five
//! interleaved pairs, `docs/benchmarks.md`).

use std::collections::VecDeque;
use std::task::{Context, Poll, Waker};

use ws_proto::{CloseFrame, Message};

use super::signal::Signal;
use super::{AtomicBool, Mutex, MutexGuard, Ordering, fingerprint, lock};
use crate::error::Error;

mod items;

pub(crate) use items::{Batch, Command, Received, payload_len};

/// What the driver, the receiver and every sender share.
#[derive(Debug)]
pub(crate) struct Link {
    incoming: Mutex<Incoming>,
    outgoing: Mutex<Outgoing>,
    /// Raised for the driver when something happened since it last looked.
    driver: Signal,
    /// Set (under the incoming lock) when items are delivered or the driver
    /// ends; cleared by the receiver, under the lock, once it leaves the
    /// queue empty. While clear, a receiver whose waker is registered waits
    /// without taking the lock.
    incoming_ready: AtomicBool,
    /// Received messages queued before the driver stops reading. (Both
    /// bounds are 32-bit: a connection's shared state is held for its whole
    /// life, and these fit in what would be padding.)
    capacity: u32,
    /// Budget units (payload bytes) queued before senders wait.
    high_water: u32,
}

#[derive(Debug, Default)]
struct Incoming {
    queue: VecDeque<Received>,
    /// Messages in the receiver's [`Batch`], as of the last time it took
    /// the lock: still queued, as far as room and draining go.
    held: u32,
    receiver: Option<Waker>,
    /// The driver waits for room in the queue (or for it to drain).
    driver_waiting: bool,
    /// The driver has ended: once the queue is empty, the stream ends.
    closed: bool,
    /// The receiver was dropped: nothing more is queued.
    receiver_gone: bool,
}

impl Incoming {
    /// Settles what the receiver holds, under the lock, once it has taken
    /// what it could: an empty batch holds no buffer (the queue reuses it,
    /// and the driver gives it back when idle, unless the queue has one),
    /// and the driver learns how many items the batch still holds.
    fn hold(&mut self, batch: &mut VecDeque<Received>) {
        if batch.is_empty() && batch.capacity() > 0 {
            if self.queue.capacity() == 0 {
                std::mem::swap(&mut self.queue, batch);
            } else {
                *batch = VecDeque::new();
            }
        }
        // At most the queue's bound plus an error: fits.
        self.held = u32::try_from(batch.len()).unwrap_or(u32::MAX);
    }

    /// How many more items may be queued, of `capacity`: the queue and the
    /// receiver's batch count.
    fn free(&self, capacity: u32) -> usize {
        let queued = self.queue.len() + self.held as usize;
        (capacity as usize).saturating_sub(queued)
    }

    /// Leaves the receiver's waker, for the driver to wake at each
    /// delivery (unless the one left already wakes the same task), and
    /// notes in `registered` which it is.
    fn wait(&mut self, cx: &Context<'_>, registered: &mut [usize; 2]) {
        match &mut self.receiver {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            slot => *slot = Some(cx.waker().clone()),
        }
        *registered = fingerprint(cx.waker());
    }
}

#[derive(Debug, Default)]
struct Outgoing {
    queue: VecDeque<Command>,
    /// Budget units held by queued messages.
    queued: usize,
    /// Senders waiting for budget.
    waiters: Vec<Waker>,
    /// Live senders; when the last one goes, the connection closes. (32
    /// bits, beside the flag: every sender holds a pointer, so more than
    /// four billion of them would not fit in memory.)
    senders: u32,
    /// No more sends: the application closed, or the driver ended.
    closed: bool,
}

impl Outgoing {
    /// A sender waits for budget: its waker joins the waiters (unless one
    /// of them already wakes the same task).
    fn wait(&mut self, cx: &Context<'_>) {
        if !self.waiters.iter().any(|w| w.will_wake(cx.waker())) {
            self.waiters.push(cx.waker().clone());
        }
    }

    /// No more sends: returns the senders waiting for budget, to be woken
    /// (once the lock is released) so that they see it.
    fn close(&mut self) -> Vec<Waker> {
        self.closed = true;
        std::mem::take(&mut self.waiters)
    }
}

/// Where the receiver stands.
pub(crate) enum Room {
    /// This many more messages may be queued.
    Free(usize),
    /// The receiver is gone: decoded messages are discarded.
    Gone,
}

/// What the driver took from the command queue.
pub(crate) struct Taken {
    /// Every sender is gone: the application is done.
    pub(crate) senders_gone: bool,
    /// Commands were left in the queue (they did not fit in `room`). Until
    /// the driver takes them, further pushes do not wake it.
    pub(crate) more: bool,
    /// Any command was taken.
    pub(crate) some: bool,
}

impl Link {
    pub(crate) fn new(capacity: usize, high_water: usize) -> Self {
        Self {
            incoming: Mutex::default(),
            outgoing: Mutex::new(Outgoing {
                senders: 1,
                ..Outgoing::default()
            }),
            driver: Signal::default(),
            incoming_ready: AtomicBool::new(false),
            capacity: u32::try_from(capacity).unwrap_or(u32::MAX),
            high_water: u32::try_from(high_water).unwrap_or(u32::MAX),
        }
    }

    pub(crate) fn high_water(&self) -> usize {
        self.high_water as usize
    }

    pub(crate) fn wake_driver(&self) {
        self.driver.raise();
    }

    // ---- the receiver's side ----

    /// The next received item, from the receiver's `batch` or from the
    /// queue; `None` once the driver has ended and everything queued was
    /// taken. Cancel-safe: an item is either returned or left in the batch
    /// or the queue.
    ///
    /// Every item but a batch's last is returned without the lock. With the
    /// last, or with none, the receiver takes the lock: to take the next
    /// batch (the whole queue, once it holds more than one item) and to tell
    /// the driver how many it holds, so that the driver's room, and whether
    /// everything was taken, count what was returned.
    pub(crate) fn poll_recv(
        &self,
        batch: &mut Batch,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Received>> {
        if batch.items.len() > 1 {
            return Poll::Ready(batch.items.pop_front());
        }
        if self.nothing_new(batch, cx) {
            return Poll::Pending;
        }
        let mut incoming = lock(&self.incoming);
        let mut item = batch.items.pop_front();
        if item.is_none() {
            item = incoming.queue.pop_front();
        }
        if incoming.queue.len() > 1 {
            // The batch is empty: the queue's items become the batch, and
            // the batch's buffer the queue's. A single item stays queued,
            // where the next call pops it as it would any.
            std::mem::swap(&mut incoming.queue, &mut batch.items);
        }
        incoming.hold(&mut batch.items);
        if incoming.closed {
            return Poll::Ready(item);
        }
        self.settle_receiver(&mut incoming, batch, cx);
        if let Some(item) = item {
            self.unlock_after_taking(incoming);
            return Poll::Ready(Some(item));
        }
        Poll::Pending
    }

    /// Whether the receiver, holding no items, can tell without the lock
    /// that nothing was delivered since it last looked: it left `cx`'s
    /// waker then, which every delivery wakes.
    fn nothing_new(&self, batch: &Batch, cx: &Context<'_>) -> bool {
        batch.items.is_empty()
            && !self.incoming_ready.load(Ordering::Acquire)
            && batch.is_registered(cx.waker())
    }

    /// The receiver's part under the lock, once it has taken what it could
    /// from an open link: clears the ready flag if the queue is left empty,
    /// and leaves its waker (whether it waits now or not, so that its next
    /// wait needs no lock).
    fn settle_receiver(&self, incoming: &mut Incoming, batch: &mut Batch, cx: &Context<'_>) {
        if incoming.queue.is_empty() {
            self.incoming_ready.store(false, Ordering::Relaxed);
        }
        incoming.wait(cx, &mut batch.registered);
    }

    /// Appends received messages to `out`, at most `limit` (none if 0):
    /// every one ready now, from the receiver's `batch` and then the queue,
    /// under one lock. `Ready(Ok(0))` once the driver has ended and
    /// everything queued was taken; `Pending` while nothing is ready. An
    /// error is returned on its own, by the call that finds it first: after
    /// messages, it is left for the next call. Cancel-safe, as
    /// [`poll_recv`](Self::poll_recv).
    pub(crate) fn poll_recv_many(
        &self,
        batch: &mut Batch,
        out: &mut Vec<Message>,
        limit: usize,
        cx: &mut Context<'_>,
    ) -> Poll<Result<usize, Error>> {
        if limit == 0 {
            return Poll::Ready(Ok(0));
        }
        let mut taken = 0;
        // Without the lock, as `poll_recv`: all but the batch's last.
        while taken < limit && batch.items.len() > 1 && matches!(batch.items.front(), Some(Ok(_))) {
            if let Some(Ok(message)) = batch.items.pop_front() {
                out.push(message);
                taken += 1;
            }
        }
        if taken == 0 && self.nothing_new(batch, cx) {
            return Poll::Pending;
        }
        let mut guard = lock(&self.incoming);
        let incoming = &mut *guard;
        let mut error = None;
        while taken < limit {
            let source = if batch.items.is_empty() {
                &mut incoming.queue
            } else {
                &mut batch.items
            };
            match source.front() {
                Some(Ok(_)) => {
                    if let Some(Ok(message)) = source.pop_front() {
                        out.push(message);
                        taken += 1;
                    }
                }
                Some(Err(_)) if taken == 0 => {
                    error = source.pop_front().and_then(Result::err);
                    break;
                }
                _ => break,
            }
        }
        incoming.hold(&mut batch.items);
        if !incoming.closed {
            self.settle_receiver(incoming, batch, cx);
        }
        if taken > 0 || error.is_some() {
            self.unlock_after_taking(guard);
            return Poll::Ready(error.map_or(Ok(taken), Err));
        }
        if incoming.closed {
            return Poll::Ready(Ok(0));
        }
        Poll::Pending
    }

    /// Unlocks the incoming queue after the receiver took from it, waking
    /// the driver if it waits for room.
    fn unlock_after_taking(&self, mut incoming: MutexGuard<'_, Incoming>) {
        let wake = std::mem::take(&mut incoming.driver_waiting);
        drop(incoming);
        if wake {
            self.wake_driver();
        }
    }

    /// The receiver was dropped.
    pub(crate) fn drop_receiver(&self) {
        let mut incoming = lock(&self.incoming);
        incoming.receiver_gone = true;
        incoming.queue = VecDeque::new();
        incoming.held = 0;
        incoming.receiver = None;
        // Everything counts as taken now.
        self.unlock_after_taking(incoming);
    }

    // ---- the senders' side ----

    /// Queues a message holding `units` of budget if they fit (or the queue
    /// is empty); otherwise gives it back. With `cx`, a sender that must
    /// wait is woken when budget frees up.
    pub(crate) fn try_send(
        &self,
        message: Message,
        units: usize,
        cx: Option<&mut Context<'_>>,
    ) -> Result<(), (Message, Error)> {
        let mut outgoing = lock(&self.outgoing);
        if outgoing.closed {
            return Err((message, Error::Closed(None)));
        }
        if outgoing.queued > 0 && outgoing.queued + units > self.high_water() {
            if let Some(cx) = cx {
                outgoing.wait(cx);
            }
            return Err((message, Error::Full));
        }
        outgoing.queued += units;
        self.push_locked(outgoing, Command::Send(message, units));
        Ok(())
    }

    /// Queues messages from the front of `messages` under one lock, as
    /// [`try_send`](Self::try_send) would one by one, and removes them.
    /// `units` gives the budget a message holds, or `None` for one that is
    /// not for this queue as it is (a close): the queuing stops before it.
    /// `Ready(Ok)` once `messages` is empty or starts with such a message;
    /// `Pending` (the sender woken when budget frees up) while the budget
    /// holds back the rest.
    pub(crate) fn poll_send_many(
        &self,
        messages: &mut Vec<Message>,
        units: impl Fn(&Message) -> Option<usize>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), Error>> {
        let mut outgoing = lock(&self.outgoing);
        if outgoing.closed {
            return Poll::Ready(Err(Error::Closed(None)));
        }
        let first = outgoing.queue.is_empty();
        let mut taken = 0;
        let mut full = false;
        for message in messages.iter() {
            let Some(units) = units(message) else {
                break;
            };
            if outgoing.queued > 0 && outgoing.queued + units > self.high_water() {
                full = true;
                break;
            }
            outgoing.queued += units;
            taken += 1;
        }
        if taken == messages.len() && taken == 1 {
            // One message (an echo at one in flight): no drain to set up.
            if let Some(message) = messages.pop() {
                let units = units(&message).unwrap_or(0);
                outgoing.queue.push_back(Command::Send(message, units));
            }
        } else {
            // One reservation for the whole run, rather than a capacity
            // check per message.
            outgoing
                .queue
                .extend(messages.drain(..taken).map(|message| {
                    let units = units(&message).unwrap_or(0);
                    Command::Send(message, units)
                }));
        }
        if full {
            outgoing.wait(cx);
        }
        drop(outgoing);
        if first && taken > 0 {
            // As `push_locked`: only the first command of a batch wakes.
            self.wake_driver();
        }
        if full {
            Poll::Pending
        } else {
            Poll::Ready(Ok(()))
        }
    }

    /// Whether a message of one unit would be queued now; otherwise the
    /// sender is woken when budget frees up.
    pub(crate) fn poll_ready(&self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let mut outgoing = lock(&self.outgoing);
        if outgoing.closed {
            return Poll::Ready(Err(Error::Closed(None)));
        }
        if outgoing.queued < self.high_water() {
            return Poll::Ready(Ok(()));
        }
        outgoing.wait(cx);
        Poll::Pending
    }

    /// Queues a message whatever the budget (after `poll_ready`): the queue
    /// may pass its high-water mark by one message.
    pub(crate) fn force_send(&self, message: Message, units: usize) -> Result<(), Error> {
        let mut outgoing = lock(&self.outgoing);
        if outgoing.closed {
            return Err(Error::Closed(None));
        }
        outgoing.queued += units;
        self.push_locked(outgoing, Command::Send(message, units));
        Ok(())
    }

    /// As [`force_send`](Self::force_send), for a message that is never
    /// compressed.
    pub(crate) fn force_send_uncompressed(
        &self,
        message: Message,
        units: usize,
    ) -> Result<(), Error> {
        let mut outgoing = lock(&self.outgoing);
        if outgoing.closed {
            return Err(Error::Closed(None));
        }
        outgoing.queued += units;
        self.push_locked(outgoing, Command::SendUncompressed(message, units));
        Ok(())
    }

    /// Queues a close; nothing more can be sent after it.
    pub(crate) fn close(&self, frame: Option<CloseFrame>) -> Result<(), Error> {
        let mut outgoing = lock(&self.outgoing);
        if outgoing.closed {
            return Err(Error::Closed(None));
        }
        let waiters = outgoing.close();
        self.push_locked(outgoing, Command::Close(frame));
        waiters.into_iter().for_each(Waker::wake);
        Ok(())
    }

    fn push_locked(&self, mut outgoing: MutexGuard<'_, Outgoing>, command: Command) {
        let first = outgoing.queue.is_empty();
        outgoing.queue.push_back(command);
        drop(outgoing);
        if first {
            // The driver takes the whole queue each time it looks, so only
            // the first command of a batch needs to wake it.
            self.wake_driver();
        }
    }

    /// A sender was cloned.
    pub(crate) fn add_sender(&self) {
        lock(&self.outgoing).senders += 1;
    }

    /// A sender was dropped.
    pub(crate) fn drop_sender(&self) {
        let mut outgoing = lock(&self.outgoing);
        outgoing.senders -= 1;
        let last = outgoing.senders == 0;
        drop(outgoing);
        if last {
            self.wake_driver();
        }
    }

    /// Budget units queued now.
    pub(crate) fn queued(&self) -> usize {
        lock(&self.outgoing).queued
    }

    // ---- the driver's side ----

    /// How many received messages may be queued now. When none may, the
    /// driver is woken once the receiver takes one.
    pub(crate) fn room(&self) -> Room {
        let mut incoming = lock(&self.incoming);
        if incoming.receiver_gone {
            return Room::Gone;
        }
        let free = incoming.free(self.capacity);
        if free == 0 {
            incoming.driver_waiting = true;
        }
        Room::Free(free)
    }

    /// Queues received items (all of `batch`, which is left empty), whatever
    /// the room: the driver checked [`room`](Self::room) first, and an error
    /// may pass the bound by one. Returns the room left, as `room` would
    /// (without asking to be woken when there is none), unless `batch` was
    /// empty and the lock was not taken.
    pub(crate) fn deliver(&self, batch: &mut VecDeque<Received>) -> Option<Room> {
        if batch.is_empty() {
            return None;
        }
        let mut incoming = lock(&self.incoming);
        if incoming.receiver_gone {
            batch.clear();
            return Some(Room::Gone);
        }
        if incoming.queue.is_empty() {
            // Swap buffers: the batch's becomes the queue's, and the empty
            // queue's comes back for the next batch.
            std::mem::swap(&mut incoming.queue, batch);
        } else {
            incoming.queue.append(batch);
        }
        let free = incoming.free(self.capacity);
        // Only the first delivery since the receiver left the queue empty
        // wakes it: until it has looked under the lock again, which the
        // set flag makes it do, it finds the later ones there too. (The
        // flag changes only under this lock.)
        if !self.incoming_ready.load(Ordering::Relaxed) {
            self.incoming_ready.store(true, Ordering::Release);
            // Woken under the lock, by reference: the waker stays
            // registered for the next delivery. (The receiver's waker marks
            // its half of a connection's task to be polled, or schedules
            // its task: neither comes back to this lock.)
            if let Some(receiver) = &incoming.receiver {
                receiver.wake_by_ref();
            }
        }
        Some(Room::Free(free))
    }

    /// Whether everything delivered was taken (or the receiver is gone).
    /// When not, the driver is woken once more is taken.
    pub(crate) fn drained(&self) -> bool {
        let mut incoming = lock(&self.incoming);
        let drained = (incoming.queue.is_empty() && incoming.held == 0) || incoming.receiver_gone;
        if !drained {
            incoming.driver_waiting = true;
        }
        drained
    }

    /// Moves queued commands into the batch `into` gives while their budget
    /// units stay within `room` (at least one command), gives those units
    /// back, and wakes the senders waiting for them. `into` is called only
    /// when there is a command to take: the driver makes its batch on
    /// first use.
    pub(crate) fn take_commands<'a>(
        &self,
        into: impl FnOnce() -> &'a mut VecDeque<Command>,
        room: usize,
    ) -> Taken {
        let mut outgoing = lock(&self.outgoing);
        if outgoing.queue.is_empty() {
            return Taken {
                senders_gone: outgoing.senders == 0,
                more: false,
                some: false,
            };
        }
        let into = into();
        if outgoing.queued <= room && into.is_empty() {
            std::mem::swap(&mut outgoing.queue, into);
            outgoing.queued = 0;
        } else {
            let mut taken = 0;
            while let Some(command) = outgoing.queue.pop_front() {
                let units = match &command {
                    Command::Send(_, units) | Command::SendUncompressed(_, units) => *units,
                    Command::Close(_) => 0,
                };
                taken += units;
                outgoing.queued -= units;
                into.push_back(command);
                if taken >= room {
                    break;
                }
            }
        }
        // Reported only once the queue is empty: what the last sender
        // queued before it went is still sent.
        let more = !outgoing.queue.is_empty();
        let senders_gone = outgoing.senders == 0 && !more;
        let waiters = std::mem::take(&mut outgoing.waiters);
        drop(outgoing);
        waiters.into_iter().for_each(Waker::wake);
        Taken {
            senders_gone,
            more,
            some: true,
        }
    }

    /// Whether anything woke the driver since it last looked (a command
    /// pushed into an empty queue, room made, the last sender gone); clears
    /// it. Costs an atomic load when nothing did.
    pub(crate) fn take_notified(&self) -> bool {
        self.driver.take()
    }

    /// Ready once anything woke the driver since it last looked (a command
    /// pushed into an empty queue, the last sender gone, room made), or,
    /// with `room`, once the receiver's queue has room.
    ///
    /// Commands left in the queue by the last
    /// [`take_commands`](Self::take_commands) wake nobody: the driver keeps
    /// track of them itself (`Taken::more`).
    pub(crate) fn poll_driver(&self, cx: &mut Context<'_>, room: bool) -> Poll<()> {
        // Room is looked at once the driver's waker is registered (a pending
        // poll of the signal leaves it so), so that room made in between is
        // not missed: making room raises the signal too.
        if self.driver.poll(cx).is_ready() || (room && !matches!(self.room(), Room::Free(0))) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    /// Gives back the queues' buffers when they are empty: the connection
    /// is idle.
    pub(crate) fn release_idle_buffers(&self) {
        let mut incoming = lock(&self.incoming);
        if incoming.queue.is_empty() && incoming.queue.capacity() > 0 {
            incoming.queue = VecDeque::new();
        }
        drop(incoming);
        let mut outgoing = lock(&self.outgoing);
        if outgoing.queue.is_empty() && outgoing.queue.capacity() > 0 {
            outgoing.queue = VecDeque::new();
        }
    }

    /// The driver has ended: senders get [`Error::Closed`], and the receiver
    /// gets `None` after what is queued.
    pub(crate) fn shut(&self) {
        let mut outgoing = lock(&self.outgoing);
        outgoing.queue = VecDeque::new();
        outgoing.queued = 0;
        let waiters = outgoing.close();
        drop(outgoing);
        waiters.into_iter().for_each(Waker::wake);
        let mut incoming = lock(&self.incoming);
        incoming.closed = true;
        self.incoming_ready.store(true, Ordering::Release);
        let receiver = incoming.receiver.take();
        drop(incoming);
        if let Some(receiver) = receiver {
            receiver.wake();
        }
        self.driver.release();
    }

    /// Stops sends without ending the receiver's stream (the closing
    /// handshake has begun).
    pub(crate) fn close_sends(&self) {
        let waiters = lock(&self.outgoing).close();
        waiters.into_iter().for_each(Waker::wake);
    }
}

#[cfg(test)]
mod tests;

#[cfg(all(test, ws_loom))]
mod model;

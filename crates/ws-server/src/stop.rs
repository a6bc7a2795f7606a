//! The server's shutdown, as each connection waits for it.
//!
//! Every open connection's driver holds a [`Stopped`] future and polls it
//! each time it is about to sleep, so it must be small (it lives as long as
//! the connection) and cheap to poll again (an atomic load, and a waker
//! comparison). A waker is registered once per connection, under a lock
//! taken only then, when the connection ends, and at shutdown.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

/// The shutdown signal shared by the server and its connections.
#[derive(Debug, Default)]
pub(crate) struct Stop {
    stopped: AtomicBool,
    waiters: Mutex<Waiters>,
}

/// Registered wakers, in slots reused once free.
#[derive(Debug, Default)]
struct Waiters {
    slots: Vec<Option<Waker>>,
    free: Vec<usize>,
}

impl Stop {
    fn lock(&self) -> MutexGuard<'_, Waiters> {
        crate::lock(&self.waiters)
    }

    /// Signals every connection, present and future.
    pub(crate) fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        let wakers: Vec<Waker> = self
            .lock()
            .slots
            .iter_mut()
            .filter_map(Option::take)
            .collect();
        wakers.into_iter().for_each(Waker::wake);
    }

    /// A future that completes once [`stop`](Self::stop) has been called.
    pub(crate) fn stopped(self: &Arc<Self>) -> Stopped {
        Stopped {
            stop: self.clone(),
            slot: None,
        }
    }
}

/// Completes once the server stops.
#[derive(Debug)]
pub(crate) struct Stopped {
    stop: Arc<Stop>,
    /// The registered slot, and the waker it holds.
    slot: Option<(usize, Waker)>,
}

impl Future for Stopped {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if this.stop.stopped.load(Ordering::SeqCst) {
            return Poll::Ready(());
        }
        if let Some((_, waker)) = &this.slot
            && waker.will_wake(cx.waker())
        {
            return Poll::Pending;
        }
        let waker = cx.waker().clone();
        let mut waiters = this.stop.lock();
        let index = match &this.slot {
            Some((index, _)) => *index,
            None => match waiters.free.pop() {
                Some(index) => index,
                None => {
                    waiters.slots.push(None);
                    waiters.slots.len() - 1
                }
            },
        };
        waiters.slots[index] = Some(waker.clone());
        drop(waiters);
        this.slot = Some((index, waker));
        // Checked again once registered: a stop in between either saw the
        // waker or is seen here.
        if this.stop.stopped.load(Ordering::SeqCst) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        if let Some((index, _)) = self.slot.take() {
            let mut waiters = self.stop.lock();
            waiters.slots[index] = None;
            waiters.free.push(index);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ws_tokio::wake_count::WakeCount;

    fn poll(fut: &mut Stopped, wakes: &Arc<WakeCount>) -> Poll<()> {
        Pin::new(fut).poll(&mut Context::from_waker(&wakes.waker()))
    }

    #[test]
    fn every_waiting_connection_is_woken_once_and_slots_are_reused() {
        let stop = Arc::new(Stop::default());
        let wakes = WakeCount::new();
        let mut first = stop.stopped();
        let mut second = stop.stopped();
        assert!(poll(&mut first, &wakes).is_pending());
        assert!(poll(&mut second, &wakes).is_pending());
        assert!(poll(&mut first, &wakes).is_pending(), "polled again");
        drop(second);
        let mut third = stop.stopped();
        assert!(poll(&mut third, &wakes).is_pending());
        assert_eq!(stop.lock().slots.len(), 2, "the freed slot was reused");
        stop.stop();
        assert_eq!(wakes.count(), 2, "both waiters woken");
        assert!(poll(&mut first, &wakes).is_ready());
        assert!(poll(&mut third, &wakes).is_ready());
        assert!(
            poll(&mut stop.stopped(), &wakes).is_ready(),
            "a late one too"
        );
    }
}

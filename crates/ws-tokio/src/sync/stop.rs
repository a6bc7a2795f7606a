//! A server's shutdown, as each connection waits for it.
//!
//! Every open connection's driver holds a [`Stopped`] future and polls it
//! each time it is about to sleep, so it must be small (it lives as long as
//! the connection) and cheap to poll again (an atomic load, and a waker
//! comparison). A waker is registered once per connection, under a lock
//! taken only then, when the connection ends, and at shutdown.
//!
//! Measured against tokio's `Notify` (`notify_waiters`, each connection
//! holding an `OwnedNotified`), whose future takes the notifier's lock,
//! one lock for the whole server, on every poll: with the echo server at 1
//! message in flight, `Notify` executes 1.6% more instructions per message
//! and 5% more locked ones (3 874 against 3 814; 39.1 against 37.2), and
//! with the inline handler 3.1% and 10% more (2 635 against 2 557; 22.7
//! against 20.7), and an idle connection costs 16 bytes more (0.8%).
//! Interleaved pairs of messages and handshakes per second on this
//! two-core machine could not tell them apart (their noise is wider), but
//! a lock every connection takes at every sleep is the contention that
//! grows with cores: kept.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use super::{AtomicBool, Mutex, MutexGuard, Ordering};

/// The shutdown signal shared by a server and its connections: the server
/// calls [`stop`](Self::stop), and every [`Stopped`] completes.
#[derive(Debug, Default)]
pub struct Stop {
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
        super::lock(&self.waiters)
    }

    /// Signals every connection, present and future.
    pub fn stop(&self) {
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
    pub fn stopped(self: &Arc<Self>) -> Stopped {
        Stopped {
            stop: self.clone(),
            slot: None,
        }
    }
}

/// Completes once the server stops: what a connection's driver is given
/// as its shutdown signal ([`start`](crate::start)).
#[derive(Debug)]
pub struct Stopped {
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
    use crate::wake_count::WakeCount;

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

/// Model-checked with loom (`scripts/loom.sh`): the stop against a
/// connection's first poll, against a poll with a new waker, and against a
/// connection ending (its slot freed while the stop collects the wakers).
#[cfg(all(test, ws_loom))]
mod model {
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::Arc;
    use std::task::Context;

    use loom::thread;

    use super::Stop;
    use crate::sync::model_waker::waker;

    #[test]
    fn a_stop_against_the_first_poll_is_never_lost() {
        loom::model(|| {
            let stop = Arc::new(Stop::default());
            let mut stopped = stop.stopped();
            let stopper = {
                let stop = stop.clone();
                thread::spawn(move || stop.stop())
            };
            let (count, waker) = waker();
            let mut cx = Context::from_waker(&waker);
            let ready = Pin::new(&mut stopped).poll(&mut cx).is_ready();
            stopper.join().unwrap();
            assert!(ready || count.get() == 1);
            assert!(Pin::new(&mut stopped).poll(&mut cx).is_ready());
        });
    }

    #[test]
    fn a_stop_against_a_change_of_waker_wakes_the_new_one_or_is_seen() {
        loom::model(|| {
            let stop = Arc::new(Stop::default());
            let mut stopped = stop.stopped();
            let (_first, first_waker) = waker();
            let pending = Pin::new(&mut stopped)
                .poll(&mut Context::from_waker(&first_waker))
                .is_pending();
            assert!(pending);
            let stopper = {
                let stop = stop.clone();
                thread::spawn(move || stop.stop())
            };
            let (second, second_waker) = waker();
            let ready = Pin::new(&mut stopped)
                .poll(&mut Context::from_waker(&second_waker))
                .is_ready();
            stopper.join().unwrap();
            assert!(ready || second.get() == 1);
        });
    }

    #[test]
    fn a_stop_against_a_connection_ending_keeps_no_waker() {
        loom::model(|| {
            let stop = Arc::new(Stop::default());
            let mut stopped = stop.stopped();
            let (count, waker) = waker();
            let pending = Pin::new(&mut stopped)
                .poll(&mut Context::from_waker(&waker))
                .is_pending();
            assert!(pending);
            drop(waker);
            let stopper = {
                let stop = stop.clone();
                thread::spawn(move || stop.stop())
            };
            drop(stopped);
            stopper.join().unwrap();
            assert_eq!(Arc::strong_count(&count), 1, "the waker was let go");
            assert!(stop.lock().slots.iter().all(Option::is_none));
        });
    }
}

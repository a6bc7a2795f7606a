//! A flag raised for the driver, with the driver's waker: how the link and
//! the outbox tell a sleeping driver that something is waiting for it.
//!
//! The waker stays registered once the driver has left it: a raise wakes it
//! by reference, and the driver, polled again with the same waker (a
//! connection's driver always is), goes back to sleep without touching the
//! lock or cloning its waker. A waker taken at each wake (as `AtomicWaker`
//! does) costs, for every message that wakes the driver, a clone and a drop
//! of the waker and two more atomic updates to register it again.

use std::task::{Context, Poll, Waker};

use super::{AtomicBool, AtomicUsize, Mutex, Ordering, fingerprint, lock};

/// Raised by any thread; taken, or waited for, by the driver.
#[derive(Debug, Default)]
pub(crate) struct Signal {
    raised: AtomicBool,
    /// The waker the driver left, woken by every raise.
    waker: Mutex<Option<Waker>>,
    /// Which waker that is (see [`fingerprint`]), for the driver to see
    /// without the lock that its waker is still the one registered.
    /// Written by the driver only, under the lock, and read by the driver
    /// only.
    registered: [AtomicUsize; 2],
}

impl Signal {
    /// Raises the flag and wakes the driver's waker, if it left one.
    pub(crate) fn raise(&self) {
        self.raised.store(true, Ordering::Release);
        // Woken under the lock, by reference: the waker stays registered.
        // A connection's wakers only mark the driver to be polled (or
        // schedule its task); none of them comes back to this lock.
        if let Some(waker) = &*lock(&self.waker) {
            waker.wake_by_ref();
        }
    }

    /// Clears the flag; whether it was raised. A load first: the flag is
    /// nearly always clear, and a swap would take its cache line each time.
    pub(crate) fn take(&self) -> bool {
        self.raised.load(Ordering::Acquire) && self.raised.swap(false, Ordering::AcqRel)
    }

    /// Ready, and cleared, once raised since last taken; otherwise the
    /// driver is woken when it is.
    pub(crate) fn poll(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.take() {
            return Poll::Ready(());
        }
        if self.is_registered(cx.waker()) {
            // Registered by an earlier poll, which looked at the flag after
            // registering: a raise since then either set the flag after
            // that look, and wakes this waker, or was seen by `take` above.
            return Poll::Pending;
        }
        let mut slot = lock(&self.waker);
        for (kept, part) in self.registered.iter().zip(fingerprint(cx.waker())) {
            kept.store(part, Ordering::Relaxed);
        }
        *slot = Some(cx.waker().clone());
        drop(slot);
        // Checked after registering, so that a raise in between is not lost.
        if self.take() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    /// The driver has ended: lets go of its waker, which would otherwise
    /// keep the driver's task (its allocation) alive for as long as
    /// anything holds this signal. A raise after it wakes nobody.
    pub(crate) fn release(&self) {
        let waker = lock(&self.waker).take();
        for kept in &self.registered {
            kept.store(0, Ordering::Relaxed);
        }
        drop(waker);
    }

    /// Whether `waker` wakes the same task as the one registered.
    fn is_registered(&self, waker: &Waker) -> bool {
        let [data, vtable] = fingerprint(waker);
        self.registered[0].load(Ordering::Relaxed) == data
            && self.registered[1].load(Ordering::Relaxed) == vtable
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wake_count::WakeCount;

    #[test]
    fn a_raise_wakes_the_registered_waker_each_time_and_keeps_it() {
        let signal = Signal::default();
        let wakes = WakeCount::new();
        let waker = wakes.waker();
        let mut cx = Context::from_waker(&waker);
        assert!(signal.poll(&mut cx).is_pending());
        signal.raise();
        assert_eq!(wakes.count(), 1);
        assert!(signal.poll(&mut cx).is_ready());
        // Not registered again, and still woken.
        assert!(signal.poll(&mut cx).is_pending());
        signal.raise();
        assert_eq!(wakes.count(), 2);
        assert!(signal.poll(&mut cx).is_ready());
        assert!(signal.poll(&mut cx).is_pending(), "taken once");
    }

    #[test]
    fn a_raise_before_the_first_poll_is_not_lost() {
        let signal = Signal::default();
        signal.raise();
        let wakes = WakeCount::new();
        let waker = wakes.waker();
        assert!(signal.poll(&mut Context::from_waker(&waker)).is_ready());
        assert_eq!(wakes.count(), 0);
    }

    #[test]
    fn a_released_signal_holds_no_waker() {
        let signal = Signal::default();
        let wakes = WakeCount::new();
        let waker = wakes.waker();
        assert!(signal.poll(&mut Context::from_waker(&waker)).is_pending());
        drop(waker);
        assert_eq!(std::sync::Arc::strong_count(&wakes), 2, "kept");
        signal.release();
        assert_eq!(std::sync::Arc::strong_count(&wakes), 1, "let go");
        signal.raise();
        assert_eq!(wakes.count(), 0);
    }

    #[test]
    fn another_waker_replaces_the_registered_one() {
        let signal = Signal::default();
        let (first, second) = (WakeCount::new(), WakeCount::new());
        let first_waker = first.waker();
        assert!(
            signal
                .poll(&mut Context::from_waker(&first_waker))
                .is_pending()
        );
        let second_waker = second.waker();
        assert!(
            signal
                .poll(&mut Context::from_waker(&second_waker))
                .is_pending()
        );
        signal.raise();
        assert_eq!((first.count(), second.count()), (0, 1));
    }
}

/// Model-checked with loom (`scripts/loom.sh`): every interleaving of a
/// raise against the driver's poll, its change of waker, and its release.
#[cfg(all(test, ws_loom))]
mod model {
    use std::sync::Arc;
    use std::task::Context;

    use loom::thread;

    use super::Signal;
    use crate::sync::model_waker::waker;

    #[test]
    fn a_raise_against_the_first_poll_is_never_lost() {
        loom::model(|| {
            let signal = Arc::new(Signal::default());
            let raiser = {
                let signal = signal.clone();
                thread::spawn(move || signal.raise())
            };
            let (count, waker) = waker();
            let ready = signal.poll(&mut Context::from_waker(&waker)).is_ready();
            raiser.join().unwrap();
            // Pending means the raise came after the registration, and
            // then it woke the waker.
            assert!(ready || count.get() == 1);
            if !ready {
                assert!(signal.poll(&mut Context::from_waker(&waker)).is_ready());
            }
        });
    }

    #[test]
    fn a_raise_against_a_poll_with_the_registered_waker_is_never_lost() {
        loom::model(|| {
            let signal = Arc::new(Signal::default());
            let (count, waker) = waker();
            let mut cx = Context::from_waker(&waker);
            assert!(signal.poll(&mut cx).is_pending());
            let raiser = {
                let signal = signal.clone();
                thread::spawn(move || signal.raise())
            };
            // The lock-free path: the waker is the one registered.
            let ready = signal.poll(&mut cx).is_ready();
            raiser.join().unwrap();
            assert!(ready || count.get() == 1);
            assert!(
                ready || signal.poll(&mut cx).is_ready(),
                "raised, not taken"
            );
        });
    }

    #[test]
    fn a_raise_against_a_change_of_waker_wakes_the_new_one_or_is_seen() {
        loom::model(|| {
            let signal = Arc::new(Signal::default());
            let (_first, first_waker) = waker();
            assert!(
                signal
                    .poll(&mut Context::from_waker(&first_waker))
                    .is_pending()
            );
            let raiser = {
                let signal = signal.clone();
                thread::spawn(move || signal.raise())
            };
            let (second, second_waker) = waker();
            let ready = signal
                .poll(&mut Context::from_waker(&second_waker))
                .is_ready();
            raiser.join().unwrap();
            // Either the new poll saw the raise, or the raise came after
            // the new waker was registered and woke it.
            assert!(ready || second.get() == 1);
        });
    }

    #[test]
    fn a_release_against_a_raise_keeps_no_waker() {
        loom::model(|| {
            let signal = Arc::new(Signal::default());
            let (count, waker) = waker();
            assert!(signal.poll(&mut Context::from_waker(&waker)).is_pending());
            drop(waker);
            let raiser = {
                let signal = signal.clone();
                thread::spawn(move || signal.raise())
            };
            signal.release();
            raiser.join().unwrap();
            assert_eq!(Arc::strong_count(&count), 1, "the waker was let go");
            assert!(count.get() <= 1);
        });
    }
}

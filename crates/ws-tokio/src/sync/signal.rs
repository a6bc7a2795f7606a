//! A flag raised for the driver, with the driver's waker: how the link and
//! a connection's feed tell a sleeping driver that something is waiting for
//! it. The standard pairing of a flag with futures' `AtomicWaker`.
//!
//! A hand-written signal that kept the driver's waker registered across
//! wakes (woken by reference, compared by address without a lock) stood
//! here before. Measured against this one, it saved about 10% of the locked
//! instructions per echoed message (33.6 against 37.1 at 1 in flight) but
//! cost 1% more instructions in all (3 903 against 3 864), and in
//! interleaved pairs of the echo profiles the two were within the noise
//! (medians 0.96 to 1.05): not a gain worth a primitive of our own.

use std::task::{Context, Poll};

use super::{AtomicBool, AtomicWaker, Ordering};

/// Raised by any thread; taken, or waited for, by the driver.
#[derive(Debug, Default)]
pub(crate) struct Signal {
    raised: AtomicBool,
    waker: AtomicWaker,
}

impl Signal {
    /// Raises the flag and wakes the driver's waker, if it left one.
    pub(crate) fn raise(&self) {
        // Release: whatever was queued before the raise is seen by the
        // driver that takes it.
        self.raised.store(true, Ordering::Release);
        self.waker.wake();
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
        self.waker.register(cx.waker());
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
        drop(self.waker.take());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wake_count::WakeCount;

    #[test]
    fn a_raise_wakes_the_waker_registered_by_the_last_pending_poll() {
        let signal = Signal::default();
        let wakes = WakeCount::new();
        let waker = wakes.waker();
        let mut cx = Context::from_waker(&waker);
        assert!(signal.poll(&mut cx).is_pending());
        signal.raise();
        assert_eq!(wakes.count(), 1);
        assert!(signal.poll(&mut cx).is_ready());
        // Registered again by the poll that found nothing, and woken.
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
            // The waker is the one registered already.
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

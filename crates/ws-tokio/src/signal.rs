//! A flag raised for the driver, with the driver's waker: how the link and
//! the outbox tell a sleeping driver that something is waiting for it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use futures_util::task::AtomicWaker;

/// Raised by any thread; taken, or waited for, by the driver.
#[derive(Debug, Default)]
pub(crate) struct Signal {
    raised: AtomicBool,
    waker: AtomicWaker,
}

impl Signal {
    /// Raises the flag and wakes the driver if it waits.
    pub(crate) fn raise(&self) {
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
}

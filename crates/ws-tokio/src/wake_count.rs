//! A waker that counts its wakes, for the unit tests of futures polled by
//! hand, here and in `ws-server` (through the `test-support` feature; not
//! for applications).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Wake, Waker};

/// Counts the wakes of the wakers made from it.
#[derive(Default)]
pub struct WakeCount(AtomicUsize);

impl WakeCount {
    /// A count at zero.
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    /// A waker that adds to this count.
    pub fn waker(self: &Arc<Self>) -> Waker {
        Waker::from(self.clone())
    }

    /// The wakes so far.
    pub fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

impl Wake for WakeCount {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

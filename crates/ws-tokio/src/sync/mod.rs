//! The connection's synchronisation, in one place: the link between the
//! application's halves and the driver, and the signal that wakes the
//! driver. Both are short critical sections behind `std` mutexes and a few
//! atomics; nothing here waits on I/O.

use std::task::Waker;

// The primitives the hand-written ones are built on: `std`'s, or loom's
// models of them when built with `--cfg ws_loom` for the model-checking tests
// (`scripts/loom.sh`). A name of its own: `--cfg loom` would also switch
// Tokio into its own loom build, which has no networking.
#[cfg(not(ws_loom))]
pub(crate) use futures_util::task::AtomicWaker;
#[cfg(ws_loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, Ordering};
#[cfg(ws_loom)]
pub(crate) use loom::sync::{Mutex, MutexGuard};
#[cfg(ws_loom)]
pub(crate) use model_atomic_waker::AtomicWaker;
#[cfg(not(ws_loom))]
pub(crate) use std::sync::atomic::{AtomicBool, Ordering};
#[cfg(not(ws_loom))]
pub(crate) use std::sync::{Mutex, MutexGuard};

/// loom's model of `AtomicWaker`, under the names futures gives it.
#[cfg(ws_loom)]
mod model_atomic_waker {
    use std::task::Waker;

    #[derive(Debug, Default)]
    pub(crate) struct AtomicWaker(loom::future::AtomicWaker);

    impl AtomicWaker {
        pub(crate) fn register(&self, waker: &Waker) {
            self.0.register_by_ref(waker);
        }

        pub(crate) fn wake(&self) {
            self.0.wake();
        }

        pub(crate) fn take(&self) -> Option<Waker> {
            self.0.take_waker()
        }
    }
}

mod join;
mod link;
#[cfg(all(test, ws_loom))]
mod model_waker;
mod signal;
mod stop;

pub use join::{Join, JoinTask};
pub(crate) use link::{Batch, Command, Link, Received, Room, payload_len};
pub(crate) use signal::Signal;
pub use stop::{Stop, Stopped};

/// Locks one of the connection's short critical sections (the link's
/// queues, the driver's signal, the outbox's queue).
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // No code panics while holding these locks; should one ever, what they
    // guard is still consistent, so the poison is ignored.
    mutex.lock().unwrap_or_else(|poison| poison.into_inner())
}

/// Which task a waker wakes, as the addresses `Waker::will_wake` compares
/// (its data and its vtable): kept beside a registered waker, it tells
/// without a lock whether a waker is the registered one. Never `[0, 0]`,
/// since a vtable is never at address 0.
pub(crate) fn fingerprint(waker: &Waker) -> [usize; 2] {
    [
        waker.data() as usize,
        std::ptr::from_ref(waker.vtable()) as usize,
    ]
}

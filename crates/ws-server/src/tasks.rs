//! The server's tasks: counted, so that a shutdown can wait for them and the
//! connection limit can be checked, and aborted together when the server
//! stops.
//!
//! A `JoinSet` would do all of this, but it keeps an entry of its own for
//! each task (56 bytes, one allocation), which an idle connection would pay
//! for its whole life. Here a task costs a slot in a vector (its abort
//! handle), and it frees the slot itself as it ends.

use std::future::Future;
use std::pin::pin;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;
use tokio::task::AbortHandle;

/// The server's side: spawns, counts and aborts. Aborts every task still
/// running when dropped, as the server's accept loop ends or is dropped.
#[derive(Default)]
pub(crate) struct Tasks {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    state: Mutex<State>,
    /// Notified when the last task ends.
    idle: Notify,
}

#[derive(Default)]
struct State {
    /// Indexed by [`Tracked::slot`].
    slots: Vec<Slot>,
    /// Slots to reuse.
    free: Vec<u32>,
    /// Tasks spawned that have not ended.
    live: usize,
    /// Of those, connections (a busy answer is not one).
    connections: usize,
}

enum Slot {
    Free,
    /// A task that has not ended; its abort handle once spawned, until
    /// taken to abort it.
    Taken(Option<AbortHandle>),
}

/// Held by a task for its whole life: dropped with the task's future, as it
/// ends or is aborted, it frees the task's slot.
pub(crate) struct Tracked {
    inner: Arc<Inner>,
    slot: u32,
    connection: bool,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        crate::lock(&self.state)
    }
}

impl Tasks {
    /// Spawns the future `make` builds around the task's [`Tracked`], which
    /// the future must hold until it ends. `connection`: counted against
    /// the connection limit.
    pub(crate) fn spawn<F>(&self, connection: bool, make: impl FnOnce(Tracked) -> F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let slot = {
            let mut state = self.inner.lock();
            state.live += 1;
            state.connections += usize::from(connection);
            match state.free.pop() {
                Some(slot) => {
                    state.slots[slot as usize] = Slot::Taken(None);
                    slot
                }
                None => {
                    state.slots.push(Slot::Taken(None));
                    u32::try_from(state.slots.len() - 1).expect("fewer than 2^32 tasks")
                }
            }
        };
        let tracked = Tracked {
            inner: self.inner.clone(),
            slot,
            connection,
        };
        let handle = tokio::spawn(make(tracked)).abort_handle();
        // The task may have ended already, and freed its slot: only this
        // loop takes slots, so a free slot is still free here.
        if let Slot::Taken(empty) = &mut self.inner.lock().slots[slot as usize] {
            *empty = Some(handle);
        }
    }

    /// Connections open, their handshakes included.
    pub(crate) fn connections(&self) -> usize {
        self.inner.lock().connections
    }

    /// Tasks that have not ended.
    pub(crate) fn len(&self) -> usize {
        self.inner.lock().live
    }

    /// Completes once no task is left.
    pub(crate) async fn idle(&self) {
        loop {
            let mut notified = pin!(self.inner.idle.notified());
            // Registered before the count is read, so that the last task
            // ending in between is not missed.
            notified.as_mut().enable();
            if self.len() == 0 {
                return;
            }
            notified.await;
        }
    }

    /// Aborts every task still running: each is dropped the next time the
    /// runtime gets to it, without being polled again.
    pub(crate) fn abort_all(&self) {
        let handles: Vec<AbortHandle> = self
            .inner
            .lock()
            .slots
            .iter_mut()
            .filter_map(|slot| match slot {
                Slot::Taken(handle) => handle.take(),
                Slot::Free => None,
            })
            .collect();
        handles.iter().for_each(AbortHandle::abort);
    }
}

impl Drop for Tasks {
    fn drop(&mut self) {
        self.abort_all();
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        let handle = {
            let mut state = self.inner.lock();
            state.live -= 1;
            state.connections -= usize::from(self.connection);
            state.free.push(self.slot);
            let slot = std::mem::replace(&mut state.slots[self.slot as usize], Slot::Free);
            if state.live == 0 {
                self.inner.idle.notify_waiters();
            }
            slot
        };
        // The task's own handle, dropped once the lock is released.
        drop(handle);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::sync::oneshot;

    /// Slots are freed by the tasks as they end and reused; `idle`
    /// completes once the last one ends; an aborted task frees its slot
    /// too.
    #[tokio::test]
    async fn tasks_free_their_slots_and_abort_reaches_the_rest() {
        let tasks = Tasks::default();
        let (done_tx, done_rx) = oneshot::channel::<()>();
        tasks.spawn(true, |tracked| async move {
            let _tracked = tracked;
            let _ = done_rx.await;
        });
        tasks.spawn(false, |tracked| async move {
            let _tracked = tracked;
            std::future::pending::<()>().await;
        });
        assert_eq!((tasks.len(), tasks.connections()), (2, 1));

        done_tx.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(10), async {
            while tasks.len() != 1 {
                tokio::task::yield_now().await;
            }
        })
        .await
        .unwrap();
        assert_eq!(tasks.connections(), 0);
        assert_eq!(tasks.inner.lock().free, [0], "the ended task's slot");

        tasks.spawn(true, |tracked| async move {
            let _tracked = tracked;
            std::future::pending::<()>().await;
        });
        assert_eq!(tasks.inner.lock().slots.len(), 2, "the free slot reused");

        tasks.abort_all();
        tokio::time::timeout(Duration::from_secs(10), tasks.idle())
            .await
            .expect("aborted tasks end");
        assert_eq!((tasks.len(), tasks.connections()), (0, 0));
    }
}

//! The driver's one timer, for whichever deadline comes first.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Waker};

use std::time::Duration;

use tokio::time::{Instant, Sleep, sleep_until};

/// The instant `timeout` from now, for a deadline that spans several
/// steps (a TLS handshake, then the upgrade); one far beyond any
/// connection's life when the clock cannot hold it, as for
/// `Duration::MAX`, which therefore means no deadline.
pub fn deadline_after(timeout: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(timeout)
        .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600))
}

pin_project_lite::pin_project! {
    /// One timer for whichever deadline comes first, reset only when that
    /// deadline changes: registering a timer on every pass would cost more
    /// than the rest of a small message's trip.
    pub(crate) struct Timer {
        #[pin]
        sleep: Sleep,
        // Whether the sleep's deadline stands.
        armed: bool,
        // The waker the sleep was last polled with, while it stands: the
        // sleep need not be polled again until it fires or the waker
        // changes.
        registered: Option<Waker>,
    }
}

impl Timer {
    pub(crate) fn new() -> Self {
        Self {
            sleep: sleep_until(Instant::now()),
            armed: false,
            registered: None,
        }
    }

    /// Sets the deadline (`None`: none).
    pub(crate) fn arm(self: Pin<&mut Self>, deadline: Option<Instant>) {
        let this = self.project();
        match deadline {
            Some(deadline) if !*this.armed || this.sleep.deadline() != deadline => {
                this.sleep.reset(deadline);
                *this.registered = None;
                *this.armed = true;
            }
            Some(_) => {}
            None => *this.armed = false,
        }
    }

    /// Whether the deadline has passed; it is then disarmed.
    pub(crate) fn poll_fired(self: Pin<&mut Self>, cx: &mut Context<'_>) -> bool {
        let this = self.project();
        if !*this.armed {
            return false;
        }
        // Elapsed is read before any poll: a poll of the sleep counts
        // against the task's budget of work, and a task that spent it on
        // a peer that keeps sending would never see its deadline pass.
        if this.sleep.is_elapsed() {
            *this.armed = false;
            *this.registered = None;
            return true;
        }
        let registered = this
            .registered
            .as_ref()
            .is_some_and(|waker| waker.will_wake(cx.waker()));
        if registered {
            // Polled before with this waker, which the sleep will wake.
            return false;
        }
        if this.sleep.poll(cx).is_ready() {
            *this.armed = false;
            *this.registered = None;
            return true;
        }
        if !registered {
            *this.registered = Some(cx.waker().clone());
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use std::pin::pin;
    use std::time::Duration;

    use super::*;
    use crate::wake_count::WakeCount;

    #[tokio::test(start_paused = true)]
    async fn the_timer_fires_for_the_waker_it_was_last_polled_with() {
        let mut timer = pin!(Timer::new());
        let (first, second) = (WakeCount::new(), WakeCount::new());
        let (first_waker, second_waker) = (first.waker(), second.waker());
        let step = Duration::from_millis(100);
        timer.as_mut().arm(Some(Instant::now() + step));
        // Asked again and again with one waker: not fired.
        for _ in 0..3 {
            assert!(
                !timer
                    .as_mut()
                    .poll_fired(&mut Context::from_waker(&first_waker))
            );
        }
        // Polled with another waker: that one is registered instead.
        assert!(
            !timer
                .as_mut()
                .poll_fired(&mut Context::from_waker(&second_waker))
        );
        tokio::time::advance(step).await;
        assert_eq!((first.count(), second.count()), (0, 1), "the last waker");
        assert!(
            timer
                .as_mut()
                .poll_fired(&mut Context::from_waker(&second_waker))
        );
        assert!(
            !timer
                .as_mut()
                .poll_fired(&mut Context::from_waker(&second_waker)),
            "disarmed once fired"
        );

        // Armed again, with the same waker as before: it fires again.
        timer.as_mut().arm(Some(Instant::now() + step));
        assert!(
            !timer
                .as_mut()
                .poll_fired(&mut Context::from_waker(&second_waker))
        );
        tokio::time::advance(step).await;
        assert_eq!(second.count(), 2);
        assert!(
            timer
                .as_mut()
                .poll_fired(&mut Context::from_waker(&second_waker))
        );
    }
}

//! Model-checked with loom (`scripts/loom.sh`): a delivery against the
//! receiver's wait, a send against the driver's wait, and either side
//! ending against the other's push.

use std::collections::VecDeque;
use std::sync::Arc;
use std::task::{Context, Poll};

use loom::thread;
use ws_proto::Message;

use super::{Batch, Link};
use crate::error::Error;
use crate::sync::model_waker::waker;

fn text() -> Message {
    Message::Text("m".into())
}

/// The driver delivers one message while the receiver polls with `first`
/// (true: its first poll; false: its waker is registered already, the
/// lock-free path). Returns whether the poll returned it, and its wakes.
fn delivery_against_recv(first: bool) {
    let link = Arc::new(Link::new(4, 16));
    let (count, waker) = waker();
    let mut cx = Context::from_waker(&waker);
    let mut batch = Batch::default();
    if !first {
        assert!(link.poll_recv(&mut batch, &mut cx).is_pending());
    }
    let driver = {
        let link = link.clone();
        thread::spawn(move || {
            let mut items = VecDeque::from([Ok(text())]);
            link.deliver(&mut items);
        })
    };
    let got = link.poll_recv(&mut batch, &mut cx);
    driver.join().unwrap();
    match got {
        Poll::Ready(Some(Ok(_))) => {}
        Poll::Pending => {
            assert!(count.get() >= 1, "pending, and never woken");
            assert!(matches!(
                link.poll_recv(&mut batch, &mut cx),
                Poll::Ready(Some(Ok(_)))
            ));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_delivery_against_the_receivers_first_poll_is_never_lost() {
    loom::model(|| delivery_against_recv(true));
}

#[test]
fn a_delivery_against_a_registered_receiver_is_never_lost() {
    loom::model(|| delivery_against_recv(false));
}

#[test]
fn a_send_against_the_drivers_wait_is_never_lost() {
    loom::model(|| {
        let link = Arc::new(Link::new(4, 16));
        let (count, waker) = waker();
        let mut cx = Context::from_waker(&waker);
        // The driver has taken everything and registered its waker.
        let mut taken = VecDeque::new();
        let _ = link.take_commands(|| &mut taken, usize::MAX);
        let _ = link.poll_driver(&mut cx, false);
        let sender = {
            let link = link.clone();
            thread::spawn(move || link.try_send(text(), 1, None).is_ok())
        };
        let ready = link.poll_driver(&mut cx, false).is_ready();
        let sent = sender.join().unwrap();
        assert!(sent);
        assert!(ready || count.get() >= 1, "pending, and never woken");
        let _ = link.take_commands(|| &mut taken, usize::MAX);
        assert_eq!(taken.len(), 1, "the message reached the driver");
    });
}

#[test]
fn a_sender_waiting_for_budget_against_the_driver_ending_is_woken() {
    loom::model(|| {
        let link = Arc::new(Link::new(4, 1));
        assert!(link.try_send(text(), 1, None).is_ok());
        let sender = {
            let link = link.clone();
            thread::spawn(move || {
                let (count, waker) = waker();
                let result = link.try_send(text(), 1, Some(&mut Context::from_waker(&waker)));
                (result.err().map(|(_, error)| error), count)
            })
        };
        link.shut();
        let (error, count) = sender.join().unwrap();
        match error {
            // Full before the end: the end woke it to find out.
            Some(Error::Full) => assert_eq!(count.get(), 1, "a waiting sender never woken"),
            Some(Error::Closed(_)) => {}
            other => panic!("{other:?}"),
        }
        assert_eq!(link.queued(), 0, "nothing held after the end");
    });
}

#[test]
fn the_receiver_dropped_against_a_delivery_holds_nothing() {
    loom::model(|| {
        let link = Arc::new(Link::new(4, 16));
        let driver = {
            let link = link.clone();
            thread::spawn(move || {
                let mut items = VecDeque::from([Ok(text()), Ok(text())]);
                link.deliver(&mut items);
                assert!(items.is_empty());
            })
        };
        link.drop_receiver();
        driver.join().unwrap();
        assert!(link.drained(), "nothing left for a receiver that is gone");
    });
}

#[test]
fn a_batch_delivered_against_recv_many_is_taken_whole_or_woken_for() {
    loom::model(|| {
        let link = Arc::new(Link::new(4, 16));
        let (count, waker) = waker();
        let mut cx = Context::from_waker(&waker);
        let mut batch = Batch::default();
        let mut out = Vec::new();
        assert!(
            link.poll_recv_many(&mut batch, &mut out, 8, &mut cx)
                .is_pending()
        );
        let driver = {
            let link = link.clone();
            thread::spawn(move || {
                let mut items = VecDeque::from([Ok(text()), Ok(text()), Ok(text())]);
                link.deliver(&mut items);
            })
        };
        let first = link.poll_recv_many(&mut batch, &mut out, 8, &mut cx);
        driver.join().unwrap();
        if first.is_pending() {
            assert!(count.get() >= 1, "pending, and never woken");
        }
        while out.len() < 3 {
            match link.poll_recv_many(&mut batch, &mut out, 8, &mut cx) {
                Poll::Ready(Ok(n)) if n > 0 => {}
                other => panic!("{other:?} with {} taken", out.len()),
            }
        }
    });
}

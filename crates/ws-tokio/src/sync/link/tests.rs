//! The link's queues, wakes and budget, driven by hand.

use super::*;
use crate::wake_count::WakeCount;

fn text(s: &'static str) -> Message {
    Message::Text(s.into())
}

#[test]
fn a_sender_past_the_high_water_mark_waits_until_the_driver_takes() {
    let link = Link::new(4, 10);
    let wakes = WakeCount::new();
    let waker = wakes.waker();
    let mut cx = Context::from_waker(&waker);
    assert!(link.try_send(text("12345678"), 8, None).is_ok());
    // 8 + 8 > 10: full, and the sender is registered to wait.
    let (_, error) = link
        .try_send(text("12345678"), 8, Some(&mut cx))
        .unwrap_err();
    assert!(matches!(error, Error::Full));
    assert_eq!(link.queued(), 8);
    let mut taken = VecDeque::new();
    link.take_commands(|| &mut taken, usize::MAX);
    assert_eq!(taken.len(), 1);
    assert_eq!(link.queued(), 0);
    assert_eq!(wakes.count(), 1, "the waiting sender was woken");
    assert!(link.try_send(text("12345678"), 8, None).is_ok());
}

#[test]
fn send_many_queues_as_the_budget_allows_and_stops_before_a_close() {
    let link = Link::new(4, 10);
    let wakes = WakeCount::new();
    let waker = wakes.waker();
    let mut cx = Context::from_waker(&waker);
    let units = |m: &Message| match m {
        Message::Close(_) => None,
        m => Some(payload_len(m)),
    };
    let mut messages = vec![text("1234"), text("5678"), text("90"), text("x")];
    // 4 + 4 + 2 fit in 10; "x" waits, and the sender with it.
    assert!(
        link.poll_send_many(&mut messages, units, &mut cx)
            .is_pending()
    );
    assert_eq!(messages.len(), 1);
    assert_eq!(link.queued(), 10);
    assert!(link.take_notified(), "the first push wakes the driver");
    let mut taken = VecDeque::new();
    link.take_commands(|| &mut taken, usize::MAX);
    let sent: Vec<_> = taken
        .drain(..)
        .map(|c| match c {
            Command::Send(Message::Text(t), _) => t.as_str().to_owned(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(sent, ["1234", "5678", "90"]);
    assert_eq!(wakes.count(), 1, "the waiting sender was woken");
    messages.extend([Message::Close(None), text("after")]);
    assert!(
        link.poll_send_many(&mut messages, units, &mut cx)
            .is_ready()
    );
    assert_eq!(messages.len(), 2, "stopped before the close");
    assert_eq!(link.queued(), 1);
    link.close(None).unwrap();
    assert!(matches!(
        link.poll_send_many(&mut messages, units, &mut cx),
        Poll::Ready(Err(Error::Closed(None)))
    ));
}

#[test]
fn any_message_fits_an_empty_queue() {
    let link = Link::new(4, 10);
    assert!(
        link.try_send(text("far more than ten bytes"), 10, None)
            .is_ok()
    );
}

#[test]
fn the_driver_takes_commands_within_its_room() {
    let link = Link::new(4, 100);
    for _ in 0..3 {
        link.try_send(text("0123456789"), 10, None).unwrap();
    }
    let mut taken = VecDeque::new();
    link.take_commands(|| &mut taken, 15);
    assert_eq!(taken.len(), 2, "taken until the room is used up");
    assert_eq!(link.queued(), 10);
}

#[test]
fn the_driver_is_notified_of_a_push_into_an_empty_queue_or_told_of_what_is_left() {
    // The driver looks at the command queue only when notified, or when
    // the last take left commands: between the two, no push is missed.
    let link = Link::new(4, 100);
    assert!(!link.take_notified());
    link.try_send(text("0123456789"), 10, None).unwrap();
    assert!(link.take_notified(), "a push into an empty queue notifies");
    assert!(!link.take_notified(), "once");
    link.try_send(text("0123456789"), 10, None).unwrap();
    assert!(
        !link.take_notified(),
        "a push into a non-empty queue does not"
    );
    let mut taken = VecDeque::new();
    assert!(link.take_commands(|| &mut taken, 5).more, "one was left");
    taken.clear();
    assert!(!link.take_commands(|| &mut taken, 100).more);
    link.try_send(text("0123456789"), 10, None).unwrap();
    assert!(link.take_notified(), "the queue was empty again");
}

#[test]
fn a_sleeping_driver_is_woken_by_a_first_push_and_by_the_last_sender_leaving() {
    let link = Link::new(4, 100);
    link.add_sender();
    let wakes = WakeCount::new();
    let waker = wakes.waker();
    let mut cx = Context::from_waker(&waker);
    assert!(link.poll_driver(&mut cx, false).is_pending());
    link.try_send(text("a"), 1, None).unwrap();
    assert_eq!(wakes.count(), 1, "the first push wakes");
    assert!(link.poll_driver(&mut cx, false).is_ready());
    link.try_send(text("b"), 1, None).unwrap();
    assert!(
        link.poll_driver(&mut cx, false).is_pending(),
        "a push behind one not yet taken is the driver's to find"
    );
    let mut taken = VecDeque::new();
    assert!(!link.take_commands(|| &mut taken, usize::MAX).more);
    link.drop_sender();
    assert!(link.poll_driver(&mut cx, false).is_pending(), "one is left");
    link.drop_sender();
    assert_eq!(wakes.count(), 2, "the last sender wakes");
    assert!(link.poll_driver(&mut cx, false).is_ready());
    assert!(link.take_commands(|| &mut taken, usize::MAX).senders_gone);
}

#[test]
fn sends_fail_after_close() {
    let link = Link::new(4, 100);
    link.close(None).unwrap();
    assert!(matches!(link.close(None), Err(Error::Closed(None))));
    let (_, error) = link.try_send(text("late"), 4, None).unwrap_err();
    assert!(matches!(error, Error::Closed(None)));
}

#[test]
fn the_last_sender_gone_is_reported_after_its_commands() {
    let link = Link::new(4, 100);
    link.add_sender();
    link.try_send(text("a"), 1, None).unwrap();
    link.drop_sender();
    link.drop_sender();
    let mut taken = VecDeque::new();
    let outcome = link.take_commands(|| &mut taken, 0);
    // Room 0 still takes one command; the queue is then empty.
    assert_eq!(taken.len(), 1);
    assert!(outcome.senders_gone);
}

#[test]
fn the_receiver_gets_what_was_delivered_then_the_end() {
    let link = Link::new(2, 100);
    let wakes = WakeCount::new();
    let waker = wakes.waker();
    let mut cx = Context::from_waker(&waker);
    let mut taken = Batch::default();
    assert!(link.poll_recv(&mut taken, &mut cx).is_pending());
    let mut batch: VecDeque<Received> = [Ok(text("a")), Ok(text("b"))].into();
    link.deliver(&mut batch);
    assert!(batch.is_empty());
    assert_eq!(wakes.count(), 1);
    assert!(matches!(link.room(), Room::Free(0)));
    link.shut();
    assert_eq!(received(link.poll_recv(&mut taken, &mut cx)), "a");
    assert_eq!(received(link.poll_recv(&mut taken, &mut cx)), "b");
    assert!(matches!(
        link.poll_recv(&mut taken, &mut cx),
        Poll::Ready(None)
    ));
}

/// A link of `capacity` received messages, a waker for the receiver, and
/// its batch.
fn receiving(capacity: usize) -> (Link, std::task::Waker, Batch) {
    let waker = WakeCount::new().waker();
    (Link::new(capacity, 100), waker, Batch::default())
}

/// Delivers `texts` in one batch.
fn deliver(link: &Link, texts: &[&'static str]) {
    let mut batch: VecDeque<Received> = texts.iter().map(|t| Ok(text(t))).collect();
    link.deliver(&mut batch);
}

fn received(poll: Poll<Option<Received>>) -> String {
    match poll {
        Poll::Ready(Some(Ok(Message::Text(text)))) => text.as_str().to_owned(),
        _ => panic!("expected a text message"),
    }
}

#[test]
fn a_batch_counts_as_queued_until_its_last_message_is_returned() {
    let (link, waker, mut taken) = receiving(4);
    let mut cx = Context::from_waker(&waker);
    deliver(&link, &["a", "b", "c"]);
    assert_eq!(received(link.poll_recv(&mut taken, &mut cx)), "a");
    // "b" and "c" are in the receiver's batch: still counted.
    assert!(matches!(link.room(), Room::Free(2)));
    assert!(!link.drained());
    // Delivered while the batch is being returned: queued behind it.
    deliver(&link, &["d"]);
    assert!(matches!(link.room(), Room::Free(1)));
    assert_eq!(received(link.poll_recv(&mut taken, &mut cx)), "b");
    assert_eq!(received(link.poll_recv(&mut taken, &mut cx)), "c");
    // The last of the batch took the next one ("d") under the lock.
    assert!(matches!(link.room(), Room::Free(3)));
    assert_eq!(received(link.poll_recv(&mut taken, &mut cx)), "d");
    assert!(matches!(link.room(), Room::Free(4)));
    assert!(link.drained());
    assert!(link.poll_recv(&mut taken, &mut cx).is_pending());
}

#[test]
fn a_driver_waiting_for_room_is_woken_once_the_receiver_reports_it() {
    let (link, waker, mut taken) = receiving(3);
    let mut cx = Context::from_waker(&waker);
    let raised = || link.take_notified();
    deliver(&link, &["a", "b", "c"]);
    assert!(matches!(link.room(), Room::Free(0)));
    assert!(!raised());
    // Taking the batch returns "a" under the lock: one place free.
    assert_eq!(received(link.poll_recv(&mut taken, &mut cx)), "a");
    assert!(raised());
    assert!(matches!(link.room(), Room::Free(1)));
    deliver(&link, &["d"]);
    assert!(matches!(link.room(), Room::Free(0)));
    // "b" leaves the batch without the lock: the driver is not told...
    assert_eq!(received(link.poll_recv(&mut taken, &mut cx)), "b");
    assert!(!raised());
    // ...until the batch's last.
    assert_eq!(received(link.poll_recv(&mut taken, &mut cx)), "c");
    assert!(raised());
    assert!(matches!(link.room(), Room::Free(2)));
}

#[test]
fn an_empty_batch_holds_no_buffer() {
    let (link, waker, mut taken) = receiving(4);
    let mut cx = Context::from_waker(&waker);
    for round in 0..3 {
        deliver(&link, &["a", "b", "c"]);
        assert_eq!(received(link.poll_recv(&mut taken, &mut cx)), "a");
        assert!(taken.items.capacity() > 0, "round {round}");
        assert_eq!(received(link.poll_recv(&mut taken, &mut cx)), "b");
        assert_eq!(received(link.poll_recv(&mut taken, &mut cx)), "c");
        assert_eq!(taken.items.capacity(), 0, "round {round}");
        assert!(link.poll_recv(&mut taken, &mut cx).is_pending());
    }
    // The buffer went back to the queue, which the driver frees when idle.
    link.release_idle_buffers();
    assert_eq!(lock(&link.incoming).queue.capacity(), 0);
}

/// Receives up to `limit` messages; their texts, or the error.
fn received_many(
    link: &Link,
    taken: &mut Batch,
    limit: usize,
    cx: &mut Context<'_>,
) -> Poll<Result<Vec<String>, Error>> {
    let mut out = Vec::new();
    link.poll_recv_many(taken, &mut out, limit, cx).map_ok(|n| {
        assert_eq!(n, out.len());
        out.iter()
            .map(|m| match m {
                Message::Text(text) => text.as_str().to_owned(),
                _ => panic!("expected a text message"),
            })
            .collect()
    })
}

fn texts(poll: Poll<Result<Vec<String>, Error>>) -> Vec<String> {
    match poll {
        Poll::Ready(Ok(texts)) => texts,
        _ => panic!("expected messages"),
    }
}

#[test]
fn recv_many_takes_what_is_ready_up_to_its_limit_from_the_batch_then_the_queue() {
    let (link, waker, mut taken) = receiving(4);
    let mut cx = Context::from_waker(&waker);
    deliver(&link, &["a", "b", "c"]);
    // One message at a time first: "b" and "c" wait in the batch.
    assert_eq!(received(link.poll_recv(&mut taken, &mut cx)), "a");
    deliver(&link, &["d"]);
    assert!(texts(received_many(&link, &mut taken, 0, &mut cx)).is_empty());
    assert_eq!(
        texts(received_many(&link, &mut taken, 3, &mut cx)),
        ["b", "c", "d"]
    );
    assert!(matches!(link.room(), Room::Free(4)));
    assert!(link.drained());
    deliver(&link, &["e", "f", "g"]);
    assert_eq!(
        texts(received_many(&link, &mut taken, 2, &mut cx)),
        ["e", "f"]
    );
    // "g" is still queued, and counted.
    assert!(matches!(link.room(), Room::Free(3)));
    assert_eq!(texts(received_many(&link, &mut taken, 64, &mut cx)), ["g"]);
    assert!(received_many(&link, &mut taken, 64, &mut cx).is_pending());
    link.shut();
    assert!(texts(received_many(&link, &mut taken, 64, &mut cx)).is_empty());
}

#[test]
fn recv_many_returns_an_error_on_its_own_after_the_messages_before_it() {
    // The error at the queue's front, or left last in the batch.
    for split in [false, true] {
        let (link, waker, mut taken) = receiving(4);
        let mut cx = Context::from_waker(&waker);
        let mut batch: VecDeque<Received> = [
            Ok(text("a")),
            Ok(text("b")),
            Ok(text("c")),
            Err(Error::ConnectionLost),
        ]
        .into();
        link.deliver(&mut batch);
        link.shut();
        let first = if split {
            assert_eq!(received(link.poll_recv(&mut taken, &mut cx)), "a");
            vec!["b", "c"]
        } else {
            vec!["a", "b", "c"]
        };
        assert_eq!(texts(received_many(&link, &mut taken, 64, &mut cx)), first);
        assert!(matches!(
            received_many(&link, &mut taken, 64, &mut cx),
            Poll::Ready(Err(Error::ConnectionLost))
        ));
        assert!(link.drained());
        assert!(texts(received_many(&link, &mut taken, 64, &mut cx)).is_empty());
    }
}

#[test]
fn recv_many_wakes_a_driver_waiting_for_room() {
    let (link, waker, mut taken) = receiving(2);
    let mut cx = Context::from_waker(&waker);
    deliver(&link, &["a", "b"]);
    assert!(matches!(link.room(), Room::Free(0)));
    assert!(!link.take_notified());
    assert_eq!(texts(received_many(&link, &mut taken, 1, &mut cx)), ["a"]);
    assert!(link.take_notified());
    assert!(matches!(link.room(), Room::Free(1)));
}

#[test]
fn each_delivery_wakes_the_waiting_receiver_whose_waker_stays_registered() {
    let link = Link::new(4, 100);
    let wakes = WakeCount::new();
    let waker = wakes.waker();
    let mut cx = Context::from_waker(&waker);
    let mut taken = Batch::default();
    assert!(link.poll_recv(&mut taken, &mut cx).is_pending());
    for (round, message) in ["a", "b", "c"].into_iter().enumerate() {
        deliver(&link, &[message]);
        assert_eq!(wakes.count(), round + 1, "woken by delivery {round}");
        assert_eq!(received(link.poll_recv(&mut taken, &mut cx)), message);
        // Nothing more: waits without registering again.
        assert!(link.poll_recv(&mut taken, &mut cx).is_pending());
        assert!(received_many(&link, &mut taken, 8, &mut cx).is_pending());
    }
    link.shut();
    assert_eq!(wakes.count(), 4, "woken by the end");
    assert!(matches!(
        link.poll_recv(&mut taken, &mut cx),
        Poll::Ready(None)
    ));
}

#[test]
fn deliveries_before_the_receiver_looks_again_wake_it_once() {
    let (link, _, mut taken) = receiving(8);
    let wakes = WakeCount::new();
    let waker = wakes.waker();
    let mut cx = Context::from_waker(&waker);
    assert!(link.poll_recv(&mut taken, &mut cx).is_pending());
    deliver(&link, &["a"]);
    deliver(&link, &["b", "c"]);
    assert_eq!(wakes.count(), 1, "one wake for the burst");
    assert_eq!(
        texts(received_many(&link, &mut taken, 8, &mut cx)),
        ["a", "b", "c"]
    );
    // The queue was left empty: the next delivery wakes it again.
    deliver(&link, &["d"]);
    assert_eq!(wakes.count(), 2);
    // Taken in part (the limit), the rest is found without a wake.
    deliver(&link, &["e"]);
    assert_eq!(texts(received_many(&link, &mut taken, 1, &mut cx)), ["d"]);
    assert_eq!(texts(received_many(&link, &mut taken, 8, &mut cx)), ["e"]);
    assert!(received_many(&link, &mut taken, 8, &mut cx).is_pending());
    assert_eq!(wakes.count(), 2);
}

#[test]
fn a_receiver_polled_with_another_waker_is_woken_through_that_one() {
    let link = Link::new(4, 100);
    let (first, second) = (WakeCount::new(), WakeCount::new());
    let (first_waker, second_waker) = (first.waker(), second.waker());
    let mut taken = Batch::default();
    let mut cx = Context::from_waker(&first_waker);
    assert!(link.poll_recv(&mut taken, &mut cx).is_pending());
    // Moved to another task: nothing new, but its waker must be left.
    let mut cx = Context::from_waker(&second_waker);
    assert!(received_many(&link, &mut taken, 8, &mut cx).is_pending());
    deliver(&link, &["a"]);
    assert_eq!((first.count(), second.count()), (0, 1));
    assert_eq!(texts(received_many(&link, &mut taken, 8, &mut cx)), ["a"]);
}

#[test]
fn a_shut_link_lets_go_of_the_driver_s_waker() {
    let link = Link::new(4, 100);
    let wakes = WakeCount::new();
    let waker = wakes.waker();
    assert!(
        link.poll_driver(&mut Context::from_waker(&waker), false)
            .is_pending()
    );
    drop(waker);
    assert_eq!(std::sync::Arc::strong_count(&wakes), 2, "kept");
    // A sender may outlive the driver: the driver's task need not.
    link.shut();
    assert_eq!(std::sync::Arc::strong_count(&wakes), 1, "let go");
}

#[test]
fn nothing_is_queued_once_the_receiver_is_gone() {
    let link = Link::new(2, 100);
    link.drop_receiver();
    assert!(matches!(link.room(), Room::Gone));
    let mut batch: VecDeque<Received> = [Ok(text("a"))].into();
    link.deliver(&mut batch);
    assert!(batch.is_empty());
    assert!(link.drained());
}

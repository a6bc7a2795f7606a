//! The outbox's bounds, slow-consumer policies and batches.

use super::*;

fn frame(len: usize, fill: u8) -> SharedFrame {
    SharedFrame::new(&Message::Binary(vec![fill; len].into())).unwrap()
}

fn limits(max_frames: usize, policy: SlowConsumer) -> OutboxLimits {
    OutboxLimits {
        max_bytes: 1 << 20,
        max_frames,
        policy,
    }
}

/// Drains within `budget`: the bytes handed over, whether each piece
/// was a run, and whether frames were left.
fn drain(outbox: &Outbox, budget: usize) -> (Vec<u8>, Vec<bool>, bool) {
    let (mut bytes, mut runs) = (Vec::new(), Vec::new());
    let more = outbox
        .drain_with(budget, |piece| match piece {
            Piece::Shared(frame) => {
                bytes.extend_from_slice(&frame);
                runs.push(false);
            }
            Piece::Run(run) => {
                bytes.extend_from_slice(run);
                run.clear();
                runs.push(true);
            }
        })
        .unwrap();
    (bytes, runs, more)
}

/// An outbox holding `frames`, pushed under the default limits.
fn holding(frames: &[SharedFrame]) -> Outbox {
    let outbox = Outbox::new(Doorbell::default());
    for f in frames {
        assert_eq!(outbox.push(f, &OutboxLimits::default()), Pushed::Queued);
    }
    outbox
}

fn wire(frames: &[&SharedFrame]) -> Vec<u8> {
    frames.iter().flat_map(|f| f.as_bytes().to_vec()).collect()
}

#[test]
fn small_and_large_frames_leave_in_the_order_they_were_pushed() {
    let frames = [frame(10, 1), frame(20, 2), frame(5000, 3), frame(30, 4)];
    let outbox = holding(&frames);
    let [a, b, large, d] = &frames;
    assert_eq!(outbox.queued_bytes(), wire(&[a, b, large, d]).len());
    let (bytes, runs, more) = drain(&outbox, usize::MAX);
    assert_eq!(bytes, wire(&[a, b, large, d]));
    // The run before the large frame was sealed; the last is a run.
    assert_eq!(runs, [false, false, true]);
    assert!(!more);
    assert_eq!(outbox.queued_bytes(), 0);
}

#[test]
fn a_drain_stops_at_a_frame_boundary_within_its_budget() {
    let frames: Vec<_> = (0..3).map(|i| frame(100, i)).collect();
    let outbox = holding(&frames);
    // Two 102-byte frames fit in 250 bytes; the third waits.
    let (bytes, _, more) = drain(&outbox, 250);
    assert_eq!(bytes, wire(&[&frames[0], &frames[1]]));
    assert!(more);
    assert_eq!(outbox.queued_bytes(), 102);
    let (bytes, _, more) = drain(&outbox, 250);
    assert_eq!(bytes, wire(&[&frames[2]]));
    assert!(!more);
}

#[test]
fn a_sealed_run_is_split_at_a_frame_boundary_too() {
    let frames = [frame(100, 1), frame(100, 2), frame(2000, 3)];
    let outbox = holding(&frames);
    let [a, b, large] = &frames;
    let (bytes, _, more) = drain(&outbox, 150);
    assert_eq!(bytes, wire(&[a]));
    assert!(more);
    let (bytes, _, more) = drain(&outbox, 150);
    assert_eq!(bytes, wire(&[b]), "the large frame does not fit after it");
    assert!(more);
    let (bytes, _, more) = drain(&outbox, 150);
    assert_eq!(
        bytes,
        wire(&[large]),
        "the first frame goes whatever its size"
    );
    assert!(!more);
}

#[test]
fn a_queue_past_the_run_limit_holds_handles_not_copies() {
    let frames: Vec<_> = (0..40).map(|i| frame(1000, i)).collect();
    let outbox = holding(&frames);
    {
        let queue = outbox.lock();
        assert!(queue.bytes > RUN_LIMIT);
        let copied: usize = queue
            .pieces
            .iter()
            .filter(|(_, count)| *count > 1)
            .map(|(piece, _)| piece.len())
            .sum::<usize>()
            + queue.run.len();
        assert!(copied <= RUN_LIMIT, "{copied} bytes copied");
    }
    let refs: Vec<_> = frames.iter().collect();
    let (bytes, _, more) = drain(&outbox, usize::MAX);
    assert_eq!(bytes, wire(&refs));
    assert!(!more);
    // Drained, the queue copies small frames again.
    outbox.push(&frames[0], &OutboxLimits::default());
    assert_eq!(outbox.lock().run_frames, 1);
}

#[test]
fn frames_no_larger_than_a_handle_are_always_copied() {
    let outbox = Outbox::new(Doorbell::default());
    let limits = OutboxLimits::default();
    let tiny = frame(TINY - 2, 7);
    assert_eq!(tiny.len(), TINY);
    for _ in 0..1000 {
        outbox.push(&tiny, &limits);
    }
    let queue = outbox.lock();
    assert!(queue.bytes > RUN_LIMIT);
    assert!(queue.pieces.is_empty(), "no handles");
    assert_eq!(queue.run_frames, 1000);
}

#[test]
fn drop_oldest_drops_whole_small_frames_from_the_front() {
    let outbox = Outbox::new(Doorbell::default());
    let limits = limits(2, SlowConsumer::DropOldest);
    let frames: Vec<_> = (0..4).map(|i| frame(10 + i, i as u8)).collect();
    assert_eq!(outbox.push(&frames[0], &limits), Pushed::Queued);
    assert_eq!(outbox.push(&frames[1], &limits), Pushed::Queued);
    assert_eq!(outbox.push(&frames[2], &limits), Pushed::DroppedOldest(1));
    assert_eq!(outbox.push(&frames[3], &limits), Pushed::DroppedOldest(1));
    assert_eq!(outbox.dropped(), 2);
    let (bytes, _, _) = drain(&outbox, usize::MAX);
    assert_eq!(bytes, wire(&[&frames[2], &frames[3]]));
}

#[test]
fn drop_oldest_takes_frames_out_of_a_sealed_run() {
    let outbox = Outbox::new(Doorbell::default());
    let limits = limits(3, SlowConsumer::DropOldest);
    let (a, b, large, d) = (frame(10, 1), frame(11, 2), frame(3000, 3), frame(12, 4));
    for f in [&a, &b, &large] {
        outbox.push(f, &limits);
    }
    assert_eq!(outbox.push(&d, &limits), Pushed::DroppedOldest(1));
    assert_eq!(outbox.queued_bytes(), wire(&[&b, &large, &d]).len());
    let (bytes, _, _) = drain(&outbox, usize::MAX);
    assert_eq!(bytes, wire(&[&b, &large, &d]));
}

#[test]
fn small_frames_count_against_the_frame_bound() {
    let outbox = Outbox::new(Doorbell::default());
    let limits = limits(2, SlowConsumer::DropNewest);
    let f = frame(5, 0);
    assert_eq!(outbox.push(&f, &limits), Pushed::Queued);
    assert_eq!(outbox.push(&f, &limits), Pushed::Queued);
    assert_eq!(outbox.push(&f, &limits), Pushed::DroppedNewest);
    let (bytes, _, _) = drain(&outbox, usize::MAX);
    assert_eq!(bytes, wire(&[&f, &f]));
}

/// Pushes `frames` with one `push_many`: what became of each.
fn push_many(outbox: &Outbox, frames: &[SharedFrame], limits: &OutboxLimits) -> Vec<Pushed> {
    let mut outcomes = Vec::new();
    outbox.push_many(frames, limits, |pushed| outcomes.push(pushed));
    outcomes
}

#[test]
fn push_many_applies_the_limits_to_each_frame_in_order() {
    let frames: Vec<_> = (0..3).map(|i| frame(10, i)).collect();
    let outbox = Outbox::new(Doorbell::default());
    let outcomes = push_many(&outbox, &frames, &limits(2, SlowConsumer::DropNewest));
    assert_eq!(
        outcomes,
        [Pushed::Queued, Pushed::Queued, Pushed::DroppedNewest]
    );
    let outcomes = push_many(&outbox, &frames, &limits(2, SlowConsumer::DropOldest));
    assert_eq!(outcomes, [Pushed::DroppedOldest(1); 3]);
    assert_eq!(outbox.dropped(), 4);
    let (bytes, _, _) = drain(&outbox, usize::MAX);
    assert_eq!(bytes, wire(&[&frames[1], &frames[2]]));
}

#[test]
fn push_many_disconnects_once_and_refuses_the_rest() {
    let frames: Vec<_> = (0..4).map(|i| frame(10, i)).collect();
    let outbox = Outbox::new(Doorbell::default());
    let code = CloseCode::POLICY_VIOLATION;
    let outcomes = push_many(&outbox, &frames, &limits(2, SlowConsumer::Disconnect(code)));
    assert_eq!(
        outcomes,
        [
            Pushed::Queued,
            Pushed::Queued,
            Pushed::Disconnected,
            Pushed::Disconnected
        ]
    );
    // The two queued frames were discarded, and the third was not taken.
    assert_eq!(outbox.dropped(), 3);
    assert!(outbox.is_closed());
    assert_eq!(outbox.drain_with(usize::MAX, |_| {}).err(), Some(code));
}

/// Whether the driver's doorbell rang since the last call.
fn signalled(outbox: &Outbox) -> bool {
    outbox.doorbell.take_ring()
}

/// A batch is taken as its frames one at a time would be: the same
/// outcomes, drops, wake of the driver, queued bytes and end state,
/// whether the queue takes the joined frames in one copy (room for
/// all of them) or not (a bound, a closed queue, large frames, or a
/// queue past the size up to which frames are copied).
#[test]
fn a_batch_is_taken_as_its_frames_one_at_a_time() {
    let code = CloseCode::POLICY_VIOLATION;
    let policies = [
        SlowConsumer::DropNewest,
        SlowConsumer::DropOldest,
        SlowConsumer::Disconnect(code),
    ];
    let batches = [
        vec![frame(10, 1), frame(20, 2), frame(30, 3)],
        vec![frame(10, 1), frame(2000, 2), frame(10, 3)],
        vec![frame(600, 1), frame(600, 2)],
    ];
    for policy in policies {
        for (max_frames, max_bytes) in [(1024, 1 << 20), (4, 1 << 20), (1024, 700), (2, 100)] {
            for queued in [0, 1, 3, 33] {
                for closed in [false, true] {
                    for frames in &batches {
                        let limits = OutboxLimits {
                            max_bytes,
                            max_frames,
                            policy,
                        };
                        let case = format!(
                            "{policy:?} {max_frames} {max_bytes} queued {queued} closed {closed} frames {}",
                            frames.len()
                        );
                        let filler = frame(500, 9);
                        let [one, batched] = [(); 2].map(|_| {
                            let outbox = Outbox::new(Doorbell::default());
                            for _ in 0..queued {
                                outbox.push(&filler, &OutboxLimits::default());
                            }
                            if closed {
                                outbox.close();
                            }
                            signalled(&outbox);
                            outbox
                        });
                        let by_one = push_many(&one, frames, &limits);
                        let mut by_batch = Vec::new();
                        let batch = FrameBatch::new(frames.clone());
                        batched.push_batch(&batch, &limits, |pushed| by_batch.push(pushed));
                        assert_eq!(by_one, by_batch, "{case}");
                        assert_eq!(one.dropped(), batched.dropped(), "{case}");
                        assert_eq!(signalled(&one), signalled(&batched), "{case}");
                        assert_eq!(one.queued_bytes(), batched.queued_bytes(), "{case}");
                        assert_eq!(one.is_closed(), batched.is_closed(), "{case}");
                        if !one.is_closed() {
                            assert_eq!(
                                drain(&one, usize::MAX),
                                drain(&batched, usize::MAX),
                                "{case}"
                            );
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn only_several_small_frames_are_joined() {
    let joined = |frames: Vec<SharedFrame>| FrameBatch::new(frames).joined;
    let (a, b) = (frame(10, 1), frame(20, 2));
    assert_eq!(
        joined(vec![a.clone(), b.clone()]).as_deref(),
        Some(&wire(&[&a, &b])[..])
    );
    assert_eq!(joined(vec![a.clone()]), None, "one frame needs no join");
    assert_eq!(
        joined(vec![a, frame(2000, 3)]),
        None,
        "a large frame is shared"
    );
}

#[test]
fn an_idle_outbox_gives_its_buffers_back() {
    let outbox = Outbox::new(Doorbell::default());
    outbox.push(&frame(10, 0), &OutboxLimits::default());
    outbox.release_idle();
    assert!(outbox.lock().run.capacity() > 0, "kept while frames wait");
    drain(&outbox, usize::MAX);
    outbox.release_idle();
    assert_eq!(outbox.lock().run.capacity(), 0);
}

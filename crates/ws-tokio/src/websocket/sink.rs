//! Queueing for the [`Sink`](futures_util::Sink) of both handles, and the
//! uncompressed send.

use std::future::poll_fn;
use std::task::ready;

use super::{Checked, Context, Error, Message, Poll, Session, checked, cost};

/// Waits while the outgoing queue is at its high-water mark.
pub(super) fn poll_ready(shared: &Session, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
    shared.link.poll_ready(cx)
}

/// Queues the message: once `poll_ready` found room, the queue may pass
/// its high-water mark by at most this message.
pub(super) fn start_send(shared: &Session, message: Message) -> Result<(), Error> {
    match checked(message)? {
        Checked::Close(frame) => shared.link.close(frame),
        Checked::Data(message) => {
            let units = cost(&shared.link, &message);
            shared.link.force_send(message, units)
        }
    }
}

pub(super) fn poll_close(shared: &Session) -> Poll<Result<(), Error>> {
    let _ = shared.link.close(None);
    Poll::Ready(Ok(()))
}

/// Waits for room, then queues `message` to be sent uncompressed; the
/// message is queued whole or not at all.
pub(super) async fn send_uncompressed(shared: &Session, message: Message) -> Result<(), Error> {
    let mut message = Some(message);
    poll_fn(|cx| {
        ready!(shared.link.poll_ready(cx))?;
        let Some(message) = message.take() else {
            return Poll::Ready(Ok(()));
        };
        Poll::Ready(match checked(message)? {
            Checked::Close(frame) => shared.link.close(frame),
            Checked::Data(message) => {
                let units = cost(&shared.link, &message);
                shared.link.force_send_uncompressed(message, units)
            }
        })
    })
    .await
}

//! What crosses the link: commands one way, received items the other, and
//! the receiver's batch.

use std::collections::VecDeque;
use std::task::Waker;

use ws_proto::{CloseFrame, Message};

use super::super::fingerprint;
use crate::error::Error;

/// A command from the application to the connection's driver.
#[derive(Debug)]
pub(crate) enum Command {
    /// A message, and the units of the byte budget it holds: the driver
    /// gives them back once it takes the message.
    Send(Message, usize),
    /// As `Send`, never compressed (permessage-deflate).
    SendUncompressed(Message, usize),
    Close(Option<CloseFrame>),
}

/// The payload bytes of `message`: what it counts against the outgoing
/// budget.
#[inline]
pub(crate) fn payload_len(message: &Message) -> usize {
    match message {
        Message::Text(text) => text.len(),
        Message::Binary(data) | Message::Ping(data) | Message::Pong(data) => data.len(),
        Message::Close(_) => 0,
    }
}

/// One received item: a message, or the error that ended the connection.
pub(crate) type Received = Result<Message, Error>;

/// What the receiver keeps on its side: the items it took from the link in
/// one batch, returned one at a time without taking the lock (empty, it
/// holds no buffer), and which waker it left in the link.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    pub(super) items: VecDeque<Received>,
    /// The waker registered in the link, as the data and vtable addresses
    /// that `Waker::will_wake` compares (`[0, 0]` for none). It stays there
    /// until the receiver registers another, so while this matches and
    /// nothing was delivered, the receiver waits without the lock.
    pub(super) registered: [usize; 2],
}

impl Batch {
    /// Whether `waker` is the one registered in the link.
    #[inline]
    pub(super) fn is_registered(&self, waker: &Waker) -> bool {
        self.registered == fingerprint(waker)
    }
}

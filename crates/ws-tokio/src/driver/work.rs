//! The driver's working buffers, made on first use and given back when idle.

use std::collections::VecDeque;

use crate::output::Output;
use crate::sync::{Command, Received};

/// The driver's working buffers: the output, and the batches of messages
/// and commands on their way across the link.
#[derive(Default)]
pub(super) struct Buffers {
    pub(super) out: Output,
    pub(super) received: VecDeque<Received>,
    pub(super) commands: VecDeque<Command>,
}

/// The [`Buffers`], boxed and made on first use. They are dropped with the
/// other buffers once the socket has been idle for [`RELEASE_AFTER`] with
/// nothing in them: an idle connection then holds one pointer instead of
/// their 136 bytes, and a connection that never sends makes none.
#[derive(Default)]
pub(super) struct Work(pub(super) Option<Box<Buffers>>);

impl Work {
    #[inline]
    pub(super) fn get(&mut self) -> &mut Buffers {
        match self.0 {
            Some(ref mut buffers) => buffers,
            None => Self::make(&mut self.0),
        }
    }

    /// Kept out of line: the driver asks for the buffers many times per
    /// message, and makes them only after an idle spell.
    #[cold]
    #[inline(never)]
    fn make(slot: &mut Option<Box<Buffers>>) -> &mut Buffers {
        slot.insert(Box::default())
    }

    #[inline]
    pub(super) fn out(&mut self) -> &mut Output {
        &mut self.get().out
    }

    /// The bytes waiting to be written.
    #[inline]
    pub(super) fn out_len(&self) -> usize {
        self.0.as_ref().map_or(0, |buffers| buffers.out.len())
    }

    #[inline]
    pub(super) fn is_made(&self) -> bool {
        self.0.is_some()
    }

    /// Drops the buffers if nothing waits in them; otherwise gives back
    /// the output's buffer if it is empty.
    pub(super) fn release_idle(&mut self) {
        if let Some(buffers) = &mut self.0 {
            if buffers.out.is_empty() && buffers.received.is_empty() && buffers.commands.is_empty()
            {
                self.0 = None;
            } else {
                buffers.out.release_idle_buffer();
            }
        }
    }
}

//! The bytes a connection's driver has to write: encoded frames, and
//! payloads and broadcast frames queued without a copy.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use ws_proto::{Connection, Message};

use crate::sync::payload_len;
use crate::transport::Transport;

/// Payloads from this size on are written from the application's buffer
/// (a vectored write) instead of being copied into the output.
pub(crate) const SHARE_PAYLOAD_MIN: usize = 16 * 1024;

/// The bytes waiting to be written, in order: whole pieces (broadcast
/// frames shared with other connections, and sealed runs of encoded
/// frames), then the buffer frames are being encoded into.
#[derive(Default)]
pub(crate) struct Output {
    chunks: VecDeque<Bytes>,
    chunk_bytes: usize,
    pub(crate) tail: BytesMut,
}

/// The largest output buffer kept once everything in it was written.
pub(crate) const KEEP_OUTPUT: usize = 16 * 1024;

/// Shared frames (broadcasts) up to this size are copied into the output.
pub(crate) const COPY_SHARED_MAX: usize = 1024;

/// The most pieces handed to one vectored write.
pub(crate) const MAX_IOVECS: usize = 64;

impl Output {
    pub(crate) fn len(&self) -> usize {
        self.chunk_bytes + self.tail.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends a shared frame after everything encoded so far. A small one
    /// is copied: as a piece of its own it would cost more than its bytes,
    /// in memory (a handle per frame) and in the vectored write (which
    /// takes `MAX_IOVECS` pieces at a time). A large one is queued without
    /// copying.
    pub(crate) fn push_shared(&mut self, frame: Bytes) {
        if frame.len() <= COPY_SHARED_MAX {
            self.tail.extend_from_slice(&frame);
            return;
        }
        if !self.tail.is_empty() {
            let sealed = self.tail.split().freeze();
            self.chunk_bytes += sealed.len();
            self.chunks.push_back(sealed);
        }
        self.chunk_bytes += frame.len();
        self.chunks.push_back(frame);
    }

    /// Appends a run of small broadcast frames, taking every byte of `run`:
    /// into an empty output the buffers are swapped, and nothing is copied.
    pub(crate) fn take_run(&mut self, run: &mut BytesMut) {
        if self.tail.is_empty() {
            std::mem::swap(&mut self.tail, run);
        } else {
            self.tail.extend_from_slice(run);
            run.clear();
        }
    }

    /// Drops the first `n` bytes, which were written.
    pub(crate) fn advance(&mut self, mut n: usize) {
        while n > 0 {
            match self.chunks.front_mut() {
                Some(front) if n >= front.len() => {
                    n -= front.len();
                    self.chunk_bytes -= front.len();
                    self.chunks.pop_front();
                }
                Some(front) => {
                    front.advance(n);
                    self.chunk_bytes -= n;
                    n = 0;
                }
                None if n >= self.tail.len() => {
                    // Truncated rather than advanced: the buffer keeps its
                    // start, so the next frames are encoded at the front
                    // without a `reserve` first moving the space back.
                    self.tail.clear();
                    n = 0;
                }
                None => {
                    self.tail.advance(n);
                    n = 0;
                }
            }
        }
        // Once everything is written, a buffer grown by a burst is given
        // back; a smaller one is kept (already cleared above) for the next
        // pass's frames, rather than grown anew a reallocation at a time.
        if self.is_empty() && self.tail.capacity() > KEEP_OUTPUT {
            self.tail = BytesMut::new();
        }
    }

    /// Gives the buffer back if nothing is waiting (the socket is idle).
    pub(crate) fn release_idle_buffer(&mut self) {
        if self.is_empty() {
            self.tail = BytesMut::new();
        }
    }

    pub(crate) fn clear(&mut self) {
        self.chunks.clear();
        self.chunk_bytes = 0;
        self.tail = BytesMut::new();
    }

    pub(crate) fn poll_write<S: Transport>(
        &self,
        stream: &mut S,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<usize>> {
        if self.chunks.is_empty() {
            return Pin::new(stream).poll_write(cx, &self.tail);
        }
        let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
        let mut count = 0;
        for piece in self.chunks.iter().map(|b| &b[..]).chain([&self.tail[..]]) {
            if count == MAX_IOVECS {
                break;
            }
            if !piece.is_empty() {
                slices[count] = IoSlice::new(piece);
                count += 1;
            }
        }
        Pin::new(stream).poll_write_vectored(cx, &slices[..count])
    }
}

/// Encodes `message` into `output`; a large payload is queued as it is,
/// after its header, instead of copied.
#[inline]
pub(crate) fn send_into(
    conn: &mut Connection,
    message: &Message,
    output: &mut Output,
) -> Result<(), ws_proto::SendError> {
    tracing::trace!(len = payload_len(message), "sending message");
    if let Some(payload) = conn.send_vectored(message, &mut output.tail, SHARE_PAYLOAD_MIN)? {
        output.push_shared(payload);
    }
    Ok(())
}

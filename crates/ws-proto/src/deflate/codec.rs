//! The DEFLATE side of permessage-deflate (RFC 7692 section 7.2), on
//! zlib-rs: a message compressed with a sync flush and its `00 00 ff ff`
//! tail removed; a received message inflated frame by frame, the tail put
//! back, its size checked inside the inflate loop.
//!
//! Memory: nothing is allocated until the first compressed message. A
//! direction without context takeover keeps no state between messages, so
//! it borrows a compressor (or, for a message in one frame, an inflater)
//! kept per thread; a direction with context takeover has its own, made at
//! its first message, with the negotiated window.

use std::cell::RefCell;

use bytes::{Bytes, BytesMut};
use zlib_rs::{Deflate, DeflateConfig, DeflateFlush, Inflate, InflateFlush, Status, Strategy};

use super::{DeflateParams, PerMessageDeflate};
use crate::frame::{FrameHeader, RSV1, encode_frame};
use crate::message::Message;
use crate::opcode::OpCode;

/// RFC 7692 section 7.2.1: a sync flush ends with an empty stored block,
/// `00 00 ff ff`, which the sender removes and the receiver puts back.
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Thread-local scratch buffers above this are given back after use.
const SCRATCH_KEEP: usize = 64 * 1024;

/// What a compressor is made with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Tuning {
    window: u8,
    level: u8,
    mem_level: u8,
}

impl Tuning {
    fn compressor(self) -> Box<Deflate> {
        // zlib refuses raw windows of 8 bits. Run-length matching looks
        // back one byte only, so its output is valid for any window: an
        // 8-bit window is honoured by compressing with that strategy (the
        // 9-bit setting only sizes the compressor's own buffers).
        let (window, strategy) = if self.window <= 8 {
            (9, Strategy::Rle)
        } else {
            (self.window, Strategy::Default)
        };
        Box::new(Deflate::new_with_config(DeflateConfig {
            level: i32::from(self.level),
            window_bits: -i32::from(window),
            mem_level: i32::from(self.mem_level),
            strategy,
            ..DeflateConfig::default()
        }))
    }
}

/// Per thread: compressors for directions without context takeover (one
/// per tuning in use, usually one), an inflater for messages in one frame
/// from such peers, and the buffer messages are compressed into.
#[derive(Default)]
struct PerThread {
    compressors: Vec<(Tuning, Box<Deflate>)>,
    inflater: Option<Box<Inflate>>,
    scratch: Vec<u8>,
}

thread_local! {
    static PER_THREAD: RefCell<PerThread> = RefCell::default();
}

/// How a server compresses for connections that keep no compression
/// context (`server_no_context_takeover`): every compressed frame made
/// with one value is valid for every connection that has the same value,
/// so a broadcast compresses a message once for all of them. Made by
/// [`Connection::shared_compression`](crate::Connection::shared_compression).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SharedCompression {
    tuning: Tuning,
    threshold: u32,
}

impl SharedCompression {
    /// The message as one compressed, unmasked frame (RSV1 set), with
    /// this thread's compressor; `None` for a message under the
    /// threshold or not text or binary, which goes as a plain frame.
    pub fn compress_frame(&self, message: &Message) -> Option<Bytes> {
        let (opcode, payload) = match message {
            Message::Text(text) => (OpCode::Text, text.as_bytes()),
            Message::Binary(data) => (OpCode::Binary, &data[..]),
            _ => return None,
        };
        if payload.len() < self.threshold as usize {
            return None;
        }
        compress_per_thread(self.tuning, payload, |compressed| {
            let mut header = FrameHeader::unfragmented(opcode, None, compressed.len());
            header.rsv = RSV1;
            let mut frame = BytesMut::new();
            encode_frame(&header, compressed, &mut frame);
            frame.freeze()
        })
    }
}

/// Compresses `payload` as one message with this thread's compressor for
/// `tuning` (reset after), handing the bytes to `write`.
fn compress_per_thread<R>(
    tuning: Tuning,
    payload: &[u8],
    write: impl FnOnce(&[u8]) -> R,
) -> Option<R> {
    PER_THREAD.with(|per_thread| {
        let per_thread = &mut *per_thread.borrow_mut();
        let PerThread {
            compressors,
            scratch,
            ..
        } = per_thread;
        let at = match compressors.iter().position(|(t, _)| *t == tuning) {
            Some(at) => at,
            None => {
                compressors.push((tuning, tuning.compressor()));
                compressors.len() - 1
            }
        };
        let compressor = &mut compressors[at].1;
        let result = deflate(compressor, payload, scratch);
        compressor.reset();
        let written = result.map(|len| write(&scratch[..len]));
        if scratch.len() > SCRATCH_KEEP {
            *scratch = Vec::new();
        }
        written
    })
}

/// Why a received compressed message was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum InflateError {
    /// It inflated past the limit; at least this many bytes.
    TooBig(u64),
    /// It is not valid DEFLATE data.
    Corrupt,
}

/// One connection's permessage-deflate state.
pub(crate) struct Codec {
    /// What the handshake settled.
    pub(crate) params: DeflateParams,
    /// A server's codec: its frames are not masked, so they can be shared.
    server: bool,
    tx: Tuning,
    /// This end resets its context after each message.
    tx_reset: bool,
    threshold: usize,
    rx_window: u8,
    /// The peer resets its context after each message.
    rx_reset: bool,
    compressor: Option<Box<Deflate>>,
    inflater: Option<Box<Inflate>>,
    /// The peer's DEFLATE stream ended (a block with BFINAL) inside the
    /// message being received: the rest of it is not inflated, and the
    /// inflater starts afresh with the next message.
    rx_ended: bool,
}

impl std::fmt::Debug for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Codec")
            .field("tx", &self.tx)
            .field("tx_reset", &self.tx_reset)
            .field("rx_window", &self.rx_window)
            .field("rx_reset", &self.rx_reset)
            .finish_non_exhaustive()
    }
}

impl Codec {
    /// The codec of a server's connection (`server`) or a client's.
    pub(crate) fn new(server: bool, params: DeflateParams, settings: &PerMessageDeflate) -> Self {
        let settings = settings.clamped();
        let (tx_window, tx_reset, rx_window, rx_reset) = if server {
            (
                params.server_max_window_bits,
                params.server_no_context_takeover,
                params.client_max_window_bits,
                params.client_no_context_takeover,
            )
        } else {
            (
                params.client_max_window_bits,
                params.client_no_context_takeover,
                params.server_max_window_bits,
                params.server_no_context_takeover,
            )
        };
        Self {
            params,
            server,
            tx: Tuning {
                window: tx_window.clamp(8, 15),
                level: settings.level,
                mem_level: settings.mem_level,
            },
            tx_reset,
            threshold: settings.threshold,
            rx_window: rx_window.clamp(8, 15),
            rx_reset,
            compressor: None,
            inflater: None,
            rx_ended: false,
        }
    }

    /// Whether a message of `len` bytes is worth compressing.
    #[inline]
    pub(crate) fn compresses(&self, len: usize) -> bool {
        len >= self.threshold
    }

    /// Compresses `payload` as one message and hands the compressed bytes,
    /// tail removed, to `write`. `None` if the compressor failed (it never
    /// should): the message is then sent uncompressed.
    pub(crate) fn compress<R>(
        &mut self,
        payload: &[u8],
        write: impl FnOnce(&[u8]) -> R,
    ) -> Option<R> {
        if self.tx_reset {
            return compress_per_thread(self.tx, payload, write);
        }
        PER_THREAD.with(|per_thread| {
            let scratch = &mut per_thread.borrow_mut().scratch;
            let compressor = self.compressor.get_or_insert_with(|| self.tx.compressor());
            let result = deflate(compressor, payload, scratch);
            if result.is_none() {
                compressor.reset();
            }
            let written = result.map(|len| write(&scratch[..len]));
            if scratch.len() > SCRATCH_KEEP {
                *scratch = Vec::new();
            }
            written
        })
    }

    /// What a broadcast shares with this connection: on a server whose
    /// direction keeps no context, the compression every such connection
    /// with the same settings has.
    pub(crate) fn shared(&self) -> Option<SharedCompression> {
        (self.server && self.tx_reset).then(|| SharedCompression {
            tuning: self.tx,
            threshold: u32::try_from(self.threshold).unwrap_or(u32::MAX),
        })
    }

    /// Inflates one frame of a compressed message onto `out`, which holds
    /// what the message's earlier frames inflated to; `first` and `fin`
    /// say where the frame stands in its message. The message may not
    /// inflate past `limit` bytes: checked as the output grows, so no more
    /// than `limit` plus one chunk is ever held.
    pub(crate) fn inflate(
        &mut self,
        input: &[u8],
        first: bool,
        fin: bool,
        out: &mut BytesMut,
        limit: usize,
    ) -> Result<(), InflateError> {
        if self.rx_reset && first && fin {
            // A whole message from a peer without context: the thread's
            // inflater (window 15, which reads any smaller window too).
            return PER_THREAD.with(|per_thread| {
                let mut per_thread = per_thread.borrow_mut();
                let inflater = per_thread
                    .inflater
                    .get_or_insert_with(|| Box::new(Inflate::new(false, 15)));
                let result = inflate_message(inflater, input, true, out, limit).map(|_| ());
                inflater.reset(false);
                result
            });
        }
        if first {
            self.rx_ended = false;
        }
        let window = self.rx_window;
        let inflater = self
            .inflater
            .get_or_insert_with(|| Box::new(Inflate::new(false, window)));
        let result = if self.rx_ended {
            Ok(false)
        } else {
            inflate_message(inflater, input, fin, out, limit)
        };
        match result {
            Ok(ended) => self.rx_ended |= ended,
            Err(_) => self.inflater = None,
        }
        if fin && (self.rx_reset || self.rx_ended) {
            // Made again, with the negotiated window, at the next message.
            self.inflater = None;
        }
        result.map(|_| ())
    }
}

/// Compresses `input` with a sync flush into `scratch` (grown as needed,
/// its bytes kept initialised for reuse), and returns the length of the
/// output without its tail.
fn deflate(compressor: &mut Deflate, mut input: &[u8], scratch: &mut Vec<u8>) -> Option<usize> {
    let mut used = 0;
    loop {
        if scratch.len() - used < 64 {
            let grow = (input.len() / 2 + 256).max(scratch.len());
            scratch.resize(scratch.len() + grow, 0);
        }
        let (in_before, out_before) = (compressor.total_in(), compressor.total_out());
        let status = compressor.compress(input, &mut scratch[used..], DeflateFlush::SyncFlush);
        let consumed = (compressor.total_in() - in_before) as usize;
        let produced = (compressor.total_out() - out_before) as usize;
        input = &input[consumed..];
        used += produced;
        match status {
            Ok(Status::Ok | Status::BufError) => {}
            Ok(Status::StreamEnd) | Err(_) => return None,
        }
        // Room left after a sync flush with all input taken: complete.
        if input.is_empty() && used < scratch.len() {
            break;
        }
    }
    // RFC 7692 section 7.2.1: "Remove 4 octets (that are 0x00 0x00 0xff
    // 0xff) from the tail end."
    if scratch[..used].ends_with(&TAIL) {
        used -= TAIL.len();
    }
    Some(used)
}

/// Inflates one frame's `input` (and, for the message's last frame, the
/// tail of section 7.2.2) onto `out`. Returns whether the DEFLATE stream
/// ended (a final block): anything after it in the message is ignored.
fn inflate_message(
    inflater: &mut Inflate,
    input: &[u8],
    fin: bool,
    out: &mut BytesMut,
    limit: usize,
) -> Result<bool, InflateError> {
    if inflate_into(inflater, input, out, limit)? {
        return Ok(true);
    }
    // Section 7.2.2: "Append 4 octets of 0x00 0x00 0xff 0xff to the tail
    // end of the payload of the message."
    if fin && inflate_into(inflater, &TAIL, out, limit)? {
        return Ok(true);
    }
    Ok(false)
}

/// The inflate loop: output grows a chunk at a time, never more than one
/// byte past `limit` in all, so that a bomb fails before it takes memory.
fn inflate_into(
    inflater: &mut Inflate,
    mut input: &[u8],
    out: &mut BytesMut,
    limit: usize,
) -> Result<bool, InflateError> {
    // Inflate may hold output back when the buffer fills: go on until the
    // input is taken and the last call left room.
    let mut full = false;
    while !input.is_empty() || full {
        // One byte past the limit tells a message at the limit from one
        // over it.
        let room = limit.saturating_add(1).saturating_sub(out.len());
        if room == 0 {
            return Err(InflateError::TooBig(out.len() as u64));
        }
        let chunk = room.min((input.len() * 4).clamp(4096, 256 * 1024));
        let start = out.len();
        out.resize(start + chunk, 0);
        let (in_before, out_before) = (inflater.total_in(), inflater.total_out());
        let status = inflater.decompress(input, &mut out[start..], InflateFlush::SyncFlush);
        let consumed = (inflater.total_in() - in_before) as usize;
        let produced = (inflater.total_out() - out_before) as usize;
        out.truncate(start + produced);
        if out.len() > limit {
            return Err(InflateError::TooBig(out.len() as u64));
        }
        match status {
            Ok(Status::StreamEnd) => return Ok(true),
            Ok(Status::Ok | Status::BufError) => {}
            Err(_) => return Err(InflateError::Corrupt),
        }
        // Input left, room left, and nothing taken: the data cannot go on.
        if !input.is_empty() && consumed == 0 && produced < chunk {
            return Err(InflateError::Corrupt);
        }
        input = &input[consumed..];
        full = produced == chunk;
    }
    Ok(false)
}

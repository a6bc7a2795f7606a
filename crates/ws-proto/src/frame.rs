//! Frame headers (RFC 6455 section 5.2): incremental decoding and encoding.

use bytes::BytesMut;

use crate::error::ProtocolError;
use crate::opcode::OpCode;

/// The longest possible frame header: 2 fixed bytes, an 8-byte extended
/// length and a 4-byte masking key.
pub const MAX_HEADER_LEN: usize = 14;

/// Appends `header` and then `payload`, masked with the header's key if it
/// has one: a whole frame whose payload is already at hand.
#[inline]
pub(crate) fn encode_frame(header: &FrameHeader, payload: &[u8], out: &mut BytesMut) {
    out.reserve(header.encoded_len() + payload.len());
    header.encode(out);
    let start = out.len();
    out.extend_from_slice(payload);
    if let Some(key) = header.mask {
        crate::mask::apply_mask(&mut out[start..], key);
    }
}

/// The RSV1 bit in [`FrameHeader::rsv`]: permessage-deflate's "Per-Message
/// Compressed" bit (RFC 7692 section 6).
pub(crate) const RSV1: u8 = 0b100;

/// The result of an incremental decode: either how many more bytes are needed
/// before anything can be said, or the decoded value and how many bytes of the
/// input it used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded<T> {
    /// At least this many more bytes are needed; call again when they arrive.
    NeedMore(usize),
    /// A value was decoded from the first `consumed` bytes of the input.
    Done {
        /// The decoded value.
        value: T,
        /// How many bytes of the input the value took.
        consumed: usize,
    },
}

/// A decoded frame header: everything before the payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// FIN: this is the final fragment of a message.
    pub fin: bool,
    /// RSV1, RSV2, RSV3 as the low three bits (`0b100` is RSV1).
    pub rsv: u8,
    /// What the payload means.
    pub opcode: OpCode,
    /// The masking key, present on every client-to-server frame.
    pub mask: Option<[u8; 4]>,
    /// The payload length in bytes.
    pub payload_len: u64,
}

impl FrameHeader {
    /// The header of a whole message in one frame: FIN set, no reserved
    /// bits, masked with `mask` if given.
    pub fn unfragmented(opcode: OpCode, mask: Option<[u8; 4]>, payload_len: usize) -> Self {
        Self {
            fin: true,
            rsv: 0,
            opcode,
            mask,
            payload_len: payload_len as u64,
        }
    }

    /// Decodes a header from the start of `buf`.
    ///
    /// Never reads past the header and never looks at the payload, so the
    /// caller can check limits against [`payload_len`](Self::payload_len)
    /// before buffering any of it.
    ///
    /// # Errors
    ///
    /// [`ProtocolError::ReservedOpcode`] and
    /// [`ProtocolError::InvalidPayloadLength`]: the two header defects that
    /// can be seen without knowing the connection's role or state.
    pub fn decode(buf: &[u8]) -> Result<Decoded<Self>, ProtocolError> {
        let [b0, b1, ..] = *buf else {
            return Ok(Decoded::NeedMore(2 - buf.len()));
        };
        let opcode = OpCode::from_u8(b0 & 0x0F).ok_or(ProtocolError::ReservedOpcode(b0 & 0x0F))?;
        let masked = b1 & 0x80 != 0;
        let extended = match b1 & 0x7F {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let len = 2 + extended + if masked { 4 } else { 0 };
        if buf.len() < len {
            return Ok(Decoded::NeedMore(len - buf.len()));
        }
        let payload_len = match extended {
            2 => u64::from(u16::from_be_bytes([buf[2], buf[3]])),
            8 => {
                let value = u64::from_be_bytes(buf[2..10].try_into().expect("8 bytes"));
                // RFC 6455 section 5.2: "the most significant bit MUST be 0".
                if value >> 63 != 0 {
                    return Err(ProtocolError::InvalidPayloadLength);
                }
                value
            }
            _ => u64::from(b1 & 0x7F),
        };
        let mask = masked.then(|| buf[len - 4..len].try_into().expect("4 bytes"));
        Ok(Decoded::Done {
            value: Self {
                fin: b0 & 0x80 != 0,
                rsv: (b0 >> 4) & 0x7,
                opcode,
                mask,
                payload_len,
            },
            consumed: len,
        })
    }

    /// How many bytes [`encode`](Self::encode) writes.
    pub fn encoded_len(&self) -> usize {
        let extended = match self.payload_len {
            0..=125 => 0,
            126..=0xFFFF => 2,
            _ => 8,
        };
        2 + extended + if self.mask.is_some() { 4 } else { 0 }
    }

    /// Appends the header to `out`, using the shortest length encoding.
    ///
    /// Each piece is appended as an array of fixed size, which the compiler
    /// copies in a move or two: a slice of varying length would cost a call
    /// to `memcpy`, and a small message's frame is mostly header.
    pub fn encode(&self, out: &mut BytesMut) {
        let b0 = u8::from(self.fin) << 7 | (self.rsv & 0x7) << 4 | self.opcode.as_u8();
        let mask_bit = if self.mask.is_some() { 0x80 } else { 0 };
        match self.payload_len {
            short @ 0..=125 => out.extend_from_slice(&[b0, mask_bit | short as u8]),
            medium @ 126..=0xFFFF => {
                let [high, low] = (medium as u16).to_be_bytes();
                out.extend_from_slice(&[b0, mask_bit | 126, high, low]);
            }
            long => {
                out.extend_from_slice(&[b0, mask_bit | 127]);
                out.extend_from_slice(&long.to_be_bytes());
            }
        }
        if let Some(key) = self.mask {
            out.extend_from_slice(&key);
        }
    }
}

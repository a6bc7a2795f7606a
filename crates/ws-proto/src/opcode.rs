//! Frame opcodes (RFC 6455 section 5.2).

/// The opcode of a frame: what its payload means.
///
/// RFC 6455 section 5.2: "If an unknown opcode is received, the receiving
/// endpoint MUST _Fail the WebSocket Connection_." Reserved opcodes therefore
/// have no variant; [`OpCode::from_u8`] returns `None` for them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpCode {
    /// `0x0`: a continuation of a fragmented message.
    Continuation,
    /// `0x1`: the first (or only) frame of a text message.
    Text,
    /// `0x2`: the first (or only) frame of a binary message.
    Binary,
    /// `0x8`: a close frame.
    Close,
    /// `0x9`: a ping.
    Ping,
    /// `0xA`: a pong.
    Pong,
}

impl OpCode {
    /// Decodes the low four bits of a frame's first byte, or `None` for a
    /// reserved opcode (`0x3`-`0x7`, `0xB`-`0xF`).
    pub const fn from_u8(value: u8) -> Option<Self> {
        Some(match value {
            0x0 => Self::Continuation,
            0x1 => Self::Text,
            0x2 => Self::Binary,
            0x8 => Self::Close,
            0x9 => Self::Ping,
            0xA => Self::Pong,
            _ => return None,
        })
    }

    /// The four-bit wire value.
    pub const fn as_u8(self) -> u8 {
        match self {
            Self::Continuation => 0x0,
            Self::Text => 0x1,
            Self::Binary => 0x2,
            Self::Close => 0x8,
            Self::Ping => 0x9,
            Self::Pong => 0xA,
        }
    }

    /// Whether this is a control opcode (close, ping, pong).
    ///
    /// RFC 6455 section 5.5: "Control frames are identified by opcodes where
    /// the most significant bit of the opcode is 1."
    pub const fn is_control(self) -> bool {
        self.as_u8() & 0x8 != 0
    }
}

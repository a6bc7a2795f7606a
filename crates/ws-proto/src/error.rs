//! Errors of the frame layer: what the peer did wrong, and what a local send
//! may not do.

use crate::close_code::CloseCode;

/// A violation of RFC 6455 by the peer, or a received frame or message over a
/// configured limit. Every variant knows the close code it fails the
/// connection with ([`close_code`](Self::close_code)).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// An opcode the RFC reserves (section 5.2).
    #[error("reserved opcode {0:#x}")]
    ReservedOpcode(u8),
    /// A 64-bit payload length with its most significant bit set (5.2).
    #[error("payload length has its most significant bit set")]
    InvalidPayloadLength,
    /// RSV1, RSV2 or RSV3 set without an extension that defines them (5.2).
    #[error("reserved bits set without a negotiated extension")]
    ReservedBits,
    /// A server received a frame that was not masked (5.1).
    #[error("client frame is not masked")]
    UnmaskedFrame,
    /// A client received a frame that was masked (5.1).
    #[error("server frame is masked")]
    MaskedFrame,
    /// A control frame without FIN (5.5).
    #[error("fragmented control frame")]
    FragmentedControlFrame,
    /// A control frame with more than 125 bytes of payload (5.5).
    #[error("control frame payload of {0} bytes exceeds 125")]
    ControlFrameTooLong(u64),
    /// A continuation frame with no fragmented message in progress (5.4).
    #[error("continuation frame without a message in progress")]
    UnexpectedContinuation,
    /// A new text or binary frame in the middle of a fragmented message (5.4).
    #[error("new data frame while a fragmented message is in progress")]
    ExpectedContinuation,
    /// A frame larger than the configured maximum.
    #[error("frame of {size} bytes exceeds the limit of {limit}")]
    FrameTooLarge {
        /// The frame's payload length.
        size: u64,
        /// The configured limit.
        limit: usize,
    },
    /// A message larger than the configured maximum.
    #[error("message of at least {size} bytes exceeds the limit of {limit}")]
    MessageTooLarge {
        /// The message's length so far, including the frame that broke it.
        size: u64,
        /// The configured limit.
        limit: usize,
    },
    /// A message split into more fragments than the configured maximum.
    #[error("message has more than {limit} fragments")]
    TooManyFragments {
        /// The configured limit.
        limit: usize,
    },
    /// A text message, or part of one, that is not UTF-8 (8.1).
    #[error("text message is not valid UTF-8")]
    InvalidUtf8,
    /// A close frame whose body is a single byte (5.5.1).
    #[error("close frame payload of 1 byte")]
    InvalidClosePayload,
    /// A close code that may not be sent (7.4).
    #[error("invalid close code {0}")]
    InvalidCloseCode(u16),
    /// A close reason that is not UTF-8 (5.5.1).
    #[error("close reason is not valid UTF-8")]
    InvalidCloseReason,
    /// A compressed message that is not valid DEFLATE data (RFC 7692
    /// section 8: the connection fails; with 1007, as for other data
    /// inconsistent with its message type).
    #[error("compressed message is not valid DEFLATE data")]
    InvalidCompressedData,
}

impl ProtocolError {
    /// The close code that this violation fails the connection with.
    pub fn close_code(&self) -> CloseCode {
        match self {
            Self::FrameTooLarge { .. }
            | Self::MessageTooLarge { .. }
            | Self::TooManyFragments { .. } => CloseCode::MESSAGE_TOO_BIG,
            Self::InvalidUtf8 | Self::InvalidCompressedData => CloseCode::INVALID_PAYLOAD,
            _ => CloseCode::PROTOCOL_ERROR,
        }
    }
}

/// A message the connection refused to send.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// A close frame was already sent: RFC 6455 section 5.5.1, "The
    /// application MUST NOT send any more data frames after sending a Close
    /// frame."
    #[error("the connection is closing or closed")]
    Closed,
    /// A ping or pong with more than 125 bytes of payload.
    #[error("control frame payload of {0} bytes exceeds 125")]
    ControlFrameTooLong(usize),
    /// A close code that may not appear on the wire (1005, 1006, 1015, or
    /// outside the assigned ranges).
    #[error("close code {0} may not be sent")]
    InvalidCloseCode(u16),
    /// A close reason longer than 123 bytes.
    #[error("close reason of {0} bytes exceeds 123")]
    CloseReasonTooLong(usize),
    /// A control or close message where only text or binary is allowed,
    /// such as a broadcast.
    #[error("only text and binary messages can be broadcast")]
    NotData,
}

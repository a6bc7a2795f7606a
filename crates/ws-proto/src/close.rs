//! Close frames (RFC 6455 sections 5.5.1 and 7.4); their codes are in
//! `close_code.rs`.

use bytes::{BufMut, Bytes, BytesMut};

use crate::close_code::CloseCode;
use crate::error::{ProtocolError, SendError};
use crate::utf8::Utf8Bytes;

/// The longest close reason that fits in a control frame: 125 bytes of
/// payload less the 2-byte code.
pub const MAX_CLOSE_REASON_LEN: usize = 123;

/// The body of a close frame that carries a status code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseFrame {
    /// Why the connection is closing.
    pub code: CloseCode,
    /// A human-readable reason, at most [`MAX_CLOSE_REASON_LEN`] bytes.
    pub reason: Utf8Bytes,
}

impl CloseFrame {
    /// A close frame with the given code and reason.
    pub fn new(code: CloseCode, reason: impl Into<Utf8Bytes>) -> Self {
        Self {
            code,
            reason: reason.into(),
        }
    }

    /// Parses a received close payload. An empty payload carries no code.
    ///
    /// # Errors
    ///
    /// RFC 6455 section 5.5.1: "If there is a body, the first two bytes of
    /// the body MUST be a 2-byte unsigned integer", so a 1-byte body is
    /// [`ProtocolError::InvalidClosePayload`]; a code that may not be sent is
    /// [`ProtocolError::InvalidCloseCode`]; a reason that is not UTF-8 is
    /// [`ProtocolError::InvalidCloseReason`].
    pub fn parse(payload: Bytes) -> Result<Option<Self>, ProtocolError> {
        match payload.len() {
            0 => return Ok(None),
            1 => return Err(ProtocolError::InvalidClosePayload),
            _ => {}
        }
        let code = CloseCode(u16::from_be_bytes([payload[0], payload[1]]));
        if !code.is_valid_on_wire() {
            return Err(ProtocolError::InvalidCloseCode(code.0));
        }
        let reason = Utf8Bytes::try_from(payload.slice(2..))
            .map_err(|_| ProtocolError::InvalidCloseReason)?;
        Ok(Some(Self { code, reason }))
    }

    /// Checks that this frame may be sent.
    ///
    /// # Errors
    ///
    /// [`SendError::InvalidCloseCode`] for a code that may not appear on the
    /// wire (RFC 6455 section 7.4.1); [`SendError::CloseReasonTooLong`] for a
    /// reason over [`MAX_CLOSE_REASON_LEN`] bytes, which would not fit in a
    /// control frame (section 5.5).
    pub fn check_sendable(&self) -> Result<(), SendError> {
        if !self.code.is_valid_on_wire() {
            return Err(SendError::InvalidCloseCode(self.code.0));
        }
        if self.reason.len() > MAX_CLOSE_REASON_LEN {
            return Err(SendError::CloseReasonTooLong(self.reason.len()));
        }
        Ok(())
    }

    /// The payload bytes of this frame: the code, then the reason.
    pub fn encode(&self, out: &mut BytesMut) {
        out.reserve(2 + self.reason.len());
        out.put_u16(self.code.0);
        out.put_slice(self.reason.as_bytes());
    }
}

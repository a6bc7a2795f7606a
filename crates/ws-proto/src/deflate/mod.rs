//! permessage-deflate (RFC 7692): what one end offers or accepts, what the
//! handshake settled, and the codec a [`Connection`](crate::Connection)
//! runs when it was settled. `docs/compression.md` explains each setting,
//! the memory it costs and the guarantees.

mod codec;
mod negotiate;

pub use codec::SharedCompression;
pub(crate) use codec::{Codec, InflateError};
pub use negotiate::DeflateResponseError;

/// The extension's name in `Sec-WebSocket-Extensions`.
pub const PERMESSAGE_DEFLATE: &str = "permessage-deflate";

/// The permessage-deflate settings of one end: what a client offers, what
/// a server accepts, and how this end compresses.
///
/// Every field is public and documented with its default; start from
/// `PerMessageDeflate::default()` and change what you need with the setters
/// of the same names:
///
/// ```
/// use ws_proto::PerMessageDeflate;
///
/// // The smallest memory per connection on a server: no context kept
/// // between messages, so one compressor per thread serves every
/// // connection.
/// let deflate = PerMessageDeflate::default().server_no_context_takeover(true);
/// assert!(deflate.server_no_context_takeover);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PerMessageDeflate {
    /// The server starts each message with an empty window (RFC 7692
    /// section 7.1.1.1). A client asks for it in its offer; a server
    /// answers with it to every offer. Default: `false`.
    ///
    /// With it, the server keeps no compression state between messages:
    /// its connections share one compressor per thread instead of holding
    /// one each, and a broadcast is compressed once for all of them.
    pub server_no_context_takeover: bool,
    /// The client starts each message with an empty window (section
    /// 7.1.1.2). A client announces it in its offer; a server asks for it
    /// in every answer. Default: `false`.
    pub client_no_context_takeover: bool,
    /// The largest window, as a power of two (8 to 15), the server
    /// compresses with (section 7.1.2.1). A client asks for it in its offer
    /// when under 15; a server never uses more, whatever the offer.
    /// Default: 15 (32 KiB).
    ///
    /// A window of 8 bits cannot be asked of zlib, which refuses raw
    /// windows that small: a compressor told to use 8 bits looks back only
    /// one byte (runs of the same byte), which any window holds.
    pub server_max_window_bits: u8,
    /// The largest window (8 to 15) the client compresses with (section
    /// 7.1.2.2). A client offers `client_max_window_bits`, with this value
    /// when under 15; a server under 15 asks for it in its answer and
    /// declines offers that do not allow it. Default: 15.
    pub client_max_window_bits: u8,
    /// The compression level, 0 (none) to 9 (smallest output, slowest).
    /// Default: 3. On 16 KiB of JSON-like text (`docs/compression.md`)
    /// level 1 sends 5 002 bytes at about 1.4 times level 3's rate, level 3
    /// sends 3 265, and level 6 (zlib's and Python's default) 2 986 at
    /// roughly three quarters of level 3's rate: level 3 keeps most of the
    /// saving.
    pub level: u8,
    /// zlib's memory level, 1 to 9: the size of the compressor's hash
    /// tables. Default: 8. Lower levels save memory and compress worse
    /// (`docs/compression.md` gives the bytes per connection).
    pub mem_level: u8,
    /// Messages shorter than this are sent uncompressed: the DEFLATE
    /// block and its tail would cost more than they save. Default: 128.
    pub threshold: usize,
}

impl Default for PerMessageDeflate {
    fn default() -> Self {
        Self {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: 15,
            client_max_window_bits: 15,
            level: 3,
            mem_level: 8,
            threshold: 128,
        }
    }
}

impl PerMessageDeflate {
    /// Sets [`server_no_context_takeover`](Self::server_no_context_takeover).
    pub fn server_no_context_takeover(mut self, enabled: bool) -> Self {
        self.server_no_context_takeover = enabled;
        self
    }

    /// Sets [`client_no_context_takeover`](Self::client_no_context_takeover).
    pub fn client_no_context_takeover(mut self, enabled: bool) -> Self {
        self.client_no_context_takeover = enabled;
        self
    }

    /// Sets [`server_max_window_bits`](Self::server_max_window_bits),
    /// clamped to 8..=15.
    pub fn server_max_window_bits(mut self, bits: u8) -> Self {
        self.server_max_window_bits = bits.clamp(8, 15);
        self
    }

    /// Sets [`client_max_window_bits`](Self::client_max_window_bits),
    /// clamped to 8..=15.
    pub fn client_max_window_bits(mut self, bits: u8) -> Self {
        self.client_max_window_bits = bits.clamp(8, 15);
        self
    }

    /// Sets [`level`](Self::level), clamped to 0..=9.
    pub fn level(mut self, level: u8) -> Self {
        self.level = level.min(9);
        self
    }

    /// Sets [`mem_level`](Self::mem_level), clamped to 1..=9.
    pub fn mem_level(mut self, level: u8) -> Self {
        self.mem_level = level.clamp(1, 9);
        self
    }

    /// Sets [`threshold`](Self::threshold).
    pub fn threshold(mut self, bytes: usize) -> Self {
        self.threshold = bytes;
        self
    }

    /// The settings with every value in its range (fields are public, so
    /// they may have been set to anything).
    pub(crate) fn clamped(&self) -> Self {
        Self {
            server_max_window_bits: self.server_max_window_bits.clamp(8, 15),
            client_max_window_bits: self.client_max_window_bits.clamp(8, 15),
            level: self.level.min(9),
            mem_level: self.mem_level.clamp(1, 9),
            ..self.clone()
        }
    }
}

/// What the opening handshake settled for permessage-deflate: the
/// parameters of the one accepted offer (RFC 7692 section 7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct DeflateParams {
    /// The server resets its compression context after each message.
    pub server_no_context_takeover: bool,
    /// The client resets its compression context after each message.
    pub client_no_context_takeover: bool,
    /// The server's window, 8 to 15 bits.
    pub server_max_window_bits: u8,
    /// The client's window, 8 to 15 bits.
    pub client_max_window_bits: u8,
}

impl Default for DeflateParams {
    /// The extension with no parameters: both windows 15 bits, context
    /// kept on both sides.
    fn default() -> Self {
        Self {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: 15,
            client_max_window_bits: 15,
        }
    }
}

//! Limits and behaviour of a connection. `docs/limits.md` explains each
//! default and the attack it prevents.

/// The settings of a [`Connection`](crate::Connection).
///
/// Every field is public and documented with its default. Start from
/// `Config::default()` or [`Config::public_server`] and change what you need
/// with the setters of the same names:
///
/// ```
/// let config = ws_proto::Config::default().max_message_size(1 << 20).auto_pong(false);
/// assert_eq!(config.max_message_size, 1 << 20);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// The largest frame payload accepted, checked from the header before any
    /// of the payload is buffered. Default: 16 MiB.
    ///
    /// Prevents a peer from announcing a huge frame and making the receiver
    /// allocate for it. A larger frame fails the connection with 1009.
    pub max_frame_size: usize,
    /// The largest message accepted, all fragments together, checked at each
    /// frame header. Default: 16 MiB.
    ///
    /// Prevents unbounded growth of a message assembled from many frames that
    /// are each within `max_frame_size`. A larger message fails with 1009.
    pub max_message_size: usize,
    /// The most fragments one message may have; empty fragments count.
    /// Default: 131 072 (a 4 MiB message in 64-byte fragments needs 65 536).
    ///
    /// Prevents a peer from holding a message open forever with empty
    /// continuation frames, which cost work but no message bytes. More
    /// fragments fail the connection with 1009.
    pub max_fragments: usize,
    /// Whether a received ping is answered with a pong automatically.
    /// Default: `true`.
    ///
    /// RFC 6455 section 5.5.2: "Upon receipt of a Ping frame, an endpoint
    /// MUST send a Pong frame in response". Only the latest unanswered ping
    /// is kept, so a ping flood cannot queue unbounded pongs.
    pub auto_pong: bool,
}

impl Config {
    /// Sets [`max_frame_size`](Self::max_frame_size).
    pub fn max_frame_size(mut self, bytes: usize) -> Self {
        self.max_frame_size = bytes;
        self
    }

    /// Sets [`max_message_size`](Self::max_message_size).
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
        self
    }

    /// Sets [`max_fragments`](Self::max_fragments).
    pub fn max_fragments(mut self, count: usize) -> Self {
        self.max_fragments = count;
        self
    }

    /// Sets [`auto_pong`](Self::auto_pong).
    pub fn auto_pong(mut self, enabled: bool) -> Self {
        self.auto_pong = enabled;
        self
    }

    /// The defaults for servers open to the public internet: 1 MiB frames
    /// and messages and 1 024 fragments, enough for chat and RPC traffic
    /// while bounding what one connection can make the server buffer.
    pub fn public_server() -> Self {
        Self {
            max_frame_size: 1 << 20,
            max_message_size: 1 << 20,
            max_fragments: 1024,
            ..Self::default()
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_frame_size: 16 << 20,
            max_message_size: 16 << 20,
            max_fragments: 131_072,
            auto_pong: true,
        }
    }
}

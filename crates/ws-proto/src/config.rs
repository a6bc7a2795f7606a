//! Limits and behaviour of a connection. `docs/limits.md` explains each
//! default and the attack it prevents.

use std::time::Duration;

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
    /// How often a keepalive ping is sent, counted from the previous ping;
    /// `None` sends none. Default: 20 s. No second ping is sent while one
    /// awaits its pong, and none once a close frame was sent.
    ///
    /// Finds a peer that vanished without closing (a cable pulled, a NAT
    /// entry expired), which TCP alone notices only after many minutes.
    pub ping_interval: Option<Duration>,
    /// How long a keepalive ping may wait for its pong before the
    /// connection fails with close code 1011; `None` waits forever.
    /// Default: 10 s. Must be less than `ping_interval` (see
    /// [`check`](Self::check)). Only the latest ping's pong counts.
    pub ping_timeout: Option<Duration>,
    /// How long to wait for the peer's close frame after sending ours.
    /// Incoming data does not extend it. Default: 10 s. A span too long
    /// for the clock (such as `Duration::MAX`) means no deadline.
    ///
    /// Prevents a peer from holding a closing connection open forever by
    /// never answering, or by sending data instead of its close frame.
    pub close_timeout: Duration,
    /// permessage-deflate (RFC 7692): `None` for none, or the settings a
    /// client offers and a server accepts (see
    /// [`PerMessageDeflate`](crate::PerMessageDeflate)). Default: `None`;
    /// a client built with `ws-client` offers it unless told not to.
    ///
    /// The memory a connection costs, and the guarantees against
    /// decompression bombs, are in `docs/compression.md`.
    pub compression: Option<crate::PerMessageDeflate>,
}

/// Why a [`Config`] cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The heartbeat needs `ping_interval > ping_timeout`: a pong may take
    /// up to the timeout, and the next ping must not be due before it.
    #[error(
        "ping_interval ({interval:?}) must be greater than ping_timeout ({timeout:?}): \
         ensure ping_interval > ping_timeout"
    )]
    PingIntervalNotGreaterThanTimeout {
        /// The configured interval.
        interval: Duration,
        /// The configured timeout.
        timeout: Duration,
    },
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

    /// Sets [`ping_interval`](Self::ping_interval).
    pub fn ping_interval(mut self, interval: Option<Duration>) -> Self {
        self.ping_interval = interval;
        self
    }

    /// Sets [`ping_timeout`](Self::ping_timeout).
    pub fn ping_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.ping_timeout = timeout;
        self
    }

    /// Sets [`close_timeout`](Self::close_timeout).
    pub fn close_timeout(mut self, timeout: Duration) -> Self {
        self.close_timeout = timeout;
        self
    }

    /// Sets [`compression`](Self::compression).
    pub fn compression(mut self, compression: Option<crate::PerMessageDeflate>) -> Self {
        self.compression = compression;
        self
    }

    /// Checks the settings that depend on each other; servers and clients
    /// call it when they are built.
    ///
    /// # Errors
    ///
    /// [`ConfigError::PingIntervalNotGreaterThanTimeout`] when both
    /// heartbeat values are set and the interval is not greater than the
    /// timeout.
    pub fn check(&self) -> Result<(), ConfigError> {
        if let (Some(interval), Some(timeout)) = (self.ping_interval, self.ping_timeout)
            && interval <= timeout
        {
            return Err(ConfigError::PingIntervalNotGreaterThanTimeout { interval, timeout });
        }
        Ok(())
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
            ping_interval: Some(Duration::from_secs(20)),
            ping_timeout: Some(Duration::from_secs(10)),
            close_timeout: Duration::from_secs(10),
            compression: None,
        }
    }
}

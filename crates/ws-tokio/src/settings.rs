//! The driver's queue settings.

/// How a connection's driver queues messages between the socket and the
/// application. The keepalive and the close timeout belong to the protocol
/// core: they are in the connection's [`Config`](ws_proto::Config).
///
/// Every field is public and documented with its default, the same on both
/// sides; `ws-server` and `ws-client` take a whole `Settings` with their
/// builders' `settings(..)`, or one field at a time with the shortcuts of
/// the same names.
///
/// ```
/// let settings = ws_tokio::Settings::default().incoming_queue(64);
/// assert_eq!(settings.incoming_queue, 64);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Settings {
    /// Bytes of outgoing payload queued before `send().await` waits and
    /// `try_send` reports [`Error::Full`](crate::Error::Full). Default:
    /// 1 MiB; at most 4 GiB (a larger value counts as 4 GiB), at least 1.
    ///
    /// Prevents a handler that produces faster than the peer reads from
    /// queueing without bound.
    pub write_high_water: usize,
    /// Received messages queued for the application before the driver stops
    /// reading the socket. Default: 16; at least 1.
    ///
    /// Prevents a peer that sends faster than the application reads from
    /// queueing without bound: TCP pushes back instead.
    pub incoming_queue: usize,
    /// Also deliver received pings and pongs to the application, after the
    /// driver has answered them. Default: off.
    pub control_frames: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            write_high_water: 1 << 20,
            incoming_queue: 16,
            control_frames: false,
        }
    }
}

impl Settings {
    /// Sets [`write_high_water`](Self::write_high_water).
    pub fn write_high_water(mut self, bytes: usize) -> Self {
        self.write_high_water = bytes.max(1);
        self
    }

    /// Sets [`incoming_queue`](Self::incoming_queue).
    pub fn incoming_queue(mut self, messages: usize) -> Self {
        self.incoming_queue = messages.max(1);
        self
    }

    /// Sets [`control_frames`](Self::control_frames).
    pub fn control_frames(mut self, deliver: bool) -> Self {
        self.control_frames = deliver;
        self
    }
}

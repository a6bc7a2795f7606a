//! The driver's queue settings.

/// How a connection's driver queues messages between the socket and the
/// application. The keepalive and the close timeout belong to the protocol
/// core: they are in the connection's [`Config`](ws_proto::Config).
///
/// Every setting has a documented default; `ws-server` and `ws-client` expose
/// them on their builders.
#[derive(Debug, Clone)]
pub struct Settings {
    pub(crate) write_high_water: usize,
    pub(crate) incoming_queue: usize,
    pub(crate) control_frames: bool,
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
    /// Bytes of outgoing payload queued before `send().await` waits and
    /// `try_send` reports [`Error::Full`]. Default: 1 MiB; at most 4 GiB
    /// (a larger value counts as 4 GiB).
    pub fn write_high_water(mut self, bytes: usize) -> Self {
        self.write_high_water = bytes.max(1);
        self
    }

    /// Received messages queued for the application before the driver stops
    /// reading the socket (TCP backpressure). Default: 16.
    pub fn incoming_queue(mut self, messages: usize) -> Self {
        self.incoming_queue = messages.max(1);
        self
    }

    /// Also deliver received pings and pongs to the application, after the
    /// driver has answered them. Default: off.
    pub fn control_frames(mut self, deliver: bool) -> Self {
        self.control_frames = deliver;
        self
    }
}

//! What a connection's driver and its application handles share, in one
//! allocation for the connection's life: the link between them and what is
//! known about the connection.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, LazyLock, OnceLock};
use std::time::Duration;

use http::Response;
use ws_proto::{CloseFrame, Role};

use crate::handshake::{Handshake, StoredRequest};
use crate::outbox::Outbox;
use crate::sync::Link;

/// What the driver and both halves share, in one allocation: the link
/// and what is known about the connection.
#[derive(Debug)]
pub(crate) struct Session {
    pub(crate) link: Link,
    pub(crate) request: StoredRequest,
    /// The 101 response, on a client (boxed: a server has none).
    pub(crate) response: Option<Box<Response<()>>>,
    pub(crate) peer: Option<SocketAddr>,
    pub(crate) protocol: Option<Box<str>>,
    /// The round trip of the last keepalive ping answered, in microseconds
    /// plus one; 0 before the first.
    pub(crate) rtt: AtomicU32,
    /// The close frame the peer sent, once it has (boxed: an open
    /// connection has none).
    pub(crate) peer_close: OnceLock<Box<CloseFrame>>,
    /// Whether this end sent the first close frame.
    pub(crate) initiated_close: AtomicBool,
    /// Broadcast frames waiting for the driver: made when the application
    /// first asks for it (on a server connection), or at the end, the
    /// closed outbox every connection that never broadcast shares.
    pub(crate) outbox: OnceLock<Arc<Outbox>>,
    pub(crate) role: Role,
}

impl Session {
    pub(crate) fn new(link: Link, handshake: Handshake, role: Role) -> Self {
        Self {
            link,
            request: StoredRequest::new(handshake.request),
            response: handshake.response.map(Box::new),
            peer: handshake.peer,
            protocol: handshake.protocol.map(String::into_boxed_str),
            outbox: OnceLock::new(),
            role,
            rtt: AtomicU32::new(0),
            peer_close: OnceLock::new(),
            initiated_close: AtomicBool::new(false),
        }
    }

    /// The outbox, once made.
    pub(crate) fn outbox(&self) -> Option<&Outbox> {
        self.outbox.get().map(|outbox| &**outbox)
    }

    /// The outbox, made on first use: most connections never broadcast, and
    /// one made for each would cost every idle connection about a tenth of
    /// its memory.
    pub(crate) fn make_outbox(&self) -> &Arc<Outbox> {
        let mut made = false;
        let outbox = self.outbox.get_or_init(|| {
            made = true;
            Arc::default()
        });
        if made {
            // The driver waits on the outbox's signal only once there is an
            // outbox: it looks again when woken.
            self.link.wake_driver();
        }
        outbox
    }

    /// The driver's side: the connection has ended, and so has broadcasting
    /// to it. A connection that never made its outbox gets the shared
    /// closed one, so that an outbox asked for later takes nothing.
    pub(crate) fn close_outbox(&self) {
        static CLOSED: LazyLock<Arc<Outbox>> = LazyLock::new(|| {
            let outbox = Arc::new(Outbox::default());
            outbox.close();
            outbox
        });
        let mut shared = false;
        let outbox = self.outbox.get_or_init(|| {
            shared = true;
            CLOSED.clone()
        });
        if !shared {
            outbox.close();
        }
    }

    pub(crate) fn record_initiated_close(&self) {
        self.initiated_close.store(true, Ordering::Relaxed);
    }

    pub(crate) fn record_rtt(&self, rtt: Duration) {
        // 32 bits of microseconds: 71 minutes, far beyond any ping timeout.
        let micros = u32::try_from(rtt.as_micros()).unwrap_or(u32::MAX - 1);
        self.rtt.store(micros + 1, Ordering::Relaxed);
    }

    pub(crate) fn record_close(&self, frame: CloseFrame) {
        let _ = self.peer_close.set(Box::new(frame));
    }
}

/// The driver's handle on what it shares with the application: shuts the
/// link when dropped, however the driver ends (finished, or its task
/// aborted).
pub(crate) struct DriverLink(pub(crate) Arc<Session>);

impl DriverLink {
    /// What is known about the connection, beside the link.
    pub(crate) fn shared(&self) -> &Session {
        &self.0
    }
}

impl Drop for DriverLink {
    fn drop(&mut self) {
        self.0.link.shut();
    }
}

impl std::ops::Deref for DriverLink {
    type Target = Link;
    fn deref(&self) -> &Link {
        &self.0.link
    }
}

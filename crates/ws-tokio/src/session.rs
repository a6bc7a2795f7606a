//! What a connection's driver and its application handles share, in one
//! allocation for the connection's life: the link between them and what is
//! known about the connection.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use http::Response;
use ws_proto::{CloseFrame, Connection, DeflateParams, Role, SharedCompression};

use crate::feed::{AttachError, Attached, Doorbell, Feed, downcast};
use crate::handshake::{Handshake, StoredRequest};
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
    /// Frames queued by others (a broadcast) for the driver: set when the
    /// first feed is attached (on a server connection), or at the end.
    /// Most connections never take one, and one made for each would cost
    /// every idle connection about a tenth of its memory.
    pub(crate) feed: OnceLock<Attached>,
    pub(crate) role: Role,
    /// permessage-deflate, when the handshake settled it (boxed: most
    /// connections run without it).
    pub(crate) compression: Option<Box<Compression>>,
}

/// A connection's permessage-deflate, as its handles and a hub see it.
#[derive(Debug)]
pub(crate) struct Compression {
    pub(crate) params: DeflateParams,
    pub(crate) shared: Option<SharedCompression>,
}

impl Session {
    pub(crate) fn new(link: Link, handshake: Handshake, conn: &Connection) -> Self {
        let compression = conn.deflate_params().map(|params| {
            Box::new(Compression {
                params,
                shared: conn.shared_compression(),
            })
        });
        let role = conn.role();
        Self {
            compression,
            link,
            request: StoredRequest::new(handshake.request),
            response: handshake.response.map(Box::new),
            peer: handshake.peer,
            protocol: handshake.protocol.map(String::into_boxed_str),
            feed: OnceLock::new(),
            role,
            rtt: AtomicU32::new(0),
            peer_close: OnceLock::new(),
            initiated_close: AtomicBool::new(false),
        }
    }

    /// The feed and its doorbell, once attached.
    pub(crate) fn feed(&self) -> Option<(&dyn Feed, &Doorbell)> {
        self.feed.get().and_then(Attached::feed)
    }

    /// Attaches the feed `make` returns, unless one is attached already:
    /// then that one, if it is an `F`.
    pub(crate) fn attach_feed<F: Feed>(
        &self,
        make: impl FnOnce(Doorbell) -> F,
    ) -> Result<Arc<F>, AttachError> {
        if self.role == Role::Client {
            return Err(AttachError::Client);
        }
        let mut made = None;
        let attached = self.feed.get_or_init(|| {
            let doorbell = Doorbell::default();
            let feed = Arc::new(make(doorbell.clone()));
            made = Some(feed.clone());
            Attached::Feed(feed, doorbell)
        });
        if let Some(feed) = made {
            // The driver waits on the doorbell only once there is a feed:
            // it looks again when woken.
            self.link.wake_driver();
            return Ok(feed);
        }
        downcast(attached)
    }

    /// The driver's side: the connection has ended, and so has its feed.
    /// A connection that never took one is marked, so that a feed asked
    /// for later is refused.
    pub(crate) fn close_feed(&self) {
        let attached = self.feed.get_or_init(|| Attached::Ended);
        if let Some((feed, doorbell)) = attached.feed() {
            feed.close();
            doorbell.release();
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

//! A Redis pub/sub [`Backplane`] for `ws-server`'s [`Hub`]: one broadcast
//! across many server processes.
//!
//! Behind a load balancer, the clients of one room connect to different
//! instances of a server. With a [`RedisBackplane`] in each instance's
//! hub, a publication on any instance reaches the room's members on every
//! instance: the hub delivers locally, the backplane forwards the
//! publication to Redis, and every other instance's backplane hands it to
//! its own hub. The application code is the same as on one process.
//!
//! ```no_run
//! use ws_redis::RedisBackplane;
//! use ws_server::Hub;
//!
//! # async fn run() -> Result<(), ws_redis::BuildError> {
//! let backplane = RedisBackplane::builder("redis://127.0.0.1:6379")
//!     .prefix("chat")
//!     .build()?;
//! let hub = Hub::builder().backplane(backplane.clone()).build();
//! // ... serve, register connections, publish as usual; then, at any time:
//! println!("{:?}", backplane.stats());
//! # Ok(())
//! # }
//! ```
//!
//! # How it works
//!
//! - **Channels.** One Redis channel per room, `{prefix}:room:{room}`, and
//!   `{prefix}:all` for publications to every member. An instance
//!   subscribes to a room's channel when the room gets its first member
//!   here and unsubscribes when it empties, so it hears only what its
//!   members need.
//! - **The envelope** is small, binary and versioned: the publishing
//!   instance's id, a sequence number per instance and channel, the room,
//!   text or binary, and the payload. An instance ignores its own
//!   publications (its hub delivered them already). A malformed envelope
//!   (another version, cut short, not UTF-8) is counted and dropped.
//! - **Publishing never blocks the hub.** Forwards go into a bounded queue
//!   and one task sends what has gathered as one pipeline: one round trip
//!   for many publications. When the queue is full, forwards are dropped
//!   and counted.
//! - **Redis down or restarted.** Local delivery goes on. Forwards are
//!   dropped and counted; both connections come back with backoff (50 ms,
//!   doubling, at most 1 s) and the subscriptions with them; a log line
//!   says how many forwards were lost, and the receivers count the gaps in
//!   each sender's sequence.
//! - **Bounded.** The publishing queue holds at most
//!   [`queue`](RedisBackplaneBuilder::queue) publications; what Redis
//!   pushes is read into a queue of
//!   [`inbound_queue`](RedisBackplaneBuilder::inbound_queue) messages, past
//!   which messages are dropped (and counted as gaps by their receiver).
//!
//! The delivery contract (at most once, in order per publishing instance,
//! `except` applied on the publishing instance only) and what happens at a
//! failover are in `docs/scale-out.md`.
//!
//! The client is the `redis` crate (redis-rs): the most used Redis client
//! for Rust, on Tokio, with RESP3 push messages. Subscriptions run on a
//! RESP3 connection whose pushes go into a bounded queue of ours, so a
//! burst Redis sends faster than the hub delivers cannot grow memory
//! without bound (its classic pub/sub connection reads into an unbounded
//! one).

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;
use ws_server::{Audience, Backplane, Hub, Publication, WeakHub};

mod connection;
mod envelope;
mod publisher;
mod subscriber;

use connection::Outgoing;
use subscriber::RoomChange;

/// Why a [`RedisBackplane`] could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The Redis URL is not one the client understands
    /// (`redis://[user:password@]host[:port][/db]`; TLS, `rediss://`, is
    /// not built in).
    #[error("bad Redis URL: {0}")]
    Url(#[source] redis::RedisError),
    /// [`RedisBackplaneBuilder::build`] runs the backplane's tasks on the
    /// current Tokio runtime, and there is none.
    #[error("RedisBackplane::build must be called within a Tokio runtime")]
    NoRuntime,
}

/// The settings of a [`RedisBackplane`]; start with
/// [`RedisBackplane::builder`].
#[derive(Debug, Clone)]
pub struct RedisBackplaneBuilder {
    url: String,
    prefix: String,
    queue: usize,
    inbound_queue: usize,
    batch: usize,
    sharded: bool,
}

impl RedisBackplaneBuilder {
    /// The prefix of the channel names; default `ws`. Servers that should
    /// not hear each other share a Redis under different prefixes.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Publications waiting to go to Redis; default 8 192. Past it,
    /// forwards are dropped and counted. The memory it can take is this
    /// times the size of the publications.
    pub fn queue(mut self, publications: usize) -> Self {
        self.queue = publications.max(1);
        self
    }

    /// Messages from Redis waiting to be delivered to the hub; default
    /// 8 192. Past it, messages are dropped (and counted as gaps by their
    /// receiver): an instance that cannot keep up with what the others
    /// publish falls behind by at most this many, not by seconds.
    pub fn inbound_queue(mut self, messages: usize) -> Self {
        self.inbound_queue = messages.max(1);
        self
    }

    /// Redis Cluster 7+ with sharded pub/sub; default off. The URL names
    /// one node of the cluster (the others are discovered), publications
    /// go out with `SPUBLISH` and rooms are heard with `SSUBSCRIBE`: each
    /// room's channel is carried only by the shard that owns its slot,
    /// instead of by every node of the cluster as classic pub/sub is.
    /// Every instance of a server must agree on this setting.
    pub fn sharded(mut self, sharded: bool) -> Self {
        self.sharded = sharded;
        self
    }

    /// The most publications sent to Redis in one pipeline; default 1 024.
    pub fn batch(mut self, publications: usize) -> Self {
        self.batch = publications.max(1);
        self
    }

    /// The backplane, with its two tasks (one publishing, one subscribed)
    /// started on the current Tokio runtime. They connect in the
    /// background and keep reconnecting: a Redis that is down at start is
    /// not an error. They end once every handle to the backplane, the
    /// hub's included, is dropped.
    ///
    /// # Errors
    ///
    /// [`BuildError::Url`] for a URL the client does not understand,
    /// [`BuildError::NoRuntime`] outside a Tokio runtime.
    pub fn build(self) -> Result<RedisBackplane, BuildError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| BuildError::NoRuntime)?;
        let target = connection::Target::new(&self.url, self.sharded).map_err(BuildError::Url)?;
        let shared = Arc::new(Shared {
            node: node_id(),
            prefix: self.prefix,
            hub: OnceLock::new(),
            stats: Counters::default(),
        });
        let (out, outgoing) = mpsc::channel(self.queue);
        let (rooms, changes) = mpsc::unbounded_channel();
        runtime.spawn(publisher::run(
            target.clone(),
            outgoing,
            self.batch,
            shared.clone(),
        ));
        runtime.spawn(subscriber::run(
            target,
            changes,
            self.inbound_queue,
            shared.clone(),
        ));
        Ok(RedisBackplane {
            inner: Arc::new(Inner {
                shared,
                out,
                rooms,
                seqs: Mutex::default(),
            }),
        })
    }
}

/// A [`Backplane`] on Redis pub/sub. A cheap, cloneable handle: give one
/// to [`HubBuilder::backplane`](ws_server::HubBuilder::backplane), keep
/// one for [`stats`](Self::stats).
#[derive(Clone)]
pub struct RedisBackplane {
    inner: Arc<Inner>,
}

impl fmt::Debug for RedisBackplane {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBackplane")
            .field("node", &format_args!("{:016x}", self.inner.shared.node))
            .field("prefix", &self.inner.shared.prefix)
            .field("stats", &self.stats())
            .finish()
    }
}

/// What the backplane's handles own: the ends its tasks listen on (the
/// tasks stop when these are dropped) and the sequence numbers.
struct Inner {
    shared: Arc<Shared>,
    out: mpsc::Sender<Outgoing>,
    rooms: mpsc::UnboundedSender<RoomChange>,
    /// The last sequence number sent on each channel. Taken, with the
    /// queue's `try_send`, under this lock: numbers go into the queue in
    /// order, and a publication dropped at a full queue leaves a gap the
    /// receivers count.
    seqs: Mutex<HashMap<String, u64>>,
}

/// What the backplane's handles share with its tasks.
pub(crate) struct Shared {
    /// This instance's id, random per process.
    pub(crate) node: u64,
    pub(crate) prefix: String,
    /// The hub to deliver to, once it is built.
    pub(crate) hub: OnceLock<WeakHub>,
    pub(crate) stats: Counters,
}

impl Shared {
    /// The channel of `audience`.
    pub(crate) fn channel(&self, audience: &Audience) -> String {
        match audience {
            Audience::Room(room) => self.room_channel(room),
            _ => format!("{}:all", self.prefix),
        }
    }

    pub(crate) fn room_channel(&self, room: &str) -> String {
        format!("{}:room:{room}", self.prefix)
    }

    /// The hub, once attached and while it lives: `Err` once it is gone.
    pub(crate) fn hub(&self) -> Result<Option<Hub>, ()> {
        match self.hub.get() {
            None => Ok(None),
            Some(weak) => weak.upgrade().map(Some).ok_or(()),
        }
    }
}

/// The counters behind [`BackplaneStats`].
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) forwarded: AtomicU64,
    pub(crate) dropped: AtomicU64,
    pub(crate) received: AtomicU64,
    pub(crate) gaps: AtomicU64,
    pub(crate) malformed: AtomicU64,
    pub(crate) reconnects: AtomicU64,
}

impl Counters {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// What a [`RedisBackplane`] has done since it was built
/// ([`RedisBackplane::stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BackplaneStats {
    /// Publications of this instance that Redis took.
    pub forwarded: u64,
    /// Publications of this instance that never reached Redis: the queue
    /// was full, or Redis was unreachable.
    pub dropped: u64,
    /// Publications of other instances delivered to this hub.
    pub received: u64,
    /// Publications of other instances that never arrived here, counted
    /// from the gaps in each sender's sequence numbers.
    pub gaps: u64,
    /// Envelopes dropped as malformed (another version, cut short, not
    /// UTF-8).
    pub malformed: u64,
    /// Connections to Redis made again after one was lost or refused.
    pub reconnects: u64,
}

impl RedisBackplane {
    /// A builder for a backplane on the Redis at `url`
    /// (`redis://[user:password@]host[:port][/db]`), with the documented
    /// defaults.
    pub fn builder(url: impl Into<String>) -> RedisBackplaneBuilder {
        RedisBackplaneBuilder {
            url: url.into(),
            prefix: "ws".to_owned(),
            queue: 8_192,
            inbound_queue: 8_192,
            batch: 1_024,
            sharded: false,
        }
    }

    /// The counters, read now.
    pub fn stats(&self) -> BackplaneStats {
        let c = &self.inner.shared.stats;
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        BackplaneStats {
            forwarded: read(&c.forwarded),
            dropped: read(&c.dropped),
            received: read(&c.received),
            gaps: read(&c.gaps),
            malformed: read(&c.malformed),
            reconnects: read(&c.reconnects),
        }
    }

    /// This instance's id in the envelopes it sends (random per process).
    pub fn node_id(&self) -> u64 {
        self.inner.shared.node
    }

    /// Numbers and queues `publications`, under one lock of the sequence
    /// numbers.
    fn enqueue<'a>(&self, publications: impl IntoIterator<Item = &'a Publication>) {
        let shared = &self.inner.shared;
        let mut seqs = self.inner.seqs.lock().unwrap_or_else(|p| p.into_inner());
        for publication in publications {
            let channel = shared.channel(&publication.audience);
            let seq = match seqs.get_mut(&channel) {
                Some(seq) => {
                    *seq += 1;
                    *seq
                }
                None => {
                    seqs.insert(channel.clone(), 1);
                    1
                }
            };
            let Some(envelope) = envelope::encode(shared.node, seq, publication) else {
                continue;
            };
            let outgoing = Outgoing {
                channel: Bytes::from(channel),
                envelope,
            };
            if self.inner.out.try_send(outgoing).is_err() {
                Counters::add(&shared.stats.dropped, 1);
            }
        }
    }
}

impl Backplane for RedisBackplane {
    fn forward(&self, publication: &Publication) {
        self.enqueue(std::iter::once(publication));
    }

    fn forward_many(&self, publications: &[Publication]) {
        self.enqueue(publications);
    }

    fn attach(&self, hub: WeakHub) {
        if self.inner.shared.hub.set(hub).is_err() {
            tracing::warn!("a RedisBackplane serves one hub: the second is not attached");
        }
    }

    fn room_opened(&self, room: &str) {
        let _ = self.inner.rooms.send(RoomChange::Open(room.to_owned()));
    }

    fn room_closed(&self, room: &str) {
        let _ = self.inner.rooms.send(RoomChange::Close(room.to_owned()));
    }
}

/// A random id for this process: the standard library's per-process
/// random hash keys, mixed with the time and the process id.
fn node_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    if let Ok(now) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        hasher.write_u128(now.as_nanos());
    }
    hasher.finish()
}

/// The backoff between connection attempts: 50 ms, doubling, at most 1 s.
pub(crate) fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(50u64.saturating_mul(1 << attempt.min(5)).min(1_000))
}

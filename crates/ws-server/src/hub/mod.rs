//! One-to-many delivery: a [`Hub`] of connections, rooms, and publishing to
//! them with each frame encoded once.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use ws_proto::{Message, SendError};
use ws_tokio::{AttachError, WebSocket};

mod backplane;
mod framed;
mod member;

pub use backplane::{Backplane, WeakHub};
use framed::{Encoded, Framed};
pub use member::Member;

use crate::outbox::{FrameBatch, Outbox, OutboxLimits, Pushed, SlowConsumer};

/// A connection's identity in a hub (python-socketio's `sid`), unique
/// within one hub.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MemberId(u64);

impl fmt::Display for MemberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Who a [`Publication`] is for.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Audience {
    /// Every member of the hub.
    All,
    /// The members of one room.
    Room(String),
}

/// A message and who it is for: what [`Hub::publish`] delivers and what a
/// [`Backplane`] carries between server instances.
#[derive(Debug, Clone)]
pub struct Publication {
    /// Who receives it.
    pub audience: Audience,
    /// A member to leave out, such as the sender (python-socketio's
    /// `skip_sid`). Member ids are local to one hub: a backplane delivers
    /// to other instances without it.
    pub except: Option<MemberId>,
    /// The text or binary message.
    pub message: Message,
}

impl Publication {
    /// For every member.
    pub fn all(message: impl Into<Message>) -> Self {
        Self {
            audience: Audience::All,
            except: None,
            message: message.into(),
        }
    }

    /// For the members of `room`.
    pub fn room(room: impl Into<String>, message: impl Into<Message>) -> Self {
        Self {
            audience: Audience::Room(room.into()),
            except: None,
            message: message.into(),
        }
    }

    /// Leaves `member` out.
    pub fn except(mut self, member: MemberId) -> Self {
        self.except = Some(member);
        self
    }
}

/// What happened to one publication on this instance.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Delivery {
    /// Members whose queue took the message.
    pub queued: usize,
    /// Members that missed it, or older messages, because their queue was
    /// full (the drop policies).
    pub dropped: usize,
    /// Members disconnected by this publication (the disconnect policy), or
    /// found closed and removed.
    pub disconnected: usize,
}

/// The settings of a [`Hub`]; start with [`Hub::builder`].
#[derive(Clone, Default)]
pub struct HubBuilder {
    limits: OutboxLimits,
    backplane: Option<Arc<dyn Backplane>>,
}

impl fmt::Debug for HubBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HubBuilder")
            .field("limits", &self.limits)
            .field("backplane", &self.backplane.is_some())
            .finish()
    }
}

impl HubBuilder {
    /// Bytes of messages queued per member, frames' headers included;
    /// default 1 MiB. The hub's memory is at most this times the number of
    /// members.
    pub fn max_queued_bytes(mut self, bytes: usize) -> Self {
        self.limits.max_bytes = bytes;
        self
    }

    /// Messages queued per member; default 1 024.
    pub fn max_queued_messages(mut self, messages: usize) -> Self {
        self.limits.max_frames = messages.max(1);
        self
    }

    /// What happens to a member whose queue is full; default
    /// [`SlowConsumer::DropNewest`].
    pub fn slow_consumer(mut self, policy: SlowConsumer) -> Self {
        self.limits.policy = policy;
        self
    }

    /// Forwards every publication to other server instances, and hands
    /// the backplane a [`WeakHub`] to deliver theirs
    /// ([`Backplane::attach`]).
    pub fn backplane(mut self, backplane: impl Backplane) -> Self {
        self.backplane = Some(Arc::new(backplane));
        self
    }

    /// The hub.
    pub fn build(self) -> Hub {
        let hub = Hub {
            inner: Arc::new(HubState {
                limits: self.limits,
                backplane: self.backplane,
                state: Mutex::default(),
                next_id: AtomicU64::new(1),
                dropped: AtomicU64::new(0),
            }),
        };
        if let Some(backplane) = &hub.inner.backplane {
            backplane.attach(hub.downgrade());
        }
        hub
    }
}

/// A set of connections, grouped in rooms, that messages are published to.
///
/// A cheap, cloneable handle: publish from connection handlers, timers,
/// HTTP handlers or other threads alike.
///
/// - **Framed once.** A published message is encoded as one frame, and every
///   recipient's connection writes those same bytes: no per-recipient
///   encoding, and no per-recipient copy of a frame over 1 KiB (a smaller
///   one is cheaper copied into the connection's output than kept as a
///   piece of its own).
/// - **Bounded.** Each member has its own queue, bounded in bytes and
///   messages; when a member does not keep up, the [`SlowConsumer`] policy
///   applies to it alone, and the others are not slowed.
/// - **Ordered.** Publications are delivered to every member's queue in one
///   order: two members of a room see that room's messages in the same
///   order, minus what a drop policy dropped.
///
/// ```no_run
/// use futures_util::StreamExt;
/// use ws_server::{Hub, WebSocket};
///
/// # async fn run() -> std::io::Result<()> {
/// let hub = Hub::new();
/// ws_server::serve(
///     move |mut ws: WebSocket| {
///         let hub = hub.clone();
///         async move {
///             let member = hub.register(&ws).expect("a server connection");
///             member.join("lobby");
///             while let Some(Ok(message)) = ws.next().await {
///                 let _ = hub.to_room("lobby", message);
///             }
///         }
///     },
///     "127.0.0.1:9002",
/// )
/// .await
/// # }
/// ```
#[derive(Clone)]
pub struct Hub {
    inner: Arc<HubState>,
}

/// What a hub's handles share.
struct HubState {
    limits: OutboxLimits,
    backplane: Option<Arc<dyn Backplane>>,
    state: Mutex<Membership>,
    next_id: AtomicU64,
    dropped: AtomicU64,
}

/// Who is in the hub and in which rooms: everything under the hub's lock.
#[derive(Default)]
struct Membership {
    members: HashMap<MemberId, Entry, ById>,
    /// Each room's members, with their outboxes: a publication to a room
    /// walks this map alone.
    rooms: HashMap<String, HashMap<MemberId, Arc<Outbox>, ById>>,
}

/// Hashes member ids, which are distinct counters, with one multiplication
/// (Fibonacci hashing spreads them over the hash's high bits, which the
/// table's probing uses) instead of SipHash: a publication to N members
/// looks up or walks N of them under the hub's lock.
#[derive(Default, Clone, Copy)]
struct ById;

impl std::hash::BuildHasher for ById {
    type Hasher = IdHasher;
    fn build_hasher(&self) -> IdHasher {
        IdHasher(0)
    }
}

struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0.wrapping_mul(0x9e37_79b9_7f4a_7c15)
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only u64 ids are hashed; anything else still hashes correctly.
        for &b in bytes {
            self.0 = (self.0 << 8 | u64::from(b)) ^ (self.0 >> 56);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

struct Entry {
    outbox: Arc<Outbox>,
    rooms: HashSet<String>,
}

impl fmt::Debug for Hub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.lock();
        f.debug_struct("Hub")
            .field("members", &state.members.len())
            .field("rooms", &state.rooms.len())
            .field("limits", &self.inner.limits)
            .finish_non_exhaustive()
    }
}

impl Default for Hub {
    fn default() -> Self {
        Self::new()
    }
}

impl Hub {
    /// A hub with the default settings: 1 MiB and 1 024 messages queued per
    /// member, dropping the newest when full.
    pub fn new() -> Self {
        Self::builder().build()
    }

    /// A builder with the documented defaults.
    pub fn builder() -> HubBuilder {
        HubBuilder::default()
    }

    fn lock(&self) -> MutexGuard<'_, Membership> {
        crate::lock(&self.inner.state)
    }

    /// Adds a connection. It leaves the hub when the returned [`Member`] is
    /// dropped, or on the first publication after its connection ended,
    /// whichever comes first.
    ///
    /// Returns `None` for a client connection: only server frames (not
    /// masked) can be shared between recipients.
    pub fn register(&self, ws: &WebSocket) -> Option<Member> {
        let compression = ws.shared_compression();
        let outbox = match ws.attach_feed(|doorbell| Outbox::compressed(doorbell, compression)) {
            Ok(outbox) => outbox,
            // Registered all the same, as a connection that ends after
            // joining is: the first publication removes it.
            Err(AttachError::Ended) => Arc::new(Outbox::closed()),
            Err(_) => return None,
        };
        let id = MemberId(self.inner.next_id.fetch_add(1, Ordering::Relaxed));
        self.lock().members.insert(
            id,
            Entry {
                outbox,
                rooms: HashSet::new(),
            },
        );
        tracing::debug!(member = %id, "joined the hub");
        Some(Member {
            id,
            hub: self.clone(),
        })
    }

    /// Puts member `id` in `room` (created on first use). False if there is
    /// no such member.
    pub fn join(&self, id: MemberId, room: &str) -> bool {
        let mut state = self.lock();
        let Some(entry) = state.members.get_mut(&id) else {
            return false;
        };
        entry.rooms.insert(room.to_owned());
        let outbox = entry.outbox.clone();
        let members = state.rooms.entry(room.to_owned()).or_insert_with(|| {
            if let Some(backplane) = &self.inner.backplane {
                backplane.room_opened(room);
            }
            HashMap::default()
        });
        members.insert(id, outbox);
        true
    }

    /// Takes member `id` out of `room` (removed once empty).
    pub fn leave(&self, id: MemberId, room: &str) {
        let mut state = self.lock();
        if let Some(entry) = state.members.get_mut(&id) {
            entry.rooms.remove(room);
        }
        remove_from_room(&mut state, self.backplane(), id, room);
    }

    fn remove(&self, id: MemberId) {
        let mut state = self.lock();
        remove_member(&mut state, self.backplane(), id);
    }

    fn backplane(&self) -> Option<&dyn Backplane> {
        self.inner.backplane.as_deref()
    }

    /// A handle that does not keep the hub alive: what a [`Backplane`]
    /// holds to deliver publications from other instances.
    pub fn downgrade(&self) -> WeakHub {
        WeakHub(Arc::downgrade(&self.inner))
    }

    /// The number of members.
    pub fn len(&self) -> usize {
        self.lock().members.len()
    }

    /// Whether the hub has no members.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The number of members in `room`.
    pub fn room_len(&self, room: &str) -> usize {
        self.lock().rooms.get(room).map_or(0, HashMap::len)
    }

    /// The rooms with at least one member.
    pub fn rooms(&self) -> Vec<String> {
        self.lock().rooms.keys().cloned().collect()
    }

    /// Bytes queued for all members now.
    pub fn queued_bytes(&self) -> usize {
        let state = self.lock();
        state
            .members
            .values()
            .map(|e| e.outbox.queued_bytes())
            .sum()
    }

    /// The most bytes queued for any one member now: never more than the
    /// per-member bound plus one message.
    pub fn largest_queue(&self) -> usize {
        let state = self.lock();
        state
            .members
            .values()
            .map(|e| e.outbox.queued_bytes())
            .max()
            .unwrap_or(0)
    }

    /// Messages dropped by the slow-consumer policy, over the hub's life.
    pub fn dropped(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }

    /// Sends to every member: `publish(Publication::all(message))`.
    ///
    /// # Errors
    ///
    /// As [`publish`](Self::publish).
    pub fn to_all(&self, message: impl Into<Message>) -> Result<Delivery, SendError> {
        self.publish(Publication::all(message))
    }

    /// Sends to the members of `room`: `publish(Publication::room(room,
    /// message))`.
    ///
    /// # Errors
    ///
    /// As [`publish`](Self::publish).
    pub fn to_room(&self, room: &str, message: impl Into<Message>) -> Result<Delivery, SendError> {
        self.publish(Publication::room(room, message))
    }

    /// Delivers `publication` to this hub's members, then hands it to the
    /// backplane, if any, for the other instances.
    ///
    /// Never waits: each recipient's queue takes the message or applies its
    /// slow-consumer policy.
    ///
    /// # Errors
    ///
    /// [`SendError::NotData`] for a control or close message.
    pub fn publish(&self, publication: Publication) -> Result<Delivery, SendError> {
        let delivery = self.deliver(&publication)?;
        if let Some(backplane) = &self.inner.backplane {
            backplane.forward(&Publication {
                except: None,
                ..publication
            });
        }
        Ok(delivery)
    }

    /// Publishes several messages at once: as [`publish`](Self::publish)
    /// for each, in order, with each member's queue taking all of its
    /// messages under one lock rather than one each. A handler that
    /// receives with [`WebSocket::recv_many`] publishes what one read
    /// brought this way.
    ///
    /// # Errors
    ///
    /// [`SendError::NotData`] if any message is a control or close message;
    /// nothing is delivered then.
    pub fn publish_many(
        &self,
        publications: impl IntoIterator<Item = Publication>,
    ) -> Result<Delivery, SendError> {
        let mut publications: Vec<Publication> = publications.into_iter().collect();
        let delivery = self.deliver_many(&publications)?;
        if let Some(backplane) = &self.inner.backplane {
            for publication in &mut publications {
                publication.except = None;
            }
            backplane.forward_many(&publications);
        }
        Ok(delivery)
    }

    /// Delivers `publication` to this hub's members only: what a
    /// [`Backplane`] calls with publications from other instances.
    ///
    /// # Errors
    ///
    /// [`SendError::NotData`] for a control or close message.
    pub fn deliver(&self, publication: &Publication) -> Result<Delivery, SendError> {
        let framed = Framed::new(
            &publication.audience,
            publication.except,
            &publication.message,
        )?;
        Ok(self.deliver_framed(std::slice::from_ref(&framed)))
    }

    /// Delivers several publications to this hub's members only, in order,
    /// as [`publish_many`](Self::publish_many) does locally: what a
    /// [`Backplane`] calls with a batch from other instances.
    ///
    /// # Errors
    ///
    /// [`SendError::NotData`] if any message is a control or close message;
    /// nothing is delivered then.
    pub fn deliver_many(&self, publications: &[Publication]) -> Result<Delivery, SendError> {
        let framed = publications
            .iter()
            .map(|p| Framed::new(&p.audience, p.except, &p.message))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(self.deliver_framed(&framed))
    }

    /// Delivers framed publications, in order, under one lock of the hub.
    /// A run of publications for the same audience is offered to each of
    /// its members with one push (one lock of the member's queue).
    fn deliver_framed(&self, framed: &[Framed<'_>]) -> Delivery {
        let limits = &self.inner.limits;
        let mut delivery = Delivery::default();
        let mut gone = Vec::new();
        let mut state = self.lock();
        let mut rest = framed;
        while let Some(first) = rest.first() {
            let same = rest
                .iter()
                .take_while(|f| {
                    std::ptr::eq(f.audience, first.audience) || f.audience == first.audience
                })
                .count();
            let (run, after) = rest.split_at(same);
            rest = after;
            // Every member takes every frame of a run without exceptions:
            // its small frames are joined once, for one copy per member.
            let batched = run.len() > 1 && run.iter().all(|f| f.except.is_none());
            let batch =
                batched.then(|| FrameBatch::new(run.iter().map(|f| f.frame.clone()).collect()));
            // Members with a shared compression take the run compressed,
            // once per compression in use (in practice one): at most one
            // compressed and one plain encoding of each publication.
            let mut compressed: Vec<Encoded> = Vec::new();
            let mut offer = |id: MemberId, outbox: &Outbox| {
                let mut disconnected = false;
                let count = |pushed| match pushed {
                    Pushed::Queued => delivery.queued += 1,
                    Pushed::DroppedNewest => delivery.dropped += 1,
                    Pushed::DroppedOldest(_) => {
                        delivery.queued += 1;
                        delivery.dropped += 1;
                    }
                    _ => {
                        delivery.disconnected += 1;
                        disconnected = true;
                    }
                };
                let (frames, batch) = match outbox.compression() {
                    None => (None, batch.as_ref()),
                    Some(compression) => {
                        let at = match compressed.iter().position(|e| e.compression == compression)
                        {
                            Some(at) => at,
                            None => {
                                compressed.push(Encoded::new(run, compression, batched));
                                compressed.len() - 1
                            }
                        };
                        let encoded = &compressed[at];
                        (Some(&encoded.frames), encoded.batch.as_ref())
                    }
                };
                match batch {
                    Some(batch) => outbox.push_batch(batch, limits, count),
                    None => {
                        let frames = run
                            .iter()
                            .enumerate()
                            .filter(|(_, f)| f.except != Some(id))
                            .map(|(i, f)| frames.map_or(&f.frame, |frames| &frames[i]));
                        outbox.push_many(frames, limits, count);
                    }
                }
                if disconnected {
                    gone.push(id);
                }
            };
            match first.audience {
                Audience::All => {
                    for (id, entry) in &state.members {
                        offer(*id, &entry.outbox);
                    }
                }
                Audience::Room(room) => {
                    if let Some(members) = state.rooms.get(room) {
                        for (id, outbox) in members {
                            offer(*id, outbox);
                        }
                    }
                }
            }
        }
        for id in gone {
            remove_member(&mut state, self.backplane(), id);
        }
        drop(state);
        if delivery.dropped > 0 || delivery.disconnected > 0 {
            self.inner
                .dropped
                .fetch_add(delivery.dropped as u64, Ordering::Relaxed);
            tracing::debug!(?delivery, "slow consumers");
        }
        delivery
    }
}

/// Takes `id` out of `room`, and the room away once empty (telling the
/// backplane, still under the hub's lock, so that it sees rooms open and
/// close in the order they did).
fn remove_from_room(
    state: &mut Membership,
    backplane: Option<&dyn Backplane>,
    id: MemberId,
    room: &str,
) {
    if let Some(members) = state.rooms.get_mut(room) {
        members.remove(&id);
        if members.is_empty() {
            state.rooms.remove(room);
            if let Some(backplane) = backplane {
                backplane.room_closed(room);
            }
        }
    }
}

fn remove_member(state: &mut Membership, backplane: Option<&dyn Backplane>, id: MemberId) {
    if let Some(entry) = state.members.remove(&id) {
        for room in &entry.rooms {
            remove_from_room(state, backplane, id, room);
        }
        tracing::debug!(member = %id, "left the hub");
    }
}

//! The subscribed task: keeps one RESP3 connection subscribed to the
//! channels of the rooms that have members here (and to everyone's), and
//! delivers what other instances publish to the hub.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use redis::{PushInfo, PushKind, Value};
use tokio::sync::{Notify, mpsc};

use crate::connection::{Connection, Target};
use crate::envelope::{self, Envelope};
use crate::{Counters, Shared, backoff};

/// A room that got its first member here, or lost its last.
pub(crate) enum RoomChange {
    Open(String),
    Close(String),
}

/// Messages delivered to the hub in one go, at most.
const DELIVERY_BATCH: usize = 256;

/// A connection's pushes: messages into a bounded queue (past it they are
/// dropped, and their receiver counts the gap), and its loss as a signal
/// that cannot be dropped.
struct Pushes {
    messages: mpsc::Receiver<PushInfo>,
    lost: Arc<Notify>,
}

async fn connect(target: &Target, inbound: usize) -> redis::RedisResult<(Connection, Pushes)> {
    let (messages_in, messages) = mpsc::channel(inbound);
    let lost = Arc::new(Notify::new());
    let signal = lost.clone();
    let sender = move |info: PushInfo| -> Result<(), std::convert::Infallible> {
        if info.kind == PushKind::Disconnection {
            signal.notify_one();
        } else {
            let _ = messages_in.try_send(info);
        }
        Ok(())
    };
    let connection = target.connect(Some(sender)).await?;
    Ok((connection, Pushes { messages, lost }))
}

/// What the subscribed task knows between connections.
struct State {
    shared: Arc<Shared>,
    /// The room channels to be subscribed to (everyone's always is).
    rooms: HashSet<String>,
    /// The last sequence number seen per channel and sender.
    seen: HashMap<Bytes, HashMap<u64, u64>>,
    /// Gaps not yet reported in the log, and when the log last said.
    unreported: u64,
    reported: Instant,
}

pub(crate) async fn run(
    target: Target,
    mut changes: mpsc::UnboundedReceiver<RoomChange>,
    inbound: usize,
    shared: Arc<Shared>,
) {
    let mut state = State {
        shared,
        rooms: HashSet::new(),
        seen: HashMap::new(),
        unreported: 0,
        reported: Instant::now(),
    };
    let mut attempt = 0u32;
    let mut down_since: Option<Instant> = None;
    loop {
        let (mut connection, mut pushes) = match connect(&target, inbound).await {
            Ok(connected) => connected,
            Err(error) => {
                if down_since.is_none() {
                    tracing::warn!(%error, "Redis unreachable for subscribing; retrying");
                    down_since = Some(Instant::now());
                }
                // Room changes keep coming while Redis is away.
                let until = tokio::time::Instant::now() + backoff(attempt);
                attempt += 1;
                loop {
                    tokio::select! {
                        () = tokio::time::sleep_until(until) => break,
                        change = changes.recv() => match change {
                            Some(change) => {
                                state.apply(change);
                            }
                            None => return,
                        },
                    }
                }
                continue;
            }
        };
        if let Some(since) = down_since.take() {
            Counters::add(&state.shared.stats.reconnects, 1);
            tracing::warn!(after = ?since.elapsed(), "Redis reachable again for subscribing");
        }
        attempt = 0;
        match state
            .serve(&mut connection, &mut pushes, &mut changes)
            .await
        {
            Served::Ended => return,
            Served::Lost(error) => {
                tracing::warn!(error, "Redis connection for subscribing lost");
                down_since = Some(Instant::now());
            }
        }
    }
}

/// How a connection's service ended.
enum Served {
    /// The hub or the backplane is gone: the task ends.
    Ended,
    /// The connection is lost: connect again.
    Lost(String),
}

impl State {
    fn all_channel(&self) -> String {
        self.shared.channel(&ws_server::Audience::All)
    }

    fn apply(&mut self, change: RoomChange) -> Option<(bool, String)> {
        match change {
            RoomChange::Open(room) => {
                let channel = self.shared.room_channel(&room);
                self.rooms
                    .insert(channel.clone())
                    .then_some((true, channel))
            }
            RoomChange::Close(room) => {
                let channel = self.shared.room_channel(&room);
                // Sequence numbers heard on a channel no longer listened
                // to would make a false gap when it is listened to again.
                self.seen.remove(channel.as_bytes());
                self.rooms.remove(&channel).then_some((false, channel))
            }
        }
    }

    /// Subscribes, then delivers and follows room changes until the
    /// connection is lost or the task should end.
    async fn serve(
        &mut self,
        connection: &mut Connection,
        pushes: &mut Pushes,
        changes: &mut mpsc::UnboundedReceiver<RoomChange>,
    ) -> Served {
        let mut channels: Vec<String> = self.rooms.iter().cloned().collect();
        channels.push(self.all_channel());
        if let Err(error) = connection.subscribe(&channels).await {
            return Served::Lost(error.to_string());
        }
        let mut batch = Vec::with_capacity(DELIVERY_BATCH);
        loop {
            tokio::select! {
                change = changes.recv() => {
                    let Some(change) = change else {
                        return Served::Ended;
                    };
                    let done = match self.apply(change) {
                        Some((true, channel)) => connection.subscribe(&[channel]).await,
                        Some((false, channel)) => connection.unsubscribe(&channel).await,
                        None => Ok(()),
                    };
                    if let Err(error) = done {
                        return Served::Lost(error.to_string());
                    }
                }
                () = pushes.lost.notified() => {
                    return Served::Lost("disconnected".to_owned());
                }
                n = pushes.messages.recv_many(&mut batch, DELIVERY_BATCH) => {
                    if n == 0 {
                        return Served::Lost("disconnected".to_owned());
                    }
                    if self.deliver(&mut batch).is_err() {
                        return Served::Ended;
                    }
                }
            }
        }
    }

    /// Decodes a batch of pushes and delivers the publications of other
    /// instances to the hub. `Err` once the hub is gone.
    fn deliver(&mut self, batch: &mut Vec<PushInfo>) -> Result<(), ()> {
        let stats = &self.shared.stats;
        let mut publications = Vec::with_capacity(batch.len());
        for push in batch.drain(..) {
            let Some((channel, payload)) = message(push) else {
                continue;
            };
            match envelope::decode(payload) {
                Ok(Envelope { node, .. }) if node == self.shared.node => {}
                Ok(Envelope {
                    node,
                    seq,
                    publication,
                }) => {
                    if self.shared.channel(&publication.audience).as_bytes() != &channel[..] {
                        Counters::add(&stats.malformed, 1);
                        continue;
                    }
                    let last = self
                        .seen
                        .entry(channel)
                        .or_default()
                        .entry(node)
                        .or_insert(0);
                    // Not past the last one: a sender's restart would get a
                    // new id, so this is a duplicate; drop it.
                    if seq <= *last {
                        continue;
                    }
                    let missed = seq - *last - 1;
                    *last = seq;
                    if missed > 0 {
                        Counters::add(&stats.gaps, missed);
                        self.unreported += missed;
                    }
                    publications.push(publication);
                }
                Err(error) => {
                    Counters::add(&stats.malformed, 1);
                    tracing::debug!(%error, "malformed envelope dropped");
                }
            }
        }
        if self.unreported > 0 && self.reported.elapsed() >= Duration::from_secs(1) {
            tracing::warn!(
                missed = self.unreported,
                "{} publications of other instances never arrived (gaps in their sequence numbers)",
                self.unreported
            );
            self.unreported = 0;
            self.reported = Instant::now();
        }
        if publications.is_empty() {
            return Ok(());
        }
        let Some(hub) = self.shared.hub()? else {
            // Not attached yet: nobody to deliver to.
            return Ok(());
        };
        Counters::add(&stats.received, publications.len() as u64);
        let _ = hub.deliver_many(&publications);
        Ok(())
    }
}

/// The channel and payload of a pushed message; `None` for other pushes
/// (subscription confirmations).
fn message(push: PushInfo) -> Option<(Bytes, Bytes)> {
    if !matches!(push.kind, PushKind::Message | PushKind::SMessage) {
        return None;
    }
    let mut data = push.data.into_iter();
    match (data.next(), data.next()) {
        (Some(Value::BulkString(channel)), Some(Value::BulkString(payload))) => {
            Some((Bytes::from(channel), Bytes::from(payload)))
        }
        _ => None,
    }
}

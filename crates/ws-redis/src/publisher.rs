//! The publishing task: takes what gathered in the queue and sends it to
//! Redis as one pipeline of `PUBLISH` commands, one round trip for many
//! publications.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;

use crate::connection::{Connection, Outgoing, Target};
use crate::{Counters, Shared, backoff};

/// Where the publisher is.
enum Link {
    Up(Connection),
    /// Unreachable since `since`, with `attempt` failed attempts; `lost`
    /// forwards dropped meanwhile.
    Down {
        since: Instant,
        attempt: u32,
        lost: u64,
    },
}

pub(crate) async fn run(
    target: Target,
    mut queue: mpsc::Receiver<Outgoing>,
    batch_size: usize,
    shared: Arc<Shared>,
) {
    let stats = &shared.stats;
    let mut link = connect(&target, None).await;
    let mut batch = Vec::with_capacity(batch_size);
    loop {
        match &mut link {
            Link::Up(connection) => {
                if queue.recv_many(&mut batch, batch_size).await == 0 {
                    return;
                }
                let sent = connection.publish(&batch).await;
                let n = batch.len() as u64;
                batch.clear();
                match sent {
                    Ok(()) => Counters::add(&stats.forwarded, n),
                    Err(error) => {
                        // Redis may have taken some of them: at most once.
                        Counters::add(&stats.dropped, n);
                        tracing::warn!(%error, publications = n, "Redis lost: publications dropped");
                        link = Link::Down {
                            since: Instant::now(),
                            attempt: 0,
                            lost: n,
                        };
                    }
                }
            }
            Link::Down {
                since,
                attempt,
                lost,
            } => {
                // Wait for the next attempt, dropping (and counting) what
                // is forwarded meanwhile: it would be stale by the time
                // Redis is back, and the queue stays free for what comes
                // after.
                let until = tokio::time::Instant::now() + backoff(*attempt);
                loop {
                    tokio::select! {
                        () = tokio::time::sleep_until(until) => break,
                        n = queue.recv_many(&mut batch, batch_size) => {
                            if n == 0 {
                                return;
                            }
                            Counters::add(&stats.dropped, n as u64);
                            *lost += n as u64;
                            batch.clear();
                        }
                    }
                }
                *attempt += 1;
                let (since, lost) = (*since, *lost);
                link = match connect(&target, Some(&shared)).await {
                    Link::Up(connection) => {
                        tracing::warn!(
                            after = ?since.elapsed(),
                            dropped = lost,
                            "Redis reachable again for publishing: {lost} publications were not forwarded"
                        );
                        Link::Up(connection)
                    }
                    Link::Down { attempt: _, .. } => Link::Down {
                        since,
                        attempt: *attempt,
                        lost,
                    },
                };
            }
        }
    }
}

/// One connection attempt; a reconnection is counted when `shared` is
/// given and it succeeds.
async fn connect(target: &Target, shared: Option<&Shared>) -> Link {
    let no_pushes: Option<fn(redis::PushInfo) -> Result<(), std::convert::Infallible>> = None;
    match target.connect(no_pushes).await {
        Ok(connection) => {
            if let Some(shared) = shared {
                Counters::add(&shared.stats.reconnects, 1);
            }
            Link::Up(connection)
        }
        Err(error) => {
            if shared.is_none() {
                tracing::warn!(%error, "Redis unreachable for publishing; retrying");
            } else {
                tracing::debug!(%error, "Redis still unreachable for publishing");
            }
            Link::Down {
                since: Instant::now(),
                attempt: 0,
                lost: 0,
            }
        }
    }
}

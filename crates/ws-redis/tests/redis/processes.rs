//! Three `broadcast_server --redis` processes behind one Redis: clients of
//! a room spread over them see every message once, in order; and Redis
//! killed and restarted under load.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use tokio::time::{sleep, sleep_until};
use ws_client::WebSocketSender;

use crate::support::{Redis, Server};

/// The tests here run three servers and dozens of clients each: one at a
/// time, so that one's load does not slow the other's deliveries past
/// what its assertions allow.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// What one client received: (publisher, sequence number, sent at in ms
/// from the test's start), in arrival order.
type Received = Vec<(usize, u64, u64)>;

/// Parses `{publisher} {seq} {sent_ms}`.
fn parse(text: &str) -> Option<(usize, u64, u64)> {
    let mut parts = text.split(' ');
    Some((
        parts.next()?.parse().ok()?,
        parts.next()?.parse().ok()?,
        parts.next()?.parse().ok()?,
    ))
}

/// What a test client does.
#[derive(Clone, Copy)]
struct Plan {
    /// Messages to publish, one every `every`, from `go` on.
    count: u64,
    every: Duration,
    go: tokio::time::Instant,
    /// The test's start, for the send times in the messages.
    start: Instant,
    /// Stop receiving once this many arrived (and nothing more came for
    /// half a second), or at `until`.
    expect: Option<usize>,
    until: tokio::time::Instant,
}

/// A client of `room` on `server`, publishing as `id` by `plan`; returns
/// its sending and receiving tasks. The sending task gives back its half
/// of the connection, which closes the connection when dropped: keep it
/// until the receiving is done.
async fn client(
    server: &Server,
    room: &str,
    id: usize,
    plan: Plan,
) -> (JoinHandle<WebSocketSender>, JoinHandle<Received>) {
    let url = format!("ws://{}/{room}", server.addr);
    let (ws, _) = ws_client::connect(url).await.expect("connects");
    let (mut rx, tx) = ws.split();
    let receiving = tokio::spawn(async move {
        let mut received = Vec::new();
        loop {
            let done = plan.expect.is_some_and(|n| received.len() >= n);
            let deadline = if done {
                plan.until
                    .min(tokio::time::Instant::now() + Duration::from_millis(500))
            } else {
                plan.until
            };
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(Ok(message))) => {
                    if let Some(parsed) = message.as_text().and_then(parse) {
                        received.push(parsed);
                    }
                }
                _ => break,
            }
        }
        received
    });
    let sending = tokio::spawn(async move {
        let mut next = plan.go;
        for seq in 0..plan.count {
            sleep_until(next).await;
            next += plan.every;
            let sent = plan.start.elapsed().as_millis();
            if tx.send(format!("{id} {seq} {sent}")).await.is_err() {
                break;
            }
        }
        tx
    });
    (sending, receiving)
}

/// Each publisher's messages, in the order they arrived.
fn by_publisher(received: &Received) -> HashMap<usize, Vec<u64>> {
    let mut out: HashMap<usize, Vec<u64>> = HashMap::new();
    for &(publisher, seq, _) in received {
        out.entry(publisher).or_default().push(seq);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_deliver_every_message_once_in_order_to_the_room_only() {
    let _alone = ONE_AT_A_TIME.lock().await;
    const MESSAGES: u64 = 200;
    let redis = Redis::start();
    let mut servers = Vec::new();
    for _ in 0..3 {
        servers.push(Server::start(&redis.url()).await);
    }
    redis.wait_subscribers("ws:all", 3).await;
    let room_of = |id: usize| if id < 30 { "a" } else { "b" };
    let now = tokio::time::Instant::now();
    let plan = |id: usize| Plan {
        count: MESSAGES,
        every: Duration::from_millis(5),
        go: now + Duration::from_secs(3),
        start: Instant::now(),
        expect: Some(if room_of(id) == "a" { 30 } else { 10 } * MESSAGES as usize),
        until: now + Duration::from_secs(60),
    };
    // 30 clients in room a and 10 in room b, spread over the servers; the
    // publishing starts once everyone is in place.
    let mut tasks = Vec::new();
    for id in 0..40 {
        let (sending, receiving) = client(&servers[id % 3], room_of(id), id, plan(id)).await;
        tasks.push((id, sending, receiving));
    }
    redis.wait_subscribers("ws:room:/a", 3).await;
    redis.wait_subscribers("ws:room:/b", 3).await;
    assert!(
        tokio::time::Instant::now() < plan(0).go,
        "the clients took too long to connect"
    );
    for (id, sending, receiving) in tasks {
        let _open = sending.await.unwrap();
        let received = receiving.await.unwrap();
        let room = room_of(id);
        for (publisher, seqs) in by_publisher(&received) {
            assert_eq!(
                room_of(publisher),
                room,
                "client {id} got {publisher}'s message"
            );
            let missing: Vec<u64> = (0..MESSAGES).filter(|s| !seqs.contains(s)).collect();
            assert!(
                seqs.iter().copied().eq(0..MESSAGES),
                "client {id} on server {}: publisher {publisher} (server {})'s messages missing, repeated or out of order ({} of {MESSAGES}, missing {missing:?}); stats {:?}",
                id % 3,
                publisher % 3,
                seqs.len(),
                servers
                    .iter()
                    .map(|s| (s.stat("dropped"), s.stat("gaps"), s.stat("received")))
                    .collect::<Vec<_>>()
            );
        }
        assert_eq!(Some(received.len()), plan(id).expect, "client {id}");
    }
    for server in &mut servers {
        assert!(server.running());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_and_restarted_under_load() {
    let _alone = ONE_AT_A_TIME.lock().await;
    const MESSAGES: u64 = 450;
    const EVERY_MS: u64 = 20;
    let mut redis = Redis::start();
    let mut servers = Vec::new();
    for _ in 0..3 {
        servers.push(Server::start(&redis.url()).await);
    }
    redis.wait_subscribers("ws:all", 3).await;
    let start = Instant::now();
    let now = tokio::time::Instant::now();
    let go = now + Duration::from_secs(2);
    let plan = Plan {
        count: MESSAGES,
        every: Duration::from_millis(EVERY_MS),
        go,
        start,
        expect: None,
        until: go + Duration::from_millis(MESSAGES * EVERY_MS) + Duration::from_secs(3),
    };
    // Six clients in one room, two on each server, each publishing every
    // 20 ms for 9 s.
    let mut tasks = Vec::new();
    for id in 0..6 {
        let (sending, receiving) = client(&servers[id % 3], "f", id, plan).await;
        tasks.push((id, sending, receiving));
    }
    redis.wait_subscribers("ws:room:/f", 3).await;
    assert!(
        tokio::time::Instant::now() < go,
        "the clients took too long to connect"
    );

    sleep_until(go + Duration::from_millis(1500)).await;
    let rss_before: Vec<u64> = servers.iter().map(Server::rss_kib).collect();
    sleep_until(go + Duration::from_secs(2)).await;
    redis.kill();
    let killed_ms = start.elapsed().as_millis() as u64;
    sleep(Duration::from_secs(2)).await;
    redis.restart();
    let restarted_ms = start.elapsed().as_millis() as u64;

    let go_ms = (go - now).as_millis() as u64;
    let sent_ms = |seq: u64| go_ms + seq * EVERY_MS;
    let mut missed_remote = 0;
    for (id, sending, receiving) in tasks {
        let _open = sending.await.unwrap();
        let received = receiving.await.unwrap();
        let publishers = by_publisher(&received);
        assert_eq!(
            publishers.len(),
            6,
            "client {id} heard from every publisher"
        );
        for (publisher, seqs) in publishers {
            assert!(
                seqs.windows(2).all(|w| w[0] < w[1]),
                "client {id}: publisher {publisher}'s messages out of order or repeated"
            );
            if publisher % 3 == id % 3 {
                // Same server: local delivery never stopped.
                assert!(
                    seqs.iter().copied().eq(0..MESSAGES),
                    "client {id}: local publisher {publisher} lost messages ({} of {MESSAGES})",
                    seqs.len()
                );
                continue;
            }
            for seq in 0..MESSAGES {
                let sent = sent_ms(seq);
                // Everything sent well before the kill, and everything
                // sent from 5 s after the restart, arrived.
                if sent + 500 < killed_ms || sent >= restarted_ms + 5_000 {
                    assert!(
                        seqs.contains(&seq),
                        "client {id}: remote publisher {publisher}'s message {seq} (sent at {sent} ms; \
                         killed at {killed_ms} ms, restarted at {restarted_ms} ms) never arrived"
                    );
                }
            }
            missed_remote += MESSAGES - seqs.len() as u64;
        }
    }
    assert!(
        missed_remote > 0,
        "Redis was down for 2 s: something must have been lost"
    );
    // The counters are logged each second they change.
    sleep(Duration::from_millis(1_500)).await;
    let (mut dropped, mut gaps, mut reconnects) = (0, 0, 0);
    for (i, server) in servers.iter_mut().enumerate() {
        assert!(server.running(), "server {i} is still running");
        let log = server.log();
        dropped += server.stat("dropped");
        gaps += server.stat("gaps");
        reconnects += server.stat("reconnects");
        assert!(
            log.contains("publications were not forwarded"),
            "server {i} said what it lost:\n{log}"
        );
        let rss = server.rss_kib();
        assert!(
            rss < rss_before[i] + 64 * 1024,
            "server {i}: {} KiB before the outage, {rss} KiB after",
            rss_before[i]
        );
    }
    assert!(dropped > 0 && gaps > 0, "dropped {dropped}, gaps {gaps}");
    assert!(
        reconnects >= 6,
        "each server reconnected both ways: {reconnects}"
    );
    // Gaps counted by the receivers match what the clients missed, at most:
    // a message dropped before Redis is missed by every remote receiver.
    assert!(gaps <= missed_remote, "gaps {gaps}, missed {missed_remote}");
}

//! Hubs with Redis backplanes in this process: subscriptions that follow
//! local membership, and malformed envelopes on the channel.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::time::timeout;
use ws_redis::RedisBackplane;
use ws_server::{Hub, Server, WebSocket};

use crate::support::Redis;

const LIMIT: Duration = Duration::from_secs(20);

/// Serves a hub whose connections join the room named by their path and
/// publish what they send to it, leaving themselves out.
async fn serve_hub(hub: Hub) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let handler = move |mut ws: WebSocket| {
        let hub = hub.clone();
        async move {
            let Some(member) = hub.register(&ws) else {
                return;
            };
            let room = ws.path().trim_start_matches('/').to_owned();
            member.join(&room);
            while let Some(Ok(message)) = ws.recv().await {
                if message.is_data() {
                    let _ = member.to_room_except_me(&room, message);
                }
            }
        }
    };
    tokio::spawn(Server::builder().serve(handler, listener).into_future());
    addr
}

/// Waits until `stats` of `backplane` satisfy `check` (a counter is
/// updated once Redis has answered, which may be after the receivers got
/// the message).
async fn settled(backplane: &RedisBackplane, check: impl Fn(ws_redis::BackplaneStats) -> bool) {
    let deadline = std::time::Instant::now() + LIMIT;
    while !check(backplane.stats()) {
        assert!(
            std::time::Instant::now() < deadline,
            "{:?}",
            backplane.stats()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn backplane(redis: &Redis, prefix: &str) -> RedisBackplane {
    RedisBackplane::builder(redis.url())
        .prefix(prefix)
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_channel_is_subscribed_while_the_room_has_members_here() {
    let redis = Redis::start();
    let backplane = backplane(&redis, "t1");
    let hub = Hub::builder().backplane(backplane.clone()).build();
    let addr = serve_hub(hub.clone()).await;
    // Everyone's channel from the start.
    redis.wait_subscribers("t1:all", 1).await;
    assert_eq!(redis.subscribers("t1:room:lobby"), 0);

    let (first, _) = ws_client::connect(format!("ws://{addr}/lobby"))
        .await
        .unwrap();
    let (second, _) = ws_client::connect(format!("ws://{addr}/lobby"))
        .await
        .unwrap();
    redis.wait_subscribers("t1:room:lobby", 1).await;
    first.close(ws_client::CloseCode::NORMAL, "").await.unwrap();
    // One member left: still subscribed, once.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(redis.subscribers("t1:room:lobby"), 1);
    second
        .close(ws_client::CloseCode::NORMAL, "")
        .await
        .unwrap();
    redis.wait_subscribers("t1:room:lobby", 0).await;
    assert_eq!(hub.room_len("lobby"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_envelopes_are_counted_and_dropped_never_delivered() {
    let redis = Redis::start();
    let receiving = backplane(&redis, "t2");
    let hub = Hub::builder().backplane(receiving.clone()).build();
    let addr = serve_hub(hub).await;
    let (mut client, _) = ws_client::connect(format!("ws://{addr}/r")).await.unwrap();
    redis.wait_subscribers("t2:room:r", 1).await;

    // A valid envelope, taken from the wire of another instance, to mangle.
    let sending = backplane(&redis, "t2");
    let other = Hub::builder().backplane(sending.clone()).build();
    let mut valid = Vec::new();
    {
        // Listen on the channel as a plain subscriber would, with redis-cli
        // semantics: the bytes are whatever the other hub forwards.
        let client = redis::Client::open(redis.url()).unwrap();
        let mut pubsub = client.get_async_pubsub().await.unwrap();
        pubsub.subscribe("t2:room:r").await.unwrap();
        redis.wait_subscribers("t2:room:r", 2).await;
        other.to_room("r", "sample").unwrap();
        use futures_util::StreamExt;
        let message = timeout(LIMIT, pubsub.on_message().next())
            .await
            .unwrap()
            .unwrap();
        valid.extend_from_slice(message.get_payload_bytes());
    }
    // The receiving hub got the sample: the one message the client sees
    // before the last one below.
    let first = timeout(LIMIT, client.recv())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(first.as_text(), Some("sample"));

    let mut wrong_version = valid.clone();
    wrong_version[0] = 9;
    let truncated = valid[..10].to_vec();
    let garbage = b"\x01\xff not an envelope at all, but long enough".to_vec();
    let mut bad_utf8 = valid.clone();
    *bad_utf8.last_mut().unwrap() = 0xff;
    // A valid envelope for another room, sent on this room's channel.
    let mut elsewhere = valid.clone();
    let room_at = 22;
    elsewhere[room_at] = b'x';
    for payload in [&wrong_version, &truncated, &garbage, &bad_utf8, &elsewhere] {
        let answer = redis.request(&[b"PUBLISH", b"t2:room:r", payload]);
        assert!(
            matches!(answer, Some(crate::support::Reply::Int(_))),
            "{answer:?}"
        );
    }
    other.to_room("r", "after").unwrap();
    let next = timeout(LIMIT, client.recv())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        next.as_text(),
        Some("after"),
        "nothing malformed was delivered"
    );
    let stats = receiving.stats();
    assert_eq!(stats.malformed, 5, "{stats:?}");
    assert_eq!(stats.received, 2, "{stats:?}");
    assert_eq!(stats.gaps, 0, "{stats:?}");
    settled(&sending, |s| s.forwarded == 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_member_everywhere_gets_a_publication_once_and_except_stays_local() {
    let redis = Redis::start();
    let (a, b) = (backplane(&redis, "t3"), backplane(&redis, "t3"));
    let hub_a = Hub::builder().backplane(a.clone()).build();
    let hub_b = Hub::builder().backplane(b.clone()).build();
    let (addr_a, addr_b) = (serve_hub(hub_a.clone()).await, serve_hub(hub_b).await);
    let (sender, _) = ws_client::connect(format!("ws://{addr_a}/room"))
        .await
        .unwrap();
    let (mut beside, _) = ws_client::connect(format!("ws://{addr_a}/room"))
        .await
        .unwrap();
    let (mut there, _) = ws_client::connect(format!("ws://{addr_b}/room"))
        .await
        .unwrap();
    let (mut sender_rx, sender_tx) = sender.split();
    redis.wait_subscribers("t3:room:room", 2).await;

    // Published by the sender's handler, except the sender: its neighbour
    // and the member on B get it, the sender does not.
    sender_tx.send("one").await.unwrap();
    for client in [&mut beside, &mut there] {
        let got = timeout(LIMIT, client.recv())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(got.as_text(), Some("one"));
    }
    // Published by A's hub itself, to the room and to everyone.
    hub_a.to_room("room", "two").unwrap();
    hub_a.to_all("three").unwrap();
    for client in [&mut beside, &mut there] {
        for expected in ["two", "three"] {
            let got = timeout(LIMIT, client.recv())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            assert_eq!(got.as_text(), Some(expected));
        }
    }
    for expected in ["two", "three"] {
        let got = timeout(LIMIT, sender_rx.recv())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(got.as_text(), Some(expected));
    }
    // Nothing more on A: it did not deliver its own publications again.
    for client in [&mut beside, &mut there] {
        assert!(
            timeout(Duration::from_millis(300), client.recv())
                .await
                .is_err()
        );
    }
    assert!(
        timeout(Duration::from_millis(100), sender_rx.recv())
            .await
            .is_err()
    );
    settled(&a, |s| s.forwarded == 3 && s.received == 0).await;
    assert_eq!((b.stats().received, b.stats().gaps), (3, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sharded_pub_sub_on_a_cluster_spreads_the_rooms_over_its_shards() {
    let cluster = crate::support::RedisCluster::start();
    let url = cluster.nodes[0].url();
    let sharded = || {
        RedisBackplane::builder(&url)
            .prefix("t4")
            .sharded(true)
            .build()
            .unwrap()
    };
    let (a, b) = (sharded(), sharded());
    let hub_a = Hub::builder().backplane(a.clone()).build();
    let hub_b = Hub::builder().backplane(b.clone()).build();
    let addr_b = serve_hub(hub_b).await;
    const ROOMS: usize = 12;
    let mut clients = Vec::new();
    for room in 0..ROOMS {
        let (ws, _) = ws_client::connect(format!("ws://{addr_b}/room{room}"))
            .await
            .unwrap();
        clients.push(ws);
    }
    // Every room's channel and everyone's, each carried by one shard.
    let deadline = std::time::Instant::now() + LIMIT;
    while cluster.shard_channels().iter().sum::<usize>() != ROOMS + 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "sharded channels: {:?}",
            cluster.shard_channels()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let spread = cluster.shard_channels();
    assert!(
        spread.iter().filter(|&&n| n > 0).count() >= 2,
        "the channels sit on more than one shard: {spread:?}"
    );

    for room in 0..ROOMS {
        hub_a
            .to_room(&format!("room{room}"), format!("to room{room}"))
            .unwrap();
    }
    hub_a.to_all("to everyone").unwrap();
    for (room, client) in clients.iter_mut().enumerate() {
        // The room's channel and everyone's sit on different shards: each
        // is in order, the two interleave as they arrive.
        let mut got = Vec::new();
        for _ in 0..2 {
            let message = timeout(LIMIT, client.recv())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            got.push(message.as_text().unwrap().to_owned());
        }
        got.sort();
        assert_eq!(got, ["to everyone".to_owned(), format!("to room{room}")]);
    }
    settled(&a, |s| s.forwarded == ROOMS as u64 + 1).await;
    assert_eq!((b.stats().received, b.stats().gaps), (ROOMS as u64 + 1, 0));
}

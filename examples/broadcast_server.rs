//! The one-to-many server: every text or binary message a client sends is
//! delivered, in order, to every client in the same room, the sender
//! included. The room is the URL path: `/` is the lobby, `/chat/rust`
//! another room. Each message is framed once and the same bytes go to every
//! recipient; a client that stops reading has its own bounded queue and
//! misses the newest messages rather than slowing the others.
//!
//! Run with: `cargo run --release --example broadcast_server -- [ADDR] [--presence] [--deflate] [--ping-interval-ms N] [--redis URL]`
//! (default `127.0.0.1:9002`). With `--presence`, the room is also told when
//! someone joins or leaves; without it, nothing but the clients' messages is
//! ever sent. `--ping-interval-ms` sets the heartbeat (default 20 s, with
//! half of it for the pong), as `scripts/soak.sh` does. `--deflate`
//! accepts permessage-deflate without server context takeover: the server
//! keeps no compression state per connection (one compressor per thread
//! serves them all), so thousands of mostly idle members cost what they
//! cost without it.
//!
//! `--redis redis://127.0.0.1:6379` runs the same server on a Redis
//! backplane (`ws-redis`): start several, on different ports, and a message
//! sent to any of them reaches the room's members on all of them. The
//! backplane's counters are logged each second they change, and once more
//! at shutdown. Without the flag the server is a single process. See
//! `docs/scale-out.md`.

use std::time::Duration;

use ws_redis::RedisBackplane;
use ws_server::{Hub, Message, PerMessageDeflate, Publication, Server, WebSocket};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    ws_examples::init_logging();
    let mut addr = "127.0.0.1:9002".to_owned();
    let mut presence = false;
    let mut deflate = false;
    let mut heartbeat = None;
    let mut redis = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--presence" => presence = true,
            "--deflate" => deflate = true,
            "--ping-interval-ms" => heartbeat = args.next().and_then(|ms| ms.parse().ok()),
            "--redis" => redis = args.next(),
            other => addr = other.to_owned(),
        }
    }

    let backplane = match redis {
        Some(url) => Some(
            RedisBackplane::builder(url)
                .build()
                .map_err(std::io::Error::other)?,
        ),
        None => None,
    };
    let hub = match &backplane {
        Some(backplane) => {
            tokio::spawn(log_stats(backplane.clone()));
            Hub::builder().backplane(backplane.clone()).build()
        }
        None => Hub::new(),
    };
    let handler = move |mut ws: WebSocket| {
        let hub = hub.clone();
        async move {
            let room = ws.path().to_owned();
            let Some(member) = hub.register(&ws) else {
                return;
            };
            member.join(&room);
            if presence {
                let notice = format!("* {} joined {room}", member.id());
                let _ = hub.publish(Publication::room(&room, notice).except(member.id()));
            }
            // Everything that arrived together is published together: each
            // member's queue takes the batch under one lock.
            let mut batch = Vec::new();
            while let Ok(1..) = ws.recv_many(&mut batch, 16).await {
                batch.retain(Message::is_data);
                let _ = hub.publish_many(batch.drain(..).map(|m| Publication::room(&room, m)));
            }
            if presence {
                let notice = format!("* {} left {room}", member.id());
                let _ = hub.publish(Publication::room(&room, notice).except(member.id()));
            }
            // Dropping `member` takes the connection out of the hub.
        }
    };

    // Broadcast connections are mostly idle and small: allow more of them
    // than the default 10 000.
    // Only pages served by this host may connect (see echo_server.rs).
    let mut server = Server::builder().same_origin().max_connections(50_000);
    if let Some(ms) = heartbeat {
        server = ws_examples::heartbeat(server, ms);
    }
    if deflate {
        let settings = PerMessageDeflate::default().server_no_context_takeover(true);
        server = server.compression(Some(settings));
    }
    let served = server
        .serve(handler, addr)
        .with_graceful_shutdown(ws_examples::shutdown_signal())
        .await;
    if let Some(backplane) = backplane {
        tracing::info!(stats = ?backplane.stats(), "redis backplane at shutdown");
    }
    served
}

/// Logs the backplane's counters each second they changed.
async fn log_stats(backplane: RedisBackplane) {
    let mut last = backplane.stats();
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let stats = backplane.stats();
        if stats != last {
            tracing::info!(?stats, "redis backplane");
            last = stats;
        }
    }
}

//! The broadcast hub over real sockets: tokio-tungstenite clients, and raw
//! TCP clients that stop reading or vanish.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::oneshot;
use tokio::time::{sleep, timeout};
use tokio_tungstenite::tungstenite::Message as TMessage;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode as TCloseCode;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use ws_server::{CloseCode, Hub, Message, Publication, Server, SlowConsumer, WebSocket};

const LIMIT: Duration = Duration::from_secs(30);

type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A broadcast server like `examples/broadcast_server.rs`: the room is the
/// path, and every message goes to the whole room, sender included, each
/// read's messages published at once.
async fn start(hub: Hub) -> (SocketAddr, oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let handler = move |mut ws: WebSocket| {
        let hub = hub.clone();
        async move {
            let room = ws.path().to_owned();
            let member = hub.register(&ws).unwrap();
            member.join(&room);
            // What arrived together is published together.
            let mut batch = Vec::new();
            while let Ok(1..) = ws.recv_many(&mut batch, 64).await {
                batch.retain(Message::is_data);
                hub.publish_many(batch.drain(..).map(|m| Publication::room(&room, m)))
                    .unwrap();
            }
        }
    };
    let serve = Server::builder()
        .ping_interval(None)
        .shutdown_timeout(Duration::from_secs(5))
        .serve(handler, listener)
        .with_graceful_shutdown(async {
            let _ = stopped.await;
        });
    tokio::spawn(serve.into_future());
    (addr, stop)
}

async fn client(addr: SocketAddr, room: &str) -> Client {
    let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}{room}"))
        .await
        .unwrap();
    ws
}

/// Waits until `hub` has `members` members in `room`.
async fn until_members(hub: &Hub, room: &str, members: usize) {
    timeout(LIMIT, async {
        while hub.room_len(room) != members {
            sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{room} never had {members} members"));
}

async fn next_text(ws: &mut Client) -> String {
    match timeout(LIMIT, ws.next()).await.unwrap() {
        Some(Ok(TMessage::Text(text))) => text.to_string(),
        other => panic!("expected text, got {other:?}"),
    }
}

/// A raw client that completes the handshake with a tiny receive buffer and
/// then never reads.
async fn stalled_client(addr: SocketAddr, room: &str) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket.connect(addr).await.unwrap();
    let request = format!(
        "GET {room} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    stream
}

#[tokio::test]
async fn n_clients_m_messages_all_delivered_in_one_order() {
    const N: usize = 5;
    const M: usize = 40;
    let hub = Hub::new();
    let (addr, _stop) = start(hub.clone()).await;
    let mut clients = Vec::new();
    for _ in 0..N {
        clients.push(client(addr, "/").await);
    }
    until_members(&hub, "/", N).await;

    let (mut writers, mut readers): (Vec<_>, Vec<_>) =
        clients.into_iter().map(StreamExt::split).unzip();
    let sending = tokio::spawn(async move {
        for m in 0..M {
            for (n, writer) in writers.iter_mut().enumerate() {
                writer
                    .send(TMessage::text(format!("{n}:{m}")))
                    .await
                    .unwrap();
            }
        }
        writers
    });
    let mut seen = Vec::new();
    for reader in &mut readers {
        let mut messages = Vec::new();
        while messages.len() < N * M {
            match timeout(LIMIT, reader.next()).await.unwrap() {
                Some(Ok(TMessage::Text(text))) => messages.push(text.to_string()),
                other => panic!("{other:?}"),
            }
        }
        seen.push(messages);
    }
    let _writers = sending.await.unwrap();
    for messages in &seen {
        // Every sender's messages, in the order sent...
        for n in 0..N {
            let from_n: Vec<_> = messages
                .iter()
                .filter(|m| m.starts_with(&format!("{n}:")))
                .cloned()
                .collect();
            let expected: Vec<_> = (0..M).map(|m| format!("{n}:{m}")).collect();
            assert_eq!(from_n, expected);
        }
        // ...and the same interleaving at every recipient.
        assert_eq!(messages, &seen[0]);
    }
    assert_eq!(hub.dropped(), 0);
}

#[tokio::test]
async fn rooms_are_isolated_and_skip_sender_works() {
    let hub = Hub::new();
    let (addr, _stop) = start(hub.clone()).await;
    let mut a1 = client(addr, "/a").await;
    let mut a2 = client(addr, "/a").await;
    let mut b = client(addr, "/chat/b").await;
    until_members(&hub, "/a", 2).await;
    until_members(&hub, "/chat/b", 1).await;

    a1.send(TMessage::text("to a")).await.unwrap();
    assert_eq!(next_text(&mut a1).await, "to a", "the sender too");
    assert_eq!(next_text(&mut a2).await, "to a");
    b.send(TMessage::text("to b")).await.unwrap();
    assert_eq!(next_text(&mut b).await, "to b");

    // From outside any connection: to everyone, to a room, and to a room
    // but one of its members (the first to join has the lowest id).
    hub.to_all("everyone").unwrap();
    for ws in [&mut a1, &mut a2, &mut b] {
        assert_eq!(next_text(ws).await, "everyone");
    }
    let delivery = hub.to_room("/chat/b", "b only").unwrap();
    assert_eq!(delivery.queued, 1);
    assert_eq!(next_text(&mut b).await, "b only");
    assert_eq!(hub.room_len("/a"), 2);
    assert_eq!(hub.len(), 3);
    assert!(matches!(
        hub.to_all(Message::Ping(Default::default())),
        Err(ws_server::proto::SendError::NotData)
    ));

    // Nothing leaked across rooms: a2 and b have nothing else queued.
    a1.send(TMessage::text("last")).await.unwrap();
    assert_eq!(next_text(&mut a2).await, "last");
    assert!(
        timeout(Duration::from_millis(100), b.next()).await.is_err(),
        "b got a message of room /a"
    );
}

#[tokio::test]
async fn skip_sid_leaves_one_member_out() {
    let hub = Hub::new();
    let (addr, _stop) = start(hub.clone()).await;
    let listener_ws = client(addr, "/").await;
    until_members(&hub, "/", 1).await;
    // Register a second member through a server handler we control.
    let (id_tx, id_rx) = oneshot::channel();
    let hub2 = hub.clone();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr2 = listener.local_addr().unwrap();
    let id_tx = std::sync::Mutex::new(Some(id_tx));
    let serve = Server::builder().ping_interval(None).serve(
        move |mut ws: WebSocket| {
            let hub = hub2.clone();
            let id_tx = id_tx.lock().unwrap().take();
            async move {
                let member = hub.register(&ws).unwrap();
                member.join("/");
                if let Some(tx) = id_tx {
                    let _ = tx.send(member.id());
                }
                while let Some(Ok(message)) = ws.next().await {
                    member.to_room_except_me("/", message).unwrap();
                }
            }
        },
        listener,
    );
    tokio::spawn(serve.into_future());
    let mut sender = client(addr2, "/").await;
    let sender_id = id_rx.await.unwrap();
    let mut listener_ws = listener_ws;
    until_members(&hub, "/", 2).await;

    sender.send(TMessage::text("not to me")).await.unwrap();
    assert_eq!(next_text(&mut listener_ws).await, "not to me");
    hub.publish(Publication::all("all but sender").except(sender_id))
        .unwrap();
    assert_eq!(next_text(&mut listener_ws).await, "all but sender");
    hub.to_all("really all").unwrap();
    assert_eq!(next_text(&mut listener_ws).await, "really all");
    assert_eq!(
        next_text(&mut sender).await,
        "really all",
        "the sender skipped both earlier messages"
    );

    // Several publications at once: each one's audience and exception, in
    // one order. A control message among them refuses them all.
    assert!(matches!(
        hub.publish_many([
            Publication::all("refused"),
            Publication::all(Message::Ping(Default::default())),
        ]),
        Err(ws_server::proto::SendError::NotData)
    ));
    let delivery = hub
        .publish_many([
            Publication::all("many 1"),
            Publication::all("many 2").except(sender_id),
            Publication::room("/", "many 3"),
            Publication::room("/elsewhere", "nobody"),
            Publication::room("/", "many 4").except(sender_id),
            Publication::all("many 5"),
        ])
        .unwrap();
    assert_eq!(delivery.queued, 2 + 1 + 2 + 1 + 2);
    for (ws, expected) in [
        (
            &mut listener_ws,
            &["many 1", "many 2", "many 3", "many 4", "many 5"][..],
        ),
        (&mut sender, &["many 1", "many 3", "many 5"][..]),
    ] {
        for text in expected {
            assert_eq!(next_text(ws).await, *text);
        }
    }

    // A run without exceptions: each member's outbox takes its frames
    // joined, in one copy, and they arrive as sent.
    let delivery = hub
        .publish_many(["joined 1", "joined 2", "joined 3"].map(|m| Publication::room("/", m)))
        .unwrap();
    assert_eq!(delivery.queued, 2 * 3);
    for ws in [&mut listener_ws, &mut sender] {
        for text in ["joined 1", "joined 2", "joined 3"] {
            assert_eq!(next_text(ws).await, text);
        }
    }
}

/// Publishes `batches` batches of 8 messages of 4 KiB to `room`, waiting
/// after each batch until the fast client has them all, and checks the
/// stalled member's queue never passes the bound. Returns how many the fast
/// client received.
async fn flood(hub: &Hub, fast: &mut Client, room: &str, batches: usize, bound: usize) -> usize {
    let payload = vec![b'x'; 4096];
    let mut received = 0;
    for batch in 0..batches {
        for i in 0..8 {
            let mut message = payload.clone();
            message[..8].copy_from_slice(&((batch * 8 + i) as u64).to_be_bytes());
            hub.to_room(room, message).unwrap();
        }
        for _ in 0..8 {
            match timeout(LIMIT, fast.next()).await.unwrap() {
                Some(Ok(TMessage::Binary(data))) => {
                    let n = u64::from_be_bytes(data[..8].try_into().unwrap());
                    assert_eq!(n as usize, received, "the fast client missed nothing");
                    received += 1;
                }
                other => panic!("{other:?}"),
            }
        }
        // The memory bound: never more than the bound plus one frame
        // queued for the stalled member (the hub holds nothing else).
        let queued = hub_queued(hub);
        assert!(queued <= bound + 4200, "{queued} bytes queued");
    }
    received
}

fn hub_queued(hub: &Hub) -> usize {
    hub.largest_queue()
}

async fn slow_consumer_case(policy: SlowConsumer) -> (Hub, TcpStream, usize) {
    let bound = 64 * 1024;
    let hub = Hub::builder()
        .max_queued_bytes(bound)
        .slow_consumer(policy)
        .build();
    let (addr, stop) = start(hub.clone()).await;
    let stalled = stalled_client(addr, "/feed").await;
    let mut fast = client(addr, "/feed").await;
    until_members(&hub, "/feed", 2).await;
    let received = flood(&hub, &mut fast, "/feed", 300, bound).await;
    std::mem::forget(stop);
    (hub, stalled, received)
}

#[tokio::test]
async fn slow_consumer_drop_newest_keeps_the_others_going() {
    let (hub, _stalled, received) = slow_consumer_case(SlowConsumer::DropNewest).await;
    assert_eq!(received, 2400);
    assert!(
        hub.dropped() > 0,
        "the stalled client should have missed some"
    );
    assert_eq!(hub.room_len("/feed"), 2, "dropping keeps the member");
}

#[tokio::test]
async fn slow_consumer_drop_oldest_keeps_the_others_going() {
    let (hub, _stalled, received) = slow_consumer_case(SlowConsumer::DropOldest).await;
    assert_eq!(received, 2400);
    assert!(
        hub.dropped() > 0,
        "the stalled client should have missed some"
    );
    assert_eq!(hub.room_len("/feed"), 2);
}

#[tokio::test]
async fn slow_consumer_disconnect_evicts_only_the_stalled_client() {
    let (hub, mut stalled, received) =
        slow_consumer_case(SlowConsumer::Disconnect(CloseCode::TRY_AGAIN_LATER)).await;
    assert_eq!(received, 2400);
    until_members(&hub, "/feed", 1).await;
    // The server drops the connection: reading now ends, once what was on
    // its way has arrived.
    let mut received = Vec::new();
    let drained = timeout(
        LIMIT,
        tokio::io::AsyncReadExt::read_to_end(&mut stalled, &mut received),
    )
    .await;
    assert!(drained.is_ok(), "the evicted connection stayed open");
    // Issue 25, item 8: what arrived is whole frames, the last of them the
    // close frame with the policy's code. Before, the output was discarded
    // in the middle of a frame and the close frame landed in its payload.
    let head = received.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let frames = whole_frames(&received[head..]);
    let (opcode, payload) = frames.last().expect("a close frame");
    assert_eq!(*opcode, 0x8, "the last frame is the close");
    assert_eq!(&payload[..2], &1013u16.to_be_bytes());
    assert!(frames[..frames.len() - 1].iter().all(|(op, _)| *op == 0x2));
}

/// Splits unmasked server frames, checking that `bytes` is a run of whole
/// frames: their opcodes and payloads.
fn whole_frames(mut bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut frames = Vec::new();
    while !bytes.is_empty() {
        assert!(bytes.len() >= 2, "a frame cut in its header");
        let (opcode, len7) = (bytes[0] & 0x0f, usize::from(bytes[1] & 0x7f));
        assert_eq!(bytes[1] & 0x80, 0, "server frames are not masked");
        let (len, start) = match len7 {
            126 => (usize::from(u16::from_be_bytes([bytes[2], bytes[3]])), 4),
            127 => (
                usize::try_from(u64::from_be_bytes(bytes[2..10].try_into().unwrap())).unwrap(),
                10,
            ),
            len => (len, 2),
        };
        assert!(bytes.len() >= start + len, "a frame cut in its payload");
        frames.push((opcode, bytes[start..start + len].to_vec()));
        bytes = &bytes[start + len..];
    }
    frames
}

#[tokio::test]
async fn members_leave_when_they_disconnect_even_abruptly() {
    let hub = Hub::new();
    let (addr, _stop) = start(hub.clone()).await;
    let mut clean = client(addr, "/").await;
    let abrupt = client(addr, "/").await;
    until_members(&hub, "/", 2).await;

    clean.close(None).await.unwrap();
    until_members(&hub, "/", 1).await;

    // A TCP reset: linger 0, then drop.
    let stream = match abrupt.into_inner() {
        MaybeTlsStream::Plain(stream) => stream,
        _ => unreachable!(),
    };
    stream.set_zero_linger().unwrap();
    drop(stream);
    until_members(&hub, "/", 0).await;
    assert!(hub.is_empty());
    assert!(hub.rooms().is_empty(), "empty rooms are removed");
}

#[tokio::test]
async fn shutdown_completes_the_close_handshake_with_every_client() {
    let hub = Hub::new();
    let (addr, stop) = start(hub.clone()).await;
    let mut clients = Vec::new();
    for room in ["/", "/", "/other"] {
        clients.push(client(addr, room).await);
    }
    until_members(&hub, "/", 2).await;
    stop.send(()).unwrap();
    for ws in &mut clients {
        let mut code = None;
        while let Some(message) = timeout(LIMIT, ws.next()).await.unwrap() {
            if let Ok(TMessage::Close(Some(frame))) = message {
                code = Some(frame.code);
            }
        }
        assert_eq!(code, Some(TCloseCode::Away));
    }
    timeout(LIMIT, async {
        while !hub.is_empty() {
            sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap();
}

/// The outbox is made when a connection first registers. A member that
/// registers once its connection has sat idle, with its driver asleep,
/// still gets what is published to it; one that registers after its
/// connection ended is refused.
#[tokio::test]
async fn members_registering_late_or_after_the_end() {
    let hub = Hub::new();
    let (ended_tx, ended_rx) = oneshot::channel();
    let handler = {
        let hub = hub.clone();
        let ended_tx = Arc::new(std::sync::Mutex::new(Some(ended_tx)));
        move |mut ws: WebSocket| {
            let hub = hub.clone();
            let ended_tx = ended_tx.clone();
            async move {
                if ws.path() == "/late" {
                    // Only once the driver has delivered this message, given
                    // its buffers back (half a second after the socket went
                    // quiet) and gone to sleep with no deadline.
                    let _ = ws.next().await;
                    sleep(Duration::from_millis(800)).await;
                    let member = hub.register(&ws).unwrap();
                    member.join("/late");
                    while ws.next().await.is_some() {}
                } else {
                    while ws.next().await.is_some() {}
                    let member = hub.register(&ws).unwrap();
                    member.join("/ended");
                    if let Some(tx) = ended_tx.lock().unwrap().take() {
                        let _ = tx.send(member);
                    }
                }
            }
        }
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let serve = Server::builder()
        .ping_interval(None)
        .serve(handler, listener);
    let server = tokio::spawn(serve.into_future());

    let mut late = client(addr, "/late").await;
    late.send(TMessage::text("register")).await.unwrap();
    until_members(&hub, "/late", 1).await;
    let delivery = hub.to_room("/late", Message::text("hello")).unwrap();
    assert_eq!(delivery.queued, 1);
    assert_eq!(
        timeout(Duration::from_secs(5), next_text(&mut late))
            .await
            .expect("the sleeping driver was woken for its new outbox"),
        "hello"
    );

    let mut ended = client(addr, "/ended").await;
    ended.close(None).await.unwrap();
    let _member = timeout(LIMIT, ended_rx).await.unwrap().unwrap();
    let delivery = hub.to_room("/ended", Message::text("too late")).unwrap();
    assert_eq!((delivery.queued, delivery.disconnected), (0, 1));
    server.abort();
}

/// A client connection cannot join a hub: a hub's frames are shared,
/// unmasked server frames, and a client must mask each frame with a key
/// of its own. Its handle takes no feed at all.
#[tokio::test]
async fn a_client_connection_takes_no_feed() {
    let hub = Hub::new();
    let (addr, _stop) = start(hub.clone()).await;
    let (ws, _) = ws_client::connect(&format!("ws://{addr}/room"))
        .await
        .unwrap();
    assert!(hub.register(&ws).is_none());
    struct Nothing;
    impl ws_tokio::Feed for Nothing {
        fn drain(&self, _: usize, _: &mut dyn ws_tokio::FrameSink) -> Result<bool, CloseCode> {
            Ok(false)
        }
        fn close(&self) {}
    }
    assert_eq!(
        ws.attach_feed(|_| Nothing).err(),
        Some(ws_tokio::AttachError::Client)
    );
}

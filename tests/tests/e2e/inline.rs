//! `ServerBuilder::serve_inline`: message handlers the driver calls, over
//! real sockets on 127.0.0.1 with tokio-tungstenite as the client (and raw
//! TCP where a test needs a misbehaving one).

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use tokio::sync::oneshot;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message as TMessage;
use tokio_tungstenite::tungstenite::protocol::CloseFrame as TCloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode as TCloseCode;
use ws_server::{
    CloseCode, Error, Hub, Member, Message, MessageHandler, Publication, Reply, Server,
    ServerBuilder, WebSocket,
};

const LIMIT: Duration = Duration::from_secs(30);

/// Starts a server with `handler` on a free port; it shuts down (1001 to
/// every client) when the returned sender is fired or dropped.
async fn start<H, M>(builder: ServerBuilder, handler: H) -> (SocketAddr, oneshot::Sender<()>)
where
    H: Fn(WebSocket) -> M + Send + Sync + 'static,
    M: MessageHandler,
{
    let serve = |listener| builder.serve_inline(handler, listener);
    let (addr, stop, _serving) = crate::server::serve_on_free_port(serve).await;
    (addr, stop)
}

/// Starts a server whose connections are [`Echo`]es; the receiver gets
/// how each ended.
async fn start_echo(
    builder: ServerBuilder,
) -> (
    SocketAddr,
    oneshot::Sender<()>,
    UnboundedReceiver<Option<String>>,
) {
    let (ends, ended) = unbounded_channel();
    let (addr, stop) = start(builder, move |_ws| Echo(ends.clone())).await;
    (addr, stop, ended)
}

fn quiet() -> ServerBuilder {
    Server::builder().ping_interval(None)
}

/// Echoes every message, and reports how the connection ended: `None` for
/// a closing handshake, else the error's text. "bye" is answered with a
/// close frame, 4000 "bye".
struct Echo(UnboundedSender<Option<String>>);

impl MessageHandler for Echo {
    fn handle_message(&mut self, message: Message, reply: &mut Reply<'_>) {
        if message.as_text() == Some("bye") {
            reply.close(CloseCode::from(4000), "bye").unwrap();
            // Nothing more may be sent after a close frame.
            assert!(matches!(reply.send(&message), Err(Error::Closed(_))));
            return;
        }
        reply.send(&message).unwrap();
    }

    fn handle_end(&mut self, error: Option<&Error>) {
        let _ = self.0.send(error.map(ToString::to_string));
    }
}

async fn connect(addr: SocketAddr) -> tokio_tungstenite::WebSocketStream<TcpStream> {
    let stream = TcpStream::connect(addr).await.unwrap();
    let url = format!("ws://{addr}/");
    tokio_tungstenite::client_async(url, stream)
        .await
        .unwrap()
        .0
}

#[tokio::test]
async fn inline_echo_of_text_binary_large_fragmented_and_ping() {
    let (addr, _stop, mut ended) = start_echo(quiet()).await;
    let mut ws = connect(addr).await;
    timeout(LIMIT, async {
        crate::server::check_echo(&mut ws).await;
        // The driver answers pings: the handler never sees them.
        ws.send(TMessage::Ping(b"p".to_vec().into())).await.unwrap();
        assert_eq!(
            ws.next().await.unwrap().unwrap(),
            TMessage::Pong(b"p".to_vec().into())
        );
        ws.close(None).await.unwrap();
        while let Some(Ok(_)) = ws.next().await {}
        assert_eq!(ended.recv().await.unwrap(), None);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn inline_handler_closes_through_its_reply() {
    let (addr, _stop, mut ended) = start_echo(quiet()).await;
    let mut ws = connect(addr).await;
    timeout(LIMIT, async {
        ws.send(TMessage::text("before")).await.unwrap();
        ws.send(TMessage::text("bye")).await.unwrap();
        assert_eq!(ws.next().await.unwrap().unwrap(), TMessage::text("before"));
        let close = TCloseFrame {
            code: TCloseCode::from(4000),
            reason: "bye".into(),
        };
        assert_eq!(
            ws.next().await.unwrap().unwrap(),
            TMessage::Close(Some(close))
        );
        while let Some(Ok(_)) = ws.next().await {}
        assert_eq!(ended.recv().await.unwrap(), None);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn section_8_1_invalid_utf8_fails_with_1007_and_the_handler_learns_why() {
    let (addr, _stop, mut ended) = start_echo(quiet()).await;
    // A text frame "hi", then one of invalid UTF-8 (both masked with 0,
    // which leaves them as they are).
    let mut frames = vec![0x81, 0x80 | 2, 0, 0, 0, 0, b'h', b'i'];
    frames.extend_from_slice(&[0x81, 0x80 | 1, 0, 0, 0, 0, 0xFF]);
    let after = &crate::server::answer_to_frames(addr, &frames).await;
    // RFC 6455 section 8.1: "When an endpoint is to interpret a byte
    // stream as UTF-8 but finds that the byte stream is not, in fact, a
    // valid UTF-8 stream, that endpoint MUST _Fail the WebSocket
    // Connection_." The message before it was answered first.
    assert_eq!(&after[..4], &[0x81, 2, b'h', b'i'], "{after:x?}");
    assert_eq!(after[4], 0x88, "then the close: {after:x?}");
    assert_eq!(&after[6..8], &1007u16.to_be_bytes(), "{after:x?}");
    let error = timeout(LIMIT, ended.recv()).await.unwrap().unwrap();
    assert!(
        error
            .as_deref()
            .is_some_and(|e| e.starts_with("protocol error")),
        "{error:?}"
    );
}

#[tokio::test]
async fn the_websocket_of_an_inline_connection_sends_from_another_task_and_shutdown_sends_1001() {
    // Each connection's WebSocket greets the client from a task of its
    // own, then is dropped: the connection stays open for the handler.
    let (ends, mut ended) = unbounded_channel();
    let make = move |mut ws: WebSocket| {
        tokio::spawn(async move {
            let _ = ws.send(Message::text("welcome")).await;
        });
        Echo(ends.clone())
    };
    let (addr, stop) = start(quiet(), make).await;
    let mut ws = connect(addr).await;
    timeout(LIMIT, async {
        assert_eq!(ws.next().await.unwrap().unwrap(), TMessage::text("welcome"));
        // Give the greeting's task time to drop its WebSocket.
        tokio::time::sleep(Duration::from_millis(50)).await;
        ws.send(TMessage::text("still open")).await.unwrap();
        assert_eq!(
            ws.next().await.unwrap().unwrap(),
            TMessage::text("still open")
        );
        stop.send(()).unwrap();
        match ws.next().await.unwrap().unwrap() {
            TMessage::Close(Some(frame)) => assert_eq!(frame.code, TCloseCode::Away),
            other => panic!("expected a close frame, got {other:?}"),
        }
        while let Some(Ok(_)) = ws.next().await {}
        assert_eq!(ended.recv().await.unwrap(), None);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn section_7_4_1_a_message_over_the_limit_fails_with_1009() {
    let builder = quiet().config(ws_server::proto::Config::default().max_message_size(1024));
    let (addr, _stop, mut ended) = start_echo(builder).await;
    let mut ws = connect(addr).await;
    timeout(LIMIT, async {
        ws.send(TMessage::binary(vec![1; 1024])).await.unwrap();
        assert_eq!(ws.next().await.unwrap().unwrap().len(), 1024);
        let _ = ws.send(TMessage::binary(vec![1; 1025])).await;
        match ws.next().await.unwrap().unwrap() {
            TMessage::Close(Some(frame)) => assert_eq!(frame.code, TCloseCode::Size),
            other => panic!("expected a close frame, got {other:?}"),
        }
        let error = ended.recv().await.unwrap();
        assert!(error.is_some(), "the handler learns of the failure");
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn answers_larger_than_the_output_wait_for_the_peer_and_none_is_lost() {
    // Each request is answered with 64 KiB: 64 requests in one write make
    // 4 MiB of answers, far past what the driver holds before it stops
    // handling, so the rest of the requests wait in its read buffer.
    let answer = |_ws: WebSocket| {
        |message: Message, reply: &mut Reply<'_>| {
            let n = message.as_text().unwrap().parse::<u8>().unwrap();
            reply.send(&Message::binary(vec![n; 64 * 1024])).unwrap();
        }
    };
    let (addr, _stop) = start(quiet(), answer).await;
    let mut ws = connect(addr).await;
    timeout(LIMIT, async {
        for n in 0..64u8 {
            ws.feed(TMessage::text(n.to_string())).await.unwrap();
        }
        ws.flush().await.unwrap();
        // Let the server fill its output and the socket's buffers first.
        tokio::time::sleep(Duration::from_millis(200)).await;
        for n in 0..64u8 {
            let data = ws.next().await.unwrap().unwrap().into_data();
            assert_eq!(data.len(), 64 * 1024);
            assert!(data.iter().all(|&b| b == n), "answer {n} in order");
        }
    })
    .await
    .unwrap();
}

/// A room: each message goes to every other member, through the hub.
struct Chat {
    hub: Hub,
    member: Member,
}

impl MessageHandler for Chat {
    fn handle_message(&mut self, message: Message, _: &mut Reply<'_>) {
        let publication = Publication::room("lobby", message).except(self.member.id());
        self.hub.publish(publication).unwrap();
    }
}

#[tokio::test]
async fn an_inline_handler_publishes_to_a_hub_room_and_leaves_it_with_its_connection() {
    let hub = Hub::new();
    let rooms = hub.clone();
    let make = move |ws: WebSocket| {
        let member = rooms.register(&ws).unwrap();
        member.join("lobby");
        Chat {
            hub: rooms.clone(),
            member,
        }
    };
    let (addr, _stop) = start(quiet(), make).await;
    let mut a = connect(addr).await;
    let mut b = connect(addr).await;
    timeout(LIMIT, async {
        while hub.room_len("lobby") < 2 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        a.send(TMessage::text("hi")).await.unwrap();
        assert_eq!(b.next().await.unwrap().unwrap(), TMessage::text("hi"));
        b.send(TMessage::text("yo")).await.unwrap();
        // The sender is left out: a's next message is b's.
        assert_eq!(a.next().await.unwrap().unwrap(), TMessage::text("yo"));
        a.close(None).await.unwrap();
        while let Some(Ok(_)) = a.next().await {}
        while hub.len() > 1 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(hub.room_len("lobby"), 1);
    })
    .await
    .unwrap();
}

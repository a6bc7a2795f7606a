//! ws-server over real sockets on 127.0.0.1, port 0, with tokio-tungstenite
//! as the client (and raw TCP where a test needs a misbehaving client).

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::{self, Message as TMessage};
use ws_server::http::StatusCode;
use ws_server::proto::Rejection;
use ws_server::{Accept, CloseCode, Error, Message, Serve, Server, ServerBuilder, WebSocket};

const LIMIT: Duration = Duration::from_secs(30);

/// Starts a server on a free port; it stops when the returned sender is
/// dropped or fired.
async fn start<H, F>(builder: ServerBuilder, handler: H) -> (SocketAddr, oneshot::Sender<()>)
where
    H: Fn(WebSocket) -> F + Send + Sync + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    let (addr, stop, _serving) = start_joinable(builder, handler).await;
    (addr, stop)
}

/// As [`start`], with the task serving, which completes once the server
/// has stopped.
async fn start_joinable<H, F>(
    builder: ServerBuilder,
    handler: H,
) -> (
    SocketAddr,
    oneshot::Sender<()>,
    tokio::task::JoinHandle<std::io::Result<()>>,
)
where
    H: Fn(WebSocket) -> F + Send + Sync + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    serve_on_free_port(|listener| builder.serve(handler, listener)).await
}

/// Runs the server `serve` makes on a listener bound to a free port: its
/// address, the sender that shuts it down (gracefully) when fired or
/// dropped, and the task serving, which completes once it has stopped.
pub(crate) async fn serve_on_free_port(
    serve: impl FnOnce(TcpListener) -> Serve,
) -> (
    SocketAddr,
    oneshot::Sender<()>,
    tokio::task::JoinHandle<std::io::Result<()>>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let serve = serve(listener).with_graceful_shutdown(async {
        let _ = stopped.await;
    });
    let serving = tokio::spawn(serve.into_future());
    (addr, stop, serving)
}

async fn echo(mut ws: WebSocket) {
    while let Some(Ok(message)) = ws.next().await {
        if ws.send(message).await.is_err() {
            break;
        }
    }
}

fn quiet() -> ServerBuilder {
    Server::builder().ping_interval(None)
}

/// Sends a raw request and returns the response head.
async fn raw_request(addr: SocketAddr, request: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    timeout(LIMIT, stream.read_to_end(&mut response))
        .await
        .unwrap()
        .unwrap();
    String::from_utf8_lossy(&response).into_owned()
}

/// Sends `request` and reads the head of its 101 answer, leaving the
/// connection open.
async fn raw_upgrade(addr: SocketAddr, request: &str) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 101");
    stream
}

/// Opens a connection, sends `frames` in one write after the upgrade
/// request, and returns what the server sent after its response head, up
/// to its end of stream.
pub(crate) async fn answer_to_frames(addr: SocketAddr, frames: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut request = upgrade_request("").into_bytes();
    request.extend_from_slice(frames);
    stream.write_all(&request).await.unwrap();
    let mut received = Vec::new();
    timeout(LIMIT, stream.read_to_end(&mut received))
        .await
        .unwrap()
        .unwrap();
    let head_end = received.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    received.split_off(head_end)
}

fn upgrade_request(extra: &str) -> String {
    format!(
        "GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

#[tokio::test]
async fn echo_text_binary_large_and_fragmented() {
    let (addr, _stop) = start(quiet(), echo).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/any/path"))
        .await
        .unwrap();
    timeout(LIMIT, async {
        check_echo(&mut ws).await;
        ws.close(None).await.unwrap();
    })
    .await
    .unwrap();
}

/// Checks that an echo server sends back text, binary, empty, 16 MiB and
/// fragmented messages (a character split across two fragments).
pub(crate) async fn check_echo<S>(ws: &mut tokio_tungstenite::WebSocketStream<S>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let large = vec![0xABu8; 16 << 20];
    let messages = [
        TMessage::text("hello"),
        TMessage::binary(vec![1, 2, 3]),
        TMessage::text(""),
        TMessage::binary(large),
    ];
    for message in messages {
        ws.send(message.clone()).await.unwrap();
        assert_eq!(ws.next().await.unwrap().unwrap(), message);
    }
    use tungstenite::protocol::frame::{
        Frame,
        coding::{Data, OpCode},
    };
    // "fragménted" in three fragments, the é split across two of them.
    let text = "fragménted".as_bytes();
    for (opcode, fin, part) in [
        (OpCode::Data(Data::Text), false, &text[..6]),
        (OpCode::Data(Data::Continue), false, &text[6..8]),
        (OpCode::Data(Data::Continue), true, &text[8..]),
    ] {
        let frame = Frame::message(part.to_vec(), opcode, fin);
        ws.send(TMessage::Frame(frame)).await.unwrap();
    }
    assert_eq!(
        ws.next().await.unwrap().unwrap(),
        TMessage::text("fragménted")
    );
}

#[tokio::test]
async fn handshake_rejections_have_the_right_status() {
    let builder = quiet()
        .allowed_origins(["https://good.example"])
        .on_handshake(|request| async move {
            if request.path() == "/private" {
                Err(Rejection::new(StatusCode::UNAUTHORIZED).body("token required"))
            } else {
                Ok(Accept::new())
            }
        })
        .health_check("/healthz");
    let (addr, _stop) = start(builder, echo).await;

    let missing_key =
        upgrade_request("").replace("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", "");
    assert!(
        raw_request(addr, &missing_key)
            .await
            .starts_with("HTTP/1.1 400 ")
    );

    let version_12 = upgrade_request("").replace("Version: 13", "Version: 12");
    let response = raw_request(addr, &version_12).await;
    assert!(response.starts_with("HTTP/1.1 426 "), "{response}");
    assert!(
        response.contains("sec-websocket-version: 13\r\n"),
        "{response}"
    );

    let bad_origin = upgrade_request("Origin: https://evil.example\r\n");
    assert!(
        raw_request(addr, &bad_origin)
            .await
            .starts_with("HTTP/1.1 403 ")
    );
    let good_origin = upgrade_request("Origin: https://good.example\r\n");
    // A 101 is followed by an open connection: read only the head.
    raw_upgrade(addr, &good_origin).await;

    let private = upgrade_request("").replace("GET / ", "GET /private ");
    let response = raw_request(addr, &private).await;
    assert!(response.starts_with("HTTP/1.1 401 "), "{response}");
    assert!(response.ends_with("token required"), "{response}");

    // tokio-tungstenite sees the hook's status too.
    match tokio_tungstenite::connect_async(format!("ws://{addr}/private")).await {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 401),
        other => panic!("expected a 401, got {other:?}"),
    }

    let plain = "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";
    assert!(raw_request(addr, plain).await.starts_with("HTTP/1.1 426 "));
    let health = "GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n";
    assert!(raw_request(addr, health).await.starts_with("HTTP/1.1 200 "));
}

#[tokio::test]
async fn subprotocol_is_chosen_from_the_configured_list() {
    let (addr, _stop) = start(
        quiet().protocols(["v2", "v1"]),
        |mut ws: WebSocket| async move {
            let protocol = ws.protocol().unwrap_or("none").to_owned();
            let _ = ws.send_text(protocol).await;
            echo(ws).await;
        },
    )
    .await;
    let mut request =
        tungstenite::client::IntoClientRequest::into_client_request(format!("ws://{addr}/"))
            .unwrap();
    request
        .headers_mut()
        .insert("sec-websocket-protocol", "v1, v2".parse().unwrap());
    let (mut ws, response) = tokio_tungstenite::connect_async(request).await.unwrap();
    assert_eq!(response.headers()["sec-websocket-protocol"], "v2");
    assert_eq!(ws.next().await.unwrap().unwrap(), TMessage::text("v2"));
}

#[tokio::test]
async fn slow_handshake_is_dropped_at_the_deadline() {
    let builder = quiet().handshake_timeout(Duration::from_millis(300));
    let (addr, _stop) = start(builder, echo).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    // Trickle part of a request, then stall.
    for byte in b"GET / HTTP/1.1\r\nHost: x\r\n" {
        stream.write_all(&[*byte]).await.unwrap();
    }
    let mut rest = Vec::new();
    let read = timeout(LIMIT, stream.read_to_end(&mut rest))
        .await
        .expect("server closed in time");
    assert!(read.is_ok());
    assert!(rest.is_empty(), "no response to an incomplete request");
}

#[tokio::test]
async fn connections_past_the_limit_get_503() {
    let (addr, _stop) = start(quiet().max_connections(1), echo).await;
    let (mut first, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/"))
        .await
        .unwrap();
    match tokio_tungstenite::connect_async(format!("ws://{addr}/")).await {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 503),
        other => panic!("expected a 503, got {other:?}"),
    }
    // The first connection is unaffected.
    first.send(TMessage::text("still here")).await.unwrap();
    assert_eq!(
        first.next().await.unwrap().unwrap(),
        TMessage::text("still here")
    );
}

#[tokio::test]
async fn keepalive_evicts_a_client_that_never_answers_pings() {
    // The heartbeat rule holds on servers too: the interval is longer than
    // the timeout.
    let builder = Server::builder()
        .ping_interval(Some(Duration::from_millis(200)))
        .ping_timeout(Some(Duration::from_millis(100)));
    let (error_tx, error_rx) = oneshot::channel();
    let error_tx = std::sync::Mutex::new(Some(error_tx));
    let (addr, _stop) = start(builder, move |mut ws: WebSocket| {
        let tx = error_tx.lock().unwrap().take();
        async move {
            let mut last = None;
            while let Some(result) = ws.recv().await {
                if let Err(error) = result {
                    last = Some(error);
                }
            }
            if let Some(tx) = tx {
                let _ = tx.send(last);
            }
        }
    })
    .await;
    // A raw client: completes the handshake, then never reads or answers.
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(upgrade_request("").as_bytes())
        .await
        .unwrap();
    let error = timeout(LIMIT, error_rx)
        .await
        .expect("evicted in time")
        .unwrap();
    assert!(matches!(error, Some(Error::KeepaliveTimeout)), "{error:?}");
    // What the server sent: the 101, pings, then a close frame with 1011.
    let mut received = Vec::new();
    timeout(LIMIT, stream.read_to_end(&mut received))
        .await
        .unwrap()
        .unwrap();
    let close = [0x88, 24, 0x03, 0xF3];
    assert!(
        received.windows(4).any(|w| w == close),
        "no 1011 close in {received:x?}"
    );
}

#[tokio::test]
async fn graceful_shutdown_sends_1001_to_every_client() {
    let (addr, stop) = start(quiet(), echo).await;
    let mut clients = Vec::new();
    for _ in 0..5 {
        clients.push(
            tokio_tungstenite::connect_async(format!("ws://{addr}/"))
                .await
                .unwrap()
                .0,
        );
    }
    // Make sure every connection is established on the server side.
    for ws in &mut clients {
        ws.send(TMessage::text("ping")).await.unwrap();
        assert_eq!(ws.next().await.unwrap().unwrap(), TMessage::text("ping"));
    }
    stop.send(()).unwrap();
    for mut ws in clients {
        let message = timeout(LIMIT, ws.next()).await.unwrap().unwrap().unwrap();
        match message {
            TMessage::Close(Some(frame)) => {
                assert_eq!(u16::from(frame.code), 1001);
            }
            other => panic!("expected close 1001, got {other:?}"),
        }
    }
    // The listener is gone.
    let refused = timeout(LIMIT, TcpStream::connect(addr)).await.unwrap();
    assert!(refused.is_err());
}

/// The accept loop is a task of its own; dropping the future that awaits it
/// (here, by aborting the task it runs in) must still stop the server:
/// the listener closes and open connections are dropped.
#[tokio::test]
async fn dropping_the_serve_future_stops_the_server() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let serving = tokio::spawn(quiet().serve(echo, listener).into_future());
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/"))
        .await
        .unwrap();
    ws.send(TMessage::text("ping")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), TMessage::text("ping"));

    serving.abort();
    assert!(serving.await.unwrap_err().is_cancelled());
    // The connection is dropped without a closing handshake.
    let ended = timeout(LIMIT, ws.next()).await.unwrap();
    assert!(!matches!(
        ended,
        Some(Ok(TMessage::Text(_) | TMessage::Close(_)))
    ));
    let refused = timeout(LIMIT, TcpStream::connect(addr)).await.unwrap();
    assert!(refused.is_err());
}

/// Connections still open at the shutdown timeout are dropped, whatever
/// they wait for: here one whose client never answers the 1001, and one
/// still sending its upgrade request. Both timeouts of their own are far
/// longer than the test.
#[tokio::test]
async fn shutdown_timeout_drops_connections_that_do_not_close() {
    let builder = quiet()
        .close_timeout(Duration::from_secs(600))
        .handshake_timeout(Duration::from_secs(600))
        .shutdown_timeout(Duration::from_millis(200));
    let (addr, stop, serving) = start_joinable(builder, echo).await;
    let open = raw_upgrade(addr, &upgrade_request("")).await;
    let mut opening = TcpStream::connect(addr).await.unwrap();
    opening.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;

    stop.send(()).unwrap();
    let served = timeout(LIMIT, serving).await.expect("the server stopped");
    served.unwrap().unwrap();
    // Both connections were dropped: each client reads to the end.
    for mut stream in [open, opening] {
        let mut rest = Vec::new();
        timeout(LIMIT, stream.read_to_end(&mut rest))
            .await
            .unwrap()
            .unwrap();
    }
}

#[tokio::test]
async fn backpressure_bounds_memory_when_the_client_stops_reading() {
    let high_water = 64 * 1024;
    let (result_tx, result_rx) = oneshot::channel();
    let result_tx = std::sync::Mutex::new(Some(result_tx));
    let builder = quiet().write_high_water(high_water);
    let (addr, _stop) = start(builder, move |ws: WebSocket| {
        let tx = result_tx.lock().unwrap().take();
        async move {
            let (_receiver, sender) = ws.split();
            let chunk = ws_server::proto::Bytes::from(vec![7u8; 1024]);
            let mut accepted = 0usize;
            // Up to 256 MiB of attempts: a bounded queue must say Full long
            // before that, since the client reads nothing.
            let full = loop {
                match sender.try_send(Message::Binary(chunk.clone())) {
                    Ok(()) => accepted += 1,
                    Err(Error::Full) => break true,
                    Err(other) => panic!("{other}"),
                }
                if accepted >= 256 * 1024 {
                    break false;
                }
                if accepted.is_multiple_of(64) {
                    tokio::task::yield_now().await;
                }
            };
            if let Some(tx) = tx {
                let _ = tx.send((full, accepted));
            }
        }
    })
    .await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(upgrade_request("").as_bytes())
        .await
        .unwrap();
    let (full, accepted) = timeout(LIMIT, result_rx).await.unwrap().unwrap();
    assert!(full, "the queue never reported Full after {accepted} KiB");
    // What was accepted is the queue, the driver's output buffer (256 KiB)
    // and the kernel's socket buffers, not an unbounded pile.
    assert!(accepted < 64 * 1024, "{accepted} KiB accepted");
}

#[tokio::test]
async fn split_halves_work_from_two_tasks() {
    let (addr, _stop) = start(quiet(), |ws: WebSocket| async move {
        let (mut receiver, sender) = ws.split();
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Message>(4);
        let writer = tokio::spawn(async move {
            while let Some(message) = rx.recv().await {
                if sender.send(message).await.is_err() {
                    break;
                }
            }
        });
        while let Some(Ok(message)) = receiver.recv().await {
            if let Message::Text(text) = message {
                let _ = tx.send(Message::text(text.to_uppercase())).await;
            }
        }
        drop(tx);
        let _ = writer.await;
    })
    .await;
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/"))
        .await
        .unwrap();
    timeout(LIMIT, async {
        for word in ["one", "two", "three"] {
            ws.send(TMessage::text(word)).await.unwrap();
        }
        for word in ["ONE", "TWO", "THREE"] {
            assert_eq!(ws.next().await.unwrap().unwrap(), TMessage::text(word));
        }
        // Pings are still answered after the split.
        ws.send(TMessage::Ping(b"p".to_vec().into())).await.unwrap();
        assert_eq!(
            ws.next().await.unwrap().unwrap(),
            TMessage::Pong(b"p".to_vec().into())
        );
        ws.close(None).await.unwrap();
        // The close handshake completes.
        while let Some(message) = ws.next().await {
            if let Err(tungstenite::Error::ConnectionClosed) | Ok(TMessage::Close(_)) = message {
                continue;
            }
            message.unwrap();
        }
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn handler_return_closes_with_1000_and_close_code_is_reported() {
    let (addr, _stop) = start(quiet(), |mut ws: WebSocket| async move {
        let _ = ws.send_text("bye").await;
        let _ = ws.close(CloseCode::NORMAL, "done").await;
    })
    .await;
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/"))
        .await
        .unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), TMessage::text("bye"));
    match ws.next().await.unwrap().unwrap() {
        TMessage::Close(Some(frame)) => {
            assert_eq!(u16::from(frame.code), 1000);
            assert_eq!(frame.reason.as_str(), "done");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn section_5_5_1_messages_before_the_peer_s_close_are_answered_before_the_reply() {
    let (addr, _stop) = start(quiet(), echo).await;
    // In one write: a text frame "hi", then a close frame with 1000 (both
    // masked with 0, which leaves them as they are).
    let mut frames = vec![0x81, 0x80 | 2, 0, 0, 0, 0, b'h', b'i'];
    frames.extend_from_slice(&[0x88, 0x80 | 2, 0, 0, 0, 0, 0x03, 0xE8]);
    let after = &answer_to_frames(addr, &frames).await;
    // Section 5.5.1: an endpoint "MAY delay sending a Close frame until
    // its current message is sent". The echo leaves first.
    assert_eq!(&after[..4], &[0x81, 2, b'h', b'i'], "{after:x?}");
    assert_eq!(
        &after[4..],
        &[0x88, 2, 0x03, 0xE8],
        "then the close: {after:x?}"
    );
}

#[tokio::test]
async fn section_7_1_7_messages_before_a_violation_are_answered_before_the_1002() {
    let (addr, _stop) = start(quiet(), echo).await;
    // In one write: a masked text frame "hi", then a frame with RSV2 set.
    let mask = [9u8, 8, 7, 6];
    let mut frames = vec![0x81, 0x80 | 2, 9, 8, 7, 6, b'h' ^ mask[0], b'i' ^ mask[1]];
    frames.extend_from_slice(&[0x81 | 0x20, 0x80, 1, 2, 3, 4]);
    let after = &answer_to_frames(addr, &frames).await;
    assert_eq!(
        &after[..4],
        &[0x81, 2, b'h', b'i'],
        "the echo first: {after:x?}"
    );
    assert_eq!(after[4], 0x88, "then the close: {after:x?}");
    assert_eq!(&after[6..8], &[0x03, 0xEA], "with 1002: {after:x?}");
}

#[tokio::test]
async fn recv_many_takes_a_read_s_messages_then_reports_the_violation_on_its_own() {
    // What each `recv_many` returned: its count or error, and the texts.
    type Report = (Result<usize, String>, Vec<String>);
    let (report, mut reports) = tokio::sync::mpsc::unbounded_channel::<Report>();
    let handler = move |mut ws: WebSocket| {
        let report = report.clone();
        async move {
            let mut batch = Vec::new();
            loop {
                let outcome = ws.recv_many(&mut batch, 64).await;
                let end = matches!(outcome, Ok(0));
                let texts = batch.drain(..).map(|m| m.as_text().unwrap().to_owned());
                let _ = report.send((outcome.map_err(|e| e.to_string()), texts.collect()));
                if end {
                    break;
                }
            }
        }
    };
    let (addr, _stop) = start(quiet(), handler).await;
    let mut stream = raw_upgrade(addr, &upgrade_request("")).await;
    // In one write: three text frames (masked with 0, which leaves them as
    // they are), then a frame with RSV2 set.
    let mut frames = Vec::new();
    for text in [b'a', b'b', b'c'] {
        frames.extend_from_slice(&[0x81, 0x80 | 1, 0, 0, 0, 0, text]);
    }
    frames.extend_from_slice(&[0x81 | 0x20, 0x80, 1, 2, 3, 4]);
    stream.write_all(&frames).await.unwrap();
    let mut next = async || timeout(LIMIT, reports.recv()).await.unwrap().unwrap();
    assert_eq!(
        next().await,
        (Ok(3), vec!["a".into(), "b".into(), "c".into()])
    );
    let (error, texts) = next().await;
    assert!(texts.is_empty());
    assert!(
        error
            .as_ref()
            .is_err_and(|e| e.starts_with("protocol error")),
        "{error:?}"
    );
    assert_eq!(next().await, (Ok(0), vec![]));
}

#[tokio::test]
async fn send_many_sends_in_order_and_a_close_among_them_ends_the_rest() {
    // What `send_many` returned, and how many messages it left.
    let (report, mut reports) = tokio::sync::mpsc::unbounded_channel();
    let handler = move |mut ws: WebSocket| {
        let report = report.clone();
        async move {
            let mut batch = vec![
                Message::text("one"),
                Message::binary(&b"two"[..]),
                Message::Close(Some(ws_server::CloseFrame::new(CloseCode::NORMAL, "done"))),
                Message::text("never"),
            ];
            let sent = ws.send_many(&mut batch).await;
            let _ = report.send((format!("{sent:?}"), batch.len()));
            while ws.recv().await.is_some() {}
        }
    };
    let (addr, _stop) = start(quiet(), handler).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/"))
        .await
        .unwrap();
    let mut received = Vec::new();
    while let Some(message) = timeout(LIMIT, ws.next()).await.unwrap() {
        received.push(message.unwrap());
    }
    assert_eq!(received[0], TMessage::text("one"));
    assert_eq!(received[1], TMessage::binary(&b"two"[..]));
    match &received[2] {
        TMessage::Close(Some(frame)) => assert_eq!(frame.reason.as_str(), "done"),
        other => panic!("{other:?}"),
    }
    assert_eq!(received.len(), 3);
    let (sent, left) = reports.recv().await.unwrap();
    assert_eq!(sent, "Err(Closed(None))");
    assert_eq!(left, 1, "the message after the close is left");
}

/// Issue 25, items 9, 11 and 12: hostile or odd handshakes are answered at
/// once, not held until a handshake deadline (here far beyond the test's
/// own limit): duplicate headers get 400, a TLS ClientHello on this plain
/// port gets 400, and bare-LF line endings are accepted.
#[tokio::test]
async fn hostile_handshakes_are_answered_at_once() {
    let builder = quiet().handshake_timeout(Duration::from_secs(600));
    let (addr, _stop) = start(builder, echo).await;
    for extra in [
        "Host: evil.example\r\n",
        "Sec-WebSocket-Key: AQIDBAUGBwgJCgsMDQ4PEA==\r\n",
        "Sec-WebSocket-Version: 8\r\n",
    ] {
        let response = raw_request(addr, &upgrade_request(extra)).await;
        assert!(response.starts_with("HTTP/1.1 400 "), "{extra}: {response}");
    }

    // The start of a TLS 1.2/1.3 ClientHello, as `wss://` to this port sends.
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
        .await
        .unwrap();
    let mut response = Vec::new();
    timeout(LIMIT, stream.read_to_end(&mut response))
        .await
        .expect("answered before the deadline")
        .unwrap();
    assert!(response.starts_with(b"HTTP/1.1 400 "));

    let bare_lf = upgrade_request("").replace("\r\n", "\n");
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(bare_lf.as_bytes()).await.unwrap();
    let mut head = [0u8; 12];
    timeout(LIMIT, stream.read_exact(&mut head))
        .await
        .expect("answered before the deadline")
        .unwrap();
    assert_eq!(&head, b"HTTP/1.1 101");
}

/// Issue 25, item 7: a handshake timeout too long for the clock means no
/// deadline; it used to overflow and panic on the first connection.
#[tokio::test]
async fn a_handshake_timeout_of_duration_max_means_none() {
    let builder = quiet().handshake_timeout(Duration::MAX);
    let (addr, _stop) = start(builder, echo).await;
    for _ in 0..2 {
        let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/"))
            .await
            .unwrap();
        check_echo(&mut ws).await;
    }
    let client = ws_client::Client::builder()
        .handshake_timeout(Duration::MAX)
        .build()
        .unwrap();
    let (mut ws, _) = client.connect(&format!("ws://{addr}/")).await.unwrap();
    ws.send_text("still here").await.unwrap();
    assert_eq!(
        ws.recv().await.unwrap().unwrap(),
        Message::text("still here")
    );
}

/// Issue 25, item 10: a subprotocol the handshake hook chooses is checked
/// before it is written; one with a CR LF would have split the response
/// and let the application's input add headers of its own.
#[tokio::test]
async fn a_hook_s_protocol_with_cr_lf_is_a_500_not_an_injected_header() {
    let builder = quiet().on_handshake(|_| async move {
        Ok(Accept::new().protocol("chat\r\nSet-Cookie: session=stolen"))
    });
    let (addr, _stop) = start(builder, echo).await;
    let response = raw_request(addr, &upgrade_request("Sec-WebSocket-Protocol: chat\r\n")).await;
    assert!(response.starts_with("HTTP/1.1 500 "), "{response}");
    assert!(!response.contains("Set-Cookie"), "{response}");
}

/// Issue 25, item 10, the client's side: an origin or a subprotocol that
/// would split the request is an error the application sees, and nothing
/// is sent.
#[tokio::test]
async fn a_client_origin_or_protocol_with_cr_lf_is_refused() {
    let (addr, _stop) = start(quiet(), echo).await;
    let url = format!("ws://{addr}/");
    for builder in [
        ws_client::Client::builder().origin("https://a.example\r\nX-Evil: 1"),
        ws_client::Client::builder().protocols(["chat\r\nX-Evil: 1"]),
    ] {
        let error = builder.connect(&url).await.unwrap_err();
        assert!(
            matches!(
                error,
                ws_client::ConnectError::Build(ws_client::BuildError::InvalidHeader(_))
            ),
            "{error:?}"
        );
    }
}

/// Issue 25, item 2: a close frame the driver could not send (a reason over
/// 123 bytes, or code 1005, 1006 or 1015, which RFC 6455 section 7.4.1 says
/// "MUST NOT be set as a status code in a Close control frame by an
/// endpoint") is refused by every send path, and the connection stays
/// open: before, it was taken, sends were marked closed, and no close frame
/// was ever sent.
#[tokio::test]
async fn an_unsendable_close_frame_is_refused_by_every_send_path() {
    let (report, mut reports) = tokio::sync::mpsc::unbounded_channel::<String>();
    let handler = move |ws: WebSocket| {
        let report = report.clone();
        async move {
            let bad = || {
                [
                    ws_server::CloseFrame::new(CloseCode::NORMAL, "x".repeat(124)),
                    ws_server::CloseFrame::new(CloseCode(1005), ""),
                    ws_server::CloseFrame::new(CloseCode(1006), ""),
                    ws_server::CloseFrame::new(CloseCode(1015), ""),
                ]
                .map(|frame| Message::Close(Some(frame)))
            };
            let (mut rx, mut tx) = ws.split();
            for message in bad() {
                let mut outcomes = vec![format!("{:?}", tx.send(message.clone()).await)];
                outcomes.push(format!("{:?}", tx.try_send(message.clone())));
                let mut batch = vec![message.clone(), Message::text("after")];
                outcomes.push(format!("{:?}", tx.send_many(&mut batch).await));
                outcomes.push(format!("{:?}", SinkExt::send(&mut tx, message).await));
                for outcome in outcomes {
                    let _ = report.send(outcome);
                }
            }
            tx.send(Message::text("still open")).await.unwrap();
            tx.send(Message::Close(Some(ws_server::CloseFrame::new(
                CloseCode::NORMAL,
                "bye",
            ))))
            .await
            .unwrap();
            while rx.recv().await.is_some() {}
        }
    };
    let (addr, _stop) = start(quiet(), handler).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/"))
        .await
        .unwrap();
    let first = timeout(LIMIT, ws.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(first, TMessage::text("still open"));
    match timeout(LIMIT, ws.next()).await.unwrap().unwrap().unwrap() {
        TMessage::Close(Some(frame)) => {
            assert_eq!(u16::from(frame.code), 1000);
            assert_eq!(frame.reason.as_str(), "bye");
        }
        other => panic!("{other:?}"),
    }
    reports.close();
    let mut outcomes = Vec::new();
    while let Some(outcome) = reports.recv().await {
        outcomes.push(outcome);
    }
    assert_eq!(outcomes.len(), 16);
    for outcome in &outcomes {
        assert!(outcome.starts_with("Err(InvalidMessage("), "{outcome}");
    }
}

/// Issue 25, item 16: `same_origin()` lets in pages served by the host the
/// request was sent to, and clients that are not browsers (no `Origin`),
/// and answers 403 to a page on another site, which would otherwise act
/// with its visitors' cookies (cross-site WebSocket hijacking).
#[tokio::test]
async fn same_origin_refuses_pages_of_other_sites() {
    let (addr, _stop) = start(quiet().same_origin(), echo).await;
    let host = format!("localhost:{}", addr.port());
    let request = |origin: &str| {
        upgrade_request(origin).replace("Host: localhost\r\n", &format!("Host: {host}\r\n"))
    };
    let evil = request("Origin: https://evil.example\r\n");
    let response = raw_request(addr, &evil).await;
    assert!(response.starts_with("HTTP/1.1 403 "), "{response}");
    let lookalike = request(&format!("Origin: http://{host}.evil.example\r\n"));
    assert!(
        raw_request(addr, &lookalike)
            .await
            .starts_with("HTTP/1.1 403 ")
    );
    raw_upgrade(addr, &request(&format!("Origin: http://{host}\r\n"))).await;
    raw_upgrade(addr, &request("")).await;
}

/// Issue 25, item 5: the close deadline fires against a peer that ignores
/// our close frame, whether it stays quiet or keeps the socket readable
/// with a flood of pings (before, the deadline was looked at only when a
/// read found nothing, and a task that spent its budget on reads never saw
/// it pass).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_close_timeout_fires_against_a_peer_that_ignores_our_close() {
    let handler = |ws: WebSocket| async move {
        let _ = ws.close(CloseCode::NORMAL, "bye").await;
    };
    let builder = quiet().close_timeout(Duration::from_millis(300));
    let (addr, _stop) = start(builder, handler).await;
    for flood in [false, true] {
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        std::io::Write::write_all(&mut stream, upgrade_request("").as_bytes()).unwrap();
        let reader = stream.try_clone().unwrap();
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        // Reads until the server drops the connection.
        std::thread::spawn(move || {
            let mut reader = reader;
            let mut buf = [0u8; 4096];
            while matches!(std::io::Read::read(&mut reader, &mut buf), Ok(1..)) {}
            let _ = done_tx.send(());
        });
        if flood {
            // Masked pings with a 4-byte payload, back to back, written
            // from a thread of their own until the server is gone.
            let ping = [0x89, 0x84, 1, 2, 3, 4, 1, 2, 3, 4];
            let chunk: Vec<u8> = ping
                .iter()
                .copied()
                .cycle()
                .take(ping.len() * 6000)
                .collect();
            let mut writer = stream.try_clone().unwrap();
            std::thread::spawn(
                move || while std::io::Write::write_all(&mut writer, &chunk).is_ok() {},
            );
        }
        let ended = tokio::task::spawn_blocking(move || done_rx.recv_timeout(LIMIT))
            .await
            .unwrap();
        assert!(
            ended.is_ok(),
            "flood {flood}: the server never dropped the connection"
        );
        drop(stream);
    }
}

/// Issue 25: the peer goes away while the server waits for its close frame:
/// with an end of stream (it shut its side down), or with a reset
/// (`SO_LINGER` 0). Either ends the wait at once, not at the close timeout
/// (a minute here, past the test's own limit), and the handler's
/// `close().await` returns.
#[tokio::test]
async fn section_7_1_1_eof_or_reset_during_closing_ends_the_wait() {
    for reset in [false, true] {
        let (closed_tx, mut closed_rx) = tokio::sync::mpsc::unbounded_channel();
        let handler = move |ws: WebSocket| {
            let closed_tx = closed_tx.clone();
            async move {
                let outcome = ws.close(CloseCode::NORMAL, "bye").await;
                let _ = closed_tx.send(format!("{outcome:?}"));
            }
        };
        let builder = quiet().close_timeout(Duration::from_secs(60));
        let (addr, _stop) = start(builder, handler).await;
        let mut stream = raw_upgrade(addr, &upgrade_request("")).await;
        // The rest of the 101's head, then the server's close frame.
        let mut seen = Vec::new();
        while !seen.windows(4).any(|w| w == b"\r\n\r\n") || !seen.contains(&0x88) {
            let mut byte = [0u8; 1];
            timeout(LIMIT, stream.read_exact(&mut byte))
                .await
                .unwrap()
                .unwrap();
            seen.push(byte[0]);
        }
        if reset {
            stream.set_zero_linger().unwrap();
            drop(stream);
        } else {
            stream.shutdown().await.unwrap();
            let mut rest = Vec::new();
            // The server closes its side too once it has seen ours.
            timeout(LIMIT, stream.read_to_end(&mut rest))
                .await
                .expect("the server ended the connection")
                .unwrap();
        }
        let outcome = timeout(LIMIT, closed_rx.recv())
            .await
            .expect("close() returned before the close timeout")
            .unwrap();
        assert_eq!(outcome, "Ok(())", "reset {reset}");
    }
}

/// Issue 25, item 15: run by the test below in a child process whose limit
/// on open descriptors `prlimit` lowered to 64. Clients open connections
/// until the process has no descriptor left, so that the server's
/// `accept` fails with EMFILE; once they are closed, the server serves
/// again.
#[tokio::test]
#[ignore = "run under prlimit by the_accept_loop_keeps_serving_when_out_of_descriptors"]
async fn out_of_descriptors_child() {
    let (addr, _stop) = start(quiet(), echo).await;
    let mut held = Vec::new();
    let exhausted = loop {
        match std::net::TcpStream::connect(addr) {
            Ok(stream) => held.push(stream),
            Err(error) => break error,
        }
        assert!(held.len() < 1000, "the limit did not apply");
    };
    assert_eq!(exhausted.raw_os_error(), Some(24), "EMFILE: {exhausted}");
    // The server tries to accept what is pending, and backs off.
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(held);
    let (mut ws, _) = timeout(LIMIT, async {
        loop {
            match tokio_tungstenite::connect_async(format!("ws://{addr}/")).await {
                Ok(connected) => break connected,
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    })
    .await
    .expect("the server serves again");
    check_echo(&mut ws).await;
}

/// Issue 25, item 15: the accept loop keeps serving through EMFILE (see
/// the child above, which this runs with its descriptor limit lowered).
#[test]
fn the_accept_loop_keeps_serving_when_out_of_descriptors() {
    let exe = std::env::current_exe().unwrap();
    let status = std::process::Command::new("prlimit")
        .args(["--nofile=64:64", "--"])
        .arg(exe)
        .args([
            "--exact",
            "server::out_of_descriptors_child",
            "--ignored",
            "--quiet",
        ])
        .status()
        .expect("prlimit (util-linux) runs the child");
    assert!(status.success(), "the child failed: {status}");
}

//! ws-client over real sockets on 127.0.0.1, port 0: against
//! tokio-tungstenite servers, against ws-server, and against raw TCP
//! servers where a test needs a misbehaving one.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::{self, Message as TMessage};
use ws_client::http::{HeaderName, HeaderValue, StatusCode};
use ws_client::{
    App, AppError, BuildError, Callbacks, Client, CloseCode, ConfigError, ConnectError, Error,
    Message, Reconnect, ResponseError, WebSocket, WebSocketSender,
};
use ws_proto::{ProtocolError, Rejection, accept_key};
use ws_server::{Accept, Server, WebSocket as ServerSocket};

const LIMIT: Duration = Duration::from_secs(30);

/// A client with the heartbeat off, for tests that are not about it.
fn quiet() -> Client {
    Client::builder().ping_interval(None).build().unwrap()
}

/// Starts a ws-server echo server on `listener`; it stops (with 1001 to its
/// clients) when the returned sender fires or is dropped.
fn echo_server(listener: TcpListener) -> oneshot::Sender<()> {
    let (stop, stopped) = oneshot::channel::<()>();
    let serve = Server::builder()
        .ping_interval(None)
        .shutdown_timeout(Duration::from_secs(2))
        .serve(
            |mut ws: ServerSocket| async move {
                while let Some(Ok(message)) = ws.next().await {
                    if ws.send(message).await.is_err() {
                        break;
                    }
                }
            },
            listener,
        )
        .with_graceful_shutdown(async {
            let _ = stopped.await;
        });
    tokio::spawn(serve.into_future());
    stop
}

async fn local_listener() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    (listener, addr)
}

/// Reads a raw upgrade request and returns its `Sec-WebSocket-Key`.
async fn read_request(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        if stream.read(&mut byte).await.unwrap() == 0 {
            break;
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    head.lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("sec-websocket-key")
                .then(|| value.trim().to_owned())
        })
        .expect("a key")
}

fn switching(accept: &str) -> String {
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept}\r\n\r\n"
    )
}

/// Accepts the upgrade whose key is `key`.
async fn accept_upgrade(stream: &mut TcpStream, key: &str) {
    stream
        .write_all(switching(&accept_key(key.as_bytes())).as_bytes())
        .await
        .unwrap();
}

/// A raw server for one connection: `script` gets the accepted stream and
/// the client's key.
async fn raw_server<F, Fut>(script: F) -> SocketAddr
where
    F: FnOnce(TcpStream, String) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let (listener, addr) = local_listener().await;
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let key = read_request(&mut stream).await;
        script(stream, key).await;
    });
    addr
}

#[tokio::test]
async fn stream_style_against_tokio_tungstenite() {
    let (listener, addr) = local_listener().await;
    let (seen_tx, seen_rx) = oneshot::channel();
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        // tungstenite's callback signature, whose error type is large.
        #[allow(clippy::result_large_err)]
        let callback = move |request: &Request, mut response: Response| {
            let _ = seen_tx.send(request.clone());
            response
                .headers_mut()
                .insert("sec-websocket-protocol", HeaderValue::from_static("chat"));
            Ok(response)
        };
        let mut ws = tokio_tungstenite::accept_hdr_async(stream, callback)
            .await
            .unwrap();
        while let Some(Ok(message)) = ws.next().await {
            if message.is_text() || message.is_binary() {
                ws.send(message).await.unwrap();
            }
        }
    });

    let url = format!("ws://{addr}/feed?room=1");
    let (mut ws, response) = Client::builder()
        .ping_interval(None)
        .header(
            HeaderName::from_static("authorization"),
            HeaderValue::from_static("Bearer t"),
        )
        .cookie("session", "abc")
        .cookie("theme", "dark")
        .origin("https://example.com")
        .protocols(["chat", "superchat"])
        .connect(&url)
        .await
        .unwrap();
    assert_eq!(response.status, StatusCode::SWITCHING_PROTOCOLS);
    assert_eq!(response.protocol.as_deref(), Some("chat"));
    assert_eq!(ws.protocol(), Some("chat"));
    assert_eq!(ws.path(), "/feed");
    assert_eq!(ws.query(), Some("room=1"));

    let request = seen_rx.await.unwrap();
    assert_eq!(request.uri().path(), "/feed");
    assert_eq!(request.uri().query(), Some("room=1"));
    let header = |name: &str| request.headers().get(name).unwrap().to_str().unwrap();
    assert_eq!(header("authorization"), "Bearer t");
    assert_eq!(header("cookie"), "session=abc; theme=dark");
    assert_eq!(header("origin"), "https://example.com");
    assert_eq!(header("sec-websocket-protocol"), "chat, superchat");
    assert_eq!(header("host"), addr.to_string());

    ws.send_text("hello").await.unwrap();
    ws.send_binary(vec![1u8, 2, 3]).await.unwrap();
    let large = vec![0x5a; 1 << 20];
    ws.send_binary(large.clone()).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("hello"));
    assert_eq!(
        ws.next().await.unwrap().unwrap(),
        Message::binary(vec![1u8, 2, 3])
    );
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::binary(large));
    timeout(LIMIT, ws.close(CloseCode::NORMAL, "bye"))
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn short_style_in_four_lines_against_ws_server() {
    let (listener, addr) = local_listener().await;
    let _stop = echo_server(listener);
    let url = format!("ws://{addr}/");

    let (mut ws, _) = ws_client::connect(&url).await.unwrap();
    ws.send_text("Hello, Server").await.unwrap();
    let reply = ws.recv().await.unwrap().unwrap();
    ws.close(CloseCode::NORMAL, "").await.unwrap();

    assert_eq!(reply, Message::text("Hello, Server"));
}

#[tokio::test]
async fn section_7_1_1_client_waits_for_the_server_to_close_tcp() {
    // The server answers the close, then keeps the TCP connection open for a
    // moment before closing it: the client must not close it first, and
    // `close().await` must not wait for it either.
    let server_closed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = server_closed.clone();
    let (done_tx, done_rx) = oneshot::channel();
    let addr = raw_server(move |mut stream, key| async move {
        accept_upgrade(&mut stream, &key).await;
        // The client's masked close frame: 0x88, 0x80 | 2, mask, code.
        let mut frame = [0u8; 8];
        stream.read_exact(&mut frame).await.unwrap();
        assert_eq!(frame[0], 0x88);
        stream.write_all(&[0x88, 2, 0x03, 0xE8]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        // Still open: a read would block, not see end of stream.
        let mut byte = [0u8; 1];
        let early = timeout(Duration::from_millis(50), stream.read(&mut byte)).await;
        let _ = done_tx.send(early.is_err());
        flag.store(true, std::sync::atomic::Ordering::SeqCst);
    })
    .await;
    let (ws, _) = quiet().connect(format!("ws://{addr}/")).await.unwrap();
    timeout(LIMIT, ws.close(CloseCode::NORMAL, ""))
        .await
        .unwrap()
        .unwrap();
    assert!(
        !server_closed.load(std::sync::atomic::Ordering::SeqCst),
        "close() waited for the server's TCP close"
    );
    assert!(
        done_rx.await.unwrap(),
        "the client closed TCP before the server"
    );
}

#[tokio::test]
async fn heartbeat_times_out_on_a_peer_that_never_answers_pings() {
    let (closed_tx, closed_rx) = oneshot::channel();
    let addr = raw_server(|mut stream, key| async move {
        accept_upgrade(&mut stream, &key).await;
        // Read everything (pings, then the close frame) and answer nothing.
        let mut received = Vec::new();
        let _ = timeout(LIMIT, stream.read_to_end(&mut received)).await;
        let _ = closed_tx.send(received);
    })
    .await;
    let mut ws = heartbeat_client(addr, 200, 100).await;
    let started = Instant::now();
    expect_keepalive_timeout(&mut ws).await;
    let elapsed = started.elapsed();
    // Interval plus timeout is 300 ms; allow the scheduler its slack, but
    // never less than that.
    assert!(elapsed >= Duration::from_millis(250), "{elapsed:?}");
    assert!(ws.recv().await.is_none());
    // The socket was closed: the server saw its end, after a masked close
    // frame (0x88, masked, 2 + reason bytes).
    let received = timeout(LIMIT, closed_rx).await.unwrap().unwrap();
    let frames = masked_frames(&received);
    assert!(frames.iter().any(|(opcode, _)| *opcode == 0x9), "no ping");
    let (opcode, payload) = frames.last().expect("frames");
    assert_eq!(*opcode, 0x8, "{frames:?}");
    assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), 1011);
}

/// RFC 6455 section 5.5.3: "A Pong frame sent in response to a Ping frame
/// must have identical "Application data" as found in the message body of
/// the Ping frame being replied to." A peer that answers each keepalive
/// ping only with pongs that do not carry its payload (stray text, the
/// previous or the next ping's payload, the payload with a bit changed)
/// has not answered it: the heartbeat times out.
#[tokio::test]
async fn pongs_without_the_pings_payload_do_not_satisfy_the_heartbeat() {
    let (done_tx, done_rx) = oneshot::channel();
    let addr = raw_server(|mut stream, key| async move {
        accept_upgrade(&mut stream, &key).await;
        let mut pings = 0;
        let mut previous: Option<Vec<u8>> = None;
        let mut received = Vec::new();
        let mut buf = [0u8; 256];
        loop {
            let n = match timeout(LIMIT, stream.read(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => n,
                _ => break,
            };
            received.extend_from_slice(&buf[..n]);
            let frames = masked_frames(&received);
            // A frame cut off by the read stays for the next one.
            let whole: usize = frames.iter().map(|(_, payload)| 6 + payload.len()).sum();
            received.drain(..whole);
            for (opcode, payload) in frames {
                if opcode != 0x9 {
                    continue;
                }
                pings += 1;
                let mut flipped = payload.clone();
                *flipped.last_mut().expect("a keepalive ping has a payload") ^= 1;
                let mut wrong = vec![b"stray".to_vec(), flipped, vec![0; payload.len()]];
                wrong.extend(previous.replace(payload));
                for pong in wrong {
                    let mut frame = vec![0x8a, pong.len() as u8];
                    frame.extend(pong);
                    stream.write_all(&frame).await.unwrap();
                }
            }
        }
        let _ = done_tx.send(pings);
    })
    .await;
    let mut ws = heartbeat_client(addr, 300, 200).await;
    expect_keepalive_timeout(&mut ws).await;
    assert_eq!(ws.last_pong_rtt(), None, "no pong was taken as an answer");
    let pings = timeout(LIMIT, done_rx).await.unwrap().unwrap();
    assert!(pings >= 1, "the client pinged");
}

/// A client with a keepalive ping every `interval_ms`, failing the
/// connection when its pong is `timeout_ms` late.
async fn heartbeat_client(addr: SocketAddr, interval_ms: u64, timeout_ms: u64) -> WebSocket {
    let (ws, _) = Client::builder()
        .ping_interval(Some(Duration::from_millis(interval_ms)))
        .ping_timeout(Some(Duration::from_millis(timeout_ms)))
        .connect(format!("ws://{addr}/"))
        .await
        .unwrap();
    ws
}

/// The connection ends with a keepalive timeout, in time.
async fn expect_keepalive_timeout(ws: &mut WebSocket) {
    let outcome = timeout(LIMIT, ws.recv()).await.expect("detected in time");
    assert!(
        matches!(outcome, Some(Err(Error::KeepaliveTimeout))),
        "{outcome:?}"
    );
}

/// Splits what a client sent into (opcode, unmasked payload) frames; each
/// payload under 126 bytes, as control frames are. A frame not yet whole
/// at the end is left out.
fn masked_frames(mut bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut frames = Vec::new();
    while bytes.len() >= 6 {
        assert!(bytes[1] & 0x80 != 0, "unmasked client frame");
        let len = usize::from(bytes[1] & 0x7f);
        assert!(len < 126);
        if bytes.len() < 6 + len {
            break;
        }
        let (mask, payload) = (&bytes[2..6], &bytes[6..6 + len]);
        let payload = payload
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ mask[i % 4])
            .collect();
        frames.push((bytes[0] & 0x0f, payload));
        bytes = &bytes[6 + len..];
    }
    frames
}

#[tokio::test]
async fn stray_pongs_do_not_end_the_connection_or_stop_its_heartbeat() {
    let (listener, addr) = local_listener().await;
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let mut ws = tokio_tungstenite::accept_async(stream).await.unwrap();
        // Unsolicited pongs, including duplicates of the payload of the
        // client's first ping, before and between its pings. tungstenite
        // answers the pings (an automatic pong it has not sent yet gives
        // way to a pong sent by the application, so the answer may be one
        // of these): this checks that the strays change nothing, and the
        // next test that a wrong payload is never taken for the answer.
        for _ in 0..50 {
            ws.send(TMessage::Pong(vec![0, 0, 0, 0, 0, 0, 0, 1].into()))
                .await
                .unwrap();
            ws.send(TMessage::Pong(b"stray".to_vec().into()))
                .await
                .unwrap();
            if let Ok(Some(Ok(message))) = timeout(Duration::from_millis(50), ws.next()).await
                && message.is_text()
            {
                ws.send(message).await.unwrap();
            }
        }
        while let Some(Ok(message)) = ws.next().await {
            if message.is_text() {
                ws.send(message).await.unwrap();
            }
        }
    });
    let (mut ws, _) = Client::builder()
        .ping_interval(Some(Duration::from_millis(1000)))
        .ping_timeout(Some(Duration::from_millis(900)))
        .connect(format!("ws://{addr}/"))
        .await
        .unwrap();
    // Two heartbeats among some 100 stray pongs. The deadlines are generous:
    // other tests load the machine, and a late pong is not what this tests.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    ws.send_text("still here").await.unwrap();
    let reply = timeout(LIMIT, ws.recv()).await.unwrap();
    assert_eq!(reply.unwrap().unwrap(), Message::text("still here"));
    let rtt = ws.last_pong_rtt().expect("a pong was timed");
    assert!(rtt < LIMIT, "{rtt:?}");
    ws.close(CloseCode::NORMAL, "").await.unwrap();
}

#[test]
fn ping_interval_must_be_greater_than_ping_timeout() {
    let secs = Duration::from_secs;
    let pair = |interval, timeout| {
        Client::builder()
            .ping_interval(interval)
            .ping_timeout(timeout)
            .build()
    };
    let error = pair(Some(secs(5)), Some(secs(5))).unwrap_err();
    assert_eq!(
        error,
        BuildError::Config(ConfigError::PingIntervalNotGreaterThanTimeout {
            interval: secs(5),
            timeout: secs(5)
        })
    );
    let text = error.to_string();
    assert!(text.contains("ping_interval (5s)"), "{text}");
    assert!(text.contains("ping_timeout (5s)"), "{text}");
    assert!(pair(Some(secs(1)), Some(secs(2))).is_err());
    assert!(pair(Some(secs(2)), Some(secs(1))).is_ok());
    assert!(pair(Some(secs(2)), None).is_ok());
    assert!(pair(None, Some(secs(2))).is_ok());
    assert!(pair(None, None).is_ok());
    assert!(Client::builder().build().is_ok(), "the defaults are valid");
    assert!(matches!(
        Client::builder().cookie("a", "b;c").build(),
        Err(BuildError::InvalidCookie(_))
    ));
}

#[tokio::test]
async fn connect_errors_are_distinct() {
    let client = Client::builder()
        .ping_interval(None)
        .connect_timeout(LIMIT)
        .handshake_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    assert!(matches!(
        client.connect("http://127.0.0.1:1/").await,
        Err(ConnectError::UnsupportedScheme(scheme)) if scheme == "http"
    ));
    assert!(matches!(
        client.connect("not a url").await,
        Err(ConnectError::InvalidUrl(_))
    ));
    assert!(matches!(
        client.connect("ws://").await,
        Err(ConnectError::InvalidUrl(_) | ConnectError::MissingHost)
    ));
    assert!(matches!(
        client.connect("ws://name.invalid/").await,
        Err(ConnectError::Resolve { host, .. }) if host == "name.invalid"
    ));

    // A port nobody listens on.
    let (listener, addr) = local_listener().await;
    drop(listener);
    assert!(matches!(
        client.connect(format!("ws://{addr}/")).await,
        Err(ConnectError::Refused { addr: refused }) if refused == addr
    ));

    // A server that accepts and never answers.
    let (listener, addr) = local_listener().await;
    let _silent = tokio::spawn(async move {
        let (_stream, _) = listener.accept().await.unwrap();
        tokio::time::sleep(LIMIT).await;
    });
    assert!(matches!(
        client.connect(format!("ws://{addr}/")).await,
        Err(ConnectError::HandshakeTimeout(_))
    ));

    // A server that closes during the handshake.
    let addr = raw_server(|stream, _key| async move { drop(stream) }).await;
    assert!(matches!(
        client.connect(format!("ws://{addr}/")).await,
        Err(ConnectError::ClosedDuringHandshake)
    ));

    // A 503 with a body: retryable, and the body is kept.
    let addr = raw_server(|mut stream, _key| async move {
        let body = "busy";
        let response = format!(
            "HTTP/1.1 503 Service Unavailable\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(response.as_bytes()).await.unwrap();
    })
    .await;
    let error = client.connect(format!("ws://{addr}/")).await.unwrap_err();
    assert_eq!(error.status(), Some(StatusCode::SERVICE_UNAVAILABLE));
    assert!(error.is_retryable());
    let ConnectError::Rejected(rejected) = error else {
        unreachable!()
    };
    assert_eq!(&rejected.body[..], b"busy");
}

#[tokio::test]
async fn ipv6_literal_urls_connect() {
    let Ok(listener) = TcpListener::bind("[::1]:0").await else {
        // No IPv6 loopback on this machine.
        return;
    };
    let port = listener.local_addr().unwrap().port();
    let _stop = echo_server(listener);
    let (mut ws, _) = quiet()
        .connect(format!("ws://[::1]:{port}/"))
        .await
        .unwrap();
    ws.send_text("v6").await.unwrap();
    assert_eq!(ws.recv().await.unwrap().unwrap(), Message::text("v6"));
    assert_eq!(ws.peer_addr().unwrap().port(), port);
}

#[tokio::test]
async fn section_4_2_2_wrong_accept_key_is_rejected() {
    let addr = raw_server(|mut stream, _key| async move {
        let wrong = accept_key(b"another key");
        let _ = stream.write_all(switching(&wrong).as_bytes()).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
    })
    .await;
    let outcome = quiet().connect(format!("ws://{addr}/")).await;
    assert!(
        matches!(
            outcome,
            Err(ConnectError::InvalidResponse(ResponseError::AcceptMismatch))
        ),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn section_5_1_masked_server_frame_fails_the_connection_with_1002() {
    let (close_tx, close_rx) = oneshot::channel();
    let addr = raw_server(|mut stream, key| async move {
        accept_upgrade(&mut stream, &key).await;
        // A masked text frame "hi" from the server.
        let mask = [1u8, 2, 3, 4];
        let payload = [b'h' ^ mask[0], b'i' ^ mask[1]];
        let mut frame = vec![0x81, 0x80 | 2];
        frame.extend_from_slice(&mask);
        frame.extend_from_slice(&payload);
        stream.write_all(&frame).await.unwrap();
        let mut received = Vec::new();
        let _ = timeout(LIMIT, stream.read_to_end(&mut received)).await;
        let _ = close_tx.send(received);
    })
    .await;
    let (mut ws, _) = quiet().connect(format!("ws://{addr}/")).await.unwrap();
    let outcome = timeout(LIMIT, ws.recv()).await.unwrap();
    assert!(
        matches!(
            outcome,
            Some(Err(Error::Protocol(ProtocolError::MaskedFrame)))
        ),
        "{outcome:?}"
    );
    let received = close_rx.await.unwrap();
    let frames = masked_frames(&received);
    let (opcode, payload) = &frames[0];
    assert_eq!(*opcode, 0x8, "{frames:?}");
    assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), 1002);
}

/// Records what an App's callbacks saw.
#[derive(Default)]
struct Recorder {
    events: Arc<Mutex<Vec<String>>>,
    /// Closes after this many messages.
    close_after: usize,
    received: usize,
    /// Sent on every open and reconnect, to resubscribe.
    greeting: &'static str,
    /// Told of every message.
    notify: Option<mpsc::UnboundedSender<()>>,
}

impl Recorder {
    fn push(&self, event: String) {
        self.events.lock().unwrap().push(event);
    }
}

impl Callbacks for Recorder {
    fn on_open(&mut self, sender: &WebSocketSender) {
        self.push("open".into());
        if !self.greeting.is_empty() {
            sender.try_send(Message::text(self.greeting)).unwrap();
        }
    }

    fn on_reconnect(&mut self, sender: &WebSocketSender) {
        self.push("reconnect".into());
        sender.try_send(Message::text(self.greeting)).unwrap();
    }

    fn on_message(&mut self, sender: &WebSocketSender, message: Message) {
        self.push(format!("message {}", message.as_text().unwrap_or("?")));
        self.received += 1;
        if let Some(notify) = &self.notify {
            let _ = notify.send(());
        }
        if self.received == self.close_after {
            sender.close(CloseCode::NORMAL, "done").unwrap();
        }
    }

    fn on_error(&mut self, error: &AppError) {
        self.push(format!("error {error}"));
    }

    fn on_close(&mut self, code: Option<CloseCode>, _reason: &str) {
        self.push(format!("close {:?}", code.map(u16::from)));
    }
}

/// The classic WebSocketApp pattern: `on_open` starts a thread that sends
/// three messages, then closes.
struct Threaded {
    events: Arc<Mutex<Vec<String>>>,
}

impl Callbacks for Threaded {
    fn on_open(&mut self, sender: &WebSocketSender) {
        let sender = sender.clone();
        std::thread::spawn(move || {
            for i in 0..3 {
                std::thread::sleep(Duration::from_millis(20));
                sender
                    .try_send(Message::text(format!("hello {i}")))
                    .unwrap();
            }
            std::thread::sleep(Duration::from_millis(100));
            sender.close(CloseCode::NORMAL, "").unwrap();
        });
    }

    fn on_message(&mut self, _sender: &WebSocketSender, message: Message) {
        let text = message.as_text().unwrap().to_owned();
        self.events.lock().unwrap().push(text);
    }

    fn on_close(&mut self, code: Option<CloseCode>, _reason: &str) {
        self.events.lock().unwrap().push(format!("close {code:?}"));
    }
}

#[tokio::test]
async fn callback_style_sends_from_a_thread_and_closes() {
    let (listener, addr) = local_listener().await;
    let _stop = echo_server(listener);
    let events = Arc::new(Mutex::new(Vec::new()));
    let mut app = Threaded {
        events: events.clone(),
    };
    timeout(
        LIMIT,
        App::new(format!("ws://{addr}/")).run_forever(&mut app),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(
        *events.lock().unwrap(),
        [
            "hello 0",
            "hello 1",
            "hello 2",
            &format!("close {:?}", Some(CloseCode::NORMAL))
        ]
    );
}

#[tokio::test]
async fn app_reconnects_after_the_server_restarts_and_resubscribes() {
    let (listener, addr) = local_listener().await;
    let stop = echo_server(listener);
    let (notify_tx, mut notify_rx) = mpsc::unbounded_channel();
    let events = Arc::new(Mutex::new(Vec::new()));
    let mut recorder = Recorder {
        events: events.clone(),
        close_after: 2,
        greeting: "subscribe",
        notify: Some(notify_tx),
        ..Recorder::default()
    };
    let app = App::new(format!("ws://{addr}/"))
        .client(Client::builder().ping_interval(None))
        .reconnect(
            Reconnect::new()
                .initial_delay(Duration::from_millis(50))
                .max_delay(Duration::from_millis(200)),
        );
    let run = tokio::spawn(async move {
        let outcome = app.run_forever(&mut recorder).await;
        (outcome, recorder)
    });

    // The first subscription was answered.
    timeout(LIMIT, notify_rx.recv()).await.unwrap().unwrap();
    // Restart: the server closes every connection with 1001, then comes back
    // on the same address a little later.
    stop.send(()).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let listener = TcpListener::bind(addr).await.unwrap();
    let _stop = echo_server(listener);
    // The second, after the reconnect; then the recorder closes.
    timeout(LIMIT, notify_rx.recv()).await.unwrap().unwrap();

    let (outcome, _) = timeout(LIMIT, run).await.unwrap().unwrap();
    outcome.unwrap();
    let events = events.lock().unwrap().clone();
    assert_eq!(events.first().map(String::as_str), Some("open"));
    assert_eq!(events[1], "message subscribe");
    assert_eq!(events[2], "close Some(1001)");
    assert!(events.contains(&"reconnect".to_owned()), "{events:?}");
    assert_eq!(events.last().map(String::as_str), Some("close Some(1000)"));
    let subscribed = events.iter().filter(|e| *e == "message subscribe").count();
    assert_eq!(subscribed, 2, "{events:?}");
}

#[tokio::test]
async fn a_403_is_fatal_and_visible_even_with_reconnect() {
    let (listener, addr) = local_listener().await;
    let serve = Server::builder()
        .on_handshake(|_request| async {
            Err::<Accept, _>(Rejection::new(StatusCode::FORBIDDEN).body("forbidden\n"))
        })
        .serve(|_ws: ServerSocket| async {}, listener);
    tokio::spawn(serve.into_future());

    let error = quiet().connect(format!("ws://{addr}/")).await.unwrap_err();
    assert_eq!(error.status(), Some(StatusCode::FORBIDDEN));
    assert!(!error.is_retryable());
    assert!(matches!(&error, ConnectError::Rejected(r) if &r.body[..] == b"forbidden\n"));

    let events = Arc::new(Mutex::new(Vec::new()));
    let mut recorder = Recorder {
        events: events.clone(),
        ..Recorder::default()
    };
    let outcome = timeout(
        LIMIT,
        App::new(format!("ws://{addr}/"))
            .reconnect(Reconnect::new().initial_delay(Duration::from_millis(10)))
            .run_forever(&mut recorder),
    )
    .await
    .expect("a 403 is not retried");
    assert!(
        matches!(outcome, Err(AppError::Connect(ConnectError::Rejected(ref r))) if r.status == StatusCode::FORBIDDEN),
        "{outcome:?}"
    );
    assert_eq!(events.lock().unwrap().len(), 1, "one on_error, no retries");
}

#[tokio::test]
async fn app_gives_up_after_max_retries() {
    let (listener, addr) = local_listener().await;
    drop(listener);
    let events = Arc::new(Mutex::new(Vec::new()));
    let mut recorder = Recorder {
        events: events.clone(),
        ..Recorder::default()
    };
    let outcome = timeout(
        LIMIT,
        App::new(format!("ws://{addr}/"))
            .reconnect(
                Reconnect::new()
                    .initial_delay(Duration::from_millis(5))
                    .max_retries(Some(3)),
            )
            .run_forever(&mut recorder),
    )
    .await
    .unwrap();
    assert!(matches!(
        outcome,
        Err(AppError::Connect(ConnectError::Refused { .. }))
    ));
    // The first attempt and three retries.
    assert_eq!(events.lock().unwrap().len(), 4);
}

#[test]
fn reconnect_delays_grow_with_jitter_up_to_the_cap() {
    let policy = Reconnect::new()
        .initial_delay(Duration::from_millis(100))
        .max_delay(Duration::from_millis(1000));
    for (attempt, full) in [
        (1, 100),
        (2, 200),
        (3, 400),
        (4, 800),
        (5, 1000),
        (40, 1000),
    ] {
        let delay = policy.delay(attempt);
        let full = Duration::from_millis(full);
        assert!(delay >= full / 2 && delay <= full, "{attempt}: {delay:?}");
    }
}

#[tokio::test]
async fn ws_server_and_tungstenite_client_still_agree() {
    // The server side of the shared driver, against an independent client:
    // a guard that the move to a shared driver changed nothing visible.
    let (listener, addr) = local_listener().await;
    let _stop = echo_server(listener);
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/"))
        .await
        .unwrap();
    ws.send(TMessage::text("x")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), TMessage::text("x"));
    ws.close(None).await.unwrap();
    while let Some(Ok(message)) = ws.next().await {
        assert!(matches!(message, TMessage::Close(_)), "{message:?}");
    }
    let _ = tungstenite::Error::ConnectionClosed;
}

/// Counts connections opened and closes seen; never sends.
#[derive(Default)]
struct Counter {
    opens: usize,
    closes: Vec<Option<CloseCode>>,
}

impl Callbacks for Counter {
    fn on_open(&mut self, _sender: &WebSocketSender) {
        self.opens += 1;
    }
    fn on_close(&mut self, code: Option<CloseCode>, _reason: &str) {
        self.closes.push(code);
    }
}

/// A ws-server that closes every connection at once with `code`, and
/// counts them.
async fn closing_server(code: CloseCode) -> (SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
    let (listener, addr) = local_listener().await;
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = accepted.clone();
    let handler = move |ws: ServerSocket| {
        counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        async move {
            let _ = ws.close(code, "go away").await;
        }
    };
    let serve = Server::builder()
        .ping_interval(None)
        .serve(handler, listener);
    tokio::spawn(serve.into_future());
    (addr, accepted)
}

/// Issue 25, item 6: a server that accepts and closes at once (1013 Try
/// Again Later) does not reset the count of retries, so the delay grows
/// and `max_retries` ends it. Before, every successful handshake started
/// the count again: a reconnect every delay, forever.
#[tokio::test]
async fn a_server_that_accepts_and_closes_at_once_is_retried_ever_more_slowly() {
    let (addr, accepted) = closing_server(CloseCode::TRY_AGAIN_LATER).await;
    let mut counter = Counter::default();
    let outcome = timeout(
        LIMIT,
        App::new(format!("ws://{addr}/"))
            .client(Client::builder().ping_interval(None))
            .reconnect(
                Reconnect::new()
                    .initial_delay(Duration::from_millis(5))
                    .max_retries(Some(3)),
            )
            .run_forever(&mut counter),
    )
    .await
    .expect("gave up after three retries");
    assert!(outcome.is_ok(), "{outcome:?}");
    assert_eq!(
        counter.opens, 4,
        "on_open, then on_reconnect (which calls it) three times"
    );
    assert_eq!(counter.closes.len(), 4);
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 4);
}

/// Issue 25, item 6: 1008 (Policy Violation) and 1003 (Unsupported Data)
/// from the server mean this client is refused: no reconnect by default,
/// and one when the policy says so.
#[tokio::test]
async fn a_policy_violation_close_ends_the_app_even_with_reconnect() {
    for code in [CloseCode::POLICY_VIOLATION, CloseCode::UNSUPPORTED_DATA] {
        let (addr, accepted) = closing_server(code).await;
        let mut counter = Counter::default();
        let outcome = timeout(
            LIMIT,
            App::new(format!("ws://{addr}/"))
                .client(Client::builder().ping_interval(None))
                .reconnect(Reconnect::new().initial_delay(Duration::from_millis(5)))
                .run_forever(&mut counter),
        )
        .await
        .expect("not retried");
        assert!(outcome.is_ok(), "{outcome:?}");
        assert_eq!(counter.closes, [Some(code)]);
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1);
    }
    // Retried when the policy lists no fatal code.
    let (addr, accepted) = closing_server(CloseCode::POLICY_VIOLATION).await;
    let outcome = timeout(
        LIMIT,
        App::new(format!("ws://{addr}/"))
            .client(Client::builder().ping_interval(None))
            .reconnect(
                Reconnect::new()
                    .initial_delay(Duration::from_millis(5))
                    .max_retries(Some(1))
                    .fatal_close_codes([]),
            )
            .run_forever(&mut Counter::default()),
    )
    .await
    .unwrap();
    assert!(outcome.is_ok());
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 2);
}

/// Issue 25, item 13: a client whose application stops reading while the
/// server keeps sending holds its socket unread, and with it the server's
/// pongs; the heartbeat must not fail a healthy server for a slow
/// application. Every message arrives once the application reads again.
#[tokio::test]
async fn a_slow_application_does_not_fail_the_heartbeat() {
    const MESSAGES: usize = 300;
    let (listener, addr) = local_listener().await;
    let handler = |mut ws: ServerSocket| async move {
        for i in 0..MESSAGES {
            let text = format!("{i:04} {}", "x".repeat(2000));
            if ws.send(Message::text(text)).await.is_err() {
                return;
            }
        }
        while ws.recv().await.is_some() {}
    };
    let serve = Server::builder()
        .ping_interval(None)
        .serve(handler, listener);
    tokio::spawn(serve.into_future());

    let mut ws = heartbeat_client(addr, 100, 50).await;
    // The application is busy for many ping intervals.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for i in 0..MESSAGES {
        match timeout(LIMIT, ws.recv()).await.unwrap() {
            Some(Ok(Message::Text(text))) => assert!(text.starts_with(&format!("{i:04} "))),
            other => panic!("message {i}: {other:?}"),
        }
    }
    // Still open, and the heartbeat still runs: a ping answered since.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(ws.last_pong_rtt().is_some());
    ws.close(CloseCode::NORMAL, "").await.unwrap();
}

/// Issue 25: the 101 response and the server's first frames in one
/// segment. The bytes after the head belong to the connection: the first
/// message is delivered, not lost with the handshake's buffer.
#[tokio::test]
async fn section_4_2_2_frames_in_the_same_segment_as_the_101_are_kept() {
    let addr = raw_server(|mut stream, key| async move {
        let mut bytes = switching(&accept_key(key.as_bytes())).into_bytes();
        bytes.extend_from_slice(&[0x81, 5]);
        bytes.extend_from_slice(b"first");
        bytes.extend_from_slice(&[0x82, 2, 7, 8]);
        stream.write_all(&bytes).await.unwrap();
        let mut rest = Vec::new();
        let _ = timeout(LIMIT, stream.read_to_end(&mut rest)).await;
    })
    .await;
    let (mut ws, _) = quiet().connect(format!("ws://{addr}/")).await.unwrap();
    assert_eq!(
        timeout(LIMIT, ws.recv()).await.unwrap().unwrap().unwrap(),
        Message::text("first")
    );
    assert_eq!(
        timeout(LIMIT, ws.recv()).await.unwrap().unwrap().unwrap(),
        Message::binary(vec![7u8, 8])
    );
}

/// Issue 25: `recv` is cancel-safe. Raced in `tokio::select!` against a
/// timer that keeps winning, every message still arrives once, in order.
#[tokio::test]
async fn recv_inside_select_loses_no_message() {
    const MESSAGES: usize = 2000;
    let (listener, addr) = local_listener().await;
    let handler = |mut ws: ServerSocket| async move {
        for i in 0..MESSAGES {
            if ws.send(Message::text(i.to_string())).await.is_err() {
                return;
            }
            if i % 64 == 0 {
                tokio::task::yield_now().await;
            }
        }
        while ws.recv().await.is_some() {}
    };
    let serve = Server::builder()
        .ping_interval(None)
        .serve(handler, listener);
    tokio::spawn(serve.into_future());
    let (mut ws, _) = quiet().connect(format!("ws://{addr}/")).await.unwrap();
    let mut next = 0;
    let mut cancelled = 0;
    timeout(LIMIT, async {
        while next < MESSAGES {
            tokio::select! {
                biased;
                () = tokio::task::yield_now() => cancelled += 1,
                message = ws.recv() => {
                    assert_eq!(message.unwrap().unwrap(), Message::text(next.to_string()));
                    next += 1;
                }
            }
        }
    })
    .await
    .expect("every message arrived");
    assert!(cancelled > 0, "recv was cancelled at least once");
}

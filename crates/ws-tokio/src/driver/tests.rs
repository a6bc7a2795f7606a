//! The driver, polled by hand beside the application over loopback.

use std::future::poll_fn;

use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use ws_proto::{Config, apply_mask};

use super::*;

/// Runs `work` while polling `driver` alongside it, as a server's task
/// joins the two.
async fn beside<F: Future>(mut driver: Pin<&mut impl Future>, work: F) -> F::Output {
    let mut work = pin!(work);
    poll_fn(|cx| {
        let _ = driver.as_mut().poll(cx);
        work.as_mut().poll(cx)
    })
    .await
}

/// What the driver holds in buffers: the read buffer, the output's (if
/// its working buffers are made), and the link's queues.
fn held<S, F>(driver: Pin<&mut Driver<S, F, ToLink>>) -> (usize, Option<usize>, bool) {
    let state = driver.project().state;
    let read = state.conn.read_buffer().capacity();
    let output = state.work.0.as_ref().map(|work| work.out.tail.capacity());
    (read, output, state.link_used)
}

/// A server connection over loopback: the client's socket, the
/// application's side and the driver (never told to shut down).
async fn server_connection(
    settings: Settings,
    config: Config,
) -> (
    TcpStream,
    WebSocket,
    Driver<TcpStream, std::future::Pending<()>, ToLink>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let (stream, _) = listener.accept().await.unwrap();
    let conn = Connection::new(Role::Server, config);
    let handshake = Handshake::new(http::Request::new(()));
    let settings = Arc::new(settings);
    let (ws, driver) = open(stream, conn, handshake, &settings, std::future::pending());
    (client, ws, driver)
}

#[tokio::test(start_paused = true)]
async fn a_connection_gives_its_buffers_back_half_a_second_after_going_idle() {
    let (mut client, mut ws, driver) =
        server_connection(Settings::default(), Config::default()).await;
    let mut driver = pin!(driver);

    // A masked 5-byte text frame, echoed by the application.
    let key = [1, 2, 3, 4];
    let mut payload = *b"hello";
    apply_mask(&mut payload, key);
    let mut frame = vec![0x81, 0x85, 1, 2, 3, 4];
    frame.extend(payload);
    client.write_all(&frame).await.unwrap();
    let message = beside(driver.as_mut(), ws.next()).await.unwrap().unwrap();
    beside(driver.as_mut(), ws.send(message)).await.unwrap();
    let mut echo = [0u8; 7];
    beside(driver.as_mut(), client.read_exact(&mut echo))
        .await
        .unwrap();
    assert_eq!(&echo, b"\x81\x05hello");

    let (read, output, link) = held(driver.as_mut());
    assert!(
        read > 0 && output > Some(0) && link,
        "buffers kept while busy"
    );
    beside(driver.as_mut(), tokio::time::sleep(RELEASE_AFTER / 2)).await;
    let (read, output, _) = held(driver.as_mut());
    assert!(
        read > 0 && output > Some(0),
        "still kept: traffic may resume"
    );
    beside(driver.as_mut(), tokio::time::sleep(RELEASE_AFTER)).await;
    assert_eq!(held(driver.as_mut()), (0, None, false), "given back");

    // And the connection still works, from a buffer allocated anew.
    client.write_all(&frame).await.unwrap();
    let message = beside(driver.as_mut(), ws.next()).await.unwrap().unwrap();
    assert_eq!(message.as_text(), Some("hello"));
}

/// A masked text frame of `text`, as a client sends it.
fn client_text(text: &str) -> Vec<u8> {
    let key = [1, 2, 3, 4];
    let mut payload = text.as_bytes().to_vec();
    apply_mask(&mut payload, key);
    let mut frame = vec![0x81, 0x80 | payload.len() as u8];
    frame.extend(key);
    frame.extend(payload);
    frame
}

#[tokio::test(start_paused = true)]
async fn the_driver_queues_no_more_than_the_incoming_bound_for_an_application_that_does_not_read() {
    let settings = Settings::default().incoming_queue(4);
    let (mut client, mut ws, driver) = server_connection(settings, Config::default()).await;
    let mut driver = pin!(driver);
    let step = Duration::from_millis(10);
    let mut batch = Vec::new();

    // Three taken: the queue has room for four again, which the driver
    // learns only as it queues more.
    for n in 0..3 {
        client
            .write_all(&client_text(&n.to_string()))
            .await
            .unwrap();
    }
    beside(driver.as_mut(), tokio::time::sleep(step)).await;
    assert_eq!(ws.recv_many(&mut batch, 100).await.unwrap(), 3);

    // Twenty more, in one write, while the application reads nothing.
    let burst: Vec<u8> = (3..23).flat_map(|n| client_text(&n.to_string())).collect();
    client.write_all(&burst).await.unwrap();
    beside(driver.as_mut(), tokio::time::sleep(step)).await;
    batch.clear();
    // Taken without polling the driver: only what it had queued.
    assert_eq!(ws.recv_many(&mut batch, 100).await.unwrap(), 4, "the bound");

    // The rest follows, in order, once the driver runs again.
    while batch.len() < 20 {
        let limit = 100;
        beside(driver.as_mut(), ws.recv_many(&mut batch, limit))
            .await
            .unwrap();
    }
    let texts: Vec<_> = batch.iter().filter_map(Message::as_text).collect();
    let expected: Vec<_> = (3..23).map(|n| n.to_string()).collect();
    assert_eq!(texts, expected);
}

#[tokio::test(start_paused = true)]
async fn a_silent_connection_makes_no_buffers_and_a_keepalive_ping_gives_them_back() {
    let interval = Duration::from_secs(5);
    let config = Config::default()
        .ping_interval(Some(interval))
        .ping_timeout(None);
    let (mut client, _ws, driver) = server_connection(Settings::default(), config).await;
    let mut driver = pin!(driver);

    beside(driver.as_mut(), tokio::time::sleep(interval / 2)).await;
    assert_eq!(held(driver.as_mut()), (0, None, false), "nothing made");

    // The keepalive ping is written from working buffers made for it...
    beside(driver.as_mut(), tokio::time::sleep(interval / 2)).await;
    let mut ping = [0u8; 10];
    beside(driver.as_mut(), client.read_exact(&mut ping))
        .await
        .unwrap();
    assert_eq!(ping[..2], [0x89, 8], "a ping with an 8-byte payload");
    assert!(held(driver.as_mut()).1.is_some(), "made for the ping");
    // ...which go once the socket has been idle for a while.
    beside(driver.as_mut(), tokio::time::sleep(RELEASE_AFTER * 2)).await;
    assert_eq!(held(driver.as_mut()), (0, None, false), "given back");
}

/// Issue 25, item 3: a header announcing a large frame, followed by a stall
/// or a trickle, does not make the driver reserve the announced size. The
/// read buffer grows with the bytes that arrive.
#[tokio::test]
async fn a_large_frame_announced_then_stalled_reserves_what_arrived() {
    let config = Config::default()
        .max_message_size(64 << 20)
        .max_frame_size(64 << 20);
    let (mut client, mut ws, driver) = server_connection(Settings::default(), config).await;
    let mut driver = pin!(driver);
    // A masked binary frame announcing 16 MiB, then one payload byte.
    let mut header = vec![0x82, 0xff];
    header.extend((16u64 << 20).to_be_bytes());
    header.extend([1, 2, 3, 4, 0]);
    client.write_all(&header).await.unwrap();
    let settle = tokio::time::sleep(std::time::Duration::from_millis(50));
    beside(driver.as_mut(), settle).await;
    let (read, _, _) = held(driver.as_mut());
    assert!(
        read <= 2 * READ_AHEAD,
        "reserved {read} bytes for 15 received"
    );

    // A trickle: 200 more bytes, one write each.
    for _ in 0..200 {
        client.write_all(&[0]).await.unwrap();
        beside(driver.as_mut(), tokio::task::yield_now()).await;
    }
    let settle = tokio::time::sleep(std::time::Duration::from_millis(50));
    beside(driver.as_mut(), settle).await;
    let (read, _, _) = held(driver.as_mut());
    assert!(
        read <= 2 * READ_AHEAD,
        "reserved {read} bytes for 215 received"
    );

    // The frame does arrive: the buffer grows to hold it, and the message
    // is delivered whole.
    let mut rest = vec![0u8; (16 << 20) - 201];
    apply_mask(&mut rest, [1, 2, 3, 4]);
    let write = async {
        client.write_all(&rest).await.unwrap();
        client
    };
    let (message, _client) =
        beside(driver.as_mut(), async { tokio::join!(ws.next(), write) }).await;
    match message.unwrap().unwrap() {
        Message::Binary(data) => assert_eq!(data.len(), 16 << 20),
        other => panic!("{other:?}"),
    }
}

/// A peer that never stops sending: every read is ready with masked pings,
/// and, like a Tokio socket, each read spends the task's budget of work,
/// so that a task that keeps reading is made to yield.
struct PingFlood {
    /// Where the next read starts in the endless run of pings.
    at: usize,
    /// The peer reads nothing: every write waits.
    stall_writes: bool,
}

impl tokio::io::AsyncRead for PingFlood {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        const PING: [u8; 10] = [0x89, 0x84, 1, 2, 3, 4, 1, 2, 3, 4];
        let coop = std::task::ready!(tokio::task::coop::poll_proceed(cx));
        let n = buf.remaining().min(4096);
        for _ in 0..n {
            buf.put_slice(&[PING[self.at % PING.len()]]);
            self.at += 1;
        }
        coop.made_progress();
        Poll::Ready(Ok(()))
    }
}

impl tokio::io::AsyncWrite for PingFlood {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if self.stall_writes {
            return Poll::Pending;
        }
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl Transport for PingFlood {}

/// Issue 25, item 5. RFC 6455 section 7.1.1: after sending a close frame
/// an endpoint waits for the peer's; ours waits at most `close_timeout`,
/// and that deadline fires even while the peer keeps the socket readable.
/// Before, the deadline was looked at only once a read found nothing, and
/// a poll of the timer after the reads had spent the task's budget never
/// saw it pass: the driver read pings forever.
#[tokio::test]
async fn section_7_1_1_the_close_deadline_fires_while_the_peer_floods() {
    let config = Config::default().close_timeout(std::time::Duration::from_millis(200));
    let conn = Connection::new(Role::Server, config);
    let settings = Arc::new(Settings::default());
    let handshake = Handshake::new(http::Request::new(()));
    let flood = PingFlood {
        at: 0,
        stall_writes: false,
    };
    let (ws, driver) = open(flood, conn, handshake, &settings, std::future::pending());
    let (_rx, tx) = ws.split();
    tx.close(CloseCode::NORMAL, "bye").unwrap();
    let ended = tokio::time::timeout(std::time::Duration::from_secs(20), driver).await;
    assert!(
        ended.is_ok(),
        "the driver never gave up waiting for the close"
    );
}

/// Issue 25: a ping flood from a peer that never reads our pongs. Only the
/// latest ping's pong is owed (RFC 6455 section 5.5.3 lets a pong answer
/// only the most recent ping), and once the unwritten output reaches its
/// bound the driver stops reading: memory stays bounded however long the
/// flood lasts.
#[tokio::test]
async fn section_5_5_3_a_ping_flood_from_a_peer_that_never_reads_stays_bounded() {
    let conn = Connection::new(Role::Server, Config::default());
    let settings = Arc::new(Settings::default());
    let handshake = Handshake::new(http::Request::new(()));
    let flood = PingFlood {
        at: 0,
        stall_writes: true,
    };
    let (_ws, driver) = open(flood, conn, handshake, &settings, std::future::pending());
    let mut driver = pin!(driver);
    for _ in 0..5 {
        let settle = tokio::time::sleep(std::time::Duration::from_millis(40));
        beside(driver.as_mut(), settle).await;
        let (read, output, _) = held(driver.as_mut());
        assert!(read <= 64 * 1024, "read buffer {read}");
        assert!(
            output.unwrap_or(0) <= 2 * COALESCE_LIMIT,
            "output {output:?} bytes"
        );
    }
    let state = driver.project().state;
    assert!(
        state.work.out_len() >= COALESCE_LIMIT / 2,
        "the flood was read until the bound"
    );
}

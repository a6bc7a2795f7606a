//! permessage-deflate (RFC 7692) against an independent peer: Python's
//! `websockets`, which compresses by default, installed from PyPI into
//! `target/pypeers` the first time a test needs it. Both directions,
//! text and binary of 10 B to 1 MiB, with context takeover on and off.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::time::timeout;
use ws_client::{Client, Message, PerMessageDeflate};
use ws_server::{Server, WebSocket};

use crate::server::serve_on_free_port;

const LIMIT: Duration = Duration::from_secs(60);
const SIZES: [usize; 6] = [10, 200, 4096, 65_536, 300_000, 1 << 20];

/// Where `websockets` is installed for these tests, installing it the
/// first time (`pip install --target`, which touches no system package).
fn pypeers() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/pypeers");
        let present = Command::new("python3")
            .args(["-c", "import websockets"])
            .env("PYTHONPATH", &dir)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        if !present {
            let status = Command::new("python3")
                .args([
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                ])
                .args(["--target".as_ref(), dir.as_os_str()])
                .arg("websockets>=13")
                .env("PIP_ROOT_USER_ACTION", "ignore")
                .status()
                .expect("python3 with pip is needed for the interop tests");
            assert!(status.success(), "pip install websockets failed");
        }
        dir
    })
}

/// The payloads both sides send: JSON-like text (it compresses) and binary
/// that mixes runs with noise, of each size.
pub(crate) fn payloads() -> Vec<Message> {
    let mut messages = Vec::new();
    for size in SIZES {
        let text: String = (0..)
            .map(|i| format!("{{\"seq\":{i},\"user\":\"u{}\"}},", i % 37))
            .flat_map(|s| s.chars().collect::<Vec<_>>())
            .take(size)
            .collect();
        messages.push(Message::text(text));
        let mut x = size as u32;
        let binary: Vec<u8> = (0..size)
            .map(|i| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                if i % 64 < 40 {
                    (i / 64) as u8
                } else {
                    (x >> 24) as u8
                }
            })
            .collect();
        messages.push(Message::binary(binary));
    }
    messages
}

/// The same payloads, built the same way in Python: the script checks each
/// echo against its own copy.
const PY_PAYLOADS: &str = r#"
SIZES = [10, 200, 4096, 65536, 300000, 1 << 20]
def payloads():
    out = []
    for size in SIZES:
        chunks, total, i = [], 0, 0
        while total < size:
            piece = "{\"seq\":%d,\"user\":\"u%d\"}," % (i, i % 37)
            chunks.append(piece); total += len(piece); i += 1
        out.append("".join(chunks)[:size])
        x, data = size, bytearray()
        for j in range(size):
            x = (x * 1103515245 + 12345) & 0xffffffff
            data.append((j // 64) & 0xff if j % 64 < 40 else x >> 24)
        out.append(bytes(data))
    return out
"#;

const PY_CLIENT: &str = r#"
import asyncio, sys
from websockets.asyncio.client import connect
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory
url, mode = sys.argv[1], sys.argv[2]
async def main():
    if mode == "takeover":
        kwargs = {}  # websockets' default: compression="deflate"
    else:
        kwargs = {"compression": None, "extensions": [ClientPerMessageDeflateFactory(
            server_no_context_takeover=True, client_no_context_takeover=True,
            client_max_window_bits=10)]}
    async with connect(url, max_size=None, **kwargs) as ws:
        print("EXT", ws.response.headers.get("Sec-WebSocket-Extensions"), flush=True)
        for message in payloads():
            for _ in range(2):
                await ws.send(message)
                echo = await ws.recv()
                assert echo == message, (type(message), len(message), len(echo))
        print("OK", flush=True)
asyncio.run(main())
"#;

const PY_SERVER: &str = r#"
import asyncio, sys
from websockets.asyncio.server import serve
from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory
mode = sys.argv[1]
async def echo(ws):
    async for message in ws:
        await ws.send(message)
async def main():
    if mode == "takeover":
        kwargs = {}  # websockets' default: compression="deflate"
    else:
        kwargs = {"compression": None, "extensions": [ServerPerMessageDeflateFactory(
            server_no_context_takeover=True, client_no_context_takeover=True,
            server_max_window_bits=11)]}
    async with serve(echo, "127.0.0.1", 0, max_size=None, **kwargs) as server:
        port = server.sockets[0].getsockname()[1]
        print("PORT", port, flush=True)
        await asyncio.sleep(120)
asyncio.run(main())
"#;

fn python(script: &str, args: &[&str]) -> tokio::process::Command {
    let mut command = tokio::process::Command::new("python3");
    command
        .arg("-c")
        .arg(format!("{PY_PAYLOADS}\n{script}"))
        .args(args)
        .env("PYTHONPATH", pypeers())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    command
}

pub(crate) async fn echo(mut ws: WebSocket) {
    while let Some(Ok(message)) = ws.recv().await {
        if message.is_data() && ws.send(message).await.is_err() {
            break;
        }
    }
}

async fn python_client_against_our_server(mode: &str) -> String {
    let builder = Server::builder()
        .ping_interval(None)
        .config(ws_server::proto::Config::default().max_message_size(4 << 20))
        .compression(Some(PerMessageDeflate::default()));
    let (addr, _stop, _serving): (SocketAddr, _, _) =
        serve_on_free_port(|listener| builder.serve(echo, listener)).await;
    let url = format!("ws://{addr}/");
    let output = timeout(LIMIT, python(PY_CLIENT, &[&url, mode]).output())
        .await
        .expect("the Python client finished in time")
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "python client: {stdout}");
    assert!(stdout.contains("\nOK"), "{stdout}");
    stdout
}

#[tokio::test]
async fn rfc7692_python_client_with_context_takeover() {
    let stdout = python_client_against_our_server("takeover").await;
    let ext = stdout.lines().next().unwrap();
    assert!(ext.starts_with("EXT permessage-deflate"), "{ext}");
    assert!(!ext.contains("no_context_takeover"), "{ext}");
}

#[tokio::test]
async fn rfc7692_python_client_without_context_takeover() {
    let stdout = python_client_against_our_server("none").await;
    let ext = stdout.lines().next().unwrap();
    assert!(ext.contains("server_no_context_takeover"), "{ext}");
    assert!(ext.contains("client_no_context_takeover"), "{ext}");
    assert!(ext.contains("client_max_window_bits=10"), "{ext}");
}

/// Connects our client (compression offered by default) to the echo
/// server at `url`, sends each payload twice and checks each echo, then
/// closes. Returns what was negotiated.
pub(crate) async fn exchange_payloads_with(url: &str) -> ws_client::DeflateParams {
    let client = Client::builder()
        .ping_interval(None)
        .config(ws_client::proto::Config::default().max_message_size(4 << 20))
        .compression(Some(PerMessageDeflate::default()))
        .build()
        .unwrap();
    let (mut ws, response) = timeout(LIMIT, client.connect(url)).await.unwrap().unwrap();
    let params = response
        .deflate
        .expect("the server accepted permessage-deflate");
    timeout(LIMIT, async {
        for message in payloads() {
            for _ in 0..2 {
                ws.send(message.clone()).await.unwrap();
                let echo = ws.recv().await.unwrap().unwrap();
                assert_eq!(echo, message);
            }
        }
        ws.close(ws_client::CloseCode::NORMAL, "").await.unwrap();
    })
    .await
    .expect("the echoes came back in time");
    params
}

async fn our_client_against_python_server(mode: &str) -> ws_client::DeflateParams {
    let mut server = python(PY_SERVER, &[mode]).spawn().unwrap();
    let mut lines = BufReader::new(server.stdout.take().unwrap()).lines();
    let line = timeout(LIMIT, lines.next_line())
        .await
        .expect("the Python server started in time")
        .unwrap()
        .expect("the Python server printed its port");
    let port = line.strip_prefix("PORT ").expect("PORT line");
    let params = exchange_payloads_with(&format!("ws://127.0.0.1:{port}/")).await;
    let _ = server.kill().await;
    params
}

#[tokio::test]
async fn rfc7692_python_server_with_context_takeover() {
    let params = our_client_against_python_server("takeover").await;
    assert!(!params.server_no_context_takeover);
    assert!(!params.client_no_context_takeover);
}

#[tokio::test]
async fn rfc7692_python_server_without_context_takeover() {
    let params = our_client_against_python_server("none").await;
    assert!(params.server_no_context_takeover);
    assert!(params.client_no_context_takeover);
    assert_eq!(params.server_max_window_bits, 11);
}

/// A hub publication to members without server context takeover is
/// compressed once and the same frame goes to each of them; a member
/// without compression gets the plain frame; a message under the
/// threshold goes plain to everyone.
#[tokio::test]
async fn rfc7692_broadcast_compressed_once_for_members_without_context() {
    use ws_server::{Hub, Publication};

    let hub = Hub::new();
    let handler = move |mut ws: WebSocket| {
        let hub = hub.clone();
        async move {
            let member = hub.register(&ws).unwrap();
            member.join("room");
            let mut batch = Vec::new();
            while let Ok(1..) = ws.recv_many(&mut batch, 64).await {
                batch.retain(Message::is_data);
                hub.publish_many(batch.drain(..).map(|m| Publication::room("room", m)))
                    .unwrap();
            }
        }
    };
    let settings = PerMessageDeflate::default().server_no_context_takeover(true);
    let builder = Server::builder()
        .ping_interval(None)
        .compression(Some(settings));
    let (addr, _stop, _serving) =
        serve_on_free_port(|listener| builder.serve(handler, listener)).await;

    let client = Client::builder().ping_interval(None).build().unwrap();
    let (mut publisher, response) = client.connect(format!("ws://{addr}/")).await.unwrap();
    assert!(response.deflate.unwrap().server_no_context_takeover);
    let (mut compressed_member, _) = client.connect(format!("ws://{addr}/")).await.unwrap();
    let (mut plain_member, _) = Client::builder()
        .ping_interval(None)
        .compression(None)
        .connect(format!("ws://{addr}/"))
        .await
        .unwrap();
    assert!(plain_member.compression().is_none());

    // Two raw members, to see the frames on the wire.
    let mut raw = Vec::new();
    for _ in 0..2 {
        let (stream, head) = raw_deflate_client(addr).await;
        assert!(
            head.contains("permessage-deflate; server_no_context_takeover"),
            "{head}"
        );
        raw.push(stream);
    }
    // Every member has joined once its handler runs; give them the time.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let big: String = (0..200)
        .map(|i| format!("{{\"tick\":{i},\"px\":1.25}},"))
        .collect();
    let messages = [
        Message::text(big.clone()),
        Message::text("short"),
        Message::binary(big.clone().into_bytes()),
    ];
    for message in &messages {
        publisher.send(message.clone()).await.unwrap();
    }
    for member in [&mut publisher, &mut compressed_member, &mut plain_member] {
        for message in &messages {
            let got = timeout(LIMIT, member.recv())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            assert_eq!(&got, message);
        }
    }
    // On the wire: the large messages compressed (RSV1), the short one
    // plain, and the same bytes for both raw members.
    let mut wires = Vec::new();
    for stream in &mut raw {
        let mut frames = Vec::new();
        for _ in 0..messages.len() {
            frames.push(read_frame(stream).await);
        }
        assert_eq!(frames[0].0, 0xc1, "compressed text");
        assert_eq!(frames[1].0, 0x81, "plain text under the threshold");
        assert_eq!(frames[2].0, 0xc2, "compressed binary");
        assert!(frames[0].1.len() < big.len() / 3, "{}", frames[0].1.len());
        wires.push(frames);
    }
    assert_eq!(wires[0], wires[1]);
}

/// A raw client offering permessage-deflate: the stream after the 101, and
/// the response head.
async fn raw_deflate_client(addr: SocketAddr) -> (tokio::net::TcpStream, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(
            b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
              Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n",
        )
        .await
        .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8];
        stream.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    (stream, String::from_utf8(head).unwrap())
}

/// The next server frame: its first byte and its payload.
async fn read_frame(stream: &mut tokio::net::TcpStream) -> (u8, Vec<u8>) {
    use tokio::io::AsyncReadExt;
    let mut head = [0u8; 2];
    timeout(LIMIT, stream.read_exact(&mut head))
        .await
        .unwrap()
        .unwrap();
    let len = match head[1] {
        126 => {
            let mut ext = [0u8; 2];
            stream.read_exact(&mut ext).await.unwrap();
            usize::from(u16::from_be_bytes(ext))
        }
        n => usize::from(n),
    };
    let mut payload = vec![0u8; len];
    stream.read_exact(&mut payload).await.unwrap();
    (head[0], payload)
}

/// `send_uncompressed` sends a message plain on a compressed connection;
/// the next `send` compresses again.
#[tokio::test]
async fn rfc7692_one_message_sent_uncompressed() {
    let big = "{\"k\":\"v\"},".repeat(400);
    let sent = big.clone();
    let handler = move |mut ws: WebSocket| {
        let big = sent.clone();
        async move {
            ws.send_uncompressed(Message::text(big.clone()))
                .await
                .unwrap();
            ws.send(Message::text(big)).await.unwrap();
            let _ = ws.recv().await;
        }
    };
    let builder = Server::builder()
        .ping_interval(None)
        .compression(Some(PerMessageDeflate::default()));
    let (addr, _stop, _serving) =
        serve_on_free_port(|listener| builder.serve(handler, listener)).await;
    let (mut stream, head) = raw_deflate_client(addr).await;
    assert!(head.contains("permessage-deflate"), "{head}");
    plain_then_compressed(&mut stream, &big).await;
}

/// The next two frames: `big` as it is (RSV1 clear), then compressed.
async fn plain_then_compressed(stream: &mut tokio::net::TcpStream, big: &str) {
    let (first, payload) = read_frame(stream).await;
    assert_eq!(first, 0x81, "plain text");
    assert_eq!(payload, big.as_bytes());
    let (first, payload) = read_frame(stream).await;
    assert_eq!(first, 0xc1, "compressed text");
    assert!(payload.len() < big.len() / 4, "{}", payload.len());
}

/// The same from an inline handler's `Reply`.
#[tokio::test]
async fn rfc7692_one_message_sent_uncompressed_by_an_inline_reply() {
    use tokio::io::AsyncWriteExt;
    let big = "{\"k\":\"v\"},".repeat(400);
    let sent = big.clone();
    let handler = move |_ws: WebSocket| {
        let big = sent.clone();
        move |_: Message, reply: &mut ws_server::Reply<'_>| {
            reply
                .send_uncompressed(&Message::text(big.clone()))
                .unwrap();
            reply.send(&Message::text(big.clone())).unwrap();
        }
    };
    let builder = Server::builder()
        .ping_interval(None)
        .compression(Some(PerMessageDeflate::default()));
    let (addr, _stop, _serving) =
        serve_on_free_port(|listener| builder.serve_inline(handler, listener)).await;
    let (mut stream, _) = raw_deflate_client(addr).await;
    // A masked text frame "go" (mask 0): the handler answers it.
    stream
        .write_all(&[0x81, 0x82, 0, 0, 0, 0, b'g', b'o'])
        .await
        .unwrap();
    plain_then_compressed(&mut stream, &big).await;
}

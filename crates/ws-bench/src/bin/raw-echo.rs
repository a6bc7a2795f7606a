//! The ceiling: a bare Tokio loop that answers each read with one write.
//!
//! Not a WebSocket server anyone should run: it skips every check (UTF-8,
//! limits, fragmentation, control frames, the close handshake) and only
//! turns each masked frame it reads into an unmasked one. It shows how fast
//! the load generator and the kernel can go on this machine, so that the
//! other servers' figures can be read against it.
//!
//! Run with: `cargo run --release -p ws-bench --bin raw-echo -- [ADDR]`
//! (default `127.0.0.1:9103`).

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use ws_proto::{Decoded, FrameHeader, OpCode, apply_mask};

async fn echo(mut stream: TcpStream) -> std::io::Result<()> {
    let mut buf = BytesMut::with_capacity(8192);
    // The upgrade request, answered without validation.
    let key = loop {
        if stream.read_buf(&mut buf).await? == 0 {
            return Ok(());
        }
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            buf.advance(end + 4);
            break head
                .lines()
                .find_map(|line| {
                    let (name, value) = line.split_once(':')?;
                    name.eq_ignore_ascii_case("sec-websocket-key")
                        .then(|| value.trim().to_owned())
                })
                .unwrap_or_default();
        }
    };
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n\r\n",
        ws_proto::accept_key(key.as_bytes())
    );
    stream.write_all(response.as_bytes()).await?;
    let mut out = BytesMut::with_capacity(8192);
    loop {
        while let Ok(Decoded::Done { value, consumed }) = FrameHeader::decode(&buf) {
            let len = value.payload_len as usize;
            if buf.len() < consumed + len {
                break;
            }
            buf.advance(consumed);
            let mut payload = buf.split_to(len);
            if let Some(key) = value.mask {
                apply_mask(&mut payload, key);
            }
            if value.opcode == OpCode::Close {
                return Ok(());
            }
            FrameHeader::unfragmented(value.opcode, None, len).encode(&mut out);
            out.extend_from_slice(&payload);
        }
        if !out.is_empty() {
            stream.write_all(&out).await?;
            out.clear();
        }
        buf.reserve(8192);
        if stream.read_buf(&mut buf).await? == 0 {
            return Ok(());
        }
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9103".into());
    let listener = TcpListener::bind(&addr).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        tokio::spawn(echo(stream));
    }
}

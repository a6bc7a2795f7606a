//! sockudo-ws 3 with permessage-deflate, as a server and as a client: the
//! Rust peer with compression that the interop tests and the compressed
//! echo benchmark run against.
//!
//! sockudo-ws leaves the HTTP upgrade to its caller when compression is on,
//! so this module does what its `axum_deflate` example does without axum:
//! read the request, negotiate with `negotiate_server_deflate`, answer, and
//! wrap the socket in a `CompressedWebSocketStream` (the same on the client
//! side with `build_request` and `parse_response`).

use std::io;

use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use sockudo_ws::deflate::{negotiate_server_deflate, parse_deflate_offer};
use sockudo_ws::handshake::{
    build_request, build_response, generate_accept_key, generate_key, parse_request, parse_response,
};
use sockudo_ws::{CompressedWebSocketStream, Config, DeflateConfig, Message};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A compressed sockudo-ws connection over TCP.
pub type Compressed = CompressedWebSocketStream<TcpStream>;

/// The largest message either side accepts (the interop tests send 1 MiB).
const MAX_MESSAGE: usize = 4 << 20;

fn config() -> Config {
    Config::builder()
        .max_message_size(MAX_MESSAGE)
        .max_frame_size(MAX_MESSAGE)
        .build()
}

fn invalid(what: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

/// Reads an HTTP head into `buf` until `parse` finds it complete.
async fn read_head<T>(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    mut parse: impl FnMut(&[u8]) -> io::Result<Option<T>>,
) -> io::Result<T> {
    loop {
        if let Some(head) = parse(buf)? {
            return Ok(head);
        }
        if stream.read_buf(buf).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
    }
}

/// Accepts one upgrade on `stream`, negotiating permessage-deflate with
/// `policy`. Returns the connection and the extension answered. A request
/// without an acceptable offer is refused with an error (this peer exists
/// to test compression; sockudo's compressed stream has no plain mode).
pub async fn accept(
    mut stream: TcpStream,
    policy: &DeflateConfig,
) -> io::Result<(Compressed, String)> {
    let mut buf = BytesMut::with_capacity(4096);
    let (response, negotiated, used) = read_head(&mut stream, &mut buf, |buf| {
        let Some((request, used)) = parse_request(buf).map_err(invalid)? else {
            return Ok(None);
        };
        let negotiated = request
            .extensions
            .and_then(|offers| negotiate_server_deflate(offers, policy))
            .ok_or_else(|| invalid("no acceptable permessage-deflate offer"))?;
        let answer = negotiated.to_response_header();
        let accept = generate_accept_key(request.key);
        let response = build_response(&accept, None, Some(&answer));
        Ok(Some((response, (negotiated.config, answer), used)))
    })
    .await?;
    stream.write_all(&response).await?;
    let leftover = (buf.len() > used).then(|| Bytes::copy_from_slice(&buf[used..]));
    let (deflate, answer) = negotiated;
    let ws = CompressedWebSocketStream::server_with_leftover(stream, config(), deflate, leftover);
    Ok((ws, answer))
}

/// Connects to `ws://{addr}/` offering `offer` (a `Sec-WebSocket-Extensions`
/// value). Returns the connection and the server's answer.
pub async fn connect(addr: &str, offer: &str) -> io::Result<(Compressed, String)> {
    let mut stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let key = generate_key();
    stream
        .write_all(&build_request(addr, "/", &key, None, Some(offer)))
        .await?;
    let mut buf = BytesMut::with_capacity(4096);
    let (answer, used) = read_head(&mut stream, &mut buf, |buf| {
        Ok(parse_response(buf)
            .map_err(invalid)?
            .map(|(response, used)| (response.extensions.map(str::to_owned), used)))
    })
    .await?;
    let answer = answer.ok_or_else(|| invalid("the server declined permessage-deflate"))?;
    let params = parse_deflate_offer(&answer).ok_or_else(|| invalid("bad extension answer"))?;
    let deflate = DeflateConfig::from_params(&params).map_err(invalid)?;
    let leftover = (buf.len() > used).then(|| Bytes::copy_from_slice(&buf[used..]));
    let ws = CompressedWebSocketStream::client_with_leftover(stream, config(), deflate, leftover);
    Ok((ws, answer))
}

/// Echoes every text and binary message until the peer closes.
pub async fn echo(mut ws: Compressed) -> Result<(), sockudo_ws::Error> {
    while let Some(message) = ws.next().await {
        match message? {
            message @ (Message::Text(_) | Message::Binary(_)) => ws.send(message).await?,
            Message::Close(_) => break,
            Message::Ping(_) | Message::Pong(_) => {}
        }
    }
    Ok(())
}

/// Accepts connections on `listener` forever and echoes on each, with
/// permessage-deflate negotiated by `policy`.
pub async fn serve_echo(listener: TcpListener, policy: DeflateConfig) -> io::Result<()> {
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        let policy = policy.clone();
        tokio::spawn(async move {
            if let Ok((ws, _)) = accept(stream, &policy).await {
                let _ = echo(ws).await;
            }
        });
    }
}

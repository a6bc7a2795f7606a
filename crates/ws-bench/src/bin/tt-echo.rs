//! Reference echo server on tokio-tungstenite 0.30, written the way its own
//! `echo-server` example is: accept, split, forward text and binary back.
//!
//! Run with: `cargo run --release -p ws-bench --bin tt-echo -- [ADDR] [--tls-cert PATH --tls-key PATH]`
//! (default `127.0.0.1:9101`); with a certificate and key it serves `wss://`
//! through tokio-rustls.

use futures_util::{StreamExt, TryStreamExt, future};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;

async fn echo<S: AsyncRead + AsyncWrite + Unpin>(stream: S) {
    let Ok(ws) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    let (write, read) = ws.split();
    let _ = read
        .try_filter(|message| future::ready(message.is_text() || message.is_binary()))
        .forward(write)
        .await;
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut addr = "127.0.0.1:9101".to_owned();
    let (mut cert, mut key) = (None, None);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--tls-cert" => cert = args.next(),
            "--tls-key" => key = args.next(),
            _ => addr = arg,
        }
    }
    let tls = cert
        .zip(key)
        .map(|(cert, key)| ws_bench::tls_acceptor(cert.as_ref(), key.as_ref()));
    let listener = TcpListener::bind(&addr).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        let tls = tls.clone();
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            match tls {
                Some(tls) => {
                    if let Ok(stream) = tls.accept(stream).await {
                        echo(stream).await;
                    }
                }
                None => echo(stream).await,
            }
        });
    }
}

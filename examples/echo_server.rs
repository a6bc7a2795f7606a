//! The one-to-one echo server: every text and binary message is sent back
//! to its sender, on any path. Ctrl-C closes every connection with 1001 and
//! waits for the closing handshakes. This is the server the conformance
//! suite (Autobahn|Testsuite) runs against.
//!
//! Run with: `cargo run --release --example echo_server -- [ADDR]`
//! (default `127.0.0.1:9001`), and log with `RUST_LOG=ws_server=debug`.

use futures_util::StreamExt;
use ws_server::{Server, WebSocket};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    ws_examples::init_logging();
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9001".into());

    let echo = |mut ws: WebSocket| async move {
        // `next()` yields text and binary messages; pings are answered and
        // the closing handshake completed by the server itself.
        while let Some(Ok(message)) = ws.next().await {
            if ws.send(message).await.is_err() {
                break;
            }
        }
    };

    Server::builder()
        .serve(echo, addr)
        .with_graceful_shutdown(ws_examples::shutdown_signal())
        .await
}

//! Reference echo server on tokio-tungstenite 0.30, written the way its own
//! `echo-server` example is: accept, split, forward text and binary back.
//!
//! Run with: `cargo run --release -p ws-bench --bin tt-echo -- [ADDR]`
//! (default `127.0.0.1:9101`).

use futures_util::{StreamExt, TryStreamExt, future};
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9101".into());
    let listener = TcpListener::bind(&addr).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            let Ok(ws) = tokio_tungstenite::accept_async(stream).await else {
                return;
            };
            let (write, read) = ws.split();
            let _ = read
                .try_filter(|message| future::ready(message.is_text() || message.is_binary()))
                .forward(write)
                .await;
        });
    }
}

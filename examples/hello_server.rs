//! The classic short exchange: the client sends its name, the server answers
//! `hello NAME`, and keeps doing so for every name until the client closes.
//!
//! Run with: `cargo run --example hello_server -- [ADDR]` (default
//! `127.0.0.1:9001`), then connect with any client, for instance
//! `cargo run --example client_short -- ws://127.0.0.1:9001`.

use ws_server::{Message, WebSocket};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    ws_examples::init_logging();
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9001".into());
    ws_server::serve(hello, addr)
        .with_graceful_shutdown(ws_examples::shutdown_signal())
        .await
}

async fn hello(mut ws: WebSocket) {
    while let Some(Ok(message)) = ws.recv().await {
        if let Message::Text(name) = message {
            tracing::info!(%name, "greeting");
            if ws.send_text(format!("hello {name}")).await.is_err() {
                break;
            }
        }
    }
}

//! The short-lived client, as with Python's `create_connection`: connect,
//! send `Hello, Server`, print the reply, close. Four lines of client code.
//!
//! Run with: `cargo run --example client_short -- URL`, for example against
//! `cargo run --release --example echo_server`:
//! `cargo run --example client_short -- ws://127.0.0.1:9001/`.
//! Log the handshake and frames with `RUST_LOG=ws_client=trace,ws_tokio=trace`.

use std::process::ExitCode;

use ws_client::{CloseCode, Message};

#[tokio::main]
async fn main() -> ExitCode {
    ws_examples::init_logging();
    let Some(url) = std::env::args().nth(1) else {
        eprintln!("usage: client_short URL");
        return ExitCode::from(2);
    };
    match run(&url).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(url: &str) -> Result<(), Box<dyn std::error::Error>> {
    let (mut ws, _response) = ws_client::connect(url).await?;
    ws.send_text("Hello, Server").await?;
    match ws.recv().await {
        Some(Ok(Message::Text(text))) => println!("Received: {text}"),
        Some(Ok(other)) => println!("Received: {other:?}"),
        Some(Err(error)) => return Err(error.into()),
        None => println!("The server closed the connection"),
    }
    ws.close(CloseCode::NORMAL, "").await?;
    Ok(())
}

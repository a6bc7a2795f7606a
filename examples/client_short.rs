//! The short-lived client, as with Python's `create_connection`: connect,
//! send `Hello, Server`, print the reply, close. Four lines of client code.
//!
//! Run with: `cargo run --example client_short -- URL [--ca PATH]`, for
//! example against `cargo run --release --example echo_server`:
//! `cargo run --example client_short -- ws://127.0.0.1:9001/`. `wss://`
//! URLs work too; `--ca` adds a PEM file of root certificates to trust (a
//! private CA). Log the handshake and frames with
//! `RUST_LOG=ws_client=trace,ws_tokio=trace`.

use std::process::ExitCode;

use ws_client::{Client, CloseCode, Message};

#[tokio::main]
async fn main() -> ExitCode {
    ws_examples::init_logging();
    let mut url = None;
    let mut ca = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--ca" => ca = args.next(),
            other if url.is_none() && !other.starts_with("--") => url = Some(other.to_owned()),
            other => {
                eprintln!("unexpected argument {other}");
                return ExitCode::from(2);
            }
        }
    }
    let Some(url) = url else {
        eprintln!("usage: client_short URL [--ca PATH]");
        return ExitCode::from(2);
    };
    let mut client = Client::builder();
    if let Some(ca) = ca {
        client = client.add_root_certificates_pem_file(ca);
    }
    match run(client, &url).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(
    client: ws_client::ClientBuilder,
    url: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    let (mut ws, _response) = client.connect(url).await?;
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

//! The short-lived client, as with Python's `create_connection`: connect,
//! send `Hello, Server`, print the reply, close. Four lines of client code.
//!
//! Run with: `cargo run --example client_short -- URL [--ca PATH] [--deflate | --no-deflate]`, for
//! example against `cargo run --release --example echo_server`:
//! `cargo run --example client_short -- ws://127.0.0.1:9001/`. `wss://`
//! URLs work too; `--ca` adds a PEM file of root certificates to trust (a
//! private CA). The client offers permessage-deflate by default, as
//! browsers do; `--deflate` also prints what the server settled (or that
//! it declined), and `--no-deflate` sends no offer. Log the handshake and frames with
//! `RUST_LOG=ws_client=trace,ws_tokio=trace`.

use std::process::ExitCode;

use ws_client::{Client, CloseCode, Message};

#[tokio::main]
async fn main() -> ExitCode {
    ws_examples::init_logging();
    let mut url = None;
    let mut ca = None;
    let mut deflate = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--ca" => ca = args.next(),
            "--deflate" => deflate = Some(true),
            "--no-deflate" => deflate = Some(false),
            other if url.is_none() && !other.starts_with("--") => url = Some(other.to_owned()),
            other => {
                eprintln!("unexpected argument {other}");
                return ExitCode::from(2);
            }
        }
    }
    let Some(url) = url else {
        eprintln!("usage: client_short URL [--ca PATH] [--deflate | --no-deflate]");
        return ExitCode::from(2);
    };
    let mut client = Client::builder();
    if let Some(ca) = ca {
        client = client.add_root_certificates_pem_file(ca);
    }
    if deflate == Some(false) {
        client = client.compression(None);
    }
    match run(client, &url, deflate == Some(true)).await {
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
    show_deflate: bool,
) -> Result<(), Box<dyn std::error::Error>> {
    let (mut ws, response) = client.connect(url).await?;
    if show_deflate {
        match response.deflate {
            Some(params) => println!("Compression: {}", params.answer()),
            None => println!("Compression: declined by the server"),
        }
    }
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

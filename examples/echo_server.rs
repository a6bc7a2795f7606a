//! The one-to-one echo server: every text and binary message is sent back
//! to its sender, on any path. Ctrl-C closes every connection with 1001 and
//! waits for the closing handshakes. This is the server the conformance
//! suite (Autobahn|Testsuite) runs against.
//!
//! Run with: `cargo run --release --example echo_server -- [ADDR] [--tls-cert PATH --tls-key PATH]`
//! (default `127.0.0.1:9001`), and log with `RUST_LOG=ws_server=debug`.
//! With a PEM certificate chain and key it serves `wss://` instead.

use std::process::ExitCode;

use ws_server::{Server, TlsConfig, WebSocket};

#[tokio::main]
async fn main() -> ExitCode {
    ws_examples::init_logging();
    let mut addr = "127.0.0.1:9001".to_owned();
    let (mut cert, mut key) = (None, None);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--tls-cert" => cert = args.next(),
            "--tls-key" => key = args.next(),
            other if !other.starts_with("--") => addr = other.to_owned(),
            other => {
                eprintln!("unknown option {other}");
                return ExitCode::from(2);
            }
        }
    }

    let echo = |mut ws: WebSocket| async move {
        // `recv_many` yields the text and binary messages that have arrived
        // (pings are answered and the closing handshake completed by the
        // server itself); `send_many` queues them back together.
        let mut batch = Vec::new();
        while let Ok(1..) = ws.recv_many(&mut batch, 16).await {
            if ws.send_many(&mut batch).await.is_err() {
                break;
            }
        }
    };

    let mut server = Server::builder();
    match (cert, key) {
        (Some(cert), Some(key)) => match TlsConfig::from_pem_files(&cert, &key) {
            Ok(tls) => server = server.tls(tls),
            Err(error) => {
                eprintln!("error: {error}");
                return ExitCode::FAILURE;
            }
        },
        (None, None) => {}
        _ => {
            eprintln!("--tls-cert and --tls-key go together");
            return ExitCode::from(2);
        }
    }
    let served = server
        .serve(echo, addr)
        .with_graceful_shutdown(ws_examples::shutdown_signal())
        .await;
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

//! The one-to-one echo server: every text and binary message is sent back
//! to its sender, on any path. Ctrl-C closes every connection with 1001 and
//! waits for the closing handshakes. This is the server the conformance
//! suite (Autobahn|Testsuite) runs against.
//!
//! Run with: `cargo run --release --example echo_server -- [ADDR] [--inline] [--deflate] [--ping-interval-ms N] [--tls-cert PATH --tls-key PATH]`
//! (default `127.0.0.1:9001`), and log with `RUST_LOG=ws_server=debug`.
//! `--deflate` accepts permessage-deflate from clients that offer it
//! (browsers and Python's websockets do), with the default parameters:
//! each connection keeps its compression context, for the best ratio.
//! `--ping-interval-ms` sets the heartbeat (default 20 s, with half of it
//! for the pong), as `scripts/soak.sh` does.
//! With a PEM certificate chain and key it serves `wss://` instead.
//!
//! Two ways to write the same echo. By default each connection gets a
//! handler future that receives messages and sends them back
//! (`Server::serve`), which can await anything between the two. With
//! `--inline` the echo is a message handler the connection's driver calls
//! as it decodes each message (`Server::serve_inline`): it cannot await,
//! and it costs less per message, as nothing crosses a queue.

use std::process::ExitCode;

use ws_server::{Message, PerMessageDeflate, Reply, Server, TlsConfig, WebSocket};

#[tokio::main]
async fn main() -> ExitCode {
    ws_examples::init_logging();
    let mut addr = "127.0.0.1:9001".to_owned();
    let (mut cert, mut key) = (None, None);
    let mut inline = false;
    let mut deflate = false;
    let mut heartbeat = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--tls-cert" => cert = args.next(),
            "--tls-key" => key = args.next(),
            "--inline" => inline = true,
            "--deflate" => deflate = true,
            "--ping-interval-ms" => heartbeat = args.next().and_then(|ms| ms.parse().ok()),
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

    // Browsers send cookies with a WebSocket handshake whatever page opens
    // it: only pages served by this host may connect (others get 403);
    // clients that are not browsers send no Origin and are let in.
    let mut server = Server::builder().same_origin();
    if let Some(ms) = heartbeat {
        server = ws_examples::heartbeat(server, ms);
    }
    if deflate {
        server = server.compression(Some(PerMessageDeflate::default()));
    }
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
    let serve = if inline {
        // Called with each message as it is decoded; the answer goes
        // straight into the connection's output.
        let echo = |_ws: WebSocket| {
            |message: Message, reply: &mut Reply<'_>| {
                let _ = reply.send(&message);
            }
        };
        server.serve_inline(echo, addr)
    } else {
        server.serve(echo, addr)
    };
    let served = serve
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

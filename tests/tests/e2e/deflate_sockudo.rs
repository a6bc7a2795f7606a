//! permessage-deflate (RFC 7692) against a Rust peer with compression:
//! sockudo-ws 3 (zlib-rs underneath, like us, but its own negotiation,
//! framing and context handling). Both directions, the payloads of
//! `deflate.rs` (text and binary of 10 B to 1 MiB, each sent twice), with
//! context takeover on and off.

use std::net::SocketAddr;

use futures_util::{SinkExt, StreamExt};
use sockudo_ws::deflate::DeflateWindowBits;
use sockudo_ws::{DeflateConfig, Message as Peer};
use tokio::net::TcpListener;
use tokio::time::timeout;
use ws_client::{Message, PerMessageDeflate};
use ws_server::Server;

use crate::deflate::{echo, exchange_payloads_with, payloads};
use crate::server::serve_on_free_port;

const LIMIT: std::time::Duration = std::time::Duration::from_secs(60);

fn to_peer(message: &Message) -> Peer {
    match message.as_text() {
        Some(text) => Peer::Text(text.to_owned().into()),
        None => Peer::Binary(message.clone().into_data()),
    }
}

/// sockudo-ws connects to our echo server with `offer`; every payload
/// comes back intact. Returns the server's extension answer.
async fn sockudo_client_against_our_server(server: PerMessageDeflate, offer: &str) -> String {
    let builder = Server::builder()
        .ping_interval(None)
        .config(ws_server::proto::Config::default().max_message_size(4 << 20))
        .compression(Some(server));
    let (addr, _stop, _serving): (SocketAddr, _, _) =
        serve_on_free_port(|listener| builder.serve(echo, listener)).await;
    let (mut ws, answer) = ws_bench::sockudo::connect(&addr.to_string(), offer)
        .await
        .expect("sockudo-ws connected with compression");
    timeout(LIMIT, async {
        for message in payloads() {
            let sent = to_peer(&message);
            for _ in 0..2 {
                ws.send(sent.clone()).await.unwrap();
                let echo = ws.next().await.unwrap().unwrap();
                match (&sent, &echo) {
                    (Peer::Text(a), Peer::Text(b)) | (Peer::Binary(a), Peer::Binary(b)) => {
                        assert!(a == b, "{} bytes came back different", a.len());
                    }
                    _ => panic!("echo of another kind: {echo:?}"),
                }
            }
        }
        ws.close(1000, "").await.unwrap();
    })
    .await
    .expect("the echoes came back in time");
    answer
}

#[tokio::test]
async fn rfc7692_sockudo_client_with_context_takeover() {
    let answer = sockudo_client_against_our_server(
        PerMessageDeflate::default(),
        "permessage-deflate; client_max_window_bits",
    )
    .await;
    assert!(answer.starts_with("permessage-deflate"), "{answer}");
    assert!(!answer.contains("no_context_takeover"), "{answer}");
}

#[tokio::test]
async fn rfc7692_sockudo_client_without_context_takeover() {
    let answer = sockudo_client_against_our_server(
        PerMessageDeflate::default()
            .server_no_context_takeover(true)
            .client_no_context_takeover(true),
        "permessage-deflate; server_max_window_bits=10; client_max_window_bits=11",
    )
    .await;
    assert!(answer.contains("server_no_context_takeover"), "{answer}");
    assert!(answer.contains("client_no_context_takeover"), "{answer}");
    assert!(answer.contains("server_max_window_bits=10"), "{answer}");
    assert!(answer.contains("client_max_window_bits=11"), "{answer}");
}

/// Our client against sockudo-ws' echo server with `policy`; every payload
/// comes back intact. Returns what was negotiated, as our client saw it.
async fn our_client_against_sockudo_server(policy: DeflateConfig) -> ws_client::DeflateParams {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(ws_bench::sockudo::serve_echo(listener, policy));
    let params = exchange_payloads_with(&format!("ws://{addr}/")).await;
    server.abort();
    params
}

#[tokio::test]
async fn rfc7692_sockudo_server_with_context_takeover() {
    let params = our_client_against_sockudo_server(DeflateConfig::default()).await;
    assert!(!params.server_no_context_takeover);
    assert!(!params.client_no_context_takeover);
}

#[tokio::test]
async fn rfc7692_sockudo_server_without_context_takeover() {
    let policy = DeflateConfig {
        server_no_context_takeover: true,
        client_no_context_takeover: true,
        server_max_window_bits: DeflateWindowBits::Bits11,
        ..DeflateConfig::default()
    };
    let params = our_client_against_sockudo_server(policy).await;
    assert!(params.server_no_context_takeover);
    assert!(params.client_no_context_takeover);
    assert_eq!(params.server_max_window_bits, 11);
}

//! `wss://` end to end: ws-server with TLS and ws-client, with certificates
//! generated in the test by rcgen (a CA, and a leaf it signs).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;
use ws_client::{BuildError, Client, CloseCode, ConnectError, Message};
use ws_server::{Server, TlsConfig, WebSocket};
pub(crate) use ws_tests::pki::{Pki, pki};

const LIMIT: Duration = Duration::from_secs(30);

/// An echo server over TLS on a free port.
pub(crate) async fn wss_server(pki: &Pki, handshake_timeout: Duration) -> SocketAddr {
    let tls = TlsConfig::from_pem(pki.cert_pem.as_bytes(), pki.key_pem.as_bytes()).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let serve = Server::builder()
        .ping_interval(None)
        .handshake_timeout(handshake_timeout)
        .tls(tls)
        .serve(
            |mut ws: WebSocket| async move {
                while let Some(Ok(message)) = ws.next().await {
                    if ws.send(message).await.is_err() {
                        break;
                    }
                }
            },
            listener,
        );
    tokio::spawn(serve.into_future());
    addr
}

pub(crate) fn trusting(pki: &Pki) -> ws_client::ClientBuilder {
    Client::builder()
        .ping_interval(None)
        .webpki_roots(false)
        .add_root_certificate(pki.ca_der.clone())
}

pub(crate) async fn echo_once(client: ws_client::ClientBuilder, url: &str) {
    let (mut ws, _) = client.connect(url).await.unwrap();
    ws.send_text("over tls").await.unwrap();
    assert_eq!(ws.recv().await.unwrap().unwrap(), Message::text("over tls"));
    let large = vec![7u8; 1 << 20];
    ws.send_binary(large.clone()).await.unwrap();
    assert_eq!(ws.recv().await.unwrap().unwrap(), Message::binary(large));
    timeout(LIMIT, ws.close(CloseCode::NORMAL, ""))
        .await
        .unwrap()
        .unwrap();
}

/// The rustls error inside a failed TLS handshake.
fn rustls_error(error: &ConnectError) -> &ws_client::rustls::Error {
    let ConnectError::Tls(io) = error else {
        panic!("not a TLS error: {error:?}");
    };
    io.get_ref()
        .and_then(|inner| inner.downcast_ref::<ws_client::rustls::Error>())
        .unwrap_or_else(|| panic!("no rustls error in {io:?}"))
}

#[tokio::test]
async fn wss_echo_with_a_custom_ca() {
    let pki = pki(&["localhost"]);
    let addr = wss_server(&pki, Duration::from_secs(10)).await;
    let url = format!("wss://localhost:{}/", addr.port());
    echo_once(trusting(&pki), &url).await;

    // The same CA from a PEM file, as `client_short --ca PATH` does it.
    let path = std::env::temp_dir().join(format!("ws-test-ca-{}.pem", std::process::id()));
    std::fs::write(&path, &pki.ca_pem).unwrap();
    let from_file = Client::builder()
        .ping_interval(None)
        .webpki_roots(false)
        .add_root_certificates_pem_file(&path);
    echo_once(from_file, &url).await;
    let _ = std::fs::remove_file(&path);
}

#[tokio::test]
async fn a_certificate_for_another_name_is_rejected() {
    let pki = pki(&["example.com"]);
    let addr = wss_server(&pki, Duration::from_secs(10)).await;
    let error = trusting(&pki)
        .connect(format!("wss://localhost:{}/", addr.port()))
        .await
        .unwrap_err();
    assert!(
        matches!(
            rustls_error(&error),
            ws_client::rustls::Error::InvalidCertificate(
                ws_client::rustls::CertificateError::NotValidForName
                    | ws_client::rustls::CertificateError::NotValidForNameContext { .. }
            )
        ),
        "{error:?}"
    );
    assert!(!error.is_retryable());
}

#[tokio::test]
async fn an_untrusted_ca_is_rejected_and_the_danger_option_skips_the_check() {
    let pki = pki(&["localhost"]);
    let addr = wss_server(&pki, Duration::from_secs(10)).await;
    let url = format!("wss://localhost:{}/", addr.port());
    // The default roots (Mozilla's) do not include the test CA.
    let error = Client::builder()
        .ping_interval(None)
        .connect(&url)
        .await
        .unwrap_err();
    assert!(
        matches!(
            rustls_error(&error),
            ws_client::rustls::Error::InvalidCertificate(
                ws_client::rustls::CertificateError::UnknownIssuer
            )
        ),
        "{error:?}"
    );
    echo_once(
        Client::builder()
            .ping_interval(None)
            .danger_accept_invalid_certificates(true),
        &url,
    )
    .await;
}

#[tokio::test]
async fn the_handshake_deadline_covers_the_tls_handshake() {
    let pki = pki(&["localhost"]);
    let addr = wss_server(&pki, Duration::from_millis(300)).await;
    // Connects and never starts TLS.
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let started = Instant::now();
    let mut sink = Vec::new();
    // End of stream or a reset: either way the server dropped it.
    let _ended = timeout(LIMIT, stream.read_to_end(&mut sink))
        .await
        .expect("the server dropped the silent client");
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(250), "{elapsed:?}");
    assert!(
        sink.is_empty(),
        "nothing is sent to a client that never started TLS"
    );
}

#[tokio::test]
async fn a_plain_client_on_the_tls_port_fails_cleanly_and_the_server_goes_on() {
    let pki = pki(&["localhost"]);
    let addr = wss_server(&pki, Duration::from_secs(10)).await;
    let plain = Client::builder()
        .ping_interval(None)
        .handshake_timeout(Duration::from_secs(5))
        .connect(format!("ws://localhost:{}/", addr.port()))
        .await;
    assert!(
        plain.is_err(),
        "a ws:// client cannot talk to a wss:// server"
    );
    echo_once(trusting(&pki), &format!("wss://localhost:{}/", addr.port())).await;
}

#[test]
fn a_missing_ca_file_is_a_build_error() {
    let error = Client::builder()
        .add_root_certificates_pem_file("/nonexistent/ca.pem")
        .build()
        .unwrap_err();
    assert!(matches!(error, BuildError::Tls(_)), "{error:?}");
    assert!(matches!(
        TlsConfig::from_pem(b"not pem", b"not pem"),
        Err(ws_server::TlsError::NoCertificate)
    ));
}

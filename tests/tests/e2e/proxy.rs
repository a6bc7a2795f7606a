//! Through real proxies: tinyproxy (HTTP `CONNECT`, Basic credentials, a
//! port it refuses), the same behind TLS (an `https://` proxy), and
//! microsocks (SOCKS5, names resolved here or by the proxy, user name and
//! password). `ws://` and `wss://` through each, wrong credentials,
//! unreachable proxies, and the environment variables, read by a child
//! process of this test binary so that this one's environment stays as it
//! is.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::net::TcpListener;
use ws_client::{Client, CloseCode, ConnectError, Message, SocksReply};
use ws_server::{Server, WebSocket};
use ws_tests::proxies::{ProxyProcess, microsocks, tinyproxy};

use crate::tls::{Pki, echo_once, pki, trusting, wss_server};

const LIMIT: Duration = Duration::from_secs(30);

/// A plain echo server on a free port.
async fn ws_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let echo = |mut ws: WebSocket| async move {
        while let Some(Ok(message)) = ws.next().await {
            if ws.send(message).await.is_err() {
                break;
            }
        }
    };
    let serve = Server::builder().ping_interval(None).serve(echo, listener);
    tokio::spawn(serve.into_future());
    addr
}

async fn echo_plain(client: ws_client::ClientBuilder, url: &str) {
    let (mut ws, _) = tokio::time::timeout(LIMIT, client.connect(url))
        .await
        .unwrap()
        .unwrap();
    ws.send_text("through the proxy").await.unwrap();
    assert_eq!(
        ws.recv().await.unwrap().unwrap(),
        Message::text("through the proxy")
    );
    ws.close(CloseCode::NORMAL, "").await.unwrap();
}

async fn refused(client: ws_client::ClientBuilder, url: &str) -> ConnectError {
    tokio::time::timeout(LIMIT, client.connect(url))
        .await
        .unwrap()
        .expect_err("the connection should fail")
}

fn plain() -> ws_client::ClientBuilder {
    Client::builder().ping_interval(None).no_proxy()
}

/// A closed loopback port: nothing listens there.
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Whether tinyproxy logged a CONNECT to `port`: the proxy was the way.
fn tunnelled(proxy: &ProxyProcess, port: u16) -> bool {
    proxy
        .log()
        .lines()
        .any(|line| line.contains("CONNECT") && line.contains(&format!(":{port}")))
}

#[tokio::test]
async fn rfc_9110_section_9_3_6_ws_and_wss_through_an_http_proxy() {
    let proxy = tinyproxy(None, &[]);
    let addr = ws_server().await;
    echo_plain(
        plain().proxy(proxy.url("http", None)),
        &format!("ws://{addr}/"),
    )
    .await;
    assert!(tunnelled(&proxy, addr.port()), "{}", proxy.log());

    // TLS inside the tunnel, the target's name checked.
    let pki = pki(&["localhost"]);
    let secure = wss_server(&pki, LIMIT).await;
    let url = format!("wss://localhost:{}/", secure.port());
    echo_once(
        trusting(&pki).no_proxy().proxy(proxy.url("http", None)),
        &url,
    )
    .await;
    assert!(tunnelled(&proxy, secure.port()), "{}", proxy.log());
    let other = pki_for_another_name();
    let error = refused(trusting(&other).proxy(proxy.url("http", None)), &url).await;
    assert!(matches!(error, ConnectError::Tls(_)), "{error:?}");
}

fn pki_for_another_name() -> Pki {
    pki(&["elsewhere.example"])
}

#[tokio::test]
async fn basic_credentials_and_407() {
    let proxy = tinyproxy(Some(("alice", "s3cret")), &[]);
    let addr = ws_server().await;
    let url = format!("ws://{addr}/");
    echo_plain(
        plain().proxy(proxy.url("http", Some(("alice", "s3cret")))),
        &url,
    )
    .await;
    for wrong in [Some(("alice", "wrong")), None] {
        let error = refused(plain().proxy(proxy.url("http", wrong)), &url).await;
        assert!(matches!(error, ConnectError::ProxyAuth { .. }), "{error:?}");
        assert!(!error.is_retryable());
        // The message says what to do, and never shows the password.
        assert!(error.to_string().contains("user:password@"), "{error}");
        assert!(!error.to_string().contains("wrong"), "{error}");
    }
}

#[tokio::test]
async fn a_proxy_that_refuses_the_port_gives_its_status() {
    let proxy = tinyproxy(None, &[1]);
    let addr = ws_server().await;
    let error = refused(
        plain().proxy(proxy.url("http", None)),
        &format!("ws://{addr}/"),
    )
    .await;
    let ConnectError::ProxyRefused { status, .. } = &error else {
        panic!("{error:?}");
    };
    assert_eq!(*status, 403);
    assert!(!error.is_retryable());
}

#[tokio::test]
async fn an_unreachable_proxy_is_retryable() {
    let addr = ws_server().await;
    for scheme in ["http", "socks5"] {
        let proxy = format!("{scheme}://127.0.0.1:{}", closed_port());
        let error = refused(plain().proxy(proxy), &format!("ws://{addr}/")).await;
        assert!(
            matches!(error, ConnectError::ProxyUnreachable { .. }),
            "{error:?}"
        );
        assert!(error.is_retryable());
    }
}

#[tokio::test]
async fn an_https_proxy_tls_to_the_proxy_then_the_tunnel() {
    let pki = pki(&["localhost"]);
    let proxy = tinyproxy(None, &[]);
    let front = tls_front(&pki, proxy.addr).await;
    let proxy_url = format!("https://localhost:{}", front.port());
    let addr = ws_server().await;
    echo_plain(
        trusting(&pki).proxy(proxy_url.as_str()),
        &format!("ws://{addr}/"),
    )
    .await;
    let secure = wss_server(&pki, LIMIT).await;
    let url = format!("wss://localhost:{}/", secure.port());
    echo_once(trusting(&pki).proxy(proxy_url.as_str()), &url).await;
    assert!(tunnelled(&proxy, addr.port()) && tunnelled(&proxy, secure.port()));
    // A proxy whose certificate is not trusted is refused.
    let error = refused(plain().proxy(proxy_url.as_str()), &format!("ws://{addr}/")).await;
    assert!(
        matches!(error, ConnectError::ProxyProtocol { .. }),
        "{error:?}"
    );
}

/// TLS in front of `upstream` (tinyproxy): an `https://` proxy.
async fn tls_front(pki: &Pki, upstream: SocketAddr) -> SocketAddr {
    use rustls::pki_types::pem::PemObject;
    let certs = rustls::pki_types::CertificateDer::pem_slice_iter(pki.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(pki.key_pem.as_bytes()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(stream).await else {
                    return;
                };
                let Ok(mut plain) = tokio::net::TcpStream::connect(upstream).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn rfc_1928_ws_and_wss_through_socks5_and_socks5h() {
    let proxy = microsocks(None);
    let addr = ws_server().await;
    let pki = pki(&["localhost"]);
    let secure = wss_server(&pki, LIMIT).await;
    let url = format!("wss://localhost:{}/", secure.port());
    for scheme in ["socks5", "socks5h"] {
        echo_plain(
            plain().proxy(proxy.url(scheme, None)),
            &format!("ws://{addr}/"),
        )
        .await;
        echo_once(trusting(&pki).proxy(proxy.url(scheme, None)), &url).await;
    }
    // The proxy's reply code, named: nothing listens at the target.
    let target = format!("ws://127.0.0.1:{}/", closed_port());
    let error = refused(plain().proxy(proxy.url("socks5", None)), &target).await;
    assert!(
        matches!(
            error,
            ConnectError::Socks {
                reply: SocksReply::ConnectionRefused,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(error.is_retryable());
}

#[tokio::test]
async fn rfc_1929_socks5_user_and_password() {
    let proxy = microsocks(Some(("bob", "hunter2")));
    let addr = ws_server().await;
    let url = format!("ws://{addr}/");
    echo_plain(
        plain().proxy(proxy.url("socks5h", Some(("bob", "hunter2")))),
        &url,
    )
    .await;
    for wrong in [Some(("bob", "nope")), None] {
        let error = refused(plain().proxy(proxy.url("socks5", wrong)), &url).await;
        assert!(matches!(error, ConnectError::ProxyAuth { .. }), "{error:?}");
        assert!(!error.is_retryable());
    }
}

/// Run by the environment tests in a child process, with the environment
/// they set: connects to `WS_TEST_URL` (trusting the CA in `WS_TEST_CA`,
/// if set) with nothing said about proxies, and echoes once.
#[tokio::test]
#[ignore = "run by the environment tests, in a child process of their own"]
async fn environment_child() {
    let url = std::env::var("WS_TEST_URL").expect("WS_TEST_URL");
    let mut client = Client::builder().ping_interval(None);
    if let Ok(ca) = std::env::var("WS_TEST_CA") {
        client = client.add_root_certificates_pem_file(ca);
    }
    echo_plain(client, &url).await;
}

/// Runs `environment_child` with `vars` (and nothing of this process's
/// own proxy settings); whether it passed.
async fn in_child(vars: &[(&str, &str)]) -> bool {
    let mut command = tokio::process::Command::new(std::env::current_exe().unwrap());
    command
        .args([
            "proxy::environment_child",
            "--exact",
            "--ignored",
            "--nocapture",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    for name in ["http_proxy", "https_proxy", "all_proxy", "no_proxy"] {
        command
            .env_remove(name)
            .env_remove(name.to_ascii_uppercase());
    }
    command.envs(vars.iter().copied());
    let status = tokio::time::timeout(LIMIT, command.status())
        .await
        .unwrap()
        .unwrap();
    status.success()
}

#[tokio::test]
async fn only_https_proxy_set_reaches_a_wss_server_through_it() {
    let proxy = tinyproxy(None, &[]);
    let pki = pki(&["localhost"]);
    let secure = wss_server(&pki, LIMIT).await;
    let ca = std::env::temp_dir().join(format!("ws-proxy-ca-{}.pem", secure.port()));
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    let url = format!("wss://localhost:{}/", secure.port());
    let proxy_url = proxy.url("http", None);
    let ca_path = ca.to_str().unwrap();
    let vars = [
        ("HTTPS_PROXY", proxy_url.as_str()),
        ("WS_TEST_URL", url.as_str()),
        ("WS_TEST_CA", ca_path),
    ];
    assert!(in_child(&vars).await, "connect through HTTPS_PROXY");
    assert!(tunnelled(&proxy, secure.port()), "{}", proxy.log());
    // Lower case, and ALL_PROXY when the scheme's own is unset, too.
    let socks = microsocks(None);
    let socks_url = socks.url("socks5h", None);
    let vars = [
        ("all_proxy", socks_url.as_str()),
        ("WS_TEST_URL", url.as_str()),
        ("WS_TEST_CA", ca_path),
    ];
    assert!(in_child(&vars).await, "connect through all_proxy");
    let _ = std::fs::remove_file(ca);
}

#[tokio::test]
async fn no_proxy_sends_its_hosts_direct_and_http_proxy_is_for_ws() {
    let addr = ws_server().await;
    let url = format!("ws://{addr}/");
    let dead = format!("http://127.0.0.1:{}", closed_port());
    // Through a proxy that is down, loopback fails, as curl's would...
    let vars = [("HTTP_PROXY", dead.as_str()), ("WS_TEST_URL", url.as_str())];
    assert!(
        !in_child(&vars).await,
        "loopback goes through the proxy too"
    );
    // ...unless NO_PROXY names it: by address, network, name suffix or *.
    for direct in ["127.0.0.1", "10.0.0.0/8,127.0.0.0/8", "*"] {
        let vars = [
            ("HTTP_PROXY", dead.as_str()),
            ("NO_PROXY", direct),
            ("WS_TEST_URL", url.as_str()),
        ];
        assert!(in_child(&vars).await, "NO_PROXY={direct}");
    }
    // HTTPS_PROXY is for wss:// only.
    let vars = [
        ("HTTPS_PROXY", dead.as_str()),
        ("WS_TEST_URL", url.as_str()),
    ];
    assert!(in_child(&vars).await, "HTTPS_PROXY does not apply to ws://");
}

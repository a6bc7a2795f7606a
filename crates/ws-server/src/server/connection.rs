//! One connection's task: its opening (TLS, the upgrade, the hook) under
//! one deadline, then its driver and handler.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::BytesMut;
use http::header::SEC_WEBSOCKET_EXTENSIONS;
use http::{HeaderValue, StatusCode};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout_at};
use ws_proto::{
    Connection, Decoded, DeflateParams, Rejection, RequestError, RequestParser, Role,
    validate_request, write_accept,
};

use ws_tokio::{Handshake, Transport};

use crate::tasks::Tracked;
use ws_tokio::Stopped;
use ws_tokio::{Join, JoinTask as Task};

use super::{Accept, Handler, HandshakeRequest, ServerBuilder, ServerState};

/// A connection's task: its opening, then its driver and handler joined
/// (or its driver alone, when the driver calls the handler).
///
/// Written by hand rather than as an async block so that, once the
/// connection is open, the task holds the join and the connection's slot
/// and nothing else: an async block would keep room for its captured
/// values and every local for the connection's whole life.
pub(super) struct ConnectionTask {
    phase: Phase,
    /// Counts the connection until the task ends.
    _tracked: Tracked,
}

impl ConnectionTask {
    /// The task of a connection just accepted, counted by `tracked` until
    /// it ends.
    pub(super) fn new(
        stream: TcpStream,
        peer: SocketAddr,
        shared: Arc<ServerState>,
        shutdown: Stopped,
        tracked: Tracked,
    ) -> Self {
        Self {
            phase: Phase::Opening(connection(stream, peer, shared, shutdown)),
            _tracked: tracked,
        }
    }
}

enum Phase {
    Opening(Opening),
    Open(Join),
    /// Open with a message handler: the driver alone.
    Driven(Task),
}

/// A connection whose handshake is done: its driver and handler futures,
/// or a driver that calls the handler itself.
enum Opened {
    Joined(Task, Task),
    Driven(Task),
}

impl Future for ConnectionTask {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        // A panic in the handler (or the handshake hook) ends this
        // connection only; it is logged here, as nothing joins the task.
        let polled = std::panic::catch_unwind(AssertUnwindSafe(|| {
            loop {
                match &mut this.phase {
                    Phase::Opening(opening) => match std::task::ready!(opening.as_mut().poll(cx)) {
                        // The opening's box is freed here.
                        Some(Opened::Joined(driver, handler)) => {
                            this.phase = Phase::Open(Join::new(driver, handler));
                        }
                        Some(Opened::Driven(driver)) => this.phase = Phase::Driven(driver),
                        None => return Poll::Ready(()),
                    },
                    Phase::Open(join) => return Pin::new(join).poll(cx),
                    Phase::Driven(driver) => return driver.as_mut().poll(cx),
                }
            }
        }));
        polled.unwrap_or_else(|panic| {
            let message = panic
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
                .unwrap_or("(not a string)");
            tracing::error!(panic = message, "connection task panicked");
            Poll::Ready(())
        })
    }
}

/// A connection being opened: the TLS handshake (if any) and the upgrade,
/// under one deadline. Ends with the connection's driver and handler, or
/// `None` once the connection is answered or dropped.
type Opening = Pin<Box<dyn Future<Output = Option<Opened>> + Send>>;

/// Opens a connection. Boxed, and not an async fn: everything the opening
/// needs (the TLS state, the parser, the request as read) is freed once it
/// is done, instead of staying reserved in the connection's task for its
/// whole life. A plain connection's opening is a future of its own,
/// without room for the TLS handshake's state: a tenth of the size.
fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<ServerState>,
    shutdown: Stopped,
) -> Opening {
    let _ = stream.set_nodelay(true);
    // One deadline for the TLS handshake (if any) and the HTTP upgrade.
    // A timeout too long for the clock (`Duration::MAX`) means no deadline
    // (issue 25, item 7: it used to overflow and panic).
    let deadline = ws_tokio::deadline_after(shared.builder.handshake_timeout);
    #[cfg(feature = "tls")]
    if let Some(tls) = shared.builder.tls.clone() {
        // The acceptor is shared (a reference count): the opening owns one.
        return Box::pin(async move {
            let shared = &*shared;
            match timeout_at(deadline, tls.acceptor.accept(stream)).await {
                Ok(Ok(stream)) => upgrade(stream, peer, shared, shutdown, deadline).await,
                Ok(Err(error)) => {
                    tracing::debug!(%error, "TLS handshake failed");
                    None
                }
                Err(_) => {
                    tracing::debug!("TLS handshake timed out");
                    None
                }
            }
        });
    }
    Box::pin(async move { upgrade(stream, peer, &shared, shutdown, deadline).await })
}

async fn upgrade<S: Transport>(
    mut stream: S,
    peer: SocketAddr,
    shared: &ServerState,
    shutdown: Stopped,
    deadline: Instant,
) -> Option<Opened> {
    let builder = &shared.builder;
    let handshaking = timeout_at(deadline, handshake(&mut stream, peer, builder));
    let (handshake, deflate, leftover) = match handshaking.await {
        Ok(Ok(Some(accepted))) => accepted,
        Ok(Ok(None)) => return None,
        Ok(Err(error)) => {
            tracing::debug!(%error, "handshake failed");
            return None;
        }
        Err(_) => {
            tracing::debug!("handshake timed out");
            return None;
        }
    };
    tracing::Span::current().record("path", handshake.request().uri().path());
    tracing::debug!(protocol = ?handshake.protocol(), "handshake complete");
    Some(open(
        stream, handshake, deflate, &leftover, shared, shutdown,
    ))
}

/// The driver and the handler of a connection whose handshake is done,
/// boxed, so that the connection's task holds them once.
fn open<S: Transport>(
    stream: S,
    handshake: Handshake,
    deflate: Option<DeflateParams>,
    leftover: &[u8],
    shared: &ServerState,
    shutdown: Stopped,
) -> Opened {
    let mut conn = Connection::builder(Role::Server)
        .shared_config(shared.config.clone())
        .deflate(deflate)
        .build();
    // Bytes that came with the request: the client's first frames.
    conn.handle_bytes(leftover);
    let settings = &shared.settings;
    match &shared.handler {
        Handler::Stream(handler) => {
            let (ws, driver) = ws_tokio::start(stream, conn, handshake, settings, shutdown);
            Opened::Joined(Box::pin(driver), handler(ws))
        }
        Handler::Inline(handler) => {
            let make = |ws| handler(ws);
            let driver = ws_tokio::start_inline(stream, conn, handshake, settings, shutdown, make);
            Opened::Driven(Box::pin(driver))
        }
    }
}

/// Reads and answers the upgrade request. `Ok(None)`: answered with an
/// HTTP response (a rejection or the health check), nothing more to do.
async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    peer: SocketAddr,
    builder: &ServerBuilder,
) -> io::Result<Option<(Handshake, Option<DeflateParams>, BytesMut)>> {
    let mut parser = RequestParser::new(builder.request_limits.clone());
    let mut buf = BytesMut::with_capacity(1024);
    let (request, consumed) = loop {
        if stream.read_buf(&mut buf).await? == 0 {
            return Ok(None);
        }
        match parser.parse(&buf) {
            Ok(Decoded::NeedMore(_)) => {}
            Ok(Decoded::Done { value, consumed }) => break (value, consumed),
            Err(error @ RequestError::TlsOnPlainPort) => {
                tracing::info!(
                    %peer,
                    "a TLS handshake on this plain ws:// port: the client used wss:// \
                     (serve TLS with ServerBuilder::tls, or connect with ws://)"
                );
                return reject(stream, error.rejection()).await;
            }
            Err(error) => return reject(stream, error.rejection()).await,
        }
    };
    let leftover = buf.split_off(consumed);
    tracing::debug!(method = %request.method(), uri = %request.uri(), "upgrade request");

    let upgrade = match validate_request(&request) {
        Ok(upgrade) => upgrade,
        Err(RequestError::NotUpgrade)
            if builder.health_check.as_deref() == Some(request.uri().path())
                && request.method() == http::Method::GET =>
        {
            return reject(stream, Rejection::new(StatusCode::OK).body("OK\n")).await;
        }
        Err(error) => return reject(stream, error.rejection()).await,
    };
    // RFC 6455 section 10.2: servers that are not intended to process input
    // from any web page "SHOULD verify the |Origin| field".
    if !builder.origins.allows(request.headers()) {
        let rejection = Rejection::new(StatusCode::FORBIDDEN).body("origin not allowed\n");
        return reject(stream, rejection).await;
    }

    let mut accept = Accept::default();
    if let Some(hook) = &builder.hook {
        let view = HandshakeRequest {
            request: request.clone(),
            peer,
            protocols: upgrade.protocols().to_vec(),
        };
        match hook(view).await {
            Ok(chosen) => accept = chosen,
            Err(rejection) => return reject(stream, rejection).await,
        }
    }
    let protocol = accept.protocol.or_else(|| {
        builder
            .protocols
            .iter()
            .find(|p| upgrade.protocols().contains(p))
            .cloned()
    });
    // RFC 7692 section 7: the first permessage-deflate offer this server
    // can accept, unless the application's hook answered for extensions
    // itself.
    let mut headers = accept.headers;
    let deflate = match &builder.config.compression {
        Some(settings) if !headers.contains_key(SEC_WEBSOCKET_EXTENSIONS) => {
            settings.accept(request.headers())
        }
        _ => None,
    };
    if let Some(params) = &deflate
        && let Ok(value) = HeaderValue::from_str(&params.answer())
    {
        headers.insert(SEC_WEBSOCKET_EXTENSIONS, value);
    }
    let mut out = BytesMut::new();
    if let Err(error) = write_accept(&upgrade, protocol.as_deref(), &headers, &mut out) {
        // The application's choice, not the client's fault: a server error.
        tracing::error!(%error, "the chosen subprotocol cannot be sent: answering 500");
        let rejection = Rejection::new(StatusCode::INTERNAL_SERVER_ERROR);
        return reject(stream, rejection).await;
    }
    stream.write_all(&out).await?;
    let handshake = Handshake::new(request)
        .with_peer(peer)
        .with_protocol(protocol);
    Ok(Some((handshake, deflate, leftover)))
}

async fn reject<S: AsyncRead + AsyncWrite + Unpin, T>(
    stream: &mut S,
    rejection: Rejection,
) -> io::Result<Option<T>> {
    tracing::debug!(status = %rejection.status, "handshake rejected");
    let mut out = BytesMut::new();
    rejection.write(&mut out);
    stream.write_all(&out).await?;
    stream.shutdown().await?;
    Ok(None)
}

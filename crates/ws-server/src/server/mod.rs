//! The server: accept loop, opening handshake, connection limits, graceful
//! shutdown.

use std::future::{Future, IntoFuture};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue, Request, header};
use tokio::net::TcpListener;
use tokio::time::timeout;
use tracing::Instrument;
use ws_proto::{Config, Rejection, RequestLimits};
use ws_tokio::{MessageHandler, Settings, WebSocket};

use crate::tasks::Tasks;
use ws_tokio::JoinTask as Task;
use ws_tokio::Stop;

mod accept;
mod connection;
mod origin;

use connection::ConnectionTask;
use origin::OriginPolicy;

/// Accepts or rejects an upgrade request; see [`ServerBuilder::on_handshake`].
pub type HandshakeResult = Result<Accept, Rejection>;

type Hook = Arc<
    dyn Fn(HandshakeRequest) -> Pin<Box<dyn Future<Output = HandshakeResult> + Send>> + Send + Sync,
>;

/// The upgrade request as the handshake hook sees it.
#[derive(Debug, Clone)]
pub struct HandshakeRequest {
    request: Request<()>,
    peer: SocketAddr,
    protocols: Vec<String>,
}

impl HandshakeRequest {
    /// The request: method, URI, headers.
    pub fn request(&self) -> &Request<()> {
        &self.request
    }

    /// The request path, such as `/chat`.
    pub fn path(&self) -> &str {
        self.request.uri().path()
    }

    /// The query string, without the `?`.
    pub fn query(&self) -> Option<&str> {
        self.request.uri().query()
    }

    /// The request headers.
    pub fn headers(&self) -> &HeaderMap {
        self.request.headers()
    }

    /// The value of the cookie `name`, from the `Cookie` headers.
    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.headers()
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value)
    }

    /// The client's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    /// The subprotocols the client offered, in its order of preference.
    pub fn protocols(&self) -> &[String] {
        &self.protocols
    }
}

/// How the handshake hook accepts a request: optionally a subprotocol (one
/// the client offered) and extra response headers.
#[derive(Debug, Clone, Default)]
pub struct Accept {
    protocol: Option<String>,
    headers: HeaderMap,
}

impl Accept {
    /// Accepts with no subprotocol of the hook's choosing (the server's
    /// configured list still applies) and no extra headers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Chooses this subprotocol.
    pub fn protocol(mut self, protocol: impl Into<String>) -> Self {
        self.protocol = Some(protocol.into());
        self
    }

    /// Adds a response header, such as `Set-Cookie`.
    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.append(name, value);
        self
    }
}

/// Where a server listens: an address to bind, or a listener bound already
/// (which is how a test learns the port it got for port 0).
pub trait Listen: Send + 'static {
    /// Binds, if not bound yet.
    fn listen(self) -> Pin<Box<dyn Future<Output = io::Result<TcpListener>> + Send>>;
}

impl Listen for TcpListener {
    fn listen(self) -> Pin<Box<dyn Future<Output = io::Result<TcpListener>> + Send>> {
        Box::pin(async move { Ok(self) })
    }
}

impl Listen for SocketAddr {
    fn listen(self) -> Pin<Box<dyn Future<Output = io::Result<TcpListener>> + Send>> {
        Box::pin(TcpListener::bind(self))
    }
}

impl Listen for &'static str {
    fn listen(self) -> Pin<Box<dyn Future<Output = io::Result<TcpListener>> + Send>> {
        Box::pin(TcpListener::bind(self))
    }
}

impl Listen for String {
    fn listen(self) -> Pin<Box<dyn Future<Output = io::Result<TcpListener>> + Send>> {
        Box::pin(async move { TcpListener::bind(self).await })
    }
}

/// The server's settings; start with [`Server::builder`].
#[derive(Clone)]
pub struct ServerBuilder {
    config: Config,
    request_limits: RequestLimits,
    handshake_timeout: Duration,
    shutdown_timeout: Duration,
    settings: Settings,
    max_connections: usize,
    origins: OriginPolicy,
    protocols: Vec<String>,
    health_check: Option<String>,
    hook: Option<Hook>,
    #[cfg(feature = "tls")]
    tls: Option<crate::tls::TlsConfig>,
}

impl std::fmt::Debug for ServerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerBuilder")
            .field("config", &self.config)
            .field("handshake_timeout", &self.handshake_timeout)
            .field("settings", &self.settings)
            .field("max_connections", &self.max_connections)
            .finish_non_exhaustive()
    }
}

/// The namespace of [`Server::builder`].
#[derive(Debug)]
pub struct Server(());

impl Server {
    /// A builder with the documented defaults.
    pub fn builder() -> ServerBuilder {
        ServerBuilder {
            config: Config::default(),
            request_limits: RequestLimits::default(),
            handshake_timeout: Duration::from_secs(10),
            shutdown_timeout: Duration::from_secs(10),
            settings: Settings::default(),
            max_connections: 10_000,
            origins: OriginPolicy::Unset,
            protocols: Vec::new(),
            health_check: None,
            hook: None,
            #[cfg(feature = "tls")]
            tls: None,
        }
    }
}

impl ServerBuilder {
    /// The protocol core's settings: frame and message limits, the
    /// keepalive and the close timeout; default [`Config::default`] (16 MiB,
    /// a ping every 20 s answered within 10 s, 10 s to close).
    /// [`Config::public_server`] is the 1 MiB profile for public servers.
    /// It replaces the whole `Config`: call it before the keepalive and
    /// close-timeout shortcuts below.
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Caps on the upgrade request; default [`RequestLimits::default`].
    pub fn request_limits(mut self, limits: RequestLimits) -> Self {
        self.request_limits = limits;
        self
    }

    /// How long a client has to complete the opening handshake, from accept
    /// to the end of its request; default 10 s. A client that trickles its
    /// request byte by byte is dropped when it expires.
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// [`Config::close_timeout`]: how long to wait for the peer's close
    /// frame after sending ours; default 10 s. Incoming traffic does not
    /// extend it.
    pub fn close_timeout(mut self, timeout: Duration) -> Self {
        self.config.close_timeout = timeout;
        self
    }

    /// How long graceful shutdown waits for connections to close after
    /// sending them 1001; default 10 s. Then they are dropped.
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// [`Config::ping_interval`]: send a keepalive ping this often;
    /// default 20 s; `None` disables. Must be greater than the ping timeout
    /// (the server refuses to start otherwise).
    pub fn ping_interval(mut self, interval: Option<Duration>) -> Self {
        self.config.ping_interval = interval;
        self
    }

    /// [`Config::ping_timeout`]: fail a connection whose pong has not come
    /// this long after the ping (close code 1011); default 10 s; `None`
    /// waits forever.
    pub fn ping_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.config.ping_timeout = timeout;
        self
    }

    /// [`Config::compression`]: permessage-deflate (RFC 7692), accepted
    /// from clients that offer it; default `None`, off. With
    /// `server_no_context_takeover`, connections share one compressor per
    /// thread and a broadcast is compressed once (`docs/compression.md`).
    pub fn compression(mut self, compression: Option<crate::PerMessageDeflate>) -> Self {
        self.config.compression = compression;
        self
    }

    /// The most connections open at once, handshakes included; default
    /// 10 000. Past it, a new connection is answered 503 and closed.
    pub fn max_connections(mut self, max: usize) -> Self {
        self.max_connections = max;
        self
    }

    /// How the connection's driver queues messages; default
    /// [`Settings::default`](crate::Settings). It replaces the whole
    /// `Settings`: call it before the queue shortcuts below.
    pub fn settings(mut self, settings: crate::Settings) -> Self {
        self.settings = settings;
        self
    }

    /// The most outgoing bytes queued per connection before `send().await`
    /// waits and `try_send` reports [`Error::Full`](crate::Error::Full);
    /// default 1 MiB.
    pub fn write_high_water(mut self, bytes: usize) -> Self {
        self.settings = self.settings.write_high_water(bytes);
        self
    }

    /// The most received messages queued for the handler; default 16. When
    /// full, the server stops reading from that client.
    pub fn incoming_queue(mut self, messages: usize) -> Self {
        self.settings = self.settings.incoming_queue(messages);
        self
    }

    /// Only accept browsers from these origins (exact match on the `Origin`
    /// header, such as `https://example.com`); others get 403. Requests
    /// without `Origin` (non-browser clients) are accepted.
    ///
    /// With no `Origin` policy (the default) any page a browser visits can
    /// open a connection carrying its visitor's cookies (cross-site
    /// WebSocket hijacking), and the server logs a warning at start-up:
    /// choose this, [`same_origin`](Self::same_origin), or
    /// [`any_origin`](Self::any_origin).
    pub fn allowed_origins<I, S>(mut self, origins: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.origins = OriginPolicy::Allowed(origins.into_iter().map(Into::into).collect());
        self
    }

    /// Only accept browsers on pages served by this same host: the
    /// `Origin` header must name the host and port the request was sent to
    /// (its `Host` header, the scheme's default port implied); others get
    /// 403. Requests without `Origin` (non-browser clients) are accepted.
    /// The safe choice for a server whose connections rely on cookies.
    pub fn same_origin(mut self) -> Self {
        self.origins = OriginPolicy::Same;
        self
    }

    /// Accept pages from any origin, on purpose: for servers whose
    /// connections authenticate with something a page on another site
    /// cannot send (a token in the URL or the first message), not with
    /// cookies. Silences the start-up warning.
    pub fn any_origin(mut self) -> Self {
        self.origins = OriginPolicy::Any;
        self
    }

    /// Subprotocols the server speaks, most preferred first: the first of
    /// them that the client offered is chosen. Default: none.
    pub fn protocols<I, S>(mut self, protocols: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.protocols = protocols.into_iter().map(Into::into).collect();
        self
    }

    /// Answers a plain HTTP GET on `path` with `200 OK`, for load
    /// balancers. Other plain HTTP requests get 426 Upgrade Required.
    pub fn health_check(mut self, path: impl Into<String>) -> Self {
        self.health_check = Some(path.into());
        self
    }

    /// A hook that sees every valid upgrade request (path, query, headers,
    /// cookies, peer) before the server answers it, and accepts it
    /// (optionally choosing a subprotocol and adding headers) or rejects it
    /// with a status, headers and body: authentication (401, 403) and
    /// routing by path.
    ///
    /// ```no_run
    /// use ws_server::{Accept, Server, http::StatusCode};
    /// use ws_server::proto::Rejection;
    ///
    /// let builder = Server::builder().on_handshake(|request| async move {
    ///     match request.headers().get("authorization") {
    ///         Some(token) if token == "Bearer secret" => Ok(Accept::new()),
    ///         _ => Err(Rejection::new(StatusCode::UNAUTHORIZED).body("token required")),
    ///     }
    /// });
    /// ```
    pub fn on_handshake<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(HandshakeRequest) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = HandshakeResult> + Send + 'static,
    {
        self.hook = Some(Arc::new(move |request| Box::pin(hook(request))));
        self
    }

    /// Serves `wss://`: every connection starts with a TLS handshake, which
    /// the handshake timeout covers too. A client that does not speak TLS
    /// (a plain `ws://` client) fails its handshake and is dropped; the
    /// server goes on serving.
    #[cfg(feature = "tls")]
    pub fn tls(mut self, config: crate::tls::TlsConfig) -> Self {
        self.tls = Some(config);
        self
    }

    /// Serves `handler` on `addr`: every accepted WebSocket is handed to its
    /// own call of `handler`, and the connection closes (1000) when the
    /// handler returns and has dropped the socket.
    ///
    /// The returned [`Serve`] runs when awaited.
    pub fn serve<H, F>(self, handler: H, addr: impl Listen) -> Serve
    where
        H: Fn(WebSocket) -> F + Send + Sync + 'static,
        F: Future<Output = ()> + Send + 'static,
    {
        let handler = Handler::Stream(Arc::new(move |ws| Box::pin(handler(ws))));
        self.serve_handler(handler, addr)
    }

    /// Serves on `addr` with a [`MessageHandler`] per connection, which the
    /// connection's driver calls with each message as it decodes it: the
    /// handler answers through a [`Reply`](ws_tokio::Reply), straight into
    /// the connection's output, with no queue between the two and no task
    /// to wake. `handler` makes it from the connection's [`WebSocket`].
    ///
    /// Suited to handlers that answer each message at once, without
    /// awaiting (echo, request and response, publishing to a [`Hub`](crate::Hub)),
    /// in the style of callback APIs. The handler runs on the runtime's
    /// worker inside the driver's poll, so it must not block; work that has
    /// to wait belongs in a task of its own, which can answer through a
    /// clone of the `WebSocket`.
    ///
    /// The `WebSocket` receives no messages (they all go to the handler).
    /// It reads the handshake, sends, closes and joins hub rooms, and it
    /// may be kept, cloned or dropped: the connection stays open until
    /// either side closes it or the server shuts down. Pings, the
    /// keepalive, the closing handshake and every limit are handled as with
    /// [`serve`](Self::serve).
    ///
    /// ```no_run
    /// # async fn run() -> std::io::Result<()> {
    /// use ws_server::{Message, Reply, Server, WebSocket};
    ///
    /// Server::builder()
    ///     .serve_inline(
    ///         |_ws: WebSocket| {
    ///             |message: Message, reply: &mut Reply<'_>| {
    ///                 let _ = reply.send(&message);
    ///             }
    ///         },
    ///         "127.0.0.1:9001",
    ///     )
    ///     .await
    /// # }
    /// ```
    pub fn serve_inline<H, M>(self, handler: H, addr: impl Listen) -> Serve
    where
        H: Fn(WebSocket) -> M + Send + Sync + 'static,
        M: MessageHandler,
    {
        let make = move |ws| -> Box<dyn MessageHandler> { Box::new(handler(ws)) };
        let handler = Handler::Inline(Arc::new(make));
        self.serve_handler(handler, addr)
    }

    fn serve_handler(self, handler: Handler, addr: impl Listen) -> Serve {
        Serve {
            builder: self,
            handler,
            listen: Box::new(move || addr.listen()),
            signal: None,
        }
    }
}

/// The application's handler.
enum Handler {
    /// Makes each connection's handler future.
    Stream(Arc<dyn Fn(WebSocket) -> Task + Send + Sync>),
    /// Makes each connection's message handler, which its driver calls.
    Inline(Arc<dyn Fn(WebSocket) -> Box<dyn MessageHandler> + Send + Sync>),
}
type ListenFn =
    Box<dyn FnOnce() -> Pin<Box<dyn Future<Output = io::Result<TcpListener>> + Send>> + Send>;

/// Serves `handler` on `addr` with the default settings: the shortcut for
/// `Server::builder().serve(handler, addr)`.
///
/// ```no_run
/// # async fn run() -> std::io::Result<()> {
/// use futures_util::{SinkExt, StreamExt};
///
/// ws_server::serve(
///     |mut ws: ws_server::WebSocket| async move {
///         while let Some(Ok(message)) = ws.next().await {
///             if ws.send(message).await.is_err() {
///                 break;
///             }
///         }
///     },
///     "127.0.0.1:9001",
/// )
/// .await
/// # }
/// ```
pub fn serve<H, F>(handler: H, addr: impl Listen) -> Serve
where
    H: Fn(WebSocket) -> F + Send + Sync + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    Server::builder().serve(handler, addr)
}

/// A server ready to run: await it, or first add
/// [`with_graceful_shutdown`](Self::with_graceful_shutdown).
///
/// Awaiting it runs the accept loop as a task of its own on the current
/// Tokio runtime; the awaiting future completes when that task does.
/// Dropping the future stops the server at once: the listener closes and
/// open connections are dropped without a closing handshake (use
/// `with_graceful_shutdown` for one).
#[must_use = "a server does nothing until awaited"]
pub struct Serve {
    builder: ServerBuilder,
    handler: Handler,
    listen: ListenFn,
    signal: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
}

impl std::fmt::Debug for Serve {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Serve")
            .field("builder", &self.builder)
            .finish_non_exhaustive()
    }
}

impl Serve {
    /// Shuts down gracefully when `signal` completes: stops accepting, sends
    /// 1001 Going Away to every open connection, waits up to the shutdown
    /// timeout for their closing handshakes, then drops what is left.
    pub fn with_graceful_shutdown(
        mut self,
        signal: impl Future<Output = ()> + Send + 'static,
    ) -> Self {
        self.signal = Some(Box::pin(signal));
        self
    }
}

impl IntoFuture for Serve {
    type Output = io::Result<()>;
    type IntoFuture = Pin<Box<dyn Future<Output = io::Result<()>> + Send>>;

    /// The accept loop runs as a task of its own, which this future awaits
    /// (and aborts if dropped). Awaited from `#[tokio::main]`, the loop
    /// would otherwise run on the thread that blocks on `main`, outside
    /// the runtime's workers: every accept would be a wake across threads,
    /// and the state it allocates for each connection would come from that
    /// thread's allocator arena while the connection's own task, on a
    /// worker, allocates and frees in another. Measured with 5 000 idle
    /// connections, that mix left about 270 bytes per connection resident
    /// in freed memory (see `docs/limits.md`).
    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let mut task = AbortOnDrop(tokio::spawn(run(self)));
            match (&mut task.0).await {
                Ok(served) => served,
                Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
                Err(_) => Err(io::Error::other("the server's task was cancelled")),
            }
        })
    }
}

/// A task aborted when its handle is dropped.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

struct ServerState {
    builder: ServerBuilder,
    /// The builder's protocol settings, shared by every connection.
    config: Arc<Config>,
    /// The builder's connection settings, shared by every driver.
    settings: Arc<Settings>,
    handler: Handler,
}

async fn run(serve: Serve) -> io::Result<()> {
    serve
        .builder
        .config
        .check()
        .map_err(|error| io::Error::new(io::ErrorKind::InvalidInput, error))?;
    let listener = (serve.listen)().await?;
    let shared = Arc::new(ServerState {
        settings: Arc::new(serve.builder.settings.clone()),
        config: Arc::new(serve.builder.config.clone()),
        builder: serve.builder,
        handler: serve.handler,
    });
    let mut signal = serve
        .signal
        .unwrap_or_else(|| Box::pin(std::future::pending()));
    let stop = Arc::new(Stop::default());
    // Aborts the connections still open when dropped: at the end of this
    // function, or when the server's future is dropped.
    let mut tasks = Tasks::default();
    tracing::info!(addr = ?listener.local_addr().ok(), "serving");
    shared.builder.origins.warn_if_unset();
    accept::check_descriptor_limit(shared.builder.max_connections);

    loop {
        tokio::select! {
            () = &mut signal => break,
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => match accept::classify(&error) {
                        // Out of descriptors and the like: back off rather
                        // than spin, and keep serving.
                        accept::AcceptError::Resources => {
                            tracing::warn!(%error, "accept failed: backing off");
                            tokio::time::sleep(accept::RESOURCE_BACKOFF).await;
                            continue;
                        }
                        // The pending connection failed: on to the next.
                        accept::AcceptError::Connection => {
                            tracing::debug!(%error, "a connection failed before it was accepted");
                            continue;
                        }
                    },
                };
                // Ended tasks are reaped as connections come (a task's memory
                // went as it ended; its entry in the set stays till then).
                tasks.reap_ended();
                if tasks.connections() >= shared.builder.max_connections {
                    // The answers are tasks too, counted and bounded.
                    if tasks.busy() >= accept::MAX_BUSY_ANSWERS {
                        tracing::debug!(%peer, "too many connections: closed");
                        continue;
                    }
                    tracing::debug!(%peer, "too many connections: 503");
                    let shared = shared.clone();
                    tasks.spawn(false, |tracked| async move {
                        let _tracked = tracked;
                        accept::reject_busy(stream, &shared.builder).await;
                    });
                    continue;
                }
                let shared = shared.clone();
                let shutdown = stop.stopped();
                let span = tracing::debug_span!("ws", %peer, path = tracing::field::Empty);
                tasks.spawn(true, |tracked| {
                    ConnectionTask::new(stream, peer, shared, shutdown, tracked).instrument(span)
                });
            }
        }
    }

    drop(listener);
    tasks.reap_ended();
    tracing::info!(open = tasks.len(), "shutting down");
    stop.stop();
    let deadline = shared.builder.shutdown_timeout;
    if timeout(deadline, tasks.idle()).await.is_err() {
        tracing::info!(left = tasks.len(), "shutdown timeout: dropping connections");
        tasks.abort_all();
        tasks.idle().await;
    }
    Ok(())
}

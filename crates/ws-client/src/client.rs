//! The client: settings, URL handling, connecting and the opening handshake.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, header};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout, timeout_at};
use tracing::Instrument;
use url::{Host, Url};
use ws_proto::{
    ClientRequest, Config, Connection, Decoded, HandshakeResponse, MaskKeySource, Role,
};
use ws_tokio::{Handshake, Settings, Transport, WebSocket};

use crate::error::{BuildError, ConnectError};
use crate::net::{connect_any, resolve};
use crate::proxy::Proxy;

type MaskFactory = Arc<dyn Fn() -> Box<dyn MaskKeySource> + Send + Sync>;

/// The client's settings; start with [`Client::builder`], finish with
/// [`build`](Self::build), which checks them.
#[derive(Clone)]
pub struct ClientBuilder {
    headers: HeaderMap,
    cookies: Vec<(String, String)>,
    origin: Option<String>,
    protocols: Vec<String>,
    connect_timeout: Duration,
    handshake_timeout: Duration,
    config: Config,
    pub(crate) settings: Settings,
    mask_keys: Option<MaskFactory>,
    proxy: crate::proxy::Setting,
    #[cfg(feature = "tls")]
    tls: crate::tls::TlsSettings,
}

impl std::fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("headers", &self.headers)
            .field("origin", &self.origin)
            .field("protocols", &self.protocols)
            .field("connect_timeout", &self.connect_timeout)
            .field("handshake_timeout", &self.handshake_timeout)
            .field("config", &self.config)
            .field("settings", &self.settings)
            .field("proxy", &self.proxy)
            .finish_non_exhaustive()
    }
}

impl Default for ClientBuilder {
    fn default() -> Self {
        Self {
            headers: HeaderMap::new(),
            cookies: Vec::new(),
            origin: None,
            protocols: Vec::new(),
            connect_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(10),
            config: Config::default().compression(Some(crate::PerMessageDeflate::default())),
            settings: Settings::default(),
            mask_keys: None,
            proxy: crate::proxy::Setting::default(),
            #[cfg(feature = "tls")]
            tls: crate::tls::TlsSettings::default(),
        }
    }
}

impl ClientBuilder {
    /// Adds a header to the upgrade request, such as `Authorization`.
    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.append(name, value);
        self
    }

    /// Adds a cookie; all cookies go in one `Cookie` header.
    pub fn cookie(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.cookies.push((name.into(), value.into()));
        self
    }

    /// Sets the `Origin` header, for servers that check it.
    pub fn origin(mut self, origin: impl Into<String>) -> Self {
        self.origin = Some(origin.into());
        self
    }

    /// Offers subprotocols, most preferred first; the server picks one or
    /// none ([`HandshakeResponse::protocol`]).
    pub fn protocols<I, S>(mut self, protocols: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.protocols = protocols.into_iter().map(Into::into).collect();
        self
    }

    /// How long resolving the host and opening the TCP connection may take,
    /// over all of the host's addresses; default 10 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long the server has to answer the upgrade request; default 10 s.
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// The protocol core's settings: limits for what the server sends,
    /// the heartbeat and the close timeout; default [`Config::default`]
    /// (16 MiB, a ping every 20 s answered within 10 s, 10 s to close). It
    /// replaces the whole `Config`: call it before the heartbeat and
    /// close-timeout shortcuts below.
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// [`Config::ping_interval`]: send a heartbeat ping this often;
    /// default 20 s; `None` turns the heartbeat off. Must be greater than
    /// the ping timeout.
    pub fn ping_interval(mut self, interval: Option<Duration>) -> Self {
        self.config.ping_interval = interval;
        self
    }

    /// Heartbeat: fail the connection with
    /// [`Error::KeepaliveTimeout`](crate::Error::KeepaliveTimeout) when a
    /// ping's pong has not come within this; default 10 s; `None` sends
    /// pings without a deadline.
    pub fn ping_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.config.ping_timeout = timeout;
        self
    }

    /// [`Config::compression`]: permessage-deflate (RFC 7692), `None` to
    /// send no offer. Default: offered with
    /// [`PerMessageDeflate::default`](crate::PerMessageDeflate), as
    /// browsers do; used only if the server accepts.
    pub fn compression(mut self, compression: Option<crate::PerMessageDeflate>) -> Self {
        self.config.compression = compression;
        self
    }

    /// How long to wait for the server's close frame after sending ours,
    /// then for the server to close TCP; default 10 s.
    pub fn close_timeout(mut self, timeout: Duration) -> Self {
        self.config.close_timeout = timeout;
        self
    }

    /// How the connection's driver queues messages; default
    /// [`Settings::default`](crate::Settings). It replaces the whole
    /// `Settings`: call it before the queue shortcuts below.
    pub fn settings(mut self, settings: crate::Settings) -> Self {
        self.settings = settings;
        self
    }

    /// Outgoing bytes queued before `send().await` waits and `try_send`
    /// reports [`Error::Full`](crate::Error::Full); default 1 MiB.
    pub fn write_high_water(mut self, bytes: usize) -> Self {
        self.settings = self.settings.write_high_water(bytes);
        self
    }

    /// Received messages queued for the application before the client
    /// stops reading the socket; default 16.
    pub fn incoming_queue(mut self, messages: usize) -> Self {
        self.settings = self.settings.incoming_queue(messages);
        self
    }

    /// Where each connection gets its masking keys; default a ChaCha12
    /// generator seeded from the OS. Fixed keys make frames reproducible in
    /// tests; never use predictable keys against a real server (RFC 6455
    /// section 10.3).
    pub fn mask_keys<F, M>(mut self, source: F) -> Self
    where
        F: Fn() -> M + Send + Sync + 'static,
        M: MaskKeySource + 'static,
    {
        self.mask_keys = Some(Arc::new(move || Box::new(source())));
        self
    }

    /// `wss://`: also trust this root certificate (a private CA).
    #[cfg(feature = "tls")]
    pub fn add_root_certificate(
        mut self,
        certificate: rustls_pki_types::CertificateDer<'static>,
    ) -> Self {
        self.tls.extra_roots.push(certificate);
        self
    }

    /// `wss://`: also trust the root certificates in this PEM file (a
    /// private CA); read when the client is built.
    #[cfg(feature = "tls")]
    pub fn add_root_certificates_pem_file(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.tls.extra_root_files.push(path.into());
        self
    }

    /// `wss://`: trust Mozilla's root certificates, compiled in; default on
    /// (feature `webpki-roots`). Off, only the roots added here (and the
    /// platform's, if asked) are trusted.
    #[cfg(feature = "tls")]
    pub fn webpki_roots(mut self, trust: bool) -> Self {
        self.tls.webpki_roots = trust;
        self
    }

    /// `wss://`: trust the platform's root certificates (feature
    /// `native-roots`); default off.
    #[cfg(feature = "native-roots")]
    pub fn native_roots(mut self, trust: bool) -> Self {
        self.tls.native_roots = trust;
        self
    }

    /// `wss://`: **accepts any server certificate**, whoever it names and
    /// whoever signed it. For tests against self-signed servers only: it
    /// removes the protection TLS gives against an attacker in the middle.
    #[cfg(feature = "tls")]
    pub fn danger_accept_invalid_certificates(mut self, accept: bool) -> Self {
        self.tls.danger_accept_invalid_certificates = accept;
        self
    }

    /// `wss://`: uses this rustls configuration as it is, instead of one
    /// built from the settings above.
    #[cfg(feature = "tls")]
    pub fn tls_config(mut self, config: std::sync::Arc<rustls::ClientConfig>) -> Self {
        self.tls.config = Some(config);
        self
    }

    /// Connects through the proxy at `url` instead of the one the
    /// environment names:
    ///
    /// - `http://[user:password@]host[:port]`: an HTTP proxy, through a
    ///   `CONNECT` tunnel (RFC 9110 section 9.3.6), with Basic credentials;
    /// - `https://...`: the same with TLS to the proxy (its certificate
    ///   checked like a server's);
    /// - `socks5://[user:password@]host[:port]`: SOCKS5 (RFC 1928), the
    ///   target's name resolved here, credentials by RFC 1929;
    /// - `socks5h://...`: the same, the name resolved by the proxy.
    ///
    /// Without a scheme the proxy is HTTP; without a port it is 1080 (443
    /// for `https://`), as curl has it. `wss://` runs TLS inside the
    /// tunnel, the target's name verified. `NO_PROXY` from the environment
    /// still applies. Checked by [`build`](Self::build).
    pub fn proxy(mut self, url: impl Into<String>) -> Self {
        self.proxy = crate::proxy::Setting::Url(url.into());
        self
    }

    /// Connects directly: no proxy, and the environment's proxy variables
    /// are not read.
    ///
    /// By default the environment is read as curl and Python's
    /// websocket-client read it: `HTTPS_PROXY` for `wss://` targets,
    /// `HTTP_PROXY` for `ws://`, `ALL_PROXY` for either when that one is
    /// unset, and `NO_PROXY` (comma-separated host names, which match
    /// their subdomains too, addresses, CIDR networks, or `*`) for the
    /// hosts reached directly; each in lower or upper case, the lower
    /// winning. A loopback target goes through the proxy too unless
    /// `NO_PROXY` names it, as in curl.
    pub fn no_proxy(mut self) -> Self {
        self.proxy = crate::proxy::Setting::Off;
        self
    }

    /// Checks the settings and returns the client.
    ///
    /// # Errors
    ///
    /// [`BuildError::Config`] when the connection settings cannot work
    /// (both heartbeat values set and the interval not greater than the
    /// timeout);
    /// [`BuildError::InvalidCookie`] for a cookie that cannot be sent;
    /// [`BuildError::InvalidProxy`] for a [`proxy`](Self::proxy) URL that
    /// cannot work. The environment's proxy variables are read here.
    pub fn build(self) -> Result<Client, BuildError> {
        self.config.check()?;
        let proxies = crate::proxy::Proxies::new(&self.proxy, |name| std::env::var(name).ok())?;
        let cookie = if self.cookies.is_empty() {
            None
        } else {
            for (name, value) in &self.cookies {
                // RFC 6265 section 4.1.1: a cookie-name is a token; a
                // cookie-value has no controls, whitespace, DQUOTE, comma,
                // semicolon or backslash.
                let bad_name = name.is_empty()
                    || HeaderName::from_bytes(name.as_bytes()).is_err()
                    || name.contains('=');
                let bad_value = value
                    .bytes()
                    .any(|b| b <= b' ' || b >= 0x7f || b"\",;\\".contains(&b));
                if bad_name || bad_value {
                    return Err(BuildError::InvalidCookie(format!("{name}={value}")));
                }
            }
            let joined = self
                .cookies
                .iter()
                .map(|(name, value)| format!("{name}={value}"))
                .collect::<Vec<_>>()
                .join("; ");
            Some(HeaderValue::from_str(&joined).map_err(|_| BuildError::InvalidCookie(joined))?)
        };
        #[cfg(feature = "tls")]
        let tls = tokio_rustls::TlsConnector::from(self.tls.build()?);
        Ok(Client {
            inner: Arc::new(ClientState {
                builder: self,
                cookie,
                proxies,
                #[cfg(feature = "tls")]
                tls,
            }),
        })
    }

    /// Builds the client and connects to `url`: the shortcut for
    /// `builder.build()?.connect(url)`.
    ///
    /// # Errors
    ///
    /// As [`build`](Self::build) and [`Client::connect`].
    pub async fn connect(
        self,
        url: impl AsRef<str>,
    ) -> Result<(WebSocket, HandshakeResponse), ConnectError> {
        self.build()?.connect(url).await
    }
}

/// A WebSocket client with checked settings. Cheap to clone; each
/// [`connect`](Self::connect) opens a new connection.
#[derive(Clone, Debug)]
pub struct Client {
    inner: Arc<ClientState>,
}

struct ClientState {
    builder: ClientBuilder,
    cookie: Option<HeaderValue>,
    proxies: crate::proxy::Proxies,
    #[cfg(feature = "tls")]
    tls: tokio_rustls::TlsConnector,
}

impl std::fmt::Debug for ClientState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientState")
            .field("builder", &self.builder)
            .finish_non_exhaustive()
    }
}

/// Where to connect, from a `ws://` URL.
struct Target {
    /// `wss://`.
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    secure: bool,
    host: Host<String>,
    port: u16,
    /// The `Host` header: the host, and the port if not the default.
    authority: String,
    /// The request target: path and query.
    resource: String,
}

impl Target {
    fn parse(url: &str) -> Result<Self, ConnectError> {
        let url = Url::parse(url)?;
        let secure = match url.scheme() {
            "ws" => false,
            #[cfg(feature = "tls")]
            "wss" => true,
            other => return Err(ConnectError::UnsupportedScheme(other.to_owned())),
        };
        let host = url.host().ok_or(ConnectError::MissingHost)?.to_owned();
        if matches!(&host, Host::Domain(name) if name.is_empty()) {
            return Err(ConnectError::MissingHost);
        }
        let port = url
            .port_or_known_default()
            .unwrap_or(if secure { 443 } else { 80 });
        let host_str = url.host_str().unwrap_or_default();
        let authority = match url.port() {
            Some(port) => format!("{host_str}:{port}"),
            None => host_str.to_owned(),
        };
        // RFC 6455 section 3: the resource name is the path ("/" if empty)
        // and the query; a fragment is never sent.
        let mut resource = url.path().to_owned();
        if resource.is_empty() {
            resource.push('/');
        }
        if let Some(query) = url.query() {
            resource.push('?');
            resource.push_str(query);
        }
        Ok(Self {
            secure,
            host,
            port,
            authority,
            resource,
        })
    }
}

/// A stream to the target, before TLS to it and the upgrade.
enum Reached {
    /// Straight to it, or through a tunnel in a plain connection to a proxy.
    Tcp(TcpStream),
    /// Through a tunnel inside TLS to an `https://` proxy.
    #[cfg(feature = "tls")]
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl Client {
    /// A builder with the documented defaults.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// Connects to `url` (`ws://host[:port]/path[?query]`; IPv6 literals in
    /// brackets) and completes the opening handshake.
    ///
    /// Returns the open [`WebSocket`], whose driver runs on a spawned task
    /// (so this needs a Tokio runtime), and the server's 101 response.
    ///
    /// # Errors
    ///
    /// One [`ConnectError`] variant per cause: a bad URL, scheme or host, a
    /// name that does not resolve, refused connections, the connect or
    /// handshake timeout, a non-101 answer (with status, headers and body),
    /// a response that fails RFC 6455's checks.
    pub async fn connect(
        &self,
        url: impl AsRef<str>,
    ) -> Result<(WebSocket, HandshakeResponse), ConnectError> {
        let url = url.as_ref();
        let builder = &self.inner.builder;
        let target = Target::parse(url)?;
        let proxy = self.inner.proxies.select(target.secure, &target.host);
        let span = match proxy {
            Some(proxy) => tracing::debug_span!("ws_client", %url, %proxy),
            None => tracing::debug_span!("ws_client", %url),
        };

        // Reaching the target (through the proxy, if any) is connecting;
        // TLS to the target and the upgrade are the handshake.
        let stream = timeout(builder.connect_timeout, self.reach(&target, proxy))
            .instrument(span.clone())
            .await
            .map_err(|_| ConnectError::ConnectTimeout(builder.connect_timeout))??;
        match stream {
            Reached::Tcp(stream) => {
                let peer = stream.peer_addr().ok();
                self.secure(stream, &target, peer, span).await
            }
            #[cfg(feature = "tls")]
            Reached::Tls(stream) => {
                let peer = stream.get_ref().0.peer_addr().ok();
                self.secure(stream, &target, peer, span).await
            }
        }
    }

    /// A stream to the target: a TCP connection to it, or a tunnel to it
    /// through `proxy`.
    async fn reach(&self, target: &Target, proxy: Option<&Proxy>) -> Result<Reached, ConnectError> {
        let Some(proxy) = proxy else {
            let addrs = resolve(&target.host, target.port).await?;
            return Ok(Reached::Tcp(connect_any(&addrs).await?));
        };
        let unreachable = |error: ConnectError| match error {
            ConnectError::Io(source) => ConnectError::ProxyUnreachable {
                proxy: proxy.to_string(),
                source,
            },
            ConnectError::Refused { addr } => ConnectError::ProxyUnreachable {
                proxy: proxy.to_string(),
                source: std::io::Error::new(
                    std::io::ErrorKind::ConnectionRefused,
                    format!("connection refused by {addr}"),
                ),
            },
            ConnectError::Resolve { host, source } => ConnectError::ProxyUnreachable {
                proxy: proxy.to_string(),
                source: std::io::Error::new(
                    source.kind(),
                    format!("cannot resolve {host}: {source}"),
                ),
            },
            other => other,
        };
        let addrs = resolve(&proxy.host, proxy.port)
            .await
            .map_err(unreachable)?;
        let mut stream = connect_any(&addrs).await.map_err(unreachable)?;
        let _ = stream.set_nodelay(true);
        tracing::debug!(%proxy, "connected to the proxy");
        #[cfg(feature = "tls")]
        if proxy.kind == crate::proxy::Kind::Https {
            let name = crate::tls::server_name(&proxy.host)?;
            let mut stream = self
                .inner
                .tls
                .connect(name, stream)
                .await
                .map_err(|error| ConnectError::ProxyProtocol {
                    proxy: proxy.to_string(),
                    detail: format!("TLS to the proxy failed: {error}"),
                })?;
            proxy.tunnel(&mut stream, &target.host, target.port).await?;
            return Ok(Reached::Tls(Box::new(stream)));
        }
        proxy.tunnel(&mut stream, &target.host, target.port).await?;
        tracing::debug!(%proxy, "tunnel open");
        Ok(Reached::Tcp(stream))
    }

    /// TLS to the target for `wss://`, then the upgrade.
    async fn secure<S: Transport>(
        &self,
        stream: S,
        target: &Target,
        peer: Option<SocketAddr>,
        span: tracing::Span,
    ) -> Result<(WebSocket, HandshakeResponse), ConnectError> {
        let builder = &self.inner.builder;
        // One deadline for the TLS handshake (if any) and the upgrade.
        // A timeout too long for the clock (`Duration::MAX`) means no deadline
        // (issue 25, item 7: it used to overflow and panic).
        let deadline = ws_tokio::deadline_after(builder.handshake_timeout);

        #[cfg(feature = "tls")]
        if target.secure {
            let name = crate::tls::server_name(&target.host)?;
            let stream = timeout_at(deadline, self.inner.tls.connect(name, stream))
                .instrument(span.clone())
                .await
                .map_err(|_| ConnectError::HandshakeTimeout(builder.handshake_timeout))?
                .map_err(ConnectError::Tls)?;
            return self.upgrade(stream, target, peer, deadline, span).await;
        }
        self.upgrade(stream, target, peer, deadline, span).await
    }

    async fn upgrade<S: Transport>(
        &self,
        mut stream: S,
        target: &Target,
        peer: Option<SocketAddr>,
        deadline: Instant,
        span: tracing::Span,
    ) -> Result<(WebSocket, HandshakeResponse), ConnectError> {
        let builder = &self.inner.builder;
        let (request, response, leftover) =
            timeout_at(deadline, self.handshake(&mut stream, target))
                .instrument(span.clone())
                .await
                .map_err(|_| ConnectError::HandshakeTimeout(builder.handshake_timeout))??;

        let mut conn = Connection::builder(Role::Client)
            .config(builder.config.clone())
            .deflate(response.deflate);
        if let Some(factory) = &builder.mask_keys {
            let mut source = factory();
            conn = conn.mask_keys(move || source.next_key());
        }
        let mut conn = conn.build();
        conn.handle_bytes(&leftover);

        let mut head = Response::new(());
        *head.status_mut() = response.status;
        *head.headers_mut() = response.headers.clone();
        let mut handshake = Handshake::new(request)
            .with_response(head)
            .with_protocol(response.protocol.clone());
        if let Some(peer) = peer {
            handshake = handshake.with_peer(peer);
        }
        let (ws, driver) = ws_tokio::start(
            stream,
            conn,
            handshake,
            &Arc::new(builder.settings.clone()),
            std::future::pending(),
        );
        tokio::spawn(driver.instrument(span));
        Ok((ws, response))
    }

    async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        stream: &mut S,
        target: &Target,
    ) -> Result<(Request<()>, HandshakeResponse, BytesMut), ConnectError> {
        let builder = &self.inner.builder;
        let mut request = ClientRequest::new(&target.authority, &target.resource);
        let mut sent = Request::new(());
        *sent.method_mut() = Method::GET;
        *sent.uri_mut() = target.resource.parse().unwrap_or_default();
        let headers = sent.headers_mut();
        if let Ok(host) = HeaderValue::from_str(&target.authority) {
            headers.insert(header::HOST, host);
        }
        if let Some(origin) = &builder.origin {
            request = request.origin(origin);
            if let Ok(value) = HeaderValue::from_str(origin) {
                headers.insert(header::ORIGIN, value);
            }
        }
        for protocol in &builder.protocols {
            request = request.protocol(protocol);
            if let Ok(value) = HeaderValue::from_str(protocol) {
                headers.append(header::SEC_WEBSOCKET_PROTOCOL, value);
            }
        }
        for (name, value) in &builder.headers {
            request = request.header(name.clone(), value.clone());
            headers.append(name.clone(), value.clone());
        }
        if let Some(cookie) = &self.inner.cookie {
            request = request.header(header::COOKIE, cookie.clone());
            headers.insert(header::COOKIE, cookie.clone());
        }
        if let Some(deflate) = &builder.config.compression {
            if let Ok(value) = HeaderValue::from_str(&deflate.offer()) {
                headers.insert(header::SEC_WEBSOCKET_EXTENSIONS, value);
            }
            request = request.deflate(deflate.clone());
        }

        let mut out = BytesMut::new();
        let mut check = request
            .write(&mut out)
            .map_err(|error| ConnectError::Build(BuildError::InvalidHeader(error)))?;
        tracing::debug!(
            host = %target.authority,
            resource = %target.resource,
            "sending upgrade request"
        );
        stream.write_all(&out).await?;

        let mut buf = BytesMut::with_capacity(1024);
        loop {
            if stream.read_buf(&mut buf).await? == 0 {
                // A rejection without Content-Length ends at end of stream.
                return match check.parse_response(&buf) {
                    Err(error) => Err(error.into()),
                    Ok(_) => Err(ConnectError::ClosedDuringHandshake),
                };
            }
            match check.parse_response(&buf) {
                Ok(Decoded::NeedMore(_)) => {}
                Ok(Decoded::Done { value, consumed }) => {
                    tracing::debug!(
                        status = %value.status,
                        protocol = ?value.protocol,
                        deflate = ?value.deflate,
                        "handshake response"
                    );
                    let leftover = buf.split_off(consumed);
                    return Ok((sent, value, leftover));
                }
                Err(error) => {
                    tracing::debug!(%error, "handshake refused");
                    return Err(error.into());
                }
            }
        }
    }
}

/// Connects to `url` with the default settings: the shortcut for
/// `Client::builder().connect(url)`.
///
/// The default heartbeat pings every 20 s and fails the connection when a
/// pong takes more than 10 s.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let (mut ws, _response) = ws_client::connect("ws://127.0.0.1:9001/").await?;
/// ws.send_text("Hello, Server").await?;
/// if let Some(reply) = ws.recv().await {
///     println!("{:?}", reply?);
/// }
/// ws.close(ws_client::CloseCode::NORMAL, "").await?;
/// # Ok(())
/// # }
/// ```
///
/// # Errors
///
/// As [`Client::connect`].
pub async fn connect(url: impl AsRef<str>) -> Result<(WebSocket, HandshakeResponse), ConnectError> {
    Client::builder().connect(url).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_give_host_header_and_resource() {
        let target = Target::parse("ws://example.com/chat?room=1#frag").unwrap();
        assert_eq!(target.authority, "example.com");
        assert_eq!(target.port, 80);
        assert_eq!(target.resource, "/chat?room=1");
        let target = Target::parse("ws://[::1]:9001").unwrap();
        assert_eq!(target.authority, "[::1]:9001");
        assert_eq!(target.resource, "/");
        assert!(matches!(target.host, Host::Ipv6(_)));
        let target = Target::parse("ws://127.0.0.1:80/").unwrap();
        assert_eq!(
            target.authority, "127.0.0.1",
            "the default port is left out"
        );
        assert!(matches!(
            Target::parse("http://example.com/"),
            Err(ConnectError::UnsupportedScheme(s)) if s == "http"
        ));
        #[cfg(feature = "tls")]
        {
            let target = Target::parse("wss://example.com/feed").unwrap();
            assert!(target.secure);
            assert_eq!(target.port, 443);
            assert_eq!(target.authority, "example.com");
        }
    }
}

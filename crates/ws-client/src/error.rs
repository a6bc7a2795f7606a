//! Why a client could not be built or could not connect.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use http::StatusCode;
use ws_proto::{RejectedResponse, ResponseError};

/// A client setting that cannot work; returned by
/// [`ClientBuilder::build`](crate::ClientBuilder::build).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The connection settings cannot work, for example a heartbeat
    /// without `ping_interval > ping_timeout` (the core's own check, the
    /// same as the server's).
    #[error(transparent)]
    Config(#[from] ws_proto::ConfigError),
    /// A cookie name or value that cannot go in a `Cookie` header.
    #[error("invalid cookie {0:?}")]
    InvalidCookie(String),
    /// An origin, subprotocol or URL part that its header cannot carry
    /// (a CR or LF would split the request).
    #[error(transparent)]
    InvalidHeader(#[from] ws_proto::HeaderError),
    /// The TLS settings cannot work: an unreadable or malformed CA file, no
    /// platform roots, an invalid server name.
    #[error("TLS: {0}")]
    Tls(String),
    /// A proxy URL that cannot work: not a URL, no host, or a scheme other
    /// than `http`, `https`, `socks5` and `socks5h`.
    #[error("invalid proxy {0}")]
    InvalidProxy(String),
}

/// Why [`connect`](crate::connect) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The settings were invalid (see [`BuildError`]).
    #[error(transparent)]
    Build(#[from] BuildError),
    /// The URL did not parse.
    #[error("invalid URL: {0}")]
    InvalidUrl(#[from] url::ParseError),
    /// The URL's scheme is not `ws` or `wss` (`wss` needs the `tls`
    /// feature).
    #[error("unsupported URL scheme {0:?}: expected ws:// or wss://")]
    UnsupportedScheme(String),
    /// The URL has no host.
    #[error("URL has no host")]
    MissingHost,
    /// The host name did not resolve to any address.
    #[error("cannot resolve {host}: {source}")]
    Resolve {
        /// The host name.
        host: String,
        /// The resolver's error.
        #[source]
        source: io::Error,
    },
    /// Every address of the host refused the connection.
    #[error("connection refused by {addr}")]
    Refused {
        /// The last address tried.
        addr: SocketAddr,
    },
    /// Connecting (resolving the name and trying each address) took longer
    /// than the connect timeout.
    #[error("connect timed out after {0:?}")]
    ConnectTimeout(Duration),
    /// The TLS handshake failed: a certificate that is not trusted or not
    /// for this host name (the inner error is then a `rustls::Error`), or
    /// a server that does not speak TLS.
    #[error("TLS handshake failed: {0}")]
    Tls(#[source] io::Error),
    /// The server did not complete the opening handshake (TLS included)
    /// within the handshake timeout.
    #[error("opening handshake timed out after {0:?}")]
    HandshakeTimeout(Duration),
    /// The server answered with another status than 101: its status,
    /// headers and body are here, so a caller sees why (401, 403, 503...).
    #[error("server rejected the upgrade with {}", .0.status)]
    Rejected(Box<RejectedResponse>),
    /// The server's 101 response failed a check of RFC 6455 section 4.2.2,
    /// such as [`ResponseError::AcceptMismatch`] for a wrong
    /// `Sec-WebSocket-Accept`.
    #[error("invalid handshake response: {0}")]
    InvalidResponse(ResponseError),
    /// The server closed the connection before its response was complete.
    #[error("server closed the connection during the opening handshake")]
    ClosedDuringHandshake,
    /// Another I/O error: connecting, writing the request, reading the
    /// response.
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
    /// The proxy could not be reached (its name did not resolve, it
    /// refused the connection) or dropped it while the tunnel was being
    /// set up. Retryable.
    #[error("cannot reach proxy {proxy}: {source}")]
    ProxyUnreachable {
        /// The proxy, without credentials.
        proxy: String,
        /// What failed.
        #[source]
        source: io::Error,
    },
    /// The proxy wants credentials, or refused the ones given: HTTP 407
    /// Proxy Authentication Required (or the 401 some proxies answer a
    /// `CONNECT` with), or a SOCKS5 authentication failure.
    /// Not retried: put `user:password@` in the proxy URL.
    #[error("proxy {proxy} wants other credentials: put user:password@ in the proxy URL")]
    ProxyAuth {
        /// The proxy, without credentials.
        proxy: String,
    },
    /// The HTTP proxy refused to open the tunnel (a `CONNECT` answered
    /// with another status than 2xx; 403 for a port it does not allow, 502
    /// for a target it cannot reach).
    #[error("proxy {proxy} refused the tunnel: {status} {reason}")]
    ProxyRefused {
        /// The proxy, without credentials.
        proxy: String,
        /// Its status code.
        status: u16,
        /// Its reason phrase.
        reason: String,
    },
    /// The SOCKS5 proxy refused to open the tunnel, with one of RFC 1928's
    /// reply codes.
    #[error("SOCKS5 proxy {proxy}: {reply}")]
    Socks {
        /// The proxy, without credentials.
        proxy: String,
        /// Its reply.
        reply: crate::SocksReply,
    },
    /// The proxy broke its protocol: a malformed or oversized answer, or
    /// data where none belongs.
    #[error("proxy {proxy}: {detail}")]
    ProxyProtocol {
        /// The proxy, without credentials.
        proxy: String,
        /// What was wrong.
        detail: String,
    },
}

impl From<ResponseError> for ConnectError {
    fn from(error: ResponseError) -> Self {
        match error {
            ResponseError::NotSwitchingProtocols(rejected) => Self::Rejected(rejected),
            other => Self::InvalidResponse(other),
        }
    }
}

impl ConnectError {
    /// The HTTP status of a rejected upgrade.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Self::Rejected(rejected) => Some(rejected.status),
            _ => None,
        }
    }

    /// Whether trying again later may succeed: network failures, timeouts
    /// and 5xx answers. A 4xx answer (authentication, a wrong path), an
    /// invalid URL or an invalid setting will fail the same way again.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Resolve { .. }
            | Self::Refused { .. }
            | Self::ConnectTimeout(_)
            | Self::HandshakeTimeout(_)
            | Self::ClosedDuringHandshake
            | Self::Io(_)
            | Self::ProxyUnreachable { .. } => true,
            Self::Rejected(rejected) => rejected.status.is_server_error(),
            Self::ProxyRefused { status, .. } => (500..600).contains(status),
            Self::Socks { reply, .. } => reply.is_retryable(),
            // A certificate problem (rustls reports those as invalid data)
            // stays; a connection cut mid-handshake may not.
            Self::Tls(error) => error.kind() != io::ErrorKind::InvalidData,
            Self::Build(_)
            | Self::InvalidUrl(_)
            | Self::UnsupportedScheme(_)
            | Self::MissingHost
            | Self::InvalidResponse(_)
            | Self::ProxyAuth { .. }
            | Self::ProxyProtocol { .. } => false,
        }
    }
}

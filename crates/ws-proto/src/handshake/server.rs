//! The server side of the opening handshake (RFC 6455 section 4.2).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode, Version, header};

use super::{
    HeaderError, accept_key, check_token, find_head_end, has_token, list_values, to_header_map,
    write_headers,
};
use crate::frame::Decoded;

/// Caps on an incoming upgrade request. `docs/limits.md` explains them.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RequestLimits {
    /// The longest request line (method, target, version). Default: 8 KiB.
    /// A longer one is answered with 414.
    pub max_request_line: usize,
    /// The most bytes of header fields after the request line. Default:
    /// 16 KiB. More is answered with 431.
    pub max_headers_size: usize,
    /// The most header fields. Default: 100. More is answered with 431.
    pub max_headers: usize,
}

impl Default for RequestLimits {
    fn default() -> Self {
        Self {
            max_request_line: 8 * 1024,
            max_headers_size: 16 * 1024,
            max_headers: 100,
        }
    }
}

/// An upgrade request the server cannot accept, with the HTTP status it is
/// answered with ([`status`](Self::status), [`rejection`](Self::rejection)).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// The request line is longer than the limit (414).
    #[error("request line exceeds {limit} bytes")]
    RequestLineTooLong {
        /// The configured limit.
        limit: usize,
    },
    /// The header fields take more bytes than the limit (431).
    #[error("request header fields exceed {limit} bytes")]
    HeadersTooLarge {
        /// The configured limit.
        limit: usize,
    },
    /// More header fields than the limit (431).
    #[error("more than {limit} request header fields")]
    TooManyHeaders {
        /// The configured limit.
        limit: usize,
    },
    /// Not a well-formed HTTP/1.x request (400).
    #[error("malformed HTTP request: {0}")]
    Malformed(httparse::Error),
    /// The method is not GET (405). RFC 6455 section 4.1: "The method of the
    /// request MUST be GET".
    #[error("method {0} is not GET")]
    MethodNotGet(Method),
    /// The HTTP version is below 1.1 (505). Section 4.1: "the HTTP version
    /// MUST be at least 1.1."
    #[error("HTTP version {0:?} is below HTTP/1.1")]
    HttpVersion(Version),
    /// No `Upgrade: websocket`: a plain HTTP request (426).
    #[error("not a WebSocket upgrade request")]
    NotUpgrade,
    /// `Connection` does not list `Upgrade` (400).
    #[error("the Connection header does not contain Upgrade")]
    MissingConnectionUpgrade,
    /// No `Host` header (400).
    #[error("missing Host header")]
    MissingHost,
    /// No `Sec-WebSocket-Key` header (400).
    #[error("missing Sec-WebSocket-Key header")]
    MissingKey,
    /// A `Sec-WebSocket-Key` that is not base64 of 16 bytes (400).
    #[error("Sec-WebSocket-Key is not base64 of 16 bytes")]
    InvalidKey,
    /// A `Sec-WebSocket-Version` other than 13, or none (426, with
    /// `Sec-WebSocket-Version: 13`).
    #[error("unsupported WebSocket version {0:?}")]
    UnsupportedVersion(Option<String>),
    /// A header that must appear once appears several times (400): `Host`,
    /// `Sec-WebSocket-Key` or `Sec-WebSocket-Version`. Which one counts
    /// would be a guess, and two parties guessing differently (a proxy and
    /// this server) is how requests are smuggled.
    #[error("more than one {0} header")]
    DuplicateHeader(&'static str),
    /// The bytes of a TLS handshake on a plain port (400): the client
    /// meant `wss://` (or `https://`) and this port serves `ws://`.
    #[error("a TLS handshake on a plain-text port: use ws://, or wss:// on a TLS port")]
    TlsOnPlainPort,
}

impl RequestError {
    /// The HTTP status this error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::RequestLineTooLong { .. } => StatusCode::URI_TOO_LONG,
            Self::HeadersTooLarge { .. } | Self::TooManyHeaders { .. } => {
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
            }
            Self::MethodNotGet(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::HttpVersion(_) => StatusCode::HTTP_VERSION_NOT_SUPPORTED,
            Self::NotUpgrade | Self::UnsupportedVersion(_) => StatusCode::UPGRADE_REQUIRED,
            Self::Malformed(_)
            | Self::DuplicateHeader(_)
            | Self::TlsOnPlainPort
            | Self::MissingConnectionUpgrade
            | Self::MissingHost
            | Self::MissingKey
            | Self::InvalidKey => StatusCode::BAD_REQUEST,
        }
    }

    /// The response that answers this error: its status, the headers that
    /// tell the client how to do better, and the error as a text body.
    pub fn rejection(&self) -> Rejection {
        let mut rejection = Rejection::new(self.status()).body(format!("{self}\n"));
        let headers = &mut rejection.headers;
        match self {
            // RFC 6455 section 4.2.2: the server sends "a
            // |Sec-WebSocket-Version| header field indicating the version(s)
            // the server is capable of understanding."
            Self::UnsupportedVersion(_) => {
                headers.insert("sec-websocket-version", HeaderValue::from_static("13"));
            }
            // RFC 9110 section 15.5.22: a 426 response "MUST send an Upgrade
            // header field to indicate the required protocol(s)".
            Self::NotUpgrade => {
                headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
            }
            Self::MethodNotGet(_) => {
                headers.insert(header::ALLOW, HeaderValue::from_static("GET"));
            }
            _ => {}
        }
        rejection
    }
}

/// Parses an upgrade request that arrives in pieces, within
/// [`RequestLimits`].
///
/// Each call is given every byte received so far; only the bytes not seen
/// before are scanned, and the request is parsed once, when its blank line
/// has arrived. A request trickled in byte by byte therefore costs linear
/// time (re-parsing from the start on every read made another library's
/// handshake quadratic).
#[derive(Debug, Clone, Default)]
pub struct RequestParser {
    limits: RequestLimits,
    scanned: usize,
    line_end: Option<usize>,
}

impl RequestParser {
    /// A parser enforcing `limits`.
    pub fn new(limits: RequestLimits) -> Self {
        Self {
            limits,
            scanned: 0,
            line_end: None,
        }
    }

    /// Parses the request head from the start of `buf`, which holds every
    /// byte received so far.
    ///
    /// Returns [`Decoded::NeedMore`] until the blank line ending the head
    /// has arrived, then the request and the length of its head; bytes after
    /// it (a client may pipeline its first frames) belong to the connection.
    ///
    /// # Errors
    ///
    /// A [`RequestError`] for a head over the limits or not well-formed
    /// HTTP. It does not check the WebSocket headers: that is
    /// [`validate_request`].
    pub fn parse(&mut self, buf: &[u8]) -> Result<Decoded<Request<()>>, RequestError> {
        let limits = &self.limits;
        // A TLS record starts with its content type, 22 for a handshake,
        // then the protocol's major version, 3: no HTTP method starts
        // with byte 22, so this is a client speaking TLS to a plain port,
        // answered now rather than when its bytes reach a limit.
        if buf.first() == Some(&0x16) && buf.get(1).is_none_or(|&b| b == 0x03) {
            return Err(RequestError::TlsOnPlainPort);
        }
        if self.line_end.is_none() {
            // RFC 9112 section 2.2: "a recipient MAY recognize a single LF
            // as a line terminator and ignore any preceding CR."
            self.line_end = buf[self.scanned..]
                .iter()
                .position(|&b| b == b'\n')
                .map(|i| {
                    let lf = self.scanned + i;
                    if lf > 0 && buf[lf - 1] == b'\r' {
                        lf - 1
                    } else {
                        lf
                    }
                });
        }
        let line_len = self.line_end.unwrap_or(buf.len());
        if line_len > limits.max_request_line {
            return Err(RequestError::RequestLineTooLong {
                limit: limits.max_request_line,
            });
        }
        let end = find_head_end(buf, self.scanned);
        self.scanned = buf.len();
        let headers_len = end.unwrap_or(buf.len()).saturating_sub(line_len + 2);
        if self.line_end.is_some() && headers_len > limits.max_headers_size {
            return Err(RequestError::HeadersTooLarge {
                limit: limits.max_headers_size,
            });
        }
        let Some(end) = end else {
            return Ok(Decoded::NeedMore(1));
        };

        let mut parsed = vec![httparse::EMPTY_HEADER; limits.max_headers];
        let mut request = httparse::Request::new(&mut parsed);
        match request.parse(&buf[..end]) {
            Ok(httparse::Status::Complete(_)) => {}
            Ok(httparse::Status::Partial) => {
                return Err(RequestError::Malformed(httparse::Error::Token));
            }
            Err(httparse::Error::TooManyHeaders) => {
                return Err(RequestError::TooManyHeaders {
                    limit: limits.max_headers,
                });
            }
            Err(error) => return Err(RequestError::Malformed(error)),
        }
        let malformed = |_| RequestError::Malformed(httparse::Error::Token);
        let method =
            Method::from_bytes(request.method.unwrap_or_default().as_bytes()).map_err(malformed)?;
        let uri = http::Uri::try_from(request.path.unwrap_or_default())
            .map_err(|_| RequestError::Malformed(httparse::Error::Token))?;
        let version = match request.version {
            Some(0) => Version::HTTP_10,
            _ => Version::HTTP_11,
        };
        let headers = to_header_map(request.headers).map_err(RequestError::Malformed)?;
        let mut value = Request::new(());
        *value.method_mut() = method;
        *value.uri_mut() = uri;
        *value.version_mut() = version;
        *value.headers_mut() = headers;
        Ok(Decoded::Done {
            value,
            consumed: end,
        })
    }
}

/// What a valid upgrade request asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpgradeRequest {
    accept: String,
    protocols: Vec<String>,
}

impl UpgradeRequest {
    /// The `Sec-WebSocket-Accept` value that answers the client's key.
    pub fn accept_key(&self) -> &str {
        &self.accept
    }

    /// The subprotocols the client offered, in its order of preference.
    pub fn protocols(&self) -> &[String] {
        &self.protocols
    }
}

/// Checks that a parsed request is a WebSocket upgrade the server can accept
/// (RFC 6455 section 4.2.1).
///
/// # Errors
///
/// The first [`RequestError`] found, checked in this order: method, HTTP
/// version, `Upgrade`, `Connection`, `Host`, `Sec-WebSocket-Version`,
/// `Sec-WebSocket-Key`. A plain HTTP request (no `Upgrade`) is therefore
/// [`RequestError::NotUpgrade`], answered with 426.
pub fn validate_request(request: &Request<()>) -> Result<UpgradeRequest, RequestError> {
    let headers = request.headers();
    // Section 4.2.1, item 1: "An HTTP/1.1 or higher GET request".
    if request.method() != Method::GET {
        return Err(RequestError::MethodNotGet(request.method().clone()));
    }
    if request.version() < Version::HTTP_11 {
        return Err(RequestError::HttpVersion(request.version()));
    }
    // Item 3: "An |Upgrade| header field containing the value "websocket",
    // treated as an ASCII case-insensitive value."
    if !has_token(headers, "upgrade", "websocket") {
        return Err(RequestError::NotUpgrade);
    }
    // Item 4: "A |Connection| header field that includes the token
    // "Upgrade", treated as an ASCII case-insensitive value."
    if !has_token(headers, "connection", "upgrade") {
        return Err(RequestError::MissingConnectionUpgrade);
    }
    // Item 2: "A |Host| header field containing the server's authority."
    // RFC 9112 section 3.2: "A server MUST respond with a 400 (Bad Request)
    // status code to any HTTP/1.1 request message that lacks a Host header
    // field and to any such message that contains more than one Host
    // header field line".
    if !headers.contains_key(header::HOST) {
        return Err(RequestError::MissingHost);
    }
    // The key and the version have one value each: two are ambiguous (a
    // proxy in front may have checked the other one).
    for (name, shown) in [
        (header::HOST, "Host"),
        (header::SEC_WEBSOCKET_KEY, "Sec-WebSocket-Key"),
        (header::SEC_WEBSOCKET_VERSION, "Sec-WebSocket-Version"),
    ] {
        if headers.get_all(name).iter().nth(1).is_some() {
            return Err(RequestError::DuplicateHeader(shown));
        }
    }
    // Item 6: "A |Sec-WebSocket-Version| header field, with a value of 13."
    let version = headers.get("sec-websocket-version");
    if version.map(HeaderValue::as_bytes) != Some(b"13") {
        let version = version.map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        return Err(RequestError::UnsupportedVersion(version));
    }
    // Item 5: "A |Sec-WebSocket-Key| header field with a base64-encoded
    // value that, when decoded, is 16 bytes in length."
    let key = headers
        .get("sec-websocket-key")
        .ok_or(RequestError::MissingKey)?
        .as_bytes();
    match STANDARD.decode(key) {
        Ok(nonce) if nonce.len() == 16 => {}
        _ => return Err(RequestError::InvalidKey),
    }
    Ok(UpgradeRequest {
        accept: accept_key(key),
        protocols: list_values(headers, "sec-websocket-protocol")
            .map(str::to_owned)
            .collect(),
    })
}

/// Writes the `101 Switching Protocols` response that completes the
/// handshake (RFC 6455 section 4.2.2), with the chosen subprotocol (which
/// should be one that [`UpgradeRequest::protocols`] offered) and any extra
/// headers.
///
/// # Errors
///
/// [`HeaderError::Token`] if `protocol` is not a token (a CR or LF in it
/// would split the response); nothing is written then.
pub fn write_accept(
    request: &UpgradeRequest,
    protocol: Option<&str>,
    extra_headers: &HeaderMap,
    out: &mut BytesMut,
) -> Result<(), HeaderError> {
    if let Some(protocol) = protocol {
        check_token("Sec-WebSocket-Protocol", protocol)?;
    }
    out.extend_from_slice(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ",
    );
    out.extend_from_slice(request.accept.as_bytes());
    out.extend_from_slice(b"\r\n");
    if let Some(protocol) = protocol {
        out.extend_from_slice(b"Sec-WebSocket-Protocol: ");
        out.extend_from_slice(protocol.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    write_headers(extra_headers, out);
    out.extend_from_slice(b"\r\n");
    Ok(())
}

/// An HTTP response that refuses the upgrade: a status, headers and a body.
/// The connection is closed after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The status, such as 400, 401, 403 or 426.
    pub status: StatusCode,
    /// Extra headers; `Content-Length` and `Connection: close` are added.
    pub headers: HeaderMap,
    /// The body.
    pub body: Bytes,
}

impl Rejection {
    /// A rejection with this status, no headers and an empty body.
    pub fn new(status: StatusCode) -> Self {
        Self {
            status,
            headers: HeaderMap::new(),
            body: Bytes::new(),
        }
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }

    /// Adds a header.
    pub fn header(mut self, name: http::HeaderName, value: HeaderValue) -> Self {
        self.headers.append(name, value);
        self
    }

    /// Writes the response.
    pub fn write(&self, out: &mut BytesMut) {
        let reason = self.status.canonical_reason().unwrap_or("");
        out.extend_from_slice(format!("HTTP/1.1 {} {reason}\r\n", self.status.as_u16()).as_bytes());
        write_headers(&self.headers, out);
        if !self.headers.contains_key(header::CONTENT_TYPE) && !self.body.is_empty() {
            out.extend_from_slice(b"Content-Type: text/plain; charset=utf-8\r\n");
        }
        out.extend_from_slice(
            format!(
                "Content-Length: {}\r\nConnection: close\r\n\r\n",
                self.body.len()
            )
            .as_bytes(),
        );
        out.extend_from_slice(&self.body);
    }
}

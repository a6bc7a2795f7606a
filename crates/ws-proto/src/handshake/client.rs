//! The client side of the opening handshake (RFC 6455 sections 4.1 and 4.2.2).

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

use super::{
    HeaderError, accept_key, check_target, check_token, check_value, find_head_end, generate_key,
    has_token, list_values, to_header_map, write_headers,
};
use crate::deflate::{DeflateParams, DeflateResponseError, PerMessageDeflate};
use crate::frame::Decoded;

/// The most header fields accepted in a server's response.
const MAX_RESPONSE_HEADERS: usize = 100;
/// The most bytes of response head accepted.
const MAX_RESPONSE_HEAD: usize = 24 * 1024;
/// The most bytes of a rejection's body kept for the caller.
const MAX_REJECTION_BODY: usize = 64 * 1024;

/// The opening request a client sends (RFC 6455 section 4.1).
#[derive(Debug, Clone)]
pub struct ClientRequest {
    host: String,
    target: String,
    key: String,
    origin: Option<String>,
    protocols: Vec<String>,
    extensions: Vec<String>,
    deflate: Option<PerMessageDeflate>,
    headers: HeaderMap,
}

impl ClientRequest {
    /// A request for `target` (path and query, such as `/chat?room=1`) on
    /// `host` (the `Host` header: a host name or address, with the port if
    /// it is not the scheme's default). The key is fresh from
    /// [`generate_key`].
    pub fn new(host: impl Into<String>, target: impl Into<String>) -> Self {
        Self {
            host: host.into(),
            target: target.into(),
            key: generate_key(),
            origin: None,
            protocols: Vec::new(),
            extensions: Vec::new(),
            deflate: None,
            headers: HeaderMap::new(),
        }
    }

    /// Sets the `Sec-WebSocket-Key`, for tests that need fixed bytes.
    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.key = key.into();
        self
    }

    /// Sets the `Origin` header.
    pub fn origin(mut self, origin: impl Into<String>) -> Self {
        self.origin = Some(origin.into());
        self
    }

    /// Offers a subprotocol; the first offered is the most preferred.
    pub fn protocol(mut self, protocol: impl Into<String>) -> Self {
        self.protocols.push(protocol.into());
        self
    }

    /// Requests an extension (a `Sec-WebSocket-Extensions` element).
    pub fn extension(mut self, extension: impl Into<String>) -> Self {
        self.extensions.push(extension.into());
        self
    }

    /// Offers permessage-deflate with these settings (RFC 7692); the
    /// response's answer is checked, and the settled parameters are in
    /// [`HandshakeResponse::deflate`].
    pub fn deflate(mut self, settings: PerMessageDeflate) -> Self {
        self.extensions.push(settings.offer());
        self.deflate = Some(settings);
        self
    }

    /// Adds a header, such as `Authorization` or `Cookie`.
    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.append(name, value);
        self
    }

    /// The `Sec-WebSocket-Key` this request carries.
    pub fn key_value(&self) -> &str {
        &self.key
    }

    /// Writes the request and returns the state that checks the response.
    ///
    /// # Errors
    ///
    /// A [`HeaderError`] if the host, target, origin, a subprotocol or an
    /// extension holds what its place in the request cannot carry (a CR or
    /// LF would split the request); nothing is written then.
    pub fn write(&self, out: &mut BytesMut) -> Result<ClientHandshake, HeaderError> {
        check_value("Host", &self.host)?;
        check_target(&self.target)?;
        if let Some(origin) = &self.origin {
            check_value("Origin", origin)?;
        }
        for protocol in &self.protocols {
            check_token("Sec-WebSocket-Protocol", protocol)?;
        }
        for extension in &self.extensions {
            check_value("Sec-WebSocket-Extensions", extension)?;
        }
        out.extend_from_slice(b"GET ");
        out.extend_from_slice(self.target.as_bytes());
        out.extend_from_slice(b" HTTP/1.1\r\n");
        let mut line = |name: &str, value: &str| {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        };
        line("Host", &self.host);
        line("Upgrade", "websocket");
        line("Connection", "Upgrade");
        line("Sec-WebSocket-Key", &self.key);
        line("Sec-WebSocket-Version", "13");
        if let Some(origin) = &self.origin {
            line("Origin", origin);
        }
        if !self.protocols.is_empty() {
            line("Sec-WebSocket-Protocol", &self.protocols.join(", "));
        }
        if !self.extensions.is_empty() {
            line("Sec-WebSocket-Extensions", &self.extensions.join(", "));
        }
        write_headers(&self.headers, out);
        out.extend_from_slice(b"\r\n");
        Ok(ClientHandshake {
            accept: accept_key(self.key.as_bytes()),
            protocols: self.protocols.clone(),
            extensions: self
                .extensions
                .iter()
                .map(|e| extension_name(e).to_owned())
                .collect(),
            deflate: self.deflate.clone(),
            scanned: 0,
            head_end: None,
        })
    }
}

/// The token naming an extension in a `Sec-WebSocket-Extensions` element
/// (the part before any parameters).
fn extension_name(element: &str) -> &str {
    element.split(';').next().unwrap_or("").trim()
}

/// Checks the server's response to a [`ClientRequest`].
#[derive(Debug, Clone)]
pub struct ClientHandshake {
    accept: String,
    protocols: Vec<String>,
    extensions: Vec<String>,
    deflate: Option<PerMessageDeflate>,
    scanned: usize,
    /// The length of the response head, once its blank line was found: a
    /// rejection's body may arrive in later reads, and the head is not
    /// searched for again in them.
    head_end: Option<usize>,
}

/// A successful handshake response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandshakeResponse {
    /// The status: always 101.
    pub status: StatusCode,
    /// The response headers.
    pub headers: HeaderMap,
    /// The subprotocol the server chose, one of those offered.
    pub protocol: Option<String>,
    /// permessage-deflate as the server accepted it, if the request
    /// offered it ([`ClientRequest::deflate`]) and the server agreed.
    pub deflate: Option<DeflateParams>,
}

/// A response other than 101: what the server said instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedResponse {
    /// The status, such as 401, 403 or 503.
    pub status: StatusCode,
    /// The response headers.
    pub headers: HeaderMap,
    /// The body, up to its `Content-Length` or 64 KiB; empty when the
    /// response has no `Content-Length` (such a body ends only when the
    /// connection does, and is not waited for).
    pub body: Bytes,
}

/// A handshake response the client must refuse (RFC 6455 section 4.2.2:
/// "the client MUST _Fail the WebSocket Connection_").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ResponseError {
    /// Not a well-formed HTTP/1.1 response.
    #[error("malformed HTTP response: {0}")]
    Malformed(httparse::Error),
    /// The response head is over 24 KiB or 100 header fields.
    #[error("response head exceeds {limit} bytes or {MAX_RESPONSE_HEADERS} headers")]
    HeadTooLarge {
        /// The byte limit.
        limit: usize,
    },
    /// The server answered with another status than 101.
    #[error("server answered {} instead of 101 Switching Protocols", .0.status)]
    NotSwitchingProtocols(Box<RejectedResponse>),
    /// No `Upgrade: websocket` in the response.
    #[error("response lacks Upgrade: websocket")]
    MissingUpgrade,
    /// No `Connection: Upgrade` in the response.
    #[error("response lacks Connection: Upgrade")]
    MissingConnectionUpgrade,
    /// No `Sec-WebSocket-Accept` in the response.
    #[error("response lacks Sec-WebSocket-Accept")]
    MissingAccept,
    /// A `Sec-WebSocket-Accept` that does not match the key sent.
    #[error("Sec-WebSocket-Accept does not match the key sent")]
    AcceptMismatch,
    /// A subprotocol the client did not offer.
    #[error("server chose subprotocol {0:?}, which was not offered")]
    UnofferedProtocol(String),
    /// An extension the client did not request.
    #[error("server answered with extension {0:?}, which was not requested")]
    UnrequestedExtension(String),
    /// `Sec-WebSocket-Accept` or `Sec-WebSocket-Protocol` appears more
    /// than once: which one the server meant is a guess.
    #[error("more than one {0} header in the response")]
    DuplicateHeader(&'static str),
    /// A permessage-deflate answer the client must refuse.
    #[error(transparent)]
    Deflate(#[from] DeflateResponseError),
}

impl ClientHandshake {
    /// Parses and checks the response from the start of `buf`, which holds
    /// every byte received so far.
    ///
    /// Returns [`Decoded::NeedMore`] until the response head (and, for a
    /// rejection, its body) has arrived. Bytes after a 101 response's head
    /// are the server's first frames and belong to the connection.
    ///
    /// # Errors
    ///
    /// A [`ResponseError`], each check of RFC 6455 section 4.2.2 its own
    /// variant. A non-101 response is
    /// [`ResponseError::NotSwitchingProtocols`], with its status, headers
    /// and body.
    pub fn parse_response(
        &mut self,
        buf: &[u8],
    ) -> Result<Decoded<HandshakeResponse>, ResponseError> {
        let end = self.head_end.or_else(|| find_head_end(buf, self.scanned));
        self.scanned = buf.len();
        self.head_end = end;
        let Some(end) = end else {
            if buf.len() > MAX_RESPONSE_HEAD {
                return Err(ResponseError::HeadTooLarge {
                    limit: MAX_RESPONSE_HEAD,
                });
            }
            return Ok(Decoded::NeedMore(1));
        };
        if end > MAX_RESPONSE_HEAD {
            return Err(ResponseError::HeadTooLarge {
                limit: MAX_RESPONSE_HEAD,
            });
        }
        let mut parsed = [httparse::EMPTY_HEADER; MAX_RESPONSE_HEADERS];
        let mut response = httparse::Response::new(&mut parsed);
        match response.parse(&buf[..end]) {
            Ok(httparse::Status::Complete(_)) => {}
            Ok(httparse::Status::Partial) => {
                return Err(ResponseError::Malformed(httparse::Error::Token));
            }
            Err(httparse::Error::TooManyHeaders) => {
                return Err(ResponseError::HeadTooLarge {
                    limit: MAX_RESPONSE_HEAD,
                });
            }
            Err(error) => return Err(ResponseError::Malformed(error)),
        }
        let status = response
            .code
            .and_then(|code| StatusCode::from_u16(code).ok())
            .ok_or(ResponseError::Malformed(httparse::Error::Status))?;
        let headers = to_header_map(response.headers).map_err(ResponseError::Malformed)?;

        if status != StatusCode::SWITCHING_PROTOCOLS {
            let announced = headers
                .get(http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<usize>().ok());
            // Without a length the body ends with the connection: taking
            // what happens to have arrived would make the result depend on
            // how the bytes were split, so none is taken.
            let available = buf.len() - end;
            let wanted = announced.unwrap_or(0).min(MAX_REJECTION_BODY);
            if available < wanted {
                return Ok(Decoded::NeedMore(wanted - available));
            }
            let body = Bytes::copy_from_slice(&buf[end..end + wanted]);
            return Err(ResponseError::NotSwitchingProtocols(Box::new(
                RejectedResponse {
                    status,
                    headers,
                    body,
                },
            )));
        }
        // RFC 6455 section 4.2.2, the client's checks, in order.
        for (name, shown) in [
            (http::header::SEC_WEBSOCKET_ACCEPT, "Sec-WebSocket-Accept"),
            (
                http::header::SEC_WEBSOCKET_PROTOCOL,
                "Sec-WebSocket-Protocol",
            ),
        ] {
            if headers.get_all(name).iter().nth(1).is_some() {
                return Err(ResponseError::DuplicateHeader(shown));
            }
        }
        if !has_token(&headers, "upgrade", "websocket") {
            return Err(ResponseError::MissingUpgrade);
        }
        if !has_token(&headers, "connection", "upgrade") {
            return Err(ResponseError::MissingConnectionUpgrade);
        }
        let accept = headers
            .get("sec-websocket-accept")
            .ok_or(ResponseError::MissingAccept)?;
        if accept.as_bytes() != self.accept.as_bytes() {
            return Err(ResponseError::AcceptMismatch);
        }
        // "If the response includes a |Sec-WebSocket-Extensions| header field
        // and this header field indicates the use of an extension that was
        // not present in the client's handshake [...] the client MUST _Fail
        // the WebSocket Connection_."
        if let Some(extension) = list_values(&headers, "sec-websocket-extensions")
            .map(extension_name)
            .find(|name| !self.extensions.iter().any(|e| e.eq_ignore_ascii_case(name)))
        {
            return Err(ResponseError::UnrequestedExtension(extension.to_owned()));
        }
        // "If the response includes a |Sec-WebSocket-Protocol| header field
        // and this header field indicates the use of a subprotocol that was
        // not present in the client's handshake [...] the client MUST _Fail
        // the WebSocket Connection_."
        let protocol = match headers.get("sec-websocket-protocol") {
            None => None,
            Some(value) => {
                let value = String::from_utf8_lossy(value.as_bytes()).trim().to_owned();
                if !self.protocols.contains(&value) {
                    return Err(ResponseError::UnofferedProtocol(value));
                }
                Some(value)
            }
        };
        let deflate = match &self.deflate {
            Some(settings) => settings.check_answer(&headers)?,
            None => None,
        };
        Ok(Decoded::Done {
            value: HandshakeResponse {
                status,
                headers,
                protocol,
                deflate,
            },
            consumed: end,
        })
    }
}

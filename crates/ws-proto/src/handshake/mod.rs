//! The opening handshake (RFC 6455 section 4): an HTTP/1.1 upgrade.

mod client;
mod server;

pub use client::{
    ClientHandshake, ClientRequest, HandshakeResponse, RejectedResponse, ResponseError,
};
pub use server::{
    Rejection, RequestError, RequestLimits, RequestParser, UpgradeRequest, validate_request,
    write_accept,
};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::HeaderMap;
use sha1::{Digest, Sha1};

/// A value the application gave for a handshake header that the header
/// cannot carry. Written as it is, a CR or LF would end the header early
/// and let the rest be read as headers (or a body) of its own: header
/// injection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HeaderError {
    /// A value with a control character (CR, LF, NUL, DEL...); for the
    /// request target, also a space.
    #[error("invalid {name} value {value:?}: control characters are not allowed")]
    Value {
        /// The header (or `request target`).
        name: &'static str,
        /// The value given.
        value: String,
    },
    /// A subprotocol that is not a token. RFC 6455 section 4.1: the
    /// elements "MUST be non-empty strings with characters in the range
    /// U+0021 to U+007E not including separator characters".
    #[error(
        "invalid {name} {value:?}: must be a non-empty token of letters, digits and !#$%&'*+-.^_`|~"
    )]
    Token {
        /// The header.
        name: &'static str,
        /// The value given.
        value: String,
    },
}

/// Checks `value` as a header field value (RFC 9110 section 5.5: visible
/// characters, spaces and tabs; no CR, LF or other controls).
fn check_value(name: &'static str, value: &str) -> Result<(), HeaderError> {
    if http::HeaderValue::from_bytes(value.as_bytes()).is_ok() {
        Ok(())
    } else {
        Err(HeaderError::Value {
            name,
            value: value.to_owned(),
        })
    }
}

/// Checks `value` as a token (RFC 9110 section 5.6.2).
fn check_token(name: &'static str, value: &str) -> Result<(), HeaderError> {
    let tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if !value.is_empty() && value.bytes().all(tchar) {
        Ok(())
    } else {
        Err(HeaderError::Token {
            name,
            value: value.to_owned(),
        })
    }
}

/// Checks a request target (RFC 9112 section 3.2): no spaces or
/// control characters, which would end the request line early.
fn check_target(value: &str) -> Result<(), HeaderError> {
    if !value.is_empty() && !value.bytes().any(|b| b <= b' ' || b == 0x7f) {
        Ok(())
    } else {
        Err(HeaderError::Value {
            name: "request target",
            value: value.to_owned(),
        })
    }
}

/// The GUID that RFC 6455 section 1.3 appends to the client's key.
const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Derives `Sec-WebSocket-Accept` from the client's `Sec-WebSocket-Key`.
///
/// RFC 6455 section 1.3: the server concatenates the key with the
/// protocol's GUID; "A SHA-1 hash (160 bits), base64-encoded, of this
/// concatenation is then returned in the server's handshake."
///
/// ```
/// assert_eq!(
///     ws_proto::accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
///     "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
/// );
/// ```
pub fn accept_key(key: &[u8]) -> String {
    let mut sha1 = Sha1::new();
    sha1.update(key);
    sha1.update(GUID.as_bytes());
    STANDARD.encode(sha1.finalize())
}

/// A fresh `Sec-WebSocket-Key`: 16 bytes from the operating system's
/// entropy source, base64-encoded.
///
/// RFC 6455 section 4.1: "The nonce MUST be selected randomly for each
/// connection."
///
/// # Panics
///
/// If the operating system cannot provide entropy.
pub fn generate_key() -> String {
    let mut nonce = [0u8; 16];
    getrandom::fill(&mut nonce).expect("the operating system provides entropy");
    STANDARD.encode(nonce)
}

/// Whether any `name` header holds `token` in its comma-separated list,
/// compared ASCII case-insensitively.
fn has_token(headers: &HeaderMap, name: &str, token: &str) -> bool {
    list_values(headers, name).any(|value| value.eq_ignore_ascii_case(token))
}

/// The comma-separated elements of every `name` header, trimmed, empty
/// elements skipped.
fn list_values<'a>(headers: &'a HeaderMap, name: &str) -> impl Iterator<Item = &'a str> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .filter(|value| !value.is_empty())
}

/// Converts parsed header lines into a map.
fn to_header_map(parsed: &[httparse::Header<'_>]) -> Result<HeaderMap, httparse::Error> {
    let mut headers = HeaderMap::with_capacity(parsed.len());
    for header in parsed {
        let name = http::HeaderName::from_bytes(header.name.as_bytes())
            .map_err(|_| httparse::Error::HeaderName)?;
        let value = http::HeaderValue::from_bytes(header.value)
            .map_err(|_| httparse::Error::HeaderValue)?;
        headers.append(name, value);
    }
    Ok(headers)
}

/// Finds the blank line that ends an HTTP head, searching only bytes not
/// searched before (`from`), so a head arriving byte by byte costs linear
/// time, never quadratic. Returns the length of the head.
///
/// Lines may end with a bare LF as well as CRLF. RFC 9112 section 2.2:
/// "a recipient MAY recognize a single LF as a line terminator and ignore
/// any preceding CR"; httparse, which parses the head, does the same.
fn find_head_end(buf: &[u8], from: usize) -> Option<usize> {
    // A line feed ends the head when the line it ends is empty (or holds
    // only a CR): look back two bytes from the first new one.
    let start = from.saturating_sub(2);
    let mut at = start;
    while let Some(i) = buf[at..].iter().position(|&b| b == b'\n') {
        let lf = at + i;
        let line_start = match buf[..lf].last() {
            Some(b'\r') => lf - 1,
            _ => lf,
        };
        // The line is empty if what precedes it is the previous line's LF
        // (a head never starts with an empty line: that LF is the
        // request line's).
        if line_start > 0 && buf[line_start - 1] == b'\n' {
            return Some(lf + 1);
        }
        at = lf + 1;
    }
    None
}

fn write_headers(headers: &HeaderMap, out: &mut bytes::BytesMut) {
    for (name, value) in headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}

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
fn find_head_end(buf: &[u8], from: usize) -> Option<usize> {
    let start = from.saturating_sub(3);
    buf[start..]
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| start + i + 4)
}

fn write_headers(headers: &HeaderMap, out: &mut bytes::BytesMut) {
    for (name, value) in headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}

//! An HTTP proxy's tunnel: `CONNECT host:port` (RFC 9110 section 9.3.6).

use base64::Engine;
use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::{Proxy, TunnelError};

/// The largest response head taken from a proxy, as from a server.
const MAX_HEAD: usize = 24 * 1024;
/// The most header fields in it.
const MAX_HEADERS: usize = 100;

/// The `CONNECT` request for `authority` (`host:port`, an IPv6 address in
/// brackets), with Basic credentials if the proxy has them.
pub(super) fn request(proxy: &Proxy, authority: &str) -> Vec<u8> {
    let mut out = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n");
    if let Some((user, password)) = &proxy.credentials {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        out.push_str(&format!("Proxy-Authorization: Basic {token}\r\n"));
    }
    out.push_str("\r\n");
    out.into_bytes()
}

/// What a complete response head says.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Answer {
    /// 2xx: the tunnel is open; `extra` bytes came after the head.
    Open { extra: usize },
    /// Another status, with its reason phrase.
    Refused { status: u16, reason: String },
}

/// Parses the proxy's response head in `buf`: `None` until it is complete.
pub(super) fn parse(buf: &[u8]) -> Result<Option<Answer>, TunnelError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    match response.parse(buf) {
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => Err(TunnelError::Protocol(
            format!("response head over {MAX_HEAD} bytes"),
        )),
        Ok(httparse::Status::Partial) => Ok(None),
        Ok(httparse::Status::Complete(len)) if len > MAX_HEAD => Err(TunnelError::Protocol(
            format!("response head over {MAX_HEAD} bytes"),
        )),
        Ok(httparse::Status::Complete(len)) => {
            let status = response.code.unwrap_or(0);
            Ok(Some(if (200..300).contains(&status) {
                Answer::Open {
                    extra: buf.len() - len,
                }
            } else {
                Answer::Refused {
                    status,
                    reason: response.reason.unwrap_or_default().to_owned(),
                }
            }))
        }
        Err(httparse::Error::TooManyHeaders) => Err(TunnelError::Protocol(format!(
            "more than {MAX_HEADERS} header fields"
        ))),
        Err(error) => Err(TunnelError::Protocol(format!(
            "malformed response: {error}"
        ))),
    }
}

/// Opens the tunnel to `authority` on `stream`, a connection to `proxy`.
pub(super) async fn tunnel<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    proxy: &Proxy,
    authority: &str,
) -> Result<(), TunnelError> {
    stream.write_all(&request(proxy, authority)).await?;
    let mut buf = BytesMut::with_capacity(1024);
    loop {
        if stream.read_buf(&mut buf).await? == 0 {
            return Err(TunnelError::Protocol(
                "closed the connection before answering CONNECT".to_owned(),
            ));
        }
        match parse(&buf)? {
            None => {}
            // The target speaks only after the upgrade request: nothing
            // may follow the proxy's answer yet.
            Some(Answer::Open { extra: 0 }) => return Ok(()),
            Some(Answer::Open { .. }) => {
                return Err(TunnelError::Protocol(
                    "sent data after its answer to CONNECT".to_owned(),
                ));
            }
            // 407 Proxy Authentication Required; tinyproxy answers a
            // CONNECT with 401 instead. Either is about the proxy's
            // credentials: the target has not been reached.
            Some(Answer::Refused {
                status: 401 | 407, ..
            }) => return Err(TunnelError::Auth),
            Some(Answer::Refused { status, reason }) => {
                return Err(TunnelError::Refused { status, reason });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxy(url: &str) -> Proxy {
        Proxy::parse(url).unwrap()
    }

    #[test]
    fn rfc_9110_section_9_3_6_connect_names_the_authority() {
        let request = request(&proxy("http://proxy:3128"), "example.com:443");
        assert_eq!(
            request,
            b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"
        );
    }

    #[test]
    fn credentials_go_in_basic_proxy_authorization() {
        let request = request(&proxy("http://al%20ice:p%40ss@proxy:3128"), "[::1]:80");
        let text = String::from_utf8(request).unwrap();
        // base64("al ice:p@ss")
        assert!(
            text.contains("Proxy-Authorization: Basic YWwgaWNlOnBAc3M=\r\n"),
            "{text}"
        );
        assert!(text.starts_with("CONNECT [::1]:80 HTTP/1.1\r\n"));
    }

    #[test]
    fn answers_open_refused_partial_and_bounded() {
        assert_eq!(
            parse(b"HTTP/1.1 200 Connection established\r\n\r\n").unwrap(),
            Some(Answer::Open { extra: 0 })
        );
        assert_eq!(parse(b"HTTP/1.1 200 OK\r\nVia: x").unwrap(), None);
        assert_eq!(
            parse(b"HTTP/1.0 403 Filtered\r\nContent-Length: 0\r\n\r\n").unwrap(),
            Some(Answer::Refused {
                status: 403,
                reason: "Filtered".to_owned()
            })
        );
        let mut huge = b"HTTP/1.1 200 OK\r\n".to_vec();
        huge.extend(std::iter::repeat_n(b'a', MAX_HEAD + 1));
        assert!(matches!(parse(&huge), Err(TunnelError::Protocol(_))));
        assert!(matches!(
            parse(b"SSH-2.0-OpenSSH\r\n\r\n"),
            Err(TunnelError::Protocol(_))
        ));
    }
}

//! What the opening handshake established, kept for the connection's life.

use std::net::SocketAddr;
use std::sync::OnceLock;

use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, Uri, Version};

/// What the opening handshake established: the request, the response, the
/// peer and the subprotocol.
#[derive(Debug, Clone)]
pub struct Handshake {
    pub(crate) request: Request<()>,
    pub(crate) response: Option<Response<()>>,
    pub(crate) peer: Option<SocketAddr>,
    pub(crate) protocol: Option<String>,
}

impl Handshake {
    /// A handshake made of this upgrade request, with no response, peer or
    /// subprotocol recorded yet.
    pub fn new(request: Request<()>) -> Self {
        Self {
            request,
            response: None,
            peer: None,
            protocol: None,
        }
    }

    /// Records the 101 response (a client keeps the one it received).
    pub fn with_response(mut self, response: Response<()>) -> Self {
        self.response = Some(response);
        self
    }

    /// Records the peer's address.
    pub fn with_peer(mut self, peer: SocketAddr) -> Self {
        self.peer = Some(peer);
        self
    }

    /// Records the subprotocol chosen.
    pub fn with_protocol(mut self, protocol: Option<String>) -> Self {
        self.protocol = protocol;
        self
    }

    /// The upgrade request.
    pub fn request(&self) -> &Request<()> {
        &self.request
    }

    /// The 101 response, if recorded.
    pub fn response(&self) -> Option<&Response<()>> {
        self.response.as_ref()
    }

    /// The peer's address, if recorded.
    pub fn peer(&self) -> Option<SocketAddr> {
        self.peer
    }

    /// The subprotocol chosen, if any.
    pub fn protocol(&self) -> Option<&str> {
        self.protocol.as_deref()
    }
}

/// The upgrade request as a connection keeps it for its whole life: the
/// request line and the header fields as one compact run of bytes, a single
/// allocation. The [`Request`] itself, whose header map costs several
/// hundred bytes (and its URI, near a hundred), is built on first use.
#[derive(Debug)]
pub(crate) struct StoredRequest {
    /// The request line, `method\ntarget\npath\n` then `?query` when the
    /// target has one, and a newline; then each header field as
    /// `name:value\n`. The line's pieces hold no newline, a name no `:` and
    /// a value no newline, so splitting there gives back exactly what was
    /// stored.
    text: Box<[u8]>,
    /// Where the fields start in `text`.
    line_len: u32,
    version: Version,
    request: OnceLock<Box<Request<()>>>,
}

impl StoredRequest {
    pub(crate) fn new(request: Request<()>) -> Self {
        let (parts, ()) = request.into_parts();
        let uri = &parts.uri;
        let mut line = format!("{}\n{uri}\n{}\n", parts.method, uri.path());
        if let Some(query) = uri.query() {
            line.push('?');
            line.push_str(query);
        }
        line.push('\n');
        let size = parts
            .headers
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len() + 2)
            .sum::<usize>();
        let mut fields = Vec::with_capacity(line.len() + size);
        fields.extend_from_slice(line.as_bytes());
        for (name, value) in &parts.headers {
            fields.extend_from_slice(name.as_str().as_bytes());
            fields.push(b':');
            fields.extend_from_slice(value.as_bytes());
            fields.push(b'\n');
        }
        Self {
            // A request line over 4 GiB is not read: the parser's limits
            // are far smaller.
            line_len: u32::try_from(line.len()).unwrap_or(0),
            text: fields.into_boxed_slice(),
            version: parts.version,
            request: OnceLock::new(),
        }
    }

    /// The request line's pieces: method, target, path, and the query's
    /// line (empty, or `?` and the query).
    fn pieces(&self) -> [&str; 4] {
        // Valid UTF-8: it was written from strings.
        let line = std::str::from_utf8(&self.text[..self.line_len as usize]).unwrap_or_default();
        let mut pieces = line.splitn(5, '\n');
        std::array::from_fn(|_| pieces.next().unwrap_or_default())
    }

    /// The header fields, each as `name:value\n`.
    fn fields(&self) -> &[u8] {
        &self.text[self.line_len as usize..]
    }

    pub(crate) fn path(&self) -> &str {
        self.pieces()[2]
    }

    pub(crate) fn query(&self) -> Option<&str> {
        self.pieces()[3].strip_prefix('?')
    }

    pub(crate) fn request(&self) -> &Request<()> {
        self.request.get_or_init(|| {
            let count = self.fields().iter().filter(|&&b| b == b'\n').count();
            let mut headers = HeaderMap::with_capacity(count);
            for field in self.fields().split(|&b| b == b'\n') {
                let Some(colon) = field.iter().position(|&b| b == b':') else {
                    continue; // the empty piece after the last newline
                };
                // Both were a valid name and value when stored.
                if let (Ok(name), Ok(value)) = (
                    HeaderName::from_bytes(&field[..colon]),
                    HeaderValue::from_bytes(&field[colon + 1..]),
                ) {
                    headers.append(name, value);
                }
            }
            let [method, target, ..] = self.pieces();
            let mut request = Request::new(());
            // Both were a valid method and URI when stored.
            *request.method_mut() = Method::from_bytes(method.as_bytes()).unwrap_or_default();
            *request.uri_mut() = Uri::try_from(target).unwrap_or_default();
            *request.version_mut() = self.version;
            *request.headers_mut() = headers;
            Box::new(request)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_request_gives_back_the_request_it_was_made_from() {
        let request = Request::builder()
            .method("GET")
            .uri("/chat/room?user=a%20b&x=1")
            .header("host", "example.com:8080")
            .header("x-token", "a:b:c")
            .header("cookie", "a=1")
            .header("x-spaces", " padded\tvalue ")
            .header("cookie", "b=2")
            .header("x-opaque", HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap())
            .header("x-empty", "")
            .body(())
            .unwrap();
        let stored = StoredRequest::new(request.clone());
        assert!(stored.request.get().is_none(), "not built until used");
        assert_eq!(stored.path(), "/chat/room");
        assert_eq!(stored.query(), Some("user=a%20b&x=1"));
        let rebuilt = stored.request();
        assert_eq!(rebuilt.method(), request.method());
        assert_eq!(rebuilt.uri(), request.uri());
        assert_eq!(rebuilt.version(), request.version());
        assert_eq!(rebuilt.headers(), request.headers());
        let cookies: Vec<_> = rebuilt.headers().get_all("cookie").iter().collect();
        assert_eq!(cookies, ["a=1", "b=2"], "repeated fields keep their order");
    }

    #[test]
    fn a_stored_request_answers_path_and_query_as_its_uri_does() {
        for target in [
            "/",
            "/chat",
            "/chat?",
            "/chat?room=a&b",
            "http://example.com",
            "http://example.com:8080/chat?room=%20x",
            "*",
        ] {
            let request = Request::builder().uri(target).body(()).unwrap();
            let stored = StoredRequest::new(request.clone());
            assert_eq!(stored.path(), request.uri().path(), "{target}");
            assert_eq!(stored.query(), request.uri().query(), "{target}");
            assert_eq!(stored.request().uri(), request.uri(), "{target}");
            assert_eq!(stored.request().method(), request.method(), "{target}");
        }
    }
}

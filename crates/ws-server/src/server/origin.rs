//! Which web pages may open connections: the `Origin` check (RFC 6455
//! section 10.2).
//!
//! A browser sends cookies with a WebSocket handshake to any site, whatever
//! page started it, and the same-origin policy does not apply to
//! WebSockets: a server that trusts cookies and accepts every `Origin` lets
//! any page its users visit act as them (cross-site WebSocket hijacking).

use http::{HeaderMap, header};

/// The server's `Origin` policy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) enum OriginPolicy {
    /// None chosen: any origin is accepted, and the server says so in its
    /// log at start-up.
    #[default]
    Unset,
    /// Any origin, chosen (the connections authenticate otherwise).
    Any,
    /// The page's origin must name the host the request was sent to.
    Same,
    /// The page's origin must be one of these, exactly.
    Allowed(Vec<String>),
}

impl OriginPolicy {
    /// Whether a request with these headers may connect. A request without
    /// `Origin` comes from a client that is not a browser (browsers always
    /// send it), and is accepted: the check protects browsers' users.
    pub(crate) fn allows(&self, headers: &HeaderMap) -> bool {
        let Some(origin) = headers.get(header::ORIGIN) else {
            return true;
        };
        match self {
            Self::Unset | Self::Any => true,
            Self::Allowed(allowed) => allowed.iter().any(|a| a.as_bytes() == origin.as_bytes()),
            Self::Same => {
                let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
                match (origin.to_str().ok(), host) {
                    (Some(origin), Some(host)) => same_origin(origin, host),
                    _ => false,
                }
            }
        }
    }

    /// Logs, at start-up, that browsers can connect from any page.
    pub(crate) fn warn_if_unset(&self) {
        if *self == Self::Unset {
            tracing::warn!(
                "no Origin policy: a page on any site can open connections here with its \
                 visitors' cookies (cross-site WebSocket hijacking). Call \
                 ServerBuilder::same_origin() or allowed_origins([...]); or any_origin() if \
                 connections do not rely on cookies"
            );
        }
    }
}

/// Whether `origin` (`scheme://host[:port]`, RFC 6454) names the same host
/// and port as the request's `Host` header, ASCII case-insensitively and
/// with the scheme's default port made explicit on both sides. The opaque
/// origin `null` (sandboxed pages, local files) matches nothing.
fn same_origin(origin: &str, host: &str) -> bool {
    let Some((scheme, authority)) = origin.split_once("://") else {
        return false;
    };
    let default_port = match scheme.to_ascii_lowercase().as_str() {
        "http" | "ws" => "80",
        "https" | "wss" => "443",
        _ => return false,
    };
    let with_port = |authority: &str| -> String {
        let authority = authority.to_ascii_lowercase();
        // An IPv6 literal's colons are inside its brackets.
        let after_host = authority.rfind(']').map_or(0, |i| i + 1);
        if authority[after_host..].contains(':') {
            authority
        } else {
            format!("{authority}:{default_port}")
        }
    };
    !authority.is_empty() && !authority.contains('/') && with_port(authority) == with_port(host)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(origin: Option<&str>, host: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_str(host).unwrap());
        if let Some(origin) = origin {
            headers.insert(header::ORIGIN, HeaderValue::from_str(origin).unwrap());
        }
        headers
    }

    #[test]
    fn section_10_2_same_origin_compares_host_and_port() {
        let same = OriginPolicy::Same;
        for (origin, host) in [
            ("https://example.com", "example.com"),
            ("https://example.com", "example.com:443"),
            ("https://Example.COM:443", "example.com"),
            ("http://example.com:8080", "example.com:8080"),
            ("http://[::1]:9001", "[::1]:9001"),
            ("http://[::1]", "[::1]:80"),
        ] {
            assert!(same.allows(&headers(Some(origin), host)), "{origin} {host}");
        }
        for (origin, host) in [
            ("https://evil.example", "example.com"),
            ("https://example.com.evil.example", "example.com"),
            ("http://example.com:8080", "example.com:9090"),
            ("http://example.com", "example.com:443"),
            ("null", "example.com"),
            ("example.com", "example.com"),
            ("file://", "example.com"),
        ] {
            assert!(
                !same.allows(&headers(Some(origin), host)),
                "{origin} {host}"
            );
        }
        assert!(same.allows(&headers(None, "example.com")), "not a browser");
    }

    #[test]
    fn an_allow_list_matches_exactly_and_unset_allows_all() {
        let allowed = OriginPolicy::Allowed(vec!["https://good.example".into()]);
        assert!(allowed.allows(&headers(Some("https://good.example"), "x")));
        assert!(!allowed.allows(&headers(Some("https://evil.example"), "x")));
        assert!(allowed.allows(&headers(None, "x")));
        for policy in [OriginPolicy::Unset, OriginPolicy::Any] {
            assert!(policy.allows(&headers(Some("https://evil.example"), "x")));
        }
    }
}

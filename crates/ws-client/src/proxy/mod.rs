//! Connecting through a proxy: an HTTP `CONNECT` tunnel (`http://`, or
//! `https://` with TLS to the proxy) or SOCKS5 (`socks5://`, the name
//! resolved here; `socks5h://`, resolved by the proxy), chosen by
//! [`ClientBuilder::proxy`](crate::ClientBuilder::proxy) or, by default,
//! by the environment as curl reads it.

use std::fmt;
use std::io;

use tokio::io::{AsyncRead, AsyncWrite};
use url::{Host, Url};

use crate::error::{BuildError, ConnectError};

mod http;
mod no_proxy;
mod socks;

use no_proxy::NoProxy;
pub use socks::SocksReply;

/// How a proxy is spoken to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Http,
    /// TLS to the proxy, then `CONNECT` inside it.
    Https,
    /// SOCKS5, the target's name resolved here.
    Socks5,
    /// SOCKS5, the target's name resolved by the proxy.
    Socks5h,
}

/// A proxy, parsed from its URL.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Proxy {
    pub(crate) kind: Kind,
    pub(crate) host: Host<String>,
    pub(crate) port: u16,
    /// The URL's user name and password, percent-decoded.
    credentials: Option<(String, String)>,
}

/// The proxy's URL without its credentials: what logs, spans and errors
/// show.
impl fmt::Display for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match self.kind {
            Kind::Http => "http",
            Kind::Https => "https",
            Kind::Socks5 => "socks5",
            Kind::Socks5h => "socks5h",
        };
        match &self.host {
            Host::Ipv6(ip) => write!(f, "{scheme}://[{ip}]:{}", self.port),
            host => write!(f, "{scheme}://{host}:{}", self.port),
        }
    }
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Proxy({self})")
    }
}

impl Proxy {
    /// Parses a proxy URL. Without a scheme it is an HTTP proxy, and
    /// without a port, port 1080 (443 for `https://`), as curl has it.
    pub(crate) fn parse(url: &str) -> Result<Self, BuildError> {
        let invalid = |why: &str| BuildError::InvalidProxy(format!("{url:?}: {why}"));
        let url = if url.contains("://") {
            Url::parse(url)
        } else {
            Url::parse(&format!("http://{url}"))
        }
        .map_err(|error| invalid(&error.to_string()))?;
        let kind = match url.scheme() {
            "http" => Kind::Http,
            "https" => Kind::Https,
            "socks5" => Kind::Socks5,
            "socks5h" => Kind::Socks5h,
            other => return Err(invalid(&format!("unsupported proxy scheme {other}"))),
        };
        if cfg!(not(feature = "tls")) && kind == Kind::Https {
            return Err(invalid("https:// proxies need the tls feature"));
        }
        let host = url.host().ok_or_else(|| invalid("no host"))?.to_owned();
        let port = url
            .port()
            .unwrap_or(if kind == Kind::Https { 443 } else { 1080 });
        let credentials = (!url.username().is_empty()).then(|| {
            (
                percent_decode(url.username()),
                url.password().map(percent_decode).unwrap_or_default(),
            )
        });
        Ok(Self {
            kind,
            host,
            port,
            credentials,
        })
    }

    /// Opens a tunnel to `host:port` on `stream`, a connection to this
    /// proxy (TLS already set up for an `https://` proxy).
    pub(crate) async fn tunnel<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        stream: &mut S,
        host: &Host<String>,
        port: u16,
    ) -> Result<(), ConnectError> {
        let done = match self.kind {
            Kind::Http | Kind::Https => {
                let authority = match host {
                    Host::Ipv6(ip) => format!("[{ip}]:{port}"),
                    host => format!("{host}:{port}"),
                };
                http::tunnel(stream, self, &authority).await
            }
            Kind::Socks5h => {
                let destination = match host {
                    Host::Domain(name) => socks::Destination::Name(name),
                    Host::Ipv4(ip) => socks::Destination::Ip((*ip).into()),
                    Host::Ipv6(ip) => socks::Destination::Ip((*ip).into()),
                };
                socks::tunnel(stream, self, destination, port).await
            }
            Kind::Socks5 => {
                let addrs = crate::net::resolve(host, port).await?;
                let ip = addrs[0].ip();
                socks::tunnel(stream, self, socks::Destination::Ip(ip), port).await
            }
        };
        done.map_err(|error| error.into_connect_error(self))
    }
}

/// The URL's percent-encoding undone (user names and passwords may carry
/// `@`, `:` or spaces encoded).
fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// Why a tunnel did not open.
#[derive(Debug)]
pub(crate) enum TunnelError {
    Io(io::Error),
    Auth,
    Refused { status: u16, reason: String },
    Socks(SocksReply),
    Protocol(String),
}

impl From<io::Error> for TunnelError {
    fn from(error: io::Error) -> Self {
        Self::Io(error)
    }
}

impl TunnelError {
    fn into_connect_error(self, proxy: &Proxy) -> ConnectError {
        let proxy = proxy.to_string();
        match self {
            Self::Io(source) => ConnectError::ProxyUnreachable { proxy, source },
            Self::Auth => ConnectError::ProxyAuth { proxy },
            Self::Refused { status, reason } => ConnectError::ProxyRefused {
                proxy,
                status,
                reason,
            },
            Self::Socks(reply) => ConnectError::Socks { proxy, reply },
            Self::Protocol(detail) => ConnectError::ProxyProtocol { proxy, detail },
        }
    }
}

/// Where the proxy setting comes from; see
/// [`ClientBuilder::proxy`](crate::ClientBuilder::proxy).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) enum Setting {
    /// `HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY` and `NO_PROXY`.
    #[default]
    Environment,
    Url(String),
    Off,
}

/// The proxies a client chooses from, settled when it is built.
#[derive(Debug, Clone, Default)]
pub(crate) struct Proxies {
    /// For `ws://` targets.
    plain: Option<Proxy>,
    /// For `wss://` targets.
    secure: Option<Proxy>,
    /// Hosts reached directly.
    direct: NoProxy,
}

impl Proxies {
    /// Settles `setting`, reading the environment through `var`.
    pub(crate) fn new(
        setting: &Setting,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, BuildError> {
        // Lower case first, as curl (which reads only `http_proxy` in lower
        // case); an empty value counts as unset.
        let set = |name: &str| var(name).filter(|value| !value.trim().is_empty());
        let read = |name: &str| set(&name.to_ascii_lowercase()).or_else(|| set(name));
        let direct = NoProxy::parse(&read("NO_PROXY").unwrap_or_default());
        match setting {
            Setting::Off => Ok(Self::default()),
            Setting::Url(url) => {
                let proxy = Proxy::parse(url)?;
                Ok(Self {
                    plain: Some(proxy.clone()),
                    secure: Some(proxy),
                    direct,
                })
            }
            Setting::Environment => {
                // A variable that does not parse is reported and skipped,
                // not a reason to fail every connection.
                let proxy = |name: &str| {
                    let value = read(name)?;
                    Proxy::parse(&value)
                        .inspect_err(|error| tracing::warn!(%error, "{name} ignored"))
                        .ok()
                };
                let all = proxy("ALL_PROXY");
                Ok(Self {
                    plain: proxy("HTTP_PROXY").or_else(|| all.clone()),
                    secure: proxy("HTTPS_PROXY").or(all),
                    direct,
                })
            }
        }
    }

    /// The proxy for a `ws://` (`secure` false) or `wss://` target on
    /// `host`, unless `NO_PROXY` names it.
    pub(crate) fn select(&self, secure: bool, host: &Host<String>) -> Option<&Proxy> {
        let proxy = if secure { &self.secure } else { &self.plain };
        proxy.as_ref().filter(|_| !self.direct.matches(host))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| vars.get(name).cloned()
    }

    fn host(s: &str) -> Host<String> {
        Host::parse(s).unwrap()
    }

    #[test]
    fn proxy_urls_parse_as_curl_reads_them() {
        let p = Proxy::parse("proxy.corp:3128").unwrap();
        assert_eq!((p.kind, p.port), (Kind::Http, 3128));
        assert_eq!(Proxy::parse("http://proxy").unwrap().port, 1080);
        assert_eq!(Proxy::parse("https://proxy").unwrap().port, 443);
        let p = Proxy::parse("socks5h://us%40er:p%3Ass@[::1]:9050").unwrap();
        assert_eq!(p.kind, Kind::Socks5h);
        assert_eq!(p.credentials, Some(("us@er".to_owned(), "p:ss".to_owned())));
        // Credentials never show.
        assert_eq!(p.to_string(), "socks5h://[::1]:9050");
        assert!(Proxy::parse("ftp://proxy:21").is_err());
        assert!(Proxy::parse("http://").is_err());
    }

    #[test]
    fn https_proxy_for_wss_http_proxy_for_ws_all_proxy_for_the_rest() {
        let proxies = Proxies::new(
            &Setting::Environment,
            env(&[
                ("HTTPS_PROXY", "http://secure:1"),
                ("ALL_PROXY", "socks5://all:2"),
            ]),
        )
        .unwrap();
        let target = host("example.com");
        assert_eq!(
            proxies.select(true, &target).unwrap().to_string(),
            "http://secure:1"
        );
        assert_eq!(
            proxies.select(false, &target).unwrap().to_string(),
            "socks5://all:2"
        );
    }

    #[test]
    fn lower_case_wins_and_empty_is_unset() {
        let proxies = Proxies::new(
            &Setting::Environment,
            env(&[
                ("http_proxy", "http://lower:1"),
                ("HTTP_PROXY", "http://upper:2"),
                ("https_proxy", ""),
                ("HTTPS_PROXY", "http://upper:3"),
            ]),
        )
        .unwrap();
        let target = host("example.com");
        assert_eq!(
            proxies.select(false, &target).unwrap().to_string(),
            "http://lower:1"
        );
        assert_eq!(
            proxies.select(true, &target).unwrap().to_string(),
            "http://upper:3"
        );
    }

    #[test]
    fn no_proxy_applies_and_loopback_is_proxied_unless_named() {
        let vars = [
            ("HTTPS_PROXY", "http://p:1"),
            ("no_proxy", "internal.corp,10.0.0.0/8"),
        ];
        let proxies = Proxies::new(&Setting::Environment, env(&vars)).unwrap();
        assert!(proxies.select(true, &host("svc.internal.corp")).is_none());
        assert!(proxies.select(true, &host("10.1.2.3")).is_none());
        assert!(proxies.select(true, &host("127.0.0.1")).is_some());
        let explicit = Proxies::new(&Setting::Url("http://q:2".into()), env(&vars)).unwrap();
        assert!(explicit.select(false, &host("svc.internal.corp")).is_none());
        assert!(explicit.select(false, &host("example.com")).is_some());
    }

    #[test]
    fn off_reads_nothing_and_a_bad_variable_is_skipped() {
        let vars = [("HTTPS_PROXY", "http://p:1")];
        let off = Proxies::new(&Setting::Off, env(&vars)).unwrap();
        assert!(off.select(true, &host("example.com")).is_none());
        let bad = Proxies::new(&Setting::Environment, env(&[("HTTPS_PROXY", "ftp://x")])).unwrap();
        assert!(bad.select(true, &host("example.com")).is_none());
        assert!(Proxies::new(&Setting::Url("ftp://x".into()), env(&[])).is_err());
    }
}

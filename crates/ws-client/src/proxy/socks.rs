//! A SOCKS5 proxy's tunnel: RFC 1928, with RFC 1929's user name and
//! password when the proxy URL has credentials.

use std::net::IpAddr;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::{Proxy, TunnelError};

const VERSION: u8 = 5;
const NO_AUTH: u8 = 0;
const USER_PASSWORD: u8 = 2;
const NO_ACCEPTABLE: u8 = 0xff;
const CONNECT: u8 = 1;

/// Where the tunnel goes: an address (`socks5://` resolves the name
/// itself) or a name (`socks5h://` lets the proxy resolve it).
pub(super) enum Destination<'a> {
    Ip(IpAddr),
    Name(&'a str),
}

/// A SOCKS5 proxy's refusal: the reply codes of RFC 1928 section 6.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SocksReply {
    /// `X'01'` general SOCKS server failure.
    #[error("general SOCKS server failure")]
    GeneralFailure,
    /// `X'02'` connection not allowed by ruleset.
    #[error("connection not allowed by the proxy's rules")]
    NotAllowed,
    /// `X'03'` network unreachable.
    #[error("network unreachable from the proxy")]
    NetworkUnreachable,
    /// `X'04'` host unreachable.
    #[error("host unreachable from the proxy")]
    HostUnreachable,
    /// `X'05'` connection refused (by the target).
    #[error("connection refused by the target")]
    ConnectionRefused,
    /// `X'06'` TTL expired.
    #[error("TTL expired")]
    TtlExpired,
    /// `X'07'` command not supported.
    #[error("command not supported")]
    CommandNotSupported,
    /// `X'08'` address type not supported.
    #[error("address type not supported")]
    AddressTypeNotSupported,
    /// A code RFC 1928 does not assign.
    #[error("unassigned reply code {0}")]
    Other(u8),
}

impl SocksReply {
    fn from_code(code: u8) -> Self {
        match code {
            1 => Self::GeneralFailure,
            2 => Self::NotAllowed,
            3 => Self::NetworkUnreachable,
            4 => Self::HostUnreachable,
            5 => Self::ConnectionRefused,
            6 => Self::TtlExpired,
            7 => Self::CommandNotSupported,
            8 => Self::AddressTypeNotSupported,
            other => Self::Other(other),
        }
    }

    /// Whether trying again later may succeed: the network's and the
    /// target's failures, not the proxy's rules or abilities.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            Self::GeneralFailure
                | Self::NetworkUnreachable
                | Self::HostUnreachable
                | Self::ConnectionRefused
                | Self::TtlExpired
        )
    }
}

/// The method selection message (RFC 1928 section 3).
pub(super) fn greeting(proxy: &Proxy) -> Vec<u8> {
    match proxy.credentials {
        Some(_) => vec![VERSION, 2, NO_AUTH, USER_PASSWORD],
        None => vec![VERSION, 1, NO_AUTH],
    }
}

/// The user name and password request (RFC 1929 section 2): each at most
/// 255 bytes.
pub(super) fn credentials(user: &str, password: &str) -> Result<Vec<u8>, TunnelError> {
    let too_long = || TunnelError::Protocol("SOCKS5 user name or password over 255 bytes".into());
    let mut out = vec![1, u8::try_from(user.len()).map_err(|_| too_long())?];
    out.extend_from_slice(user.as_bytes());
    out.push(u8::try_from(password.len()).map_err(|_| too_long())?);
    out.extend_from_slice(password.as_bytes());
    Ok(out)
}

/// The CONNECT request (RFC 1928 section 4).
pub(super) fn connect_request(
    destination: &Destination<'_>,
    port: u16,
) -> Result<Vec<u8>, TunnelError> {
    let mut out = vec![VERSION, CONNECT, 0];
    match destination {
        Destination::Ip(IpAddr::V4(ip)) => {
            out.push(1);
            out.extend_from_slice(&ip.octets());
        }
        Destination::Ip(IpAddr::V6(ip)) => {
            out.push(4);
            out.extend_from_slice(&ip.octets());
        }
        Destination::Name(name) => {
            let len = u8::try_from(name.len())
                .map_err(|_| TunnelError::Protocol("host name over 255 bytes".into()))?;
            out.push(3);
            out.push(len);
            out.extend_from_slice(name.as_bytes());
        }
    }
    out.extend_from_slice(&port.to_be_bytes());
    Ok(out)
}

fn unexpected(what: &str) -> TunnelError {
    TunnelError::Protocol(format!("not a SOCKS5 answer: {what}"))
}

/// Opens the tunnel to `destination:port` on `stream`, a connection to
/// `proxy`.
pub(super) async fn tunnel<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    proxy: &Proxy,
    destination: Destination<'_>,
    port: u16,
) -> Result<(), TunnelError> {
    stream.write_all(&greeting(proxy)).await?;
    let mut choice = [0u8; 2];
    stream.read_exact(&mut choice).await?;
    if choice[0] != VERSION {
        return Err(unexpected("version"));
    }
    match (choice[1], &proxy.credentials) {
        (NO_AUTH, _) => {}
        (USER_PASSWORD, Some((user, password))) => {
            stream.write_all(&credentials(user, password)?).await?;
            let mut status = [0u8; 2];
            stream.read_exact(&mut status).await?;
            // RFC 1929: "A STATUS field of X'00' indicates success."
            if status[1] != 0 {
                return Err(TunnelError::Auth);
            }
        }
        // It wants credentials we do not have, or none of our methods.
        (USER_PASSWORD | NO_ACCEPTABLE, _) => return Err(TunnelError::Auth),
        _ => return Err(unexpected("method")),
    }
    stream
        .write_all(&connect_request(&destination, port)?)
        .await?;
    let mut head = [0u8; 4];
    stream.read_exact(&mut head).await?;
    if head[0] != VERSION {
        return Err(unexpected("version"));
    }
    if head[1] != 0 {
        return Err(TunnelError::Socks(SocksReply::from_code(head[1])));
    }
    // The bound address, which a CONNECT does not need: read past it.
    let rest = match head[3] {
        1 => 4 + 2,
        4 => 16 + 2,
        3 => {
            let mut len = [0u8; 1];
            stream.read_exact(&mut len).await?;
            usize::from(len[0]) + 2
        }
        _ => return Err(unexpected("address type")),
    };
    let mut bound = [0u8; 258];
    stream.read_exact(&mut bound[..rest]).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_1928_section_3_methods_offered() {
        let anonymous = Proxy::parse("socks5://proxy:1080").unwrap();
        assert_eq!(greeting(&anonymous), [5, 1, 0]);
        let with_user = Proxy::parse("socks5://u:p@proxy:1080").unwrap();
        assert_eq!(greeting(&with_user), [5, 2, 0, 2]);
    }

    #[test]
    fn rfc_1929_section_2_user_and_password() {
        assert_eq!(
            credentials("ab", "xyz").unwrap(),
            [1, 2, b'a', b'b', 3, b'x', b'y', b'z']
        );
        assert!(credentials(&"u".repeat(256), "p").is_err());
    }

    #[test]
    fn rfc_1928_section_4_addresses_and_names() {
        let v4 = connect_request(&Destination::Ip("127.0.0.1".parse().unwrap()), 80).unwrap();
        assert_eq!(v4, [5, 1, 0, 1, 127, 0, 0, 1, 0, 80]);
        let v6 = connect_request(&Destination::Ip("::1".parse().unwrap()), 443).unwrap();
        assert_eq!(v6[..4], [5, 1, 0, 4]);
        assert_eq!(v6[4..20], std::net::Ipv6Addr::LOCALHOST.octets());
        assert_eq!(v6[20..], [1, 187]);
        let name = connect_request(&Destination::Name("ex.org"), 8080).unwrap();
        assert_eq!(
            name,
            [
                5, 1, 0, 3, 6, b'e', b'x', b'.', b'o', b'r', b'g', 0x1f, 0x90
            ]
        );
    }

    #[test]
    fn rfc_1928_section_6_reply_codes_are_named() {
        assert_eq!(SocksReply::from_code(2), SocksReply::NotAllowed);
        assert_eq!(SocksReply::from_code(5), SocksReply::ConnectionRefused);
        assert_eq!(SocksReply::from_code(9), SocksReply::Other(9));
        assert!(!SocksReply::NotAllowed.is_retryable());
        assert!(SocksReply::HostUnreachable.is_retryable());
    }
}

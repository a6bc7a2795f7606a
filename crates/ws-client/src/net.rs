//! Reaching a host: resolving its name, and connecting to the first of its
//! addresses that answers (RFC 8305, Happy Eyeballs). The client uses it
//! for targets and for proxies alike.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpStream;
use url::Host;

use crate::error::ConnectError;

/// The addresses of `host`, in the resolver's order: at least one.
pub(crate) async fn resolve(
    host: &Host<String>,
    port: u16,
) -> Result<Vec<SocketAddr>, ConnectError> {
    match host {
        Host::Ipv4(ip) => Ok(vec![SocketAddr::new((*ip).into(), port)]),
        Host::Ipv6(ip) => Ok(vec![SocketAddr::new((*ip).into(), port)]),
        Host::Domain(name) => {
            let resolve_error = |source| ConnectError::Resolve {
                host: name.clone(),
                source,
            };
            let addrs: Vec<_> = tokio::net::lookup_host((name.as_str(), port))
                .await
                .map_err(resolve_error)?
                .collect();
            if addrs.is_empty() {
                let none = std::io::Error::new(std::io::ErrorKind::NotFound, "no addresses");
                return Err(resolve_error(none));
            }
            Ok(addrs)
        }
    }
}

/// RFC 8305 section 5: the "Connection Attempt Delay", after which the
/// next address is tried while the previous attempt goes on; "a default
/// of 250 milliseconds".
const ATTEMPT_DELAY: Duration = Duration::from_millis(250);

/// Connects to the first of `addrs` that accepts, racing them as RFC 8305
/// (Happy Eyeballs) does: the families alternate, IPv6 first; each attempt
/// gets [`ATTEMPT_DELAY`] on its own before the next one starts beside it,
/// and a failed attempt starts the next at once. An address that drops
/// packets therefore costs a quarter of a second, not the whole connect
/// timeout (which bounds the race as a whole).
pub(crate) async fn connect_any(addrs: &[SocketAddr]) -> Result<TcpStream, ConnectError> {
    let mut queue = interleave_families(addrs).into_iter();
    let mut attempts = tokio::task::JoinSet::new();
    let mut last = None;
    loop {
        if attempts.is_empty() {
            let Some(addr) = queue.next() else { break };
            attempts.spawn(async move { (addr, TcpStream::connect(addr).await) });
        }
        let more = queue.len() > 0;
        tokio::select! {
            Some(joined) = attempts.join_next() => {
                let Ok((addr, result)) = joined else { continue };
                match result {
                    // The attempts still going are aborted with the set.
                    Ok(stream) => return Ok(stream),
                    Err(error) => {
                        tracing::debug!(%addr, %error, "connect failed; trying the next address");
                        last = Some((addr, error));
                        if let Some(next) = queue.next() {
                            attempts.spawn(async move { (next, TcpStream::connect(next).await) });
                        }
                    }
                }
            }
            () = tokio::time::sleep(ATTEMPT_DELAY), if more => {
                if let Some(next) = queue.next() {
                    tracing::debug!(%next, "no answer yet: trying the next address beside it");
                    attempts.spawn(async move { (next, TcpStream::connect(next).await) });
                }
            }
        }
    }
    Err(match last {
        Some((addr, error)) if error.kind() == std::io::ErrorKind::ConnectionRefused => {
            ConnectError::Refused { addr }
        }
        Some((_, error)) => ConnectError::Io(error),
        None => ConnectError::Io(std::io::ErrorKind::NotFound.into()),
    })
}

/// RFC 8305 section 4: the addresses in the resolver's order, with the
/// families alternating ("the first IPv6 address, then the first IPv4
/// address, and so on"), IPv6 first.
fn interleave_families(addrs: &[SocketAddr]) -> Vec<SocketAddr> {
    let (v6, v4): (Vec<SocketAddr>, Vec<SocketAddr>) = addrs.iter().partition(|a| a.is_ipv6());
    let mut out = Vec::with_capacity(addrs.len());
    let (mut v6, mut v4) = (v6.into_iter(), v4.into_iter());
    loop {
        match (v6.next(), v4.next()) {
            (None, None) => return out,
            (a, b) => out.extend(a.into_iter().chain(b)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A listener on 127.0.0.1 that answers no connection: its accept
    /// queue is full, so the kernel drops further SYNs and a connect hangs,
    /// like an address that drops packets.
    async fn black_hole() -> (
        SocketAddr,
        Vec<std::net::TcpStream>,
        tokio::net::TcpListener,
    ) {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = socket.listen(1).unwrap();
        let addr = listener.local_addr().unwrap();
        let mut fillers = Vec::new();
        for _ in 0..8 {
            let filler = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(100));
            match filler {
                Ok(filler) => fillers.push(filler),
                Err(_) => break,
            }
        }
        (addr, fillers, listener)
    }

    /// Issue 25, item 14: a first address that drops packets no longer
    /// uses the whole connect timeout; the next one is tried beside it
    /// after the attempt delay.
    #[tokio::test]
    async fn an_address_that_drops_packets_does_not_hold_up_the_next() {
        let (hole, _fillers, _hole_listener) = black_hole().await;
        let good = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let good_addr = good.local_addr().unwrap();
        let connected =
            tokio::time::timeout(Duration::from_secs(20), connect_any(&[hole, good_addr]))
                .await
                .expect("not held up by the first address")
                .unwrap();
        assert_eq!(connected.peer_addr().unwrap(), good_addr);
    }

    #[test]
    fn section_4_of_rfc_8305_families_alternate_ipv6_first() {
        let a4: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let b4: SocketAddr = "127.0.0.2:1".parse().unwrap();
        let c4: SocketAddr = "127.0.0.3:1".parse().unwrap();
        let a6: SocketAddr = "[::1]:1".parse().unwrap();
        assert_eq!(interleave_families(&[a4, b4, a6, c4]), [a6, a4, b4, c4]);
        assert_eq!(interleave_families(&[a4, b4]), [a4, b4]);
    }

    #[tokio::test]
    async fn each_address_is_tried_in_turn() {
        let refused = {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            listener.local_addr().unwrap()
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let good = listener.local_addr().unwrap();

        let stream = connect_any(&[refused, good]).await.unwrap();
        assert_eq!(stream.peer_addr().unwrap(), good);
        assert!(matches!(
            connect_any(&[good, refused]).await,
            Ok(stream) if stream.peer_addr().unwrap() == good
        ));
        assert!(matches!(
            connect_any(&[refused]).await,
            Err(ConnectError::Refused { addr }) if addr == refused
        ));
    }
}

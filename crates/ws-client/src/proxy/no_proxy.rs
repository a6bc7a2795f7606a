//! `NO_PROXY`: the hosts reached directly, as curl reads the variable.

use std::net::IpAddr;

use url::Host;

/// One entry of `NO_PROXY`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    /// `*`: every host.
    All,
    /// A host name: itself and its subdomains (`example.com` and
    /// `.example.com` both match `example.com` and `a.example.com`).
    Suffix(String),
    /// An address, or a network in CIDR notation (`10.0.0.0/8`,
    /// `fd00::/8`): addresses in it.
    Network(IpAddr, u8),
}

/// The parsed `NO_PROXY` list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct NoProxy(Vec<Entry>);

impl NoProxy {
    /// Parses a comma-separated list; blanks and spaces are ignored, and so
    /// is a port after a name (`example.com:8080` counts as `example.com`).
    pub(crate) fn parse(list: &str) -> Self {
        let entries = list
            .split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(|entry| {
                if entry == "*" {
                    return Entry::All;
                }
                let (addr, bits) = match entry.split_once('/') {
                    Some((addr, bits)) => (addr, bits.parse().ok()),
                    None => (entry, None),
                };
                let bare = addr.trim_start_matches('[').trim_end_matches(']');
                if let Ok(ip) = bare.parse::<IpAddr>() {
                    let max = if ip.is_ipv4() { 32 } else { 128 };
                    return Entry::Network(ip, bits.unwrap_or(max).min(max));
                }
                let name = match entry.rsplit_once(':') {
                    Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
                    _ => entry,
                };
                Entry::Suffix(name.trim_start_matches('.').to_ascii_lowercase())
            })
            .collect();
        Self(entries)
    }

    /// Whether `host` is to be reached directly.
    pub(crate) fn matches(&self, host: &Host<String>) -> bool {
        self.0.iter().any(|entry| match (entry, host) {
            (Entry::All, _) => true,
            (Entry::Suffix(suffix), Host::Domain(name)) => {
                let name = name.trim_end_matches('.').to_ascii_lowercase();
                name == *suffix
                    || name
                        .strip_suffix(suffix.as_str())
                        .is_some_and(|rest| rest.ends_with('.'))
            }
            (Entry::Network(net, bits), Host::Ipv4(ip)) => in_network(IpAddr::V4(*ip), *net, *bits),
            (Entry::Network(net, bits), Host::Ipv6(ip)) => in_network(IpAddr::V6(*ip), *net, *bits),
            _ => false,
        })
    }
}

fn in_network(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(ip), IpAddr::V4(net)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
            u32::from(ip) & mask == u32::from(net) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(net)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
            u128::from(ip) & mask == u128::from(net) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(s: &str) -> Host<String> {
        Host::parse(s).unwrap()
    }

    #[test]
    fn names_match_themselves_and_their_subdomains_only() {
        let list = NoProxy::parse("example.com, .corp.internal,localhost:8080");
        assert!(list.matches(&host("example.com")));
        assert!(list.matches(&host("a.b.EXAMPLE.com")));
        assert!(!list.matches(&host("badexample.com")));
        assert!(list.matches(&host("corp.internal")));
        assert!(list.matches(&host("svc.corp.internal")));
        assert!(list.matches(&host("localhost")));
        assert!(!list.matches(&host("example.org")));
    }

    #[test]
    fn addresses_and_networks_match_addresses() {
        let list = NoProxy::parse("127.0.0.1,10.0.0.0/8,[::1],fd00::/8");
        assert!(list.matches(&host("127.0.0.1")));
        assert!(!list.matches(&host("127.0.0.2")));
        assert!(list.matches(&host("10.200.3.4")));
        assert!(!list.matches(&host("11.0.0.1")));
        assert!(list.matches(&host("[::1]")));
        assert!(list.matches(&host("[fd12::5]")));
        assert!(!list.matches(&host("[fe80::1]")));
        // A name is not an address, even one that resolves to it.
        assert!(!list.matches(&host("localhost")));
    }

    #[test]
    fn a_star_matches_everything_and_an_empty_list_nothing() {
        assert!(NoProxy::parse("*").matches(&host("anything.example")));
        assert!(!NoProxy::parse("").matches(&host("anything.example")));
        assert!(!NoProxy::parse(" , ").matches(&host("127.0.0.1")));
        // /0 is every address of its family.
        assert!(NoProxy::parse("0.0.0.0/0").matches(&host("8.8.8.8")));
    }
}

//! Connections per client address, for `max_connections_per_ip`.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};

/// The address a limit counts: IPv4 as it is (an IPv4-mapped IPv6 address as its IPv4), IPv6
/// by its /64 — one subscriber line usually holds a whole /64.
pub(crate) fn peer_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(Ipv6Addr::from(prefix))
            }
        },
    }
}

/// Open connections by [`peer_key`].
#[derive(Default)]
pub(crate) struct PeerCounts {
    counts: HashMap<IpAddr, usize>,
}

impl PeerCounts {
    /// Counts one more connection from `key` unless it has `limit` already (0: no limit).
    pub fn try_add(&mut self, key: IpAddr, limit: usize) -> bool {
        let count = self.counts.entry(key).or_default();
        if limit > 0 && *count >= limit {
            return false;
        }
        *count += 1;
        true
    }

    /// Forgets one connection from `key`.
    pub fn remove(&mut self, key: IpAddr) {
        if let Some(count) = self.counts.get_mut(&key) {
            *count -= 1;
            if *count == 0 {
                self.counts.remove(&key);
            }
        }
    }

    /// Addresses with at least one connection.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.counts.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counted_per_address_and_per_ipv6_64() {
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let mut peers = PeerCounts::default();
        assert!(peers.try_add(a, 2));
        assert!(peers.try_add(a, 2));
        assert!(!peers.try_add(a, 2));
        assert!(peers.try_add("10.0.0.2".parse().unwrap(), 2));
        peers.remove(a);
        assert!(peers.try_add(a, 2));
        assert!(peers.try_add(a, 0), "0 is no limit");
        assert_eq!(
            peer_key("2001:db8:1:2:aaaa::1".parse().unwrap()),
            peer_key("2001:db8:1:2:bbbb::2".parse().unwrap())
        );
        assert_ne!(
            peer_key("2001:db8:1:2::1".parse().unwrap()),
            peer_key("2001:db8:1:3::1".parse().unwrap())
        );
        assert_eq!(peer_key("::ffff:10.0.0.1".parse().unwrap()), a);
        for _ in 0..3 {
            peers.remove(a);
        }
        peers.remove("10.0.0.2".parse().unwrap());
        assert_eq!(peers.len(), 0, "nothing kept for gone addresses");
    }
}

//! Which proxies may say who the client is: the client address a rate limit keys on.
//!
//! `X-Forwarded-For` is written by whoever sends the request, so it names the client only
//! where a proxy of ours appended to it. Every proxy appends the address it received the
//! request from; read from the right, past our own proxies, the first address is the client's
//! as seen by the outermost proxy we trust. Anything further left was written by the client.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use axum::extract::ConnectInfo;
use infra_core::{Env, Error, Result};
use ipnet::IpNet;

/// The variable naming the proxies in front of the app.
pub const TRUSTED_PROXIES_VAR: &str = "INFRA_TRUSTED_PROXIES";

/// Who may name the client in `X-Forwarded-For`.
#[derive(Clone, Default, PartialEq, Eq)]
pub enum TrustedProxies {
    /// Nobody: the client is the socket's peer and forwarding headers are ignored.
    #[default]
    None,
    /// Peers in these networks are our proxies: when the peer is one, `X-Forwarded-For` is
    /// read from the right, skipping addresses in these networks; the first other address is
    /// the client.
    Networks(Vec<IpNet>),
    /// Exactly this many proxies stand in front of the app and every request passes through
    /// them (a platform's router): the client is the `n`-th `X-Forwarded-For` entry from the
    /// right. With fewer entries the request did not come through them: the peer counts.
    Hops(usize),
}

impl fmt::Debug for TrustedProxies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrustedProxies::None => f.write_str("TrustedProxies::None"),
            TrustedProxies::Networks(nets) => {
                let nets: Vec<String> = nets.iter().map(IpNet::to_string).collect();
                write!(f, "TrustedProxies::Networks({})", nets.join(", "))
            }
            TrustedProxies::Hops(n) => write!(f, "TrustedProxies::Hops({n})"),
        }
    }
}

impl TrustedProxies {
    /// From `INFRA_TRUSTED_PROXIES`: unset means [`TrustedProxies::None`]; a number of hops
    /// (`1`, `2`); or a comma-separated list of networks and addresses (`10.0.0.0/8,
    /// 192.168.1.7, fd00::/8`).
    pub fn from_env(env: &Env) -> Result<Self> {
        match env.get(TRUSTED_PROXIES_VAR) {
            None => Ok(TrustedProxies::None),
            Some(raw) => TrustedProxies::parse(&raw)
                .map_err(|problem| Error::config(TRUSTED_PROXIES_VAR, problem)),
        }
    }

    /// Parses the variable's value; the error says what is wrong with it.
    pub fn parse(raw: &str) -> std::result::Result<Self, String> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Ok(TrustedProxies::None);
        }
        if raw.bytes().all(|b| b.is_ascii_digit()) {
            return match raw.parse::<usize>() {
                Ok(0) => Err(
                    "a hop count must be at least 1 (leave the variable unset to trust no proxy)"
                        .to_owned(),
                ),
                Ok(hops) => Ok(TrustedProxies::Hops(hops)),
                Err(_) => Err(format!("`{raw}` is not a usable hop count")),
            };
        }
        let mut networks = Vec::new();
        for item in raw.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let net = match item.parse::<IpNet>() {
                Ok(net) => net.trunc(),
                Err(_) => match item.parse::<IpAddr>() {
                    Ok(ip) => IpNet::from(ip.to_canonical()),
                    Err(_) => {
                        return Err(format!(
                            "`{item}` is neither an address nor a network (CIDR such as 10.0.0.0/8)"
                        ));
                    }
                },
            };
            networks.push(net);
        }
        Ok(TrustedProxies::Networks(networks))
    }

    fn trusts(networks: &[IpNet], ip: IpAddr) -> bool {
        networks.iter().any(|net| net.contains(&ip))
    }

    /// The client's address for a request; `None` when it cannot be known: the request
    /// carries no `ConnectInfo<SocketAddr>` (the server does not give the peer address) and
    /// the forwarding headers cannot stand in for it.
    pub fn client_ip(&self, parts: &http::request::Parts) -> Option<IpAddr> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|info| info.0.ip().to_canonical());
        match self {
            TrustedProxies::None => peer,
            TrustedProxies::Hops(hops) => {
                let entries = forwarded_for(&parts.headers);
                if entries.len() < *hops {
                    return peer;
                }
                parse_entry(entries[entries.len() - hops]).or(peer)
            }
            TrustedProxies::Networks(networks) => {
                let peer = peer?;
                if !Self::trusts(networks, peer) {
                    return Some(peer);
                }
                // The nearest address a trusted proxy vouched for.
                let mut client = peer;
                for entry in forwarded_for(&parts.headers).iter().rev() {
                    match parse_entry(entry) {
                        Some(ip) if Self::trusts(networks, ip) => client = ip,
                        Some(ip) => return Some(ip),
                        // Not an address: no proxy of ours wrote it.
                        None => return Some(client),
                    }
                }
                Some(client)
            }
        }
    }
}

/// The `X-Forwarded-For` entries of every such header, in order.
fn forwarded_for(headers: &http::HeaderMap) -> Vec<&str> {
    headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .collect()
}

/// An entry as proxies write it: an address, possibly with a port (`1.2.3.4:80`,
/// `[2001:db8::1]:80`).
fn parse_entry(entry: &str) -> Option<IpAddr> {
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|s| s.ip()))
        .map(|ip| ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(peer: Option<&str>, xff: &[&str]) -> http::request::Parts {
        let mut builder = http::Request::get("/");
        for value in xff {
            builder = builder.header("x-forwarded-for", *value);
        }
        let (mut parts, ()) = builder.body(()).unwrap().into_parts();
        if let Some(peer) = peer {
            parts
                .extensions
                .insert(ConnectInfo(peer.parse::<SocketAddr>().unwrap()));
        }
        parts
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn without_trusted_proxies_the_peer_is_the_client() {
        let trust = TrustedProxies::None;
        let forged = parts(Some("198.51.100.4:5000"), &["203.0.113.1"]);
        assert_eq!(trust.client_ip(&forged), ip("198.51.100.4"));
        assert_eq!(trust.client_ip(&parts(None, &["203.0.113.1"])), None);
        let mapped = parts(Some("[::ffff:198.51.100.4]:5000"), &[]);
        assert_eq!(trust.client_ip(&mapped), ip("198.51.100.4"));
    }

    #[test]
    fn trusted_networks_are_skipped_from_the_right() {
        let trust = TrustedProxies::parse("10.0.0.0/8, 192.168.1.7").unwrap();
        // The client wrote "1.1.1.1"; our edge proxy appended the real address.
        let chain = parts(Some("10.0.0.2:443"), &["1.1.1.1, 203.0.113.9", "10.0.0.5"]);
        assert_eq!(trust.client_ip(&chain), ip("203.0.113.9"));
        // A peer that is not our proxy is the client, whatever it says.
        let direct = parts(Some("198.51.100.4:1"), &["203.0.113.9"]);
        assert_eq!(trust.client_ip(&direct), ip("198.51.100.4"));
        // Only proxies in the chain: the outermost one is the best we know.
        let internal = parts(Some("10.0.0.2:1"), &["192.168.1.7"]);
        assert_eq!(trust.client_ip(&internal), ip("192.168.1.7"));
        // Garbage where a proxy would have written an address: the last vouched-for hop.
        let garbage = parts(Some("10.0.0.2:1"), &["nonsense, 10.0.0.9"]);
        assert_eq!(trust.client_ip(&garbage), ip("10.0.0.9"));
        let ported = parts(Some("10.0.0.2:1"), &["[2001:db8::7]:4711"]);
        assert_eq!(trust.client_ip(&ported), ip("2001:db8::7"));
    }

    #[test]
    fn hops_count_from_the_right() {
        let trust = TrustedProxies::parse("2").unwrap();
        let chain = parts(Some("10.0.0.2:1"), &["6.6.6.6, 203.0.113.9, 10.1.1.1"]);
        assert_eq!(trust.client_ip(&chain), ip("203.0.113.9"));
        let short = parts(Some("198.51.100.4:1"), &["6.6.6.6"]);
        assert_eq!(trust.client_ip(&short), ip("198.51.100.4"));
    }

    #[test]
    fn the_variable_is_checked() {
        assert_eq!(TrustedProxies::parse("").unwrap(), TrustedProxies::None);
        assert!(
            TrustedProxies::parse("0")
                .unwrap_err()
                .contains("at least 1")
        );
        assert!(TrustedProxies::parse("10.0.0.0/33").is_err());
        assert!(TrustedProxies::parse("proxy.internal").is_err());
        let err =
            TrustedProxies::from_env(&Env::from_pairs([(TRUSTED_PROXIES_VAR, "x")])).unwrap_err();
        assert_eq!(err.variable(), Some(TRUSTED_PROXIES_VAR));
        assert_eq!(
            format!("{:?}", TrustedProxies::parse("10.1.2.3/8").unwrap()),
            "TrustedProxies::Networks(10.0.0.0/8)"
        );
    }
}

//! Which IP a request comes from. The socket's peer, unless that peer is a configured trusted
//! proxy: then the **one** forwarding header the operator named ([`ClientIpHeader`],
//! `SESSIOND_CLIENT_IP_HEADER`) is read **from the right**, skipping trusted proxies, and the
//! first address not trusted is the client. Anything to its left was written by the client
//! itself and is never believed. A header sent by an untrusted peer is ignored entirely.
//!
//! Only the named header is read, never another: nginx, an AWS ALB or HAProxy append their
//! peer to `X-Forwarded-For` and pass every other header through untouched, so a `Forwarded`
//! (or `X-Real-IP`) header behind them is whatever the client wrote. Reading a second header
//! "when present" would let any client pick its own IP.

use std::net::IpAddr;

use axum::http::HeaderMap;

/// An IP network (`10.0.0.0/8`, `::1/128`, or a bare address meaning a single host).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `addr/prefix` or a bare address.
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| format!("{s:?} is not an IP address or CIDR network"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{s:?}: the prefix length must be 0–{max}"))?,
        };
        Ok(Cidr { addr, prefix })
    }

    /// Whether `ip` is inside the network (an IPv4-mapped IPv6 address counts as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - self.prefix as u32).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - self.prefix as u32).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// `::ffff:a.b.c.d` → `a.b.c.d`, so one client has one key.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The one header the trusted proxies set (`SESSIOND_CLIENT_IP_HEADER`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ClientIpHeader {
    /// `X-Forwarded-For` (the default; what nginx, ALBs and HAProxy append to), read right to
    /// left skipping trusted proxies.
    #[default]
    XForwardedFor,
    /// RFC 7239 `Forwarded` (its `for=` parameters), read like `X-Forwarded-For`.
    Forwarded,
    /// `X-Real-IP`: a single address set by the trusted peer (nginx `proxy_set_header
    /// X-Real-IP $remote_addr`); a list or a second header line is not believed.
    XRealIp,
    /// No header: the socket's peer is the client (no proxy in front).
    None,
}

impl ClientIpHeader {
    /// Parses a setting value (case-insensitive).
    pub fn parse(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "x-forwarded-for" => Ok(Self::XForwardedFor),
            "forwarded" => Ok(Self::Forwarded),
            "x-real-ip" => Ok(Self::XRealIp),
            "none" => Ok(Self::None),
            _ => Err(format!(
                "{s:?} must be x-forwarded-for, forwarded, x-real-ip or none"
            )),
        }
    }

    /// The setting value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::XForwardedFor => "x-forwarded-for",
            Self::Forwarded => "forwarded",
            Self::XRealIp => "x-real-ip",
            Self::None => "none",
        }
    }
}

/// The client's IP: see the module documentation.
pub fn client_ip(
    peer: IpAddr,
    headers: &HeaderMap,
    trusted: &[Cidr],
    header: ClientIpHeader,
) -> IpAddr {
    let peer = canonical(peer);
    let is_trusted = |ip: IpAddr| trusted.iter().any(|c| c.contains(ip));
    if trusted.is_empty() || !is_trusted(peer) {
        return peer;
    }
    let chain = match header {
        ClientIpHeader::XForwardedFor => x_forwarded_for_chain(headers),
        ClientIpHeader::Forwarded => forwarded_chain(headers),
        ClientIpHeader::XRealIp => {
            return x_real_ip(headers).map_or(peer, canonical);
        }
        ClientIpHeader::None => return peer,
    };
    let Some(chain) = chain else { return peer };
    // Right to left: the right-most entry was appended by our trusted peer.
    let mut client = peer;
    for hop in chain.iter().rev() {
        match hop {
            Some(ip) => {
                client = canonical(*ip);
                if !is_trusted(client) {
                    return client;
                }
            }
            // An unparseable or obfuscated hop: stop trusting further left; the last address
            // vouched for by a trusted proxy is the best we know.
            None => return client,
        }
    }
    client
}

/// The single address of a single `X-Real-IP` header line; None (the peer is used) for a
/// missing, repeated, listed or unparseable value: the trusted proxy sets exactly one.
fn x_real_ip(headers: &HeaderMap) -> Option<IpAddr> {
    let mut values = headers.get_all("x-real-ip").iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return None;
    };
    parse_hop(value.to_str().ok()?.trim())
}

/// Hops of every `X-Forwarded-For` header, in order (None for an unparseable hop).
fn x_forwarded_for_chain(headers: &HeaderMap) -> Option<Vec<Option<IpAddr>>> {
    let mut chain = Vec::new();
    for value in headers.get_all("x-forwarded-for") {
        let Ok(text) = value.to_str() else {
            chain.push(None);
            continue;
        };
        chain.extend(text.split(',').map(|hop| parse_hop(hop.trim())));
    }
    (!chain.is_empty()).then_some(chain)
}

/// `for=` values of every `Forwarded` header element, in order.
fn forwarded_chain(headers: &HeaderMap) -> Option<Vec<Option<IpAddr>>> {
    let mut chain = Vec::new();
    for value in headers.get_all("forwarded") {
        let Ok(text) = value.to_str() else {
            chain.push(None);
            continue;
        };
        for element in text.split(',') {
            let hop = element.split(';').find_map(|pair| {
                let (k, v) = pair.split_once('=')?;
                k.trim().eq_ignore_ascii_case("for").then(|| v.trim())
            });
            if let Some(hop) = hop {
                chain.push(parse_hop(hop.trim_matches('"')));
            }
        }
    }
    (!chain.is_empty()).then_some(chain)
}

/// The key part of `ip` for every per-IP rule: an IPv4 address (IPv4-mapped IPv6 included) as
/// itself, an IPv6 address as its `/ipv6_prefix` network (`2001:db8:1:2::/64`). One IPv6
/// subscriber is routinely given a whole /64 (or /56, /48), so per-address keys would hand an
/// attacker 2^64 fresh budgets.
pub fn limit_key(ip: IpAddr, ipv6_prefix: u8) -> String {
    match canonical(ip) {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let prefix = u32::from(ipv6_prefix.clamp(1, 128));
            let mask = u128::MAX.checked_shl(128 - prefix).unwrap_or(0);
            let network = std::net::Ipv6Addr::from(u128::from(v6) & mask);
            format!("{network}/{prefix}")
        }
    }
}

/// `1.2.3.4`, `1.2.3.4:5678`, `[2001:db8::1]`, `[2001:db8::1]:443` or a bare IPv6 address.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Some(rest) = hop.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok();
    }
    let (host, port) = hop.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    host.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    const XFF: ClientIpHeader = ClientIpHeader::XForwardedFor;

    #[test]
    fn cidr_parsing_and_matching() {
        let net = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(net.contains(ip("10.1.2.3")));
        assert!(net.contains(ip("::ffff:10.1.2.3")));
        assert!(!net.contains(ip("11.0.0.1")));
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains(ip("8.8.8.8")));
        assert!(Cidr::parse("::1").unwrap().contains(ip("::1")));
        assert!(
            Cidr::parse("2001:db8::/32")
                .unwrap()
                .contains(ip("2001:db8:1::5"))
        );
        for bad in ["", "10.0.0.0/33", "::/129", "example.com", "10.0.0.0/x"] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn headers_from_untrusted_peers_are_ignored() {
        let h = headers(&[("x-forwarded-for", "1.2.3.4"), ("forwarded", "for=5.6.7.8")]);
        assert_eq!(client_ip(ip("9.9.9.9"), &h, &[], XFF), ip("9.9.9.9"));
        let trusted = [Cidr::parse("10.0.0.0/8").unwrap()];
        assert_eq!(client_ip(ip("9.9.9.9"), &h, &trusted, XFF), ip("9.9.9.9"));
    }

    #[test]
    fn the_rightmost_untrusted_hop_is_the_client() {
        let trusted = [Cidr::parse("10.0.0.0/8").unwrap()];
        // The client forged "6.6.6.6"; our proxies appended the real address and each other.
        let h = headers(&[("x-forwarded-for", "6.6.6.6, 1.2.3.4, 10.0.0.2")]);
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &trusted, XFF), ip("1.2.3.4"));
        // Several header lines are one list.
        let h = headers(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-for", "1.2.3.4:5555"),
        ]);
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &trusted, XFF), ip("1.2.3.4"));
        // Only trusted hops: the left-most one.
        let h = headers(&[("x-forwarded-for", "10.0.0.9, 10.0.0.2")]);
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &trusted, XFF), ip("10.0.0.9"));
        // No header: the proxy itself.
        assert_eq!(
            client_ip(ip("10.0.0.1"), &HeaderMap::new(), &trusted, XFF),
            ip("10.0.0.1")
        );
        // Garbage hop: stop there.
        let h = headers(&[("x-forwarded-for", "1.2.3.4, garbage, 10.0.0.2")]);
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &trusted, XFF), ip("10.0.0.2"));
    }

    #[test]
    fn only_the_configured_header_is_read() {
        let trusted = [Cidr::parse("127.0.0.1").unwrap()];
        let peer = ip("127.0.0.1");
        // Behind nginx/ALB/HAProxy: the proxy appended the real peer to X-Forwarded-For and
        // passed the client's own Forwarded and X-Real-IP through.
        let h = headers(&[
            ("x-forwarded-for", "7.7.7.7"),
            (
                "forwarded",
                "for=6.6.6.6, for=\"[2001:db8::7]:4711\";proto=https",
            ),
            ("x-real-ip", "5.5.5.5"),
        ]);
        assert_eq!(client_ip(peer, &h, &trusted, XFF), ip("7.7.7.7"));
        assert_eq!(
            client_ip(peer, &h, &trusted, ClientIpHeader::Forwarded),
            ip("2001:db8::7")
        );
        assert_eq!(
            client_ip(peer, &h, &trusted, ClientIpHeader::XRealIp),
            ip("5.5.5.5")
        );
        assert_eq!(client_ip(peer, &h, &trusted, ClientIpHeader::None), peer);
        // A client-sent Forwarded never stands in for a missing X-Forwarded-For.
        let h = headers(&[("forwarded", "for=6.6.6.6")]);
        assert_eq!(client_ip(peer, &h, &trusted, XFF), peer);
        let h = headers(&[("x-forwarded-for", "6.6.6.6")]);
        assert_eq!(
            client_ip(peer, &h, &trusted, ClientIpHeader::Forwarded),
            peer
        );
    }

    #[test]
    fn x_real_ip_is_one_value_from_a_trusted_peer() {
        let trusted = [Cidr::parse("10.0.0.0/8").unwrap()];
        let real = ClientIpHeader::XRealIp;
        let h = headers(&[("x-real-ip", "1.2.3.4")]);
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &trusted, real), ip("1.2.3.4"));
        assert_eq!(
            client_ip(ip("9.9.9.9"), &h, &trusted, real),
            ip("9.9.9.9"),
            "not from an untrusted peer"
        );
        for forged in [
            headers(&[("x-real-ip", "1.2.3.4, 5.6.7.8")]),
            headers(&[("x-real-ip", "1.2.3.4"), ("x-real-ip", "5.6.7.8")]),
            headers(&[("x-real-ip", "garbage")]),
        ] {
            assert_eq!(
                client_ip(ip("10.0.0.1"), &forged, &trusted, real),
                ip("10.0.0.1")
            );
        }
        let h = headers(&[("x-real-ip", "[2001:db8::1]:443")]);
        assert_eq!(
            client_ip(ip("10.0.0.1"), &h, &trusted, real),
            ip("2001:db8::1")
        );
    }

    #[test]
    fn header_setting_parses() {
        for h in [
            XFF,
            ClientIpHeader::Forwarded,
            ClientIpHeader::XRealIp,
            ClientIpHeader::None,
        ] {
            assert_eq!(ClientIpHeader::parse(h.as_str()), Ok(h));
        }
        assert_eq!(
            ClientIpHeader::parse("X-Forwarded-For"),
            Ok(ClientIpHeader::XForwardedFor)
        );
        assert!(ClientIpHeader::parse("x-client-ip").is_err());
    }

    #[test]
    fn ipv6_clients_are_keyed_by_prefix_ipv4_by_address() {
        assert_eq!(limit_key(ip("192.0.2.1"), 64), "192.0.2.1");
        assert_eq!(limit_key(ip("::ffff:192.0.2.1"), 64), "192.0.2.1");
        assert_eq!(limit_key(ip("2001:db8:1:2::1"), 64), "2001:db8:1:2::/64");
        assert_eq!(
            limit_key(ip("2001:db8:1:2:ffff:1:2:3"), 64),
            limit_key(ip("2001:db8:1:2::9"), 64)
        );
        assert_ne!(
            limit_key(ip("2001:db8:1:3::1"), 64),
            limit_key(ip("2001:db8:1:2::1"), 64)
        );
        assert_eq!(limit_key(ip("2001:db8:1:2::1"), 48), "2001:db8:1::/48");
        assert_eq!(limit_key(ip("2001:db8::1"), 128), "2001:db8::1/128");
        assert_eq!(limit_key(ip("2001:db8::1"), 1), "::/1");
    }
}

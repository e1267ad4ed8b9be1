//! [`Prefix`]: an address or a CIDR block, as access lists name peers (a DNS service's
//! `allow_transfer`, an HTTP service's `allow` and `deny`).

use std::net::IpAddr;

/// An IP address or a CIDR block (`192.0.2.7`, `198.51.100.0/24`, `2001:db8::/32`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prefix {
    /// The network address, with the bits past `len` cleared.
    addr: IpAddr,
    /// How many leading bits must match.
    len: u8,
}

/// A string that is not an address or a CIDR block.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an IP address or a CIDR block such as \"192.0.2.0/24\" or \"2001:db8::/32\"")]
pub struct PrefixError(pub String);

impl Prefix {
    /// Whether `ip` is inside the block. An IPv4 address mapped into IPv6 (a dual-stack
    /// listener's peers) is taken as the IPv4 address it is.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                masked(u128::from(ip.to_bits()), self.len, 32) == u128::from(net.to_bits())
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                masked(ip.to_bits(), self.len, 128) == net.to_bits()
            }
            _ => false,
        }
    }
}

impl Prefix {
    /// The block's first address (the one written, with the bits past its length
    /// cleared).
    pub fn network(&self) -> IpAddr {
        self.addr
    }

    /// How many leading bits an address must share with the block (0: every address).
    pub fn length(&self) -> u8 {
        self.len
    }

    /// Whether every address of `other` is inside this block.
    pub fn covers(&self, other: &Prefix) -> bool {
        self.len <= other.len && self.contains(other.addr)
    }
}

/// `bits` (of a `width`-bit address) with all but the first `len` cleared.
fn masked(bits: u128, len: u8, width: u8) -> u128 {
    if len == 0 {
        return 0;
    }
    let shift = u32::from(width - len);
    (bits >> shift) << shift
}

impl std::str::FromStr for Prefix {
    type Err = PrefixError;

    fn from_str(s: &str) -> Result<Self, PrefixError> {
        let bad = || PrefixError(s.to_owned());
        let (addr, len) = match s.split_once('/') {
            Some((addr, len)) => (addr, Some(len)),
            None => (s, None),
        };
        let addr: IpAddr = addr.trim().parse().map_err(|_| bad())?;
        let width = if addr.is_ipv4() { 32 } else { 128 };
        let len = match len.map(str::trim) {
            Some(len) if !len.is_empty() && len.bytes().all(|b| b.is_ascii_digit()) => len
                .parse::<u8>()
                .ok()
                .filter(|l| *l <= width)
                .ok_or_else(bad)?,
            Some(_) => return Err(bad()),
            None => width,
        };
        // A block of IPv4 addresses written in IPv6's mapped form (`::ffff:10.0.0.0/104`)
        // is that IPv4 block: peers are matched as the IPv4 addresses they are.
        let (addr, len) = match addr {
            IpAddr::V6(v6) if len >= 96 => match v6.to_ipv4_mapped() {
                Some(v4) => (IpAddr::V4(v4), len - 96),
                None => (addr, len),
            },
            _ => (addr, len),
        };
        let addr = match addr {
            IpAddr::V4(v4) => {
                IpAddr::V4(std::net::Ipv4Addr::from_bits(
                    masked(u128::from(v4.to_bits()), len, 32) as u32,
                ))
            }
            IpAddr::V6(v6) => IpAddr::V6(std::net::Ipv6Addr::from_bits(masked(
                v6.to_bits(),
                len,
                128,
            ))),
        };
        Ok(Self { addr, len })
    }
}

impl std::fmt::Display for Prefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Prefix {
        s.parse().unwrap()
    }

    #[test]
    fn addresses_and_blocks_match_their_members_only() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(p("127.0.0.1").contains(ip("127.0.0.1")));
        assert!(!p("127.0.0.1").contains(ip("127.0.0.2")));
        assert!(p("198.51.100.9/24").contains(ip("198.51.100.200")));
        assert!(!p("198.51.100.0/24").contains(ip("198.51.101.1")));
        assert!(p("0.0.0.0/0").contains(ip("203.0.113.5")));
        assert!(!p("0.0.0.0/0").contains(ip("::1")), "families never mix");
        assert!(p("2001:db8::/32").contains(ip("2001:db8:ffff::1")));
        assert!(
            p("127.0.0.0/8").contains(ip("::ffff:127.0.0.9")),
            "v4-mapped peers"
        );
        assert_eq!(p("198.51.100.9/24").to_string(), "198.51.100.0/24");
        assert!(
            p("::ffff:10.0.0.0/104").contains(ip("10.1.2.3")),
            "a mapped block is IPv4"
        );
        assert_eq!(p("::ffff:10.0.0.0/104").to_string(), "10.0.0.0/8");
        for bad in [
            "",
            "example.test",
            "10.0.0.0/33",
            "::/129",
            "10.0.0.0/x",
            "10.0.0.0/+8",
            "10.0.0.0/",
        ] {
            assert!(bad.parse::<Prefix>().is_err(), "{bad}");
        }
    }
}

//! The client behind a trusted proxy (`trusted_proxies`), as nginx's `set_real_ip_from`
//! with `real_ip_header X-Forwarded-For` and `real_ip_recursive on` finds it: when the
//! peer is one of the trusted proxies, the client is the rightmost address of
//! `X-Forwarded-For` that is not (each trusted proxy appended the address it heard
//! from), and the scheme it used is what the trusted peer says in `X-Forwarded-Proto`.
//! That client is what `allow`, `deny` and `rate_limit` judge, what the access log
//! names, and what upstreams are told in `X-Real-IP`; `https_redirect` and HSTS go by
//! its scheme. A peer that is no trusted proxy is the client, whatever it sends.

use std::net::IpAddr;
use std::rc::Rc;

use http::HeaderMap;
use http::header::{HeaderName, HeaderValue};
use weft::policies::Prefix;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

/// A request's client as a trusted proxy in front named it.
#[derive(Debug)]
pub(crate) struct Behind {
    /// Its address.
    pub(crate) ip: IpAddr,
    /// Its address as the access log writes it.
    pub(crate) text: Rc<str>,
    /// Whether it came over TLS to the proxy in front (`X-Forwarded-Proto: https`).
    pub(crate) secure: bool,
}

impl Behind {
    /// The client of a request with `headers` from `peer` (over TLS when `secure`), when
    /// `peer` is one of `trusted` (or on a unix socket, when `unix` trusts those) and
    /// names another client or scheme; `None` when the peer is the client as it came (a
    /// unix-socket peer that names no address stays without one).
    pub(crate) fn of(
        (trusted, unix): (&[Prefix], bool),
        peer: Option<IpAddr>,
        secure: bool,
        headers: &HeaderMap,
    ) -> Option<Rc<Self>> {
        if trusted.is_empty() && !unix {
            return None;
        }
        let (peer, was_secure) = (peer.map(|p| p.to_canonical()), secure);
        let is_trusted = |ip: IpAddr| trusted.iter().any(|p| p.contains(ip));
        match peer {
            Some(ip) if is_trusted(ip) => {}
            None if unix => {}
            _ => return None,
        }
        // From the right: each trusted proxy appended the address it heard from. The
        // first that is not trusted is the client; a member that is no address ends
        // the walk (what is left of it cannot be trusted), keeping the last found. Read
        // as bytes: a line the client began with bytes that are not text still ends
        // with what the proxies appended.
        let mut client = peer;
        'lines: for line in headers.get_all(X_FORWARDED_FOR).iter().rev() {
            for member in line.as_bytes().rsplit(|&b| b == b',') {
                let member = member.trim_ascii();
                if member.is_empty() {
                    continue;
                }
                let Some(ip) = std::str::from_utf8(member).ok().and_then(address) else {
                    break 'lines;
                };
                client = Some(ip);
                if !is_trusted(ip) {
                    break 'lines;
                }
            }
        }
        // The scheme the proxy nearest says (the last member: a proxy that sets the
        // field replaces it, one that extends it adds its own at the end).
        let proto = headers
            .get_all(X_FORWARDED_PROTO)
            .iter()
            .rev()
            .flat_map(|line| line.as_bytes().rsplit(|&b| b == b','))
            .map(<[u8]>::trim_ascii)
            .find(|member| !member.is_empty());
        let secure = match proto {
            Some(p) if p.eq_ignore_ascii_case(b"https") => true,
            Some(p) if p.eq_ignore_ascii_case(b"http") => false,
            _ => secure,
        };
        let client = client?;
        if Some(client) == peer && secure == was_secure {
            return None;
        }
        Some(Rc::new(Self {
            text: client.to_string().into(),
            ip: client,
            secure,
        }))
    }

    /// The client's address: `behind`'s, else the `peer`'s.
    pub(crate) fn peer(behind: &Option<Rc<Self>>, peer: Option<IpAddr>) -> Option<IpAddr> {
        behind.as_ref().map_or(peer, |b| Some(b.ip))
    }

    /// Whether the client came over TLS: to the proxy in front when `behind`, else as
    /// the connection did (`secure`).
    pub(crate) fn secure(behind: &Option<Rc<Self>>, secure: bool) -> bool {
        behind.as_ref().map_or(secure, |b| b.secure)
    }

    /// The client's address as the access log writes it: `behind`'s, else the peer's
    /// (`text`).
    pub(crate) fn text<'a>(behind: &'a Option<Rc<Self>>, text: &'a Rc<str>) -> &'a Rc<str> {
        behind.as_ref().map_or(text, |b| &b.text)
    }

    /// What serves the request reads of this client, from the request's extensions.
    pub(crate) fn claim(&self) -> Claim {
        Claim {
            ip: self.ip,
            secure: self.secure,
        }
    }
}

/// A client a trusted proxy in front named ([`Behind`]), as the request's extensions
/// carry it to what serves it: the proxy (which tells upstreams of it) and the redirect
/// to HTTPS (which goes by its scheme).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Claim {
    ip: IpAddr,
    /// Whether it came over TLS to the proxy in front.
    pub(crate) secure: bool,
}

impl Claim {
    /// Tells an upstream of this client rather than the proxy in front: `X-Real-IP` is
    /// its address and `X-Forwarded-Proto` its scheme (`X-Forwarded-For` and
    /// `Forwarded` keep the chain, with the peer appended as the hop this request came
    /// over).
    pub(crate) fn amend(&self, headers: &mut HeaderMap) {
        let ip = HeaderValue::from_str(&self.ip.to_string()).expect("an address is a header value");
        headers.insert(X_REAL_IP, ip);
        let proto = if self.secure { "https" } else { "http" };
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(proto));
    }
}

/// The address `member` of `X-Forwarded-For` names: an IPv4 or IPv6 address, an IPv6
/// one in brackets, either with a port (as some proxies write it); mapped IPv6 addresses
/// as the IPv4 ones they are.
fn address(member: &str) -> Option<IpAddr> {
    if let Ok(ip) = member.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    if let Ok(socket) = member.parse::<std::net::SocketAddr>() {
        return Some(socket.ip().to_canonical());
    }
    let inner = member.strip_prefix('[')?.strip_suffix(']')?;
    inner.parse::<IpAddr>().ok().map(|ip| ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trusted() -> Vec<Prefix> {
        vec![
            "10.0.0.0/8".parse().unwrap(),
            "2001:db8::/32".parse().unwrap(),
        ]
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    fn client(peer: &str, pairs: &[(&str, &str)]) -> Option<(String, bool)> {
        Behind::of(
            (&trusted(), false),
            Some(peer.parse().unwrap()),
            false,
            &headers(pairs),
        )
        .map(|b| (b.ip.to_string(), b.secure))
    }

    #[test]
    fn a_peer_on_a_unix_socket_names_its_client_when_those_are_trusted() {
        let xff = headers(&[("x-forwarded-for", "203.0.113.5, 198.51.100.1")]);
        let named = |unix| Behind::of((&[], unix), None, false, &xff).map(|b| b.ip.to_string());
        assert_eq!(named(true).as_deref(), Some("198.51.100.1"));
        assert_eq!(named(false), None, "unix-socket peers not trusted");
        // Nothing named: it stays without an address.
        assert!(Behind::of((&[], true), None, false, &HeaderMap::new()).is_none());
        // An IP peer is not trusted for being on no list but `unix:`.
        let ip = Some("10.0.0.1".parse().unwrap());
        assert!(Behind::of((&[], true), ip, false, &xff).is_none());
    }

    #[test]
    fn the_client_is_the_rightmost_address_no_trusted_proxy_holds() {
        let some = |ip: &str, secure| Some((ip.to_owned(), secure));
        // A peer that is no trusted proxy is the client, whatever it says.
        assert_eq!(
            client("192.0.2.9", &[("x-forwarded-for", "198.51.100.1")]),
            None
        );
        // Behind one proxy, and behind two (the client's own claim to the left ignored).
        let xff = "203.0.113.5, 198.51.100.1";
        assert_eq!(
            client("10.0.0.1", &[("x-forwarded-for", xff)]),
            some("198.51.100.1", false)
        );
        let xff = "203.0.113.5, 198.51.100.1, 10.0.0.2";
        assert_eq!(
            client("10.0.0.1", &[("x-forwarded-for", xff)]),
            some("198.51.100.1", false)
        );
        // Several lines are one list; ports and brackets are read.
        let pairs = [
            ("x-forwarded-for", "198.51.100.1:4711"),
            ("x-forwarded-for", "[2001:db8::1]"),
        ];
        assert_eq!(client("10.0.0.1", &pairs), some("198.51.100.1", false));
        // A member that is no address stops the walk at the last one found.
        let xff = "198.51.100.1, unknown, 10.0.0.3";
        assert_eq!(
            client("10.0.0.1", &[("x-forwarded-for", xff)]),
            some("10.0.0.3", false)
        );
        // Every address trusted: the leftmost.
        let xff = "10.0.0.4, 10.0.0.3";
        assert_eq!(
            client("10.0.0.1", &[("x-forwarded-for", xff)]),
            some("10.0.0.4", false)
        );
        // No field: the peer, with the scheme it says.
        assert_eq!(
            client("10.0.0.1", &[("x-forwarded-proto", "https")]),
            some("10.0.0.1", true)
        );
        assert_eq!(client("10.0.0.1", &[("x-forwarded-proto", "gopher")]), None);
        let pairs = [
            ("x-forwarded-proto", "http, https,"),
            ("x-forwarded-proto", " "),
        ];
        assert_eq!(
            client("10.0.0.1", &pairs),
            some("10.0.0.1", true),
            "the last member"
        );
        assert_eq!(client("10.0.0.1", &[]), None, "nothing new, nothing to say");
        // Bytes that are not text before what the proxy appended.
        let mut raw = HeaderMap::new();
        let line = HeaderValue::from_bytes(b"\xff\xfe, 198.51.100.1").unwrap();
        raw.insert(X_FORWARDED_FOR, line);
        let behind = Behind::of(
            (&trusted(), false),
            Some("10.0.0.1".parse().unwrap()),
            false,
            &raw,
        );
        assert_eq!(
            behind.map(|b| b.ip.to_string()).as_deref(),
            Some("198.51.100.1")
        );
        // A mapped address is the IPv4 one, the peer's and the field's.
        let xff = "::ffff:198.51.100.1";
        assert_eq!(
            client("::ffff:10.0.0.1", &[("x-forwarded-for", xff)]),
            some("198.51.100.1", false)
        );
    }

    #[test]
    fn an_upstream_hears_of_the_client_and_its_scheme() {
        let behind = Behind::of(
            (&trusted(), false),
            Some("10.0.0.1".parse().unwrap()),
            false,
            &headers(&[
                ("x-forwarded-for", "198.51.100.1"),
                ("x-forwarded-proto", "https"),
            ]),
        )
        .unwrap();
        let mut out = headers(&[("x-real-ip", "10.0.0.1"), ("x-forwarded-proto", "http")]);
        behind.claim().amend(&mut out);
        assert_eq!(out["x-real-ip"], "198.51.100.1");
        assert_eq!(out["x-forwarded-proto"], "https");
    }
}

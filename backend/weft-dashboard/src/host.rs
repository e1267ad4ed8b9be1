//! Which `Host` a request may name. A page on another site can point its own name at this
//! machine's address (DNS rebinding) and then read the dashboard as "same-origin"; the
//! browser still sends that name as `Host`, so the dashboard answers only to names it knows:
//!
//! - the address it listens on, as bound (`127.0.0.1:9180`); on a wildcard address
//!   (`0.0.0.0`, `::`) any IP literal with the listening port, since an address typed as
//!   digits cannot be rebound;
//! - `localhost`, `127.0.0.1` and `[::1]` with the listening port;
//! - each `[dashboard] allowed_hosts` entry: a name (any port) or `name:port`.
//!
//! A name without a port means port 80. Anything else gets `421 Misdirected Request`
//! (RFC 9110 §15.5.20), a missing or repeated `Host` gets `400` (RFC 9112 §3.2), on every
//! route, before the token is even looked at; each refusal is counted.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::DashboardState;
use crate::error::ApiError;
use crate::metrics::Refusal;
use crate::server::Peer;

/// The port a `Host` without one names (the dashboard speaks plain HTTP).
const DEFAULT_PORT: u16 = 80;

/// The host part of a `Host` value: an IP address or a lowercased DNS name.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Name {
    Ip(IpAddr),
    Dns(String),
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]"),
            Self::Ip(ip) => write!(f, "{ip}"),
            Self::Dns(name) => f.write_str(name),
        }
    }
}

/// Why an `allowed_hosts` entry cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
#[error(
    "{0:?} is not a host name: write a name or address with an optional port, like \
     \"weft.example.com\", \"weft.example.com:8443\" or \"[::1]:9180\" (no scheme, no path)"
)]
pub struct HostError(pub String);

/// One `[dashboard] allowed_hosts` entry: a name that matches on any port, or `name:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedHost {
    name: Name,
    /// `None`: the name matches on any port.
    port: Option<u16>,
}

impl FromStr for AllowedHost {
    type Err = HostError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (name, port) = split(s).ok_or_else(|| HostError(s.to_owned()))?;
        Ok(Self { name, port })
    }
}

impl fmt::Display for AllowedHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.port {
            Some(port) => write!(f, "{}:{port}", self.name),
            None => write!(f, "{}", self.name),
        }
    }
}

/// Splits `uri-host [ ":" port ]` (RFC 3986 §3.2.2), lowercasing names; `None` if it is
/// not one.
fn split(s: &str) -> Option<(Name, Option<u16>)> {
    let port = |p: &str| -> Option<Option<u16>> {
        match p {
            "" => Some(None),
            p if p.bytes().all(|b| b.is_ascii_digit()) => p.parse().ok().map(Some),
            _ => None,
        }
    };
    if let Some(rest) = s.strip_prefix('[') {
        let (ip, after) = rest.split_once(']')?;
        let ip = ip.parse::<std::net::Ipv6Addr>().ok()?;
        let port = match after {
            "" => None,
            p => port(p.strip_prefix(':')?)?,
        };
        return Some((Name::Ip(ip.into()), port));
    }
    let (host, port) = match s.rsplit_once(':') {
        Some((host, p)) => (host, port(p)?),
        None => (s, None),
    };
    if let Ok(ip) = host.parse::<std::net::Ipv4Addr>() {
        return Some((Name::Ip(ip.into()), port));
    }
    // A DNS name: letters, digits, hyphens and underscores in dot-separated labels.
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    (host.len() <= 253 && host.split('.').all(label_ok))
        .then(|| (Name::Dns(host.to_ascii_lowercase()), port))
}

/// The hosts a dashboard answers to.
#[derive(Debug, Clone, Default)]
pub struct HostPolicy {
    /// Where the dashboard listens; `None` when it was never told (a router served by its
    /// caller), and then loopback names are accepted on any port.
    pub(crate) listen: Option<SocketAddr>,
    /// `[dashboard] allowed_hosts`.
    pub(crate) allowed: Vec<AllowedHost>,
}

impl HostPolicy {
    /// Answers to `listen`'s address and loopback names, plus `allowed`.
    pub fn new(listen: Option<SocketAddr>, allowed: Vec<AllowedHost>) -> Self {
        Self { listen, allowed }
    }

    /// Whether a request naming `host` (a `Host` value) is for this dashboard.
    pub fn accepts(&self, host: &str) -> bool {
        let Some((name, port)) = split(host) else {
            return false;
        };
        let port = port.unwrap_or(DEFAULT_PORT);
        if self
            .allowed
            .iter()
            .any(|a| a.name == name && a.port.is_none_or(|p| p == port))
        {
            return true;
        }
        let own_port = self.listen.is_none_or(|l| l.port() == port);
        let own_name = match &name {
            Name::Dns(n) => n == "localhost",
            Name::Ip(ip) => {
                ip.is_loopback()
                    || self
                        .listen
                        .is_some_and(|l| l.ip() == *ip || l.ip().is_unspecified())
            }
        };
        own_port && own_name
    }

    /// The names a refusal suggests.
    fn described(&self) -> String {
        let port = self
            .listen
            .map_or(String::new(), |l| format!(":{}", l.port()));
        // Every loopback address is accepted; the two usual ones are named.
        let mut names = vec![
            format!("localhost{port}"),
            format!("127.0.0.1{port}"),
            format!("[::1]{port}"),
        ];
        if let Some(l) = self.listen.filter(|l| !l.ip().is_unspecified()) {
            names.retain(|n| *n != l.to_string());
            names.insert(0, l.to_string());
        }
        names.extend(self.allowed.iter().map(ToString::to_string));
        names.join(", ")
    }
}

/// At most this much of a refused `Host` is repeated back.
const ECHO_MAX: usize = 100;

/// Refuses a request whose `Host` (or absolute-form authority) is not one of this
/// dashboard's names.
pub(crate) async fn require_known_host(
    State(state): State<DashboardState>,
    request: Request,
    next: Next,
) -> Response {
    if head_size(&request) > crate::server::MAX_HEAD {
        // hyper bounds what it buffers by `MAX_HEAD`, but a head that arrives in one read
        // can be parsed whole past it; what is promised is checked here.
        state
            .metrics
            .refused(Refusal::HeadTooLarge, Peer::of(request.extensions()));
        return ApiError::HeadTooLarge(format!(
            "the request head is over {} KiB",
            crate::server::MAX_HEAD >> 10
        ))
        .into_response();
    }
    let mut hosts = request.headers().get_all(header::HOST).iter();
    let field = match (hosts.next(), hosts.next()) {
        (Some(h), None) => h.to_str().map(Some).map_err(|_| "not text"),
        (None, _) => Ok(None),
        (Some(_), Some(_)) => Err("repeated"),
    };
    // RFC 9112 §3.2: an HTTP/1.1 request without `Host`, or with two, is refused
    // whatever its target; §3.2.2: an absolute-form target's authority replaces `Host`.
    // HTTP/2 names its authority in the target alone.
    let host = match (request.uri().authority(), field) {
        (_, Err(why)) => Err(why),
        (_, Ok(None)) if request.version() == axum::http::Version::HTTP_11 => Err("missing"),
        (Some(authority), Ok(_)) => Ok(authority.as_str().to_owned()),
        (None, Ok(Some(host))) => Ok(host.to_owned()),
        (None, Ok(None)) => Err("missing"),
    };
    let refusal = match host {
        Ok(host) if state.hosts.accepts(&host) => return next.run(request).await,
        Ok(host) => {
            let shown: String = host.chars().take(ECHO_MAX).collect();
            // A dashboard reachable from elsewhere (one with a token) does not tell a
            // stranger the names it answers to; one on loopback helps its operator.
            let answers = match state.token {
                Some(_) => "the names in [dashboard] listen and allowed_hosts".to_owned(),
                None => format!(
                    "{}, and to the names in [dashboard] allowed_hosts",
                    state.hosts.described()
                ),
            };
            ApiError::Misdirected(format!(
                "this dashboard does not answer to the host {shown:?}; it answers to {answers}"
            ))
            .into_response()
        }
        Err(why) => ApiError::BadRequest(format!("the Host header is {why}")).into_response(),
    };
    state
        .metrics
        .refused(Refusal::Host, Peer::of(request.extensions()));
    refusal
}

/// The bytes of `request`'s head as HTTP/1.1 wrote it: the request line and each field
/// line with its `": "` and CRLF.
fn head_size(request: &Request) -> usize {
    let uri = request.uri();
    let target = uri.path_and_query().map_or(1, |p| p.as_str().len())
        + uri
            .authority()
            .map_or(0, |a| a.as_str().len() + "http://".len());
    let line = request.method().as_str().len() + 1 + target + 1 + "HTTP/1.1\r\n".len();
    let fields = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + ": ".len() + value.len() + "\r\n".len())
        .sum::<usize>();
    line + fields + "\r\n".len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(listen: &str, allowed: &[&str]) -> HostPolicy {
        HostPolicy::new(
            Some(listen.parse().unwrap()),
            allowed.iter().map(|a| a.parse().unwrap()).collect(),
        )
    }

    #[test]
    fn the_listen_address_and_loopback_names_with_its_port_are_accepted() {
        let p = policy("127.0.0.1:9180", &[]);
        for ok in [
            "127.0.0.1:9180",
            "localhost:9180",
            "LOCALHOST:9180",
            "[::1]:9180",
            "127.0.0.2:9180",
        ] {
            assert!(p.accepts(ok), "{ok}");
        }
        for refused in [
            "evil.example:9180",
            "localhost:9181",
            "localhost",
            "localhost.:9180",
            "localhost.evil.example:9180",
            "127.0.0.1.nip.io:9180",
            "10.0.0.1:9180",
            "",
            ":9180",
            "127.0.0.1:9180:9180",
            "[::1:9180",
            "a b:9180",
            "127.0.0.1:+9180",
        ] {
            assert!(!p.accepts(refused), "{refused:?}");
        }
        // A refusal names what it answers to, the loopback addresses among them.
        assert_eq!(p.described(), "127.0.0.1:9180, localhost:9180, [::1]:9180");
        for named in p.described().split(", ") {
            assert!(p.accepts(named), "{named}");
        }
    }

    #[test]
    fn a_wildcard_listener_answers_to_any_address_typed_as_digits() {
        let p = policy("0.0.0.0:9180", &[]);
        assert!(p.accepts("192.168.1.5:9180"));
        assert!(p.accepts("[fe80::1]:9180"));
        assert!(!p.accepts("192.168.1.5:80"));
        assert!(!p.accepts("weft.lan:9180"));
    }

    #[test]
    fn allowed_hosts_match_on_any_port_unless_they_name_one() {
        let p = policy(
            "127.0.0.1:9180",
            &["weft.lan", "Proxy.Example:8443", "[::2]:443"],
        );
        for ok in [
            "weft.lan",
            "weft.lan:1",
            "WEFT.lan:9180",
            "proxy.example:8443",
            "[::2]:443",
        ] {
            assert!(p.accepts(ok), "{ok}");
        }
        for refused in [
            "proxy.example",
            "proxy.example:9180",
            "[::2]:9180",
            "sub.weft.lan",
        ] {
            assert!(!p.accepts(refused), "{refused}");
        }
    }

    #[test]
    fn an_allowed_host_is_a_name_or_address_with_an_optional_port() {
        for bad in [
            "",
            "http://weft.lan",
            "weft.lan/",
            "weft.lan:port",
            "weft..lan",
            "a b",
            "[::1",
        ] {
            assert!(bad.parse::<AllowedHost>().is_err(), "{bad:?}");
        }
        let h: AllowedHost = "Weft.LAN:8080".parse().unwrap();
        assert_eq!(h.to_string(), "weft.lan:8080");
    }

    #[test]
    fn without_a_known_address_loopback_names_are_accepted_on_any_port() {
        let p = HostPolicy::default();
        assert!(p.accepts("localhost:1234") && p.accepts("127.0.0.1"));
        assert!(!p.accepts("evil.example:1234"));
    }
}

//! Services that forward round a loop: tcp-proxies whose upstreams lead from one to the
//! next and back (`p` to `q`, `q` to `p`), and DNS services that forward to each other in
//! a ring. Each connection, or each question no zone answers, would go round until the
//! caps or the timeouts broke it, spending a connection (a file descriptor) or an upstream
//! query at each turn; such a file is refused, naming the ring.
//!
//! A service forwarding to its own listener is the smallest ring, refused as each kind
//! reads its keys, in its own words. An upstream is matched to a listener as a connection
//! would reach it: the same port, on the same address or, for a listener on every
//! address, on a loopback address or another of this host's; `localhost` is loopback; a
//! unix socket by its path. Names other than `localhost` are not resolved, and a ring
//! through an HTTP service is left to it: it knows its own requests by their `Via`.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use toml::Spanned;
use weft::endpoint::{ClientEndpoint, ServerEndpoint};

use super::error::Locator;
use super::raw::RawConfig;
use super::validate::key;
use super::{ConfigError, ServiceConfig};
use crate::services::ServiceKind;

/// Where a service sends what it forwards.
#[derive(Debug, Clone)]
pub(crate) enum Target {
    /// A stream to a host (`None`: `localhost`) and port.
    Stream(Option<IpAddr>, u16),
    /// A UDP exchange with an address.
    Datagram(SocketAddr),
    /// A unix socket.
    Unix(PathBuf),
}

impl Target {
    /// Where a client endpoint connects; `None` for a host name other than `localhost`,
    /// which is not resolved.
    pub(crate) fn upstream(endpoint: &ClientEndpoint) -> Option<Self> {
        match endpoint {
            ClientEndpoint::Tcp { host, port, .. } | ClientEndpoint::Ssl { host, port, .. } => {
                host_address(host).map(|ip| Target::Stream(ip, *port))
            }
            ClientEndpoint::Unix { path, .. } => Some(Target::Unix(path.clone())),
            _ => None,
        }
    }
}

/// The targets of `service` that carry on what it receives: a tcp-proxy's upstream, a DNS
/// service's resolvers.
fn targets(service: &ServiceConfig) -> Vec<Target> {
    match &service.kind {
        ServiceKind::TcpProxy(proxy) => proxy
            .upstream
            .parse::<ClientEndpoint>()
            .ok()
            .and_then(|upstream| Target::upstream(&upstream))
            .into_iter()
            .collect(),
        ServiceKind::Dns(dns) => dns
            .config
            .forward
            .iter()
            .map(|addr| Target::Datagram(*addr))
            .collect(),
        _ => Vec::new(),
    }
}

/// Whether a connection or datagram to `target` reaches the listener `endpoint`.
pub(crate) fn reaches(target: &Target, endpoint: &str) -> bool {
    let Ok(listen) = endpoint.parse::<ServerEndpoint>() else {
        return false;
    };
    match (target, listen) {
        (
            Target::Stream(ip, port),
            ServerEndpoint::Tcp { addr, .. } | ServerEndpoint::Ssl { addr, .. },
        ) => addr.port() == *port && address_reaches(*ip, addr.ip()),
        (Target::Datagram(to), ServerEndpoint::Udp { addr }) => {
            addr.port() == to.port() && address_reaches(Some(to.ip()), addr.ip())
        }
        (Target::Unix(path), ServerEndpoint::Unix { path: listen, .. }) => {
            same_socket(path, &listen)
        }
        _ => false,
    }
}

/// Whether a unix socket at `path` is the one at `listen`: the same file once both are
/// followed through any symlinks (a link to a socket not made yet included).
fn same_socket(path: &Path, listen: &Path) -> bool {
    use super::preflight::through_symlinks;
    through_symlinks(path) == through_symlinks(listen)
}

/// The address a client endpoint's `host` connects to, as the system reads it: an IP
/// address, one of the older IPv4 forms `inet_aton` takes (`127.1`, `2130706433`,
/// `0177.0.0.1`), or `localhost` (`Some(None)`: any loopback address). Other names are not
/// resolved (`None`).
fn host_address(host: &str) -> Option<Option<IpAddr>> {
    if host.eq_ignore_ascii_case("localhost") {
        return Some(None);
    }
    // An IPv6 address with its zone (`fe80::1%eth0`) is that address on this host.
    let host = match host.split_once('%') {
        Some((ip, _zone)) if ip.contains(':') => ip,
        _ => host,
    };
    weft::endpoint::host_ip(host).map(Some)
}

/// Whether `to` (`None`: `localhost`) is the address `listen` listens on: the same
/// one, or any of this host's of its family for a listener on every address. An
/// IPv4-mapped IPv6 address is its IPv4 address, and the unspecified address connects
/// to the host itself, as loopback does.
fn address_reaches(to: Option<IpAddr>, listen: IpAddr) -> bool {
    let to = to
        .map(|ip| ip.to_canonical())
        .filter(|ip| !ip.is_unspecified());
    let Some(to) = to else {
        return listen.is_loopback() || listen.is_unspecified();
    };
    to == listen
        || (listen.is_unspecified()
            && listen.is_ipv4() == to.is_ipv4()
            && (to.is_loopback() || is_this_hosts(to)))
}

/// Whether `ip` is an address of one of this host's interfaces: the system routes a
/// datagram to it through its local table, from that same address. (Asked by connecting a
/// UDP socket, which sends nothing; binding would not do, as `net.ipv4.ip_nonlocal_bind`
/// lets a socket bind any address.)
fn is_this_hosts(ip: IpAddr) -> bool {
    let any = match ip {
        IpAddr::V4(_) => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
    };
    std::net::UdpSocket::bind(SocketAddr::new(any, 0))
        .and_then(|socket| {
            socket.connect(SocketAddr::new(ip, 9))?;
            socket.local_addr()
        })
        .is_ok_and(|from| from.ip() == ip)
        || matches!(ip, IpAddr::V6(v6) if interface_ipv6().contains(&v6))
}

/// The IPv6 addresses of this host's interfaces, as Linux lists them: a link-local one
/// (`fe80::…%eth0`) cannot be asked about by connecting without its interface, which an
/// address read from an endpoint no longer carries.
fn interface_ipv6() -> Vec<std::net::Ipv6Addr> {
    std::fs::read_to_string("/proc/net/if_inet6")
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter_map(|hex| u128::from_str_radix(hex, 16).ok())
        .map(std::net::Ipv6Addr::from)
        .collect()
}

/// The index of the first service with a listener `target` reaches.
fn reached(services: &[ServiceConfig], target: &Target) -> Option<usize> {
    services
        .iter()
        .position(|s| s.listen.iter().any(|endpoint| reaches(target, endpoint)))
}

/// Refuses `services` when some of them forward round a ring of two or more; the error
/// is placed at the key of the first service of the ring that names where it forwards.
pub(super) fn check(
    at: &Locator<'_>,
    raw: &RawConfig,
    services: &[ServiceConfig],
) -> Result<(), ConfigError> {
    // Each service's next hops: the services its targets reach.
    let next: Vec<Vec<usize>> = services
        .iter()
        .map(|s| {
            targets(s)
                .iter()
                .filter_map(|t| reached(services, t))
                .collect()
        })
        .collect();
    not_dns(at, raw, services)?;
    for start in 0..services.len() {
        let Some(ring) = ring_from(start, &next) else {
            continue;
        };
        let names: Vec<String> = ring
            .iter()
            .chain(std::iter::once(&start))
            .map(|&i| format!("service[{i}] ({})", services[i].name))
            .collect();
        let (field, span) = forwarding_key(raw, start, &services[start]);
        return Err(at.error(
            span,
            key(&format!("service[{start}].{field}")),
            format!(
                "{} forward round a loop: {}; each {} would go round it until a cap or a \
                 timeout stopped it; point one of them elsewhere",
                if ring.len() == 2 {
                    "these two"
                } else {
                    "these services"
                },
                names.join(" -> "),
                match services[start].kind {
                    ServiceKind::Dns(_) => "question no zone answers",
                    _ => "connection",
                },
            ),
        ));
    }
    Ok(())
}

/// Refuses a DNS service forwarding to a service of the file that cannot answer it: one
/// of another kind on that UDP port (an echo service would send each question back, a
/// discard service nothing), or a DNS service listening there on TCP alone (questions go
/// over UDP). Every question would wait out its timeout, then get SERVFAIL.
fn not_dns(
    at: &Locator<'_>,
    raw: &RawConfig,
    services: &[ServiceConfig],
) -> Result<(), ConfigError> {
    for (i, service) in services.iter().enumerate() {
        let ServiceKind::Dns(dns) = &service.kind else {
            continue;
        };
        for addr in &dns.config.forward {
            let why = match reached(services, &Target::Datagram(*addr)) {
                Some(j) if !matches!(services[j].kind, ServiceKind::Dns(_)) => format!(
                    "{addr} is a UDP listener of service[{j}] ({}), of kind {:?}, not a DNS service",
                    services[j].name,
                    services[j].kind.as_str()
                ),
                Some(_) => continue,
                None => match reached(services, &Target::Stream(Some(addr.ip()), addr.port())) {
                    Some(j) if matches!(services[j].kind, ServiceKind::Dns(_)) => format!(
                        "service[{j}] ({}) listens at {addr} on TCP alone, and questions are \
                         forwarded over UDP",
                        services[j].name
                    ),
                    _ => continue,
                },
            };
            let (field, span) = forwarding_key(raw, i, service);
            return Err(at.error(
                span,
                key(&format!("service[{i}].{field}")),
                format!("{why}: every question would wait out its timeout; forward to a DNS service's UDP listener"),
            ));
        }
    }
    Ok(())
}

/// A path of services from `start` back to it of at most every service, found depth
/// first: `start` and the services after it, in order; `None` when there is none.
fn ring_from(start: usize, next: &[Vec<usize>]) -> Option<Vec<usize>> {
    let mut path = vec![start];
    let mut seen = vec![false; next.len()];
    seen[start] = true;
    fn walk(
        at: usize,
        start: usize,
        next: &[Vec<usize>],
        path: &mut Vec<usize>,
        seen: &mut [bool],
    ) -> bool {
        for &hop in &next[at] {
            // A service forwarding to itself is refused by its kind, in its own words.
            if hop == start && path.len() > 1 {
                return true;
            }
            if !seen[hop] {
                seen[hop] = true;
                path.push(hop);
                if walk(hop, start, next, path, seen) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    walk(start, start, next, &mut path, &mut seen).then_some(path)
}

/// The key naming where service `i` forwards, and its place in the file.
fn forwarding_key(
    raw: &RawConfig,
    i: usize,
    service: &ServiceConfig,
) -> (&'static str, Option<std::ops::Range<usize>>) {
    let svc = raw.service.get(i).map(Spanned::get_ref);
    match service.kind {
        ServiceKind::Dns(_) => (
            "forward",
            svc.and_then(|s| s.forward.as_ref()).map(Spanned::span),
        ),
        _ => (
            "upstream",
            svc.and_then(|s| s.upstream.as_ref()).map(Spanned::span),
        ),
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    #[test]
    fn every_address_of_this_host_s_interfaces_is_its_own_link_local_ones_too() {
        for ip in super::interface_ipv6() {
            assert!(super::is_this_hosts(ip.into()), "{ip}");
        }
        assert!(!super::is_this_hosts(
            "fe80::dead:beef:1:2".parse().unwrap()
        ));
    }

    #[test]
    fn a_proxy_to_this_host_s_own_link_local_address_with_its_zone_is_refused() {
        let table = std::fs::read_to_string("/proc/net/if_inet6").unwrap_or_default();
        let link_local = table.lines().find_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let ip = std::net::Ipv6Addr::from(u128::from_str_radix(fields.first()?, 16).ok()?);
            let zone = fields.last()?.to_string();
            ip.is_unicast_link_local().then_some((ip, zone))
        });
        let Some((ip, zone)) = link_local else {
            return; // No interface here has one.
        };
        let host = ip.to_string().replace(':', r"\\:");
        let message = refused(&format!(
            "[[service]]\nname = \"p\"\nkind = \"tcp-proxy\"\n\
             listen = \"tcp:15432:interface=\\\\:\\\\:\"\n\
             upstream = \"tcp:{host}%{zone}:15432\"\n"
        ));
        assert!(message.contains("own listener"), "{message}");
    }

    fn refused(services: &str) -> String {
        Config::parse("weft.toml", services)
            .unwrap_err()
            .to_string()
    }

    /// A service of `kind` listening on `listen` whose `key` (`upstream`, `forward`) is
    /// `to`.
    fn service(name: &str, kind: &str, listen: &str, key: &str, to: &str) -> String {
        format!(
            "[[service]]\nname = \"{name}\"\nkind = \"{kind}\"\nlisten = \"{listen}\"\n{key} = \"{to}\"\n"
        )
    }

    fn proxy(name: &str, listen: &str, upstream: &str) -> String {
        service(name, "tcp-proxy", listen, "upstream", upstream)
    }

    fn dns(name: &str, listen: &str, forward: &str) -> String {
        service(name, "dns", listen, "forward", forward)
    }

    #[test]
    fn two_tcp_proxies_that_lead_to_each_other_are_refused_naming_the_ring() {
        let e = refused(
            &(proxy("p", "tcp:12020:interface=127.0.0.1", "tcp:127.0.0.1:12021")
                + &proxy("q", "tcp:12021:interface=127.0.0.1", "tcp:localhost:12020")),
        );
        assert!(
            e.contains(
                "service[0].upstream: these two forward round a loop: service[0] (p) -> \
                 service[1] (q) -> service[0] (p); each connection would go round it"
            ),
            "{e}"
        );
    }

    #[test]
    fn a_ring_of_dns_services_and_of_unix_sockets_is_refused() {
        let ring = refused(
            &(dns("a", "udp:12053:interface=0.0.0.0", "127.0.0.1:12054")
                + &dns("b", "udp:12054:interface=127.0.0.1", "127.0.0.1:12055")
                + &dns("c", "udp:12055:interface=127.0.0.1", "127.0.0.1:12053")),
        );
        assert!(
            ring.contains(
                "service[0].forward: these services forward round a loop: service[0] (a) -> \
                 service[1] (b) -> service[2] (c) -> service[0] (a); each question no zone \
                 answers"
            ),
            "{ring}"
        );
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.sock"), dir.path().join("b.sock"));
        let (a, b) = (
            format!("unix:{}", a.display()),
            format!("unix:{}", b.display()),
        );
        let unix = refused(&(proxy("p", &a, &b) + &proxy("q", &b, &a)));
        assert!(
            unix.contains("(p) -> service[1] (q) -> service[0] (p)"),
            "{unix}"
        );
    }

    #[test]
    fn a_listener_on_every_address_is_reached_on_each_of_this_hosts_of_its_family() {
        use super::address_reaches;
        let any4: std::net::IpAddr = "0.0.0.0".parse().unwrap();
        let any6: std::net::IpAddr = "::".parse().unwrap();
        for (to, listen, reached) in [
            (Some("127.0.0.1"), any4, true),
            (Some("127.0.0.2"), any4, true),
            (Some("::1"), any6, true),
            (Some("::1"), any4, false),
            (Some("127.0.0.1"), any6, false),
            // TEST-NET-2 (RFC 5737): on no interface here.
            (Some("198.51.100.1"), any4, false),
            (Some("127.0.0.1"), "127.0.0.2".parse().unwrap(), false),
            (None, "127.0.0.1".parse().unwrap(), true),
            (None, any6, true),
        ] {
            let to = to.map(|ip| ip.parse().unwrap());
            assert_eq!(address_reaches(to, listen), reached, "{to:?} to {listen}");
        }
        // The address this host would send from towards another network: one of its own.
        let probe = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        if probe.connect("198.51.100.1:9").is_ok() {
            let own = probe.local_addr().unwrap().ip();
            assert!(address_reaches(Some(own), any4), "{own}");
        }
    }

    #[test]
    fn a_host_is_read_as_the_system_reads_it() {
        use super::{address_reaches, host_address};
        // The numeric forms are `weft::endpoint::host_ip`'s.
        assert_eq!(host_address("127.1"), Some(Some([127, 0, 0, 1].into())));
        assert_eq!(host_address("db.example"), None);
        assert_eq!(host_address("LocalHost"), Some(None));
        let loopback: std::net::IpAddr = "127.0.0.1".parse().unwrap();
        for to in ["::ffff:127.0.0.1", "0.0.0.0", "::"] {
            assert!(address_reaches(Some(to.parse().unwrap()), loopback), "{to}");
        }
    }

    #[test]
    fn a_chain_that_ends_elsewhere_is_no_ring() {
        let echo = "[[service]]\nname = \"e\"\nkind = \"echo\"\nlisten = \"tcp:12022:interface=127.0.0.1\"\n";
        let file = proxy("p", "tcp:12020:interface=127.0.0.1", "tcp:127.0.0.1:12021")
            + &proxy("q", "tcp:12021:interface=127.0.0.1", "tcp:127.0.0.1:12022")
            + echo
            + &dns("a", "udp:12053:interface=127.0.0.1", "127.0.0.1:12054")
            + &dns("b", "udp:12054:interface=127.0.0.2", "192.0.2.53");
        Config::parse("weft.toml", &file).unwrap();
    }
}

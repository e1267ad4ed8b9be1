//! The demo: what `weft` runs with no configuration, and what `[demo] traffic = true`
//! adds to any configuration.
//!
//! The built-in configuration ([`crate::config::DEMO`]) has a service of every kind on
//! loopback. This module adds what no file can say, and what makes the dashboard move:
//!
//! - `content`: the site `web` serves and the zones, built into the binary and served
//!   from memory.
//! - `upstream`: the demo's own upstreams on loopback, an HTTP server for the `/api/`
//!   route (`demo-api`, [`API_LISTEN`]) that now and then answers late or fails, and a
//!   DNS server for forwarded names (`demo-dns`, [`DNS_LISTEN`]).
//! - `traffic`: the traffic generator, a few connections, requests and questions a
//!   second to the configuration's services (found by kind), with a
//!   stalled chain, a failed one and a slow callback among them.
//! - `clients`: the generator's protocols, each a small Twisted-style client.
//!
//! Only `[demo] traffic = true` starts any of it (the built-in demo sets it): a
//! configuration without it never makes traffic of its own. The generator stays light,
//! well under 5% of one core (see the README for the figure).

mod clients;
pub(crate) mod content;
mod traffic;
mod upstream;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::rc::Rc;
use std::time::Duration;

use weft::endpoint::ServerEndpoint;
use weft::{Phase, Reactor};
use weft_inspector::Inspector;
use weft_store::ServiceRecord;

use crate::app::GatewayError;
use crate::config::Config;
use crate::services::ServiceKind;
use clients::QType;

/// The service name of the demo's HTTP upstream.
pub const API_SERVICE: &str = "demo-api";
/// Where the demo's HTTP upstream listens.
pub const API_LISTEN: &str = "tcp:8081:interface=127.0.0.1";
/// The service name of the demo's DNS upstream.
pub const DNS_SERVICE: &str = "demo-dns";
/// Where the demo's DNS upstream listens.
pub const DNS_LISTEN: &str = "udp:5354:interface=127.0.0.1";
/// The service name the traffic generator's connections are reported under.
pub const TRAFFIC_SERVICE: &str = "traffic";

/// The names the demo's own services take when its traffic runs: no configured service
/// may take one then.
pub const SERVICES: [&str; 3] = [API_SERVICE, DNS_SERVICE, TRAFFIC_SERVICE];

/// The demo's listeners and what each is, for `weft check` to claim their ports.
pub(crate) const LISTENERS: [(&str, &str); 2] =
    [(API_LISTEN, "HTTP upstream"), (DNS_LISTEN, "DNS upstream")];

/// The longest the demo's upstream holds a slow answer.
const SLOWEST: Duration = Duration::from_secs(60);

/// The longest the report callback may block the reactor: a `slow_callback` above it is
/// not reached on purpose.
const LONGEST_BLOCK: Duration = Duration::from_secs(1);

/// The demo running beside the services.
pub struct Demo {
    /// The generator's loops and timers, kept to stop them at shutdown.
    traffic: Rc<traffic::Traffic>,
    /// What the demo prints at start: where to look, built once the ports are known.
    banner: String,
}

impl std::fmt::Debug for Demo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Demo").finish_non_exhaustive()
    }
}

impl Demo {
    /// Where to look, for the terminal: the dashboard, one `curl` line and one `dig`
    /// line (when the configuration has an HTTP and a DNS service).
    pub fn banner(&self) -> &str {
        &self.banner
    }

    /// Stops the traffic (shutdown does it too).
    pub fn stop(&self) {
        self.traffic.stop();
    }
}

/// Starts the demo's upstreams and its traffic to `config`'s services, on `reactor`,
/// once the services listen, and records its parts in `inspector`'s history as services
/// of kind `demo`.
pub fn start(
    reactor: &Reactor,
    config: &Config,
    inspector: &Inspector,
) -> Result<Demo, GatewayError> {
    // Twice `stall_after`: the chains waiting for it stall, and stay stalled for a while
    // before the answer comes.
    let slow = (config.inspect.stall_after * 2).min(SLOWEST);
    upstream::start(reactor, slow)?;
    let slow_callback = config.inspect.slow_callback;
    let block = (slow_callback <= LONGEST_BLOCK).then(|| slow_callback * 3 / 2);
    let targets = Targets::of(config);
    let banner = banner(&targets, inspector.dashboard_addr());
    let traffic = Rc::new(traffic::start(reactor, targets, block)?);
    let stopping = traffic.clone();
    reactor.add_shutdown_hook(Phase::Before, move || stopping.stop());
    if let Some(store) = inspector.store() {
        for record in records(slow) {
            store.try_send(record);
        }
    }
    Ok(Demo { traffic, banner })
}

/// The demo's parts as the history's services list them.
fn records(slow: Duration) -> [ServiceRecord; 3] {
    let record = |name: &str, endpoints: &[&str], config: serde_json::Value| ServiceRecord {
        name: name.into(),
        kind: "demo".into(),
        endpoints: endpoints.iter().map(|e| (*e).to_owned()).collect(),
        config_json: config.to_string(),
    };
    [
        record(
            API_SERVICE,
            &[API_LISTEN],
            serde_json::json!({
                "role": "the HTTP upstream of the demo's /api/ route",
                "slow_answer_ms": slow.as_millis() as u64,
            }),
        ),
        record(
            DNS_SERVICE,
            &[DNS_LISTEN],
            serde_json::json!({ "role": "the DNS upstream the demo's names are forwarded to" }),
        ),
        record(
            TRAFFIC_SERVICE,
            &[],
            serde_json::json!({ "role": "the traffic generator's client connections" }),
        ),
    ]
}

fn banner(targets: &Targets, dashboard: Option<SocketAddr>) -> String {
    let mut out =
        String::from("weft demo: a service of every kind, with traffic of its own to watch.\n");
    if let Some(addr) = dashboard {
        out += &format!("  dashboard  http://{addr}/\n");
    }
    if let Some(web) = targets.http.first() {
        let path = web
            .api
            .as_ref()
            .map_or("/".to_owned(), |p| format!("{p}hello"));
        out += &format!("  HTTP       curl http://{}{path}\n", web.addr);
    }
    if let Some(dns) = targets.dns.iter().find(|d| !d.names.is_empty()) {
        let name = dns.names[0].0.trim_end_matches('.');
        out += &format!(
            "  DNS        dig @{} -p {} {name}\n",
            dns.addr.ip(),
            dns.addr.port()
        );
    }
    out += "  Ctrl+C stops it.";
    out
}

/// The configuration's services the generator drives, by kind: their first reachable
/// listeners (an unspecified address is reached on loopback; port 0, unix and TLS
/// listeners are left alone).
#[derive(Debug, Default)]
pub(crate) struct Targets {
    echo: Vec<SocketAddr>,
    echo_udp: Vec<SocketAddr>,
    discard: Vec<SocketAddr>,
    proxy: Vec<SocketAddr>,
    http: Vec<HttpTarget>,
    dns: Vec<DnsTarget>,
}

/// An HTTP service to request from.
#[derive(Debug)]
struct HttpTarget {
    addr: SocketAddr,
    /// Its static pages to fetch in turn: the front page of a root, every page of
    /// embedded files.
    pages: Vec<String>,
    /// The prefix of a route to the demo's HTTP upstream, such as `/api/`.
    api: Option<String>,
}

/// A DNS service to ask.
#[derive(Debug)]
pub(crate) struct DnsTarget {
    /// Its UDP listener (IPv4).
    addr: SocketAddr,
    /// Questions about its zones: a name, a mail exchanger, the apex's text, a name
    /// that does not exist.
    names: Vec<(String, QType)>,
    /// Names it forwards to the demo's DNS upstream.
    forwarded: Vec<String>,
}

impl Targets {
    /// What the generator can reach in `config`.
    pub(crate) fn of(config: &Config) -> Self {
        let mut t = Self::default();
        let api: SocketAddr = reachable(API_LISTEN).expect("a tcp endpoint").1;
        let dns_upstream: SocketAddr = reachable(DNS_LISTEN).expect("a udp endpoint").1;
        for service in &config.services {
            let listeners: Vec<(bool, SocketAddr)> =
                service.listen.iter().filter_map(|e| reachable(e)).collect();
            let tcp = listeners.iter().find(|(udp, _)| !udp).map(|(_, a)| *a);
            let udp = listeners
                .iter()
                .find(|(udp, a)| *udp && a.is_ipv4())
                .map(|(_, a)| *a);
            match &service.kind {
                ServiceKind::Echo => {
                    t.echo.extend(tcp);
                    t.echo_udp.extend(udp);
                }
                ServiceKind::Discard => t.discard.extend(tcp),
                ServiceKind::TcpProxy(_) => t.proxy.extend(tcp),
                ServiceKind::Http(http) => {
                    let Some(addr) = tcp else { continue };
                    let web = &http.web;
                    let pages = match (&web.embedded, &web.root) {
                        (Some(files), _) => files
                            .names()
                            .map(|n| format!("/{}", n.strip_suffix(&web.index).unwrap_or(n)))
                            .collect(),
                        (None, Some(_)) => vec!["/".to_owned()],
                        (None, None) => Vec::new(),
                    };
                    let api = web
                        .routes
                        .iter()
                        .find(|r| {
                            r.upstreams[0].port == api.port()
                                && r.upstreams[0].host.parse::<IpAddr>().ok() == Some(api.ip())
                                && r.upstreams[0].base_path.is_empty()
                        })
                        .map(|r| r.prefix.clone())
                        .filter(|p| p.ends_with('/'));
                    t.http.push(HttpTarget { addr, pages, api });
                }
                ServiceKind::Dns(dns) => {
                    let Some(addr) = udp else { continue };
                    let mut names = Vec::new();
                    for zone in dns.config.zones.zones() {
                        let origin = zone.origin().to_string();
                        names.extend([
                            (format!("www.{origin}"), QType::A),
                            (origin.clone(), QType::Mx),
                            (origin.clone(), QType::Txt),
                            (format!("nowhere.{origin}"), QType::A),
                        ]);
                    }
                    let forwarded = if dns.config.forward.contains(&dns_upstream) {
                        content::upstream_zones()
                            .zones()
                            .iter()
                            .flat_map(|z| ["www", "api"].map(|n| format!("{n}.{}", z.origin())))
                            .collect()
                    } else {
                        Vec::new()
                    };
                    t.dns.push(DnsTarget {
                        addr,
                        names,
                        forwarded,
                    });
                }
                // A kind the traffic generator has no client for gets no demo traffic.
                #[allow(unreachable_patterns)]
                _ => {}
            }
        }
        t
    }
}

/// Where a client reaches listener `endpoint`, and whether it is UDP.
fn reachable(endpoint: &str) -> Option<(bool, SocketAddr)> {
    let (udp, mut addr) = match endpoint.parse().ok()? {
        ServerEndpoint::Tcp { addr, .. } => (false, addr),
        ServerEndpoint::Udp { addr } => (true, addr),
        _ => return None,
    };
    if addr.port() == 0 {
        return None;
    }
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        });
    }
    Some((udp, addr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_demo_gives_the_generator_every_kind() {
        let t = Targets::of(&Config::demo());
        let addr = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert_eq!(t.echo, [addr("127.0.0.1:8000")]);
        assert_eq!(t.echo_udp, [addr("127.0.0.1:8000")]);
        assert_eq!(t.discard, [addr("127.0.0.1:8009")]);
        assert_eq!(t.proxy, [addr("127.0.0.1:8001")]);
        assert_eq!(t.http[0].pages, ["/", "/style.css"]);
        assert_eq!(t.http[0].api.as_deref(), Some("/api/"));
        assert_eq!(t.dns[0].addr, addr("127.0.0.1:5353"));
        assert_eq!(t.dns[0].names[0], ("www.weft.test.".to_owned(), QType::A));
        assert_eq!(
            t.dns[0].forwarded,
            ["www.upstream.test.", "api.upstream.test."]
        );
        let banner = banner(&t, Some(addr("127.0.0.1:9180")));
        assert!(banner.contains("http://127.0.0.1:9180/"), "{banner}");
        assert!(
            banner.contains("curl http://127.0.0.1:8080/api/hello"),
            "{banner}"
        );
        assert!(
            banner.contains("dig @127.0.0.1 -p 5353 www.weft.test\n"),
            "{banner}"
        );
    }

    #[test]
    fn a_file_s_services_are_reached_on_loopback_and_others_left_alone() {
        let config = Config::parse(
            "weft.toml",
            "[[service]]\nname = \"e\"\nkind = \"echo\"\nlisten = [\"unix:/tmp/x.sock\", \"tcp:7000\", \"udp:0\"]\n\
             [[service]]\nname = \"w\"\nkind = \"http\"\nlisten = \"tcp:7001:interface=\\\\:\\\\:\"\n\
             [[service.route]]\nprefix = \"/\"\nupstream = \"http://10.0.0.1:80\"\n",
        )
        .unwrap();
        let t = Targets::of(&config);
        assert_eq!(t.echo, ["127.0.0.1:7000".parse::<SocketAddr>().unwrap()]);
        assert!(t.echo_udp.is_empty(), "port 0 cannot be reached");
        assert_eq!(t.http[0].addr, "[::1]:7001".parse::<SocketAddr>().unwrap());
        assert!(t.http[0].pages.is_empty() && t.http[0].api.is_none());
        assert!(banner(&t, None).contains("curl http://[::1]:7001/"));
    }
}

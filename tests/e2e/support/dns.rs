//! [`dns_service`]: the `[[service]]` table of a `dns` service, built up with what a test
//! needs (zones, upstreams, rate limit, cookies, any other key), and [`spawn_dns_app`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use super::{App, spawn_app_with};

/// The `forward_ports` of every forwarding service a test runs: off the ports
/// [`weft_test_support::free_port`] hands out (20000–31999), which a forwarder drawing
/// from every port above 1024 could take from a test running beside it between the moment
/// that test is handed one and the moment its gateway binds it.
pub const FORWARD_PORTS: &str = "forward_ports = \"32000-65535\"";

/// A `dns` service on loopback, written out by [`toml`](Self::toml).
#[must_use]
pub struct DnsService {
    name: String,
    port: u16,
    tcp: bool,
    /// Zone files, each with its text when it is written into the app's directory first.
    zones: Vec<(PathBuf, Option<String>)>,
    forward: Vec<SocketAddr>,
    /// The other keys, one `key = value` line each.
    keys: Vec<String>,
}

/// A dns service named `name` on UDP `port` of 127.0.0.1, with nothing to answer from yet.
pub fn dns_service(name: &str, port: u16) -> DnsService {
    DnsService {
        name: name.to_owned(),
        port,
        tcp: false,
        zones: Vec::new(),
        forward: Vec::new(),
        keys: Vec::new(),
    }
}

/// weft with `service` beside the usual echo.
pub fn spawn_dns_app(service: DnsService) -> App {
    spawn_app_with(|dir| service.toml(dir))
}

impl DnsService {
    /// Listens on the same port over TCP too.
    pub fn tcp(mut self) -> Self {
        self.tcp = true;
        self
    }

    /// Serves `text` as the zone file `file`, written into the app's directory.
    pub fn zone(mut self, file: &str, text: impl Into<String>) -> Self {
        self.zones.push((file.into(), Some(text.into())));
        self
    }

    /// Serves the zone file at `path`, which the test has written.
    pub fn zone_file(mut self, path: &Path) -> Self {
        self.zones.push((path.to_owned(), None));
        self
    }

    /// Forwards what no zone answers to `upstream`, after those added before.
    pub fn forward(mut self, upstream: SocketAddr) -> Self {
        self.forward.push(upstream);
        self
    }

    /// How long an upstream has to answer, such as `"300ms"`.
    pub fn timeout(self, timeout: &str) -> Self {
        self.key("timeout", &format!("{timeout:?}"))
    }

    /// Response rate limiting: `limit` is the inside of the `rate_limit` table, such as
    /// `"responses_per_second = 5, burst = 10, slip = 2"`.
    pub fn rate_limit(self, limit: &str) -> Self {
        self.key("rate_limit", &format!("{{ {limit} }}"))
    }

    /// Answers DNS cookies.
    pub fn cookies(self) -> Self {
        self.key("cookies", "true")
    }

    /// Any other key; `value` is TOML, such as `r#"["127.0.0.1"]"#`.
    pub fn key(mut self, key: &str, value: &str) -> Self {
        self.keys.push(format!("{key} = {value}"));
        self
    }

    /// The `[[service]]` table, after writing the zone files it carries into `dir`.
    pub fn toml(&self, dir: &Path) -> String {
        let Self { name, port, .. } = self;
        let mut listen = vec![format!("\"udp:{port}:interface=127.0.0.1\"")];
        if self.tcp {
            listen.push(format!("\"tcp:{port}:interface=127.0.0.1\""));
        }
        let mut lines = vec![
            "[[service]]".to_owned(),
            format!("name = {name:?}"),
            "kind = \"dns\"".to_owned(),
            format!("listen = [{}]", listen.join(", ")),
        ];
        if !self.zones.is_empty() {
            let zones: Vec<String> = self
                .zones
                .iter()
                .map(|(file, text)| {
                    let path = dir.join(file);
                    if let Some(text) = text {
                        std::fs::write(&path, text).unwrap();
                    }
                    format!("{:?}", path.display().to_string())
                })
                .collect();
            lines.push(format!("zones = [{}]", zones.join(", ")));
        }
        if !self.forward.is_empty() {
            let forward: Vec<String> = self.forward.iter().map(|u| format!("\"{u}\"")).collect();
            lines.push(format!("forward = [{}]", forward.join(", ")));
            if !self.keys.iter().any(|k| k.starts_with("forward_ports")) {
                lines.push(FORWARD_PORTS.to_owned());
            }
        }
        lines.extend(self.keys.iter().cloned());
        format!("\n{}\n", lines.join("\n"))
    }
}

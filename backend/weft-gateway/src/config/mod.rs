//! `weft.toml`: the dashboard, the store, the inspector's thresholds and the services.
//!
//! [`Config::load`] reads and validates a file completely, before anything binds a port:
//! `weft check` and `weft run` share it, so a file one refuses the other refuses too, for
//! the same reason. Every error names the file, the line, the column and the key
//! ([`ConfigError`]). Durations are written like `"5s"`, `"100ms"`, `"24h"` or `"1h 30m"`,
//! at most [`MAX_DURATION`].
//!
//! `[demo] traffic = true` also claims the demo upstreams' ports, so a file whose services
//! take them is refused here rather than at start.
//!
//! Layout: `raw` (the file as written, with spans), `validate` (meaning and defaults),
//! with the sections that need more in files of their own (`dashboard`, `gateway`,
//! `notify`, `otlp`, `fleet`), `preflight` (what binding or connecting would refuse),
//! `ports` (whether the ports can be taken now, for `weft check`), `keypath` (the key at a span, for TOML's own errors), `error` ([`ConfigError`] and
//! locating spans).

mod dashboard;
mod error;
mod fleet;
mod gateway;
pub(crate) mod keypath;
pub(crate) mod loops;
mod notify;
mod otlp;
mod ports;
pub(crate) mod preflight;
mod raw;
pub(crate) mod validate;
pub(crate) mod wording;

use std::path::{Path, PathBuf};
use std::time::Duration;
use weft::endpoint::ServerEndpoint;

pub use error::ConfigError;
pub use fleet::MAX_INSTANCE_LEN;
pub use gateway::GatewayConfig;
pub(crate) use ports::in_use_by;

use crate::services::{ServiceKind, ServiceLimits};

/// The longest duration any key takes: ten years. Timers add durations to the monotonic
/// clock, which panics on overflow (`"500000000000years"` would take every HTTP connection
/// down); ten years is far inside every platform's clock and tokio's own "far future".
pub const MAX_DURATION: Duration = Duration::from_secs(10 * 31_557_600);

/// The configuration `weft` runs without a file (`weft`, or `weft run` alone): a service
/// of every kind on loopback, and the demo's own traffic. Two things a file cannot say
/// are added by [`Config::demo`]: the site `web` serves and the zone `weft.test` that
/// `dns` answers for, both built into the binary.
pub const DEMO: &str = r#"# The built-in demo of `weft` (`weft run` without --config).
[dashboard]
listen = "tcp:9180:interface=127.0.0.1"

[store]
path = "weft.db"
retention = "24h"
# Short, cleanly closed connections kept per second; the rest are counted (0 keeps all).
connections_per_second = 1000
# Routine DNS answers logged per second and service, failures apart (0 keeps all).
queries_per_second = 1000

[inspect]
stall_after = "5s"
slow_callback = "100ms"

[demo]
# The demo's HTTP upstream (127.0.0.1:8081) and DNS upstream (127.0.0.1:5354), and a
# little traffic to every service below.
traffic = true

[[service]]
name = "echo"
kind = "echo"
listen = ["tcp:8000:interface=127.0.0.1", "udp:8000:interface=127.0.0.1"]

[[service]]
name = "discard"
kind = "discard"
listen = "tcp:8009:interface=127.0.0.1"

[[service]]
name = "proxy"
kind = "tcp-proxy"
listen = "tcp:8001:interface=127.0.0.1"
upstream = "tcp:127.0.0.1:8000"

# Serves the built-in site, and /api/ from the demo's HTTP upstream.
[[service]]
name = "web"
kind = "http"
listen = "tcp:8080:interface=127.0.0.1"
[[service.route]]
prefix = "/api/"
upstream = "http://127.0.0.1:8081"

# Answers for the built-in zone weft.test; other names go to the demo's DNS upstream.
[[service]]
name = "dns"
kind = "dns"
listen = ["udp:5353:interface=127.0.0.1", "tcp:5353:interface=127.0.0.1"]
forward = ["127.0.0.1:5354"]
timeout = "2s"
"#;

/// A validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The dashboard listener.
    pub dashboard: DashboardConfig,
    /// The history store.
    pub store: StoreConfig,
    /// Detector thresholds and sampling.
    pub inspect: InspectConfig,
    /// How the process logs.
    pub log: LogConfig,
    /// The demo's parts (`[demo]`).
    pub demo: DemoConfig,
    /// `[gateway]`.
    pub gateway: GatewayConfig,
    /// Where chains are exported as spans (`[otlp]`); `None` exports nothing.
    pub otlp: Option<weft_inspector::OtlpConfig>,
    /// The services, in file order.
    pub services: Vec<ServiceConfig>,
    /// The files of the process's own that no request may reach, whatever name a hard
    /// link or a mount gives one inside a root (the configuration, the history file and
    /// those beside it, keys, zone files, secondaries' copies, access logs).
    pub private_files: Vec<PathBuf>,
    /// Settings that take no effect as written (`hsts_max_age` on a service without TLS):
    /// no reason to refuse the file, but worth saying. `check` prints them, `run` and a
    /// reload log them.
    pub warnings: Vec<ConfigError>,
}

/// `[demo]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DemoConfig {
    /// Run the demo's upstreams and its traffic generator beside the services (see
    /// [`crate::demo`]); off unless a file (or the built-in demo) says so.
    pub traffic: bool,
}

/// `[dashboard]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DashboardConfig {
    /// A `tcp:` endpoint; loopback unless a token is set.
    pub listen: String,
    /// The bearer token every route but `/healthz` requires, if set (`token`, or read from
    /// the environment variable named by `token_env`).
    pub token: Option<String>,
    /// Host names the dashboard answers to besides its own address and `localhost`.
    pub allowed_hosts: Vec<weft_dashboard::AllowedHost>,
    /// `/ws` clients served at once at most.
    pub max_live_clients: usize,
    /// Connections the dashboard holds at once at most.
    pub max_connections: usize,
    /// Connections one peer holds on the dashboard at once at most (0: no cap).
    pub max_connections_per_peer: usize,
}

/// `[store]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    /// The SQLite file, relative to the working directory unless absolute.
    pub path: PathBuf,
    /// A `postgres://` URL: history in that database, shared with the other gateways
    /// writing there, instead of the file.
    pub url: Option<String>,
    /// How long finished rows are kept.
    pub retention: Duration,
    /// Short, cleanly closed connections kept per second (0: every one).
    pub connections_per_second: u32,
    /// Routine answers each DNS service writes to the query log per second (0: every
    /// one), past it one in 100; failures under a budget of their own, as many but at
    /// least 100 a second.
    pub queries_per_second: u32,
}

impl StoreConfig {
    /// The default `queries_per_second`.
    pub const DEFAULT_QUERIES_PER_SECOND: u32 = 1000;
}

/// `[inspect]`.
#[derive(Debug, Clone, PartialEq)]
pub struct InspectConfig {
    /// A Deferred pending or paused longer than this is stalled.
    pub stall_after: Duration,
    /// A callback running longer than this blocked the reactor.
    pub slow_callback: Duration,
    /// The fraction of successful Deferred chains kept in history.
    pub sample: f64,
    /// Successful chains kept in history per second at most (0: no cap).
    pub sample_per_second: u32,
    /// Failed chains, neither sampled nor flagged, kept in history per second at most (0:
    /// no cap).
    pub failed_per_second: u32,
    /// Where detections worth a page are posted, how often and how many wait at most.
    pub notify: Option<weft_inspector::NotifyConfig>,
}

/// `[log]`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct LogConfig {
    /// How lines on stderr are written (`--log-format` overrides it).
    pub format: LogFormat,
}

/// How the process log (stderr) is written; `RUST_LOG` chooses what is written either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per line, an event's fields as its keys, for log shippers.
    Json,
}

impl LogFormat {
    /// The values `format` and `--log-format` take.
    pub const NAMES: [&'static str; 2] = ["text", "json"];
}

impl std::str::FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            other => Err(format!(
                "unknown log format {other:?}; expected \"text\" or \"json\""
            )),
        }
    }
}

/// The largest configuration file read: a configuration of thousands of services and
/// routes is a few hundred KiB.
pub const MAX_CONFIG_BYTES: u64 = 16 << 20;

/// One `[[service]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceConfig {
    /// Its unique name: the `service` label and the store's key.
    pub name: String,
    /// Endpoint strings it listens on.
    pub listen: Vec<String>,
    /// What it is, with its kind's settings.
    pub kind: ServiceKind,
    /// Its bounds on idle connections and connections per peer.
    pub limits: ServiceLimits,
    /// What the certificates and keys its `ssl:` listeners load held when it was
    /// checked: a certificate renewed in place changes the service, so a reload serves
    /// the new one (the paths alone are the same).
    pub tls_files: weft::net::FilesDigest,
    /// The certificates its `ssl:` listeners serve (each listener's own and its
    /// `tls_certificates`), as written, with when each stops being valid.
    pub certificates: Vec<(String, std::time::SystemTime)>,
}

/// What [`ServiceConfig::files`] calls the files a root may serve: public by nature.
const TLS_CERTIFICATE: &str = "TLS certificate";
const ROUTE_CA: &str = "route CA";
const UPSTREAM_CA: &str = "upstream CA (caCerts)";

impl ServiceConfig {
    /// The files this service reads as it starts or reloads, each with what it is: its
    /// `ssl:` listeners' keys and certificates and its further certificates, its routes'
    /// and its `ssl:` upstream's CAs, its zone files and the files they include.
    pub(crate) fn files(&self) -> Vec<(PathBuf, &'static str)> {
        let mut files = Vec::new();
        for endpoint in self.endpoints() {
            if let ServerEndpoint::Ssl {
                private_key, cert, ..
            } = endpoint
            {
                files.push((private_key, "TLS key"));
                files.push((cert, TLS_CERTIFICATE));
            }
        }
        match &self.kind {
            ServiceKind::Http(http) => {
                for sni in &http.tls_certificates {
                    files.push((sni.key.clone(), "TLS key"));
                    files.push((sni.cert.clone(), TLS_CERTIFICATE));
                }
                for route in &http.web.routes {
                    if let Some(ca) = &route.ca {
                        files.push((ca.clone(), ROUTE_CA));
                    }
                }
            }
            ServiceKind::TcpProxy(proxy) => {
                if let Ok(weft::endpoint::ClientEndpoint::Ssl {
                    ca_certs: Some(ca), ..
                }) = proxy.upstream.parse()
                {
                    files.push((ca, UPSTREAM_CA));
                }
            }
            ServiceKind::Dns(dns) => {
                for zone in &dns.zone_files {
                    files.push((zone.clone(), "zone file"));
                }
                for zone in dns.config.zones.zones() {
                    for included in zone.included_files() {
                        files.push((included.clone(), "zone file (included)"));
                    }
                }
            }
            _ => {}
        }
        files
    }

    /// Whether a file of [`files`](Self::files) that is `what` may be served from a root:
    /// certificates and CAs are public; keys and zones are not.
    pub(crate) fn may_be_served(what: &str) -> bool {
        [TLS_CERTIFICATE, ROUTE_CA, UPSTREAM_CA].contains(&what)
    }

    /// The paths of the unix sockets it listens on.
    pub(crate) fn unix_sockets(&self) -> Vec<PathBuf> {
        self.endpoints()
            .filter_map(|endpoint| match endpoint {
                ServerEndpoint::Unix { path, .. } => Some(path),
                _ => None,
            })
            .collect()
    }

    /// Its listeners, parsed (every one parsed when the configuration was checked).
    fn endpoints(&self) -> impl Iterator<Item = ServerEndpoint> + '_ {
        self.listen.iter().filter_map(|listen| listen.parse().ok())
    }
}

impl Config {
    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let file = path.display().to_string();
        let config = Self::parse(&file, &Self::read(path)?)?;
        config.serves_something(&file)?;
        Ok(config)
    }

    /// The `[log] format` the file at `path` says, read leniently: what a file refused for
    /// anything else still says of how it wants its refusal logged. `None` when the file
    /// cannot be read, is no TOML, or says no format it could run with.
    pub fn declared_log_format(path: &Path) -> Option<LogFormat> {
        // As the file is read to be checked: a regular file, of a bounded size.
        let text = Self::read(path).ok()?;
        let table: toml::Table = text.parse().ok()?;
        table.get("log")?.get("format")?.as_str()?.parse().ok()
    }

    /// A file that declares no service runs nothing: empty, or cut off as it was being
    /// written (a reload of it would stop every service). `check`, `run` and a reload
    /// refuse it alike.
    pub fn serves_something(&self, file: &str) -> Result<(), ConfigError> {
        if !self.services.is_empty() {
            return Ok(());
        }
        Err(ConfigError {
            file: file.to_owned(),
            line: None,
            column: None,
            key: None,
            message: "the file declares no service ([[service]]): there is nothing to run (an \
                      empty file, or one cut off as it was written?)"
                .to_owned(),
        })
    }

    /// Reads `path` without validating it; the error says why it cannot be read. A reload
    /// tells a file it cannot read from one that does not validate this way. Only a
    /// regular file of at most [`MAX_CONFIG_BYTES`] is read: a named pipe would hold the
    /// start, the check or the reload (and every reload after it, and the shutdown)
    /// until something wrote to it, and a device such as `/dev/zero` would never end.
    pub fn read(path: &Path) -> Result<String, ConfigError> {
        weft::files::read_regular_text(path, MAX_CONFIG_BYTES).map_err(|e| ConfigError {
            file: path.display().to_string(),
            line: None,
            column: None,
            key: None,
            message: format!("cannot read the configuration: {e}"),
        })
    }

    /// Whether the ports this configuration (read from `file`) listens on can be taken
    /// now, as `weft check` asks and `run` finds out by binding: `Ok` with notes on ports the
    /// gateway already running this file holds (a reload keeps them), or why one cannot be
    /// taken: a privileged port this process may not bind, or one another program holds.
    pub fn check_ports(&self, file: &Path) -> Result<Vec<String>, String> {
        ports::check(self, file)
    }

    /// Whether its listening sockets fit under the open-files limit (part of
    /// [`check_ports`](Self::check_ports); a reload asks it alone).
    pub fn check_open_files(&self) -> Result<(), String> {
        ports::open_files(self)
    }

    /// Validates `text`, naming `file` in errors.
    pub fn parse(file: &str, text: &str) -> Result<Self, ConfigError> {
        let config = validate::parse(file, text)?;
        match crate::services::dns_zones::first_failure(&config.services) {
            Some(error) => Err(error),
            None => Ok(config),
        }
    }

    /// Like [`parse`](Self::parse), for a reload: a zone file that does not load does not
    /// refuse the file; its service's settings list it (`failed`), and the reload keeps
    /// the zone it had in service (see `services::dns_zones`). `running_history` is the
    /// history file the process writes (a reload does not move it): no root may serve it.
    pub fn parse_for_reload(
        file: &str,
        text: &str,
        running_history: Option<&std::path::Path>,
    ) -> Result<Self, ConfigError> {
        validate::parse_beside(file, text, running_history)
    }

    /// Pins history to the file its path leads to now, when a symlink is on the way: the
    /// writer recreates a file deleted or replaced under it by its path, and a link
    /// re-pointed while weft runs would otherwise move history (into a served root, say)
    /// where only a restart may, and leave a reload's check comparing roots with a file
    /// no longer written. A path without links is kept as written.
    pub fn pin_history_file(&mut self) {
        if self.store.url.is_some() {
            return;
        }
        let written = std::path::absolute(&self.store.path).unwrap_or_default();
        let real = preflight::through_symlinks(&self.store.path);
        if real != written {
            self.store.path = real;
        }
    }

    /// The history file this configuration writes, if history is a file.
    pub fn history_file(&self) -> Option<&std::path::Path> {
        self.store.url.is_none().then_some(&*self.store.path)
    }

    /// The built-in demo configuration: [`DEMO`], with the demo's built-in site and zone.
    pub fn demo() -> Self {
        let mut config = Self::parse("built-in demo configuration", DEMO)
            .expect("the built-in demo configuration is valid");
        crate::demo::content::add_to(&mut config);
        config
    }
}

#[cfg(test)]
mod tests;

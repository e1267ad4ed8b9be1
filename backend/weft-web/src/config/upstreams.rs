//! Where proxy routes forward: upstream URLs, how a route spreads its requests over
//! several, when it stops sending to one that fails, and how upstream connections are
//! kept for reuse. Each bound here is what the gateway's configuration accepts.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use super::ConfigError;

/// The most upstreams one route may name.
pub const MAX_UPSTREAMS: usize = 64;
/// The most consecutive failures `max_fails` may wait for.
pub const MAX_FAILS: u32 = 1000;
/// The shortest `eject_for` and health check `interval`.
pub const MIN_PERIOD: Duration = Duration::from_millis(100);
/// The longest `eject_for` and health check `interval`.
pub const MAX_PERIOD: Duration = Duration::from_secs(3600);
/// The most idle connections kept per upstream.
pub const MAX_IDLE: usize = 1024;

/// Where a route forwards: an `http://` or `https://` origin and an optional base path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// The URL as written: for logs, metric labels and the dashboard (never for clients).
    pub url: String,
    /// Whether it is reached over TLS (`https://`), verified against the route's `ca` or
    /// the system's roots, with the host as the server name.
    pub tls: bool,
    /// Host name or address.
    pub host: String,
    /// Port (80 for `http://`, 443 for `https://`, unless given).
    pub port: u16,
    /// Replaces the route's prefix in forwarded paths; empty to forward paths unchanged.
    pub base_path: String,
}

impl Upstream {
    /// The `host:port` authority.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl FromStr for Upstream {
    type Err = ConfigError;

    fn from_str(url: &str) -> Result<Self, ConfigError> {
        let err = |reason| ConfigError::Upstream {
            url: url.to_owned(),
            reason,
        };
        let (tls, rest) = if let Some(rest) = url.strip_prefix("http://") {
            (false, rest)
        } else if let Some(rest) = url.strip_prefix("https://") {
            (true, rest)
        } else {
            return Err(err("must start with http:// or https://"));
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if path.contains(['?', '#']) {
            return Err(err("must not have a query or a fragment"));
        }
        if authority.contains('@') {
            return Err(err("must not carry credentials"));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6
                .split_once(']')
                .ok_or_else(|| err("unclosed '[' in host"))?;
            (host, after.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(err("has no host"));
        }
        let bracketed = authority.starts_with('[');
        let plain = |c: char| c.is_ascii_alphanumeric() || "-._".contains(c);
        if bracketed && host.parse::<std::net::Ipv6Addr>().is_err()
            || !bracketed && !host.chars().all(plain)
        {
            return Err(err(
                "has a bad host: a name, an IPv4 address or a bracketed IPv6 one",
            ));
        }
        if weft::endpoint::host_ip(host).is_some_and(weft::endpoint::is_many_hosts) {
            return Err(err(
                "has a multicast or broadcast address, which no TCP connection reaches",
            ));
        }
        let port = match port {
            Some(p) => match p.parse() {
                Ok(0) => return Err(err("has port 0, where no server listens")),
                Ok(port) => port,
                Err(_) => return Err(err("has a bad port")),
            },
            None if tls => 443,
            None => 80,
        };
        if !path.is_empty() && path.parse::<http::uri::PathAndQuery>().is_err() {
            return Err(err("has a bad path"));
        }
        if !path.is_empty() {
            match crate::path::normalize(path) {
                Ok(normal) if normal == path => {}
                Ok(normal) => {
                    return Err(ConfigError::UpstreamPathNotNormal {
                        url: url.to_owned(),
                        normal: normal.into_owned(),
                    });
                }
                Err(_) => return Err(err("has a bad path")),
            }
        }
        Ok(Self {
            url: url.to_owned(),
            tls,
            host: host.to_owned(),
            port,
            base_path: path.trim_end_matches('/').to_owned(),
        })
    }
}

/// How a route with several upstreams picks one for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Balance {
    /// Each in turn (the default).
    #[default]
    RoundRobin,
    /// The one with the fewest requests in flight; ties go in turn.
    LeastConn,
}

impl FromStr for Balance {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, ConfigError> {
        match s {
            "round_robin" => Ok(Self::RoundRobin),
            "least_conn" => Ok(Self::LeastConn),
            _ => Err(ConfigError::Balance(s.to_owned())),
        }
    }
}

/// When a route stops sending to an upstream, and how it learns it is back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// Failures in a row (connect failures, timeouts, broken exchanges) that eject an
    /// upstream.
    pub max_fails: u32,
    /// How long an ejected upstream gets no requests; then it is tried again, and one
    /// more failure ejects it again.
    pub eject_for: Duration,
    /// Requests the route sends on its own to learn sooner that an upstream is back.
    pub check: Option<ActiveCheck>,
}

impl Default for Health {
    fn default() -> Self {
        Self {
            max_fails: 3,
            eject_for: Duration::from_secs(10),
            check: None,
        }
    }
}

/// An active health check: `GET path` on each upstream every `interval`; a 2xx or 3xx
/// brings an ejected upstream back at once, anything else counts as a failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveCheck {
    /// The path asked for, such as `/healthz`.
    pub path: String,
    /// Time between checks.
    pub interval: Duration,
}

/// Upstream connections kept open between requests, per upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolConfig {
    /// Idle connections kept per upstream (0 closes each after its response); more are
    /// closed as they come back.
    pub max_idle: usize,
    /// An idle connection unused this long is closed.
    pub idle_timeout: Duration,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            max_idle: 32,
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// Checks a route's health settings against the bounds above.
pub(crate) fn check_health(health: &Health) -> Result<(), ConfigError> {
    let bad = |key, reason| Err(ConfigError::Health { key, reason });
    if !(1..=MAX_FAILS).contains(&health.max_fails) {
        return bad("max_fails", format!("must be between 1 and {MAX_FAILS}"));
    }
    let period = |d: Duration| (MIN_PERIOD..=MAX_PERIOD).contains(&d);
    let bounds = format!("must be between {MIN_PERIOD:?} and {MAX_PERIOD:?}");
    if !period(health.eject_for) {
        return bad("eject_for", bounds);
    }
    if let Some(check) = &health.check {
        if !check.path.starts_with('/') {
            return bad(
                "health.path",
                "must start with '/', such as \"/healthz\"".into(),
            );
        }
        if check.path.parse::<http::uri::PathAndQuery>().is_err() {
            return bad("health.path", "is not a valid request target".into());
        }
        if !period(check.interval) {
            return bad("health.interval", bounds);
        }
    }
    Ok(())
}

/// Checks the pool settings against the bounds above.
pub(crate) fn check_pool(pool: &PoolConfig) -> Result<(), ConfigError> {
    let bad = |key, reason| Err(ConfigError::Pool { key, reason });
    if pool.max_idle > MAX_IDLE {
        return bad("max_idle", format!("must be at most {MAX_IDLE}"));
    }
    if !(Duration::from_secs(1)..=MAX_PERIOD).contains(&pool.idle_timeout) {
        return bad(
            "idle_timeout",
            format!("must be between 1s and {MAX_PERIOD:?}"),
        );
    }
    Ok(())
}

/// Loads a route's `ca` as connecting would: a PEM file of at least one certificate.
pub(crate) fn check_ca(path: &Path) -> Result<(), ConfigError> {
    weft::net::check_ca_certs(path)
        .map(drop)
        .map_err(|e| ConfigError::Ca {
            path: path.to_owned(),
            reason: e.to_string(),
        })
}

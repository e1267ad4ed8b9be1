//! From the file as written to a [`Config`]: defaults, durations, endpoints, and the rule
//! that a dashboard off loopback needs a token.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::ops::Range;
use std::time::Duration;

use toml::Spanned;
use weft::endpoint::ServerEndpoint;

use super::error::Locator;
use super::raw::{RawConfig, RawService};
use super::{Config, ConfigError, DashboardConfig, InspectConfig, ServiceConfig, StoreConfig};
use crate::services;

pub(super) fn parse(file: &str, text: &str) -> Result<Config, ConfigError> {
    let at = Locator { file, text };
    let raw: RawConfig =
        toml::from_str(text).map_err(|e| at.error(e.span(), None, e.message().trim()))?;

    let dashboard = dashboard(&at, &raw)?;
    let store = StoreConfig {
        path: match &raw.store.path {
            Some(p) if p.get_ref().trim().is_empty() => {
                return Err(at.error(Some(p.span()), key("store.path"), "must not be empty"));
            }
            Some(p) => p.get_ref().into(),
            None => "weft.db".into(),
        },
        retention: duration(&at, "store.retention", &raw.store.retention, "24h")?,
        connections_per_second: raw
            .store
            .connections_per_second
            .unwrap_or(crate::inspector::DEFAULT_HISTORY_CONNECTIONS_PER_S),
    };
    let inspect = InspectConfig {
        stall_after: duration(&at, "inspect.stall_after", &raw.inspect.stall_after, "5s")?,
        slow_callback: duration(
            &at,
            "inspect.slow_callback",
            &raw.inspect.slow_callback,
            "100ms",
        )?,
        sample: match &raw.inspect.sample {
            Some(s) if !(0.0..=1.0).contains(s.get_ref()) => {
                return Err(at.error(
                    Some(s.span()),
                    key("inspect.sample"),
                    format!("must be between 0.0 and 1.0, got {}", s.get_ref()),
                ));
            }
            Some(s) => *s.get_ref(),
            None => 0.1,
        },
    };

    let mut names: HashMap<&str, usize> = HashMap::new();
    let mut bound: HashMap<(bool, SocketAddr), String> = HashMap::new();
    if let Some(addr) = tcp_addr(&dashboard.listen) {
        bound.insert((false, addr), "[dashboard]".into());
    }
    let mut services = Vec::with_capacity(raw.service.len());
    for (i, svc) in raw.service.iter().enumerate() {
        let svc = svc.get_ref();
        let prefix = format!("service[{i}]");
        let name = svc.name.get_ref();
        if name.trim().is_empty() {
            return Err(at.error(
                Some(svc.name.span()),
                key(&format!("{prefix}.name")),
                "must not be empty",
            ));
        }
        if let Some(first) = names.insert(name, i) {
            return Err(at.error(
                Some(svc.name.span()),
                key(&format!("{prefix}.name")),
                format!("service name {name:?} is already used by service[{first}]; names must be unique"),
            ));
        }
        let listen = endpoints(&at, &prefix, &svc.listen)?;
        let ctx = ServiceCtx {
            at: &at,
            prefix: &prefix,
            raw: svc,
            listen: &listen,
        };
        let kind = services::validate(&ctx)?;
        for (endpoint, span) in &listen {
            let parsed: ServerEndpoint = endpoint.parse().expect("checked by `endpoints`");
            let slot = match parsed {
                ServerEndpoint::Tcp { addr, .. } | ServerEndpoint::Ssl { addr, .. } => {
                    Some((false, addr))
                }
                ServerEndpoint::Udp { addr } => Some((true, addr)),
                _ => None,
            };
            if let Some(slot) = slot
                && slot.1.port() != 0
                && let Some(other) = bound.insert(slot, format!("{prefix} ({name})"))
            {
                return Err(at.error(
                    Some(span.clone()),
                    key(&format!("{prefix}.listen")),
                    format!("{endpoint:?} is also used by {other}"),
                ));
            }
        }
        services.push(ServiceConfig {
            name: name.clone(),
            listen: listen.into_iter().map(|(e, _)| e).collect(),
            kind,
        });
    }
    Ok(Config {
        dashboard,
        store,
        inspect,
        services,
    })
}

/// What a service module needs to validate its kind's keys.
pub(crate) struct ServiceCtx<'a> {
    pub(crate) at: &'a Locator<'a>,
    /// `service[N]`, for error keys.
    pub(crate) prefix: &'a str,
    pub(crate) raw: &'a RawService,
    /// The endpoints, parsed as server endpoints, with their spans.
    pub(crate) listen: &'a [(String, Range<usize>)],
}

impl ServiceCtx<'_> {
    /// An error about `field` of this service, at `span`.
    pub(crate) fn error(
        &self,
        span: Range<usize>,
        field: &str,
        message: impl Into<String>,
    ) -> ConfigError {
        self.at.error(
            Some(span),
            key(&format!("{}.{field}", self.prefix)),
            message,
        )
    }

    /// Rejects kind-specific keys other than `allowed`.
    pub(crate) fn only_keys(&self, allowed: &[&str]) -> Result<(), ConfigError> {
        let kind = self.raw.kind.get_ref();
        match self
            .raw
            .extra_keys()
            .into_iter()
            .find(|(k, _)| !allowed.contains(k))
        {
            Some((k, span)) => {
                Err(self.error(span, k, format!("`{k}` is not a setting of kind {kind:?}")))
            }
            None => Ok(()),
        }
    }

    /// Whether an endpoint is UDP.
    pub(crate) fn is_udp(endpoint: &str) -> bool {
        matches!(
            endpoint.parse::<ServerEndpoint>(),
            Ok(ServerEndpoint::Udp { .. })
        )
    }
}

fn key(k: &str) -> Option<String> {
    Some(k.to_owned())
}

fn tcp_addr(endpoint: &str) -> Option<SocketAddr> {
    match endpoint.parse::<ServerEndpoint>().ok()? {
        ServerEndpoint::Tcp { addr, .. } => Some(addr),
        _ => None,
    }
}

fn dashboard(at: &Locator<'_>, raw: &RawConfig) -> Result<DashboardConfig, ConfigError> {
    let token = match &raw.dashboard.token {
        Some(t) if t.get_ref().trim().is_empty() => {
            return Err(at.error(
                Some(t.span()),
                key("dashboard.token"),
                "must not be empty; remove it for no token",
            ));
        }
        Some(t) => Some(t.get_ref().clone()),
        None => None,
    };
    let token = match (&raw.dashboard.token_env, token) {
        (Some(var), Some(_)) => {
            return Err(at.error(
                Some(var.span()),
                key("dashboard.token_env"),
                "set either `token` or `token_env`, not both",
            ));
        }
        (Some(var), None) => match std::env::var(var.get_ref()) {
            Ok(value) if !value.trim().is_empty() => Some(value),
            _ => {
                return Err(at.error(
                    Some(var.span()),
                    key("dashboard.token_env"),
                    format!(
                        "the environment variable {:?} is not set (or empty)",
                        var.get_ref()
                    ),
                ));
            }
        },
        (None, token) => token,
    };
    let (listen, span) = match &raw.dashboard.listen {
        Some(l) => (l.get_ref().clone(), Some(l.span())),
        None => ("tcp:9180:interface=127.0.0.1".to_owned(), None),
    };
    let err = |message: String| at.error(span.clone(), key("dashboard.listen"), message);
    let addr = match listen.parse::<ServerEndpoint>() {
        Ok(ServerEndpoint::Tcp { addr, .. }) => addr,
        Ok(_) => {
            return Err(err(format!(
                "{listen:?}: the dashboard listens on a tcp: endpoint"
            )));
        }
        Err(e) => return Err(err(e.to_string())),
    };
    if !addr.ip().is_loopback() && token.is_none() {
        return Err(err(format!(
            "{listen:?} is reachable from other machines; set `token` (or `token_env`) in [dashboard] or listen on \
             a loopback interface (tcp:PORT:interface=127.0.0.1)"
        )));
    }
    let mut allowed_hosts = Vec::new();
    for (i, host) in raw
        .dashboard
        .allowed_hosts
        .iter()
        .flat_map(|h| h.get_ref().iter())
        .enumerate()
    {
        let parsed = host
            .get_ref()
            .parse()
            .map_err(|e: weft_dashboard::HostError| {
                at.error(
                    Some(host.span()),
                    key(&format!("dashboard.allowed_hosts[{i}]")),
                    e.to_string(),
                )
            })?;
        allowed_hosts.push(parsed);
    }
    let max_live_clients = match &raw.dashboard.max_live_clients {
        Some(n) if !(1..=MAX_LIVE_CLIENTS).contains(n.get_ref()) => {
            return Err(at.error(
                Some(n.span()),
                key("dashboard.max_live_clients"),
                format!(
                    "must be between 1 and {MAX_LIVE_CLIENTS}, got {}",
                    n.get_ref()
                ),
            ));
        }
        Some(n) => usize::try_from(*n.get_ref()).expect("checked to be positive"),
        None => weft_dashboard::live::DEFAULT_MAX_LIVE_CLIENTS,
    };
    Ok(DashboardConfig {
        listen,
        token,
        allowed_hosts,
        max_live_clients,
    })
}

/// The most `/ws` clients `max_live_clients` may allow.
const MAX_LIVE_CLIENTS: i64 = 100_000;

fn duration(
    at: &Locator<'_>,
    name: &str,
    value: &Option<Spanned<String>>,
    default: &str,
) -> Result<Duration, ConfigError> {
    let (text, span) = match value {
        Some(v) => (v.get_ref().as_str(), Some(v.span())),
        None => (default, None),
    };
    match humantime::parse_duration(text) {
        Ok(d) if d.is_zero() => Err(at.error(span, key(name), "must be longer than zero")),
        Ok(d) => Ok(d),
        Err(e) => Err(at.error(
            span,
            key(name),
            format!("{text:?} is not a duration ({e}); write it like \"5s\", \"100ms\" or \"24h\""),
        )),
    }
}

/// `listen` as a list of endpoint strings that parse, each with its span.
fn endpoints(
    at: &Locator<'_>,
    prefix: &str,
    listen: &Spanned<toml::Value>,
) -> Result<Vec<(String, Range<usize>)>, ConfigError> {
    let k = key(&format!("{prefix}.listen"));
    let shape = || {
        at.error(
            Some(listen.span()),
            k.clone(),
            "must be an endpoint string or a list of them",
        )
    };
    let list: Vec<String> = match listen.get_ref() {
        toml::Value::String(s) => vec![s.clone()],
        toml::Value::Array(items) => items
            .iter()
            .map(|v| v.as_str().map(str::to_owned).ok_or_else(shape))
            .collect::<Result<_, _>>()?,
        _ => return Err(shape()),
    };
    if list.is_empty() {
        return Err(at.error(Some(listen.span()), k, "needs at least one endpoint"));
    }
    list.into_iter()
        .map(|e| match e.parse::<ServerEndpoint>() {
            Ok(_) => Ok((e, listen.span())),
            Err(err) => Err(at.error(Some(listen.span()), k.clone(), err.to_string())),
        })
        .collect()
}

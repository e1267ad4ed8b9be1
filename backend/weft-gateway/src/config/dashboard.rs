//! `[dashboard]`: where the dashboard listens, the token it asks for (written in the file
//! or named by `token_env`, and required off loopback), the `Host` names it answers, and
//! its caps on connections and `/ws` clients.

use toml::Spanned;
use weft_inspector::DashboardEndpointError;

use super::error::Locator;
use super::raw::RawDashboard;
use super::validate::key;
use super::{ConfigError, DashboardConfig};

/// The most `/ws` clients or connections the dashboard's caps may allow.
const MAX_DASHBOARD_CONNECTIONS: i64 = 100_000;

/// Where the dashboard listens when the file does not say.
const DEFAULT_LISTEN: &str = "tcp:9180:interface=127.0.0.1";

pub(super) fn dashboard(
    at: &Locator<'_>,
    raw: &RawDashboard,
) -> Result<DashboardConfig, ConfigError> {
    let token = token(at, raw)?;
    let listen = listen(at, raw, token.as_deref())?;
    let count = |name: &str, value: &Option<Spanned<i64>>, least: i64, default: usize| match value {
        Some(n) if !(least..=MAX_DASHBOARD_CONNECTIONS).contains(n.get_ref()) => Err(at.error(
            Some(n.span()),
            key(&format!("dashboard.{name}")),
            format!(
                "must be between {least} and {MAX_DASHBOARD_CONNECTIONS}, got {}",
                n.get_ref()
            ),
        )),
        Some(n) => Ok(usize::try_from(*n.get_ref()).expect("checked to be in range")),
        None => Ok(default),
    };
    let max_connections = count(
        "max_connections",
        &raw.max_connections,
        1,
        weft_dashboard::server::DEFAULT_MAX_CONNECTIONS,
    )?;
    let max_connections_per_peer = count(
        "max_connections_per_peer",
        &raw.max_connections_per_peer,
        0,
        weft_dashboard::server::DEFAULT_MAX_CONNECTIONS_PER_PEER,
    )?;
    // A cap per peer written above the total caps nothing: one peer could take every
    // connection, which the file seems to mean to prevent. (The default one above a lower
    // total is only not reached.)
    if let Some(written) = &raw.max_connections_per_peer
        && max_connections_per_peer > max_connections
    {
        return Err(at.error(
            Some(written.span()),
            key("dashboard.max_connections_per_peer"),
            format!(
                "{max_connections_per_peer} is above the total (max_connections = \
                 {max_connections}): one peer could take every connection; make it at most \
                 the total, or 0 for no cap per peer"
            ),
        ));
    }
    Ok(DashboardConfig {
        listen,
        token,
        allowed_hosts: allowed_hosts(at, raw)?,
        max_live_clients: count(
            "max_live_clients",
            &raw.max_live_clients,
            1,
            weft_dashboard::live::DEFAULT_MAX_LIVE_CLIENTS,
        )?,
        max_connections,
        max_connections_per_peer,
    })
}

/// `token`, or the value of the variable `token_env` names; not both, and not empty.
fn token(at: &Locator<'_>, raw: &RawDashboard) -> Result<Option<String>, ConfigError> {
    let token = match &raw.token {
        Some(t) if t.get_ref().trim().is_empty() => {
            return Err(at.error(
                Some(t.span()),
                key("dashboard.token"),
                "must not be empty; remove it for no token",
            ));
        }
        Some(t) => {
            if let Err(why) = usable(t.get_ref()) {
                return Err(at.error(Some(t.span()), key("dashboard.token"), why));
            }
            Some(t.get_ref().clone())
        }
        None => None,
    };
    match (&raw.token_env, token) {
        (Some(var), Some(_)) => Err(at.error(
            Some(var.span()),
            key("dashboard.token_env"),
            "set either `token` or `token_env`, not both",
        )),
        (Some(var), None) => match std::env::var(var.get_ref()) {
            Ok(value) if !value.trim().is_empty() => match usable(&value) {
                Ok(()) => Ok(Some(value)),
                Err(why) => Err(at.error(
                    Some(var.span()),
                    key("dashboard.token_env"),
                    format!("the value of {:?} {why}", var.get_ref()),
                )),
            },
            _ => Err(at.error(
                Some(var.span()),
                key("dashboard.token_env"),
                format!(
                    "the environment variable {:?} is not set (or empty)",
                    var.get_ref()
                ),
            )),
        },
        (None, token) => Ok(token),
    }
}

/// Whether `token` can be the dashboard's ([`weft_dashboard::token_problem`]).
fn usable(token: &str) -> Result<(), String> {
    weft_dashboard::token_problem(token).map_or(Ok(()), Err)
}

/// `listen`: an endpoint the dashboard can serve on, on an address of this host, off
/// loopback only with a token.
fn listen(
    at: &Locator<'_>,
    raw: &RawDashboard,
    token: Option<&str>,
) -> Result<String, ConfigError> {
    let (listen, span) = match &raw.listen {
        Some(l) => (l.get_ref().clone(), Some(l.span())),
        None => (DEFAULT_LISTEN.to_owned(), None),
    };
    let err = |message: String| at.error(span.clone(), key("dashboard.listen"), message);
    match weft_inspector::dashboard_addr(&listen, token) {
        Ok(_) => {
            let parsed = listen.parse().expect("parsed by `dashboard_addr`");
            super::preflight::check_server(&listen, &parsed).map_err(err)?;
            Ok(listen)
        }
        Err(DashboardEndpointError::NeedsToken(_)) => Err(err(format!(
            "{listen:?} is reachable from other machines; set `token` (or `token_env`) in [dashboard] or listen on \
             a loopback interface (tcp:PORT:interface=127.0.0.1)"
        ))),
        Err(e) => Err(err(e.to_string())),
    }
}

/// `allowed_hosts`, each parsed; the bad one named by its index.
fn allowed_hosts(
    at: &Locator<'_>,
    raw: &RawDashboard,
) -> Result<Vec<weft_dashboard::AllowedHost>, ConfigError> {
    let hosts = raw.allowed_hosts.iter().flat_map(|h| h.get_ref().iter());
    hosts
        .enumerate()
        .map(|(i, host)| {
            host.get_ref()
                .parse()
                .map_err(|e: weft_dashboard::HostError| {
                    at.error(
                        Some(host.span()),
                        key(&format!("dashboard.allowed_hosts[{i}]")),
                        e.to_string(),
                    )
                })
        })
        .collect()
}

//! An http service's proxy routes and upstream pool as written, checked into
//! [`weft_web::Route`]s and a [`weft_web::PoolConfig`]: every error names its key path
//! (`service[N].route[M].upstreams[K]`), and `weft check` loads each route's `ca` as
//! connecting would.
//!
//! ```toml
//! upstream_pool = { max_idle = 32, idle_timeout = "60s" }   # optional; the defaults
//! [[service.route]]
//! prefix = "/api/"
//! upstreams = ["http://10.0.0.1:9000", "https://api.internal"]  # or upstream = "..."
//! balance = "round_robin"        # or "least_conn"
//! max_fails = 3                  # failures in a row that eject an upstream
//! eject_for = "10s"              # how long an ejected upstream gets no requests
//! health = { path = "/healthz", interval = "5s" }   # optional active checks
//! ca = "/etc/weft/upstream-ca.pem"   # optional: roots for https:// upstreams
//! cache_control = "no-store"     # optional: sent with its responses that have none
//! rate_limit = { requests_per_second = 5, burst = 10 }   # optional: each client's budget
//! response_headers = { "Cache-Status" = "weft" }   # optional: on its upstreams' responses
//! request_headers = { Host = "app.example", "X-Api-Key" = "k", "Accept-Encoding" = "" }
//!                                # optional: set on its requests upstream ("" removes)
//! allow = ["10.0.0.0/8"]         # optional: only these clients (deny = [...]: never these)
//! ```

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;
use weft_web::config::{MAX_FAILS, MAX_IDLE, MAX_PERIOD, MAX_UPSTREAMS, MIN_PERIOD};
use weft_web::{ActiveCheck, Balance, Health, PoolConfig, Route};

use crate::config::ConfigError;
use crate::config::validate::ServiceCtx;

/// The health check interval when `health` gives none.
const DEFAULT_CHECK_INTERVAL: Duration = Duration::from_secs(5);

/// One `[[service.route]]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRoute {
    prefix: Spanned<String>,
    upstream: Option<Spanned<String>>,
    upstreams: Option<Spanned<Vec<Spanned<String>>>>,
    balance: Option<Spanned<String>>,
    max_fails: Option<Spanned<i64>>,
    eject_for: Option<Spanned<String>>,
    health: Option<Spanned<RawHealth>>,
    ca: Option<Spanned<String>>,
    cache_control: Option<Spanned<String>>,
    rate_limit: Option<Spanned<super::rate_limit::RawRateLimit>>,
    response_headers: Option<Spanned<super::http::RawHeaders>>,
    request_headers: Option<Spanned<super::http::RawHeaders>>,
    allow: Option<crate::services::http::RawBlocks>,
    deny: Option<crate::services::http::RawBlocks>,
}

/// `health = { ... }` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHealth {
    path: Spanned<String>,
    interval: Option<Spanned<String>>,
}

/// `upstream_pool = { ... }` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPool {
    max_idle: Option<Spanned<i64>>,
    idle_timeout: Option<Spanned<String>>,
}

/// Every `[[service.route]]`, in order; two with one prefix are refused (the second
/// would never be used).
pub(crate) fn routes(ctx: &ServiceCtx<'_>) -> Result<Vec<Route>, ConfigError> {
    let raw: Vec<&Spanned<RawRoute>> = ctx
        .raw
        .route
        .iter()
        .flat_map(|r| r.get_ref().iter())
        .collect();
    let mut routes: Vec<Route> = Vec::with_capacity(raw.len());
    for (i, spanned) in raw.iter().enumerate() {
        let route = self::route(ctx, &format!("route[{i}]"), spanned)?;
        if let Some(first) = routes.iter().position(|r| r.prefix == route.prefix) {
            let prefix = &spanned.get_ref().prefix;
            return Err(ctx.error(
                prefix.span(),
                &format!("route[{i}].prefix"),
                format!(
                    "{:?} is route[{first}]'s prefix already: this route would never be used",
                    route.prefix
                ),
            ));
        }
        routes.push(route);
    }
    Ok(routes)
}

fn route(
    ctx: &ServiceCtx<'_>,
    key: &str,
    spanned: &Spanned<RawRoute>,
) -> Result<Route, ConfigError> {
    let raw = spanned.get_ref();
    let field = |name: &str| format!("{key}.{name}");
    let urls = upstream_urls(ctx, key, spanned)?;
    let first = urls
        .first()
        .map(|(u, _)| u.get_ref().as_str())
        .unwrap_or_default();
    let mut route = match Route::new(raw.prefix.get_ref(), first) {
        Err(weft_web::ConfigError::Prefix(_)) => {
            return Err(ctx.error(
                raw.prefix.span(),
                &field("prefix"),
                "must start with '/', such as prefix = \"/api/\"",
            ));
        }
        Err(e @ weft_web::ConfigError::PrefixNotNormal { .. }) => {
            return Err(ctx.error(raw.prefix.span(), &field("prefix"), e.to_string()));
        }
        Err(e) => return Err(ctx.error(urls[0].0.span(), &urls[0].1, e.to_string())),
        Ok(route) => route,
    };
    route.upstreams = urls
        .iter()
        .map(|(url, at)| {
            url.get_ref()
                .parse()
                .map_err(|e: weft_web::ConfigError| ctx.error(url.span(), at, e.to_string()))
        })
        .collect::<Result<_, _>>()?;
    if let Some(b) = &raw.balance {
        route.balance = b
            .get_ref()
            .parse::<Balance>()
            .map_err(|e| ctx.error(b.span(), &field("balance"), e.to_string()))?;
    }
    route.health = health(ctx, key, raw)?;
    if let Some(ca) = &raw.ca {
        route.ca = Some(PathBuf::from(ca.get_ref()));
    }
    if let Some(v) = &raw.cache_control {
        let value = weft_web::config::cache_control(v.get_ref())
            .map_err(|e| ctx.error(v.span(), &field("cache_control"), e.to_string()))?;
        route.cache_control = Some(value);
    }
    route.access = super::http::access(ctx, key, (&raw.allow, &raw.deny))?;
    if let Some(h) = &raw.response_headers {
        route.response_headers = super::http::response_headers(ctx, &field("response_headers"), h)?;
    }
    if let Some(h) = &raw.request_headers {
        route.request_headers = super::http::request_headers(ctx, &field("request_headers"), h)?;
    }
    if let Some(r) = &raw.rate_limit {
        route.rate_limit = Some(super::rate_limit::read_requests(
            ctx,
            &field("rate_limit"),
            r,
        )?);
    }
    // What is left to check (the `ca` loading, the health path's syntax) is named by
    // its key.
    route.check().map_err(|e| {
        let (span, name) = match (&e, &raw.ca, &raw.health) {
            (weft_web::ConfigError::Ca { .. }, Some(ca), _) => (ca.span(), "ca".to_owned()),
            (weft_web::ConfigError::Health { key, .. }, _, Some(h)) => {
                (h.span(), (*key).to_owned())
            }
            (weft_web::ConfigError::Health { key, .. }, _, None) => {
                (spanned.span(), (*key).to_owned())
            }
            _ => (spanned.span(), "upstreams".to_owned()),
        };
        ctx.error(span, &field(&name), e.to_string())
    })?;
    Ok(route)
}

/// The route's upstream URLs, from `upstream` (one) or `upstreams` (several), each with
/// the key that names it in errors.
fn upstream_urls<'r>(
    ctx: &ServiceCtx<'_>,
    key: &str,
    spanned: &'r Spanned<RawRoute>,
) -> Result<Vec<(&'r Spanned<String>, String)>, ConfigError> {
    let raw = spanned.get_ref();
    let field = |name: &str| format!("{key}.{name}");
    match (&raw.upstream, &raw.upstreams) {
        (Some(one), None) => Ok(vec![(one, field("upstream"))]),
        (None, Some(list)) => {
            let n = list.get_ref().len();
            if n == 0 || n > MAX_UPSTREAMS {
                return Err(ctx.error(
                    list.span(),
                    &field("upstreams"),
                    format!("needs between 1 and {MAX_UPSTREAMS} upstream URLs, got {n}"),
                ));
            }
            Ok(list
                .get_ref()
                .iter()
                .enumerate()
                .map(|(j, u)| (u, format!("{key}.upstreams[{j}]")))
                .collect())
        }
        (Some(_), Some(list)) => Err(ctx.error(
            list.span(),
            &field("upstreams"),
            "give `upstream` (one) or `upstreams` (several), not both",
        )),
        (None, None) => Err(ctx.error(
            spanned.span(),
            &field("upstream"),
            "a route needs `upstream = \"http://HOST:PORT\"` or `upstreams = [...]`",
        )),
    }
}

/// `max_fails`, `eject_for` and `health` of one route.
fn health(ctx: &ServiceCtx<'_>, key: &str, raw: &RawRoute) -> Result<Health, ConfigError> {
    let d = Health::default();
    let field = |name: &str| format!("{key}.{name}");
    let period = |name: &str, value: Option<&Spanned<String>>, default: Duration| {
        let d = ctx.duration(&field(name), value, default)?;
        if !(MIN_PERIOD..=MAX_PERIOD).contains(&d) {
            let span = value.map_or(0..0, Spanned::span);
            return Err(ctx.error(
                span,
                &field(name),
                format!("must be between {MIN_PERIOD:?} and {MAX_PERIOD:?}"),
            ));
        }
        Ok(d)
    };
    let max_fails = match &raw.max_fails {
        Some(n) => u32::try_from(*n.get_ref())
            .ok()
            .filter(|n| (1..=MAX_FAILS).contains(n))
            .ok_or_else(|| {
                ctx.error(
                    n.span(),
                    &field("max_fails"),
                    format!("must be between 1 and {MAX_FAILS}, got {}", n.get_ref()),
                )
            })?,
        None => d.max_fails,
    };
    let check = match &raw.health {
        Some(h) => {
            let h = h.get_ref();
            let path = h.path.get_ref();
            if !path.starts_with('/') {
                return Err(ctx.error(
                    h.path.span(),
                    &field("health.path"),
                    "must be a path such as \"/healthz\"",
                ));
            }
            Some(ActiveCheck {
                path: path.clone(),
                interval: period(
                    "health.interval",
                    h.interval.as_ref(),
                    DEFAULT_CHECK_INTERVAL,
                )?,
            })
        }
        None => None,
    };
    Ok(Health {
        max_fails,
        eject_for: period("eject_for", raw.eject_for.as_ref(), d.eject_for)?,
        check,
    })
}

/// `upstream_pool`, the defaults when absent.
pub(crate) fn pool(ctx: &ServiceCtx<'_>) -> Result<PoolConfig, ConfigError> {
    let d = PoolConfig::default();
    let Some(raw) = &ctx.raw.upstream_pool else {
        return Ok(d);
    };
    let raw = raw.get_ref();
    let max_idle = match &raw.max_idle {
        Some(n) => usize::try_from(*n.get_ref())
            .ok()
            .filter(|n| *n <= MAX_IDLE)
            .ok_or_else(|| {
                ctx.error(
                    n.span(),
                    "upstream_pool.max_idle",
                    format!("must be between 0 and {MAX_IDLE}, got {}", n.get_ref()),
                )
            })?,
        None => d.max_idle,
    };
    let idle_timeout = ctx.duration(
        "upstream_pool.idle_timeout",
        raw.idle_timeout.as_ref(),
        d.idle_timeout,
    )?;
    if !(Duration::from_secs(1)..=MAX_PERIOD).contains(&idle_timeout) {
        let span = raw.idle_timeout.as_ref().map_or(0..0, Spanned::span);
        return Err(ctx.error(
            span,
            "upstream_pool.idle_timeout",
            format!("must be between 1s and {MAX_PERIOD:?}"),
        ));
    }
    Ok(PoolConfig {
        max_idle,
        idle_timeout,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::services::http::tests::{http as web, parse};

    #[test]
    fn every_route_key_is_read_with_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        std::fs::write(&ca, cert.cert.pem()).unwrap();
        let c = parse(&format!(
            "upstream_pool = {{ max_idle = 4, idle_timeout = \"2s\" }}\n\
             [[service.route]]\nprefix = \"/a/\"\nupstream = \"http://h:1\"\n\
             [[service.route]]\nprefix = \"/b/\"\n\
             upstreams = [\"http://h:1\", \"https://h\"]\nbalance = \"least_conn\"\n\
             max_fails = 5\neject_for = \"1m\"\nhealth = {{ path = \"/healthz\" }}\nca = {:?}\n",
            ca.display().to_string()
        ))
        .unwrap();
        let web = web(&c);
        assert_eq!(
            web.pool,
            PoolConfig {
                max_idle: 4,
                idle_timeout: Duration::from_secs(2)
            }
        );
        let (a, b) = (&web.routes[0], &web.routes[1]);
        assert_eq!(a.upstreams.len(), 1);
        assert_eq!(
            (a.balance, &a.health, &a.ca),
            (Balance::RoundRobin, &Health::default(), &None)
        );
        assert_eq!(b.upstreams[1].port, 443);
        assert!(b.upstreams[1].tls);
        assert_eq!(b.balance, Balance::LeastConn);
        assert_eq!(
            b.health,
            Health {
                max_fails: 5,
                eject_for: Duration::from_secs(60),
                check: Some(ActiveCheck {
                    path: "/healthz".into(),
                    interval: DEFAULT_CHECK_INTERVAL
                }),
            }
        );
        assert_eq!(b.ca.as_deref(), Some(ca.as_path()));
    }

    #[test]
    fn route_errors_name_the_key() {
        let route = |keys: &str| parse(&format!("[[service.route]]\nprefix = \"/\"\n{keys}\n"));
        for (keys, key) in [
            ("", "service[0].route[0].upstream"),
            (
                "upstream = \"http://h:1\"\nupstreams = [\"http://h:2\"]",
                "service[0].route[0].upstreams",
            ),
            (
                "upstreams = [\"http://h:1\", \"h:2\"]",
                "service[0].route[0].upstreams[1]",
            ),
            (
                "upstream = \"http://h:1\"\nbalance = \"fastest\"",
                "service[0].route[0].balance",
            ),
            (
                "upstream = \"http://h:1\"\neject_for = \"1ms\"",
                "service[0].route[0].eject_for",
            ),
            (
                "upstream = \"http://h:1\"\nhealth = { path = \"/h\", interval = \"2h\" }",
                "service[0].route[0].health.interval",
            ),
            (
                "upstream = \"http://h:1\"\nhealth = { path = \"/h h\" }",
                "service[0].route[0].health.path",
            ),
            (
                "upstream = \"https://h\"\nca = \"/surely/not/ca.pem\"",
                "service[0].route[0].ca",
            ),
        ] {
            let e = route(keys).unwrap_err();
            assert_eq!(e.key.as_deref(), Some(key), "{keys}: {e}");
        }
        let e = parse(
            "upstream_pool = { idle_timeout = \"0.5s\" }\n\
             [[service.route]]\nprefix = \"/\"\nupstream = \"http://h:1\"\n",
        )
        .unwrap_err();
        assert_eq!(
            e.key.as_deref(),
            Some("service[0].upstream_pool.idle_timeout"),
            "{e}"
        );
        let e = parse(
            "[[service.route]]\nprefix = \"/\"\nupstream = \"http://h:1\"\nhealth = { path = \"/h\", every = \"1s\" }\n",
        )
        .unwrap_err();
        assert_eq!(e.line, Some(8), "an unknown key in health: {e}");
    }
}

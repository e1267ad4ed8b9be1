//! `kind = "http"`: static files and reverse-proxy routes ([`weft_web`], twisted.web).
//!
//! ```toml
//! [[service]]
//! name = "web"
//! kind = "http"
//! listen = "tcp:8080:interface=127.0.0.1"
//! root = "./public"            # optional: omit for a proxy-only service
//! index = "index.html"         # optional
//! limits = { max_header_bytes = 16384, request_timeout = "10s", max_body_bytes = 10485760,
//!            body_buffer_bytes = 65536, body_buffer_total_bytes = 67108864,
//!            body_file_total_bytes = 268435456,
//!            upstream_connect_timeout = "5s", upstream_timeout = "30s",
//!            max_requests_per_connection = 1000 }   # optional
//! body_file_dir = "/var/tmp"   # optional: where proxied request bodies longer than
//!                              # body_buffer_bytes are written (default: the system's
//!                              # temporary directory, $TMPDIR or /tmp)
//! listing = false              # optional: list directories without an index file
//! fallback = "/index.html"     # optional: answered for paths no file is at (an SPA)
//! cache_control = "public, max-age=3600"   # optional: sent with static files
//!                              # (a route has its own, for proxied responses)
//! rate_limit = { requests_per_second = 50, burst = 100 }   # optional: each client's budget
//!                              # (a route may have one besides)
//! https_redirect = true        # optional: plain HTTP is sent to the ssl: listener's port
//!                              # (or a port: https_redirect = 443)
//! response_headers = { "X-Content-Type-Options" = "nosniff" }   # optional: on every
//!                              # response without the field (a route may have its own)
//! allow = ["10.0.0.0/8", "2001:db8::/32"]   # optional: only these clients (403 for others)
//! deny = ["10.9.0.0/16"]       # optional: never these (a route may narrow both further)
//! error_pages = { 404 = "/errors/404.html", 502 = "/errors/down.html" }   # optional:
//!                              # answered in place of the service's own error responses
//! trusted_proxies = ["10.0.0.0/8", "unix:"]   # optional: proxies in front whose X-Forwarded-For
//!                              # and X-Forwarded-Proto name the client and its scheme
//! compression = { precompressed = true, on_the_fly = true, min_bytes = 1024,
//!                 max_bytes = 1048576 }                  # optional; the defaults
//! hsts_max_age = "365d"       # optional: Strict-Transport-Security over TLS; off if absent
//! tls_certificates = [{ names = ["a.example"], cert = "a.pem", key = "a.key" }]  # optional:
//!                              # chosen by SNI on ssl: listeners (see `tls_certificates`)
//! upstream_pool = { max_idle = 32, idle_timeout = "60s" }   # optional
//! [[service.route]]              # see `http_routes` for every key of a route
//! prefix = "/api/"
//! upstream = "http://127.0.0.1:9000"
//! cache_control = "no-store"   # optional: sent with its responses that have none
//! ```
//!
//! The root is checked with the configuration, and a service starts from the root as
//! checked ([`weft_web::StaticFiles`]): a root that cannot be served is a configuration
//! error naming `service[N].root`, never a listening error. Each service's requests and
//! lost access log lines are counted in the `weft_http_*` families of
//! [`weft_web::metrics`], one set of series per service, registered on first start and
//! kept across reloads; its routes' figures are registered as its view for the
//! dashboard's HTTP page (`services::http_view`).

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use prometheus::Registry;
use serde::Deserialize;
use toml::Spanned;
use weft::observe::exemplar::ExemplarIndex;
use weft_web::{
    AccessLog, AccessLogLosses, Compression, FileOptions, EmbeddedFiles, HttpMetrics, HttpService, Limits, LossRecorder,
    Recorder, StaticFiles, WebConfig,
};

use crate::config::ConfigError;
use crate::config::validate::ServiceCtx;

/// The settings of an http service.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HttpConfig {
    /// What it serves: root, index, routes, limits.
    pub web: WebConfig,
    /// A file the access log is appended to; `None` logs requests through the process log.
    pub access_log: Option<PathBuf>,
    /// Further certificates of the `ssl:` listeners, chosen by SNI.
    pub tls_certificates: Vec<weft::net::SniCertificate>,
    /// The static files of `web` as checked with the configuration, so that starting has
    /// no root left to fail on.
    files: StaticFiles,
}

impl HttpConfig {
    /// Serves `files` from memory (the demo's built-in site) instead of a root.
    pub fn serve_embedded(&mut self, files: EmbeddedFiles) -> Result<(), weft_web::ConfigError> {
        let mut web = self.web.clone();
        web.embedded = Some(files);
        self.files = StaticFiles::of(&web)?;
        self.web = web;
        Ok(())
    }
}

/// `limits = { ... }` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLimits {
    max_header_bytes: Option<Spanned<u64>>,
    request_timeout: Option<Spanned<String>>,
    max_body_bytes: Option<Spanned<u64>>,
    body_buffer_bytes: Option<Spanned<u64>>,
    body_buffer_total_bytes: Option<Spanned<u64>>,
    body_file_total_bytes: Option<Spanned<u64>>,
    upstream_connect_timeout: Option<Spanned<String>>,
    upstream_timeout: Option<Spanned<String>>,
    max_requests_per_connection: Option<Spanned<u32>>,
}

/// `compression = { ... }` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCompression {
    precompressed: Option<Spanned<bool>>,
    on_the_fly: Option<Spanned<bool>>,
    min_bytes: Option<Spanned<u64>>,
    max_bytes: Option<Spanned<u64>>,
}

/// `kind = "http"`.
pub(crate) struct HttpKind;

impl super::Kind for HttpKind {
    const NAME: &'static str = "http";
    const KEYS: &'static [&'static str] = &[
        "root",
        "route",
        "index",
        "limits",
        "access_log",
        "listing",
        "cache_control",
        "compression",
        "hsts_max_age",
        "body_file_dir",
        "tls_certificates",
        "upstream_pool",
        "rate_limit",
        "https_redirect",
        "response_headers",
        "allow",
        "deny",
        "fallback",
        "trusted_proxies",
        "error_pages",
    ];
    /// An idle keep-alive connection waits `request_timeout` for its next request; this
    /// bounds the rest.
    const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
    type Settings = Box<HttpConfig>;
    type Metrics = HttpFamilies;

    fn validate(ctx: &ServiceCtx<'_>) -> Result<Box<HttpConfig>, ConfigError> {
        ctx.only_keys(Self::KEYS)?;
        ctx.stream_only("an http service")?;
        let raw = ctx.raw;
        let root = root(ctx)?;
        let routes = super::http_routes::routes(ctx)?;
        if let Some(age) = &raw.hsts_max_age
            && !ctx.has_tls()
            && !trusts_a_proxy(ctx)
        {
            ctx.warn(
                age.span(),
                "hsts_max_age",
                "takes no effect: Strict-Transport-Security is sent only over TLS, and the \
                 service has no ssl: listener (behind a TLS front end, send it from there, \
                 or name it in trusted_proxies)",
            );
        }
        if let Some(dir) = &raw.body_file_dir
            && routes.is_empty()
        {
            ctx.warn(
                dir.span(),
                "body_file_dir",
                "takes no effect: it holds proxied request bodies, and the service has no \
                 [[service.route]]",
            );
        }
        if root.is_none() && routes.is_empty() {
            return Err(ctx.error(
                raw.kind.span(),
                "root",
                "an http service needs `root` (static files), a [[service.route]], or both",
            ));
        }
        let index = index(ctx)?;
        let limits = match &raw.limits {
            Some(l) => limits(ctx, l.get_ref())?,
            None => Limits::default(),
        };
        let (trusted_proxies, trust_unix_peers) = trusted_proxies(ctx)?;
        let error_pages = error_pages(ctx, root.as_deref())?;
        let web = WebConfig {
            root,
            embedded: None,
            index,
            routes,
            limits,
            pool: super::http_routes::pool(ctx)?,
            files: file_options(ctx)?,
            hsts_max_age: match &raw.hsts_max_age {
                Some(age) => Some(ctx.duration("hsts_max_age", Some(age), Duration::ZERO)?),
                None => None,
            },
            body_file_dir: match &raw.body_file_dir {
                Some(dir) if dir.get_ref().is_empty() => {
                    return Err(ctx.error(dir.span(), "body_file_dir", "must be a directory path"));
                }
                Some(dir) => PathBuf::from(dir.get_ref()),
                None => std::env::temp_dir(),
            },
            rate_limit: match &raw.rate_limit {
                Some(r) => Some(super::rate_limit::read_requests(ctx, "rate_limit", r)?),
                None => None,
            },
            https_redirect: https_redirect(ctx)?,
            response_headers: match &raw.response_headers {
                Some(h) => response_headers(ctx, "response_headers", h)?,
                None => Vec::new(),
            },
            access: access(ctx, "", (&raw.allow, &raw.deny))?,
            trusted_proxies,
            trust_unix_peers,
            error_pages,
        };
        // Where bodies go is checked as they would be written: `weft check` refuses a
        // directory `weft run` could not use.
        web.check_body_files().map_err(|e| {
            let span = raw.body_file_dir.as_ref().map_or(raw.kind.span(), |d| d.span());
            let hint = if raw.body_file_dir.is_none() {
                " (the default; set body_file_dir, or limits.body_file_total_bytes = 0 to stream long bodies)"
            } else {
                ""
            };
            ctx.error(span, "body_file_dir", format!("{e}{hint}"))
        })?;
        // Checked here, once: `start` serves these and has nothing left to refuse.
        let files = StaticFiles::of(&web).map_err(|e| {
            let span = raw.root.as_ref().map_or(raw.kind.span(), |r| r.span());
            ctx.error(span, "root", e.to_string())
        })?;
        // Looked up as a request would (hidden names, symlinks out of the root and all).
        if let (Some(path), Some(written)) = (&web.files.fallback, &raw.fallback)
            && !files.has_file(path)
        {
            let why = match web.root {
                Some(_) => format!(
                    "{path:?} is no file a request could be served yet: until it is, a path \
                     no file is found at is 404"
                ),
                None => "takes no effect: the service has no root to serve it from".to_owned(),
            };
            ctx.warn(written.span(), "fallback", why);
        }
        Ok(Box::new(HttpConfig {
            web,
            access_log: super::access_log::validate(ctx)?,
            tls_certificates: super::tls_certificates::validate(ctx)?,
            files,
        }))
    }

    fn metrics(registry: Option<&Registry>, exemplars: &ExemplarIndex) -> HttpFamilies {
        HttpFamilies {
            registry: registry.cloned(),
            exemplars: exemplars.clone(),
            recorders: PerService::default(),
            losses: PerService::default(),
            handovers: Rc::default(),
        }
    }

    fn start(
        on: &super::Listeners<'_>,
        config: &Self::Settings,
        env: &super::ServiceEnv,
    ) -> Result<Vec<weft::Address>, super::ServiceError> {
        let (name, endpoints) = (on.name, on.endpoints);
        let metrics = env.metrics::<Self>();
        let access_log = match &config.access_log {
            Some(path) => AccessLog::File(
                env.access_logs
                    .open(path, metrics.losses(name))
                    .map_err(|source| super::ServiceError::File {
                        key: "access_log",
                        path: path.clone(),
                        source,
                    })?,
            ),
            None if env.access_log_fields => AccessLog::Fields,
            None => AccessLog::Line,
        };
        let service = HttpService::with_files(
            name,
            config.web.clone(),
            config.files.clone(),
            metrics.recorder(name),
        )
        .with_access_log(access_log);
        // What the service this one replaces hands over (the cell naming the generation
        // in force, and its rate budgets' buckets); this one goes in force, serving the
        // old one's keep-alive connections from their next request on, and its handover
        // is kept for the next, when the reload commits: a failed reload changes
        // neither.
        let service = match metrics.handovers.peek(name) {
            Some(previous) => service.taking_over(&previous),
            None => service,
        };
        let (handovers, successor, key) = (metrics.handovers.clone(), service.clone(), name.to_owned());
        on.reactor.at_commit(move || {
            successor.put_in_force();
            handovers.set(&key, successor.handover());
        });
        let options = on
            .options
            .clone()
            .sni_certificates(config.tls_certificates.clone());
        let mut bound = Vec::with_capacity(endpoints.len());
        for endpoint in endpoints {
            let port = service.listen_with(on.reactor, endpoint, &options)?;
            bound.push(port.local_address().clone());
        }
        let view = super::http_view::HttpView::of(&service);
        env.views.set(name, Self::NAME, Arc::new(view));
        Ok(bound)
    }

    fn describe(config: &Self::Settings) -> serde_json::Value {
        let (web, access_log) = (&config.web, &config.access_log);
        let routes: Vec<_> = web
            .routes
            .iter()
            .map(|r| {
                let urls: Vec<_> = r.upstreams.iter().map(|u| &u.url).collect();
                serde_json::json!({
                    "prefix": r.prefix,
                    "upstream": urls[0],
                    "upstreams": urls,
                    "balance": match r.balance {
                        weft_web::Balance::RoundRobin => "round_robin",
                        weft_web::Balance::LeastConn => "least_conn",
                    },
                    "cache_control": r.cache_control.as_ref().and_then(|v| v.to_str().ok()),
                    "rate_limit": r.rate_limit.map(rate_json),
                    "response_headers": headers_json(&r.response_headers),
                    // Names alone: a value may be a secret for the upstream (an API key).
                    "request_headers": r.request_headers.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
                    "access": access_json(&r.access),
                })
            })
            .collect();
        serde_json::json!({
            "root": web.root.as_ref().map(|r| r.display().to_string()),
            "embedded": web.embedded.as_ref().map(|e| e.names().collect::<Vec<_>>()),
            "index": web.index,
            "listing": web.files.listing,
            "fallback": web.files.fallback,
            "cache_control": web.files.cache_control.as_ref().and_then(|v| v.to_str().ok()),
            "compression": {
                "precompressed": web.files.compression.precompressed,
                "on_the_fly": web.files.compression.on_the_fly,
                "min_bytes": web.files.compression.min_bytes,
                "max_bytes": web.files.compression.max_bytes,
            },
            "rate_limit": web.rate_limit.map(rate_json),
            "https_redirect": web.https_redirect,
            "response_headers": headers_json(&web.response_headers),
            "access": access_json(&web.access),
            "trusted_proxies": web
                .trusted_proxies
                .iter()
                .map(ToString::to_string)
                .chain(web.trust_unix_peers.then(|| "unix:".to_owned()))
                .collect::<Vec<_>>(),
            "error_pages": web.error_pages.iter().map(|p| p.status.as_u16()).collect::<Vec<_>>(),
            "routes": routes,
            "access_log": access_log.as_ref().map(|p| p.display().to_string()),
            "tls_names": config.tls_certificates.iter().flat_map(|c| &c.names).collect::<Vec<_>>(),
        })
    }
}

/// `https_redirect`: `true` sends plain requests to the port of the service's first
/// `ssl:` listener, a number to that port (a port mapped, or TLS passed through by a front
/// end); `false` or absent, none.
fn https_redirect(ctx: &ServiceCtx<'_>) -> Result<Option<u16>, ConfigError> {
    let Some(value) = &ctx.raw.https_redirect else {
        return Ok(None);
    };
    let span = value.span();
    let port = match value.get_ref() {
        toml::Value::Boolean(false) => return Ok(None),
        toml::Value::Boolean(true) => {
            let ssl = ctx.listen.iter().find_map(|(endpoint, _)| {
                match endpoint.parse::<weft::endpoint::ServerEndpoint>() {
                    Ok(weft::endpoint::ServerEndpoint::Ssl { addr, .. }) => Some(addr.port()),
                    _ => None,
                }
            });
            match ssl {
                Some(0) => {
                    return Err(ctx.error(
                        span,
                        "https_redirect",
                        "the ssl: listener's port is the system's choice; give the port \
                         clients reach https on, such as https_redirect = 443",
                    ));
                }
                Some(port) => port,
                None => {
                    return Err(ctx.error(
                        span,
                        "https_redirect",
                        "true needs an ssl: listener to send clients to; give the port \
                         clients reach https on when it is another (a mapped port, such as \
                         https_redirect = 443)",
                    ));
                }
            }
        }
        toml::Value::Integer(n) => match u16::try_from(*n) {
            Ok(port) if port > 0 => {
                if !ctx.has_tls() && !trusts_a_proxy(ctx) {
                    ctx.warn(
                        span.clone(),
                        "https_redirect",
                        "every request this service takes is over plain HTTP and is \
                         redirected: behind a front end that ends TLS and forwards here, \
                         that is a redirect loop (name the front end in trusted_proxies, \
                         whose X-Forwarded-Proto says https, or redirect there instead)",
                    );
                }
                port
            }
            _ => {
                return Err(ctx.error(
                    span,
                    "https_redirect",
                    format!("must be a port between 1 and 65535, got {n}"),
                ));
            }
        },
        other => {
            return Err(ctx.error(
                span,
                "https_redirect",
                format!(
                    "must be true, false or the port clients reach https on, got {}",
                    other.type_str()
                ),
            ));
        }
    };
    if ctx.listen.iter().all(|(endpoint, _)| endpoint.starts_with("ssl:")) {
        ctx.warn(
            span,
            "https_redirect",
            "takes no effect: it redirects requests over plain HTTP, and every listener of \
             the service is ssl:",
        );
    }
    Ok(Some(port))
}

/// `response_headers = { ... }` as written: each entry with its span (TOML's own error
/// names a value that is no table).
pub(crate) type RawHeaders = std::collections::BTreeMap<Spanned<String>, Spanned<toml::Value>>;

/// `response_headers` under `key` (the service's, or a route's): a table of field names
/// and values, each checked as [`weft_web::config::response_header`] says.
pub(crate) fn response_headers(
    ctx: &ServiceCtx<'_>,
    key: &str,
    value: &Spanned<RawHeaders>,
) -> Result<Vec<(http::HeaderName, http::HeaderValue)>, ConfigError> {
    header_table(ctx, key, value, weft_web::config::response_header, http::HeaderValue::len)
}

/// A route's `request_headers` under `key`: a table of field names and values (an empty
/// one removes the field), each checked as [`weft_web::config::request_header`] says.
pub(crate) fn request_headers(
    ctx: &ServiceCtx<'_>,
    key: &str,
    value: &Spanned<RawHeaders>,
) -> Result<Vec<(http::HeaderName, Option<http::HeaderValue>)>, ConfigError> {
    header_table(ctx, key, value, weft_web::config::request_header, |v| {
        v.as_ref().map_or(0, http::HeaderValue::len)
    })
}

/// A table of header fields under `key`, each checked by `check`, none named twice, at
/// most [`MAX_RESPONSE_HEADERS`](weft_web::config::MAX_RESPONSE_HEADERS) of them and
/// [`MAX_RESPONSE_HEADER_BYTES`](weft_web::config::MAX_RESPONSE_HEADER_BYTES) in all
/// (values measured by `len`).
fn header_table<V>(
    ctx: &ServiceCtx<'_>,
    key: &str,
    value: &Spanned<RawHeaders>,
    check: impl Fn(&str, &str) -> Result<(http::HeaderName, V), weft_web::config::ConfigError>,
    len: impl Fn(&V) -> usize,
) -> Result<Vec<(http::HeaderName, V)>, ConfigError> {
    use weft_web::config::{MAX_RESPONSE_HEADER_BYTES, MAX_RESPONSE_HEADERS};
    let span = value.span();
    let table = value.get_ref();
    if table.len() > MAX_RESPONSE_HEADERS {
        return Err(ctx.error(
            span,
            key,
            format!("at most {MAX_RESPONSE_HEADERS} fields, got {}", table.len()),
        ));
    }
    let mut fields: Vec<(http::HeaderName, V)> = Vec::with_capacity(table.len());
    for (name, value) in table {
        let at = format!("{key}.{}", toml_key(name.get_ref()));
        let Some(text) = value.get_ref().as_str() else {
            return Err(ctx.error(value.span(), &at, "must be a string"));
        };
        let (field, value) =
            check(name.get_ref(), text).map_err(|e| ctx.error(name.span(), &at, e.to_string()))?;
        if fields.iter().any(|(f, _)| *f == field) {
            return Err(ctx.error(
                name.span(),
                &at,
                "is given twice (names are the same whatever their case)",
            ));
        }
        fields.push((field, value));
    }
    let bytes: usize = fields.iter().map(|(n, v)| n.as_str().len() + len(v)).sum();
    if bytes > MAX_RESPONSE_HEADER_BYTES {
        return Err(ctx.error(
            span,
            key,
            format!("at most {MAX_RESPONSE_HEADER_BYTES} bytes of fields in all, got {bytes}"),
        ));
    }
    Ok(fields)
}

/// `name` as a TOML key: bare when it may be, else quoted.
fn toml_key(name: &str) -> String {
    let bare = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if bare { name.to_owned() } else { format!("{name:?}") }
}

/// `allow` or `deny` as written: addresses and CIDR blocks, each with its span.
pub(crate) type RawBlocks = Spanned<Vec<Spanned<String>>>;

/// `allow` and `deny` under `at` (`""` for the service's, `route[1]` for a route's):
/// lists of addresses and CIDR blocks.
pub(crate) fn access(
    ctx: &ServiceCtx<'_>,
    at: &str,
    (allow, deny): (&Option<RawBlocks>, &Option<RawBlocks>),
) -> Result<weft_web::Access, ConfigError> {
    let key = |name: &str| {
        if at.is_empty() {
            name.to_owned()
        } else {
            format!("{at}.{name}")
        }
    };
    let access = weft_web::Access {
        allow: blocks(ctx, &key("allow"), allow)?,
        deny: blocks(ctx, &key("deny"), deny)?,
    };
    if let Some(list) = allow
        && access.allow.is_empty()
    {
        ctx.warn(
            list.span(),
            &key("allow"),
            "is empty, which limits no client (an empty list shuts nothing; leave it out, \
             or name the clients)",
        );
    }
    Ok(access)
}

/// A list of addresses and CIDR blocks under `key`, each named by its place when it does
/// not parse (`key[2]`), and warned of when it has bits set past its length.
fn blocks(
    ctx: &ServiceCtx<'_>,
    key: &str,
    list: &Option<RawBlocks>,
) -> Result<Vec<weft::policies::Prefix>, ConfigError> {
    let entries = list.as_ref().map_or(&[][..], |l| &l.get_ref()[..]);
    entries
        .iter()
        .enumerate()
        .map(|(i, entry)| block(ctx, key, i, entry))
        .collect()
}

/// Entry `i` of the list of blocks under `key`: an address or a CIDR block.
fn block(
    ctx: &ServiceCtx<'_>,
    key: &str,
    i: usize,
    entry: &Spanned<String>,
) -> Result<weft::policies::Prefix, ConfigError> {
    let written = entry.get_ref();
    let block = written
        .parse::<weft::policies::Prefix>()
        .map_err(|e| ctx.error(entry.span(), &format!("{key}[{i}]"), e.to_string()))?;
    // `10.1.2.3/8` is `10.0.0.0/8`: a typo that widens the block, as nginx warns.
    let address = written.split('/').next().unwrap_or_default().trim();
    let canonical = address
        .parse::<std::net::IpAddr>()
        .ok()
        .map(|a| a.to_canonical());
    if canonical != Some(block.network()) {
        ctx.warn(
            entry.span(),
            key,
            format!("\"{written}\" has bits set past its length: it is {block}"),
        );
    }
    Ok(block)
}

/// `error_pages = { 404 = "/errors/404.html", 503 = "/errors/busy.html" }`: pages under
/// `root` answered in place of the service's own error responses, read now (so `check`
/// refuses a page `run` could not serve, and a reload reads them again).
fn error_pages(
    ctx: &ServiceCtx<'_>,
    root: Option<&std::path::Path>,
) -> Result<Vec<weft_web::config::ErrorPage>, ConfigError> {
    use weft_web::config::{ErrorPage, MAX_ERROR_PAGES};
    let Some(table) = &ctx.raw.error_pages else {
        return Ok(Vec::new());
    };
    let Some(root) = root else {
        return Err(ctx.error(
            table.span(),
            "error_pages",
            "needs `root`, which the pages are read from",
        ));
    };
    if table.get_ref().len() > MAX_ERROR_PAGES {
        return Err(ctx.error(
            table.span(),
            "error_pages",
            format!("at most {MAX_ERROR_PAGES} pages, got {}", table.get_ref().len()),
        ));
    }
    let mut pages = Vec::with_capacity(table.get_ref().len());
    for (status, path) in table.get_ref() {
        let at = format!("error_pages.{}", toml_key(status.get_ref()));
        let written = status.get_ref();
        let code = Some(written)
            .filter(|w| w.len() == 3 && w.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|w| w.parse::<u16>().ok())
            .ok_or_else(|| {
                ctx.error(status.span(), &at, "must be an error status, three digits from 400 to 599")
            })?;
        let page = ErrorPage::read(code, root, path.get_ref())
            .map_err(|e| ctx.error(path.span(), &at, e.to_string()))?;
        // Answered without a body, or by hyper itself: never through a page.
        if matches!(code, 408 | 414 | 416 | 431) {
            ctx.warn(
                status.span(),
                &at,
                "takes no effect: the service answers this status without a page of its own \
                 (416 says its range in Content-Range; 408, 414 and 431 come before a request \
                 is read whole)",
            );
        }
        pages.push(page);
    }
    Ok(pages)
}

/// Whether `trusted_proxies` names any proxy in front.
fn trusts_a_proxy(ctx: &ServiceCtx<'_>) -> bool {
    ctx.raw
        .trusted_proxies
        .as_ref()
        .is_some_and(|l| !l.get_ref().is_empty())
}

/// `trusted_proxies`: the proxies in front whose `X-Forwarded-For` and
/// `X-Forwarded-Proto` name the client and its scheme.
/// `"unix:"` among them trusts peers on unix sockets (a front end on the same host).
fn trusted_proxies(
    ctx: &ServiceCtx<'_>,
) -> Result<(Vec<weft::policies::Prefix>, bool), ConfigError> {
    let list = &ctx.raw.trusted_proxies;
    let entries = list.as_ref().map_or(&[][..], |l| &l.get_ref()[..]);
    let mut trusted = Vec::with_capacity(entries.len());
    let mut unix = false;
    for (i, entry) in entries.iter().enumerate() {
        match entry.get_ref().as_str() {
            "unix:" => unix = true,
            _ => trusted.push(block(ctx, "trusted_proxies", i, entry)?),
        }
    }
    if let Some(list) = list {
        if trusted.is_empty() && !unix {
            ctx.warn(
                list.span(),
                "trusted_proxies",
                "is empty, which trusts no proxy (leave it out)",
            );
        } else if trusted.iter().any(|p| p.length() == 0) {
            ctx.warn(
                list.span(),
                "trusted_proxies",
                "trusts every address, so any client can name itself whatever client it \
                 likes in X-Forwarded-For (name the proxies in front)",
            );
        }
    }
    Ok((trusted, unix))
}

/// An access list, for the services table.
fn access_json(access: &weft_web::Access) -> serde_json::Value {
    let text = |list: &[weft::policies::Prefix]| {
        list.iter().map(ToString::to_string).collect::<Vec<_>>()
    };
    serde_json::json!({ "allow": text(&access.allow), "deny": text(&access.deny) })
}

/// `response_headers`, for the services table.
fn headers_json(fields: &[(http::HeaderName, http::HeaderValue)]) -> serde_json::Value {
    fields
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                serde_json::Value::from(value.to_str().unwrap_or_default()),
            )
        })
        .collect::<serde_json::Map<_, _>>()
        .into()
}

/// A `rate_limit`, for the services table.
fn rate_json(r: weft_web::RateLimit) -> serde_json::Value {
    serde_json::json!({
        "requests_per_second": r.requests_per_second,
        "burst": r.burst,
        "ipv4_prefix": r.ipv4_prefix,
        "ipv6_prefix": r.ipv6_prefix,
    })
}

/// `listing`, `cache_control` and `compression`.
fn file_options(ctx: &ServiceCtx<'_>) -> Result<FileOptions, ConfigError> {
    let raw = ctx.raw;
    let cache_control = match &raw.cache_control {
        Some(v) => Some(
            weft_web::config::cache_control(v.get_ref())
                .map_err(|e| ctx.error(v.span(), "cache_control", e.to_string()))?,
        ),
        None => None,
    };
    let d = Compression::default();
    let compression = match &raw.compression {
        Some(c) => {
            let c = c.get_ref();
            let made = Compression {
                precompressed: c
                    .precompressed
                    .as_ref()
                    .map_or(d.precompressed, |v| *v.get_ref()),
                on_the_fly: c.on_the_fly.as_ref().map_or(d.on_the_fly, |v| *v.get_ref()),
                min_bytes: c.min_bytes.as_ref().map_or(d.min_bytes, |v| *v.get_ref()),
                max_bytes: c.max_bytes.as_ref().map_or(d.max_bytes, |v| *v.get_ref()),
            };
            if let Err(e) = made.check() {
                // The bound written, where only one is: `max_bytes` below the default
                // `min_bytes` is the slip of the `max_bytes` written.
                let (value, key) = match e {
                    weft_web::ConfigError::CompressionTooLarge { .. } => {
                        (&c.max_bytes, "compression.max_bytes")
                    }
                    _ if c.min_bytes.is_none() => (&c.max_bytes, "compression.max_bytes"),
                    _ => (&c.min_bytes, "compression.min_bytes"),
                };
                let span = value.as_ref().map_or(raw.kind.span(), |v| v.span());
                return Err(ctx.error(span, key, e.to_string()));
            }
            made
        }
        None => d,
    };
    let fallback = match &raw.fallback {
        Some(path) => Some(
            weft_web::config::fallback(path.get_ref())
                .map_err(|e| ctx.error(path.span(), "fallback", e.to_string()))?,
        ),
        None => None,
    };
    Ok(FileOptions {
        listing: raw.listing.as_ref().is_some_and(|v| *v.get_ref()),
        cache_control,
        compression,
        fallback,
    })
}

/// `root`: a directory path, if given.
fn root(ctx: &ServiceCtx<'_>) -> Result<Option<PathBuf>, ConfigError> {
    let Some(root) = &ctx.raw.root else {
        return Ok(None);
    };
    let Some(path) = root.get_ref().as_str() else {
        return Err(ctx.error(root.span(), "root", "must be a directory path"));
    };
    if !std::path::Path::new(path).is_dir() {
        return Err(ctx.error(
            root.span(),
            "root",
            format!("{path:?} is not a directory (relative paths start at the working directory)"),
        ));
    }
    Ok(Some(PathBuf::from(path)))
}

/// `index`: a file name, `index.html` by default.
/// Whether `name` names a file in a directory: not empty, not `.` or `..` (the directory
/// itself, or the one above it), with no `/` or NUL.
fn is_file_name(name: &str) -> bool {
    !matches!(name, "" | "." | "..") && !name.contains(['/', '\0'])
}

fn index(ctx: &ServiceCtx<'_>) -> Result<String, ConfigError> {
    match &ctx.raw.index {
        Some(i) if !is_file_name(i.get_ref()) => Err(ctx.error(
            i.span(),
            "index",
            "must be a file name, such as \"index.html\"",
        )),
        Some(i) => {
            // Hidden names are never served, whatever asks for them.
            if i.get_ref().starts_with('.') {
                ctx.warn(
                    i.span(),
                    "index",
                    format!(
                        "{:?} begins with a dot, and such a name is never served: every \
                         directory would answer 404 (or its listing)",
                        i.get_ref()
                    ),
                );
            }
            Ok(i.get_ref().clone())
        }
        None => Ok("index.html".into()),
    }
}

fn limits(ctx: &ServiceCtx<'_>, raw: &RawLimits) -> Result<Limits, ConfigError> {
    let d = Limits::default();
    let header = match &raw.max_header_bytes {
        Some(n) if !(1024..=1024 * 1024).contains(n.get_ref()) => {
            return Err(ctx.error(
                n.span(),
                "limits.max_header_bytes",
                format!("must be between 1024 and 1048576, got {}", n.get_ref()),
            ));
        }
        Some(n) => usize::try_from(*n.get_ref()).unwrap_or(usize::MAX),
        None => d.max_header_bytes,
    };
    let body = match &raw.max_body_bytes {
        Some(n) => *n.get_ref(),
        None => d.max_body_bytes,
    };
    let buffer = raw
        .body_buffer_bytes
        .as_ref()
        .map_or(d.body_buffer_bytes, |n| *n.get_ref());
    let buffers = match &raw.body_buffer_total_bytes {
        Some(n) if *n.get_ref() < buffer => {
            return Err(ctx.error(
                n.span(),
                "limits.body_buffer_total_bytes",
                format!("must be at least limits.body_buffer_bytes ({buffer}), got {}", n.get_ref()),
            ));
        }
        Some(n) => *n.get_ref(),
        // A larger buffer than the default raises the default total with it.
        None => d.body_buffer_total_bytes.max(buffer),
    };
    let duration = |name: &str, value: &Option<Spanned<String>>, default: Duration| {
        ctx.duration(&format!("limits.{name}"), value.as_ref(), default)
    };
    Ok(Limits {
        max_header_bytes: header,
        request_timeout: duration("request_timeout", &raw.request_timeout, d.request_timeout)?,
        max_body_bytes: body,
        body_buffer_bytes: buffer,
        body_buffer_total_bytes: buffers,
        body_file_total_bytes: raw
            .body_file_total_bytes
            .as_ref()
            .map_or(d.body_file_total_bytes, |n| *n.get_ref()),
        upstream_connect_timeout: duration(
            "upstream_connect_timeout",
            &raw.upstream_connect_timeout,
            d.upstream_connect_timeout,
        )?,
        upstream_timeout: duration(
            "upstream_timeout",
            &raw.upstream_timeout,
            d.upstream_timeout,
        )?,
        max_requests_per_connection: raw
            .max_requests_per_connection
            .as_ref()
            .map_or(d.max_requests_per_connection, |n| *n.get_ref()),
    })
}

/// What the HTTP services of one gateway share: the registry their series go on, and
/// each service's series, registered once by name.
pub(crate) struct HttpFamilies {
    /// Where a service's series are registered when it first starts; `None` counts
    /// nothing (a program that starts services without the hub).
    registry: Option<Registry>,
    /// Where the request latency histograms list their exemplars.
    exemplars: ExemplarIndex,
    /// Request series by service name: a reload's replacement counts on in them.
    recorders: PerService<Rc<dyn Recorder>>,
    /// Access log loss series by service name, kept for the same reason.
    losses: PerService<Arc<dyn LossRecorder>>,
    /// What each service's newest committed start on this reactor hands to the start
    /// after a reload: the cell naming the generation in force (which serves the requests
    /// of every generation's connections, and whose `rate_limit` buckets the next
    /// adopts), held weakly (set when the reload commits).
    handovers: Rc<PerService<weft_web::Handover>>,
}

impl HttpFamilies {
    /// Where the service `name` records its requests: its series, or nowhere without a
    /// registry (or if they cannot be registered, which is logged).
    fn recorder(&self, name: &str) -> Rc<dyn Recorder> {
        self.recorders.get(name, || {
            let register =
                |r: &Registry, name: &str| HttpMetrics::register_with_exemplars(r, &self.exemplars, name);
            match self.register(name, "HTTP metrics are unavailable", register) {
                Some(m) => Rc::new(m),
                None => Rc::new(weft_web::NoRecorder),
            }
        })
    }

    /// Where the service `name` counts the access log lines it lost, as
    /// [`recorder`](Self::recorder).
    fn losses(&self, name: &str) -> Arc<dyn LossRecorder> {
        self.losses.get(name, || {
            let unavailable = "access log losses are not on /metrics";
            match self.register(name, unavailable, AccessLogLosses::register) {
                Some(l) => Arc::new(l),
                None => Arc::new(weft_web::NoRecorder),
            }
        })
    }

    /// `name`'s series made by `register` on the registry; `None` without one, or when
    /// they cannot be registered (logged as `unavailable`).
    fn register<T>(
        &self,
        name: &str,
        unavailable: &str,
        register: impl FnOnce(&Registry, &str) -> prometheus::Result<T>,
    ) -> Option<T> {
        match register(self.registry.as_ref()?, name) {
            Ok(series) => Some(series),
            Err(err) => {
                tracing::warn!(service = name, %err, "{unavailable}");
                None
            }
        }
    }
}

/// What each service registers once by name and keeps across reloads (a registry takes one
/// registration of a name, and a service replaced by a reload counts on in the same
/// series).
struct PerService<T>(RefCell<HashMap<String, T>>);

impl<T> Default for PerService<T> {
    fn default() -> Self {
        Self(RefCell::default())
    }
}

impl<T: Clone> PerService<T> {
    /// `name`'s value, if it has one.
    fn peek(&self, name: &str) -> Option<T> {
        self.0.borrow().get(name).cloned()
    }
}

impl<T> PerService<T> {
    /// Sets `name`'s value.
    fn set(&self, name: &str, value: T) {
        self.0.borrow_mut().insert(name.to_owned(), value);
    }
}

impl<T: Clone> PerService<T> {
    /// `name`'s value, made by `make` the first time.
    fn get(&self, name: &str, make: impl FnOnce() -> T) -> T {
        self.0
            .borrow_mut()
            .entry(name.to_owned())
            .or_insert_with(make)
            .clone()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::Config;
    use crate::services::ServiceKind;

    /// A configuration of one http service named `web` with `body` added to it.
    pub(crate) fn parse(body: &str) -> Result<Config, ConfigError> {
        let text =
            format!("[[service]]\nname = \"web\"\nkind = \"http\"\nlisten = \"tcp:8080\"\n{body}");
        Config::parse("weft.toml", &text)
    }

    /// The first service's settings, which must be an http service's.
    pub(crate) fn http(config: &Config) -> &WebConfig {
        match &config.services[0].kind {
            ServiceKind::Http(c) => &c.web,
            other => panic!("not http: {other:?}"),
        }
    }

    #[test]
    fn file_options_are_read_with_defaults_and_errors_name_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let root = format!("root = {:?}\n", dir.path().display().to_string());
        let c = parse(&root).unwrap();
        assert_eq!(http(&c).files, FileOptions::default());
        let c = parse(&format!(
            "{root}listing = true\ncache_control = \"public, max-age=60\"\n\
             compression = {{ on_the_fly = false, min_bytes = 10 }}\n"
        ))
        .unwrap();
        let files = &http(&c).files;
        assert!(files.listing);
        assert_eq!(files.cache_control.as_ref().unwrap(), "public, max-age=60");
        assert!(!files.compression.on_the_fly && files.compression.precompressed);
        assert_eq!(files.compression.min_bytes, 10);
        let e = parse(&format!("{root}cache_control = \"a\\nb\"\n")).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("service[0].cache_control"), "{e}");
        let e = parse(&format!("{root}compression = {{ level = 9 }}\n")).unwrap_err();
        assert_eq!(e.line, Some(6), "an unknown key in compression: {e}");
        let e = parse(&format!(
            "{root}compression = {{ min_bytes = 10, max_bytes = 5 }}\n"
        ))
        .unwrap_err();
        assert_eq!(
            e.key.as_deref(),
            Some("service[0].compression.min_bytes"),
            "{e}"
        );
        // Only `max_bytes` written, below the default `min_bytes`: named, where it is.
        let e = parse(&format!("{root}compression = {{ max_bytes = 512 }}\n")).unwrap_err();
        assert_eq!(
            (e.key.as_deref(), e.line),
            (Some("service[0].compression.max_bytes"), Some(6)),
            "{e}"
        );
        let e = parse(&format!("{root}compression = {{ max_bytes = 10737418240 }}\n"))
            .unwrap_err();
        assert_eq!(
            e.key.as_deref(),
            Some("service[0].compression.max_bytes"),
            "{e}"
        );
        let e = parse(&format!("{root}listing = \"yes\"\n")).unwrap_err();
        assert_eq!(e.line, Some(6), "{e}");
    }

    #[test]
    fn root_routes_index_and_limits_are_read_with_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let c = parse(&format!(
            "root = {:?}\nindex = \"home.html\"\nlimits = {{ request_timeout = \"2s\", max_body_bytes = 100 }}\n\
             [[service.route]]\nprefix = \"/api/\"\nupstream = \"http://127.0.0.1:9000\"\n\
             [[service.route]]\nprefix = \"/v2/\"\nupstream = \"http://127.0.0.1:9001/v2\"\n",
            dir.path().display().to_string()
        ))
        .unwrap();
        let web = http(&c);
        assert_eq!(web.root.as_deref(), Some(dir.path()));
        assert_eq!(web.index, "home.html");
        assert_eq!(web.routes.len(), 2);
        assert_eq!(web.routes[1].upstreams[0].base_path, "/v2");
        assert_eq!(web.limits.request_timeout, Duration::from_secs(2));
        assert_eq!(web.limits.max_body_bytes, 100);
        assert_eq!(
            web.limits.max_header_bytes,
            Limits::default().max_header_bytes
        );
        let proxy_only =
            parse("[[service.route]]\nprefix = \"/\"\nupstream = \"http://h:1\"\n").unwrap();
        assert!(http(&proxy_only).root.is_none());
    }

    #[test]
    fn an_index_that_is_not_a_file_name_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = format!("root = {:?}\n", dir.path().display().to_string());
        for index in ["", ".", "..", "a/b.html", "/etc/passwd", "index.html\\u0000"] {
            let e = parse(&format!("{root}index = \"{index}\"\n")).unwrap_err();
            assert_eq!(e.key.as_deref(), Some("service[0].index"), "{index}: {e}");
        }
        for index in ["index.htm", "..hidden", "default.html.."] {
            assert!(parse(&format!("{root}index = \"{index}\"\n")).is_ok(), "{index}");
        }
        // Taken, with a warning where it can never be served.
        let hidden = parse(&format!("{root}index = \".env\"\n")).unwrap();
        assert!(
            hidden.warnings.iter().any(|w| w.to_string().contains("never served")),
            "{:?}",
            hidden.warnings
        );
        let plain = parse(&format!("{root}index = \"index.htm\"\n")).unwrap();
        assert!(plain.warnings.is_empty(), "{:?}", plain.warnings);
    }

    #[test]
    fn body_buffers_are_read_and_a_total_below_one_buffer_is_named() {
        let route = "[[service.route]]\nprefix = \"/\"\nupstream = \"http://h:1\"\n";
        let limits = |text: &str| {
            parse(&format!("limits = {{ {text} }}\n{route}")).map(|c| http(&c).limits.clone())
        };
        let d = Limits::default();
        let l = limits("max_body_bytes = 100").unwrap();
        assert_eq!(
            (l.body_buffer_bytes, l.body_buffer_total_bytes),
            (d.body_buffer_bytes, d.body_buffer_total_bytes)
        );
        let l = limits("body_buffer_bytes = 0").unwrap();
        assert_eq!(l.body_buffer_bytes, 0, "buffering off");
        // A buffer larger than the default total raises the total with it.
        let l = limits("body_buffer_bytes = 134217728").unwrap();
        assert_eq!(l.body_buffer_total_bytes, 134_217_728);
        let e = limits("body_buffer_bytes = 1000, body_buffer_total_bytes = 999").unwrap_err();
        assert_eq!(
            e.key.as_deref(),
            Some("service[0].limits.body_buffer_total_bytes"),
            "{e}"
        );
        assert!(e.to_string().contains("at least"), "{e}");
    }

    #[test]
    fn the_request_cap_of_a_connection_is_read_and_a_negative_one_is_named() {
        let route = "[[service.route]]\nprefix = \"/\"\nupstream = \"http://h:1\"\n";
        let limits = |text: &str| {
            parse(&format!("limits = {{ {text} }}\n{route}")).map(|c| http(&c).limits.clone())
        };
        let d = limits("").unwrap();
        assert_eq!(d.max_requests_per_connection, 1000, "nginx's default");
        let l = limits("max_requests_per_connection = 0").unwrap();
        assert_eq!(l.max_requests_per_connection, 0, "no cap");
        let e = limits("max_requests_per_connection = -1").unwrap_err();
        assert!(
            e.to_string().contains("max_requests_per_connection"),
            "{e}"
        );
    }

    #[test]
    fn body_files_are_read_and_a_directory_without_room_for_one_is_named() {
        let route = "[[service.route]]\nprefix = \"/\"\nupstream = \"http://h:1\"\n";
        let d = Limits::default();
        let c = parse(route).unwrap();
        assert_eq!(http(&c).limits.body_file_total_bytes, d.body_file_total_bytes);
        assert_eq!(http(&c).body_file_dir, std::env::temp_dir());
        let dir = tempfile::tempdir().unwrap();
        let at = format!("body_file_dir = {:?}\n", dir.path().display().to_string());
        let c = parse(&format!(
            "{at}limits = {{ body_file_total_bytes = 0 }}\n{route}"
        ))
        .unwrap();
        assert_eq!(http(&c).body_file_dir, dir.path());
        assert_eq!(http(&c).limits.body_file_total_bytes, 0, "files off");
        // A directory no file can be made in: named, with the cause.
        let missing = dir.path().join("missing");
        let at = format!("body_file_dir = {:?}\n", missing.display().to_string());
        let e = parse(&format!("{at}{route}")).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("service[0].body_file_dir"), "{e}");
        assert!(e.to_string().contains("No such file"), "{e}");
        // Not checked when nothing is written there: files off, or no routes.
        let off = format!("{at}limits = {{ body_file_total_bytes = 0 }}\n{route}");
        assert!(parse(&off).is_ok());
        let root = format!("root = {:?}\n", dir.path().display().to_string());
        assert!(parse(&format!("{at}{root}")).is_ok());
        // A setting of http services only.
        let echo = Config::parse(
            "weft.toml",
            "[[service]]\nname = \"e\"\nkind = \"echo\"\nlisten = \"tcp:1\"\nbody_file_dir = \"/tmp\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            echo.contains("`body_file_dir` is not a setting of kind \"echo\""),
            "{echo}"
        );
    }

    #[test]
    fn a_route_may_have_its_own_cache_control_and_a_bad_one_is_named() {
        let route = "[[service.route]]\nprefix = \"/assets/\"\nupstream = \"http://h:1\"\n";
        parse(&format!("{route}cache_control = \"public, max-age=600\"\n")).unwrap();
        let e = parse(&format!("{route}{route}cache_control = \"a\\nb\"\n")).unwrap_err();
        assert_eq!(
            (e.line, e.key.as_deref()),
            (Some(11), Some("service[0].route[1].cache_control")),
            "{e}"
        );
        let e = parse(&format!("{route}cache_control = \" \"\n")).unwrap_err();
        assert_eq!(
            e.key.as_deref(),
            Some("service[0].route[0].cache_control"),
            "{e}"
        );
    }

    #[test]
    fn rate_limits_of_the_service_and_its_routes_are_read_and_bad_ones_named() {
        let route = "[[service.route]]\nprefix = \"/api/\"\nupstream = \"http://h:1\"\n";
        let c = parse(&format!(
            "rate_limit = {{ requests_per_second = 50 }}\n{route}\
             rate_limit = {{ requests_per_second = 2, burst = 5, ipv4_prefix = 24, ipv6_prefix = 48 }}\n"
        ))
        .unwrap();
        let web = http(&c);
        let service = web.rate_limit.unwrap();
        assert_eq!(
            (service.requests_per_second, service.burst),
            (50, 50),
            "the burst is the rate unless given"
        );
        assert_eq!((service.ipv4_prefix, service.ipv6_prefix), (32, 64));
        let r = web.routes[0].rate_limit.unwrap();
        assert_eq!(
            (r.requests_per_second, r.burst, r.ipv4_prefix, r.ipv6_prefix),
            (2, 5, 24, 48)
        );
        assert!(http(&parse(route).unwrap()).rate_limit.is_none(), "off by default");
        for (written, key, says) in [
            ("{}", "rate_limit.requests_per_second", "is required"),
            ("{ requests_per_second = 0 }", "rate_limit.requests_per_second", "between 1"),
            ("{ requests_per_second = 1, burst = 0 }", "rate_limit.burst", "between 1"),
            ("{ requests_per_second = 1, ipv4_prefix = 7 }", "rate_limit.ipv4_prefix", "between 8"),
            ("{ requests_per_second = 1, slip = 2 }", "rate_limit.slip", "is a dns service's"),
            ("{ responses_per_second = 1 }", "rate_limit.responses_per_second", "is a dns"),
        ] {
            let e = parse(&format!("rate_limit = {written}\n{route}")).unwrap_err();
            assert_eq!(e.key.as_deref(), Some(&*format!("service[0].{key}")), "{e}");
            assert!(e.to_string().contains(says), "{e}");
            let e = parse(&format!("{route}rate_limit = {written}\n")).unwrap_err();
            assert_eq!(
                e.key.as_deref(),
                Some(&*format!("service[0].route[0].{key}")),
                "{e}"
            );
        }
    }

    #[test]
    fn https_redirect_takes_the_ssl_listener_s_port_or_one_given_and_names_what_is_wrong() {
        let port = |c: &Config| http(c).https_redirect;
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        let pair = rcgen::generate_simple_self_signed(vec!["a.example".into()]).unwrap();
        std::fs::write(&cert, pair.cert.pem()).unwrap();
        std::fs::write(&key, pair.signing_key.serialize_pem()).unwrap();
        let ssl = |port: u16| {
            format!(
                "\"ssl:{port}:privateKey={}:certKey={}\"",
                key.display(),
                cert.display()
            )
        };
        let both = format!("[\"tcp:8080\", {}]", ssl(8443));
        let parse = |listen: &str, value: &str| {
            Config::parse(
                "weft.toml",
                &format!(
                    "[[service]]\nname = \"web\"\nkind = \"http\"\nlisten = {listen}\n\
                     https_redirect = {value}\n\
                     [[service.route]]\nprefix = \"/\"\nupstream = \"http://h:1\"\n"
                ),
            )
        };
        assert_eq!(port(&parse(&both, "true").unwrap()), Some(8443));
        assert_eq!(port(&parse("\"tcp:8080\"", "443").unwrap()), Some(443));
        assert_eq!(port(&parse(&both, "false").unwrap()), None);
        for (listen, value, says) in [
            ("\"tcp:8080\"".to_owned(), "true", "needs an ssl: listener"),
            (format!("[\"tcp:8080\", {}]", ssl(0)), "true", "the system's choice"),
            ("\"tcp:8080\"".to_owned(), "0", "between 1 and 65535"),
            ("\"tcp:8080\"".to_owned(), "70000", "between 1 and 65535"),
            ("\"tcp:8080\"".to_owned(), "\"yes\"", "must be true, false or the port"),
        ] {
            let e = parse(&listen, value).unwrap_err();
            assert_eq!(e.key.as_deref(), Some("service[0].https_redirect"), "{e}");
            assert!(e.to_string().contains(says), "{value}: {e}");
        }
        // Only ssl: listeners: nothing to redirect, said.
        let c = parse(&format!("[{}]", ssl(8443)), "true").unwrap();
        assert!(
            c.warnings.iter().any(|w| w.to_string().contains("takes no effect")),
            "{:?}",
            c.warnings
        );
    }

    #[test]
    fn response_headers_are_read_for_the_service_and_a_route_and_bad_ones_named() {
        let route = "[[service.route]]\nprefix = \"/api/\"\nupstream = \"http://h:1\"\n";
        let c = parse(&format!(
            "response_headers = {{ \"X-Content-Type-Options\" = \"nosniff\" }}\n{route}\
             response_headers = {{ \"Cache-Status\" = \"edge\" }}\n"
        ))
        .unwrap();
        let web = http(&c);
        assert_eq!(web.response_headers.len(), 1);
        assert_eq!(web.response_headers[0].0, "x-content-type-options");
        assert_eq!(web.response_headers[0].1, "nosniff");
        assert_eq!(web.routes[0].response_headers[0].0, "cache-status");
        for (written, key, says) in [
            ("{ \"Content-Length\" = \"1\" }", "response_headers.Content-Length", "frames the message"),
            ("{ \"connection\" = \"close\" }", "response_headers.connection", "frames the message"),
            ("{ \"Strict-Transport-Security\" = \"max-age=1\" }", "response_headers.Strict-Transport-Security", "hsts_max_age"),
            ("{ \"Bad Name\" = \"x\" }", "response_headers.\"Bad Name\"", "not a header field name"),
            ("{ \"Content-Type\" = \"text/html\" }", "response_headers.Content-Type", "describes each response"),
            ("{ \"X-A\" = \" a\" }", "response_headers.X-A", "begins or ends with a space"),
            ("{ \"X-A\" = \"a\\nb\" }", "response_headers.X-A", "visible ASCII"),
            ("{ \"X-A\" = \"\" }", "response_headers.X-A", "visible ASCII"),
            ("{ \"X-A\" = 1 }", "response_headers.X-A", "must be a string"),
            ("{ \"X-A\" = \"1\", \"x-a\" = \"2\" }", "response_headers.x-a", "given twice"),
            ("\"nosniff\"", "response_headers", "expected a table"),
        ] {
            let e = parse(&format!("response_headers = {written}\n{route}")).unwrap_err();
            assert_eq!(e.key.as_deref(), Some(&*format!("service[0].{key}")), "{e}");
            assert!(e.to_string().contains(says), "{written}: {e}");
            let e = parse(&format!("{route}response_headers = {written}\n")).unwrap_err();
            assert_eq!(
                e.key.as_deref(),
                Some(&*format!("service[0].route[0].{key}")),
                "{e}"
            );
        }
    }

    #[test]
    fn allow_and_deny_of_the_service_and_a_route_are_read_and_a_bad_block_named() {
        let route = "[[service.route]]\nprefix = \"/admin/\"\nupstream = \"http://h:1\"\n";
        let c = parse(&format!(
            "allow = [\"10.0.0.0/8\", \"2001:db8::/32\"]\ndeny = [\"10.9.0.0/16\"]\n{route}\
             allow = [\"127.0.0.1\"]\n"
        ))
        .unwrap();
        let web = http(&c);
        let ip = |s: &str| Some(s.parse::<std::net::IpAddr>().unwrap());
        assert!(web.access.admits(ip("10.1.2.3")));
        assert!(!web.access.admits(ip("10.9.0.1")), "denied inside the allowed block");
        assert!(!web.access.admits(ip("192.0.2.1")), "in no allowed block");
        assert!(web.access.admits(ip("2001:db8::7")));
        assert!(web.access.admits(None), "a unix-socket client");
        assert!(web.routes[0].access.admits(ip("127.0.0.1")));
        assert!(!web.routes[0].access.admits(ip("10.1.2.3")));
        let e = parse(&format!("deny = [\"10.0.0.0/8\", \"10.0.0.0/33\"]\n{route}")).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("service[0].deny[1]"), "{e}");
        let e = parse(&format!("{route}allow = [\"example.test\"]\n")).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("service[0].route[0].allow[0]"), "{e}");
        assert!(e.to_string().contains("not an IP address or a CIDR block"), "{e}");
        let c = parse(&format!("allow = []\n{route}")).unwrap();
        assert!(
            c.warnings.iter().any(|w| w.to_string().contains("limits no client")),
            "{:?}",
            c.warnings
        );
        let c = parse(&format!("deny = [\"10.1.2.3/8\", \"10.0.0.0/8\"]\n{route}")).unwrap();
        let said: Vec<_> = c.warnings.iter().map(ToString::to_string).collect();
        assert!(
            said.iter().any(|w| w.contains("\"10.1.2.3/8\" has bits set past its length: it is 10.0.0.0/8")),
            "{said:?}"
        );
        assert_eq!(said.iter().filter(|w| w.contains("bits set")).count(), 1, "{said:?}");
    }

    #[test]
    fn a_route_s_request_headers_are_read_and_bad_ones_named() {
        let route = "[[service.route]]\nprefix = \"/api/\"\nupstream = \"http://h:1\"\n";
        let c = parse(&format!(
            "{route}request_headers = {{ Host = \"app.example:8080\", \"X-Api-Key\" = \"k\", \
             \"Accept-Encoding\" = \"\" }}\n"
        ))
        .unwrap();
        let set: Vec<_> = http(&c).routes[0]
            .request_headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_ref().map(|v| v.to_str().unwrap())))
            .collect();
        assert!(set.contains(&("host", Some("app.example:8080"))), "{set:?}");
        assert!(set.contains(&("x-api-key", Some("k"))), "{set:?}");
        assert!(set.contains(&("accept-encoding", None)), "removed: {set:?}");
        let c = parse(&format!("{route}request_headers = {{ \"Accept-Encoding\" = \"identity\" }}\n"));
        assert!(c.is_ok(), "identity asks for no coding: {c:?}");
        let at = "service[0].route[0].request_headers";
        for (written, key, says) in [
            ("{ \"Content-Length\" = \"1\" }", "Content-Length", "frames the message"),
            ("{ Expect = \"100-continue\" }", "Expect", "frames the message"),
            ("{ \"X-Forwarded-For\" = \"192.0.2.1\" }", "X-Forwarded-For", "what the proxy says"),
            ("{ Via = \"1.1 x\" }", "Via", "what the proxy says"),
            ("{ Host = \"a/b\" }", "Host", "must be a host"),
            ("{ X_Key = \"k\" }", "X_Key", "underscore"),
            ("{ \"X-Key\" = \" k\" }", "X-Key", "begins or ends with a space"),
            ("{ \"X-Key\" = 1 }", "X-Key", "must be a string"),
            ("{ Host = \"\" }", "Host", "cannot be removed"),
            ("{ Host = \"a:99999\" }", "Host", "must be a host"),
            ("{ \"Accept-Encoding\" = \"gzip\" }", "Accept-Encoding", "may only be removed"),
            ("{ traceparent = \"00-x\" }", "traceparent", "client's own exchange"),
            ("{ \"Sec-WebSocket-Key\" = \"x\" }", "Sec-WebSocket-Key", "client's own exchange"),
        ] {
            let e = parse(&format!("{route}request_headers = {written}\n")).unwrap_err();
            assert_eq!(e.key.as_deref(), Some(format!("{at}.{key}").as_str()), "{e}");
            assert!(e.to_string().contains(says), "{e}");
        }
    }

    #[test]
    fn error_pages_are_read_from_the_root_and_a_bad_one_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("errors")).unwrap();
        std::fs::write(dir.path().join("errors/404.html"), "<h1>gone</h1>").unwrap();
        std::fs::write(dir.path().join("big.html"), vec![b'x'; 64 * 1024 + 1]).unwrap();
        std::fs::create_dir(dir.path().join(".hidden")).unwrap();
        std::fs::write(dir.path().join(".hidden/404.html"), "hidden").unwrap();
        // A link that leads out of the root.
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), "key").unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), dir.path().join("out.html")).unwrap();
        let root = format!("root = {:?}\n", dir.path().display().to_string());
        let c = parse(&format!("{root}error_pages = {{ 404 = \"/errors/404.html\" }}\n")).unwrap();
        let pages = &http(&c).error_pages;
        assert_eq!(pages.len(), 1);
        assert_eq!(pages[0].status, 404);
        assert_eq!(&pages[0].body[..], b"<h1>gone</h1>");
        assert_eq!(pages[0].content_type, "text/html; charset=utf-8");
        for (written, key, says) in [
            ("{ 200 = \"/errors/404.html\" }", "error_pages.200", "not an error status"),
            ("{ x = \"/errors/404.html\" }", "error_pages.x", "400 to 599"),
            ("{ 404 = \"/missing.html\" }", "error_pages.404", "is no file under the root"),
            ("{ 404 = \"/.hidden/404.html\" }", "error_pages.404", "is hidden, or behind a link"),
            ("{ 404 = \"/out.html\" }", "error_pages.404", "is hidden, or behind a link"),
            ("{ 0404 = \"/errors/404.html\" }", "error_pages.0404", "400 to 599"),
            ("{ 404 = \"/errors/../errors/404.html\" }", "error_pages.404", "normal form"),
            ("{ 404 = \"/errors\" }", "error_pages.404", "not a file"),
            ("{ 404 = \"/big.html\" }", "error_pages.404", "larger than 65536"),
        ] {
            let e = parse(&format!("{root}error_pages = {written}\n")).unwrap_err();
            assert_eq!(e.key.as_deref(), Some(format!("service[0].{key}").as_str()), "{e}");
            assert!(e.to_string().contains(says), "{e}");
        }
        let c = parse(&format!("{root}error_pages = {{ 416 = \"/errors/404.html\" }}\n")).unwrap();
        assert!(
            c.warnings.iter().any(|w| w.to_string().contains("takes no effect")),
            "{:?}",
            c.warnings
        );
        let route = "[[service.route]]\nprefix = \"/\"\nupstream = \"http://h:1\"\n";
        let e = parse(&format!("error_pages = {{ 502 = \"/x.html\" }}\n{route}")).unwrap_err();
        assert!(e.to_string().contains("needs `root`"), "{e}");
    }

    #[test]
    fn trusted_proxies_are_read_and_a_bad_one_named_and_trusting_all_warned_of() {
        let route = "[[service.route]]\nprefix = \"/api/\"\nupstream = \"http://h:1\"\n";
        let c = parse(&format!("trusted_proxies = [\"10.0.0.0/8\", \"::1\"]\n{route}")).unwrap();
        let trusted: Vec<_> = http(&c).trusted_proxies.iter().map(ToString::to_string).collect();
        assert_eq!(trusted, ["10.0.0.0/8", "::1/128"]);
        assert!(!http(&c).trust_unix_peers);
        let c = parse(&format!("trusted_proxies = [\"unix:\"]\n{route}")).unwrap();
        assert!(http(&c).trust_unix_peers && http(&c).trusted_proxies.is_empty());
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        let e = parse(&format!("trusted_proxies = [\"lb.example\"]\n{route}")).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("service[0].trusted_proxies[0]"), "{e}");
        let warned = |text: &str, about: &str| {
            let c = parse(&format!("{text}\n{route}")).unwrap();
            c.warnings.iter().any(|w| w.to_string().contains(about))
        };
        assert!(warned("trusted_proxies = [\"0.0.0.0/0\"]", "trusts every address"));
        assert!(warned("trusted_proxies = []", "trusts no proxy"));
        // Behind a trusted front end, a redirect to https is no loop: its
        // X-Forwarded-Proto says which requests came over https.
        assert!(warned("https_redirect = 443", "redirect loop"));
        assert!(warned("https_redirect = 443\ntrusted_proxies = []", "redirect loop"));
        assert!(!warned(
            "https_redirect = 443\ntrusted_proxies = [\"10.0.0.1\"]",
            "redirect loop"
        ));
    }

    #[test]
    fn a_fallback_is_a_file_s_path_in_normal_form_and_a_missing_one_is_warned_of() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("index.html"), "app").unwrap();
        let root = format!("root = {:?}\n", dir.path().display().to_string());
        let c = parse(&format!("{root}fallback = \"/index.html\"\n")).unwrap();
        assert_eq!(http(&c).files.fallback.as_deref(), Some("/index.html"));
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        let c = parse(&format!("{root}fallback = \"/app.html\"\n")).unwrap();
        assert!(
            c.warnings.iter().any(|w| w.to_string().contains("is no file a request could be served")),
            "{:?}",
            c.warnings
        );
        for bad in ["index.html", "/a/../index.html", "/app/", "//index.html"] {
            let e = parse(&format!("{root}fallback = {bad:?}\n")).unwrap_err();
            assert_eq!(e.key.as_deref(), Some("service[0].fallback"), "{bad}: {e}");
        }
    }

    #[test]
    fn an_access_log_that_is_the_history_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("weft.db");
        let route = "[[service.route]]\nprefix = \"/\"\nupstream = \"http://h:1\"\n";
        let with_log = |log: &std::path::Path| {
            parse(&format!(
                "access_log = \"{}\"\n{route}[store]\npath = \"{}\"\n",
                log.display(),
                db.display()
            ))
        };
        let refused = |log: std::path::PathBuf| {
            let e = with_log(&log).expect_err(&log.display().to_string());
            assert_eq!(e.key.as_deref(), Some("service[0].access_log"), "{e}");
            assert!(e.message.contains("history store's file"), "{e}");
        };
        refused(db.clone());
        refused(dir.path().join("./weft.db-wal"));
        assert!(with_log(&dir.path().join("access.log")).is_ok());
        // Another name for the same file: a symlink, to the file still to be made too
        // (the store makes it at its first start), and a hard link.
        let early = dir.path().join("early.log");
        std::os::unix::fs::symlink(&db, &early).unwrap();
        refused(early);
        std::fs::write(&db, b"").unwrap();
        let symlink = dir.path().join("symlinked.log");
        std::os::unix::fs::symlink(&db, &symlink).unwrap();
        refused(symlink);
        refused(dir.path().join("weft.db.lock"));
        // A hard link gives the history file a second name, refused before the log is
        // looked at: a writer given that name would not see this one's lock.
        let hard = dir.path().join("linked.log");
        std::fs::hard_link(&db, &hard).unwrap();
        let e = with_log(&hard).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("store.path"), "{e}");
        assert!(e.message.contains("has 2 names (hard links)"), "{e}");
    }

    #[test]
    fn an_access_log_that_is_the_file_a_symlinked_history_path_leads_to_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (link, real) = (dir.path().join("store.db"), dir.path().join("real.db"));
        // The history file named through a link, before it is made.
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let route = "[[service.route]]\nprefix = \"/\"\nupstream = \"http://h:1\"\n";
        for log in ["real.db", "real.db-wal", "real.db-shm", "real.db.lock"] {
            let e = parse(&format!(
                "access_log = \"{}\"\n{route}[store]\npath = \"{}\"\n",
                dir.path().join(log).display(),
                link.display()
            ))
            .unwrap_err();
            assert_eq!(e.key.as_deref(), Some("service[0].access_log"), "{log}: {e}");
            assert!(e.message.contains("history store's file"), "{log}: {e}");
        }
    }

    #[test]
    fn an_access_log_that_is_the_configuration_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("weft.toml");
        let text = format!(
            "[[service]]\nname = \"web\"\nkind = \"http\"\nlisten = \"tcp:8080\"\n\
             root = \"{}\"\naccess_log = \"{}\"\n",
            dir.path().display(),
            config.display()
        );
        std::fs::write(&config, &text).unwrap();
        let e = crate::config::Config::parse(&config.display().to_string(), &text).unwrap_err();
        assert!(e.message.contains("the configuration file"), "{e}");
    }

    #[test]
    fn errors_name_the_line_and_the_key() {
        let e = parse("[[service.route]]\nprefix = \"/\"\nupstream = \"http://h:1\"\n[[service.route]]\nprefix = \"/a\"\nupstream = \"ftp://h\"\n").unwrap_err();
        assert_eq!(
            (e.line, e.key.as_deref()),
            (Some(10), Some("service[0].route[1].upstream")),
            "{e}"
        );
        assert!(e.message.contains("http://"), "{e}");
        let e =
            parse("[[service.route]]\nprefix = \"api\"\nupstream = \"http://h:1\"\n").unwrap_err();
        assert_eq!(e.key.as_deref(), Some("service[0].route[0].prefix"), "{e}");
        // A prefix no request can match, and one given twice, are named.
        let e = parse("[[service.route]]\nprefix = \"/a/../b/\"\nupstream = \"http://h:1\"\n")
            .unwrap_err();
        assert_eq!(e.key.as_deref(), Some("service[0].route[0].prefix"), "{e}");
        assert!(e.message.contains("\"/b/\""), "{e}");
        let e = parse(
            "[[service.route]]\nprefix = \"/a/\"\nupstream = \"http://h:1\"\n\
             [[service.route]]\nprefix = \"/a/\"\nupstream = \"http://h:2\"\n",
        )
        .unwrap_err();
        assert_eq!(
            (e.line, e.key.as_deref()),
            (Some(9), Some("service[0].route[1].prefix")),
            "{e}"
        );
        assert!(e.message.contains("route[0]'s prefix already"), "{e}");
        let e = parse("root = \"/surely/not/a/dir\"\n").unwrap_err();
        assert_eq!(
            (e.line, e.key.as_deref()),
            (Some(5), Some("service[0].root")),
            "{e}"
        );
        let e = parse(
            "limits = { request_timeout = \"soon\" }\n\
             [[service.route]]\nprefix = \"/\"\nupstream = \"http://h:1\"\n",
        )
        .unwrap_err();
        assert_eq!(
            e.key.as_deref(),
            Some("service[0].limits.request_timeout"),
            "{e}"
        );
        let e = parse(
            "limits = { max_header_bytes = 10 }\n\
             [[service.route]]\nprefix = \"/\"\nupstream = \"http://h:1\"\n",
        )
        .unwrap_err();
        assert_eq!(
            e.key.as_deref(),
            Some("service[0].limits.max_header_bytes"),
            "{e}"
        );
        let e = parse("[[service.route]]\nprefix = \"/\"\nupstream = \"http://h:1\"\nweight = 3\n")
            .unwrap_err();
        assert_eq!(e.line, Some(8), "an unknown key in a route: {e}");
        let e = parse("").unwrap_err();
        assert!(e.message.contains("needs `root`"), "{e}");
        let e = parse("upstream = \"tcp:h:1\"\nroot = \".\"\n").unwrap_err();
        assert_eq!(e.key.as_deref(), Some("service[0].upstream"), "{e}");
    }
}

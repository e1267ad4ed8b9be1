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
//!            upstream_connect_timeout = "5s", upstream_timeout = "30s" }   # optional
//! listing = false              # optional: list directories without an index file
//! cache_control = "public, max-age=3600"   # optional: sent with static files
//! compression = { precompressed = true, on_the_fly = true, min_bytes = 1024,
//!                 max_bytes = 1048576 }                  # optional; the defaults
//! [[service.route]]
//! prefix = "/api/"
//! upstream = "http://127.0.0.1:9000"
//! ```
//!
//! Requests are counted in `weft_http_requests_total{service,method,code}` (method is one
//! of GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS or `other`; code is the status class;
//! GET, HEAD and POST with 2xx to 5xx are there at zero from the start),
//! timed in `weft_http_request_duration_seconds{service}`, failed upstream exchanges in
//! `weft_http_upstream_errors_total{service}`, and requests refused before they were
//! served in `weft_http_requests_refused_total{service,reason}` (reason is one of
//! [`Refusal`]'s labels).

use std::cell::OnceCell;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, Opts, Registry};
use serde::Deserialize;
use toml::Spanned;
use weft::ListenError;
use weft_web::{
    AccessLog, Compression, FileOptions, HttpService, Limits, MethodLabel, Recorder, Refusal,
    Route, StatusClass, WebConfig,
};

use crate::config::ConfigError;
use crate::config::validate::ServiceCtx;

/// Request duration buckets, in seconds: half a millisecond to ten seconds.
const DURATION_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The methods whose request series exist at zero from the start, by status class: what
/// browsers and most API clients send. The others appear on first use.
const ZERO_METHODS: [MethodLabel; 3] = [MethodLabel::Get, MethodLabel::Head, MethodLabel::Post];

/// The status classes of [`ZERO_METHODS`]' series at zero (1xx is rare and hyper's own).
const ZERO_CLASSES: [StatusClass; 4] = [
    StatusClass::Success,
    StatusClass::Redirection,
    StatusClass::ClientError,
    StatusClass::ServerError,
];

/// The settings of an http service.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HttpConfig {
    /// What it serves: root, index, routes, limits.
    pub web: WebConfig,
    /// A file the access log is appended to; `None` logs requests through the process log.
    pub access_log: Option<PathBuf>,
}

/// One `[[service.route]]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRoute {
    prefix: Spanned<String>,
    upstream: Spanned<String>,
}

/// `limits = { ... }` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLimits {
    max_header_bytes: Option<Spanned<u64>>,
    request_timeout: Option<Spanned<String>>,
    max_body_bytes: Option<Spanned<u64>>,
    upstream_connect_timeout: Option<Spanned<String>>,
    upstream_timeout: Option<Spanned<String>>,
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

pub(crate) fn validate(ctx: &ServiceCtx<'_>) -> Result<HttpConfig, ConfigError> {
    ctx.only_keys(&[
        "root",
        "route",
        "index",
        "limits",
        "access_log",
        "listing",
        "cache_control",
        "compression",
    ])?;
    for (endpoint, span) in ctx.listen {
        if ServiceCtx::is_udp(endpoint) {
            return Err(ctx.error(
                span.clone(),
                "listen",
                format!(
                    "{endpoint:?}: an http service listens on stream endpoints (tcp:, unix:, ssl:)"
                ),
            ));
        }
    }
    let raw = ctx.raw;
    let root = match &raw.root {
        Some(root) => {
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
            Some(PathBuf::from(path))
        }
        None => None,
    };
    let mut routes = Vec::new();
    for (i, route) in raw
        .route
        .iter()
        .flat_map(|r| r.get_ref().iter())
        .enumerate()
    {
        let route = route.get_ref();
        let key = format!("route[{i}]");
        let made = Route::new(route.prefix.get_ref(), route.upstream.get_ref());
        match made {
            Ok(r) => routes.push(r),
            Err(weft_web::ConfigError::Prefix(_)) => {
                return Err(ctx.error(
                    route.prefix.span(),
                    &format!("{key}.prefix"),
                    "must start with '/', such as prefix = \"/api/\"",
                ));
            }
            Err(e) => {
                return Err(ctx.error(
                    route.upstream.span(),
                    &format!("{key}.upstream"),
                    e.to_string(),
                ));
            }
        }
    }
    if root.is_none() && routes.is_empty() {
        return Err(ctx.error(
            raw.kind.span(),
            "root",
            "an http service needs `root` (static files), a [[service.route]], or both",
        ));
    }
    let index = match &raw.index {
        Some(i) if i.get_ref().is_empty() || i.get_ref().contains('/') => {
            return Err(ctx.error(
                i.span(),
                "index",
                "must be a file name, such as \"index.html\"",
            ));
        }
        Some(i) => i.get_ref().clone(),
        None => "index.html".into(),
    };
    let limits = match &raw.limits {
        Some(l) => limits(ctx, l.get_ref())?,
        None => Limits::default(),
    };
    let config = WebConfig {
        root,
        embedded: None,
        index,
        routes,
        limits,
        files: file_options(ctx)?,
    };
    // `run` serves through `HttpService::new`: refuse here whatever it would refuse there
    // (a root that cannot be opened or listed).
    if let Err(e) = HttpService::new(
        ctx.raw.name.get_ref(),
        config.clone(),
        Rc::new(weft_web::NoRecorder),
    ) {
        let span = raw.root.as_ref().map_or(raw.kind.span(), |r| r.span());
        return Err(ctx.error(span, "root", e.to_string()));
    }
    Ok(HttpConfig {
        web: config,
        access_log: super::access_log::validate(ctx)?,
    })
}

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
                let span = c.min_bytes.as_ref().map_or(raw.kind.span(), |v| v.span());
                return Err(ctx.error(span, "compression.min_bytes", e.to_string()));
            }
            made
        }
        None => d,
    };
    Ok(FileOptions {
        listing: raw.listing.as_ref().is_some_and(|v| *v.get_ref()),
        cache_control,
        compression,
    })
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
    let duration = |name: &str, value: &Option<Spanned<String>>, default: Duration| {
        ctx.duration(&format!("limits.{name}"), value.as_ref(), default)
    };
    Ok(Limits {
        max_header_bytes: header,
        request_timeout: duration("request_timeout", &raw.request_timeout, d.request_timeout)?,
        max_body_bytes: body,
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
    })
}

/// The kind's settings as JSON, for the history store.
pub(crate) fn settings_json(config: &HttpConfig) -> serde_json::Value {
    let (web, access_log) = (&config.web, &config.access_log);
    let routes: Vec<_> = web
        .routes
        .iter()
        .map(|r| serde_json::json!({ "prefix": r.prefix, "upstream": r.upstream.url }))
        .collect();
    serde_json::json!({
        "root": web.root.as_ref().map(|r| r.display().to_string()),
        "embedded": web.embedded.as_ref().map(|e| e.names().collect::<Vec<_>>()),
        "index": web.index,
        "listing": web.files.listing,
        "cache_control": web.files.cache_control.as_ref().and_then(|v| v.to_str().ok()),
        "compression": {
            "precompressed": web.files.compression.precompressed,
            "on_the_fly": web.files.compression.on_the_fly,
            "min_bytes": web.files.compression.min_bytes,
            "max_bytes": web.files.compression.max_bytes,
        },
        "routes": routes,
        "access_log": access_log.as_ref().map(|p| p.display().to_string()),
    })
}

/// Where the HTTP service `name` records its requests: its series on `registry`, or
/// nowhere without one (or if they cannot be registered, which is logged).
pub(crate) fn recorder(registry: Option<&Registry>, name: &str) -> Rc<dyn Recorder> {
    match registry.map(|r| HttpMetrics::register(r, name)) {
        None => Rc::new(weft_web::NoRecorder),
        Some(Ok(m)) => Rc::new(m),
        Some(Err(err)) => {
            tracing::warn!(service = name, %err, "HTTP metrics are unavailable");
            Rc::new(weft_web::NoRecorder)
        }
    }
}

pub(crate) fn start(
    on: &super::Listeners<'_>,
    config: &HttpConfig,
    recorder: Rc<dyn Recorder>,
    env: &super::ServiceEnv,
) -> Result<Vec<weft::Address>, ListenError> {
    let (name, endpoints) = (on.name, on.endpoints);
    let endpoint = || endpoints.first().cloned().unwrap_or_default();
    let access_log = match &config.access_log {
        Some(path) => AccessLog::File(
            super::access_log::open(&env.access_logs, env.access_log_losses(name), path).map_err(
                |source| ListenError::Bind {
                    endpoint: endpoint(),
                    source,
                },
            )?,
        ),
        None if env.access_log_fields => AccessLog::Fields,
        None => AccessLog::Line,
    };
    let service = HttpService::new(name, config.web.clone(), recorder)
        .map_err(|e| ListenError::Bind {
            endpoint: endpoint(),
            source: std::io::Error::other(e.to_string()),
        })?
        .with_access_log(access_log);
    let mut bound = Vec::with_capacity(endpoints.len());
    for endpoint in endpoints {
        let port = service.listen_with(on.reactor, endpoint, &on.options)?;
        bound.push(port.local_address().clone());
    }
    Ok(bound)
}

/// One service's HTTP series; handles resolved once and kept. Every refusal reason and
/// the [`ZERO_METHODS`] × [`ZERO_CLASSES`] request series exist at zero from the start,
/// so `rate()` sees a service's first request and its first error.
struct HttpMetrics {
    requests: IntCounterVec,
    /// By method, then status class.
    handles: [[OnceCell<IntCounter>; 5]; 8],
    duration: Histogram,
    upstream_errors: IntCounter,
    refused: IntCounterVec,
    /// By reason.
    refused_handles: [OnceCell<IntCounter>; Refusal::ALL.len()],
}

impl HttpMetrics {
    /// Registers `service`'s series; several services share each family through the
    /// `service` label.
    fn register(registry: &Registry, service: &str) -> prometheus::Result<Self> {
        let requests = IntCounterVec::new(
            Opts::new(
                "weft_http_requests_total",
                "HTTP requests answered, by method and status class.",
            )
            .const_label("service", service),
            &["method", "code"],
        )?;
        let duration = Histogram::with_opts(
            HistogramOpts::new(
                "weft_http_request_duration_seconds",
                "Time from a request's arrival to its response head.",
            )
            .const_label("service", service)
            .buckets(DURATION_BUCKETS.to_vec()),
        )?;
        let upstream_errors = IntCounter::with_opts(
            Opts::new(
                "weft_http_upstream_errors_total",
                "Proxied requests whose upstream refused, failed or timed out.",
            )
            .const_label("service", service),
        )?;
        let refused = IntCounterVec::new(
            Opts::new(
                "weft_http_requests_refused_total",
                "HTTP requests refused before they were served, by reason.",
            )
            .const_label("service", service),
            &["reason"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(upstream_errors.clone()))?;
        registry.register(Box::new(refused.clone()))?;
        let metrics = Self {
            requests,
            handles: Default::default(),
            duration,
            upstream_errors,
            refused,
            refused_handles: Default::default(),
        };
        for method in ZERO_METHODS {
            for class in ZERO_CLASSES {
                metrics.request_handle(method, class);
            }
        }
        for reason in Refusal::ALL {
            metrics.refused_handle(reason);
        }
        Ok(metrics)
    }

    fn request_handle(&self, method: MethodLabel, status: StatusClass) -> &IntCounter {
        self.handles[method.index()][status.index()].get_or_init(|| {
            self.requests
                .with_label_values(&[method.as_str(), status.as_str()])
        })
    }

    fn refused_handle(&self, reason: Refusal) -> &IntCounter {
        self.refused_handles[reason.index()]
            .get_or_init(|| self.refused.with_label_values(&[reason.as_str()]))
    }
}

impl Recorder for HttpMetrics {
    fn request(&self, method: MethodLabel, status: StatusClass, elapsed: Duration) {
        self.request_handle(method, status).inc();
        self.duration.observe(elapsed.as_secs_f64());
    }

    fn upstream_error(&self) {
        self.upstream_errors.inc();
    }

    fn refused(&self, reason: Refusal) {
        self.refused_handle(reason).inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::services::ServiceKind;

    fn parse(body: &str) -> Result<Config, ConfigError> {
        let text =
            format!("[[service]]\nname = \"web\"\nkind = \"http\"\nlisten = \"tcp:8080\"\n{body}");
        Config::parse("weft.toml", &text)
    }

    fn http(config: &Config) -> &WebConfig {
        match &config.services[0].kind {
            ServiceKind::Http(c) => &c.web,
            other => panic!("not http: {other:?}"),
        }
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
        assert_eq!(web.routes[1].upstream.base_path, "/v2");
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
        let e = parse(&format!("{root}listing = \"yes\"\n")).unwrap_err();
        assert_eq!(e.line, Some(6), "{e}");
    }

    #[test]
    fn common_series_exist_at_zero_before_the_first_request() {
        let registry = Registry::new();
        HttpMetrics::register(&registry, "web").unwrap();
        let text = prometheus::TextEncoder::new()
            .encode_to_string(&registry.gather())
            .unwrap();
        let samples = |family: &str| {
            text.lines()
                .filter(|l| l.starts_with(&format!("{family}{{")))
                .count()
        };
        assert_eq!(samples("weft_http_requests_total"), 12, "{text}");
        assert!(
            text.contains(r#"weft_http_requests_total{code="5xx",method="POST",service="web"} 0"#),
            "{text}"
        );
        assert!(!text.contains(r#"method="PUT""#), "{text}");
        assert_eq!(
            samples("weft_http_requests_refused_total"),
            Refusal::ALL.len(),
            "{text}"
        );
        assert!(
            text.contains(r#"weft_http_upstream_errors_total{service="web"} 0"#),
            "{text}"
        );
    }

    #[test]
    fn series_carry_the_service_and_bounded_labels() {
        let registry = Registry::new();
        let web = HttpMetrics::register(&registry, "web").unwrap();
        let api = HttpMetrics::register(&registry, "api").unwrap();
        web.request(
            MethodLabel::Get,
            StatusClass::Success,
            Duration::from_millis(3),
        );
        web.request(
            MethodLabel::Get,
            StatusClass::Success,
            Duration::from_millis(3),
        );
        api.request(
            MethodLabel::Other,
            StatusClass::ClientError,
            Duration::from_millis(1),
        );
        api.upstream_error();
        api.refused(Refusal::Host);
        let families = registry.gather();
        let text = prometheus::TextEncoder::new()
            .encode_to_string(&families)
            .unwrap();
        assert!(
            text.contains(r#"weft_http_requests_total{code="2xx",method="GET",service="web"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"weft_http_requests_total{code="4xx",method="other",service="api"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"weft_http_upstream_errors_total{service="api"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"weft_http_requests_refused_total{reason="host",service="api"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"weft_http_request_duration_seconds_count{service="web"} 2"#),
            "{text}"
        );
        assert!(
            HttpMetrics::register(&registry, "web").is_err(),
            "one registration per service"
        );
    }
}

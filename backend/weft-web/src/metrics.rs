//! What the service reports per request, through a [`Recorder`] the caller supplies, with
//! the bounded labels it uses: method, status class, and the reason a request was
//! refused; and the Prometheus families a program registers to record them
//! ([`HttpMetrics`], [`AccessLogLosses`]), one set of series per service.
//!
//! Requests are counted in `weft_http_requests_total{service,method,code}` (method is one
//! of GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS or `other`; code is the status class;
//! GET, HEAD and POST with 2xx to 5xx are there at zero from the start), timed in
//! `weft_http_request_duration_seconds{service}`, failed upstream exchanges in
//! `weft_http_upstream_errors_total{service}`, requests refused before they were served
//! in `weft_http_requests_refused_total{service,reason}` (reason is one of [`Refusal`]'s
//! labels), requests that asked to switch protocols in
//! `weft_http_upgrades_total{service,outcome}` (outcome is one of [`UpgradeOutcome`]'s
//! labels), tunnels open after a 101 in `weft_http_tunnels_open{service}`, and access log
//! lines a file could not take in `weft_http_access_log_dropped_total{service,reason}`.
//! Each route's requests, latency and upstream errors have families of their own, with a
//! `route` label ([`crate::routes`]).
//! Per upstream (its URL as configured, so the label is bounded by the configuration):
//! connections used, new or reused, in
//! `weft_http_upstream_connections_total{service,upstream,reused}`, failures in
//! `weft_http_upstream_failures_total{service,upstream,reason}` (reason is one of
//! [`UpstreamFailure`]'s labels), ejections in
//! `weft_http_upstream_ejections_total{service,upstream}`; and requests answered 503
//! because every upstream of a route was ejected in
//! `weft_http_upstream_unavailable_total{service,route}` (route is the prefix).

mod upstream;

use std::cell::{OnceCell, RefCell};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use http::{Method, StatusCode};
use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

pub use self::upstream::UpstreamFailure;
use self::upstream::UpstreamSeries;
use crate::access_log::{LogLoss, LossRecorder};
use crate::routes::{RouteFamilies, RouteMetrics};

/// Request duration buckets, in seconds: half a millisecond to ten seconds.
pub(crate) const DURATION_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The methods whose request series exist at zero from the start, by status class: what
/// browsers and most API clients send. The others appear on first use.
const ZERO_METHODS: [MethodLabel; 3] = [MethodLabel::Get, MethodLabel::Head, MethodLabel::Post];

/// The status classes of [`ZERO_METHODS`]' series at zero (1xx is rare and hyper's own).
pub(crate) const ZERO_CLASSES: [StatusClass; 4] = [
    StatusClass::Success,
    StatusClass::Redirection,
    StatusClass::ClientError,
    StatusClass::ServerError,
];

/// Receives one call per request and per failed upstream exchange. Called on the reactor
/// thread, so it must be quick: bump counters, never block.
pub trait Recorder {
    /// A request was answered with `status` after `elapsed` (to the response head).
    fn request(&self, method: MethodLabel, status: StatusClass, elapsed: Duration) {
        let _ = (method, status, elapsed);
    }
    /// An upstream could not be reached or did not answer in time.
    fn upstream_error(&self) {}
    /// A connection to `upstream` (its URL as configured) was used for a request or a
    /// health check: `reused` from the pool, or new.
    fn upstream_connection(&self, upstream: &str, reused: bool) {
        let _ = (upstream, reused);
    }
    /// `upstream` failed for `reason` (a request or a health check).
    fn upstream_failed(&self, upstream: &str, reason: UpstreamFailure) {
        let _ = (upstream, reason);
    }
    /// `upstream` failed too many times in a row and gets no requests for a while.
    fn upstream_ejected(&self, upstream: &str) {
        let _ = upstream;
    }
    /// A request to `route` (its prefix) found every upstream ejected (503).
    fn upstream_unavailable(&self, route: &str) {
        let _ = route;
    }
    /// A request was refused for `reason` (it is also counted by [`request`](Self::request)
    /// with its 4xx or 5xx status).
    fn refused(&self, reason: Refusal) {
        let _ = reason;
    }
    /// A request that asked to switch protocols was forwarded, with `outcome`.
    fn upgrade(&self, outcome: UpgradeOutcome) {
        let _ = outcome;
    }
    /// Tunnels open after a 101 changed by `change`: 1 when one opens, -1 when it ends.
    fn tunnels(&self, change: i64) {
        let _ = change;
    }
    /// The series of the route labelled `route` (a prefix, [`FILES`](crate::routes::FILES)
    /// or [`UNROUTED`](crate::routes::UNROUTED)); asked once per route when a service is
    /// made, and the same ones again for the same label. By default they count but are
    /// registered nowhere.
    fn route(&self, route: &str) -> Arc<RouteMetrics> {
        Arc::new(RouteMetrics::detached(route))
    }
}

/// What became of a request that asked to switch protocols, as a bounded label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum UpgradeOutcome {
    /// The upstream switched: the 101 was passed on and the connections tunnelled.
    Tunnelled,
    /// The upstream answered without switching; the client got that answer.
    Declined,
    /// The upstream switched to a protocol the client did not offer, or named none (502).
    Invalid,
    /// The upstream could not be reached, or failed or timed out before answering.
    Failed,
}

impl UpgradeOutcome {
    /// Every outcome, in [`index`](Self::index) order.
    pub const ALL: [Self; 4] = [Self::Tunnelled, Self::Declined, Self::Invalid, Self::Failed];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tunnelled => "tunnelled",
            Self::Declined => "declined",
            Self::Invalid => "invalid",
            Self::Failed => "failed",
        }
    }

    /// Its position in [`ALL`](Self::ALL), for array-indexed caches.
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Why a request was refused, as a bounded label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Refusal {
    /// The request head was not HTTP (400).
    Malformed,
    /// The request head had more bytes or more header lines than allowed (431).
    HeadTooLarge,
    /// No `Host` in an HTTP/1.1 request, several, or an invalid one (400).
    Host,
    /// A path that climbs above the root, or whose encoded dots or slashes change where it
    /// leads (400).
    Path,
    /// A method the service does not serve at all: `CONNECT` (501).
    Method,
    /// A request body that broke off or was malformed, such as bad chunked framing (400).
    Body,
    /// A request body over the limit (413).
    BodyTooLarge,
    /// A `Range` with more ranges than served at once, or overlapping ones: the whole
    /// file is sent instead (200).
    Ranges,
    /// An HTTP/2 connection ended with GOAWAY for a protocol error or a broken limit,
    /// such as streams reset faster than they are served (counted once per connection).
    Protocol,
    /// The request's chain was cancelled from the inspector (the dashboard's cancel on its
    /// Deferred): the exchange was abandoned and the client answered 503.
    Cancelled,
}

impl Refusal {
    /// Every reason, in [`index`](Self::index) order.
    pub const ALL: [Self; 10] = [
        Self::Malformed,
        Self::HeadTooLarge,
        Self::Host,
        Self::Path,
        Self::Method,
        Self::Body,
        Self::BodyTooLarge,
        Self::Ranges,
        Self::Protocol,
        Self::Cancelled,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::HeadTooLarge => "head_too_large",
            Self::Host => "host",
            Self::Path => "path",
            Self::Method => "method",
            Self::Body => "body",
            Self::BodyTooLarge => "body_too_large",
            Self::Ranges => "ranges",
            Self::Protocol => "protocol",
            Self::Cancelled => "cancelled",
        }
    }

    /// Its position in [`ALL`](Self::ALL), for array-indexed caches.
    pub fn index(self) -> usize {
        self as usize
    }
}

/// A recorder that records nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoRecorder;

impl Recorder for NoRecorder {}

/// A request method as a bounded label: the common ones by name, the rest as `other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MethodLabel {
    /// GET.
    Get,
    /// HEAD.
    Head,
    /// POST.
    Post,
    /// PUT.
    Put,
    /// DELETE.
    Delete,
    /// PATCH.
    Patch,
    /// OPTIONS.
    Options,
    /// Anything else, and requests too malformed to have a method.
    Other,
}

impl MethodLabel {
    /// Every label, in [`index`](Self::index) order.
    pub const ALL: [Self; 8] = [
        Self::Get,
        Self::Head,
        Self::Post,
        Self::Put,
        Self::Delete,
        Self::Patch,
        Self::Options,
        Self::Other,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Head => "HEAD",
            Self::Post => "POST",
            Self::Put => "PUT",
            Self::Delete => "DELETE",
            Self::Patch => "PATCH",
            Self::Options => "OPTIONS",
            Self::Other => "other",
        }
    }

    /// Its position in [`ALL`](Self::ALL), for array-indexed caches.
    pub fn index(self) -> usize {
        self as usize
    }
}

impl From<&Method> for MethodLabel {
    fn from(m: &Method) -> Self {
        match *m {
            Method::GET => Self::Get,
            Method::HEAD => Self::Head,
            Method::POST => Self::Post,
            Method::PUT => Self::Put,
            Method::DELETE => Self::Delete,
            Method::PATCH => Self::Patch,
            Method::OPTIONS => Self::Options,
            _ => Self::Other,
        }
    }
}

/// A status code's class (`2xx`), the bounded form of a status in labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StatusClass {
    /// 1xx.
    Informational,
    /// 2xx.
    Success,
    /// 3xx.
    Redirection,
    /// 4xx.
    ClientError,
    /// 5xx.
    ServerError,
}

impl StatusClass {
    /// Every class, in [`index`](Self::index) order.
    pub const ALL: [Self; 5] = [
        Self::Informational,
        Self::Success,
        Self::Redirection,
        Self::ClientError,
        Self::ServerError,
    ];

    /// The label value: `1xx` to `5xx`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Informational => "1xx",
            Self::Success => "2xx",
            Self::Redirection => "3xx",
            Self::ClientError => "4xx",
            Self::ServerError => "5xx",
        }
    }

    /// Its position in [`ALL`](Self::ALL), for array-indexed caches.
    pub fn index(self) -> usize {
        self as usize
    }
}

impl From<StatusCode> for StatusClass {
    fn from(s: StatusCode) -> Self {
        match s.as_u16() {
            100..=199 => Self::Informational,
            200..=299 => Self::Success,
            300..=399 => Self::Redirection,
            400..=499 => Self::ClientError,
            _ => Self::ServerError,
        }
    }
}

/// One service's HTTP series; handles resolved once and kept. Every refusal reason and
/// the `ZERO_METHODS` × `ZERO_CLASSES` request series exist at zero from the start,
/// so `rate()` sees a service's first request and its first error.
pub struct HttpMetrics {
    /// The family, kept to resolve a method and class's series on first use.
    requests: IntCounterVec,
    /// By method, then status class.
    handles: [[OnceCell<IntCounter>; 5]; 8],
    duration: Histogram,
    upstream_errors: IntCounter,
    /// The family, kept to resolve a reason's series on first use.
    refused: IntCounterVec,
    /// By reason.
    refused_handles: [OnceCell<IntCounter>; Refusal::ALL.len()],
    /// The per-upstream families.
    upstreams: UpstreamSeries,
    /// Upgrade requests by outcome.
    upgrades: [IntCounter; UpgradeOutcome::ALL.len()],
    tunnels: IntGauge,
    routes: RouteFamilies,
    /// Each route's series by label, made on first use: the labels come from the
    /// configuration, so there are as many as the configurations run name.
    route_handles: RefCell<HashMap<String, Arc<RouteMetrics>>>,
}

impl HttpMetrics {
    /// Registers `service`'s series; several services share each family through the
    /// `service` label.
    pub fn register(registry: &Registry, service: &str) -> prometheus::Result<Self> {
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
        let upgrades = IntCounterVec::new(
            Opts::new(
                "weft_http_upgrades_total",
                "Requests that asked to switch protocols, by outcome.",
            )
            .const_label("service", service),
            &["outcome"],
        )?;
        let tunnels = IntGauge::with_opts(
            Opts::new(
                "weft_http_tunnels_open",
                "Connections tunnelled to an upstream after a 101, open now.",
            )
            .const_label("service", service),
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(upstream_errors.clone()))?;
        registry.register(Box::new(refused.clone()))?;
        registry.register(Box::new(upgrades.clone()))?;
        registry.register(Box::new(tunnels.clone()))?;
        let routes = RouteFamilies::register(registry, service)?;
        let metrics = Self {
            requests,
            handles: Default::default(),
            duration,
            upstream_errors,
            refused,
            refused_handles: Default::default(),
            upstreams: UpstreamSeries::register(registry, service)?,
            upgrades: UpgradeOutcome::ALL.map(|o| upgrades.with_label_values(&[o.as_str()])),
            tunnels,
            routes,
            route_handles: RefCell::default(),
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

    fn upstream_connection(&self, upstream: &str, reused: bool) {
        self.upstreams.connection(upstream, reused);
    }

    fn upstream_failed(&self, upstream: &str, reason: UpstreamFailure) {
        self.upstreams
            .failures
            .with_label_values(&[upstream, reason.as_str()])
            .inc();
    }

    fn upstream_ejected(&self, upstream: &str) {
        self.upstreams
            .ejections
            .with_label_values(&[upstream])
            .inc();
    }

    fn upstream_unavailable(&self, route: &str) {
        self.upstreams.unavailable.with_label_values(&[route]).inc();
    }

    fn upgrade(&self, outcome: UpgradeOutcome) {
        self.upgrades[outcome.index()].inc();
    }

    fn tunnels(&self, change: i64) {
        self.tunnels.add(change);
    }

    fn route(&self, route: &str) -> Arc<RouteMetrics> {
        self.route_handles
            .borrow_mut()
            .entry(route.to_owned())
            .or_insert_with(|| Arc::new(RouteMetrics::new(&self.routes, route)))
            .clone()
    }
}

/// One service's `weft_http_access_log_dropped_total{service,reason}` series: the access
/// log lines its file could not take, by [`LogLoss`] reason, all at zero from the start.
pub struct AccessLogLosses([IntCounter; LogLoss::ALL.len()]);

impl AccessLogLosses {
    /// Registers `service`'s series; several services share the family through the
    /// `service` label.
    pub fn register(registry: &Registry, service: &str) -> prometheus::Result<Self> {
        let family = IntCounterVec::new(
            Opts::new(
                "weft_http_access_log_dropped_total",
                "Access log lines not written to the file, by reason.",
            )
            .const_label("service", service),
            &["reason"],
        )?;
        registry.register(Box::new(family.clone()))?;
        Ok(Self(LogLoss::ALL.map(|reason| {
            family.with_label_values(&[reason.as_str()])
        })))
    }
}

impl LossRecorder for AccessLogLosses {
    fn lost(&self, reason: LogLoss, lines: u64) {
        if let Some(i) = LogLoss::ALL.iter().position(|r| *r == reason) {
            self.0[i].inc_by(lines);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_bounded() {
        assert_eq!(MethodLabel::from(&Method::GET).as_str(), "GET");
        let odd = Method::from_bytes(b"BREW").unwrap();
        assert_eq!(MethodLabel::from(&odd), MethodLabel::Other);
        assert_eq!(StatusClass::from(StatusCode::NOT_FOUND).as_str(), "4xx");
        assert_eq!(StatusClass::from(StatusCode::BAD_GATEWAY).as_str(), "5xx");
        for (i, m) in MethodLabel::ALL.iter().enumerate() {
            assert_eq!(m.index(), i);
        }
        for (i, c) in StatusClass::ALL.iter().enumerate() {
            assert_eq!(c.index(), i);
        }
        for (i, r) in Refusal::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
        for (i, o) in UpgradeOutcome::ALL.iter().enumerate() {
            assert_eq!(o.index(), i);
        }
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
        assert_eq!(
            samples("weft_http_upgrades_total"),
            UpgradeOutcome::ALL.len(),
            "{text}"
        );
        assert!(
            text.contains(r#"weft_http_tunnels_open{service="web"} 0"#),
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

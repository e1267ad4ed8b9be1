//! Each route's requests, latency and upstream errors: [`RouteMetrics`], recorded on the
//! reactor thread and read from any other ([`RouteMetrics::read`]), and [`RouteFigures`],
//! a service's routes as a dashboard lists them.
//!
//! A route's series are `weft_http_route_requests_total{service,route,code}`,
//! `weft_http_route_request_duration_seconds{service,route}` and
//! `weft_http_route_upstream_errors_total{service,route}`. `route` is a configured prefix,
//! [`FILES`] for requests no route matched (answered from the static files, or 404
//! without them) or [`UNROUTED`] for requests refused before they were routed (a bad
//! `Host` or path): the values come from the configuration, so they are bounded.
//!
//! Everything here is atomics but the last few upstream errors, kept under a mutex taken
//! for a push on an error and for a copy when read: the reactor never waits on a reader.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus::core::Metric;
use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry,
};

use weft::observe::exemplar::{ExemplarIndex, Exemplars, SpanRef};

use crate::metrics::{DURATION_BUCKETS, StatusClass, ZERO_CLASSES, exemplars_of};

/// The `route` of requests no configured route matched.
pub const FILES: &str = "files";

/// The `route` of requests refused before they were routed.
pub const UNROUTED: &str = "unrouted";

/// Upstream errors a route keeps the message of, newest last.
pub const RECENT_ERRORS: usize = 8;

/// Bytes of an upstream error's message kept at most.
const MAX_MESSAGE: usize = 256;

/// The route families of one service.
#[derive(Clone)]
pub(crate) struct RouteFamilies {
    requests: IntCounterVec,
    duration: HistogramVec,
    upstream_errors: IntCounterVec,
    /// Where each route's latency exemplars are listed.
    exemplars: ExemplarIndex,
}

impl RouteFamilies {
    /// Registers `service`'s route families on `registry`; their exemplars are listed in
    /// `exemplars`.
    pub(crate) fn register(
        registry: &Registry,
        exemplars: &ExemplarIndex,
        service: &str,
    ) -> prometheus::Result<Self> {
        let mut families = Self::new(service)?;
        families.exemplars = exemplars.clone();
        registry.register(Box::new(families.requests.clone()))?;
        registry.register(Box::new(families.duration.clone()))?;
        registry.register(Box::new(families.upstream_errors.clone()))?;
        Ok(families)
    }

    fn new(service: &str) -> prometheus::Result<Self> {
        Ok(Self {
            requests: IntCounterVec::new(
                Opts::new(
                    "weft_http_route_requests_total",
                    "HTTP requests answered, by route and status class.",
                )
                .const_label("service", service),
                &["route", "code"],
            )?,
            duration: HistogramVec::new(
                HistogramOpts::new(
                    "weft_http_route_request_duration_seconds",
                    "Time from a request's arrival to its response head, by route.",
                )
                .const_label("service", service)
                .buckets(DURATION_BUCKETS.to_vec()),
                &["route"],
            )?,
            upstream_errors: IntCounterVec::new(
                Opts::new(
                    "weft_http_route_upstream_errors_total",
                    "Proxied requests whose upstream refused, failed or timed out, by route.",
                )
                .const_label("service", service),
                &["route"],
            )?,
            exemplars: ExemplarIndex::default(),
        })
    }
}

/// One upstream error as the dashboard lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamError {
    /// When it happened, unix milliseconds.
    pub at_ms: i64,
    /// What went wrong (for the operator: it may name addresses and OS errors).
    pub message: String,
}

/// One route's series: handles resolved once, shared by every instance of the service
/// (a reload's replacement counts on in them), readable from any thread.
pub struct RouteMetrics {
    route: Arc<str>,
    /// The family, kept to resolve a status class's series on first use.
    family: IntCounterVec,
    /// By status class.
    requests: [OnceLock<IntCounter>; StatusClass::ALL.len()],
    duration: Histogram,
    /// The latest traced request of each `duration` bucket.
    exemplars: Arc<Exemplars>,
    upstream_errors: IntCounter,
    recent: Mutex<VecDeque<UpstreamError>>,
}

impl std::fmt::Debug for RouteMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteMetrics")
            .field("route", &self.route)
            .finish_non_exhaustive()
    }
}

impl RouteMetrics {
    /// `route`'s series in `families`; the common status classes exist at zero from the
    /// start.
    pub(crate) fn new(families: &RouteFamilies, route: &str) -> Self {
        let duration = families.duration.with_label_values(&[route]);
        let metrics = Self {
            route: route.into(),
            family: families.requests.clone(),
            requests: Default::default(),
            exemplars: exemplars_of(&duration, &families.exemplars),
            duration,
            upstream_errors: families.upstream_errors.with_label_values(&[route]),
            recent: Mutex::default(),
        };
        for class in ZERO_CLASSES {
            metrics.requests_of(class);
        }
        metrics
    }

    /// Series that count but are registered nowhere (a service without metrics still has
    /// figures for its view).
    pub fn detached(route: &str) -> Self {
        let families = RouteFamilies::new("").expect("static, valid metric options");
        Self::new(&families, route)
    }

    /// The route's label: its prefix, [`FILES`] or [`UNROUTED`].
    pub fn route(&self) -> &str {
        &self.route
    }

    fn requests_of(&self, class: StatusClass) -> &IntCounter {
        self.requests[class.index()].get_or_init(|| {
            self.family
                .with_label_values(&[&self.route, class.as_str()])
        })
    }

    /// A request answered with `status` after `elapsed` (to the response head);
    /// `span` is its span while spans are exported (the latency's exemplar).
    pub fn request(&self, status: StatusClass, elapsed: Duration, span: Option<SpanRef>) {
        self.requests_of(status).inc();
        let seconds = elapsed.as_secs_f64();
        self.duration.observe(seconds);
        if let Some(span) = span {
            self.exemplars.record(seconds, span);
        }
    }

    /// An upstream exchange of this route failed with `message`; the last
    /// [`RECENT_ERRORS`] are kept.
    pub fn upstream_error(&self, message: &str) {
        self.upstream_errors.inc();
        let mut end = message.len().min(MAX_MESSAGE);
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        let error = UpstreamError {
            at_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
            message: message[..end].to_owned(),
        };
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        if recent.len() == RECENT_ERRORS {
            recent.pop_front();
        }
        recent.push_back(error);
    }

    /// The route's figures since the process started.
    pub fn read(&self) -> RouteReading {
        let histogram = self.duration.metric();
        let histogram = histogram.get_histogram();
        let (bounds, cumulative) = histogram
            .get_bucket()
            .iter()
            .map(|b| (b.upper_bound(), b.cumulative_count()))
            .unzip();
        RouteReading {
            requests: StatusClass::ALL
                .map(|c| self.requests[c.index()].get().map_or(0, |h| h.get())),
            latency: LatencyReading {
                bounds,
                cumulative,
                count: histogram.get_sample_count(),
                sum_seconds: histogram.get_sample_sum(),
            },
            upstream_errors: self.upstream_errors.get(),
            recent_errors: self
                .recent
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .cloned()
                .collect(),
        }
    }
}

/// A route's figures at one moment, totals since the process started.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteReading {
    /// Requests answered, by status class in [`StatusClass::ALL`] order.
    pub requests: [u64; StatusClass::ALL.len()],
    /// Time to the response head.
    pub latency: LatencyReading,
    /// Failed upstream exchanges.
    pub upstream_errors: u64,
    /// The last few of them, oldest first.
    pub recent_errors: Vec<UpstreamError>,
}

/// A latency histogram's buckets, as Prometheus exposes them.
#[derive(Debug, Clone, PartialEq)]
pub struct LatencyReading {
    /// Each bucket's upper bound in seconds, ascending (without `+Inf`).
    pub bounds: Vec<f64>,
    /// Observations at or under each bound.
    pub cumulative: Vec<u64>,
    /// Every observation.
    pub count: u64,
    /// Their sum, in seconds.
    pub sum_seconds: f64,
}

/// One of a service's routes, with where it forwards to and its series.
#[derive(Debug, Clone)]
pub struct RouteEntry {
    /// Its prefix, or [`FILES`] or [`UNROUTED`].
    pub route: String,
    /// The upstream it forwards to, as configured (`None` for files and unrouted).
    pub upstream: Option<String>,
    /// Its series.
    pub metrics: Arc<RouteMetrics>,
}

/// A service's routes in configuration order, then [`FILES`] and [`UNROUTED`]: what a
/// view of the service reads, from any thread ([`HttpService::routes`](crate::HttpService::routes)).
#[derive(Debug, Clone)]
pub struct RouteFigures(pub Arc<[RouteEntry]>);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_route_counts_times_and_keeps_its_last_errors() {
        let registry = Registry::new();
        let families =
            RouteFamilies::register(&registry, &ExemplarIndex::default(), "web").unwrap();
        let api = RouteMetrics::new(&families, "/api/");
        api.request(StatusClass::Success, Duration::from_millis(3), None);
        api.request(StatusClass::ServerError, Duration::from_millis(300), None);
        for i in 0..RECENT_ERRORS + 2 {
            api.upstream_error(&format!("failure {i}"));
        }
        api.upstream_error(&"é".repeat(MAX_MESSAGE));
        let read = api.read();
        assert_eq!(read.requests, [0, 1, 0, 0, 1]);
        assert_eq!(read.latency.count, 2);
        assert_eq!(read.latency.bounds.len(), DURATION_BUCKETS.len());
        let at = |bound: f64| {
            read.latency
                .bounds
                .iter()
                .position(|b| *b == bound)
                .unwrap()
        };
        assert_eq!(read.latency.cumulative[at(0.005)], 1);
        assert_eq!(read.latency.cumulative[at(0.5)], 2);
        assert_eq!(read.upstream_errors, RECENT_ERRORS as u64 + 3);
        assert_eq!(read.recent_errors.len(), RECENT_ERRORS);
        assert_eq!(read.recent_errors[0].message, "failure 3");
        assert!(read.recent_errors[RECENT_ERRORS - 1].message.len() <= MAX_MESSAGE);

        let text = prometheus::TextEncoder::new()
            .encode_to_string(&registry.gather())
            .unwrap();
        for series in [
            r#"weft_http_route_requests_total{code="2xx",route="/api/",service="web"} 1"#,
            r#"weft_http_route_requests_total{code="4xx",route="/api/",service="web"} 0"#,
            r#"weft_http_route_request_duration_seconds_count{route="/api/",service="web"} 2"#,
            r#"weft_http_route_upstream_errors_total{route="/api/",service="web"} 11"#,
        ] {
            assert!(text.contains(series), "{series}\n{text}");
        }
        assert!(!text.contains(r#"code="1xx""#), "{text}");
    }
}

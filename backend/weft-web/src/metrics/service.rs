//! [`HttpMetrics`]: one service's Prometheus families, registered once, its series'
//! handles resolved once and kept, recording what the service reports through
//! [`Recorder`].

use std::cell::{OnceCell, RefCell};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};
use weft::observe::exemplar::{ExemplarIndex, Exemplars, SpanRef};

use super::upstream::{BrokeOff, ConnectionsUsed, UpstreamSeries};
use super::{
    BodyBuffered, DURATION_BUCKETS, MethodLabel, Recorder, Refusal, StatusClass, UpgradeOutcome,
    UpstreamFailure, ZERO_CLASSES, ZERO_METHODS,
};
use crate::routes::{RouteFamilies, RouteMetrics};

/// One service's HTTP series; handles resolved once and kept. Every refusal reason and
/// the `ZERO_METHODS` × `ZERO_CLASSES` request series exist at zero from the start,
/// so `rate()` sees a service's first request and its first error.
pub struct HttpMetrics {
    /// The family, kept to resolve a method and class's series on first use.
    requests: IntCounterVec,
    /// By method, then status class.
    handles: [[OnceCell<IntCounter>; 5]; 8],
    duration: Histogram,
    /// The latest traced request of each `duration` bucket.
    exemplars: Arc<Exemplars>,
    upstream_errors: IntCounter,
    /// The family, kept to resolve a reason's series on first use.
    refused: IntCounterVec,
    /// By reason.
    refused_handles: [OnceCell<IntCounter>; Refusal::ALL.len()],
    /// The per-upstream families.
    upstreams: UpstreamSeries,
    /// Upgrade requests by outcome.
    upgrades: [IntCounter; UpgradeOutcome::ALL.len()],
    /// Proxied request bodies by how much was read ahead.
    bodies: [IntCounter; BodyBuffered::ALL.len()],
    tunnels: IntGauge,
    body_buffers: IntGauge,
    body_files: IntGauge,
    body_file_errors: IntCounter,
    traceparent_invalid: IntCounter,
    rate_limit_evictions: IntCounter,
    routes: RouteFamilies,
    /// Each route's series by label, made on first use: the labels come from the
    /// configuration, so there are as many as the configurations run name.
    route_handles: RefCell<HashMap<String, Arc<RouteMetrics>>>,
}

impl HttpMetrics {
    /// Registers `service`'s series; several services share each family through the
    /// `service` label. Their exemplars are listed nowhere (see
    /// [`register_with_exemplars`](Self::register_with_exemplars)).
    pub fn register(registry: &Registry, service: &str) -> prometheus::Result<Self> {
        Self::register_with_exemplars(registry, &ExemplarIndex::default(), service)
    }

    /// Registers `service`'s series, and lists its latency histograms' exemplars in
    /// `exemplars`, where the OpenMetrics encoder finds them.
    pub fn register_with_exemplars(
        registry: &Registry,
        exemplars: &ExemplarIndex,
        service: &str,
    ) -> prometheus::Result<Self> {
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
        let bodies = IntCounterVec::new(
            Opts::new(
                "weft_http_request_bodies_total",
                "Proxied request bodies, by how much of each was read before an upstream was contacted.",
            )
            .const_label("service", service),
            &["buffered"],
        )?;
        let tunnels = IntGauge::with_opts(
            Opts::new(
                "weft_http_tunnels_open",
                "Connections tunnelled to an upstream after a 101, open now.",
            )
            .const_label("service", service),
        )?;
        let body_buffers = IntGauge::with_opts(
            Opts::new(
                "weft_http_request_body_buffer_bytes",
                "Bytes of proxied request bodies read ahead of their upstreams (reserved), held now.",
            )
            .const_label("service", service),
        )?;
        let body_files = IntGauge::with_opts(
            Opts::new(
                "weft_http_request_body_file_bytes",
                "Bytes of proxied request bodies written to temporary files ahead of their upstreams (reserved), held now.",
            )
            .const_label("service", service),
        )?;
        let body_file_errors = IntCounter::with_opts(
            Opts::new(
                "weft_http_request_body_file_errors_total",
                "Temporary files for proxied request bodies that could not be made, written or read back: a body not written streamed on, one not read back failed its request (500).",
            )
            .const_label("service", service),
        )?;
        let traceparent_invalid = IntCounter::with_opts(
            Opts::new(
                "weft_http_traceparent_invalid_total",
                "Requests whose traceparent header was invalid (or repeated) while spans are exported; each began a new trace.",
            )
            .const_label("service", service),
        )?;
        let rate_limit_evictions = IntCounter::with_opts(
            Opts::new(
                "weft_http_rate_limit_evictions_total",
                "Client prefixes still spending their rate_limit budget that a full table forgot to make room for another (each starts again with a full burst).",
            )
            .const_label("service", service),
        )?;
        registry.register(Box::new(traceparent_invalid.clone()))?;
        registry.register(Box::new(rate_limit_evictions.clone()))?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(upstream_errors.clone()))?;
        registry.register(Box::new(refused.clone()))?;
        registry.register(Box::new(upgrades.clone()))?;
        registry.register(Box::new(bodies.clone()))?;
        registry.register(Box::new(tunnels.clone()))?;
        registry.register(Box::new(body_buffers.clone()))?;
        registry.register(Box::new(body_files.clone()))?;
        registry.register(Box::new(body_file_errors.clone()))?;
        let routes = RouteFamilies::register(registry, exemplars, service)?;
        let metrics = Self {
            requests,
            handles: Default::default(),
            exemplars: super::exemplars_of(&duration, exemplars),
            duration,
            upstream_errors,
            refused,
            refused_handles: Default::default(),
            upstreams: UpstreamSeries::register(registry, service)?,
            upgrades: UpgradeOutcome::ALL.map(|o| upgrades.with_label_values(&[o.as_str()])),
            bodies: BodyBuffered::ALL.map(|b| bodies.with_label_values(&[b.as_str()])),
            tunnels,
            body_buffers,
            body_files,
            body_file_errors,
            traceparent_invalid,
            rate_limit_evictions,
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
    fn request(
        &self,
        method: MethodLabel,
        status: StatusClass,
        elapsed: Duration,
        span: Option<SpanRef>,
    ) {
        self.request_handle(method, status).inc();
        let seconds = elapsed.as_secs_f64();
        self.duration.observe(seconds);
        if let Some(span) = span {
            self.exemplars.record(seconds, span);
        }
    }

    fn upstream_error(&self) {
        self.upstream_errors.inc();
    }

    fn refused(&self, reason: Refusal) {
        self.refused_handle(reason).inc();
    }

    fn upstream_connections(&self, upstream: &str) -> ConnectionsUsed {
        self.upstreams.connections_of(upstream)
    }

    fn upstream_broke_off(&self, upstream: &str) -> BrokeOff {
        self.upstreams.broke_off(&self.upstream_errors, upstream)
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

    fn request_body(&self, buffered: BodyBuffered) {
        self.bodies[buffered.index()].inc();
    }

    fn tunnels(&self, change: i64) {
        self.tunnels.add(change);
    }

    fn body_buffers(&self, change: i64) {
        self.body_buffers.add(change);
    }

    fn body_files(&self, change: i64) {
        self.body_files.add(change);
    }

    fn body_file_error(&self) {
        self.body_file_errors.inc();
    }

    fn traceparent_invalid(&self) {
        self.traceparent_invalid.inc();
    }

    fn rate_limit_evicted(&self) {
        self.rate_limit_evictions.inc();
    }

    fn refusal_figures(&self) -> super::RefusalFigures {
        super::RefusalFigures::of(
            Refusal::ALL
                .iter()
                .map(|&reason| (reason, self.refused_handle(reason).clone()))
                .collect(),
        )
    }

    fn route(&self, route: &str) -> Arc<RouteMetrics> {
        self.route_handles
            .borrow_mut()
            .entry(route.to_owned())
            .or_insert_with(|| Arc::new(RouteMetrics::new(&self.routes, route)))
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(
            samples("weft_http_request_bodies_total"),
            BodyBuffered::ALL.len(),
            "{text}"
        );
        assert!(
            text.contains(r#"weft_http_tunnels_open{service="web"} 0"#)
                && text.contains(r#"weft_http_request_body_buffer_bytes{service="web"} 0"#)
                && text.contains(r#"weft_http_request_body_file_bytes{service="web"} 0"#)
                && text.contains(r#"weft_http_request_body_file_errors_total{service="web"} 0"#),
            "{text}"
        );
        assert!(
            text.contains(r#"weft_http_traceparent_invalid_total{service="web"} 0"#),
            "{text}"
        );
    }

    #[test]
    fn an_upstream_s_connection_series_are_at_zero_once_its_pool_asks_and_count_by_reuse() {
        let registry = Registry::new();
        let web = HttpMetrics::register(&registry, "web").unwrap();
        let a = web.upstream_connections("http://a:1");
        let _b = web.upstream_connections("http://b:2");
        a.count(false);
        a.count(true);
        a.count(true);
        // The same upstream asked again (another route's pool) counts into the same series.
        web.upstream_connections("http://a:1").count(true);
        let text = prometheus::TextEncoder::new()
            .encode_to_string(&registry.gather())
            .unwrap();
        let series = |upstream: &str, reused: &str, n: u64| {
            format!(
                r#"weft_http_upstream_connections_total{{reused="{reused}",service="web",upstream="{upstream}"}} {n}"#
            )
        };
        for line in [
            series("http://a:1", "false", 1),
            series("http://a:1", "true", 3),
            series("http://b:2", "false", 0),
            series("http://b:2", "true", 0),
        ] {
            assert!(text.contains(&line), "{line}\n{text}");
        }
        assert_eq!((a.get(false), a.get(true)), (1, 3));
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
            None,
        );
        web.request(
            MethodLabel::Get,
            StatusClass::Success,
            Duration::from_millis(3),
            None,
        );
        api.request(
            MethodLabel::Other,
            StatusClass::ClientError,
            Duration::from_millis(1),
            None,
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

    #[test]
    fn traced_requests_leave_exemplars_on_the_service_and_route_histograms() {
        let (registry, index) = (Registry::new(), ExemplarIndex::default());
        let web = HttpMetrics::register_with_exemplars(&registry, &index, "web").unwrap();
        let api = web.route("/api/");
        let span = SpanRef {
            trace_id: [7; 16],
            span_id: [9; 8],
        };
        let elapsed = Duration::from_millis(3);
        web.request(MethodLabel::Get, StatusClass::Success, elapsed, Some(span));
        api.request(StatusClass::Success, elapsed, Some(span));
        web.request(MethodLabel::Get, StatusClass::Success, elapsed * 100, None);
        let of = |name, labels: &[(&'static str, &'static str)]| {
            index.find(name, labels.iter().copied()).unwrap()
        };
        let service = of("weft_http_request_duration_seconds", &[("service", "web")]);
        let route = of(
            "weft_http_route_request_duration_seconds",
            &[("route", "/api/"), ("service", "web")],
        );
        for found in [service, route] {
            assert_eq!(found.len(), DURATION_BUCKETS.len() + 1);
            let kept: Vec<_> = found.iter().flatten().collect();
            assert_eq!(kept.len(), 1, "only the traced request: {found:?}");
            assert_eq!(kept[0].span, span);
            assert_eq!(kept[0].value, 0.003);
            assert!(found[DURATION_BUCKETS.iter().position(|b| *b == 0.005).unwrap()].is_some());
        }
    }
}

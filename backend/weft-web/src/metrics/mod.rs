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
//! labels), tunnels open after a 101 in `weft_http_tunnels_open{service}`, requests whose
//! `traceparent` could not be continued (while spans are exported) in
//! `weft_http_traceparent_invalid_total{service}`, and access log
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
//!
//! The labels are `labels`'; the service's families are `service`'s, the per-upstream
//! ones `upstream`'s, the access log's losses `losses`'.

mod labels;
mod losses;
mod service;
mod upstream;

use std::sync::Arc;
use std::time::Duration;

use prometheus::Histogram;
use prometheus::core::{Collector, Metric};
use weft::observe::exemplar::{ExemplarIndex, Exemplars, SpanRef};

pub use self::labels::{BodyBuffered, MethodLabel, Refusal, StatusClass, UpgradeOutcome};
pub use self::losses::AccessLogLosses;
pub use self::service::HttpMetrics;
pub use self::upstream::{BrokeOff, ConnectionsUsed, UpstreamFailure};

/// A service's requests refused, by reason: the counters its `/metrics` series read,
/// shared, so any thread reads them as they count.
#[derive(Clone, Default)]
pub struct RefusalFigures(std::sync::Arc<[(Refusal, prometheus::IntCounter)]>);

impl RefusalFigures {
    /// The counters of `reasons`.
    pub(crate) fn of(reasons: Vec<(Refusal, prometheus::IntCounter)>) -> Self {
        Self(reasons.into())
    }

    /// Each reason with its count now, those never counted left out.
    pub fn read(&self) -> Vec<(Refusal, u64)> {
        self.0
            .iter()
            .map(|(reason, counter)| (*reason, counter.get()))
            .filter(|&(_, n)| n > 0)
            .collect()
    }
}

impl std::fmt::Debug for RefusalFigures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.read()).finish()
    }
}
use crate::routes::RouteMetrics;

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
    /// A request was answered with `status` after `elapsed` (to the response head);
    /// `span` is its span while spans are exported (the latency's exemplar).
    fn request(
        &self,
        method: MethodLabel,
        status: StatusClass,
        elapsed: Duration,
        span: Option<SpanRef>,
    ) {
        let _ = (method, status, elapsed, span);
    }
    /// An upstream could not be reached or did not answer in time.
    fn upstream_error(&self) {}
    /// The counters of connections to `upstream` (its URL as configured) used for a
    /// request or a health check, new or reused from the pool. Asked once per pool, as
    /// they count every proxied request; by default they count but are registered
    /// nowhere.
    fn upstream_connections(&self, upstream: &str) -> ConnectionsUsed {
        let _ = upstream;
        ConnectionsUsed::detached()
    }
    /// The counters a response body from `upstream` that breaks off bumps; asked once
    /// per upstream. By default they count but are registered nowhere.
    fn upstream_broke_off(&self, upstream: &str) -> BrokeOff {
        let _ = upstream;
        BrokeOff::detached()
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
    /// A proxied request's body was read ahead of its upstream as `buffered` says.
    fn request_body(&self, buffered: BodyBuffered) {
        let _ = buffered;
    }
    /// A request came, while spans are exported, with a `traceparent` that could not be
    /// continued (invalid, or several): a new trace began.
    fn traceparent_invalid(&self) {}
    /// A `rate_limit` table was full: a client prefix still spending its budget was
    /// forgotten to make room for another (it starts again with a full burst).
    fn rate_limit_evicted(&self) {}
    /// The service's refusals by reason, readable from any thread (for a dashboard);
    /// none by default.
    fn refusal_figures(&self) -> RefusalFigures {
        RefusalFigures::default()
    }
    /// Tunnels open after a 101 changed by `change`: 1 when one opens, -1 when it ends.
    fn tunnels(&self, change: i64) {
        let _ = change;
    }
    /// The bytes the service's request body buffers hold changed by `change`.
    fn body_buffers(&self, change: i64) {
        let _ = change;
    }
    /// The bytes the service's request body files hold changed by `change`.
    fn body_files(&self, change: i64) {
        let _ = change;
    }
    /// A request body's file could not be made or written (the body streamed on), or read
    /// back (its request failed with 500).
    fn body_file_error(&self) {}
    /// The series of the route labelled `route` (a prefix, [`FILES`](crate::routes::FILES)
    /// or [`UNROUTED`](crate::routes::UNROUTED)); asked once per route when a service is
    /// made, and the same ones again for the same label. By default they count but are
    /// registered nowhere.
    fn route(&self, route: &str) -> Arc<RouteMetrics> {
        Arc::new(RouteMetrics::detached(route))
    }
}

/// The exemplars of `histogram` (one slot per bucket), listed in `index` under its name
/// and labels, so the OpenMetrics encoder attaches them to its bucket lines.
pub(crate) fn exemplars_of(histogram: &Histogram, index: &ExemplarIndex) -> Arc<Exemplars> {
    let metric = histogram.metric();
    let labels = metric.get_label().iter().map(|l| (l.name(), l.value()));
    let name = histogram.desc().first().map_or("", |d| d.fq_name.as_str());
    index.series(name, labels, &DURATION_BUCKETS)
}

/// A recorder that records nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoRecorder;

impl Recorder for NoRecorder {}

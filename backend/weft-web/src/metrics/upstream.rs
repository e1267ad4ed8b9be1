//! The per-upstream series of an HTTP service: connections used (new or reused),
//! failures by [`UpstreamFailure`], ejections, and requests that found every upstream of
//! their route ejected. Upstream labels are URLs from the configuration, route labels its
//! prefixes: both bounded by it.

use std::sync::Arc;

use prometheus::{IntCounter, IntCounterVec, Opts, Registry};

use crate::routes::RouteMetrics;

/// How an upstream failed, as a bounded label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum UpstreamFailure {
    /// Nothing listens there.
    Refused,
    /// No connection within the connect timeout.
    ConnectTimeout,
    /// Connecting failed otherwise (name resolution, for one).
    Connect,
    /// The TLS handshake failed (a certificate that does not verify, for one).
    Tls,
    /// No response head within the upstream timeout.
    Timeout,
    /// The exchange broke: the upstream closed, or sent something that is not HTTP.
    Exchange,
    /// A health check was answered with an error status.
    Unhealthy,
}

impl UpstreamFailure {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Refused => "refused",
            Self::ConnectTimeout => "connect_timeout",
            Self::Connect => "connect",
            Self::Tls => "tls",
            Self::Timeout => "timeout",
            Self::Exchange => "exchange",
            Self::Unhealthy => "unhealthy",
        }
    }
}

/// One service's per-upstream families.
pub(super) struct UpstreamSeries {
    connections: IntCounterVec,
    pub(super) failures: IntCounterVec,
    pub(super) ejections: IntCounterVec,
    pub(super) unavailable: IntCounterVec,
}

impl UpstreamSeries {
    pub(super) fn register(registry: &Registry, service: &str) -> prometheus::Result<Self> {
        let family = |name: &str, help: &str, labels: &[&str]| {
            let family = IntCounterVec::new(
                Opts::new(name, help).const_label("service", service),
                labels,
            )?;
            registry.register(Box::new(family.clone()))?;
            Ok::<_, prometheus::Error>(family)
        };
        Ok(Self {
            connections: family(
                "weft_http_upstream_connections_total",
                "Upstream connections used for a request, new or reused from the pool.",
                &["upstream", "reused"],
            )?,
            failures: family(
                "weft_http_upstream_failures_total",
                "Upstream failures (requests and health checks), by upstream and reason.",
                &["upstream", "reason"],
            )?,
            ejections: family(
                "weft_http_upstream_ejections_total",
                "Upstreams ejected after failing too many times in a row.",
                &["upstream"],
            )?,
            unavailable: family(
                "weft_http_upstream_unavailable_total",
                "Requests answered 503 because every upstream of their route was ejected.",
                &["route"],
            )?,
        })
    }

    pub(super) fn broke_off(&self, errors: &IntCounter, upstream: &str) -> BrokeOff {
        BrokeOff {
            errors: errors.clone(),
            failures: self.failures.clone(),
            upstream: upstream.to_owned(),
            route: None,
        }
    }

    pub(super) fn connections_of(&self, upstream: &str) -> ConnectionsUsed {
        let [new, reused] =
            ["false", "true"].map(|r| self.connections.with_label_values(&[upstream, r]));
        ConnectionsUsed { new, reused }
    }
}

/// One upstream's series of connections used, new and reused: resolved once per pool
/// ([`Recorder::upstream_connections`](super::Recorder::upstream_connections)), so a
/// proxied request bumps a counter it holds rather than finding its series by the
/// upstream's name. Clones count into the same series.
#[derive(Clone)]
pub struct ConnectionsUsed {
    new: IntCounter,
    reused: IntCounter,
}

impl Default for ConnectionsUsed {
    fn default() -> Self {
        Self::detached()
    }
}

impl ConnectionsUsed {
    /// Counters registered nowhere.
    pub fn detached() -> Self {
        let counter = || IntCounter::new("upstream_connections", "-").expect("a valid name");
        Self {
            new: counter(),
            reused: counter(),
        }
    }

    /// A connection was used: `reused` from the pool, or new.
    pub fn count(&self, reused: bool) {
        self.series(reused).inc();
    }

    /// How many were used, new or reused.
    pub fn get(&self, reused: bool) -> u64 {
        self.series(reused).get()
    }

    fn series(&self, reused: bool) -> &IntCounter {
        if reused { &self.reused } else { &self.new }
    }
}

/// What a response body of one upstream that breaks off counts: the service's upstream
/// errors, the upstream's `exchange` failures (that series made on first use), and, once
/// given its route ([`on_route`](Self::on_route)), the route's upstream errors and recent
/// errors. Resolved once per upstream
/// ([`Recorder::upstream_broke_off`](super::Recorder::upstream_broke_off)) and held by
/// the body, which hyper may poll where the recorder cannot go.
#[derive(Clone, Debug)]
pub struct BrokeOff {
    errors: IntCounter,
    failures: IntCounterVec,
    upstream: String,
    route: Option<Arc<RouteMetrics>>,
}

impl BrokeOff {
    /// Counters registered nowhere.
    pub fn detached() -> Self {
        Self {
            errors: IntCounter::new("upstream_errors", "-").expect("a valid name"),
            failures: IntCounterVec::new(
                Opts::new("upstream_failures", "-"),
                &["upstream", "reason"],
            )
            .expect("a valid family"),
            upstream: String::new(),
            route: None,
        }
    }

    /// Counts against `route` too.
    pub fn on_route(mut self, route: Arc<RouteMetrics>) -> Self {
        self.route = Some(route);
        self
    }

    /// A body broke off, as `message` says.
    pub fn count(&self, message: &str) {
        self.errors.inc();
        self.failures
            .with_label_values(&[self.upstream.as_str(), UpstreamFailure::Exchange.as_str()])
            .inc();
        if let Some(route) = &self.route {
            route.upstream_error(message);
        }
    }
}

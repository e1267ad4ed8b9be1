//! The per-upstream series of an HTTP service: connections used (new or reused),
//! failures by [`UpstreamFailure`], ejections, and requests that found every upstream of
//! their route ejected. Upstream labels are URLs from the configuration, route labels its
//! prefixes: both bounded by it.

use std::cell::RefCell;
use std::collections::HashMap;

use prometheus::{IntCounter, IntCounterVec, Opts, Registry};

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
    /// `connections` by upstream, then new / reused: resolved once, as this is counted on
    /// every proxied request.
    connection_handles: RefCell<HashMap<String, [IntCounter; 2]>>,
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
            connection_handles: RefCell::default(),
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

    pub(super) fn connection(&self, upstream: &str, reused: bool) {
        let mut handles = self.connection_handles.borrow_mut();
        // Looked up once: the key is hashed on every proxied request.
        if let Some(series) = handles.get(upstream) {
            series[usize::from(reused)].inc();
            return;
        }
        let series = ["false", "true"].map(|r| self.connections.with_label_values(&[upstream, r]));
        series[usize::from(reused)].inc();
        handles.insert(upstream.to_owned(), series);
    }
}

//! The Prometheus families, on a registry the hub owns, and their cached labelled handles.
//!
//! Labels are bounded (service, transport, reason, kind, consumer). Handles are resolved
//! once per service and transport and kept in small maps, so an event costs one uncontended
//! lock (only the reactor thread takes it) and an atomic increment, not a label hash.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use prometheus::proto::MetricFamily;
use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};
use weft::observe::{CloseKind, TransportKind};

/// Buckets for reactor lag, in seconds: half a millisecond to a few seconds.
const LAG_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// A service and a transport.
type ConnKey = (Arc<str>, TransportKind);

/// Counters keyed by one bounded label value, resolved on first use.
pub(crate) struct LabelCache {
    vec: IntCounterVec,
    /// The other label values, fixed for this cache (the service, the transport).
    prefix: Vec<Arc<str>>,
    /// Linear search: a handful of entries at most (the label set is bounded).
    handles: Mutex<Vec<(&'static str, IntCounter)>>,
}

impl LabelCache {
    fn new(vec: &IntCounterVec, prefix: Vec<Arc<str>>) -> Self {
        Self {
            vec: vec.clone(),
            prefix,
            handles: Mutex::default(),
        }
    }

    /// The counter for `value`, resolving it the first time.
    pub(crate) fn get(&self, value: &'static str) -> IntCounter {
        let mut handles = self.handles.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, c)) = handles.iter().find(|(v, _)| *v == value) {
            return c.clone();
        }
        let mut labels: Vec<&str> = self.prefix.iter().map(|s| &**s).collect();
        labels.push(value);
        let counter = self.vec.with_label_values(&labels);
        handles.push((value, counter.clone()));
        counter
    }
}

/// The handles of one (service, transport).
pub(crate) struct ConnMetrics {
    pub(crate) opened: IntCounter,
    pub(crate) active: IntGauge,
    /// By close reason.
    pub(crate) closed: LabelCache,
}

/// The handles of one service.
pub(crate) struct ServiceMetrics {
    /// By error kind.
    pub(crate) errors: LabelCache,
    /// By refusal reason.
    pub(crate) refused: LabelCache,
    pub(crate) slow_callbacks: IntCounter,
}

/// One reactor's series.
pub(crate) struct ReactorSeries {
    pub(crate) lag: Histogram,
    pub(crate) connections: IntGauge,
}

/// Every family the hub reports, and the caches of their handles.
pub struct Metrics {
    registry: Registry,
    opened: IntCounterVec,
    closed: IntCounterVec,
    active: IntGaugeVec,
    errors: IntCounterVec,
    refused: IntCounterVec,
    slow_callbacks: IntCounterVec,
    dropped: IntCounterVec,
    lag: HistogramVec,
    reactor_connections: IntGaugeVec,
    /// Each reactor's lag and connection series, by index, resolved on first use.
    reactors: Box<[OnceLock<ReactorSeries>]>,
    /// Registries of per-reactor families (a service kind's, made once per reactor), summed
    /// into the main registry's families when metrics are rendered.
    summed: Mutex<Vec<Registry>>,
    /// Handles per service and transport, resolved once and shared by every connection of that
    /// pair.
    conns: Mutex<HashMap<ConnKey, Arc<ConnMetrics>>>,
    /// Handles per service, resolved once.
    services: Mutex<HashMap<Arc<str>, Arc<ServiceMetrics>>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

fn counter_vec(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> Result<IntCounterVec, prometheus::Error> {
    let vec = IntCounterVec::new(Opts::new(name, help), labels)?;
    registry.register(Box::new(vec.clone()))?;
    Ok(vec)
}

impl Metrics {
    /// Creates every family on a fresh registry.
    pub(crate) fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let r = &registry;
        let active = IntGaugeVec::new(
            Opts::new(
                "weft_connections_active",
                "Connections (and UDP endpoints) open now, by service and transport.",
            ),
            &["service", "transport"],
        )?;
        registry.register(Box::new(active.clone()))?;
        let lag = HistogramVec::new(
            HistogramOpts::new(
                "weft_reactor_lag_seconds",
                "How late the reactor's probe timer fired: time the event loop was busy, by reactor.",
            )
            .buckets(LAG_BUCKETS.to_vec()),
            &["reactor"],
        )?;
        registry.register(Box::new(lag.clone()))?;
        let reactor_connections = IntGaugeVec::new(
            Opts::new(
                "weft_reactor_connections",
                "Connections (and UDP endpoints) open now, by the reactor that owns them.",
            ),
            &["reactor"],
        )?;
        registry.register(Box::new(reactor_connections.clone()))?;
        let metrics = Self {
            opened: counter_vec(
                r,
                "weft_connections_opened_total",
                "Connections (and UDP endpoints) opened, by service and transport.",
                &["service", "transport"],
            )?,
            closed: counter_vec(
                r,
                "weft_connections_closed_total",
                "Connections closed, by service, transport and reason.",
                &["service", "transport", "reason"],
            )?,
            errors: counter_vec(
                r,
                "weft_errors_total",
                "Errors the reactor handled (bad frames, failed handshakes, dropped datagrams), by service and kind.",
                &["service", "kind"],
            )?,
            refused: counter_vec(
                r,
                "weft_refused_total",
                "Connections turned away before a protocol ran, by service and reason.",
                &["service", "reason"],
            )?,
            slow_callbacks: counter_vec(
                r,
                "weft_slow_callbacks_total",
                "Callbacks that held the reactor thread longer than the slow-callback threshold.",
                &["service"],
            )?,
            dropped: counter_vec(
                r,
                "weft_events_dropped_total",
                "Telemetry events a consumer could not take in time and that were dropped.",
                &["consumer"],
            )?,
            active,
            lag,
            reactor_connections,
            reactors: (0..weft::ReactorPool::MAX)
                .map(|_| OnceLock::new())
                .collect(),
            summed: Mutex::default(),
            registry,
            conns: Mutex::default(),
            services: Mutex::default(),
        };
        // Reactor 0's series exist at zero from the start, as with one reactor.
        metrics.reactor(0);
        Ok(metrics)
    }

    /// The registry everything is registered on; add your own collectors to it.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The handles of `service` over `transport`.
    pub(crate) fn conn(&self, service: &Arc<str>, transport: TransportKind) -> Arc<ConnMetrics> {
        let mut conns = self.conns.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(m) = conns.get(&(service.clone(), transport)) {
            return m.clone();
        }
        let labels = [&**service, transport.as_str()];
        let m = Arc::new(ConnMetrics {
            opened: self.opened.with_label_values(&labels),
            active: self.active.with_label_values(&labels),
            closed: LabelCache::new(
                &self.closed,
                vec![service.clone(), transport.as_str().into()],
            ),
        });
        conns.insert((service.clone(), transport), m.clone());
        m
    }

    /// Creates `service`'s series over `transport` at zero (a listener of it started):
    /// opened, active, closed by every reason (stream transports; a UDP endpoint closes
    /// only with the reactor) and the service's slow callbacks.
    pub(crate) fn declare(&self, service: &Arc<str>, transport: TransportKind) {
        let conn = self.conn(service, transport);
        if transport != TransportKind::Udp {
            for reason in CloseKind::ALL {
                conn.closed.get(reason.as_str());
            }
        }
        self.service(service);
    }

    /// The handles of `service`.
    pub(crate) fn service(&self, service: &Arc<str>) -> Arc<ServiceMetrics> {
        let mut services = self.services.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(m) = services.get(service) {
            return m.clone();
        }
        let m = Arc::new(ServiceMetrics {
            errors: LabelCache::new(&self.errors, vec![service.clone()]),
            refused: LabelCache::new(&self.refused, vec![service.clone()]),
            slow_callbacks: self.slow_callbacks.with_label_values(&[&**service]),
        });
        services.insert(service.clone(), m.clone());
        m
    }

    /// The series of reactor `index` (indexes past [`weft::ReactorPool::MAX`] share the
    /// last one's, so the label stays bounded).
    pub(crate) fn reactor(&self, index: u16) -> &ReactorSeries {
        let i = usize::from(index).min(self.reactors.len() - 1);
        self.reactors[i].get_or_init(|| {
            let label = i.to_string();
            ReactorSeries {
                lag: self.lag.with_label_values(&[&label]),
                connections: self.reactor_connections.with_label_values(&[&label]),
            }
        })
    }

    /// Records one reactor-lag measurement of reactor `index`.
    pub(crate) fn observe_lag(&self, index: u16, lag: Duration) {
        self.reactor(index).lag.observe(lag.as_secs_f64());
    }

    /// Adds `registry`'s families to what is rendered, each series summed with the series
    /// of the same name and labels on the main registry (or on another registry added).
    pub(crate) fn sum_registry(&self, registry: Registry) {
        self.summed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(registry);
    }

    /// Every family: the main registry's, with the summed registries' added in.
    pub fn gather(&self) -> Vec<MetricFamily> {
        let mut families = self.registry.gather();
        let summed = self.summed.lock().unwrap_or_else(|p| p.into_inner());
        for registry in summed.iter() {
            crate::sum::add_families(&mut families, registry.gather());
        }
        families
    }

    /// The drop counter of `consumer`, created at zero so it shows before the first drop.
    pub(crate) fn dropped(&self, consumer: &str) -> IntCounter {
        self.dropped.with_label_values(&[consumer])
    }

    /// Renders every family in Prometheus' text format.
    pub fn encode(&self) -> String {
        use prometheus::Encoder;
        let mut out = Vec::new();
        let encoder = prometheus::TextEncoder::new();
        if let Err(e) = encoder.encode(&self.gather(), &mut out) {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

//! The last minutes of per-service figures, for the overview's sparklines.
//!
//! Once a second [`Series::sample`] reads the hub's Prometheus registry (the one source of
//! truth for counters, so these figures always agree with `/metrics`) and appends one
//! [`Point`] per service to a ring of [`KEEP`] points. Rates are differences of adjacent
//! totals, computed when read.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use prometheus::proto::MetricFamily;
use serde::Serialize;
use weft_telemetry::Hub;

/// Points kept per service: five minutes at one a second.
pub const KEEP: usize = 300;

/// One service's totals at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Point {
    /// When it was read, unix milliseconds.
    pub at_ms: i64,
    /// Connections opened since start.
    pub opened: u64,
    /// Connections open now.
    pub active: i64,
    /// Bytes received since start.
    pub bytes_in: u64,
    /// Bytes sent since start.
    pub bytes_out: u64,
    /// Deferreds pending now.
    pub pending: i64,
    /// Deferreds stalled now.
    pub stalled: i64,
}

/// Process-wide figures the banner shows.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Alerts {
    /// Detections since start, by detector (`stalled`, `slow`, `unhandled`, `leaked`).
    pub detections: BTreeMap<String, u64>,
    /// Events dropped since start, by consumer (`live`, `store`) plus the store's own
    /// losses under `history`.
    pub dropped: BTreeMap<String, u64>,
    /// The last configuration reload, if the program reloaded (the banner shows one that
    /// changed nothing). Filled when a message is sent, not by the sampler.
    pub last_reload: Option<weft_telemetry::ReloadOutcome>,
}

/// A service's figures now and over the last minutes, as the overview draws them.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ServiceStats {
    /// The service.
    pub service: String,
    /// The latest point.
    pub now: Point,
    /// When the oldest point was read, unix milliseconds: the series span from here to
    /// `now.at_ms`, one value per sample.
    pub since_ms: i64,
    /// Connections opened per second, oldest first, one per sample.
    pub conn_rate: Vec<f64>,
    /// Bytes received per second.
    pub in_rate: Vec<f64>,
    /// Bytes sent per second.
    pub out_rate: Vec<f64>,
    /// Pending Deferreds at each sample.
    pub pending: Vec<i64>,
    /// Stalled Deferreds at each sample.
    pub stalled: Vec<i64>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Each service's recent points, oldest first, for the sparklines; the oldest go as new ones
    /// come.
    services: BTreeMap<String, VecDeque<Point>>,
    /// What the banner shows, as of the last sample.
    alerts: Alerts,
}

/// The rings of points, one per service.
#[derive(Debug, Default)]
pub struct Series {
    /// A std mutex: taken once per sample and per read, never across an await.
    inner: Mutex<Inner>,
}

impl Series {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reads `hub`'s registry now and appends a point per service.
    pub fn sample(&self, hub: &Hub, at_ms: i64) {
        let families = hub.gather();
        let (points, alerts) = read(&families, at_ms);
        let mut inner = self.lock();
        // A service the program no longer serves leaves the overview with its series.
        inner.services.retain(|service, _| !hub.is_retired(service));
        for (service, point) in points {
            if !hub.is_retired(&service) {
                push(inner.services.entry(service).or_default(), point);
            }
        }
        inner.alerts = alerts;
    }

    /// Appends `point` to `service`'s ring, as a sample would.
    pub fn record(&self, service: &str, point: Point) {
        push(
            self.lock().services.entry(service.into()).or_default(),
            point,
        );
    }

    /// Every service's figures, by name.
    pub fn stats(&self) -> Vec<ServiceStats> {
        let inner = self.lock();
        inner
            .services
            .iter()
            .map(|(name, ring)| stats(name, ring))
            .collect()
    }

    /// The banner's figures as of the last sample.
    pub fn alerts(&self) -> Alerts {
        self.lock().alerts.clone()
    }
}

fn push(ring: &mut VecDeque<Point>, point: Point) {
    if ring.len() == KEEP {
        ring.pop_front();
    }
    ring.push_back(point);
}

fn stats(name: &str, ring: &VecDeque<Point>) -> ServiceStats {
    let pairs = || ring.iter().zip(ring.iter().skip(1));
    let rate = |f: fn(&Point) -> u64| -> Vec<f64> {
        pairs()
            .map(|(a, b)| {
                let secs = ((b.at_ms - a.at_ms) as f64 / 1e3).max(1e-3);
                f(b).saturating_sub(f(a)) as f64 / secs
            })
            .collect()
    };
    ServiceStats {
        service: name.to_owned(),
        now: ring.back().copied().unwrap_or_default(),
        since_ms: ring.front().map_or(0, |p| p.at_ms),
        conn_rate: rate(|p| p.opened),
        in_rate: rate(|p| p.bytes_in),
        out_rate: rate(|p| p.bytes_out),
        pending: ring.iter().map(|p| p.pending).collect(),
        stalled: ring.iter().map(|p| p.stalled).collect(),
    }
}

fn label<'a>(m: &'a prometheus::proto::Metric, name: &str) -> &'a str {
    m.get_label()
        .iter()
        .find(|l| l.name() == name)
        .map_or("", |l| l.value())
}

/// Sums each family per service into points, and reads the banner's counters.
fn read(families: &[MetricFamily], at_ms: i64) -> (BTreeMap<String, Point>, Alerts) {
    let mut points: BTreeMap<String, Point> = BTreeMap::new();
    let mut alerts = Alerts::default();
    for family in families {
        for m in family.get_metric() {
            let counter = m.get_counter().get_value() as u64;
            let gauge = m.get_gauge().get_value() as i64;
            let service = label(m, "service");
            let point = |points: &mut BTreeMap<String, Point>, add: &dyn Fn(&mut Point)| {
                let p = points.entry(service.to_owned()).or_default();
                p.at_ms = at_ms;
                add(p);
            };
            match family.name() {
                "weft_connections_opened_total" => point(&mut points, &|p| p.opened += counter),
                "weft_connections_active" => point(&mut points, &|p| p.active += gauge),
                "weft_received_bytes_total" => point(&mut points, &|p| p.bytes_in += counter),
                "weft_sent_bytes_total" => point(&mut points, &|p| p.bytes_out += counter),
                "weft_deferreds_pending" => point(&mut points, &|p| p.pending += gauge),
                "weft_deferreds_stalled" => point(&mut points, &|p| p.stalled += gauge),
                "weft_deferred_detections_total" => {
                    *alerts
                        .detections
                        .entry(label(m, "detector").to_owned())
                        .or_default() += counter;
                }
                "weft_events_dropped_total" => {
                    *alerts
                        .dropped
                        .entry(label(m, "consumer").to_owned())
                        .or_default() += counter;
                }
                "weft_store_events_dropped_total" => {
                    *alerts.dropped.entry("history".into()).or_default() += counter;
                }
                _ => {}
            }
        }
    }
    // Slow callbacks outside any service are reported under a pseudo-service; it has no
    // connections worth a sparkline.
    points.retain(|name, _| !name.is_empty());
    (points, alerts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(at_ms: i64, opened: u64, bytes_in: u64) -> Point {
        Point {
            at_ms,
            opened,
            bytes_in,
            ..Point::default()
        }
    }

    #[test]
    fn rates_are_differences_over_elapsed_time() {
        let ring: VecDeque<_> = [point(0, 0, 0), point(1000, 5, 100), point(3000, 9, 100)]
            .into_iter()
            .collect();
        let s = stats("echo", &ring);
        assert_eq!(s.conn_rate, vec![5.0, 2.0]);
        assert_eq!(s.in_rate, vec![100.0, 0.0]);
        assert_eq!(s.now.opened, 9);
        assert_eq!(
            (s.since_ms, s.now.at_ms),
            (0, 3000),
            "the span of the series"
        );
    }

    #[test]
    fn families_are_summed_per_service_and_alerts_read() {
        let registry = prometheus::Registry::new();
        let opened = prometheus::IntCounterVec::new(
            prometheus::Opts::new("weft_connections_opened_total", "opened"),
            &["service", "transport"],
        )
        .unwrap();
        let dropped = prometheus::IntCounterVec::new(
            prometheus::Opts::new("weft_events_dropped_total", "dropped"),
            &["consumer"],
        )
        .unwrap();
        registry.register(Box::new(opened.clone())).unwrap();
        registry.register(Box::new(dropped.clone())).unwrap();
        opened.with_label_values(&["echo", "tcp"]).inc_by(3);
        opened.with_label_values(&["echo", "udp"]).inc_by(4);
        opened.with_label_values(&["proxy", "tcp"]).inc();
        dropped.with_label_values(&["live"]).inc_by(7);
        let (points, alerts) = read(&registry.gather(), 42);
        assert_eq!(points["echo"].opened, 7);
        assert_eq!(points["echo"].at_ms, 42);
        assert_eq!(points["proxy"].opened, 1);
        assert_eq!(alerts.dropped["live"], 7);
    }

    #[test]
    fn the_ring_keeps_the_last_minutes_only() {
        let mut ring = VecDeque::new();
        for at in 0..(KEEP as i64 + 10) {
            push(&mut ring, point(at, 0, 0));
        }
        assert_eq!(ring.len(), KEEP);
        assert_eq!(ring.front().unwrap().at_ms, 10);
        assert_eq!(stats("echo", &ring).conn_rate.len(), KEEP - 1);
    }
}

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

/// The process's figures at one moment, from the `process_*` families and the
/// process-wide connection count and cap: what `/metrics` says, as the overview shows it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct ProcessPoint {
    /// When it was read, unix milliseconds.
    pub at_ms: i64,
    /// CPU time used since start, user and system, in seconds.
    pub cpu_seconds: f64,
    /// Resident memory, in bytes.
    pub resident_bytes: u64,
    /// Open file descriptors, where the kernel says.
    pub open_fds: Option<u64>,
    /// The open-files limit (the soft one), where there is one.
    pub max_fds: Option<u64>,
    /// Connections every service together holds now (what the process cap counts).
    pub connections: u64,
    /// The process cap on them, where there is one.
    pub connections_limit: Option<u64>,
    /// When the process started, unix seconds, where the kernel says.
    pub start_time_s: Option<f64>,
}

/// The process's figures now and over the last minutes, as the overview's process card
/// draws them.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ProcessStats {
    /// The latest point.
    pub now: ProcessPoint,
    /// When the oldest point was read, unix milliseconds.
    pub since_ms: i64,
    /// CPU used between samples, in cores (0.5 is half of one core), oldest first.
    pub cpu: Vec<f64>,
    /// Resident memory at each sample, in bytes.
    pub resident: Vec<u64>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Each service's recent points, oldest first, for the sparklines; the oldest go as new ones
    /// come.
    services: BTreeMap<String, VecDeque<Point>>,
    /// The process's recent points, oldest first; empty where `/proc` cannot be read.
    process: VecDeque<ProcessPoint>,
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
        let process = read_process(&families, at_ms);
        let mut inner = self.lock();
        if let Some(point) = process {
            push(&mut inner.process, point);
        }
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

    /// The process's figures, once a sample found them.
    pub fn process(&self) -> Option<ProcessStats> {
        process_stats(&self.lock().process)
    }

    /// The banner's figures as of the last sample.
    pub fn alerts(&self) -> Alerts {
        self.lock().alerts.clone()
    }
}

fn push<P>(ring: &mut VecDeque<P>, point: P) {
    if ring.len() == KEEP {
        ring.pop_front();
    }
    ring.push_back(point);
}

fn stats(name: &str, ring: &VecDeque<Point>) -> ServiceStats {
    let pairs = || ring.iter().zip(ring.iter().skip(1));
    let rate = |f: fn(&Point) -> u64| -> Vec<f64> {
        pairs()
            .map(|(a, b)| f(b).saturating_sub(f(a)) as f64 / seconds_between(a.at_ms, b.at_ms))
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

/// Seconds from one sample to the next, never zero (a rate is a difference over it).
fn seconds_between(a_ms: i64, b_ms: i64) -> f64 {
    ((b_ms - a_ms) as f64 / 1e3).max(1e-3)
}

fn process_stats(ring: &VecDeque<ProcessPoint>) -> Option<ProcessStats> {
    let now = *ring.back()?;
    let cpu = ring
        .iter()
        .zip(ring.iter().skip(1))
        .map(|(a, b)| (b.cpu_seconds - a.cpu_seconds).max(0.0) / seconds_between(a.at_ms, b.at_ms))
        .collect();
    Some(ProcessStats {
        now,
        since_ms: ring.front().map_or(0, |p| p.at_ms),
        cpu,
        resident: ring.iter().map(|p| p.resident_bytes).collect(),
    })
}

/// The process's figures in `families`; `None` where its families are left out (no
/// `/proc` to read them from).
fn read_process(families: &[MetricFamily], at_ms: i64) -> Option<ProcessPoint> {
    let mut point = ProcessPoint {
        at_ms,
        ..ProcessPoint::default()
    };
    let mut found = false;
    for family in families {
        let Some(m) = family.get_metric().first() else {
            continue;
        };
        let gauge = m.get_gauge().get_value();
        let whole = gauge.max(0.0) as u64;
        match family.name() {
            "process_cpu_seconds_total" => {
                point.cpu_seconds = m.get_counter().get_value();
                found = true;
            }
            "process_resident_memory_bytes" => point.resident_bytes = whole,
            "process_open_fds" => point.open_fds = Some(whole),
            "process_max_fds" => point.max_fds = Some(whole),
            "process_start_time_seconds" => point.start_time_s = Some(gauge),
            "weft_process_connections" => point.connections = whole,
            "weft_process_connections_limit" => point.connections_limit = Some(whole),
            _ => {}
        }
    }
    found.then_some(point)
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
    fn the_process_figures_are_read_with_cpu_as_cores_used_between_samples() {
        let registry = prometheus::Registry::new();
        let gauge = |name: &str| {
            let g = prometheus::Gauge::new(name, "help").unwrap();
            registry.register(Box::new(g.clone())).unwrap();
            g
        };
        assert_eq!(
            read_process(&registry.gather(), 1),
            None,
            "no /proc: no card"
        );
        let cpu = prometheus::Counter::new("process_cpu_seconds_total", "cpu").unwrap();
        registry.register(Box::new(cpu.clone())).unwrap();
        gauge("process_resident_memory_bytes").set(52_428_800.0);
        gauge("process_open_fds").set(40.0);
        gauge("weft_process_connections").set(7.0);
        gauge("weft_process_connections_limit").set(500.0);
        cpu.inc_by(2.0);
        let mut ring = VecDeque::new();
        push(&mut ring, read_process(&registry.gather(), 1_000).unwrap());
        cpu.inc_by(0.5);
        push(&mut ring, read_process(&registry.gather(), 3_000).unwrap());
        let s = process_stats(&ring).unwrap();
        assert_eq!(s.cpu, vec![0.25], "half a second of CPU over two seconds");
        assert_eq!(s.resident, vec![52_428_800, 52_428_800]);
        assert_eq!(
            (s.now.open_fds, s.now.max_fds),
            (Some(40), None),
            "a limit the process has not is absent, not zero"
        );
        assert_eq!((s.now.connections, s.now.connections_limit), (7, Some(500)));
        assert_eq!((s.since_ms, s.now.at_ms), (1_000, 3_000));
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

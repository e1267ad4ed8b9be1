//! The figures of the services' views ([`weft_telemetry::ServiceViews`]) as the HTTP
//! page and `/api/http` show them: per route, requests per second, status classes and
//! p50/p99 latency over the last [`WINDOW`], with each service's upstreams.
//!
//! A view gives totals since the process started; rates and percentiles are differences
//! against an earlier reading. [`ViewHistory`] keeps, per service, the readings taken
//! when the figures were asked for (at most one a second, as many as cover its window),
//! so nothing is read while nobody looks. The first reading is compared with zero at the
//! dashboard's start: its figures are since then. The DNS page (`crate::dns`) measures
//! its figures the same way, over a minute.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;
use weft_telemetry::ServiceViews;
use weft_telemetry::views::{
    Histogram, RouteSnapshot, ServiceSnapshot, UpstreamSnapshot, UpstreamState,
};

use crate::data::now_ms;
use crate::state::DashboardState;

/// The span rates and percentiles are measured over.
pub const WINDOW: Duration = Duration::from_secs(10);

/// Readings closer together than this are not kept.
const MIN_GAP_MS: i64 = 1000;

/// A service's figures for the page and the API.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServiceFigures {
    /// The service.
    pub service: String,
    /// The seconds the rates and percentiles cover.
    pub window_s: f64,
    /// Its routes, in its configuration's order.
    pub routes: Vec<RouteFigures>,
    /// The upstreams it forwards to, as the service reports them.
    pub upstreams: Vec<UpstreamSnapshot>,
    /// What it holds now against its limits (request bodies read ahead), and its named
    /// totals since start (files that failed), in words for the page.
    pub held: Vec<Held>,
}

/// Something a service holds now (`held` of `limit`, a level) or has counted since
/// start (`held` alone, a counter), with its name in words.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Held {
    /// The service's name for it (`request_body_memory_bytes`).
    pub name: &'static str,
    /// The same in words (`request bodies in memory`).
    pub label: String,
    /// How much now, or counted.
    pub held: u64,
    /// The most there may be, for a level (in bytes, for those named `..._bytes`).
    pub limit: Option<u64>,
}

impl Held {
    /// How it reads: `1.5 KiB of 64.0 MiB` for a level in bytes, `3` for a counter.
    pub fn text(&self) -> String {
        let size = |n: u64| {
            if self.name.ends_with("_bytes") {
                crate::fmt::bytes(&n)
            } else {
                n.to_string()
            }
        };
        match self.limit {
            Some(limit) => format!("{} of {}", size(self.held), size(limit)),
            None => size(self.held),
        }
    }

    /// Worth a look: a level at nine tenths of its limit or more, or failures counted.
    pub fn bad(&self) -> bool {
        match self.limit {
            Some(limit) => limit > 0 && u128::from(self.held) * 10 >= u128::from(limit) * 9,
            None => self.name.ends_with("_errors") && self.held > 0,
        }
    }
}

/// What a service's named levels and counters are called on the page: requests refused
/// (`refused_rate_limited`) by their reason in words (`refused: rate limited`).
fn label(name: &str) -> String {
    let known = match name {
        "request_body_memory_bytes" => "request bodies in memory",
        "request_body_file_bytes" => "request bodies in files",
        "request_body_file_errors" => "body files failed",
        _ => match name.strip_prefix("refused_") {
            Some(reason) => return format!("refused: {}", reason.replace('_', " ")),
            None => "other",
        },
    };
    known.to_owned()
}

/// `snapshot`'s levels, then its counters, named in words.
fn held(snapshot: &ServiceSnapshot) -> Vec<Held> {
    let levels = snapshot.levels.iter().map(|l| Held {
        name: l.name,
        label: label(l.name),
        held: l.held,
        limit: Some(l.limit),
    });
    let counters = snapshot.counters.iter().map(|&(name, n)| Held {
        name,
        label: label(name),
        held: n,
        limit: None,
    });
    levels.chain(counters).collect()
}

/// One route's figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RouteFigures {
    /// Its prefix, or `files` and `unrouted` for requests no route took.
    pub route: String,
    /// Where it forwards to.
    pub upstream: Option<String>,
    /// Requests answered since the process started.
    pub requests: u64,
    /// The same, by status class.
    pub codes: BTreeMap<&'static str, u64>,
    /// Requests answered per second over the window.
    pub requests_per_s: f64,
    /// Median time to the response head over the window, in milliseconds; `None` with no
    /// request in it.
    pub p50_ms: Option<f64>,
    /// The 99th percentile of the same.
    pub p99_ms: Option<f64>,
    /// Failed upstream exchanges since the process started.
    pub upstream_errors: u64,
}

/// One reading of a service's figures (without its recent requests and top keys, which
/// are not measured against anything).
#[derive(Debug, Clone)]
struct Reading {
    at_ms: i64,
    snapshot: ServiceSnapshot,
}

/// A service's snapshot now and the reading it is measured against.
#[derive(Debug, Clone)]
pub struct Measured {
    /// The service.
    pub service: String,
    /// Its figures now.
    pub now: ServiceSnapshot,
    /// Its figures at the start of the window; `None`: zero, at the dashboard's start.
    pub before: Option<ServiceSnapshot>,
    /// The seconds between the two.
    pub secs: f64,
}

/// The readings the figures of one kind's services are measured against, per service.
#[derive(Debug)]
pub struct ViewHistory {
    /// The span rates and percentiles cover.
    window: Duration,
    /// A std mutex: held to pick a baseline and push a reading, never across an await.
    inner: Mutex<BTreeMap<String, VecDeque<Reading>>>,
}

impl Default for ViewHistory {
    fn default() -> Self {
        Self::with_window(WINDOW)
    }
}

impl ViewHistory {
    /// Figures measured over `window`.
    pub fn with_window(window: Duration) -> Self {
        Self {
            window,
            inner: Mutex::default(),
        }
    }

    /// The span rates and percentiles cover.
    pub fn window(&self) -> Duration {
        self.window
    }

    /// Readings kept per service at most: one a second over the window, and one older.
    fn keep(&self) -> usize {
        self.window.as_secs() as usize + 2
    }

    /// Every service of kind `kind` in `views` at `now_ms`, with the reading its figures
    /// are measured against; `started_ms` is when counting began, the baseline of a first
    /// reading.
    pub fn measure(
        &self,
        views: &ServiceViews,
        kind: &str,
        now_ms: i64,
        started_ms: i64,
    ) -> Vec<Measured> {
        let snapshots = views.snapshots(kind);
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.retain(|name, _| snapshots.iter().any(|(n, _)| n == name));
        snapshots
            .into_iter()
            .map(|(service, now)| {
                let ring = inner.entry(service.clone()).or_default();
                let base = self.baseline(ring, now_ms);
                let since = base.map_or(started_ms, |b| b.at_ms);
                let secs = ((now_ms - since) as f64 / 1e3).max(1e-3);
                let before = base.map(|b| b.snapshot.clone());
                self.remember(ring, now_ms, &now);
                Measured {
                    service,
                    now,
                    before,
                    secs,
                }
            })
            .collect()
    }

    /// The HTTP figures of every service of kind `kind` in `views` at `now_ms`;
    /// `started_ms` is when counting began, the baseline of a first reading.
    pub fn figures(
        &self,
        views: &ServiceViews,
        kind: &str,
        now_ms: i64,
        started_ms: i64,
    ) -> Vec<ServiceFigures> {
        self.measure(views, kind, now_ms, started_ms)
            .into_iter()
            .map(|m| {
                let routes = m
                    .now
                    .routes
                    .iter()
                    .map(|r| {
                        let before = m.before.as_ref().and_then(|b| {
                            b.routes
                                .iter()
                                .find(|o| o.route == r.route)
                                .map(|o| &o.latency)
                        });
                        figures(r, before, m.secs)
                    })
                    .collect();
                ServiceFigures {
                    service: m.service,
                    window_s: m.secs,
                    routes,
                    held: held(&m.now),
                    upstreams: m.now.upstreams,
                }
            })
            .collect()
    }

    /// The newest reading at least a window old, else the oldest one.
    fn baseline<'a>(&self, ring: &'a VecDeque<Reading>, now_ms: i64) -> Option<&'a Reading> {
        let edge = now_ms - self.window.as_millis() as i64;
        ring.iter()
            .rev()
            .find(|r| r.at_ms <= edge)
            .or_else(|| ring.front())
    }

    /// Keeps a reading of `snapshot` at `now_ms`, unless the last one is too recent;
    /// drops those older than the one a baseline needs.
    fn remember(&self, ring: &mut VecDeque<Reading>, now_ms: i64, snapshot: &ServiceSnapshot) {
        if ring.back().is_some_and(|r| now_ms - r.at_ms < MIN_GAP_MS) {
            return;
        }
        ring.push_back(Reading {
            at_ms: now_ms,
            snapshot: ServiceSnapshot {
                top: Vec::new(),
                recent: Vec::new(),
                zones: Vec::new(),
                ..snapshot.clone()
            },
        });
        let edge = now_ms - self.window.as_millis() as i64;
        while ring.len() > self.keep() || ring.get(1).is_some_and(|r| r.at_ms <= edge) {
            ring.pop_front();
        }
    }
}

/// What a latency histogram observed over a window: how many, and the median and 99th
/// percentile in milliseconds (`None` without an observation).
pub fn window_latency(
    now: &Histogram,
    before: Option<&Histogram>,
) -> (u64, Option<f64>, Option<f64>) {
    let count = now.count.saturating_sub(before.map_or(0, |b| b.count));
    let cumulative: Vec<u64> = now
        .cumulative
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let was = before
                .and_then(|b| b.cumulative.get(i))
                .copied()
                .unwrap_or(0);
            c.saturating_sub(was)
        })
        .collect();
    let ms = |q| quantile(q, &now.bounds, &cumulative, count).map(|s| s * 1e3);
    (count, ms(0.5), ms(0.99))
}

fn figures(route: &RouteSnapshot, before: Option<&Histogram>, secs: f64) -> RouteFigures {
    let (count, p50_ms, p99_ms) = window_latency(&route.latency, before);
    RouteFigures {
        route: route.route.clone(),
        upstream: route.upstream.clone(),
        requests: route.codes.values().sum(),
        codes: route.codes.clone(),
        requests_per_s: count as f64 / secs,
        p50_ms,
        p99_ms,
        upstream_errors: route.upstream_errors,
    }
}

/// The `q` quantile of `count` observations in cumulative buckets with upper `bounds`,
/// interpolated within its bucket as Prometheus' `histogram_quantile` does; the highest
/// bound when it lies above it.
fn quantile(q: f64, bounds: &[f64], cumulative: &[u64], count: u64) -> Option<f64> {
    if count == 0 {
        return None;
    }
    let rank = q * count as f64;
    for (i, (&bound, &upto)) in bounds.iter().zip(cumulative).enumerate() {
        if (upto as f64) < rank {
            continue;
        }
        let (lower, below) = match i {
            0 => (0.0, 0),
            _ => (bounds[i - 1], cumulative[i - 1]),
        };
        let inside = upto.saturating_sub(below);
        if inside == 0 {
            return Some(bound);
        }
        return Some(lower + (bound - lower) * (rank - below as f64) / inside as f64);
    }
    bounds.last().copied()
}

impl RouteFigures {
    /// Requests answered with a status of `class` (`2xx`) since the process started.
    pub fn code(&self, class: &str) -> u64 {
        self.codes.get(class).copied().unwrap_or(0)
    }
}

/// An upstream's state in words: `unchecked`, `healthy`, `ejected until 12:00:01.000`.
pub fn state_label(u: &UpstreamSnapshot) -> String {
    match u.state {
        UpstreamState::Healthy => "healthy".into(),
        UpstreamState::Ejected { until_ms } => {
            format!("ejected until {}", crate::fmt::clock(&until_ms))
        }
        _ => "unchecked".into(),
    }
}

/// The HTTP services' figures now, for the page and `/api/http`.
pub(crate) fn http(state: &DashboardState) -> Vec<ServiceFigures> {
    let now = now_ms();
    let started = now - i64::try_from(state.started.elapsed().as_millis()).unwrap_or(0);
    state.http.figures(state.hub.views(), "http", now, started)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use weft_telemetry::views::ServiceView;

    use super::*;

    #[test]
    fn quantiles_interpolate_within_their_bucket() {
        let bounds = [0.01, 0.1, 1.0];
        // 90 under 10 ms, 10 between 100 ms and 1 s.
        let cumulative = [90, 90, 100];
        let p50 = quantile(0.5, &bounds, &cumulative, 100).unwrap();
        assert!((p50 - 0.01 * 50.0 / 90.0).abs() < 1e-9, "{p50}");
        let p99 = quantile(0.99, &bounds, &cumulative, 100).unwrap();
        assert!((p99 - (0.1 + 0.9 * 9.0 / 10.0)).abs() < 1e-9, "{p99}");
        assert_eq!(quantile(0.5, &bounds, &[0, 0, 0], 0), None);
        assert_eq!(
            quantile(0.99, &bounds, &[0, 0, 0], 3),
            Some(1.0),
            "all above the last bound"
        );
    }

    /// A view whose one route has `count` requests, all under 10 ms.
    struct Counted(Mutex<u64>);

    impl ServiceView for Counted {
        fn snapshot(&self) -> ServiceSnapshot {
            let n = *self.0.lock().unwrap();
            ServiceSnapshot {
                routes: vec![RouteSnapshot {
                    route: "/api/".into(),
                    codes: [("2xx", n)].into_iter().collect(),
                    latency: Histogram {
                        bounds: vec![0.01, 0.1],
                        cumulative: vec![n, n],
                        count: n,
                        sum_seconds: 0.0,
                    },
                    ..RouteSnapshot::default()
                }],
                ..ServiceSnapshot::default()
            }
        }
    }

    #[test]
    fn rates_and_percentiles_cover_the_window_only() {
        let views = ServiceViews::default();
        let view = Arc::new(Counted(Mutex::new(20)));
        views.set("web", "http", view.clone());
        views.set("dns", "dns", Arc::new(Counted(Mutex::new(0))));
        let history = ViewHistory::default();
        // The first reading counts from the dashboard's start, 10 s before.
        let first = history.figures(&views, "http", 10_000, 0);
        assert_eq!(first.len(), 1, "only the kind asked for");
        assert_eq!(first[0].routes[0].requests_per_s, 2.0);
        assert!(first[0].routes[0].p50_ms.is_some());
        // Nothing new in the next 10 s: no rate, no percentile; the totals stay.
        for at in (11_000..=20_000).step_by(1000) {
            history.figures(&views, "http", at, 0);
        }
        let idle = &history.figures(&views, "http", 20_500, 0)[0];
        assert_eq!(idle.routes[0].requests_per_s, 0.0);
        assert_eq!(idle.routes[0].p99_ms, None);
        assert_eq!(idle.routes[0].requests, 20);
        assert!((idle.window_s - 10.5).abs() < 1e-9, "{}", idle.window_s);
        *view.0.lock().unwrap() = 40;
        let busy = &history.figures(&views, "http", 21_000, 0)[0];
        assert_eq!(busy.routes[0].requests_per_s, 2.0);
        assert!(busy.routes[0].p99_ms.unwrap() <= 10.0);
        let kept = history.inner.lock().unwrap()["web"].len();
        assert!(kept <= history.keep(), "{kept}");
        // A service that no longer has a view goes with its readings.
        views.retain(|_, kind| kind == "dns");
        assert!(history.figures(&views, "http", 22_000, 0).is_empty());
        assert!(history.inner.lock().unwrap().is_empty());
    }
}

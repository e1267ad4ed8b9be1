//! [`ServiceViews`]: what a service shows of itself beyond its connections (an HTTP
//! service's routes and upstreams), as a [`ServiceSnapshot`] any thread can ask for.
//!
//! The program registers one [`ServiceView`] per service ([`ServiceViews::set`]); the
//! dashboard asks each for a snapshot when a page or the API is read. A view reads
//! figures the service's thread shares (atomics, a short mutex), so asking never waits
//! on the reactor and the reactor never waits on a reader. The types say nothing of a
//! protocol: a route is any labelled stream of requests with status classes and a latency
//! histogram, an upstream any peer the service forwards to; a service that answers many
//! small requests (a DNS service's queries) adds tallies by a field of them (type, code),
//! named counters, the latency of all its answers, the keys asked most and the last few
//! requests; and any service what it holds now against its limits (levels: an HTTP
//! service's request bodies in memory and in files).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde::Serialize;

/// A service's figures, asked for from any thread.
pub trait ServiceView: Send + Sync {
    /// The figures now; totals since the process started.
    fn snapshot(&self) -> ServiceSnapshot;
}

/// A service's routes and upstreams at one moment.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ServiceSnapshot {
    /// The ways its requests go, in its configuration's order.
    pub routes: Vec<RouteSnapshot>,
    /// The peers it forwards to.
    pub upstreams: Vec<UpstreamSnapshot>,
    /// Requests counted by a field of theirs (`qtype`, `rcode`), totals since start.
    pub tallies: Vec<Tally>,
    /// Named totals since start (`cache_hits`).
    pub counters: Vec<(&'static str, u64)>,
    /// What it holds now against its limits (bytes of request bodies read ahead).
    pub levels: Vec<Level>,
    /// Time to answer any request, when the service measures it as a whole.
    pub latency: Option<Histogram>,
    /// The keys asked most (names), with estimated counts, most first.
    pub top: Vec<TopKey>,
    /// Requests the top list and the recent list were taken from (sampled under load),
    /// and all requests seen.
    pub sampled: (u64, u64),
    /// The last requests answered, newest first.
    pub recent: Vec<RecentRequest>,
    /// The zones it serves (DNS), in configuration order.
    pub zones: Vec<ZoneSnapshot>,
}

/// A zone a service serves, as loaded.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ZoneSnapshot {
    /// Its origin (`example.test.`).
    pub zone: String,
    /// Its SOA serial.
    pub serial: u32,
    /// Its records.
    pub records: u64,
    /// Whether it is signed (holds RRSIGs).
    pub signed: bool,
    /// When its first signature expires, unix milliseconds (signed zones).
    pub signatures_expire_ms: Option<i64>,
    /// Where a secondary zone is transferred from (`192.0.2.1:53 xfr.example.`); empty
    /// for a zone read from a file.
    pub primaries: Vec<String>,
    /// Whether it is served: a secondary zone is not before its first transfer, nor
    /// once its copy expired (its serial and records are then 0).
    pub served: bool,
    /// A secondary zone's refresh: its last check with its primaries, when it is checked
    /// next, and when its copy expires; `None` for a zone from a file.
    pub refresh: Option<RefreshSnapshot>,
}

/// Where a secondary zone's refresh stands (as NSD's `zonestatus` and Knot's
/// `zone-status` say it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RefreshSnapshot {
    /// When its last check ended, unix milliseconds; `None` before the first.
    pub checked_ms: Option<i64>,
    /// What it found: `current`, `IXFR from 192.0.2.1:53: 4 records changed`, `AXFR
    /// from ...: 3,010 records`, `failed: why`, `expired`.
    pub outcome: Option<String>,
    /// Whether it failed (or the copy expired).
    pub failed: bool,
    /// When it is checked next, unix milliseconds (a NOTIFY may bring it sooner).
    pub next_check_ms: Option<i64>,
    /// When the copy held expires unless a primary confirms it first, unix milliseconds.
    pub expires_ms: Option<i64>,
}

/// Something a service holds now, and the most it may.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Level {
    /// What it is (`request_body_memory_bytes`).
    pub name: &'static str,
    /// How much is held now.
    pub held: u64,
    /// The most there may be.
    pub limit: u64,
}

/// Requests counted by the values of one of their fields.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Tally {
    /// The field (`qtype`).
    pub name: &'static str,
    /// Each value with its count, in the service's order.
    pub counts: Vec<(String, u64)>,
}

/// A key asked often, with its estimated count.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TopKey {
    /// The key (a name).
    pub key: String,
    /// How often it was asked, estimated.
    pub count: u64,
}

/// One request a service answered.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RecentRequest {
    /// When it was answered, unix milliseconds.
    pub at_ms: i64,
    /// Who asked.
    pub client: String,
    /// What it asked for (a name).
    pub name: String,
    /// Its kind (a query type).
    pub kind: String,
    /// The answer's status (a response code).
    pub status: String,
    /// From arrival to answer, milliseconds.
    pub latency_ms: f64,
    /// Where the answer came from (`zone`, `cache`, `upstream 127.0.0.1:53`).
    pub source: String,
}

/// One route's totals since the process started.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RouteSnapshot {
    /// Its label: a configured prefix, or a fixed name for requests no route took.
    pub route: String,
    /// Where it forwards to, if anywhere.
    pub upstream: Option<String>,
    /// Requests answered, by status class (`1xx` to `5xx`).
    pub codes: BTreeMap<&'static str, u64>,
    /// Time to the response head.
    pub latency: Histogram,
    /// Exchanges with its upstream that failed.
    pub upstream_errors: u64,
}

/// A cumulative histogram, as Prometheus keeps one.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Histogram {
    /// Upper bounds in seconds, ascending, without `+Inf`.
    pub bounds: Vec<f64>,
    /// Observations at or under each bound.
    pub cumulative: Vec<u64>,
    /// Every observation, those over the last bound included.
    pub count: u64,
    /// Their sum, in seconds.
    pub sum_seconds: f64,
}

/// Whether an upstream is taking requests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "state")]
#[non_exhaustive]
pub enum UpstreamState {
    /// The service does not check its upstreams' health.
    #[default]
    Unchecked,
    /// Taking requests.
    Healthy,
    /// Out of rotation after failures, until then.
    Ejected {
        /// Unix milliseconds.
        until_ms: i64,
    },
}

/// One upstream's figures; what the service does not track is `None`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct UpstreamSnapshot {
    /// How the configuration names it.
    pub name: String,
    /// The route it serves, when the service forwards by route (a route's upstreams
    /// are its own: the same URL under two routes is two upstreams).
    pub route: Option<String>,
    /// Where it is.
    pub url: String,
    /// Whether it takes requests.
    #[serde(flatten)]
    pub state: UpstreamState,
    /// Failures in a row, when health is tracked.
    pub consecutive_failures: Option<u64>,
    /// Idle pooled connections, when connections are pooled.
    pub idle: Option<u64>,
    /// Connections carrying a request now, when connections are pooled.
    pub busy: Option<u64>,
    /// Requests answered through it.
    pub requests: u64,
    /// Exchanges with it that failed.
    pub errors: u64,
    /// The last few failures, oldest first.
    pub recent_errors: Vec<RecentError>,
    /// Its answers' round-trip times, when the service times them.
    pub latency: Option<Histogram>,
    /// Requests to it that got no answer in time, when counted apart from errors.
    pub timeouts: Option<u64>,
}

/// One failure an upstream view keeps.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RecentError {
    /// When, unix milliseconds.
    pub at_ms: i64,
    /// What went wrong.
    pub message: String,
}

/// A registered view with the service's kind.
#[derive(Clone)]
struct Registered {
    kind: &'static str,
    view: Arc<dyn ServiceView>,
}

/// The views of the services running now, by service name. Cheap to clone; every clone
/// is the same registry.
#[derive(Clone, Default)]
pub struct ServiceViews {
    /// A std mutex: taken to set a view when a service starts and to copy the list out
    /// when one is read; views are asked outside it.
    inner: Arc<Mutex<BTreeMap<String, Registered>>>,
}

impl std::fmt::Debug for ServiceViews {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.lock().keys()).finish()
    }
}

/// What [`ServiceViews::saved`] took, for [`ServiceViews::restore`].
pub struct SavedViews(BTreeMap<String, Registered>);

impl ServiceViews {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Registered>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Shows `view` for the service `service` of kind `kind` (`http`), replacing what it
    /// showed before.
    pub fn set(&self, service: &str, kind: &'static str, view: Arc<dyn ServiceView>) {
        self.lock()
            .insert(service.to_owned(), Registered { kind, view });
    }

    /// Keeps the views of the services for which `keep(name, kind)` holds (after a
    /// reload: the services that run, of the kind they are now).
    pub fn retain(&self, mut keep: impl FnMut(&str, &str) -> bool) {
        self.lock().retain(|name, r| keep(name, r.kind));
    }

    /// The views as they are now, to [`restore`](Self::restore) if what changes them
    /// is rolled back.
    pub fn saved(&self) -> SavedViews {
        SavedViews(self.lock().clone())
    }

    /// Puts back the views [`saved`](Self::saved) took.
    pub fn restore(&self, saved: SavedViews) {
        *self.lock() = saved.0;
    }

    /// Each service of kind `kind` with its snapshot, by name.
    pub fn snapshots(&self, kind: &str) -> Vec<(String, ServiceSnapshot)> {
        let views: Vec<_> = self
            .lock()
            .iter()
            .filter(|(_, r)| r.kind == kind)
            .map(|(name, r)| (name.clone(), r.view.clone()))
            .collect();
        views
            .into_iter()
            .map(|(name, view)| (name, view.snapshot()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(u64);

    impl ServiceView for Fixed {
        fn snapshot(&self) -> ServiceSnapshot {
            ServiceSnapshot {
                routes: vec![RouteSnapshot {
                    route: "/".into(),
                    upstream_errors: self.0,
                    ..RouteSnapshot::default()
                }],
                ..ServiceSnapshot::default()
            }
        }
    }

    #[test]
    fn views_are_listed_by_kind_replaced_by_name_and_restored() {
        let views = ServiceViews::default();
        views.set("web", "http", Arc::new(Fixed(1)));
        views.set("dns", "dns", Arc::new(Fixed(2)));
        let saved = views.saved();
        views.set("web", "http", Arc::new(Fixed(3)));
        let http = views.snapshots("http");
        assert_eq!(http.len(), 1);
        assert_eq!(http[0].0, "web");
        assert_eq!(http[0].1.routes[0].upstream_errors, 3);
        views.restore(saved);
        assert_eq!(views.snapshots("http")[0].1.routes[0].upstream_errors, 1);
        views.retain(|name, kind| name == "web" && kind == "http");
        assert!(views.snapshots("dns").is_empty());
        assert_eq!(views.snapshots("http").len(), 1);
    }

    #[test]
    fn an_upstream_serializes_its_state_flat() {
        let u = UpstreamSnapshot {
            name: "a".into(),
            state: UpstreamState::Ejected { until_ms: 5 },
            ..UpstreamSnapshot::default()
        };
        let json = serde_json::to_value(&u).unwrap();
        assert_eq!(json["state"], "ejected");
        assert_eq!(json["until_ms"], 5);
        assert_eq!(json["idle"], serde_json::Value::Null);
    }
}

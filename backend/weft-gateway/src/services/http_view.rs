//! What the dashboard's HTTP view shows of an http service, as the service-neutral
//! [`ServiceSnapshot`] of `weft-telemetry`: its routes' figures, read from the service's
//! [`RouteFigures`], and every upstream of every route, read from its [`UpstreamsView`].
//! Both are shared with the reactor thread through atomics and short locks, so a reader
//! never waits on the service.
//!
//! An upstream belongs to its route: one URL under two routes shows twice, each with
//! its own health, pool and figures. Its state is `healthy` or `ejected` until a wall
//! clock time; its `errors` count failures of requests and health checks alike, as its
//! `requests` count both.
//!
//! With routes, the service's request bodies read ahead of their upstreams are its
//! levels (bytes in memory and in files against their totals) and its files' failures a
//! counter, from its [`BodiesView`]. Its requests refused are counters too, one for each
//! reason counted at least once (`refused_rate_limited`, ...), from the counters of its
//! `/metrics` series.

use weft_telemetry::live::unix_ms;
use weft_telemetry::views::{
    Histogram, Level, RecentError, RouteSnapshot, ServiceSnapshot, ServiceView, UpstreamSnapshot,
    UpstreamState,
};
use weft_web::metrics::StatusClass;
use weft_web::routes::RouteReading;
use weft_web::{BodiesView, HttpService, RouteFigures, UpstreamsView};

/// An http service's view: its routes and upstreams as it serves them.
pub(crate) struct HttpView {
    routes: RouteFigures,
    upstreams: UpstreamsView,
    bodies: Option<BodiesView>,
    refusals: weft_web::metrics::RefusalFigures,
}

impl HttpView {
    /// The view of `service`, valid for as long as the service runs.
    pub(crate) fn of(service: &HttpService) -> Self {
        Self {
            routes: service.routes(),
            upstreams: service.upstreams(),
            bodies: service.bodies(),
            refusals: service.refusals(),
        }
    }
}

impl ServiceView for HttpView {
    fn snapshot(&self) -> ServiceSnapshot {
        let routes = self
            .routes
            .0
            .iter()
            .map(|entry| {
                route(
                    entry.route.clone(),
                    entry.upstream.clone(),
                    entry.metrics.read(),
                )
            })
            .collect();
        let upstreams = self
            .upstreams
            .snapshot()
            .into_iter()
            .map(upstream)
            .collect();
        let mut snapshot = ServiceSnapshot {
            routes,
            upstreams,
            ..ServiceSnapshot::default()
        };
        if let Some(bodies) = &self.bodies {
            let now = bodies.snapshot();
            let level = |name, (held, limit)| Level { name, held, limit };
            snapshot
                .levels
                .push(level("request_body_memory_bytes", now.memory));
            if let Some((held, limit, errors)) = now.files {
                snapshot
                    .levels
                    .push(level("request_body_file_bytes", (held, limit)));
                snapshot.counters.push(("request_body_file_errors", errors));
            }
        }
        for (reason, n) in self.refusals.read() {
            snapshot.counters.push((reason.counter_name(), n));
        }
        snapshot
    }
}

fn upstream(u: weft_web::UpstreamSnapshot) -> UpstreamSnapshot {
    let count = |n: usize| Some(u64::try_from(n).unwrap_or(u64::MAX));
    UpstreamSnapshot {
        name: u.url.clone(),
        route: Some(u.route),
        url: u.url,
        state: match u.ejected_until {
            Some(until) => UpstreamState::Ejected {
                until_ms: unix_ms(until),
            },
            None => UpstreamState::Healthy,
        },
        consecutive_failures: Some(u64::from(u.consecutive_failures)),
        idle: count(u.idle_connections),
        busy: count(u.busy_connections),
        requests: u.requests,
        errors: u.failures,
        recent_errors: u
            .recent_errors
            .into_iter()
            .map(|e| RecentError {
                at_ms: unix_ms(e.at),
                message: e.message,
            })
            .collect(),
        latency: None,
        timeouts: None,
    }
}

fn route(name: String, upstream: Option<String>, read: RouteReading) -> RouteSnapshot {
    RouteSnapshot {
        route: name,
        upstream,
        codes: StatusClass::ALL
            .iter()
            .map(|c| (c.as_str(), read.requests[c.index()]))
            .collect(),
        latency: Histogram {
            bounds: read.latency.bounds,
            cumulative: read.latency.cumulative,
            count: read.latency.count,
            sum_seconds: read.latency.sum_seconds,
        },
        upstream_errors: read.upstream_errors,
    }
}

#[cfg(test)]
mod tests {
    use std::rc::Rc;
    use std::time::Duration;

    use weft_web::{HttpMetrics, Recorder, Route, WebConfig};

    use super::*;

    #[test]
    fn routes_are_read_from_their_series_and_each_route_lists_its_upstreams() {
        let registry = prometheus::Registry::new();
        let recorder: Rc<dyn Recorder> = Rc::new(HttpMetrics::register(&registry, "web").unwrap());
        let config = WebConfig {
            routes: vec![
                Route::new("/a/", "http://127.0.0.1:9000").unwrap(),
                Route::new("/b/", "http://127.0.0.1:9000").unwrap(),
                Route::new("/c/", "http://127.0.0.1:9001").unwrap(),
            ],
            ..WebConfig::default()
        };
        let service = HttpService::new("web", config, recorder.clone()).unwrap();
        let a = recorder.route("/a/");
        a.request(StatusClass::Success, Duration::from_millis(2), None);
        a.upstream_error("refused");
        let view = HttpView::of(&service).snapshot();
        let names: Vec<_> = view.routes.iter().map(|r| r.route.as_str()).collect();
        assert_eq!(names, ["/a/", "/b/", "/c/", "files", "unrouted"]);
        assert_eq!(view.routes[0].codes["2xx"], 1);
        assert_eq!(view.routes[0].latency.count, 1);
        assert_eq!(view.routes[0].upstream_errors, 1);
        let upstreams: Vec<_> = view
            .upstreams
            .iter()
            .map(|u| (u.route.as_deref(), u.url.as_str()))
            .collect();
        assert_eq!(
            upstreams,
            [
                (Some("/a/"), "http://127.0.0.1:9000"),
                (Some("/b/"), "http://127.0.0.1:9000"),
                (Some("/c/"), "http://127.0.0.1:9001"),
            ],
            "one URL under two routes is two upstreams"
        );
        let first = &view.upstreams[0];
        assert_eq!(first.state, UpstreamState::Healthy);
        assert_eq!(
            (first.consecutive_failures, first.idle, first.busy),
            (Some(0), Some(0), Some(0)),
            "health and pool are tracked"
        );
        assert_eq!((first.requests, first.errors), (0, 0));
        let levels: Vec<_> = view
            .levels
            .iter()
            .map(|l| (l.name, l.held, l.limit))
            .collect();
        assert_eq!(
            levels,
            [
                ("request_body_memory_bytes", 0, 64 << 20),
                ("request_body_file_bytes", 0, 256 << 20)
            ],
            "request bodies against their default totals"
        );
        assert_eq!(view.counters, [("request_body_file_errors", 0)]);
    }

    #[test]
    fn without_routes_no_request_body_is_held_and_none_is_shown() {
        let service =
            HttpService::new("web", WebConfig::default(), Rc::new(weft_web::NoRecorder)).unwrap();
        let view = HttpView::of(&service).snapshot();
        assert!(
            view.levels.is_empty() && view.counters.is_empty(),
            "{view:?}"
        );
    }
}

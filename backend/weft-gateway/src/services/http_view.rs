//! What the dashboard's HTTP view shows of an http service: its routes' figures and its
//! upstreams, read from the service's [`RouteFigures`] (atomics shared with the reactor
//! thread) as the service-neutral [`ServiceSnapshot`] of `weft-telemetry`.
//!
//! Each route forwards to one upstream, which has no health or pool of its own yet: an
//! upstream's figures are those of the routes that forward to it, its state
//! [`UpstreamState::Unchecked`] and its pool counts unknown.

use std::collections::BTreeMap;

use weft_telemetry::views::{
    Histogram, RecentError, RouteSnapshot, ServiceSnapshot, ServiceView, UpstreamSnapshot,
    UpstreamState,
};
use weft_web::RouteFigures;
use weft_web::metrics::StatusClass;
use weft_web::routes::RouteReading;

/// An http service's view: its routes as it serves them.
pub(crate) struct HttpView(pub(crate) RouteFigures);

impl ServiceView for HttpView {
    fn snapshot(&self) -> ServiceSnapshot {
        let mut routes = Vec::with_capacity(self.0.0.len());
        let mut upstreams: BTreeMap<&str, UpstreamSnapshot> = BTreeMap::new();
        for entry in self.0.0.iter() {
            let read = entry.metrics.read();
            if let Some(url) = &entry.upstream {
                add_to_upstream(
                    upstreams
                        .entry(url.as_str())
                        .or_insert_with(|| UpstreamSnapshot {
                            name: url.clone(),
                            url: url.clone(),
                            ..UpstreamSnapshot::default()
                        }),
                    &read,
                );
            }
            routes.push(route(entry.route.clone(), entry.upstream.clone(), read));
        }
        let mut upstreams: Vec<_> = upstreams.into_values().collect();
        for u in &mut upstreams {
            u.recent_errors.sort_by_key(|e| e.at_ms);
            let excess = u
                .recent_errors
                .len()
                .saturating_sub(weft_web::routes::RECENT_ERRORS);
            u.recent_errors.drain(..excess);
        }
        ServiceSnapshot { routes, upstreams }
    }
}

/// Adds a route's figures to the upstream it forwards to.
fn add_to_upstream(upstream: &mut UpstreamSnapshot, read: &RouteReading) {
    upstream.requests += read.requests.iter().sum::<u64>();
    upstream.errors += read.upstream_errors;
    upstream
        .recent_errors
        .extend(read.recent_errors.iter().map(|e| RecentError {
            at_ms: e.at_ms,
            message: e.message.clone(),
        }));
    upstream.state = UpstreamState::Unchecked;
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

    use weft_web::{HttpMetrics, HttpService, Recorder, Route, WebConfig};

    use super::*;

    #[test]
    fn routes_and_their_upstreams_are_read_from_the_series() {
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
        a.request(StatusClass::Success, Duration::from_millis(2));
        a.upstream_error("refused");
        recorder
            .route("/b/")
            .request(StatusClass::ServerError, Duration::from_millis(2));
        let view = HttpView(service.routes()).snapshot();
        let names: Vec<_> = view.routes.iter().map(|r| r.route.as_str()).collect();
        assert_eq!(names, ["/a/", "/b/", "/c/", "files", "unrouted"]);
        assert_eq!(view.routes[0].codes["2xx"], 1);
        assert_eq!(view.routes[0].latency.count, 1);
        assert_eq!(view.routes[0].upstream_errors, 1);
        assert_eq!(view.upstreams.len(), 2);
        let shared = &view.upstreams[0];
        assert_eq!(shared.url, "http://127.0.0.1:9000");
        assert_eq!((shared.requests, shared.errors), (2, 1));
        assert_eq!(shared.recent_errors[0].message, "refused");
        assert_eq!(shared.idle, None, "no pool yet");
    }
}

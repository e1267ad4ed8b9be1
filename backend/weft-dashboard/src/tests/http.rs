//! The HTTP page and `/api/http` over the views a program registers on the hub.

use std::sync::Arc;

use weft_telemetry::views::{
    Histogram, Level, RecentError, RouteSnapshot, ServiceSnapshot, ServiceView, UpstreamSnapshot,
    UpstreamState,
};

use super::*;

/// An HTTP service whose every name and message is markup.
struct Hostile;

impl ServiceView for Hostile {
    fn snapshot(&self) -> ServiceSnapshot {
        ServiceSnapshot {
            routes: vec![RouteSnapshot {
                route: format!("/{EVIL}/"),
                upstream: Some(format!("http://h/{EVIL}")),
                codes: [("2xx", 3), ("5xx", 1)].into_iter().collect(),
                latency: Histogram {
                    bounds: vec![0.01, 0.1],
                    cumulative: vec![3, 4],
                    count: 4,
                    sum_seconds: 0.1,
                },
                upstream_errors: 1,
            }],
            upstreams: vec![UpstreamSnapshot {
                name: format!("up {EVIL}"),
                url: format!("http://h/{EVIL}"),
                state: UpstreamState::Ejected { until_ms: 61_000 },
                idle: Some(2),
                errors: 1,
                recent_errors: vec![RecentError {
                    at_ms: 1000,
                    message: format!("refused {EVIL}"),
                }],
                ..UpstreamSnapshot::default()
            }],
            ..ServiceSnapshot::default()
        }
    }
}

fn with_views() -> DashboardState {
    let state = state();
    state
        .hub
        .views()
        .set(&format!("web {EVIL}"), "http", Arc::new(Hostile));
    state.hub.views().set("dns", "dns", Arc::new(Hostile));
    state
}

#[tokio::test]
async fn the_http_page_shows_each_service_with_everything_escaped() {
    let app = router(with_views());
    let a = get(app.clone(), "/http").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert!(a.kind.starts_with("text/html"));
    assert!(!a.body.contains("<script>"), "{}", a.body);
    assert_eq!(
        a.body.matches("alert(").count(),
        7,
        "the service (attribute and heading), route, upstream (of the route, its name and \
         url) and error, all shown as text: {}",
        a.body
    );
    assert!(
        a.body.contains(r#"href="/http" aria-current="page""#),
        "{}",
        a.body
    );
    assert_eq!(a.body.matches("<section").count(), 1, "HTTP services only");
    assert!(a.body.contains("ejected until 00:01:01.000"), "{}", a.body);
    assert!(a.body.contains("/static/app.js"));
    // The first look is measured from the dashboard's start, a moment ago here: the page
    // says the span its figures cover, not the window it will cover once watched.
    assert!(!a.body.contains("over the last 10 s;"), "{}", a.body);
    assert!(a.body.contains(" s; counts since start"), "{}", a.body);

    let empty = get(router(state()), "/http").await;
    assert!(
        empty.body.contains("No HTTP service runs."),
        "{}",
        empty.body
    );
    assert!(empty.body.contains("over the last 10 s;"), "{}", empty.body);
}

#[tokio::test]
async fn api_http_lists_routes_with_rates_percentiles_and_upstreams() {
    let a = get(router(with_views()), "/api/http").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let json = a.json();
    let services = json.as_array().unwrap();
    assert_eq!(services.len(), 1, "{json:#}");
    let web = &services[0];
    assert_eq!(web["service"], format!("web {EVIL}"));
    let route = &web["routes"][0];
    assert_eq!(route["requests"], 4);
    assert_eq!(route["codes"]["5xx"], 1);
    assert!(route["requests_per_s"].as_f64().unwrap() > 0.0);
    assert!(route["p50_ms"].as_f64().unwrap() <= 10.0, "{json:#}");
    let p99 = route["p99_ms"].as_f64().unwrap();
    assert!(p99 > 10.0 && p99 <= 100.0, "{json:#}");
    let upstream = &web["upstreams"][0];
    assert_eq!(upstream["state"], "ejected");
    assert_eq!(upstream["until_ms"], 61_000);
    assert_eq!(upstream["idle"], 2);
    assert_eq!(upstream["busy"], serde_json::Value::Null);
    assert_eq!(
        upstream["recent_errors"][0]["message"],
        format!("refused {EVIL}")
    );
}

/// An HTTP service holding request bodies: some in memory, its files nearly full, and
/// one file failed.
struct Holding;

impl ServiceView for Holding {
    fn snapshot(&self) -> ServiceSnapshot {
        let level = |name, held, limit| Level { name, held, limit };
        ServiceSnapshot {
            levels: vec![
                level("request_body_memory_bytes", 1536, 64 << 20),
                level("request_body_file_bytes", 250 << 20, 256 << 20),
            ],
            counters: vec![("request_body_file_errors", 1)],
            ..ServiceSnapshot::default()
        }
    }
}

#[tokio::test]
async fn the_http_view_shows_what_request_bodies_hold_against_their_limits() {
    let state = state();
    state.hub.views().set("web", "http", Arc::new(Holding));
    let app = router(state);
    let api = get(app.clone(), "/api/http").await;
    let json = api.json();
    let held = &json[0]["held"];
    assert_eq!(held[0]["name"], "request_body_memory_bytes");
    assert_eq!(held[0]["held"], 1536);
    assert_eq!(held[0]["limit"], 64 << 20);
    assert_eq!(held[1]["label"], "request bodies in files");
    assert_eq!(held[2]["name"], "request_body_file_errors");
    assert_eq!(held[2]["held"], 1);
    assert_eq!(held[2]["limit"], serde_json::Value::Null, "{json:#}");

    let page = get(app, "/http").await.body;
    assert!(
        page.contains(
            r#"<span data-held="request_body_memory_bytes">request bodies in memory <b>1.5 KiB of 64.0 MiB</b></span>"#
        ),
        "{page}"
    );
    assert!(
        page.contains(r#"<span class="bad" data-held="request_body_file_bytes">request bodies in files <b>250.0 MiB of 256.0 MiB</b></span>"#),
        "nine tenths full or more is flagged: {page}"
    );
    assert!(
        page.contains(r#"<span class="bad" data-held="request_body_file_errors">body files failed <b>1</b></span>"#),
        "{page}"
    );
}

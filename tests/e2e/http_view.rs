//! The dashboard's HTTP view end to end: per-route series on `/metrics` (clean under
//! promtool), `/api/http` after real requests on a proxy route and on the static files,
//! and the `/http` page with a hostile service name and route prefix, escaped, served and
//! kept live in headless Chromium.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;

use crate::assert_eventually;
use crate::chrome::Browser;
use crate::http::curl;
use crate::http_peers::{Upstream, web_service};
use crate::metrics::promtool_check;
use crate::support::{App, free_port, spawn_app_with};

/// A service name and a route prefix the page must show as text, never as markup. A
/// prefix is in a path's normal form (`<`, `>`, `"` and spaces come percent-encoded), so
/// its hostile characters are the quote and the ampersand, which break out of attributes.
const HOSTILE_SERVICE: &str = "web<script>alert(1)</script>";
const HOSTILE_PREFIX: &str = "/x'onmouseover=alert(2)&y=(1)/";

/// The gateway with an http service `web` (files, `/api/` to `up`, `/down/` to a closed
/// port) and a second one with a hostile name and prefix.
fn start(up: SocketAddr) -> (App, SocketAddr) {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let web: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let hostile_port = free_port();
    let app = spawn_app_with(|dir| {
        let root = dir.join("public");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(root.join("index.html"), "<h1>weft</h1>\n").unwrap();
        format!(
            r#"
[[service]]
name = "web"
kind = "http"
listen = "tcp:{port}:interface=127.0.0.1"
root = "{root}"
[[service.route]]
prefix = "/api/"
upstream = "http://{up}"
[[service.route]]
prefix = "/down/"
upstream = "http://{closed}"

[[service]]
name = {hostile_service:?}
kind = "http"
listen = "tcp:{hostile_port}:interface=127.0.0.1"
[[service.route]]
prefix = {hostile_prefix:?}
upstream = "http://{up}"
"#,
            port = web.port(),
            root = root.display(),
            hostile_service = HOSTILE_SERVICE,
            hostile_prefix = HOSTILE_PREFIX,
        )
    });
    (app, web)
}

fn api_http(app: &App) -> Value {
    let body = app.curl("/api/http").unwrap_or_default();
    serde_json::from_str(&body).unwrap_or(Value::Null)
}

/// The route `name` of service `service` in an `/api/http` answer.
fn route<'a>(json: &'a Value, service: &str, name: &str) -> Option<&'a Value> {
    json.as_array()?.iter().find(|s| s["service"] == service)?["routes"]
        .as_array()?
        .iter()
        .find(|r| r["route"] == name)
}

#[test]
fn requests_are_counted_per_route_on_metrics_and_in_the_http_view() {
    let up = Upstream::holding();
    let (app, web) = start(up.addr);

    // One proxied request held by the upstream for a while, so its latency is known to
    // be at least that.
    let held = std::thread::spawn(move || curl(web, &[], "/api/slow"));
    assert_eventually!(up.received() == 1, "the upstream got the request");
    std::thread::sleep(Duration::from_millis(150));
    up.release();
    assert_eq!(held.join().unwrap().0, 200);
    for _ in 0..3 {
        assert_eq!(curl(web, &[], "/api/items").0, 200);
    }
    assert_eq!(curl(web, &[], "/").0, 200);
    assert_eq!(curl(web, &[], "/missing").0, 404);
    assert_eq!(curl(web, &[], "/down/x").0, 502);
    // Refused before it was routed, though its path names a route.
    assert_eq!(curl(web, &["--path-as-is"], "/api/../../x").0, 400);

    let series = |route: &str, code: &str| {
        format!(r#"weft_http_route_requests_total{{code="{code}",route="{route}",service="web"}}"#)
    };
    assert_eventually!(
        app.metric(&series("/api/", "2xx")) == Some(4.0),
        "proxied requests counted under their route\n{}",
        app.curl("/metrics").unwrap_or_default()
    );
    assert_eq!(app.metric(&series("files", "2xx")), Some(1.0));
    assert_eq!(app.metric(&series("files", "4xx")), Some(1.0));
    assert_eq!(app.metric(&series("/down/", "5xx")), Some(1.0));
    assert_eq!(app.metric(&series("unrouted", "4xx")), Some(1.0));
    assert_eq!(app.metric(&series("/api/", "4xx")), Some(0.0));
    assert_eq!(app.metric(&series("/down/", "2xx")), Some(0.0), "at zero");
    assert_eq!(
        app.metric(
            r#"weft_http_route_request_duration_seconds_count{route="/api/",service="web"}"#
        ),
        Some(4.0)
    );
    assert_eq!(
        app.metric(r#"weft_http_route_upstream_errors_total{route="/down/",service="web"}"#),
        Some(1.0)
    );
    let report = promtool_check(&app.curl("/metrics").unwrap());
    assert!(report.trim().is_empty(), "promtool: {report}");

    let json = api_http(&app);
    let api = route(&json, "web", "/api/").unwrap_or_else(|| panic!("/api/ in {json:#}"));
    assert_eq!(api["upstream"], format!("http://{}", up.addr), "{json:#}");
    assert_eq!(api["requests"], 4, "{json:#}");
    assert_eq!(api["codes"]["2xx"], 4, "{json:#}");
    assert!(api["requests_per_s"].as_f64().unwrap() > 0.0, "{json:#}");
    let p99 = api["p99_ms"].as_f64().unwrap();
    let p50 = api["p50_ms"].as_f64().unwrap();
    assert!(p99 >= 100.0, "the held request is the slowest: {json:#}");
    assert!(p50 <= p99, "{json:#}");
    let files = route(&json, "web", "files").unwrap();
    assert_eq!(files["upstream"], Value::Null);
    assert_eq!(
        (
            files["codes"]["2xx"].as_u64(),
            files["codes"]["4xx"].as_u64()
        ),
        (Some(1), Some(1)),
        "{json:#}"
    );
    let down = route(&json, "web", "/down/").unwrap();
    assert_eq!(down["upstream_errors"], 1, "{json:#}");
    assert_eq!(down["codes"]["5xx"], 1, "{json:#}");

    // Each route's upstream, with its own failures.
    let service = json
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["service"] == "web")
        .unwrap();
    let upstreams = service["upstreams"].as_array().unwrap();
    assert_eq!(upstreams.len(), 2, "{json:#}");
    let closed = upstreams
        .iter()
        .find(|u| u["url"] != api["upstream"])
        .unwrap();
    assert_eq!(closed["errors"], 1, "{json:#}");
    let recent = closed["recent_errors"].as_array().unwrap();
    assert_eq!(recent.len(), 1, "{json:#}");
    assert!(
        recent[0]["message"]
            .as_str()
            .unwrap()
            .contains("refused the connection"),
        "{json:#}"
    );
    assert!(
        json.as_array()
            .unwrap()
            .iter()
            .all(|s| s["service"] != "echo"),
        "only HTTP services: {json:#}"
    );
    drop(app);
}

#[test]
fn the_http_page_lists_each_service_and_escapes_names_and_prefixes() {
    let up = Upstream::start();
    let (app, web) = start(up.addr);
    assert_eq!(curl(web, &[], "/api/x").0, 200);
    let page = app.curl("/http").expect("/http answers");
    assert!(page.contains("aria-current=\"page\""), "{page}");
    assert!(page.contains("/api/"), "{page}");
    assert!(page.contains("http://"), "the upstream is shown: {page}");
    assert!(!page.contains("<script>alert(1)"), "{page}");
    assert!(!page.contains("x'onmouseover"), "{page}");
    assert!(
        page.contains("web&#60;script&#62;alert(1)&#60;/script&#62;")
            || page.contains("web&lt;script&gt;alert(1)&lt;/script&gt;"),
        "the hostile name shows as text: {page}"
    );
    assert!(
        page.contains("/x&#39;onmouseover=alert(2)&#38;y=(1)/"),
        "the hostile prefix shows as text: {page}"
    );
    let json = api_http(&app);
    assert!(
        route(&json, HOSTILE_SERVICE, HOSTILE_PREFIX).is_some(),
        "{json:#}"
    );
    let index = app.curl("/").unwrap();
    assert!(index.contains("href=\"/http\""), "a link in the navigation");
    drop(app);
}

/// The upstreams of service `service` in an `/api/http` answer.
fn upstreams<'a>(json: &'a Value, service: &str) -> &'a [Value] {
    json.as_array()
        .and_then(|all| all.iter().find(|s| s["service"] == service))
        .and_then(|s| s["upstreams"].as_array())
        .map_or(&[], Vec::as_slice)
}

/// The gateway with service `web`, whose route `/api/` goes to a live upstream and to a
/// port nothing listens on (`max_fails = 1`, `eject_for = "10m"`).
fn live_and_dead() -> (Upstream, SocketAddr, SocketAddr, App) {
    let live = Upstream::start();
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (app, web) = web_service(&format!(
        "[[service.route]]\nprefix = \"/api/\"\n\
         upstreams = [\"http://{live}\", \"http://{dead}\"]\nmax_fails = 1\neject_for = \"10m\"\n",
        live = live.addr,
    ));
    (live, dead, web, app)
}

/// A route over two upstreams, the second a port nothing listens on: the view lists
/// both, the live one healthy with its connection back in the pool, the dead one
/// ejected after its one allowed failure.
#[test]
fn the_http_view_shows_every_upstream_of_a_route_with_its_health_and_pool() {
    let (live, dead, web, app) = live_and_dead();
    // In turn: the second request finds the dead one refusing, and is retried on the
    // live one; from then on the dead one is out of rotation.
    for i in 0..4 {
        let (code, body) = curl(web, &[], &format!("/api/{i}"));
        assert_eq!(code, 200, "{body}\n{}", app.log());
    }
    let (live_url, dead_url) = (format!("http://{}", live.addr), format!("http://{dead}"));
    let find = |json: &Value, url: &str| {
        upstreams(json, "web")
            .iter()
            .find(|u| u["url"] == url)
            .cloned()
            .unwrap_or(Value::Null)
    };
    assert_eventually!(
        find(&api_http(&app), &live_url)["idle"].as_u64() >= Some(1),
        "the live upstream's connection is back in its pool: {:#}",
        api_http(&app)
    );
    let json = api_http(&app);
    assert_eq!(upstreams(&json, "web").len(), 2, "both listed: {json:#}");
    let up = find(&json, &live_url);
    assert_eq!(up["route"], "/api/", "{json:#}");
    assert_eq!(up["state"], "healthy", "{json:#}");
    assert_eq!(up["until_ms"], Value::Null, "{json:#}");
    assert_eq!(up["consecutive_failures"], 0, "{json:#}");
    assert_eq!(up["busy"], 0, "{json:#}");
    assert_eq!(up["requests"], 4, "{json:#}");
    assert_eq!(up["errors"], 0, "{json:#}");

    let down = find(&json, &dead_url);
    assert_eq!(down["route"], "/api/", "{json:#}");
    assert_eq!(down["state"], "ejected", "{json:#}");
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let until = u128::from(down["until_ms"].as_u64().unwrap_or(0));
    assert!(
        until > now_ms + 500_000 && until <= now_ms + 600_000,
        "ejected for eject_for from the failure: {json:#}"
    );
    assert_eq!(down["consecutive_failures"], 1, "{json:#}");
    assert_eq!(down["idle"], 0, "{json:#}");
    assert_eq!(down["busy"], 0, "{json:#}");
    assert_eq!(down["errors"], 1, "{json:#}");
    let recent = down["recent_errors"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(recent.len(), 1, "{json:#}");
    assert!(
        recent[0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("refused the connection")),
        "{json:#}"
    );

    let page = app.curl("/http").expect("/http answers");
    assert!(page.contains("ejected until"), "{page}");
    assert!(page.contains("healthy"), "{page}");
}

/// A reload that leaves a route's upstreams as they were keeps their state: an upstream
/// ejected before it stays out for the rest of its `eject_for` (before, it was healthy
/// again at once and took clients' requests), and the counts go on. A route whose
/// upstream is new starts afresh.
#[test]
fn a_reload_keeps_an_unchanged_upstream_s_health_and_counts() {
    let (live, dead, web, app) = live_and_dead();
    for i in 0..4 {
        assert_eq!(curl(web, &[], &format!("/api/{i}")).0, 200, "{}", app.log());
    }
    let dead_url = format!("http://{dead}");
    let find = |url: &str| {
        upstreams(&api_http(&app), "web")
            .iter()
            .find(|u| u["url"] == url && u["route"] == "/api/")
            .cloned()
            .unwrap_or(Value::Null)
    };
    let before = find(&dead_url);
    assert_eq!(before["state"], "ejected", "{before:#}");
    // An unrelated route added: the service is made again from its new settings.
    app.edit_config(|text| {
        format!("{text}[[service.route]]\nprefix = \"/other/\"\nupstream = \"http://{dead}\"\n")
    });
    app.reload_by_signal("ok");
    assert_eventually!(
        upstreams(&api_http(&app), "web").len() == 3,
        "the new route listed: {:#}",
        api_http(&app)
    );
    let after = find(&dead_url);
    assert_eq!(after["state"], "ejected", "{after:#}");
    assert_eq!(after["until_ms"], before["until_ms"], "{after:#}");
    assert_eq!(after["errors"], 1, "{after:#}");
    // Every request goes to the live one, none is retried off the dead one.
    for i in 0..4 {
        assert_eq!(curl(web, &[], &format!("/api/after/{i}")).0, 200);
    }
    let after = find(&dead_url);
    assert_eq!(
        (after["state"].as_str(), after["errors"].as_u64()),
        (Some("ejected"), Some(1)),
        "{after:#}"
    );
    let live_url = format!("http://{}", live.addr);
    assert_eq!(find(&live_url)["requests"], 8);
    // The two generations' pools count in one state: once the old one has gone (its
    // connection with it), the new one's connection is the one idle.
    assert_eventually!(
        find(&live_url)["idle"] == 1 && find(&live_url)["busy"] == 0,
        "{:#}",
        find(&live_url)
    );
    // The new route's upstream (the same URL under another prefix) is its own.
    let other = upstreams(&api_http(&app), "web")
        .iter()
        .find(|u| u["route"] == "/other/")
        .cloned()
        .unwrap_or(Value::Null);
    assert_eq!(other["state"], "healthy", "{other:#}");
    assert_eq!(other["errors"], 0, "{other:#}");
}

/// A request in flight across a reload stays counted busy in its upstream's state, kept
/// by the new generation, and gives its connection back when it ends: busy 0, and the
/// old pool's idle connection gone with the old pool.
#[test]
fn a_request_in_flight_across_a_reload_is_busy_until_it_ends_then_counted_nowhere() {
    let up = Upstream::holding();
    let (app, web) = web_service(&format!(
        "[[service.route]]\nprefix = \"/api/\"\nupstream = \"http://{}\"\n",
        up.addr
    ));
    let url = format!("http://{}", up.addr);
    let pool = |app: &App| {
        upstreams(&api_http(app), "web")
            .iter()
            .find(|u| u["url"] == url.as_str() && u["route"] == "/api/")
            .map(|u| (u["busy"].as_u64(), u["idle"].as_u64()))
    };
    let held = std::thread::spawn(move || curl(web, &[], "/api/held").0);
    assert_eventually!(
        pool(&app) == Some((Some(1), Some(0))),
        "the request holds its connection busy: {:?}",
        pool(&app)
    );
    app.edit_config(|text| {
        format!("{text}[[service.route]]\nprefix = \"/other/\"\nupstream = \"{url}\"\n")
    });
    app.reload_by_signal("ok");
    assert_eq!(
        pool(&app),
        Some((Some(1), Some(0))),
        "still busy in the state the new generation kept"
    );
    up.release();
    assert_eq!(held.join().unwrap(), 200);
    assert_eventually!(
        pool(&app) == Some((Some(0), Some(0))),
        "busy given back, its connection gone with the old pool: {:?}",
        pool(&app)
    );
    assert_eq!(curl(web, &[], "/api/after").0, 200);
    assert_eventually!(
        pool(&app) == Some((Some(0), Some(1))),
        "the new pool's connection idle: {:?}",
        pool(&app)
    );
}

/// One browser session: the page goes live, follows a request without a reload, and
/// keeps the hostile name and prefix as text.
#[test]
fn the_http_page_follows_requests_live_in_a_browser() {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(http_page_in_a_browser());
}

async fn http_page_in_a_browser() {
    let up = Upstream::start();
    let (app, web) = start(up.addr);
    assert_eq!(curl(web, &[], "/api/first").0, 200);
    let b = Browser::start().await;
    b.open(app.dashboard, "/http").await;
    b.until(
        10,
        "the page's feed is live",
        "return document.getElementById('live-state').textContent === 'live'",
    )
    .await;
    b.eval("window.__marker = 'same page'; return true").await;
    let requests = "const row = [...document.querySelectorAll('section[data-service=\"web\"] table.routes tbody tr')]
             .find(r => r.cells[0].textContent === '/api/');
         return row ? row.cells[3].textContent : null";
    assert_eq!(b.eval(requests).await, serde_json::json!("1"));
    for _ in 0..2 {
        assert_eq!(curl(web, &[], "/api/more").0, 200);
    }
    b.until(
        10,
        "the /api/ route counts the new requests without a reload",
        &format!("return (() => {{ {requests} }})() === '3'"),
    )
    .await;
    b.screenshot("http").await;
    // Drawn by the page's script since the refresh, as the server drew it.
    let held = b
        .eval(
            "return [...document.querySelectorAll('section[data-service=\"web\"] p.held span')]
                 .map(s => s.textContent)",
        )
        .await;
    assert_eq!(
        held,
        serde_json::json!([
            "request bodies in memory 0 B of 64.0 MiB",
            "request bodies in files 0 B of 256.0 MiB",
            "body files failed 0"
        ]),
        "what request bodies hold, against their totals"
    );
    let headings = b
        .eval("return [...document.querySelectorAll('section.http-service h2')].map(h => h.textContent)")
        .await;
    assert!(
        headings
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h == HOSTILE_SERVICE),
        "{headings}"
    );
    assert_eq!(
        b.eval(
            "return [window.__marker, document.querySelectorAll('main script, main img').length]"
        )
        .await,
        serde_json::json!(["same page", 0]),
        "live, and markup in names never runs"
    );
    let errors = b.console_errors().await;
    assert!(errors.is_empty(), "console errors: {errors:?}");
    assert_eq!(
        b.eval("return window.__weft.errors").await,
        serde_json::json!([])
    );
}

/// The services of an `/api/http` answer, by name.
fn services(json: &Value) -> Vec<String> {
    json.as_array()
        .into_iter()
        .flatten()
        .map(|s| s["service"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[test]
fn the_http_view_follows_reloads_and_ignores_those_that_fail() {
    let up = Upstream::start();
    let (app, web) = start(up.addr);
    assert_eq!(curl(web, &[], "/api/a").0, 200);
    assert_eq!(services(&api_http(&app)), ["web", HOSTILE_SERVICE]);

    // A reload that fails on its second new service: the first one never shows.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let (first, second) = (free_port(), busy.local_addr().unwrap().port());
    app.edit_config(|text| {
        format!(
            "{text}\n[[service]]\nname = \"aaa\"\nkind = \"http\"\n\
             listen = \"tcp:{first}:interface=127.0.0.1\"\n\
             [[service.route]]\nprefix = \"/\"\nupstream = \"http://{up}\"\n\
             [[service]]\nname = \"bbb\"\nkind = \"http\"\n\
             listen = \"tcp:{second}:interface=127.0.0.1\"\n\
             [[service.route]]\nprefix = \"/\"\nupstream = \"http://{up}\"\n",
            up = up.addr
        )
    });
    app.reload_by_signal("failed");
    assert_eq!(services(&api_http(&app)), ["web", HOSTILE_SERVICE]);

    // The hostile service removed, and `web` given one more route: it counts on in the
    // same series.
    app.edit_config(|text| {
        let kept = &text[..text.find(&format!("name = {HOSTILE_SERVICE:?}")).unwrap()];
        let kept = kept.trim_end().strip_suffix("[[service]]").unwrap();
        format!(
            "{kept}\n[[service.route]]\nprefix = \"/v2/\"\nupstream = \"http://{}\"\n",
            up.addr
        )
    });
    app.reload_by_signal("ok");
    let json = api_http(&app);
    assert_eq!(services(&json), ["web"], "{json:#}");
    assert!(route(&json, "web", "/v2/").is_some(), "{json:#}");
    assert_eq!(curl(web, &[], "/api/b").0, 200);
    assert_eq!(curl(web, &[], "/v2/c").0, 200);
    let json = api_http(&app);
    assert_eq!(
        route(&json, "web", "/api/").unwrap()["requests"],
        2,
        "{json:#}"
    );
    assert_eq!(
        route(&json, "web", "/v2/").unwrap()["requests"],
        1,
        "{json:#}"
    );
}

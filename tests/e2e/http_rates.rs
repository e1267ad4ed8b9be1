//! `rate_limit` on the `http` kind, on the real binary with curl: a client over its
//! budget, the service's or its route's, is answered 429 with `Retry-After` and counted,
//! while another client keeps its own budget.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Instant;

use crate::http_peers::{RawClient, Upstream, web_service};
use crate::support::App;

/// The status of each of `paths`, asked in order over one connection from `source`.
fn statuses(web: SocketAddr, source: &str, paths: &[&str]) -> Vec<u16> {
    let mut curl = Command::new("curl");
    curl.args(["-s", "--max-time", "10", "--interface", source]);
    for path in paths {
        curl.args(["-o", "/dev/null", "-w", "%{http_code}\n"])
            .arg(format!("http://{web}{path}"));
    }
    let out = curl.output().expect("curl must be installed");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.parse().unwrap_or(0))
        .collect()
}

/// The head of one answer to `path` from `source`, lower-cased.
fn head(web: SocketAddr, source: &str, path: &str) -> String {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "10", "--interface", source, "-D", "-"])
        .args(["-o", "/dev/null"])
        .arg(format!("http://{web}{path}"))
        .output()
        .expect("curl must be installed");
    String::from_utf8_lossy(&out.stdout).to_ascii_lowercase()
}

fn start(upstream: SocketAddr) -> (App, SocketAddr) {
    web_service(&format!(
        r#"rate_limit = {{ requests_per_second = 1, burst = 5 }}
[[service.route]]
prefix = "/api/"
upstream = "http://{upstream}"
rate_limit = {{ requests_per_second = 1, burst = 2 }}
"#
    ))
}

#[test]
fn a_client_over_its_budget_gets_429_with_retry_after_and_another_client_keeps_its_own() {
    let upstream = Upstream::start();
    let (app, web) = start(upstream.addr);
    let refused = || {
        app.metric(r#"weft_http_requests_refused_total{reason="rate_limited",service="web"}"#)
            .unwrap_or(0.0)
    };
    assert_eq!(refused(), 0.0, "the series exists at zero");

    // One client: its burst of five, then 429s. A token comes back each second, so a
    // slow run may see one more 200 a second it took.
    let started = Instant::now();
    let a = statuses(web, "127.0.0.1", &["/f.txt"; 9]);
    let took = started.elapsed().as_secs() as usize;
    assert_eq!(a.len(), 9, "{a:?}");
    assert_eq!(a[..5], [200; 5], "the burst: {a:?}");
    let served = a.iter().filter(|&&s| s == 200).count();
    assert!(served <= 5 + took, "{a:?} in {took} s");
    assert!(a.iter().all(|&s| s == 200 || s == 429), "{a:?}");
    let limited_a = a.iter().filter(|&&s| s == 429).count();
    assert!(limited_a >= 1 || took >= 4, "{a:?}");

    // The answer says when to come back, in whole seconds (a token a second: 1).
    let answer = head(web, "127.0.0.1", "/f.txt");
    let limited_head = answer.starts_with("http/1.1 429");
    if limited_head {
        assert!(answer.contains("\r\nretry-after: 1\r\n"), "{answer}");
    }

    // Another client has a budget of its own: its file, then the route's own budget of
    // two, within the service's five.
    let b = statuses(
        web,
        "127.0.0.2",
        &["/f.txt", "/api/1", "/api/2", "/api/3", "/api/4"],
    );
    assert_eq!(b[..3], [200, 200, 200], "{b:?}");
    assert!(b[3..].contains(&429), "the route's burst is two: {b:?}");
    let limited_b = b.iter().filter(|&&s| s == 429).count();
    // Only what the budgets let through reached the upstream.
    assert_eq!(upstream.received(), 5 - limited_b - 1, "{b:?}");
    // What the route refused spent nothing of the service's budget: two of its five are
    // left for the files.
    let more = statuses(web, "127.0.0.2", &["/f.txt", "/f.txt"]);
    assert_eq!(
        more,
        [200, 200],
        "the route's refusals spent the service's budget"
    );

    let limited = limited_a + usize::from(limited_head) + limited_b;
    crate::assert_eventually!(refused() == limited as f64, "{}", app.log());
    // Counted under their route, and logged.
    let route_4xx = app
        .metric(r#"weft_http_route_requests_total{code="4xx",route="/api/",service="web"}"#)
        .unwrap_or(0.0);
    assert_eq!(route_4xx, limited_b as f64);
    crate::assert_eventually!(
        app.log().contains("\"GET /api/3 HTTP/1.1\" 429"),
        "{}",
        app.log()
    );
}

/// A reload that changes the service (not its `rate_limit`) hands the new service the
/// budgets it counted: a client that spent its burst does not get a fresh one from it.
#[test]
fn a_reload_leaves_a_client_s_spent_budget_spent() {
    let upstream = Upstream::start();
    let (app, web) = start(upstream.addr);
    let a = statuses(web, "127.0.0.1", &["/f.txt"; 6]);
    let spent = Instant::now();
    assert_eq!(a[..5], [200; 5], "{a:?}");

    app.edit_config(|text| text.replace("root = ", "cache_control = \"no-store\"\nroot = "));
    app.reload_by_signal("ok");
    assert!(
        app.log().contains("configuration reloaded"),
        "{}",
        app.log()
    );
    // A fresh burst would serve all three; a token comes back each second.
    let after = statuses(web, "127.0.0.1", &["/f.txt"; 3]);
    let refilled = spent.elapsed().as_secs() as usize;
    let served = after.iter().filter(|&&s| s == 200).count();
    assert!(
        served <= refilled,
        "{served} served {refilled} s after the burst was spent: {after:?}\n{}",
        app.log()
    );
    // The new service answers: its files carry the new setting.
    let answer = head(web, "127.0.0.2", "/f.txt");
    assert!(answer.contains("cache-control: no-store"), "{answer}");
}

/// A reload that adds a budget limits the keep-alive connection a client already holds,
/// not only its next ones, and a route's budget the reload adds counts there too.
#[test]
fn a_reload_that_adds_a_budget_limits_the_connection_a_client_holds() {
    let upstream = Upstream::start();
    let (app, web) = web_service(&format!(
        "[[service.route]]\nprefix = \"/api/\"\nupstream = \"http://{}\"\n",
        upstream.addr
    ));
    let file = b"GET /f.txt HTTP/1.1\r\nHost: web\r\n\r\n";
    let api = b"GET /api/x HTTP/1.1\r\nHost: web\r\n\r\n";
    let mut held = RawClient::connect_from([127, 0, 0, 2].into(), web);
    for _ in 0..4 {
        held.send(file);
        assert_eq!(held.read_reply().status, 200);
    }

    // The service gets a budget of three, and /api/ one of one (a token a second each).
    app.edit_config(|text| {
        text.replace(
            "[[service.route]]",
            "rate_limit = { requests_per_second = 1, burst = 3 }\n[[service.route]]",
        )
        .replace(
            "prefix = \"/api/\"",
            "prefix = \"/api/\"\nrate_limit = { requests_per_second = 1, burst = 1 }",
        )
    });
    app.reload_by_signal("ok");
    let started = Instant::now();
    held.send(api);
    assert_eq!(held.read_reply().status, 200, "the route's one request");
    held.send(api);
    let refused = held.read_reply();
    // Unless a token came back meanwhile (one a second), as a slow machine may see.
    if started.elapsed().as_millis() < 900 {
        assert_eq!(
            refused.status, 429,
            "the route's budget, on the held connection"
        );
    }
    held.send(file);
    assert_eq!(held.read_reply().status, 200, "the service's second");
    held.send(file);
    assert_eq!(held.read_reply().status, 200, "the service's third");
    held.send(file);
    let refused = held.read_reply();
    if started.elapsed().as_millis() < 900 {
        assert_eq!(
            refused.status,
            429,
            "on the connection held across the reload\n{}",
            app.log()
        );
        assert_eq!(refused.header("retry-after"), Some("1"));
    }
    // Another client, its own budget.
    let mut other = RawClient::connect_from([127, 0, 0, 3].into(), web);
    other.send(file);
    assert_eq!(other.read_reply().status, 200);
}

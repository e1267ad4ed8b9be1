//! The dashboard's DNS view end to end: `/api/dns` after real queries (dig and
//! hickory-proto messages over UDP) answered from a zone, the cache and an upstream;
//! `weft_dns_request_duration_seconds` on `/metrics` (clean under promtool); the `/dns`
//! page with a hostile query name, escaped; the query log in the SQLite file under its
//! budget with failures kept, shown again after a restart, and kept when the gateway
//! stops right after answering; and a stuck upstream named by
//! the pending chain's step in `/api/deferreds`.

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RecordType};
use serde_json::Value;

use crate::assert_eventually;
use crate::dns::{dig, upstream};
use crate::metrics::promtool_check;
use crate::support::{
    App, DnsService, dns_service, free_port, query, spawn_app_stored, spawn_dns_app,
};

const ZONE: &str = "$ORIGIN example.test.
$TTL 1h
@       IN SOA ns1 hostmaster ( 1 2h 15m 2w 5m )
        IN NS  ns1
ns1     IN A   192.0.2.53
www     IN A   192.0.2.10
mail    IN MX  10 www
";

/// A query name a peer controls, with markup and quotes in its first label.
const HOSTILE: &[u8] = b"<script>alert(\"x\")</script>'q";

/// A dns service named `name` on `port` (UDP and TCP) serving [`ZONE`].
fn served(name: &str, port: u16) -> DnsService {
    dns_service(name, port)
        .tcp()
        .zone("example.test.zone", ZONE)
}

/// Sends a query for `name` (its labels) of `qtype` over UDP from `socket`, and waits
/// for the answer when `wait`.
fn ask(socket: &UdpSocket, port: u16, labels: &[&[u8]], qtype: RecordType, wait: bool) {
    let name = Name::from_labels(labels.iter().copied()).unwrap();
    let mut m = Message::new(fastrand_id(), MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.queries.push(Query::query(name, qtype));
    socket
        .send_to(&m.to_vec().unwrap(), ("127.0.0.1", port))
        .unwrap();
    if wait {
        socket
            .set_read_timeout(Some(Duration::from_secs(3)))
            .unwrap();
        let mut buf = [0; 4096];
        let (n, _) = socket.recv_from(&mut buf).expect("an answer");
        Message::from_vec(&buf[..n]).expect("a DNS answer");
    }
}

/// Asks `n` times, one after another, for a name outside the zone: with no upstream, a
/// REFUSED each, a failure the query log always keeps.
fn ask_outside_the_zone(socket: &UdpSocket, port: u16, n: usize) {
    for _ in 0..n {
        ask(
            socket,
            port,
            &[b"x", b"elsewhere", b"test"],
            RecordType::A,
            true,
        );
    }
}

fn fastrand_id() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

fn api_dns(app: &App) -> Value {
    let body = app.curl("/api/dns").unwrap_or_default();
    serde_json::from_str(&body).unwrap_or(Value::Null)
}

/// Service `name` of an `/api/dns` answer.
fn service(json: &Value, name: &str) -> Value {
    json.as_array()
        .and_then(|all| all.iter().find(|s| s["service"] == name))
        .cloned()
        .unwrap_or(Value::Null)
}

/// The count of `name` in the list `list` (`qtypes`, `rcodes`) of service `s`.
fn total(s: &Value, list: &str, name: &str) -> u64 {
    s[list]
        .as_array()
        .and_then(|l| l.iter().find(|r| r["name"] == name))
        .and_then(|r| r["total"].as_u64())
        .unwrap_or(0)
}

#[test]
fn the_dns_view_shows_types_codes_cache_upstreams_top_names_and_recent_queries() {
    let (up, _) = upstream();
    let port = free_port();
    let app = spawn_dns_app(served("dns", port).forward(up).timeout("1s"));
    for _ in 0..3 {
        assert!(dig(port, &["www.example.test", "A"]).contains("192.0.2.10"));
    }
    assert!(dig(port, &["nope.example.test", "A"]).contains("status: NXDOMAIN"));
    assert!(dig(port, &["example.test", "MX", "+tcp"]).contains("status: NOERROR"));
    // Forwarded: the first from the upstream, the second from the cache.
    assert!(dig(port, &["api.elsewhere.test", "A"]).contains("198.51.100.80"));
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    ask(
        &client,
        port,
        &[b"API", b"elsewhere", b"test"],
        RecordType::A,
        true,
    );

    let json = api_dns(&app);
    let s = service(&json, "dns");
    assert_eq!(s["queries"], 7, "{json:#}");
    assert_eq!(total(&s, "qtypes", "A"), 6, "{json:#}");
    assert_eq!(total(&s, "qtypes", "MX"), 1, "{json:#}");
    assert_eq!(total(&s, "rcodes", "NOERROR"), 6, "{json:#}");
    assert_eq!(total(&s, "rcodes", "NXDOMAIN"), 1, "{json:#}");
    assert!(s["queries_per_s"].as_f64().unwrap() > 0.0, "{json:#}");
    assert!(
        s["qtypes"][0]["per_s"].as_f64().unwrap() > 0.0,
        "rates over the window: {json:#}"
    );
    assert_eq!(
        (s["cache"]["hits"].as_u64(), s["cache"]["misses"].as_u64()),
        (Some(1), Some(1)),
        "{json:#}"
    );
    assert_eq!(s["cache"]["hit_ratio"], 0.5, "{json:#}");
    assert!(s["p50_ms"].as_f64().is_some(), "{json:#}");
    let upstreams = s["upstreams"].as_array().unwrap();
    assert_eq!(upstreams.len(), 1, "{json:#}");
    assert_eq!(upstreams[0]["name"], up.to_string(), "{json:#}");
    assert_eq!(upstreams[0]["answers"], 1, "{json:#}");
    assert_eq!(upstreams[0]["timeouts"], 0, "{json:#}");
    assert!(upstreams[0]["p99_ms"].as_f64().is_some(), "{json:#}");
    assert_eq!(
        s["top_names"][0],
        serde_json::json!({"key": "www.example.test.", "count": 3}),
        "{json:#}"
    );
    assert_eq!(
        s["top_names"][1],
        serde_json::json!({"key": "api.elsewhere.test.", "count": 2}),
        "names counted case-insensitively: {json:#}"
    );
    let recent = s["recent"].as_array().unwrap();
    assert_eq!(recent.len(), 7, "{json:#}");
    let newest = &recent[0];
    assert_eq!(newest["name"], "API.elsewhere.test.", "{json:#}");
    assert_eq!(newest["source"], "cache", "{json:#}");
    assert_eq!(
        newest["client"],
        client.local_addr().unwrap().to_string(),
        "{json:#}"
    );
    assert_eq!(
        (&newest["qtype"], &newest["rcode"]),
        (&"A".into(), &"NOERROR".into())
    );
    assert_eq!(recent[1]["source"], format!("upstream {up}"), "{json:#}");
    assert_eq!(recent[2]["qtype"], "MX", "{json:#}");
    assert_eq!(recent[3]["rcode"], "NXDOMAIN", "{json:#}");
    assert!(
        recent.iter().skip(2).all(|q| q["source"] == "zone"),
        "{json:#}"
    );
    assert!(recent.iter().all(|q| q["latency_ms"].as_f64().is_some()));

    assert_eq!(
        app.metric(r#"weft_dns_request_duration_seconds_count{service="dns"}"#),
        Some(7.0),
        "every answer timed, whatever its source"
    );
    let report = promtool_check(&app.curl("/metrics").unwrap());
    assert!(report.trim().is_empty(), "promtool: {report}");
    assert!(
        app.curl("/").unwrap().contains("href=\"/dns\""),
        "a link in the navigation"
    );
}

#[test]
fn the_dns_page_shows_a_hostile_query_name_as_text() {
    let port = free_port();
    let app = spawn_dns_app(served("dns", port));
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    ask(
        &client,
        port,
        &[HOSTILE, b"example", b"test"],
        RecordType::A,
        true,
    );
    let json = api_dns(&app);
    let name = service(&json, "dns")["recent"][0]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    // A type without a mnemonic is shown as dig and zone files write it (RFC 3597).
    ask(
        &client,
        port,
        &[b"www", b"example", b"test"],
        RecordType::Unknown(65_535),
        true,
    );
    assert_eq!(
        service(&api_dns(&app), "dns")["recent"][0]["qtype"],
        "TYPE65535"
    );
    assert!(
        name.contains("<script>") || name.contains("\\<script\\>"),
        "{json:#}"
    );
    let page = app.curl("/dns").expect("/dns answers");
    assert!(page.contains("aria-current=\"page\""), "{page}");
    assert!(!page.contains("<script>alert"), "{page}");
    assert!(!page.contains("script\\>"), "{page}");
    let escaped = |s: &str| {
        s.replace('&', "&#38;")
            .replace('<', "&#60;")
            .replace('>', "&#62;")
            .replace('"', "&#34;")
            .replace('\'', "&#39;")
    };
    let named = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
            .replace('\'', "&#x27;")
    };
    assert!(
        page.contains(&escaped(&name)) || page.contains(&named(&name)),
        "the name shows as text: {name}\n{page}"
    );
}

#[test]
fn the_query_log_lands_in_history_under_its_budget_with_failures_kept() {
    let port = free_port();
    let mut app = spawn_app_stored("queries_per_second = 2", |dir| {
        served("auth", port).toml(dir)
    });
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    // No upstream: names outside the zone are REFUSED, a failure the log always keeps.
    for _ in 0..30 {
        ask(
            &client,
            port,
            &[b"www", b"example", b"test"],
            RecordType::A,
            true,
        );
    }
    ask_outside_the_zone(&client, port, 10);
    let rows = || {
        query(&app.db, async |c| {
            sqlx::query_as::<_, (String, String, String, bool, i64, String, String)>(
                "SELECT name, qtype, rcode, failed, weight, source, client FROM queries \
                 WHERE service = 'auth' ORDER BY id",
            )
            .fetch_all(c)
            .await
            .unwrap()
        })
    };
    assert_eventually!(
        rows().iter().filter(|r| r.3).count() == 10,
        "every failure is written: {:?}",
        rows()
    );
    let all = rows();
    let failures: Vec<_> = all.iter().filter(|r| r.3).collect();
    assert!(
        failures
            .iter()
            .all(|r| r.0 == "x.elsewhere.test." && r.2 == "REFUSED" && r.5 == "refused"),
        "{failures:?}"
    );
    assert!(
        failures
            .iter()
            .all(|r| r.6 == client.local_addr().unwrap().to_string())
    );
    let routine: Vec<_> = all.iter().filter(|r| !r.3).collect();
    assert!(
        routine.len() < 30 && !routine.is_empty(),
        "routine answers past 2 a second are sampled: {routine:?}"
    );
    assert!(
        routine
            .iter()
            .all(|r| r.0 == "www.example.test." && r.1 == "A" && r.2 == "NOERROR" && r.5 == "zone")
    );
    let skipped = app
        .metric(r#"weft_dns_query_log_skipped_total{service="auth"}"#)
        .unwrap_or(0.0) as usize;
    let sampled = routine.iter().filter(|r| r.4 > 1).count();
    assert_eq!(
        skipped + routine.len(),
        30,
        "each routine answer is written or counted: {routine:?}"
    );
    assert!(sampled <= 1, "{routine:?}");

    // After a restart, the page's recent queries come from the log.
    app.signal_and_wait("TERM");
    app.restart();
    let json = api_dns(&app);
    let recent = service(&json, "auth")["recent"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(recent.len(), all.len(), "{json:#}");
    assert!(
        recent
            .iter()
            .all(|q| q["from_history"] == true && q["client"] != ""),
        "{json:#}"
    );
    assert_eq!(recent[0]["rcode"], "REFUSED", "newest first: {json:#}");
    let page = app.curl("/dns").unwrap();
    assert!(page.contains("x.elsewhere.test."), "{page}");
}

#[test]
fn queries_answered_just_before_a_shutdown_still_reach_history() {
    let port = free_port();
    let mut app = spawn_app_stored("", |dir| served("auth", port).toml(dir));
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    // Failures, which the log always keeps; the last answered right before the signal.
    ask_outside_the_zone(&client, port, 5);
    app.signal_and_wait("TERM");
    let kept = query(&app.db, async |c| {
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM queries WHERE service = 'auth'")
            .fetch_one(c)
            .await
            .unwrap()
    });
    assert_eq!(
        kept, 5,
        "every answered query is in the history file after shutdown"
    );
}

#[test]
fn a_stuck_forward_is_a_pending_chain_whose_step_names_its_upstream() {
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let silent_addr: SocketAddr = silent.local_addr().unwrap();
    let port = free_port();
    let app = spawn_dns_app(
        dns_service("resolver", port)
            .tcp()
            .forward(silent_addr)
            .timeout("3s"),
    );
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    ask(
        &client,
        port,
        &[b"stuck", b"elsewhere", b"test"],
        RecordType::A,
        false,
    );
    let pending = || {
        let body = app.curl("/api/deferreds?state=pending").unwrap_or_default();
        let json: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        json["items"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|d| d["label"] == "dns upstream query")
            .cloned()
            .unwrap_or(Value::Null)
    };
    assert_eventually!(
        pending()["step_detail"] == silent_addr.to_string(),
        "the pending chain names the upstream it waits on: {:#}",
        pending()
    );
    let chain = pending();
    assert_eq!(chain["step_name"], "upstream", "{chain:#}");
    let id = chain["id"].as_u64().unwrap();
    let detail: Value =
        serde_json::from_str(&app.curl(&format!("/api/deferreds/{id}")).unwrap()).unwrap();
    let names: Vec<_> = detail["named_steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["cache lookup", "upstream"], "{detail:#}");

    // At the timeout: SERVFAIL, from `timeout`, counted against the upstream.
    assert_eventually!(
        service(&api_dns(&app), "resolver")["upstreams"][0]["timeouts"] == 1,
        "the timeout counted against its upstream: {:#}",
        api_dns(&app)
    );
    let s = service(&api_dns(&app), "resolver");
    assert_eq!(s["recent"][0]["source"], "timeout", "{s:#}");
    assert_eq!(s["recent"][0]["rcode"], "SERVFAIL", "{s:#}");
    drop(silent);
}

#[test]
fn a_query_log_budget_that_is_not_a_count_is_refused_by_check_and_run() {
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "[dashboard]\nlisten = \"tcp:{}:interface=127.0.0.1\"\n[store]\npath = \"{}\"\nqueries_per_second = -1\n",
        free_port(),
        dir.path().join("history.db").display()
    );
    crate::check::both_refuse(dir.path(), &config, &["store.queries_per_second"]);
}

/// One browser session: the page goes live, follows new queries without a reload, and
/// keeps a hostile query name as text.
#[test]
fn the_dns_page_follows_queries_live_in_a_browser() {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(dns_page_in_a_browser());
}

async fn dns_page_in_a_browser() {
    let port = free_port();
    let app = spawn_dns_app(served("dns", port));
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    ask(
        &client,
        port,
        &[b"www", b"example", b"test"],
        RecordType::A,
        true,
    );
    let b = crate::chrome::Browser::start().await;
    b.open(app.dashboard, "/dns").await;
    b.until(
        10,
        "the page's feed is live",
        "return document.getElementById('live-state').textContent === 'live'",
    )
    .await;
    b.eval("window.__marker = 'same page'; return true").await;
    let queries = "const s = document.querySelector('section[data-service=\"dns\"] .queries');
         return s ? s.textContent : null";
    assert_eq!(b.eval(queries).await, serde_json::json!("1"));
    ask(
        &client,
        port,
        &[HOSTILE, b"example", b"test"],
        RecordType::A,
        true,
    );
    ask(
        &client,
        port,
        &[b"www", b"example", b"test"],
        RecordType::A,
        true,
    );
    b.until(
        10,
        "the new queries show without a reload",
        &format!("return (() => {{ {queries} }})() === '3'"),
    )
    .await;
    b.screenshot("dns").await;
    let names = b
        .eval("return [...document.querySelectorAll('section.dns-service table.recent tbody tr')].map(r => r.cells[2].textContent)")
        .await;
    assert!(
        names.as_array().unwrap().iter().any(|n| n
            .as_str()
            .is_some_and(|n| n.contains("script") && n.contains('<'))),
        "the hostile name shows as text: {names}"
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

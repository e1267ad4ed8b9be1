//! What a flood costs a DNS service, against the real binary: many names forwarded fill
//! the cache only up to `cache_bytes` (the oldest evicted and counted), and bad queries
//! do not flood the query log in history (failures have a budget of their own, the rest
//! counted).

use std::net::UdpSocket;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::assert_eventually;
use crate::dns::{dig, plain, upstream};
use crate::support::{App, dns_service, free_port, query, spawn_app_stored, spawn_dns_app};

const ZONE: &str = "$ORIGIN example.test.
$TTL 1h
@       IN SOA ns1 hostmaster ( 1 2h 15m 2w 5m )
        IN NS  ns1
ns1     IN A   192.0.2.53
www     IN A   192.0.2.10
";

/// Sends `count` queries for `name` from one socket at once, reading the answers as they
/// come (a reader behind would lose them to its socket's buffer); how many were answered,
/// and how long from the first query to the last answer.
fn flood(port: u16, name: &str, count: u16) -> (usize, Duration) {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let reader = socket.try_clone().unwrap();
    let start = Instant::now();
    let answers = std::thread::spawn(move || {
        let mut buf = [0; 1024];
        let (mut answered, mut last) = (0, start);
        while reader.recv_from(&mut buf).is_ok() {
            answered += 1;
            last = Instant::now();
        }
        (answered, last - start)
    });
    for id in 0..count {
        socket
            .send_to(&plain(id, name), ("127.0.0.1", port))
            .unwrap();
    }
    answers.join().unwrap()
}

/// The rows of the query log: (failed, weight).
fn logged(app: &App) -> Vec<(bool, i64)> {
    query(&app.db, async |c| {
        sqlx::query_as::<_, (bool, i64)>("SELECT failed, weight FROM queries ORDER BY id")
            .fetch_all(c)
            .await
            .unwrap()
    })
}

#[test]
fn a_flood_of_refused_queries_is_logged_under_its_own_budget_and_the_rest_counted() {
    let port = free_port();
    let app = spawn_app_stored("queries_per_second = 5", |dir| {
        dns_service("dns", port)
            .zone("example.test.zone", ZONE)
            .toml(dir)
    });
    // Outside the zone and nothing to forward to: REFUSED, a failure.
    let (answered, took) = flood(port, "x.elsewhere.test.", 2000);
    assert!(answered >= 250, "{answered} of 2000 answered");
    let skipped = || {
        app.metric(r#"weft_dns_query_log_failures_skipped_total{service="dns"}"#)
            .unwrap_or(0.0) as usize
    };
    // The server's own count of its REFUSED answers: under load some of them never reach
    // the client (UDP), so `answered` is only a floor.
    let refused = || {
        app.metric(r#"weft_dns_responses_total{rcode="REFUSED",service="dns"}"#)
            .unwrap_or(0.0) as usize
    };
    assert_eventually!(
        refused() >= answered && logged(&app).len() + skipped() == refused(),
        "each failure is logged or counted: {} rows, {} skipped, {} refused, {answered} answered",
        logged(&app).len(),
        skipped(),
        refused()
    );
    let rows = logged(&app);
    assert!(rows.iter().all(|(failed, _)| *failed));
    // 100 a second within the budget (in every second the flood touched), then one in
    // 100 with its weight.
    let seconds = usize::try_from(took.as_secs()).unwrap() + 2;
    assert!(
        rows.len() <= seconds * 100 + answered / 100 + 1,
        "a flood of failures flooded history: {} rows for {answered} answers in {took:?}",
        rows.len()
    );
    let weighed: i64 = rows.iter().map(|(_, w)| w).sum();
    let weighed = usize::try_from(weighed).unwrap();
    let refused = refused();
    assert!(
        weighed.abs_diff(refused) <= 100,
        "the sampled rows stand for the rest: {weighed} for {refused}"
    );
}

#[test]
fn the_forwarding_cache_holds_at_most_cache_bytes_evicting_the_oldest_and_counting() {
    let port = free_port();
    let (upstream, asked) = upstream();
    let app = spawn_dns_app(
        dns_service("fwd", port)
            .forward(upstream)
            .key("cache_bytes", "2000"),
    );
    for i in 0..20 {
        let name = format!("n{i}.example");
        assert_eq!(dig(port, &[&name, "A", "+short"]).trim(), "198.51.100.80");
    }
    assert_eq!(asked.load(Ordering::SeqCst), 20);
    let metric = |series: &str| app.metric(series).unwrap_or(-1.0);
    let held = metric(r#"weft_dns_cache_bytes{service="fwd"}"#);
    assert!(
        held > 0.0 && held <= 2000.0,
        "the cache holds {held} bytes\n{}",
        app.curl("/metrics").unwrap_or_default()
    );
    let evicted = metric(r#"weft_dns_cache_evictions_total{service="fwd"}"#);
    assert!(evicted >= 10.0, "{evicted} evictions");
    // The newest answer is still kept; the oldest went first.
    assert_eq!(
        dig(port, &["n19.example", "A", "+short"]).trim(),
        "198.51.100.80"
    );
    assert_eq!(asked.load(Ordering::SeqCst), 20, "n19 came from the cache");
    assert_eq!(
        dig(port, &["n0.example", "A", "+short"]).trim(),
        "198.51.100.80"
    );
    assert_eq!(asked.load(Ordering::SeqCst), 21, "n0 was evicted");
}

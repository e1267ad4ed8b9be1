//! The dashboard in real headless Chromium: live connections, the close action, a stalled
//! Deferred and a slow async task followed from the banner to where they were created, text
//! from peers kept inert, no console errors, a screenshot of each page, and event-to-DOM
//! latency and render rate.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::Value;

use crate::chrome::{Browser, artifacts};
use crate::support::{echo_once, free_port, spawn_app};

/// Runs `test`, which drives Chromium, on a runtime of its own, one browser at a time:
/// the dashboard test measures event-to-DOM latency and render rate, which a second
/// browser on the same two cores would disturb.
fn in_browser(test: impl std::future::Future<Output = ()>) {
    static ONE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = ONE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(test);
}

/// The `stalled` example of weft-gateway, built once.
fn stalled_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| crate::deadlock::example_bin("stalled"))
}

/// The example running with a one-second stall threshold.
struct Stalled {
    child: Child,
    service: SocketAddr,
    dashboard: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Stalled {
    fn spawn() -> Stalled {
        let dir = tempfile::tempdir().unwrap();
        let (service, dashboard) = (free_port(), free_port());
        let child = Command::new(stalled_bin())
            .arg(service.to_string())
            .arg(dashboard.to_string())
            .arg(dir.path().join("history.db"))
            .arg("1000")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let s = Stalled {
            child,
            service: ([127, 0, 0, 1], service).into(),
            dashboard: ([127, 0, 0, 1], dashboard).into(),
            _dir: dir,
        };
        crate::assert_eventually!(
            TcpStream::connect(s.dashboard).is_ok(),
            "the example serves its dashboard"
        );
        s
    }
}

impl Drop for Stalled {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

fn numbers(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_f64)
        .collect()
}

/// One test: the browser session is the expensive part.
#[test]
fn the_dashboard_in_a_real_browser() {
    in_browser(dashboard_in_a_real_browser());
}

async fn dashboard_in_a_real_browser() {
    let app = spawn_app();
    let b = Browser::start().await;
    let live = "return document.getElementById('live-state').textContent === 'live'";

    // Overview: live, then a connection shows up in the figures.
    b.open(app.dashboard, "/").await;
    b.until(10, "the overview's feed is live", live).await;
    // The process's own card: its connections against the cap, live, and its memory drawn.
    let held = "const c = document.querySelector('#process dd[data-k=\"connections\"]');
                return c ? Number(c.textContent.split(' ')[0]) : -1";
    b.until(
        10,
        "the process card shows its memory and connections",
        "return !!document.querySelector('#process svg[data-k=\"memory\"] polyline')
           && !!document.querySelector('#process dd[data-k=\"connections\"]')",
    )
    .await;
    let before = b.eval(held).await.as_i64().unwrap();
    let conn = echo_once(app.echo);
    // The echo service's UDP port is one of its open connections too: two with the TCP
    // one (a card still showing the UDP port alone, before the figures moved, is not it).
    b.until(
        10,
        "the echo card counts the open connection",
        "const c = document.querySelector('article[data-service=\"echo\"] dd[data-k=\"active\"]');
         return !!c && c.textContent === '2'",
    )
    .await;
    let counts = |n: i64| format!("return (() => {{ {held} }})() === {n}");
    b.until(
        10,
        "the process card counts the connection",
        &counts(before + 1),
    )
    .await;
    b.screenshot("overview").await;
    drop(conn);
    b.until(10, "the process card sees it go", &counts(before))
        .await;

    // Connections: one appears live without a reload, is closed from the page, and leaves.
    b.open(app.dashboard, "/connections?state=open").await;
    b.until(10, "the connections feed is live", live).await;
    b.eval("window.__marker = 'same page'; return true").await;
    let mut conn = echo_once(app.echo);
    let peer = conn.local_addr().unwrap().to_string();
    let row = format!(
        "return [...document.querySelectorAll('#connections tbody tr')].some(r => r.textContent.includes('{peer}'))"
    );
    b.until(5, "the new connection's row appears", &row).await;
    assert_eq!(
        b.eval("return window.__marker").await,
        "same page",
        "no reload"
    );
    b.screenshot("connections").await;
    let id = b
        .eval(&format!(
            "const r = [...document.querySelectorAll('#connections tbody tr')].find(r => r.textContent.includes('{peer}'));
             return Number(r.dataset.id)"
        ))
        .await;
    b.open(app.dashboard, &format!("/connections/{id}")).await;
    b.until(10, "the detail page is live", live).await;
    b.screenshot("connection").await;
    b.open(app.dashboard, "/connections?state=open").await;
    b.until(5, "the row is back", &row).await;
    b.eval(&format!(
        "document.querySelector('tr[data-id=\"{id}\"] button[data-action=\"close\"]').click(); return true"
    ))
    .await;
    b.until(
        5,
        "the closed connection leaves the open list",
        &format!("return !({})", &row[7..]),
    )
    .await;
    let mut rest = Vec::new();
    let closed = conn.read_to_end(&mut rest).map_or(true, |n| n == 0);
    assert!(closed, "the server closed the socket");

    // Event-to-DOM latency: connections opened one by one while the page watches.
    b.eval("window.__weft.latencies = []; return true").await;
    let mut held = Vec::new();
    for _ in 0..60 {
        held.push(echo_once(app.echo));
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    drop(held);
    tokio::time::sleep(Duration::from_millis(600)).await;
    let mut lat = numbers(&b.eval("return window.__weft.latencies").await);
    lat.sort_by(f64::total_cmp);
    assert!(
        lat.len() >= 60,
        "every event reached the page: {}",
        lat.len()
    );

    // Render rate under a burst: hundreds of events a second, at most ~4 renders a second.
    b.eval("window.__weft.renders = []; window.__weft.events = 0; return true")
        .await;
    let echo = app.echo;
    let burst = tokio::task::spawn_blocking(move || {
        let start = std::time::Instant::now();
        let mut n = 0;
        while start.elapsed() < Duration::from_secs(3) {
            drop(echo_once(echo));
            n += 1;
        }
        n
    })
    .await
    .unwrap();
    let renders = numbers(&b.eval("return window.__weft.renders").await);
    let events = b
        .eval("return window.__weft.events")
        .await
        .as_f64()
        .unwrap();
    let span_s = (renders.last().unwrap() - renders[0]) / 1e3;
    let rate = (renders.len() - 1) as f64 / span_s.max(1e-3);
    println!(
        "browser: event-to-DOM latency p50 {:.0} ms, p99 {:.0} ms over {} events; \
         {} renders in {:.1} s ({:.1}/s) for {} events ({} connections opened and closed)",
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        lat.len(),
        renders.len(),
        span_s,
        rate,
        events,
        burst
    );
    assert!(rate <= 4.5, "render rate {rate:.1}/s");
    assert!(percentile(&lat, 0.99) < 1000.0, "p99 latency {lat:?}");

    b.open(app.dashboard, "/services").await;
    b.until(10, "the services page is live", live).await;
    b.screenshot("services").await;
    let errors = b.console_errors().await;
    assert!(errors.is_empty(), "console errors: {errors:?}");

    // A stalled Deferred: the banner leads to it, its page names the creation site.
    let stalled = Stalled::spawn();
    b.open(stalled.dashboard, "/").await;
    b.until(10, "the example's feed is live", live).await;
    let mut client = TcpStream::connect(stalled.service).unwrap();
    client
        .write_all(b"wait\nfail <script>window.__pwned = 1</script><img src=x onerror=\"window.__pwned = 2\">\n")
        .unwrap();
    b.until(
        10,
        "the banner reports the stalled Deferred",
        "const a = document.getElementById('banner-stalled'); return !!a && !document.getElementById('banner').hidden",
    )
    .await;
    b.screenshot("overview-stalled").await;
    b.eval("document.getElementById('banner-stalled').click(); return true")
        .await;
    b.until(
        10,
        "the stalled tab lists it",
        "return location.search === '?state=stalled' && !!document.querySelector('#deferreds tbody tr[data-id] a')",
    )
    .await;
    b.screenshot("deferreds").await;
    b.eval("document.querySelector('#deferreds tbody tr[data-id] a').click(); return true")
        .await;
    b.until(
        10,
        "the detail page shows the creation site",
        "const s = document.getElementById('creation-site'); return !!s && s.textContent.includes('examples/stalled.rs:')",
    )
    .await;
    let label = b
        .eval("return document.querySelector('h1 .label').textContent")
        .await;
    assert_eq!(
        label, "lookup <script>alert('label')</script>",
        "the label is text"
    );
    b.screenshot("deferred").await;
    // Cancelled from its own page, which then shows it ended, without a reload by hand.
    b.eval("document.querySelector('button[data-action=\"cancel\"]').click(); return true")
        .await;
    b.until(
        10,
        "the page shows the chain cancelled",
        "const p = document.querySelector('h1 .pill'); return !!p && p.textContent === 'cancelled' && !document.querySelector('button[data-action=\"cancel\"]')",
    )
    .await;

    // The peer's failure text, on the unhandled tab and in the live feed, stays text.
    b.open(stalled.dashboard, "/deferreds?state=unhandled")
        .await;
    b.until(
        10,
        "the unhandled failure is listed",
        "return !!document.querySelector('#deferreds tbody tr[data-id]')",
    )
    .await;
    b.eval("document.querySelector('#deferreds tbody tr[data-id] a').click(); return true")
        .await;
    b.until(
        10,
        "the failure is shown",
        "const f = document.querySelector('pre.failure'); return !!f && f.textContent.includes('<script>')",
    )
    .await;
    b.screenshot("deferred-failed").await;
    b.open(stalled.dashboard, "/").await;
    b.until(10, "the feed is live", live).await;
    client
        .write_all(b"fail <script>window.__pwned = 3</script>\n")
        .unwrap();
    b.until(
        10,
        "the live event list shows the failure as text",
        "return [...document.querySelectorAll('#events li')].some(l => l.textContent.includes('<script>'))",
    )
    .await;
    assert_eq!(
        b.eval("return [window.__pwned ?? null, document.querySelectorAll('main script, main img').length]")
            .await,
        serde_json::json!([null, 0]),
        "markup from peers and programs never runs"
    );
    // A task whose poll blocked the reactor: the banner leads to it, its page names where
    // it was spawned.
    client.write_all(b"crunch\n").unwrap();
    b.until(
        10,
        "the banner reports the slow task",
        "const a = document.getElementById('banner-slow'); return !!a && !document.getElementById('banner').hidden",
    )
    .await;
    b.eval("document.getElementById('banner-slow').click(); return true")
        .await;
    b.until(
        10,
        "the slow tab lists the task",
        "return location.search === '?state=slow' && [...document.querySelectorAll('#deferreds tbody tr[data-id]')].some(r => r.textContent.includes('cruncher'))",
    )
    .await;
    b.eval("[...document.querySelectorAll('#deferreds tbody tr[data-id]')].find(r => r.textContent.includes('cruncher')).querySelector('a').click(); return true")
        .await;
    b.until(
        10,
        "the task's page shows its spawn site",
        "const s = document.getElementById('creation-site'); return !!s && s.textContent.includes('examples/stalled.rs:') && document.querySelector('h1 .label').textContent === 'cruncher'",
    )
    .await;
    b.screenshot("task-slow").await;
    let errors = b.console_errors().await;
    assert!(errors.is_empty(), "console errors: {errors:?}");
    let in_page = b.eval("return window.__weft.errors").await;
    assert_eq!(in_page, serde_json::json!([]));
    println!("browser: screenshots in {}", artifacts().display());
}

/// The DNS page in a real browser: the zones a service serves are drawn again by the live
/// page as the server drew them, with a signed zone's signatures flagged once they near
/// their end, and no console error.
#[test]
fn the_dns_page_keeps_its_zones_live_in_a_real_browser() {
    in_browser(dns_page_in_a_real_browser());
}

async fn dns_page_in_a_real_browser() {
    // A signature expiring in a day: the page flags it.
    let date = Command::new("date")
        .args(["-u", "-d", "+1 day", "+%Y%m%d%H%M%S"])
        .output()
        .unwrap();
    let stamp = String::from_utf8_lossy(&date.stdout).trim().to_owned();
    let zone = format!(
        "$ORIGIN example.test.\n$TTL 300\n@ SOA ns1 hostmaster 7 3600 600 86400 300\n@ NS ns1\n\
         ns1 A 192.0.2.1\n@ NSEC ns1.example.test. NS SOA RRSIG NSEC\n\
         ns1 NSEC example.test. A RRSIG NSEC\n\
         ns1 RRSIG A 13 3 300 {stamp} 20260101000000 1 example.test. AAAA\n"
    );
    let port = free_port();
    let app = crate::support::spawn_dns_app(
        crate::support::dns_service("dns", port).zone("example.test.zone", zone),
    );
    let b = Browser::start().await;
    b.open(app.dashboard, "/dns").await;
    b.until(
        10,
        "the DNS page is live",
        "return document.getElementById('live-state').textContent === 'live'",
    )
    .await;
    // The page's script draws each service again from /api/dns once a second.
    b.until(
        5,
        "the server drew the zones table",
        "const t = document.querySelector('table.zones');
         if (t) t.dataset.drawn = 'server';
         return !!t",
    )
    .await;
    b.until(
        10,
        "the zones table is drawn again by the page, as the server drew it",
        "const t = document.querySelector('section.dns-service table.zones');
         if (!t || t.dataset.drawn === 'server') return false;
         const cells = [...t.querySelectorAll('tbody td')].map(c => c.textContent);
         const flagged = t.querySelector('tbody td.bad');
         return cells[0] === 'example.test.' && cells[1] === '7' && cells[3].startsWith('in 23h') && cells[4] === 'file'
           && cells[5] === '-' && !!flagged && flagged.textContent.startsWith('in ')",
    )
    .await;
    b.screenshot("dns").await;
    let errors = b.console_errors().await;
    assert!(errors.is_empty(), "console errors: {errors:?}");
}

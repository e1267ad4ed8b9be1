//! A deadlock between two `DeferredLock`s in a program written against the public API
//! (weft-gateway's `deadlock` example): detected through the JSON API within the stall
//! threshold plus a second, with both members, their sites and who holds what; drawn on
//! the Locks page; and followed in a real browser from the banner to the graph.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::chrome::Browser;
use crate::support::{free_port, http};

/// An example of weft-gateway, built once per test binary and name.
pub(crate) fn example_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(Path::parent).unwrap();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = Command::new(cargo);
    build.args(["build", "-q", "-p", "weft-gateway", "--example", name]);
    build.arg("--target-dir").arg(profile_dir.parent().unwrap());
    if profile_dir.file_name().is_some_and(|p| p == "release") {
        build.arg("--release");
    }
    assert!(
        build.status().unwrap().success(),
        "building the example {name} failed"
    );
    profile_dir.join("examples").join(name)
}

fn deadlock_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| example_bin("deadlock"))
}

/// The stall threshold the example runs with.
const STALL: Duration = Duration::from_millis(1000);

struct Bank {
    child: Child,
    service: SocketAddr,
    dashboard: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Bank {
    fn spawn() -> Bank {
        let dir = tempfile::tempdir().unwrap();
        let (service, dashboard) = (free_port(), free_port());
        let child = Command::new(deadlock_bin())
            .arg(service.to_string())
            .arg(dashboard.to_string())
            .arg(dir.path().join("history.db"))
            .arg(STALL.as_millis().to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let bank = Bank {
            child,
            service: ([127, 0, 0, 1], service).into(),
            dashboard: ([127, 0, 0, 1], dashboard).into(),
            _dir: dir,
        };
        crate::assert_eventually!(
            TcpStream::connect(bank.dashboard).is_ok() && TcpStream::connect(bank.service).is_ok(),
            "the example serves"
        );
        bank
    }

    /// Starts a pair of transfers that deadlock; their chains' ids.
    fn deadlock(&self) -> (u64, u64) {
        let mut s = TcpStream::connect(self.service).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(b"deadlock\n").unwrap();
        let mut line = String::new();
        BufReader::new(&s).read_line(&mut line).unwrap();
        let ids: Vec<u64> = line
            .strip_prefix("deadlocked ")
            .unwrap_or_else(|| panic!("answer {line:?}"))
            .split_whitespace()
            .map(|n| n.parse().unwrap())
            .collect();
        std::mem::forget(s); // the connection stays open: the chains belong to it
        (ids[0], ids[1])
    }

    fn get(&self, path: &str) -> (u16, String) {
        let reply = http(
            self.dashboard,
            &format!("GET {path} HTTP/1.1\r\nHost: {}\r\n", self.dashboard),
            "",
        );
        (reply.status, reply.body)
    }

    fn json(&self, path: &str) -> Value {
        let (status, body) = self.get(path);
        assert_eq!(status, 200, "{path}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
    }
}

impl Drop for Bank {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn site_in_example(v: &Value) -> bool {
    v.as_str()
        .is_some_and(|s| s.contains("examples/deadlock.rs:"))
}

#[test]
fn a_deadlock_between_two_locks_is_detected_with_both_members_and_drawn() {
    let bank = Bank::spawn();
    let started = Instant::now();
    let (one, two) = bank.deadlock();

    // Both members are listed as deadlocked within the stall threshold plus a second.
    let within = STALL + Duration::from_secs(1);
    let listed = weft_test_support::poll_until(
        within.saturating_sub(started.elapsed()),
        Duration::from_millis(20),
        || {
            let page = bank.json("/api/deferreds?state=deadlock");
            let ids: Vec<u64> = page["items"]
                .as_array()?
                .iter()
                .filter_map(|d| d["id"].as_u64())
                .collect();
            (ids.contains(&one) && ids.contains(&two)).then_some(page)
        },
        || format!("both members listed as deadlocked within {within:?}"),
    );
    for item in listed["items"].as_array().unwrap() {
        assert_eq!(item["deadlock"], true, "{item}");
        assert!(site_in_example(&item["site"]), "{item}");
    }

    // Each member's page says which lock it waits on, where, and who holds it.
    for (me, other) in [(one, two), (two, one)] {
        let chain = bank.json(&format!("/api/deferreds/{me}"));
        assert_eq!(chain["deadlock"], true, "{chain}");
        let waits = &chain["waits"];
        let wait = &waits["waits_for"][0];
        assert_eq!(wait["lock"]["kind"], "lock", "{chain}");
        assert!(site_in_example(&wait["at"]), "{chain}");
        assert!(site_in_example(&wait["lock"]["site"]), "{chain}");
        assert_eq!(wait["holders"][0]["chain"], other, "{chain}");
        assert!(site_in_example(&wait["holders"][0]["site"]), "{chain}");
        assert!(site_in_example(&wait["holders"][0]["at"]), "{chain}");
        assert_eq!(waits["holds"][0]["waiters"][0]["chain"], other, "{chain}");
        let members = waits["deadlock"].as_array().expect("in a deadlock");
        assert_eq!(members.len(), 2, "{chain}");
    }

    // The graph: two locks, each held by one member and awaited by the other; one cycle.
    let graph = bank.json("/api/waits");
    let locks = graph["locks"].as_array().unwrap();
    assert_eq!(locks.len(), 2, "{graph}");
    let mut names: Vec<&str> = locks.iter().map(|l| l["label"].as_str().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["accounts", "ledger"]);
    let cycle = graph["deadlocks"][0].as_array().expect("a deadlock");
    let mut members: Vec<u64> = cycle
        .iter()
        .map(|m| m["chain"]["chain"].as_u64().unwrap())
        .collect();
    members.sort();
    let mut expected = vec![one, two];
    expected.sort();
    assert_eq!(members, expected, "{graph}");
    for m in cycle {
        assert!(site_in_example(&m["chain"]["site"]), "{m}");
        assert!(site_in_example(&m["chain"]["at"]), "{m}");
        let me = m["chain"]["chain"].as_u64().unwrap();
        let other = if me == one { two } else { one };
        assert_eq!(m["held_by"], serde_json::json!([other]), "{m}");
        assert!(
            m["chain"]["label"]
                .as_str()
                .is_some_and(|l| l.starts_with("transfer <")),
            "{m}"
        );
    }
    let edges = graph["edges"].as_array().unwrap();
    for (w, h) in [(one, two), (two, one)] {
        assert!(
            edges.iter().any(|e| e["waiter"] == w && e["holder"] == h),
            "{graph}"
        );
    }

    // Counted once per member, under the connection's service.
    let (_, metrics) = bank.get("/metrics");
    let counted = metrics
        .lines()
        .find(|l| {
            l.starts_with("weft_deferred_detections_total")
                && l.contains("detector=\"deadlock\"")
                && l.contains("service=\"bank\"")
        })
        .unwrap_or_else(|| panic!("no deadlock series:\n{metrics}"));
    assert!(counted.ends_with(" 2"), "{counted}");

    // The page draws both chains as links, their labels as text.
    let (status, page) = bank.get("/waits");
    assert_eq!(status, 200);
    assert!(page.contains("<svg"), "{page}");
    assert!(
        page.contains(&format!("href=\"/deferreds/{one}\"")),
        "{page}"
    );
    assert!(
        page.contains(&format!("href=\"/deferreds/{two}\"")),
        "{page}"
    );
    assert!(!page.contains("<accounts first>"), "labels are escaped");
    assert!(
        page.contains("&#60;accounts first&#62;") || page.contains("&lt;accounts first&gt;"),
        "{page}"
    );
    let (_, nav) = bank.get("/");
    assert!(nav.contains("href=\"/waits\""), "the nav links the graph");
}

/// One test: the browser session is the expensive part.
#[test]
fn the_banner_leads_to_the_deadlock_and_its_graph_in_a_real_browser() {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(banner_to_graph());
}

async fn banner_to_graph() {
    let bank = Bank::spawn();
    let b = Browser::start().await;
    b.open(bank.dashboard, "/").await;
    b.until(
        10,
        "the feed is live",
        "return document.getElementById('live-state').textContent === 'live'",
    )
    .await;
    let (one, two) = bank.deadlock();
    b.until(
        10,
        "the banner reports the deadlock",
        "const a = document.getElementById('banner-deadlock'); return !!a && !document.getElementById('banner').hidden",
    )
    .await;
    b.eval("document.getElementById('banner-deadlock').click(); return true")
        .await;
    b.until(
        10,
        "the deadlock tab lists both members",
        &format!(
            "return location.search === '?state=deadlock' && !!document.querySelector('#deferreds tr[data-id=\"{one}\"]') && !!document.querySelector('#deferreds tr[data-id=\"{two}\"]')"
        ),
    )
    .await;
    b.screenshot("deferreds-deadlock").await;
    b.eval("document.querySelector('#waits-link a').click(); return true")
        .await;
    b.until(
        10,
        "the graph links both chains",
        &format!(
            "return location.pathname === '/waits' && !!document.querySelector('#waits-graph a[href=\"/deferreds/{one}\"]') && !!document.querySelector('#waits-graph a[href=\"/deferreds/{two}\"]')"
        ),
    )
    .await;
    let texts = b
        .eval("return [...document.querySelectorAll('#waits-graph text')].map(t => t.textContent)")
        .await;
    assert!(
        texts
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t.as_str().is_some_and(|t| t.contains("<accounts first>"))),
        "the label is drawn as text: {texts}"
    );
    assert_eq!(
        b.eval("return document.querySelectorAll('#waits-graph .edge.deadlocked').length")
            .await,
        serde_json::json!(2)
    );
    b.screenshot("waits").await;
    // A node's link leads to its chain's page, which names the holder.
    b.eval(&format!(
        "location.assign(document.querySelector('#waits-graph a[href=\"/deferreds/{one}\"]').getAttribute('href')); return true"
    ))
    .await;
    b.until(
        10,
        "the chain's page names the holder",
        &format!(
            "return location.pathname === '/deferreds/{one}' && !!document.querySelector('#waits a.holder[href=\"/deferreds/{two}\"]')"
        ),
    )
    .await;
    let errors = b.console_errors().await;
    assert!(errors.is_empty(), "console errors: {errors:?}");
}

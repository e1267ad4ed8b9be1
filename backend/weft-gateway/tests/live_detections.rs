//! Detections reach the JSON API at once, from the hub's memory, while history has not
//! committed them: the store here commits only once an hour.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;
use weft::Reactor;
use weft::defer::{Deferred, Failure};
use weft_inspector::{Inspector, InspectorConfig};
use weft_store::StoreOptions;
use weft_telemetry::HubConfig;
use weft_test_support::{poll_until, run_with_client};

/// How soon after a detection the API must list it.
const WITHIN: Duration = Duration::from_millis(100);

/// An inspector whose history commits only once an hour (or 100,000 records), and whose
/// sampler keeps no successful chain: anything the API lists came from the hub.
fn slow_history(dir: &std::path::Path) -> InspectorConfig {
    let mut hub = HubConfig::default();
    hub.sample = 0.0;
    let mut store = StoreOptions::new(dir.join("history.db"));
    store.flush_interval = Duration::from_secs(3600);
    store.batch_size = 100_000;
    let mut config = InspectorConfig::default();
    config.hub = hub;
    config.store = Some(store);
    config.dashboard = Some("tcp:0:interface=127.0.0.1".into());
    config
}

/// `GET path` on the dashboard: the body of a 200 answer.
fn get_text(addr: SocketAddr, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut answer = String::new();
    s.read_to_string(&mut answer).ok()?;
    let (head, body) = answer.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_owned())
}

fn get(addr: SocketAddr, path: &str) -> Option<Value> {
    serde_json::from_str(&get_text(addr, path)?).ok()
}

/// The chain labelled `label` in the list at `path`.
fn listed(addr: SocketAddr, path: &str, label: &str) -> Option<Value> {
    get(addr, path)?["items"]
        .as_array()?
        .iter()
        .find(|d| d["label"] == label)
        .cloned()
}

/// The `deferred_detected` event by `detector` about the chain labelled `label`.
fn detected_event(addr: SocketAddr, detector: &str, label: &str) -> Option<Value> {
    get(addr, "/api/events?after=0&limit=1000")?
        .as_array()?
        .iter()
        .find(|e| {
            e["type"] == "deferred_detected"
                && e["data"]["detector"] == detector
                && e["data"]["deferred"]["label"] == label
        })
        .cloned()
}

/// Checks `found` until it gives a value, failing if that takes longer than [`WITHIN`]
/// from `since`.
fn within<T>(since: Instant, what: &str, mut found: impl FnMut() -> Option<T>) -> T {
    let left = WITHIN.saturating_sub(since.elapsed());
    poll_until(left, Duration::from_millis(2), &mut found, || {
        format!("{what} not in the API within {WITHIN:?}")
    })
}

#[test]
fn an_unhandled_failure_and_a_slow_step_are_in_the_api_within_100ms_before_history_has_them() {
    let dir = tempfile::tempdir().unwrap();
    let reactor = Reactor::new().unwrap();
    reactor.set_thresholds(Duration::from_millis(20), Duration::from_secs(60));
    let inspector = Inspector::start(&reactor, slow_history(dir.path())).unwrap();
    let dashboard = inspector.dashboard_addr().unwrap();
    let handle = reactor.handle();

    run_with_client(&reactor, move || {
        // The API answers before anything is injected.
        poll_until(
            Duration::from_secs(10),
            Duration::from_millis(20),
            || get(dashboard, "/api/deferreds"),
            || "the dashboard answers".to_owned(),
        );
        let (injected, at) = mpsc::channel();
        handle.call_from_thread(move || {
            let (resolver, d) = Deferred::<u8>::labeled("parse request");
            resolver.errback(Failure::msg("bad header"));
            // Dropped holding its failure: reported unhandled now.
            drop(d);
            let (resolver, d) = Deferred::<u8>::labeled("build report");
            let d = d.add_callback(|n| {
                std::thread::sleep(Duration::from_millis(40));
                n
            });
            resolver.callback(1);
            drop(d);
            let _ = injected.send(Instant::now());
        });
        let since = at.recv().unwrap();

        let unhandled = within(since, "the unhandled chain in /api/deferreds", || {
            listed(dashboard, "/api/deferreds?state=unhandled", "parse request")
        });
        within(since, "the slow chain in /api/deferreds", || {
            listed(dashboard, "/api/deferreds?state=slow", "build report")
        });
        within(since, "the unhandled detection in /api/events", || {
            detected_event(dashboard, "unhandled", "parse request")
        });
        within(since, "the slow detection in /api/events", || {
            detected_event(dashboard, "slow", "build report")
        });
        assert_eq!(unhandled["state"], "failed", "{unhandled}");
        assert!(
            unhandled["failure"]
                .as_str()
                .is_some_and(|f| f.contains("bad header")),
            "{unhandled}"
        );

        // The chain's own page too, with its step.
        let id = unhandled["id"].as_i64().unwrap();
        let chain = get(dashboard, &format!("/api/deferreds/{id}")).expect("its page");
        assert_eq!(chain["unhandled"], true, "{chain}");
        // Listed once, though both its end and its detection were published.
        let all = get(dashboard, "/api/deferreds").unwrap();
        let times = all["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["id"] == id)
            .count();
        assert_eq!(times, 1, "{all}");
        let slow = listed(dashboard, "/api/deferreds", "build report").unwrap();
        assert_eq!(
            (&slow["state"], &slow["slow"]),
            (&Value::from("succeeded"), &Value::from(true)),
            "{slow}"
        );

        // History had none of it yet.
        let metrics = get_text(dashboard, "/metrics").unwrap();
        assert!(
            metrics
                .lines()
                .any(|l| l == "weft_store_records_written_total 0"),
            "nothing was committed:\n{metrics}"
        );
    });
    inspector.join();
}

//! Detections reach the JSON API at once, from the hub's memory, while history has not
//! committed them: the store here commits only once an hour.

use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;
use weft::Reactor;
use weft::defer::{Deferred, Failure};
use weft_inspector::Inspector;
use weft_test_support::{poll_until, run_with_client};

use common::{get, get_text, slow_history};

mod common;

/// How soon after a detection the API must list it.
const WITHIN: Duration = Duration::from_millis(100);

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

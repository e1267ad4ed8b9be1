//! The inspector end to end in one process: a reactor, the hub, the store and the
//! dashboard's JSON API on a loopback port.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use weft::Reactor;
use weft::defer::{Deferred, DeferredState, Detector, Failure};
use weft_inspector::{Inspector, InspectorConfig};
use weft_telemetry::EventKind;
use weft_test_support::{eventually, run_with_client};

use common::get;

mod common;

/// An inspector with every chain kept, history in `dir` committed quickly, and the dashboard
/// on a free loopback port.
fn inspector_config(dir: &std::path::Path) -> InspectorConfig {
    common::inspector_config(dir, 1.0, Duration::from_millis(20))
}

/// An unhandled failure is reported when the chain's last handle goes, after the chain
/// ended and was stored: the detection adds its flag to the chain's record and keeps
/// everything else (when it was created and fired, its parent, where it stopped).
#[test]
fn an_unhandled_failure_reported_after_its_chain_ended_keeps_the_chains_record() {
    let dir = tempfile::tempdir().unwrap();
    let reactor = Reactor::new().unwrap();
    let inspector = Inspector::start(&reactor, inspector_config(dir.path())).unwrap();
    let mut feed = inspector.hub().subscribe("test");
    let dashboard = inspector.dashboard_addr().unwrap();

    // A chain created inside another chain's callback fails; its handle is kept a while,
    // so the failure is reported as unhandled only when the handle is dropped, later.
    let kept: Rc<RefCell<Option<Deferred<u8>>>> = Rc::default();
    let (resolver, parent) = Deferred::<u8>::labeled("parent");
    let slot = kept.clone();
    let parent = parent.add_callback(move |n| {
        let (child_resolver, child) = Deferred::<u8>::labeled("upstream call");
        let child = child.add_callback(|n| n + 1);
        child_resolver.errback(Failure::msg("upstream refused"));
        *slot.borrow_mut() = Some(child);
        n
    });
    resolver.callback(1);
    drop(parent);
    let _later = reactor.call_later(Duration::from_millis(300), move || {
        kept.borrow_mut().take();
    });

    run_with_client(&reactor, move || {
        let unhandled = eventually("the API lists the unhandled chain", || {
            let page = get(dashboard, "/api/deferreds?state=unhandled")?;
            page["items"]
                .as_array()?
                .iter()
                .find(|d| d["label"] == "upstream call")
                .cloned()
        });
        let id = unhandled["id"].as_i64().unwrap();
        let chain = get(dashboard, &format!("/api/deferreds/{id}")).unwrap();
        let parents = get(dashboard, "/api/deferreds").unwrap();
        let parent = parents["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["label"] == "parent")
            .expect("the parent chain is kept");
        assert_eq!(chain["label"], "upstream call", "{chain}");
        assert_eq!(chain["state"], "failed", "{chain}");
        assert_eq!(chain["unhandled"], true, "{chain}");
        assert_eq!(chain["parent_id"], parent["id"], "{chain}");
        let (created, fired) = (
            chain["created_at_ms"].as_i64().unwrap(),
            chain["fired_at_ms"].as_i64(),
        );
        assert!(
            fired.is_some_and(|fired| created <= fired && fired - created < 250),
            "created and fired together, well before the report: {chain}"
        );
        assert!(
            chain["current_step"]
                .as_str()
                .is_some_and(|s| s.contains("tests/inspector.rs")),
            "{chain}"
        );
        assert!(
            chain["failure"]
                .as_str()
                .is_some_and(|f| f.contains("upstream refused")),
            "{chain}"
        );
        assert_eq!(
            chain["steps"].as_array().map(Vec::len),
            Some(1),
            "its step is kept: {chain}"
        );
    });

    // The live feed carries the same, whole record.
    let mut events = Vec::new();
    while let Ok(n) = feed.try_recv_many(&mut events, usize::MAX) {
        if n == 0 {
            break;
        }
    }
    let detected = events
        .iter()
        .find_map(|e| match &e.kind {
            EventKind::DeferredDetected {
                detector: Detector::Unhandled,
                deferred,
                ..
            } => Some(deferred.clone()),
            _ => None,
        })
        .expect("the detection is published");
    let ended = events
        .iter()
        .find_map(|e| match &e.kind {
            EventKind::DeferredEnded { deferred } if deferred.id == detected.id => {
                Some(deferred.clone())
            }
            _ => None,
        })
        .expect("the chain's end is published first");
    assert!(detected.unhandled && detected.state == DeferredState::Failed);
    assert_eq!(
        (
            detected.parent,
            detected.created_at_ms,
            detected.fired_at_ms,
            &detected.current_step,
            &detected.label,
        ),
        (
            ended.parent,
            ended.created_at_ms,
            ended.fired_at_ms,
            &ended.current_step,
            &ended.label,
        )
    );
    assert!(ended.parent.is_some() && ended.fired_at_ms.is_some());
    inspector.join();
}

//! A flood of refused connections is counted in full but reaches the event bus at a
//! bounded rate, so it cannot push the events that matter out of the bounded ring.

use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use weft::{Protocol, Reactor};
use weft_telemetry::{EventKind, Feed, Hub, HubConfig, TelemetryEvent};

/// A factory that refuses every connection.
struct Refuse;

impl weft::Factory for Refuse {
    fn build_protocol(&self, _: &weft::Address) -> Option<Box<dyn Protocol>> {
        None
    }
}

fn refused_total(hub: &Hub) -> f64 {
    let series = r#"weft_refused_total{reason="factory",service="closed"} "#;
    hub.encode_metrics()
        .lines()
        .find_map(|l| l.strip_prefix(series)?.parse().ok())
        .unwrap_or(0.0)
}

fn drain(feed: &mut Feed) -> Vec<Arc<TelemetryEvent>> {
    let mut out = Vec::new();
    while feed.try_recv_many(&mut out, usize::MAX).unwrap() > 0 {}
    out
}

#[test]
fn five_thousand_refusals_are_counted_and_published_a_few_times() {
    const FLOOD: usize = 5_000;
    let reactor = Reactor::new().unwrap();
    let hub = Hub::new(HubConfig::default()).unwrap();
    hub.install(&reactor);
    let mut feed = hub.subscribe("recorder");
    let port = reactor
        .listen_as("closed", "tcp:0:interface=127.0.0.1", Refuse)
        .unwrap();
    let addr = port.local_addr().unwrap();
    let (h, handle) = (hub.clone(), reactor.handle());
    let client = std::thread::spawn(move || {
        let started = Instant::now();
        for _ in 0..FLOOD {
            drop(TcpStream::connect(addr).unwrap());
        }
        while refused_total(&h) < FLOOD as f64 && started.elapsed() < Duration::from_secs(20) {
            std::thread::sleep(Duration::from_millis(5));
        }
        let took = started.elapsed();
        handle.stop();
        took
    });
    reactor.run().unwrap();
    let took = client.join().unwrap();

    assert_eq!(
        refused_total(&hub),
        FLOOD as f64,
        "every refusal is counted"
    );
    let refusals: Vec<u64> = drain(&mut feed)
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Refused { suppressed, .. } => Some(*suppressed),
            _ => None,
        })
        .collect();
    // At most one a second for this service and reason, the first at once.
    let allowed = took.as_secs() as usize + 1;
    assert!(
        !refusals.is_empty() && refusals.len() <= allowed,
        "{} refusal events in {took:?} for {FLOOD} refusals",
        refusals.len()
    );
    assert_eq!(refusals[0], 0, "the first is published at once");
    let told: u64 = refusals.iter().map(|n| n + 1).sum();
    assert!(
        told <= FLOOD as u64,
        "each event counts those left out since the one before it: {refusals:?}"
    );
}

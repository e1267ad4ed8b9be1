//! Paging through `/api/events` while history commits slowly: a detection is listed at
//! once from the hub's memory, ahead of older events history has not committed yet, and
//! a client paging on the last event that is not pending still sees every event once.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;

use serde_json::Value;
use weft::defer::{Deferred, Failure};
use weft::{Address, Reactor};
use weft_gateway::config::ServiceConfig;
use weft_gateway::services::{self, ServiceKind, ServiceLimits};
use weft_inspector::Inspector;
use weft_store::Store;
use weft_test_support::{eventually, run_with_client};

use common::{get, slow_history};

mod common;

/// An inspector whose history commits only when flushed (once an hour otherwise), with an
/// echo service to connect to.
fn start(dir: &std::path::Path, reactor: &Reactor) -> (Inspector, SocketAddr, SocketAddr) {
    let inspector = Inspector::start(reactor, slow_history(dir)).unwrap();
    let kind = ServiceKind::Echo;
    let echo = services::start(
        reactor,
        &ServiceConfig {
            name: "echo".into(),
            listen: vec!["tcp:0:interface=127.0.0.1".into()],
            limits: ServiceLimits::default_for(&kind),
            kind,
            tls_files: Default::default(),
            certificates: Vec::new(),
        },
    )
    .unwrap();
    let dashboard = inspector.dashboard_addr().unwrap();
    (inspector, dashboard, addr(&echo[0]))
}

/// A connection to the echo service at `echo` that has had one message echoed.
fn echoed(echo: SocketAddr) -> TcpStream {
    let mut client = TcpStream::connect(echo).unwrap();
    client.write_all(b"hello").unwrap();
    let mut buf = [0; 5];
    client.read_exact(&mut buf).unwrap();
    client
}

fn addr(a: &Address) -> SocketAddr {
    a.socket_addr().expect("an IP listener")
}

/// A client following README's rule: it takes the events that are not pending, and asks
/// next for those after the last of them.
#[derive(Default)]
struct Pager {
    after: i64,
    /// Every event taken, in the order taken.
    taken: Vec<Value>,
    /// Pages that listed a pending event.
    pending_seen: usize,
}

impl Pager {
    fn page(&mut self, dashboard: SocketAddr) {
        let page = get(
            dashboard,
            &format!("/api/events?after={}&limit=1000", self.after),
        )
        .expect("a page of events");
        let page = page.as_array().expect("an array");
        let seqs: Vec<i64> = page.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "in order: {seqs:?}");
        if page.iter().any(|e| e["pending"] == true) {
            self.pending_seen += 1;
        }
        for event in page.iter().filter(|e| e["pending"] != true) {
            self.after = event["seq"].as_i64().unwrap();
            self.taken.push(event.clone());
        }
    }

    /// How many times an event of `kind` was taken.
    fn times(&self, kind: &str) -> usize {
        self.taken.iter().filter(|e| e["type"] == kind).count()
    }

    fn assert_each_once(&self) {
        let mut seqs: Vec<i64> = self
            .taken
            .iter()
            .map(|e| e["seq"].as_i64().unwrap())
            .collect();
        seqs.sort_unstable();
        seqs.dedup();
        assert_eq!(
            seqs.len(),
            self.taken.len(),
            "taken twice: {:?}",
            self.taken
        );
    }
}

/// Commits what history holds queued now.
fn commit(store: &Store) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(store.flush()).unwrap();
}

fn committed(store: &Store) -> u64 {
    store.stats().written()
}

/// An echo connection opens and stays open; a request fails unhandled.
#[test]
fn a_detection_listed_before_history_commits_does_not_hide_an_older_connection_event() {
    let dir = tempfile::tempdir().unwrap();
    let reactor = Reactor::new().unwrap();
    let (inspector, dashboard, echo) = start(dir.path(), &reactor);
    let handle = reactor.handle();
    let store = inspector.store().expect("a store").clone();

    run_with_client(&reactor, move || {
        let mut pager = Pager::default();
        let client = echoed(echo);
        let (injected, done) = mpsc::channel();
        handle.call_from_thread(move || {
            let (resolver, d) = Deferred::<u8>::labeled("parse request");
            resolver.errback(Failure::msg("bad header"));
            drop(d);
            let _ = injected.send(());
        });
        done.recv().unwrap();

        // The detection is listed at once, before history holds the connection.
        eventually("the detection listed", || {
            let page = get(dashboard, "/api/events?after=0&limit=1000")?;
            page.as_array()?
                .iter()
                .any(|e| e["type"] == "deferred_detected")
                .then_some(())
        });
        assert_eq!(committed(&store), 0, "history committed nothing yet");
        pager.page(dashboard);

        // Once history commits, the connection is listed, and the client takes it.
        eventually("the connection event taken", || {
            commit(&store);
            pager.page(dashboard);
            pager.times("connection_opened") > 0 && pager.times("deferred_detected") > 0
        });
        pager.page(dashboard);
        pager.assert_each_once();
        assert_eq!(pager.times("connection_opened"), 1, "{:?}", pager.taken);
        assert_eq!(pager.times("deferred_detected"), 1, "{:?}", pager.taken);
        drop(client);
    });
    inspector.join();
}

/// Without a detection, pages list only what history committed, and nothing is pending.
#[test]
fn without_a_detection_events_page_as_history_commits_them() {
    let dir = tempfile::tempdir().unwrap();
    let reactor = Reactor::new().unwrap();
    let (inspector, dashboard, echo) = start(dir.path(), &reactor);
    let store = inspector.store().expect("a store").clone();

    run_with_client(&reactor, move || {
        let mut pager = Pager::default();
        let client = echoed(echo);
        pager.page(dashboard);
        assert!(
            pager.taken.is_empty(),
            "nothing committed: {:?}",
            pager.taken
        );

        eventually("the connection event taken", || {
            commit(&store);
            pager.page(dashboard);
            pager.times("connection_opened") > 0
        });
        pager.page(dashboard);
        pager.assert_each_once();
        assert_eq!(pager.times("connection_opened"), 1, "{:?}", pager.taken);
        assert_eq!(pager.pending_seen, 0, "no event was pending");
        drop(client);
    });
    inspector.join();
}

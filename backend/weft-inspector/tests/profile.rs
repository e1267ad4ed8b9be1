//! The reactor profile through the dashboard: a program with a callback that blocks the
//! reactor finds it named as the top consumer of reactor time, and the reactor-lag spike
//! it caused attributed to it, in `/api/profile`, in history and on `/profile`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use weft::Reactor;
use weft::defer::Deferred;
use weft_inspector::{Inspector, InspectorConfig, StoreOptions};

/// A GET over a real socket: status and body.
fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("the dashboard accepts");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = raw.split_once("\r\n\r\n").expect("a response head");
    let status = head.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap();
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_owned()
    };
    (status, body)
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        body = &rest[n + 2..];
    }
    out
}

fn json(addr: SocketAddr, path: &str) -> serde_json::Value {
    let (status, body) = get(addr, path);
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
}

/// Retries `f` until it returns `Some`, for up to ten seconds.
fn eventually<T, S: std::fmt::Display>(
    what: impl Fn() -> S,
    mut f: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {}",
            what()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

struct TempDb(PathBuf);

impl Drop for TempDb {
    fn drop(&mut self) {
        // The history file, its journal, and the lock the store takes beside it.
        for suffix in ["", "-wal", "-shm", ".lock"] {
            let mut p = self.0.clone().into_os_string();
            p.push(suffix);
            let _ = std::fs::remove_file(p);
        }
    }
}

#[test]
fn a_blocking_callback_tops_the_profile_and_is_blamed_for_the_lag_spike() {
    let db = TempDb(std::env::temp_dir().join(format!("weft-profile-{}.db", std::process::id())));
    let (tx, rx) = mpsc::channel();
    let path = db.0.clone();
    let reactor_thread = std::thread::spawn(move || {
        let reactor = Reactor::new().unwrap();
        let mut config = InspectorConfig::default();
        config.store = Some(StoreOptions::new(path));
        config.dashboard = Some("tcp:0:interface=127.0.0.1".into());
        let inspector = Inspector::start(&reactor, config).unwrap();
        let (resolver, chain) = Deferred::<u32>::new();
        let line = line!() + 1;
        let chain = chain.add_callback(|v| {
            // The fault under test: a callback that holds the reactor thread.
            std::thread::sleep(Duration::from_millis(400));
            v + 1
        });
        reactor.call_later(Duration::from_millis(300), move || resolver.callback(1));
        tx.send((inspector.dashboard_addr().unwrap(), reactor.handle(), line))
            .unwrap();
        reactor.run().unwrap();
        drop(chain);
        inspector.join();
    });
    let (addr, handle, line) = rx.recv().unwrap();
    let site = format!("{}:{line}", file!());

    let last = std::cell::RefCell::new(serde_json::Value::Null);
    let profile = eventually(
        || format!("the spike attributed in /api/profile: {:#}", last.borrow()),
        || {
            let p = json(addr, "/api/profile");
            *last.borrow_mut() = p.clone();
            let named = p["lag_spikes"]
                .as_array()?
                .iter()
                .any(|s| s["site"] == site.as_str());
            named.then_some(p)
        },
    );
    let top = &profile["sites"][0];
    assert_eq!(top["site"], site.as_str(), "{profile:#}");
    assert_eq!(top["kind"], "callback");
    assert_eq!(top["count"], 1);
    // The stopwatch's scale is calibrated against the monotonic clock once per process
    // (quanta), good to a fraction of a percent: a 400 ms sleep may read 399.7 ms.
    let at_least = 400.0 * 0.99;
    assert!(top["busy_ms"].as_f64().unwrap() >= at_least, "{top}");
    let spike = profile["lag_spikes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["site"] == site.as_str())
        .unwrap();
    assert_eq!(spike["site_kind"], "callback");
    assert!(spike["lag_ms"].as_f64().unwrap() >= 100.0, "{spike}");
    assert!(spike["took_ms"].as_f64().unwrap() >= at_least, "{spike}");

    // History keeps the spike with its culprit, for after the fact.
    eventually(
        || format!("the spike in history: {:#}", last.borrow()),
        || {
            let events = json(addr, "/api/events?limit=1000");
            *last.borrow_mut() = events.clone();
            events
                .as_array()?
                .iter()
                .find(|e| e["type"] == "reactor_lag" && e["data"]["site"] == site.as_str())?;
            Some(())
        },
    );

    let (status, page) = get(addr, "/profile");
    assert_eq!(status, 200);
    assert!(page.contains("<svg id=\"profile-chart\""), "{page}");
    assert!(page.contains(&site), "the page names the site");
    let spikes = page
        .split("id=\"lag-spikes\"")
        .nth(1)
        .expect("a spikes table");
    assert!(
        spikes.contains(&site),
        "the spike is attributed on the page"
    );
    let (_, overview) = get(addr, "/");
    assert!(
        overview.contains("href=\"/profile\""),
        "linked from the nav"
    );

    handle.stop();
    reactor_thread.join().unwrap();
}

//! What the gateway's in-process inspector tests share: the inspector's configuration and
//! a plain HTTP client for its dashboard.

// Each test binary uses its own part of this module.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use weft_inspector::InspectorConfig;
use weft_store::StoreOptions;
use weft_telemetry::HubConfig;

/// An inspector sampling `sample` of the successful chains, with history in `dir` committed
/// every `flush_interval`, and the dashboard on a free loopback port.
pub(crate) fn inspector_config(
    dir: &Path,
    sample: f64,
    flush_interval: Duration,
) -> InspectorConfig {
    let mut hub = HubConfig::default();
    hub.sample = sample;
    let mut store = StoreOptions::new(dir.join("history.db"));
    store.flush_interval = flush_interval;
    let mut config = InspectorConfig::default();
    config.hub = hub;
    config.store = Some(store);
    config.dashboard = Some("tcp:0:interface=127.0.0.1".into());
    config
}

/// An inspector whose history commits only once an hour (or 100,000 records), and whose
/// sampler keeps no successful chain: anything the API lists came from the hub.
pub(crate) fn slow_history(dir: &Path) -> InspectorConfig {
    let mut config = inspector_config(dir, 0.0, Duration::from_secs(3600));
    if let Some(store) = config.store.as_mut() {
        store.batch_size = 100_000;
    }
    config
}

/// `GET path` on the dashboard: the body of a 200 answer.
pub(crate) fn get_text(addr: SocketAddr, path: &str) -> Option<String> {
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

/// `GET path` on the dashboard: the JSON body of a 200 answer, `None` otherwise.
pub(crate) fn get(addr: SocketAddr, path: &str) -> Option<Value> {
    serde_json::from_str(&get_text(addr, path)?).ok()
}

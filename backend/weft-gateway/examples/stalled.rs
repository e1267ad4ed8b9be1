//! A line protocol with the inspector on, whose `wait` command waits on a Deferred nobody
//! fires: open the dashboard and watch it stall, with the line that created it.
//!
//! ```text
//! cargo run -p weft-gateway --example stalled -- [PORT] [DASHBOARD_PORT] [HISTORY_DB] [STALL_MS]
//! printf 'wait\n' | nc 127.0.0.1 7000
//! ```
//!
//! Commands, one per line: `wait` (a Deferred that never fires), `fail TEXT` (a Deferred
//! that fails with TEXT and is dropped unhandled), anything else is echoed.

use std::time::Duration;

use weft::defer::{Deferred, Failure, Resolver};
use weft::{Protocol, Reactor, ReactorConfig, Transport, factory};
use weft_inspector::{Inspector, InspectorConfig};
use weft_store::StoreOptions;

/// A label with markup in it: the dashboard must show it as text.
const LABEL: &str = "lookup <script>alert('label')</script>";

#[derive(Default)]
struct Lookup {
    line: Vec<u8>,
    /// Kept, never fired: the chain stays pending and stalls.
    waiting: Vec<(Resolver<String>, Deferred<()>)>,
}

impl Lookup {
    fn command(&mut self, transport: &Transport, line: &str) {
        if line == "wait" {
            let (resolver, d) = Deferred::<String>::labeled(LABEL);
            let t = transport.clone();
            let d = d.add_callback(move |answer| t.write(answer.as_bytes()));
            self.waiting.push((resolver, d));
            transport.write(b"waiting\n");
        } else if let Some(text) = line.strip_prefix("fail ") {
            let (resolver, d) = Deferred::<String>::labeled("parse request");
            resolver.errback(Failure::msg(text.to_owned()));
            // Dropped holding its failure: reported as unhandled.
            drop(d);
            transport.write(b"failed\n");
        } else {
            transport.write(line.as_bytes());
            transport.write(b"\n");
        }
    }
}

impl Protocol for Lookup {
    fn data_received(&mut self, transport: &Transport, data: &[u8]) {
        for &b in data {
            if b == b'\n' {
                let line = String::from_utf8_lossy(&self.line).trim().to_owned();
                self.line.clear();
                self.command(transport, &line);
            } else {
                self.line.push(b);
            }
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let port = args.next().unwrap_or_else(|| "7000".into());
    let dashboard = args.next().unwrap_or_else(|| "9180".into());
    let db = args.next().unwrap_or_else(|| "stalled.db".into());
    let stall_ms: u64 = args.next().map_or(Ok(1000), |s| s.parse())?;

    let reactor = Reactor::with_config(ReactorConfig {
        stall_after: Duration::from_millis(stall_ms),
        ..ReactorConfig::default()
    })?;
    let mut config = InspectorConfig::default();
    config.store = Some(StoreOptions::new(db));
    config.dashboard = Some(format!("tcp:{dashboard}:interface=127.0.0.1"));
    let inspector = Inspector::start(&reactor, config)?;
    reactor.listen_as(
        "lookup",
        &format!("tcp:{port}:interface=127.0.0.1"),
        factory(Lookup::default),
    )?;
    if let Some(addr) = inspector.dashboard_addr() {
        println!("lookup on 127.0.0.1:{port}; dashboard on http://{addr}/");
    }
    reactor.run()?;
    inspector.join();
    Ok(())
}

//! A line protocol with the inspector on, whose `wait` command waits on a Deferred nobody
//! fires: open the dashboard and watch it stall, with the line that created it.
//!
//! ```text
//! cargo run -p weft-gateway --example stalled -- [PORT] [DASHBOARD_PORT] [HISTORY_DB] [STALL_MS]
//! printf 'wait\n' | nc 127.0.0.1 7000
//! ```
//!
//! Commands, one per line: `wait` (a Deferred that never fires), `fail TEXT` (a Deferred
//! that fails with TEXT and is dropped unhandled), `crunch` (an async task whose poll blocks
//! the reactor for 300 ms: a slow task), anything else is echoed.

use std::time::Duration;

use weft::defer::{Deferred, Failure, Resolver};
use weft::{Protocol, Reactor, Transport};

use common::{Defaults, Lines};

mod common;

/// A label with markup in it: the dashboard must show it as text.
const LABEL: &str = "lookup <script>alert('label')</script>";

#[derive(Default)]
struct Lookup {
    lines: Lines,
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
        } else if line == "crunch" {
            Reactor::current().spawn_labeled("cruncher", async {
                // CPU-bound work done on the reactor thread, longer than `slow_callback`.
                std::thread::sleep(Duration::from_millis(300));
            });
            transport.write(b"crunching\n");
        } else {
            transport.write(line.as_bytes());
            transport.write(b"\n");
        }
    }
}

impl Protocol for Lookup {
    fn data_received(&mut self, transport: &Transport, data: &[u8]) {
        for line in self.lines.feed(data) {
            self.command(transport, &line);
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    common::serve(
        "lookup",
        Defaults {
            port: "7000",
            dashboard: "9180",
            db: "stalled.db",
            stall_ms: 1000,
        },
        Lookup::default,
    )
}

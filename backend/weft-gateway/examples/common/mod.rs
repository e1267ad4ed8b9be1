//! What the examples share: a line protocol's input split into commands, and a `main`
//! that serves one protocol beside the inspector, configured from the command line.

use std::time::Duration;

use weft::{Protocol, Reactor, ReactorConfig, factory};
use weft_inspector::{Inspector, InspectorConfig};
use weft_store::StoreOptions;

/// A peer's input, a line at a time.
#[derive(Default)]
pub(crate) struct Lines(Vec<u8>);

impl Lines {
    /// The lines `data` completes, trimmed; a partial last line waits for the next call.
    pub(crate) fn feed(&mut self, data: &[u8]) -> Vec<String> {
        let mut lines = Vec::new();
        for &b in data {
            if b == b'\n' {
                lines.push(String::from_utf8_lossy(&self.0).trim().to_owned());
                self.0.clear();
            } else {
                self.0.push(b);
            }
        }
        lines
    }
}

/// What an example listens on when its command line does not say.
pub(crate) struct Defaults {
    /// The protocol's port.
    pub(crate) port: &'static str,
    /// The dashboard's port.
    pub(crate) dashboard: &'static str,
    /// The history database.
    pub(crate) db: &'static str,
    /// How long a chain may wait before it is reported stalled.
    pub(crate) stall_ms: u64,
}

/// Serves `make`'s protocol as `name` on loopback, with the inspector on, until the reactor
/// stops; arguments `[PORT] [DASHBOARD_PORT] [HISTORY_DB] [STALL_MS]` override `defaults`.
pub(crate) fn serve<P: Protocol, F: Fn() -> P + 'static>(
    name: &str,
    defaults: Defaults,
    make: F,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let port = args.next().unwrap_or_else(|| defaults.port.into());
    let dashboard = args.next().unwrap_or_else(|| defaults.dashboard.into());
    let db = args.next().unwrap_or_else(|| defaults.db.into());
    let stall_ms: u64 = args.next().map_or(Ok(defaults.stall_ms), |s| s.parse())?;

    let reactor = Reactor::with_config(ReactorConfig {
        stall_after: Duration::from_millis(stall_ms),
        ..ReactorConfig::default()
    })?;
    let mut config = InspectorConfig::default();
    config.store = Some(StoreOptions::new(db));
    config.dashboard = Some(format!("tcp:{dashboard}:interface=127.0.0.1"));
    let inspector = Inspector::start(&reactor, config)?;
    reactor.listen_as(
        name,
        &format!("tcp:{port}:interface=127.0.0.1"),
        factory(make),
    )?;
    if let Some(addr) = inspector.dashboard_addr() {
        println!("{name} on 127.0.0.1:{port}; dashboard on http://{addr}/");
    }
    reactor.run()?;
    inspector.join();
    Ok(())
}

//! An echo server with the inspector: the program depends on `weft` and `weft-inspector`
//! only. Every connection shows on the dashboard live and in history, with its bytes.
//!
//! ```text
//! cargo run -p weft-inspector --example echo_inspected -- [PORT] [DASHBOARD_PORT] [HISTORY_DB]
//! printf 'hello\n' | nc 127.0.0.1 8000
//! ```
//!
//! Then open the dashboard (http://127.0.0.1:9180/ by default) or scrape its `/metrics`.

use weft::{Protocol, Reactor, Transport, factory};
use weft_inspector::{Inspector, InspectorConfig, StoreOptions};

/// Twisted's `Echo`: writes back whatever it receives.
struct Echo;

impl Protocol for Echo {
    fn data_received(&mut self, transport: &Transport, data: &[u8]) {
        transport.write(data);
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let port = args.next().unwrap_or_else(|| "8000".into());
    let dashboard = args.next().unwrap_or_else(|| "9180".into());
    let db = args.next().unwrap_or_else(|| "echo.db".into());

    let reactor = Reactor::new()?;
    let mut config = InspectorConfig::default();
    config.store = Some(StoreOptions::new(db));
    // Loopback: a dashboard reachable from other machines needs `config.token`.
    config.dashboard = Some(format!("tcp:{dashboard}:interface=127.0.0.1"));
    let inspector = Inspector::start(&reactor, config)?;
    reactor.listen_as("echo", &format!("tcp:{port}"), factory(|| Echo))?;
    if let Some(addr) = inspector.dashboard_addr() {
        println!("echo on port {port}; dashboard on http://{addr}/ (Ctrl+C stops)");
    }
    reactor.run()?;
    inspector.join();
    Ok(())
}

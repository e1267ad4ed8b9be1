//! Two transfers that take two `DeferredLock`s in opposite orders, with the inspector on:
//! open the dashboard and watch the deadlock detected, with both chains, where each waits
//! and who holds what, and the wait-for graph on the Locks page.
//!
//! ```text
//! cargo run -p weft-gateway --example deadlock -- [PORT] [DASHBOARD_PORT] [HISTORY_DB] [STALL_MS]
//! printf 'deadlock\n' | nc 127.0.0.1 7001
//! ```
//!
//! Each `deadlock` line starts one pair and answers `deadlocked ID1 ID2` with the two
//! chains' ids; anything else is echoed.

use std::time::Duration;

use weft::defer::{Deferred, DeferredLock, LockGuard};
use weft::{Protocol, Reactor, ReactorConfig, Transport, factory};
use weft_inspector::{Inspector, InspectorConfig};
use weft_store::StoreOptions;

#[derive(Default)]
struct Bank {
    line: Vec<u8>,
    /// Kept so the dashboard can show them; they never finish.
    transfers: Vec<Deferred<()>>,
}

/// A transfer: takes `first`, waits for `ready` while holding it, then takes `second`.
fn transfer(
    label: &'static str,
    first: DeferredLock,
    second: DeferredLock,
    ready: Deferred<()>,
) -> (weft::defer::Resolver<()>, Deferred<()>) {
    let (start, chain) = Deferred::<()>::labeled(label);
    let chain = chain
        .and_then(move |()| first.acquire())
        .and_then(move |held: LockGuard| ready.add_callback(move |()| held))
        .and_then(move |held| {
            second.acquire().add_callback(move |other| {
                drop(other);
                drop(held);
            })
        });
    (start, chain)
}

impl Bank {
    fn command(&mut self, transport: &Transport, line: &str) {
        if line != "deadlock" {
            transport.write(line.as_bytes());
            transport.write(b"\n");
            return;
        }
        let accounts = DeferredLock::labeled("accounts");
        let ledger = DeferredLock::labeled("ledger");
        let (ready_one, one_ready) = Deferred::<()>::new();
        let (ready_two, two_ready) = Deferred::<()>::new();
        let (start_one, one) = transfer(
            "transfer <accounts first>",
            accounts.clone(),
            ledger.clone(),
            one_ready,
        );
        let (start_two, two) = transfer("transfer <ledger first>", ledger, accounts, two_ready);
        // Each takes its first lock; then each asks for the other's.
        start_one.callback(());
        start_two.callback(());
        ready_one.callback(());
        ready_two.callback(());
        transport.write(format!("deadlocked {} {}\n", one.id(), two.id()).as_bytes());
        self.transfers.extend([one, two]);
    }
}

impl Protocol for Bank {
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
    let port = args.next().unwrap_or_else(|| "7001".into());
    let dashboard = args.next().unwrap_or_else(|| "9181".into());
    let db = args.next().unwrap_or_else(|| "deadlock.db".into());
    let stall_ms: u64 = args.next().map_or(Ok(5000), |s| s.parse())?;

    let reactor = Reactor::with_config(ReactorConfig {
        stall_after: Duration::from_millis(stall_ms),
        ..ReactorConfig::default()
    })?;
    let mut config = InspectorConfig::default();
    config.store = Some(StoreOptions::new(db));
    config.dashboard = Some(format!("tcp:{dashboard}:interface=127.0.0.1"));
    let inspector = Inspector::start(&reactor, config)?;
    reactor.listen_as(
        "bank",
        &format!("tcp:{port}:interface=127.0.0.1"),
        factory(Bank::default),
    )?;
    if let Some(addr) = inspector.dashboard_addr() {
        println!("bank on 127.0.0.1:{port}; dashboard on http://{addr}/");
    }
    reactor.run()?;
    inspector.join();
    Ok(())
}

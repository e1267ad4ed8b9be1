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

use weft::defer::{Deferred, DeferredLock, LockGuard};
use weft::{Protocol, Transport};

use common::{Defaults, Lines};

mod common;

#[derive(Default)]
struct Bank {
    lines: Lines,
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
        for line in self.lines.feed(data) {
            self.command(transport, &line);
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    common::serve(
        "bank",
        Defaults {
            port: "7001",
            dashboard: "9181",
            db: "deadlock.db",
            stall_ms: 5000,
        },
        Bank::default,
    )
}

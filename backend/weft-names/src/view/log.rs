//! The query log's budgets, and its hand-over: entries are held on the reactor thread
//! and handed to the sink together, at most [`HOLD`] after the first of them (or once
//! [`HELD_AT_MOST`] are held), because each hand-over may wake the history writer's
//! thread, a system call and a switch of threads that cost more than answering a query.
//! When the reactor stops, what is held is handed over before history is closed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus::IntCounter;

use super::{Answered, LOG_SAMPLE_EVERY, LoggedQuery, QueryLog, Window, now_ms};

/// The longest an entry is held before the sink gets it.
pub const HOLD: Duration = Duration::from_millis(50);
/// Entries held at most: one more hands them all over at once.
pub const HELD_AT_MOST: usize = 256;

/// The query log's sink with its budgets.
pub(super) struct Log {
    held: Arc<Held>,
    /// Routine answers, then failures.
    budgets: [Budget; 2],
}

impl Log {
    pub(super) fn new(sink: QueryLog, budgets: [Budget; 2]) -> Self {
        let held = Arc::new(Held {
            sink,
            entries: Mutex::new(Vec::new()),
        });
        // A reactor that stops hands over what is held when its connections have closed,
        // before history is written out for the last time (the inspector's own hook in
        // that phase waits; this one runs first).
        if let Some(reactor) = weft::Reactor::try_current() {
            let held = Arc::downgrade(&held);
            reactor.add_shutdown_hook(weft::Phase::After, move || {
                if let Some(held) = held.upgrade() {
                    held.hand_over();
                }
            });
        }
        Self { held, budgets }
    }

    /// Logs the answer `a` of second `second` if its budget lets it.
    pub(super) fn offer(&self, a: &Answered<'_>, second: u64, failed: bool) {
        let Some(weight) = self.budgets[usize::from(failed)].weigh(second) else {
            return;
        };
        let (name, qtype) = match a.query {
            Some(q) => (
                crate::wire::NameText(q.name()).to_string(),
                crate::metrics::type_name(q.query_type()),
            ),
            None => (String::new(), String::new()),
        };
        self.held.hold(LoggedQuery {
            at_ms: now_ms(),
            client: a.client,
            name,
            qtype,
            rcode: crate::metrics::rcode_name(a.rcode),
            latency: a.latency,
            source: a.source.to_string(),
            failed,
            weight,
            upstream_span: a.span,
        });
    }
}

/// Entries logged and not yet handed to the sink.
struct Held {
    sink: QueryLog,
    entries: Mutex<Vec<LoggedQuery>>,
}

impl Held {
    /// Holds `entry`: the first one held sets the hand-over [`HOLD`] from now on the
    /// thread's clock; without a clock (a program with no reactor), it goes at once.
    fn hold(self: &Arc<Self>, entry: LoggedQuery) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let first = entries.is_empty();
        entries.push(entry);
        let full = entries.len() >= HELD_AT_MOST;
        drop(entries);
        if full {
            self.hand_over();
        } else if first {
            match weft::time::try_current_clock() {
                Some(clock) => {
                    let held = self.clone();
                    clock.call_later(HOLD, move || held.hand_over());
                }
                None => self.hand_over(),
            }
        }
    }

    /// Hands every entry held to the sink, in the order they came.
    fn hand_over(&self) {
        let entries = std::mem::take(&mut *self.entries.lock().unwrap_or_else(|p| p.into_inner()));
        for entry in entries {
            (self.sink)(entry);
        }
    }
}

impl Drop for Held {
    /// What is held when the service goes still goes to the sink.
    fn drop(&mut self) {
        self.hand_over();
    }
}

/// A budget of the query log: so many entries a second (0: all), then one in
/// [`LOG_SAMPLE_EVERY`], the rest counted in `skipped`.
pub(super) struct Budget {
    per_second: u64,
    window: Window,
    /// Answers past the budget, to sample one in [`LOG_SAMPLE_EVERY`].
    over: AtomicU64,
    skipped: IntCounter,
}

impl Budget {
    pub(super) fn new(per_second: u64, skipped: IntCounter) -> Self {
        Self {
            per_second,
            window: Window::default(),
            over: AtomicU64::new(0),
            skipped,
        }
    }

    /// The weight of one more entry in second `second`, or `None` (counted) to skip it.
    fn weigh(&self, second: u64) -> Option<u32> {
        if self.per_second == 0 || self.window.count(second) < self.per_second {
            Some(1)
        } else if self
            .over
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(LOG_SAMPLE_EVERY)
        {
            Some(LOG_SAMPLE_EVERY as u32)
        } else {
            self.skipped.inc();
            None
        }
    }
}

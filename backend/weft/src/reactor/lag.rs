//! Reactor lag: how late a probe timer fires, measured continuously.
//!
//! A callback that blocks the reactor thread delays every timer behind it; the probe
//! sees the delay even when the culprit is not a traced callback.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use super::profile;
use crate::observe::{self, Event, ReactorLag};

/// Lag figures, readable from any thread.
#[derive(Debug, Default)]
pub struct LagStats {
    /// Nanoseconds, so the figure fits one atomic that any thread may read without a lock.
    last_ns: AtomicU64,
    /// The worst lag seen, kept with `fetch_max` so a single spike is not overwritten by the next
    /// probe.
    max_ns: AtomicU64,
    /// Lets a reader tell "no lag" from "not measured yet".
    samples: AtomicU64,
}

impl LagStats {
    /// The most recent measurement.
    pub fn last(&self) -> Duration {
        Duration::from_nanos(self.last_ns.load(Relaxed))
    }

    /// The worst measurement since the reactor started.
    pub fn max(&self) -> Duration {
        Duration::from_nanos(self.max_ns.load(Relaxed))
    }

    /// How many measurements were taken.
    pub fn samples(&self) -> u64 {
        self.samples.load(Relaxed)
    }

    fn record(&self, lag: Duration) {
        let ns = u64::try_from(lag.as_nanos()).unwrap_or(u64::MAX);
        self.last_ns.store(ns, Relaxed);
        self.max_ns.fetch_max(ns, Relaxed);
        self.samples.fetch_add(1, Relaxed);
    }
}

/// Wakes every `interval` and records how late it woke.
pub(super) async fn probe(stats: std::sync::Arc<LagStats>, interval: Duration) {
    loop {
        let due = tokio::time::Instant::now() + interval;
        tokio::time::sleep_until(due).await;
        let lag = tokio::time::Instant::now().saturating_duration_since(due);
        stats.record(lag);
        profile::tick(std::time::SystemTime::now());
        // Whatever kept the timer late ran since the last probe: the longest call since
        // then is the one to blame.
        let longest = profile::take_longest();
        observe::emit(|| Event::ReactorLag(ReactorLag { lag, longest }));
    }
}

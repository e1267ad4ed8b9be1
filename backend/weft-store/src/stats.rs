//! Counters the writer and the pruner keep, read by the dashboard and `/metrics`.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use serde::Serialize;

/// Live counters of the store; all monotonic except `last_error`.
///
/// Producers and the writer only touch relaxed atomics, so reading them never slows either down.
#[derive(Debug, Default)]
pub struct StoreStats {
    /// Records accepted by `Writer::try_send`; with `written` and `dropped` it shows what is still
    /// queued.
    queued: AtomicU64,
    written: AtomicU64,
    /// Records lost (queue full, writer stopped, batch not written): counted, never lost silently.
    dropped: AtomicU64,
    /// Of those, the records accepted into the queue and lost with a batch not written.
    dropped_queued: AtomicU64,
    write_errors: AtomicU64,
    reopens: AtomicU64,
    pruned: AtomicU64,
    /// When the writer's current run of failed batches began, unix ms; 0 while writes succeed.
    failing_since_ms: AtomicU64,
    /// A std mutex is right here: it is taken only when an error happens or someone reads it,
    /// never held across an await, and never on the producers' path.
    last_error: Mutex<Option<String>>,
}

impl StoreStats {
    /// Records accepted into the queue.
    pub fn queued(&self) -> u64 {
        self.queued.load(Relaxed)
    }

    /// Records committed to the database.
    pub fn written(&self) -> u64 {
        self.written.load(Relaxed)
    }

    /// Records lost: refused because the queue was full or the writer stopped, or part of a batch
    /// that could not be written.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Relaxed)
    }

    /// Records accepted and neither committed nor counted lost: still queued, or in the
    /// batch being written now (a database that stopped answering holds that one).
    pub fn unwritten(&self) -> u64 {
        let settled = self
            .written()
            .saturating_add(self.dropped_queued.load(Relaxed));
        self.queued().saturating_sub(settled)
    }

    /// Failed attempts: batches that could not be committed, reopens and prune passes that failed.
    pub fn write_errors(&self) -> u64 {
        self.write_errors.load(Relaxed)
    }

    /// Times the database file was found deleted or replaced and was recreated.
    pub fn reopens(&self) -> u64 {
        self.reopens.load(Relaxed)
    }

    /// Rows removed by retention.
    pub fn pruned(&self) -> u64 {
        self.pruned.load(Relaxed)
    }

    /// Since when (unix ms) every batch has failed to be written, while they do: what
    /// happened since is missing from history (kept in memory for the ends of rows).
    pub fn failing_since_ms(&self) -> Option<u64> {
        Some(self.failing_since_ms.load(Relaxed)).filter(|&ms| ms != 0)
    }

    /// The text of the most recent write or prune error, if any ever happened.
    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// A consistent-enough copy of every counter, for JSON and metrics.
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            queued: self.queued(),
            written: self.written(),
            dropped: self.dropped(),
            write_errors: self.write_errors(),
            reopens: self.reopens(),
            pruned: self.pruned(),
            last_error: self.last_error(),
        }
    }

    pub(crate) fn add_queued(&self, n: u64) {
        self.queued.fetch_add(n, Relaxed);
    }

    pub(crate) fn add_written(&self, n: u64) {
        self.written.fetch_add(n, Relaxed);
    }

    /// Counts `n` records refused at the queue (full, or the writer stopped).
    pub(crate) fn add_dropped(&self, n: u64) {
        self.dropped.fetch_add(n, Relaxed);
    }

    /// Counts `n` records accepted into the queue and lost with a batch not written.
    pub(crate) fn add_dropped_queued(&self, n: u64) {
        self.dropped.fetch_add(n, Relaxed);
        self.dropped_queued.fetch_add(n, Relaxed);
    }

    /// The writer's batches began failing at `now_ms`, or (`None`) succeed again.
    pub(crate) fn set_failing(&self, now_ms: Option<u64>) {
        self.failing_since_ms.store(now_ms.unwrap_or(0), Relaxed);
    }

    pub(crate) fn add_reopen(&self) {
        self.reopens.fetch_add(1, Relaxed);
    }

    pub(crate) fn add_pruned(&self, n: u64) {
        self.pruned.fetch_add(n, Relaxed);
    }

    /// Counts an error and remembers its text.
    pub(crate) fn record_error(&self, text: String) {
        self.write_errors.fetch_add(1, Relaxed);
        *self
            .last_error
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(text);
    }
}

/// A copy of [`StoreStats`] at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatsSnapshot {
    /// Records accepted into the queue.
    pub queued: u64,
    /// Records committed.
    pub written: u64,
    /// Records lost (queue full, writer stopped, or failed batch).
    pub dropped: u64,
    /// Failed batches or reopen attempts.
    pub write_errors: u64,
    /// Times the file was recreated after being deleted or replaced.
    pub reopens: u64,
    /// Rows removed by retention.
    pub pruned: u64,
    /// The most recent error text.
    pub last_error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What is unwritten is what was accepted and is neither committed nor lost with a
    /// batch: records the full queue refused were never accepted, and take nothing off it.
    #[test]
    fn unwritten_counts_what_was_accepted_and_is_not_settled() {
        let stats = StoreStats::default();
        stats.add_queued(150);
        stats.add_written(20);
        stats.add_dropped_queued(30);
        stats.add_dropped(1000);
        assert_eq!(stats.unwritten(), 100);
        assert_eq!(stats.dropped(), 1030);
    }
}

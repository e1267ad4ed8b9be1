//! How a store is opened: file, queue, batching, retention.

use std::path::PathBuf;
use std::time::Duration;

/// Settings for [`Store::open_with`](crate::Store::open_with); [`StoreOptions::new`] gives the defaults.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct StoreOptions {
    /// The SQLite file; created with its schema if missing.
    pub path: PathBuf,
    /// Records the queue holds before `try_send` starts dropping them. Default 65 536.
    pub queue_capacity: usize,
    /// Records per transaction at most. Default 512.
    pub batch_size: usize,
    /// The longest a queued record waits before its batch is committed; also the most a crash
    /// can lose. Default 1 s: each commit rewrites the pages it touched, so fewer commits cost
    /// the writer (and the core it shares with a service) less.
    pub flush_interval: Duration,
    /// Rows per multi-row `INSERT`; 1 writes one statement per record. Default 64.
    pub rows_per_statement: usize,
    /// How long a statement waits for another connection's lock, and a query for a free
    /// reader, before failing as busy. Default 2 s.
    pub busy_timeout: Duration,
    /// Finished rows older than this are pruned. Default 24 h.
    pub retention: Duration,
    /// How often retention runs. Default 60 s.
    pub prune_interval: Duration,
    /// Rows deleted per prune transaction, so the writer is never locked out for long. Default 2 000.
    pub prune_chunk: u32,
    /// Connections in the read pool. Default 4.
    pub max_readers: u32,
}

impl StoreOptions {
    /// The defaults, for the file at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            queue_capacity: 65_536,
            batch_size: 512,
            flush_interval: Duration::from_millis(1000),
            rows_per_statement: 64,
            busy_timeout: Duration::from_secs(2),
            retention: Duration::from_secs(24 * 60 * 60),
            prune_interval: Duration::from_secs(60),
            prune_chunk: 2_000,
            max_readers: 4,
        }
    }
}

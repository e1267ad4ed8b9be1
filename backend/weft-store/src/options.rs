//! How a store is opened: file or database, instance, queue, batching, retention.

use std::path::PathBuf;
use std::time::Duration;

/// Settings for [`Store::open_with`](crate::Store::open_with); [`StoreOptions::new`] gives the defaults.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct StoreOptions {
    /// The SQLite file; created with its schema if missing. Unused when `url` is set.
    pub path: PathBuf,
    /// A `postgres://` URL: history goes to that PostgreSQL database (its schema created or
    /// brought up to date at open) instead of the file, shared with the other gateways
    /// writing there. Default none.
    pub url: Option<String>,
    /// The name this store's rows carry, which the dashboard filters history by when many
    /// gateways share a database. Default: the host name.
    pub instance: String,
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
    /// Free space the writer leaves on the history file's filesystem, so that retention
    /// can always delete (which writes first) and hand the journal back: below it, batches
    /// are dropped (and counted) until there is room. `None`, the default, keeps a tenth of
    /// the filesystem, at least 16 MiB (what the journal and the file may grow by between
    /// two looks, with room to spare) and at most 64 MiB.
    pub min_free_bytes: Option<u64>,
}

impl StoreOptions {
    /// The defaults, for the file at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            url: None,
            instance: default_instance(),
            queue_capacity: 65_536,
            batch_size: 512,
            flush_interval: Duration::from_millis(1000),
            rows_per_statement: 64,
            busy_timeout: Duration::from_secs(2),
            retention: Duration::from_secs(24 * 60 * 60),
            prune_interval: Duration::from_secs(60),
            prune_chunk: 2_000,
            max_readers: 4,
            min_free_bytes: None,
        }
    }

    /// The defaults, for the PostgreSQL database at `url` (`postgres://user:password@host/db`).
    pub fn postgres(url: impl Into<String>) -> Self {
        Self {
            url: Some(url.into()),
            ..Self::new("")
        }
    }

    /// Whether `url` is a PostgreSQL URL the driver reads (it does not connect); the error
    /// says why not, without the password.
    pub fn check_url(url: &str) -> Result<(), crate::StoreError> {
        crate::backend::pg_options(url).map(|_| ())
    }

    /// The free space the writer leaves on a filesystem of `size` bytes.
    pub(crate) fn reserve(&self, size: u64) -> u64 {
        self.min_free_bytes
            .unwrap_or((size / 10).clamp(16 << 20, 64 << 20))
    }

    /// Where history goes, for messages: the file, or the URL without its password.
    pub fn location(&self) -> String {
        match &self.url {
            Some(url) => crate::backend::redacted(url),
            None => self.path.display().to_string(),
        }
    }
}

/// The host name, the instance a store writes as unless told otherwise (`localhost` if the
/// system has none).
pub fn default_instance() -> String {
    let name = rustix::system::uname();
    let name = name.nodename().to_string_lossy();
    if name.is_empty() {
        "localhost".to_owned()
    } else {
        name.into_owned()
    }
}

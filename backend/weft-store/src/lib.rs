//! History for weft, in a SQLite file or a PostgreSQL database a fleet of gateways shares:
//! migrations, a batched writer, retention and the dashboard's queries.
//!
//! The store knows nothing of the reactor or the hub; of weft it knows the vocabulary (close
//! reasons, transports, Deferred states, step kinds and outcomes), which [`Column`] maps to
//! and from its columns. The inspector's history pipeline (in `weft-inspector`) turns the hub's events into the plain records of [`records`] and hands them
//! to a [`Writer`], which never blocks it; the dashboard reads them back through the query
//! methods on [`Store`].
//!
//! ```no_run
//! # async fn demo() -> Result<(), weft_store::StoreError> {
//! use weft_store::{EventRecord, Store};
//!
//! let store = Store::open("weft.db").await?;
//! let writer = store.writer();
//! writer.try_send(EventRecord { seq: 1, at_ms: 0, kind: "started".into(), payload_json: "{}".into() });
//! store.flush().await?;
//! let events = store.events_after(0, 100).await?;
//! # let _ = events;
//! store.shutdown().await?;
//! # Ok(()) }
//! ```
//!
//! # Layout
//!
//! - [`records`]: the row types ([`ServiceRecord`], [`ConnectionRecord`], [`DeferredRecord`],
//!   [`StepRecord`], [`EventRecord`], the query log's [`QueryRecord`]) and the [`Record`] enum
//!   the writer accepts.
//! - `columns`: [`Column`], each of weft's enums as the label its column holds and back.
//! - `backend`: the two databases: a pool or connection on either, and where their SQL
//!   differs ([`StoreOptions::url`] picks PostgreSQL; every row carries
//!   [`StoreOptions::instance`]).
//! - `schema`: connection settings (WAL, `synchronous=NORMAL`, busy timeout), the embedded
//!   migrations from the repository's `migrations/`, and the file identity used to notice deletion.
//! - `writer`: the bounded queue and the task that drains it. Records flow
//!   `Writer::try_send` → queue → batch (by count or age) → `batch` → one transaction.
//! - `batch`: the prepared multi-row upserts that write one batch; `insert`: each record
//!   as a row of its table (columns, key, what an upsert merges, its binds);
//!   `batch_rounds`: a batch's records by table, and in rounds where PostgreSQL needs them.
//! - `catalog`: the services the writer was given, kept to be listed before they are
//!   committed and written again into a recreated file.
//! - `lock`: one writer per file: the advisory lock on `PATH.lock` a store takes before it
//!   touches a row, and holds while its writer runs.
//! - `interrupted`: at open, closing the rows a killed process left open ([`PROCESS_ENDED`]).
//! - `retention`: the background task deleting finished rows older than the window, in chunks.
//! - `queries`: the read side, on a connection pool separate from the writer's connection;
//!   `query_sql`: its statements.
//! - `stats`: the counters (queued, written, dropped, errors) producers and the writer bump.
//! - `options`: [`StoreOptions`], the file, queue, batching and retention settings.
//! - `error`: [`StoreError`].

mod backend;
mod batch;
mod batch_rounds;
mod catalog;
mod columns;
mod error;
mod insert;
mod interrupted;
mod lock;
mod options;
mod queries;
mod query_sql;
pub mod records;
mod retention;
mod schema;
mod stats;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use sqlx::{PgPool, SqlitePool};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use columns::Column;
pub use error::StoreError;
pub use interrupted::{NOT_RECORDED, PROCESS_ENDED};
pub use options::{StoreOptions, default_instance};
pub use queries::{ConnectionState, DeferredFilter, MAX_LIMIT, SEARCH_WAIT, SEARCHES_AT_ONCE};
pub use query_sql::ListFilter;
pub use records::{
    ConnectionRecord, DeferredDetail, DeferredRecord, EventRecord, NamedStepRecord, QueryRecord,
    Record, ServiceRecord, StepRecord, TaskRecord,
};
pub use stats::{StatsSnapshot, StoreStats};
pub use writer::Writer;

use backend::Pool;
use schema::PoolCell;

/// An open history database: a writer for producers and queries for readers.
///
/// Cloning is cheap and every clone shares the same file, writer and counters. Opening spawns the
/// writer and retention tasks on the current tokio runtime; [`Store::shutdown`] commits what is
/// queued and stops them.
#[derive(Debug, Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    options: StoreOptions,
    /// Shared with the writer, which swaps in a new read pool when it recreates a deleted file.
    pools: Arc<PoolCell>,
    writer: Writer,
    stats: Arc<StoreStats>,
    /// Tells the retention task to stop at `shutdown`.
    stop_retention: watch::Sender<bool>,
    /// Taken by the first `shutdown`; a std mutex because it is never held across an await.
    tasks: Mutex<Option<(JoinHandle<()>, JoinHandle<()>)>>,
    /// Held by a search of text within a column ([`queries::SEARCHES_AT_ONCE`]).
    searches: tokio::sync::Semaphore,
}

impl Store {
    /// Opens (creating and migrating if needed) the database at `path` with default options.
    pub async fn open(path: impl AsRef<Path>) -> Result<Store, StoreError> {
        Self::open_with(StoreOptions::new(path.as_ref())).await
    }

    /// Opens (creating and migrating if needed) the database described by `options`: the
    /// file, or the PostgreSQL database at [`StoreOptions::url`].
    ///
    /// The store is the file's only writer: it first takes the lock beside the file
    /// (`PATH.lock`), and fails with [`StoreError::InUse`] if another store, in this
    /// process or another, holds it; the lock is held until the writer stops
    /// ([`shutdown`](Self::shutdown), or every handle dropped). Readers do not need it.
    /// Connections still open in the file and chains still pending were then left by a
    /// process that ended without stopping cleanly, and are closed now with the reason
    /// [`PROCESS_ENDED`], so they show as closed and retention can prune them. In a shared
    /// database only this instance's rows are closed so: instance names must be unique in a
    /// fleet.
    ///
    /// An existing file holding another program's tables, or migrated by a later weft, is
    /// refused ([`StoreError::Foreign`], [`StoreError::Later`]) before anything is written
    /// to it.
    ///
    /// A file another program holds locked (a `sqlite3` shell in a write transaction, a
    /// `VACUUM`) for longer than [`StoreOptions::busy_timeout`] does not stop the open:
    /// the store starts with a read pool that connects when asked (a WAL file can still be
    /// read), and its writer migrates and opens the file with its first batch that finds
    /// the lock gone; the batches before are dropped and counted, as when the file is
    /// locked later.
    pub async fn open_with(options: StoreOptions) -> Result<Store, StoreError> {
        // Rows begun before this are an earlier process's.
        let started_ms = retention::now_ms();
        let (lock, pool, opened) = match &options.url {
            Some(url) => {
                match backend::open_pg_pool(url, options.busy_timeout, options.max_readers).await {
                    Ok(pool) => (None, Pool::Postgres(pool), writer::Opened::Now),
                    // The server is down or out of reach: serve, and write history once it
                    // answers, as for a file another program holds locked.
                    Err(error) if error.is_unreachable() => {
                        tracing::warn!(
                            url = %options.location(),
                            %error,
                            "the history database cannot be reached; serving without writing \
                             history until it can (tried with each batch)"
                        );
                        let pool =
                            backend::lazy_pg_pool(url, options.busy_timeout, options.max_readers)?;
                        (None, Pool::Postgres(pool), writer::Opened::Later)
                    }
                    Err(error) => return Err(error),
                }
            }
            None => {
                let lock = lock::WriterLock::acquire(&options.path)?;
                let path = &options.path;
                // Another program's tables, or a later weft's schema, are left untouched:
                // `open_pool` reads them before it writes anything.
                match schema::open_pool(path, options.busy_timeout, options.max_readers).await {
                    Ok(pool) => (Some(lock), Pool::Sqlite(pool), writer::Opened::Now),
                    Err(error) if error.is_busy() || error.is_full() => {
                        match error.is_full() {
                            true => tracing::warn!(
                                path = %path.display(),
                                %error,
                                "the disk holding the history file is full; serving without \
                                 writing history until there is room (tried with each batch)"
                            ),
                            false => tracing::warn!(
                                path = %path.display(),
                                %error,
                                "the history file is locked by another program; serving \
                                 without writing history until it is let go (tried with each \
                                 batch)"
                            ),
                        }
                        let pool =
                            schema::lazy_read_pool(path, options.busy_timeout, options.max_readers);
                        (Some(lock), Pool::Sqlite(pool), writer::Opened::Later)
                    }
                    Err(error) => return Err(error),
                }
            }
        };
        // Nothing of this process is written yet: every open row is an earlier one's,
        // whatever time it says (another host's clock, a clock stepped back).
        // Not past this start: the lock file's time is its filesystem's clock.
        let alive_ms = lock
            .as_ref()
            .and_then(|l| l.previous_alive_ms)
            .map(|alive| alive.min(started_ms));
        let leftovers_closed = opened == writer::Opened::Now
            && interrupted::close_what_was_left_open(
                &pool,
                &options.instance,
                &options.location(),
                (i64::MAX, alive_ms),
                interrupted::Then::Retry,
            )
            .await;
        let pools = Arc::new(PoolCell::new(pool));
        let stats = Arc::new(StoreStats::default());
        let (writer, task) = writer::create(
            &options,
            stats.clone(),
            pools.clone(),
            lock,
            opened,
            writer::Leftovers {
                started_ms,
                alive_ms,
                closed: leftovers_closed,
            },
        )
        .await?;
        let writer_task = tokio::spawn(task.run());
        let (stop_retention, stop) = watch::channel(false);
        let retention_task = tokio::spawn(retention::run(
            pools.clone(),
            stats.clone(),
            options.retention,
            options.prune_interval,
            options.prune_chunk,
            stop,
        ));
        Ok(Store {
            inner: Arc::new(Inner {
                options,
                pools,
                writer,
                stats,
                stop_retention,
                tasks: Mutex::new(Some((writer_task, retention_task))),
                searches: tokio::sync::Semaphore::new(queries::SEARCHES_AT_ONCE),
            }),
        })
    }

    /// A handle for producers; clone it freely.
    pub fn writer(&self) -> Writer {
        self.inner.writer.clone()
    }

    /// Queues a record without waiting; `false` means it was dropped (and counted).
    pub fn try_send(&self, record: impl Into<Record>) -> bool {
        self.inner.writer.try_send(record)
    }

    /// Forgets the service `name` (removed from the configuration): it is no longer listed,
    /// and its row is deleted with the writer's next batch. Never waits.
    pub fn remove_service(&self, name: &str) {
        self.inner.writer.remove_service(name);
    }

    /// The store's counters.
    pub fn stats(&self) -> &StoreStats {
        &self.inner.stats
    }

    /// The highest event number up to which history is complete (see
    /// [`Writer::complete_through`]): 0 until the producer marks one.
    pub fn complete_through(&self) -> u64 {
        self.inner.writer.complete_through()
    }

    /// The read pool of a history file, for queries this crate does not provide. It changes
    /// if the file is recreated, so take it per use rather than keeping it. `None` when
    /// history is in PostgreSQL.
    pub fn sqlite_pool(&self) -> Option<SqlitePool> {
        match self.pool() {
            Pool::Sqlite(pool) => Some(pool),
            Pool::Postgres(_) => None,
        }
    }

    /// The read pool of a shared PostgreSQL database; `None` when history is in a file.
    pub fn pg_pool(&self) -> Option<PgPool> {
        match self.pool() {
            Pool::Postgres(pool) => Some(pool),
            Pool::Sqlite(_) => None,
        }
    }

    /// The instance this store's rows carry.
    pub fn instance(&self) -> &str {
        &self.inner.options.instance
    }

    /// The read pool now.
    fn pool(&self) -> Pool {
        self.inner.pools.get()
    }

    /// The process that seems to write the history file at `path` now, read without
    /// taking its lock (a hint for tools that only look, such as a configuration check):
    /// the id the lock's holder wrote beside the file, if that process runs. Only
    /// [`open_with`](Self::open_with) decides whether the file is free.
    pub fn writer_pid(path: impl AsRef<Path>) -> Option<u32> {
        lock::writer_pid(path.as_ref())
    }

    /// What [`open_with`](Self::open_with) would refuse in the existing SQLite file at
    /// `path`, read without writing to it or taking its lock (for a configuration check):
    /// a file that is not a database, one with another program's tables, or one whose
    /// schema a later weft migrated.
    pub async fn check_file(path: impl AsRef<Path>) -> Result<(), StoreError> {
        schema::check_file(path.as_ref()).await
    }

    /// What [`open_with`](Self::open_with) would refuse at the PostgreSQL database at
    /// `url`, found without writing to it (for a configuration check): a server that
    /// answers and refuses the login (a wrong password, no such database), or a role that
    /// may not create the history's tables (opening creates and migrates them). A server
    /// out of reach within `timeout` is no refusal: the gateway serves, and writes history
    /// once it answers.
    pub async fn check_database(url: &str, timeout: std::time::Duration) -> Result<(), StoreError> {
        let options = backend::pg_options(url)?;
        let mut conn = match backend::open_pg_connection(&options, url, timeout).await {
            Ok(conn) => conn,
            Err(e) if e.is_unreachable() => return Ok(()),
            Err(e) => return Err(e),
        };
        if let Some(table) = backend::missing_table(&mut conn).await? {
            return Err(backend::missing_table_error(url, table));
        }
        let may_create: bool =
            sqlx::query_scalar("SELECT has_schema_privilege(current_user, 'public', 'CREATE')")
                .fetch_one(&mut conn)
                .await?;
        let _ = sqlx::Connection::close(conn).await;
        if may_create {
            return Ok(());
        }
        Err(StoreError::Connect {
            url: backend::redacted(url),
            source: sqlx::Error::Configuration(
                "its role may not create tables in schema public, which opening the history \
                 does (it creates and migrates them): grant it CREATE there, or use a role \
                 that owns the schema"
                    .into(),
            ),
        })
    }

    /// The lock file beside the history file at `path`, which its one writer holds:
    /// `PATH.lock`, of the file `path` names through any symlinks.
    pub fn lock_path(path: impl AsRef<Path>) -> PathBuf {
        lock::lock_path(path.as_ref())
    }

    /// Refuses a history file at `path` with more than one name (hard links), as opening
    /// it does ([`StoreError::HardLinked`]).
    pub fn check_one_name(path: impl AsRef<Path>) -> Result<(), StoreError> {
        lock::one_name(path.as_ref())
    }

    /// The options the store was opened with.
    pub fn options(&self) -> &StoreOptions {
        &self.inner.options
    }

    /// Returns once every record queued before the call is committed (or dropped as unwritable).
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.inner.writer.flush().await
    }

    /// Deletes finished rows older than `cutoff_ms` (unix ms) now, as retention does on its own
    /// schedule. Returns the number of rows deleted.
    pub async fn prune_before(&self, cutoff_ms: i64) -> Result<u64, StoreError> {
        let mut n = 0;
        let pruned = retention::prune(
            &self.pool(),
            cutoff_ms,
            self.inner.options.prune_chunk,
            &mut n,
        )
        .await;
        self.inner.stats.add_pruned(n);
        pruned?;
        Ok(n)
    }

    /// Commits everything queued, stops the writer and retention, and closes the database.
    /// Records sent afterwards are dropped and counted. Calling it again does nothing.
    pub async fn shutdown(&self) -> Result<(), StoreError> {
        let tasks = self
            .inner
            .tasks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        let Some((writer_task, retention_task)) = tasks else {
            return Ok(());
        };
        let _ = self.inner.stop_retention.send(true);
        let _ = retention_task.await;
        let flushed = self.inner.writer.stop().await;
        let _ = writer_task.await;
        self.pool().close().await;
        flushed
    }
}

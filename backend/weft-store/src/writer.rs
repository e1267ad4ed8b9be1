//! The writer: a bounded queue in front of one task that commits records in batches.
//!
//! Producers call [`Writer::try_send`], which never waits: a record that does not fit in the queue
//! is dropped and counted. The task commits a batch when it holds `batch_size` records or when the
//! oldest one has waited `flush_interval`. When a batch cannot be committed (the file is locked,
//! full, read-only, ...) its records are dropped and counted, the error is logged once for the
//! whole burst, and the next batch tries again on a fresh connection. Before each batch the task
//! checks that the path still names the file it opened; if the file was deleted or replaced it
//! recreates and migrates it, and writes into it again every service it was given (the
//! [`Catalog`]): services are described once, at start.
//!
//! A record that ends a row (a connection's close, a chain's end) is not dropped with its
//! batch, nor at a full queue: up to [`OWED_MAX`] of them are kept and written with a later
//! batch ([`Owed`]), so a write outage or a burst does not leave connections open in
//! history that closed long ago.
//!
//! A producer that numbers its records (the hub's events) queues a mark after the records
//! of each run of numbers ([`Writer::mark`]); once every record queued before a mark is
//! committed or dropped, history is complete up to it ([`Writer::complete_through`]).

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::postgres::PgConnectOptions;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, timeout_at};

use crate::backend::{self, Conn, Dialect};
use crate::batch::BatchSql;
use crate::catalog::Catalog;
use crate::lock::WriterLock;
use crate::records::Record;
use crate::schema::{self, FileId, PoolCell};
use crate::stats::StoreStats;
use crate::{StoreError, StoreOptions};

/// How often an idle writer checks that its lock file is still there.
const LOCK_CHECK: Duration = Duration::from_secs(1);

/// Most records that end a row kept for a later batch; past it they are dropped (and
/// counted), and their rows closed when the writer stops.
pub(crate) const OWED_MAX: usize = 16_384;

/// Records that end a row, not yet written: from a batch that could not be committed, or
/// refused by a full queue. Shared by the producers and the task.
#[derive(Debug, Default)]
pub(crate) struct Owed {
    records: Mutex<Vec<Record>>,
    /// Some were dropped (over [`OWED_MAX`]): rows may read open that are not.
    lost: std::sync::atomic::AtomicBool,
}

impl Owed {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Record>> {
        self.records
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Keeps `record` if there is room; `false` (and it is lost) when not.
    fn keep(&self, record: Record) -> bool {
        let mut records = self.lock();
        if records.len() >= OWED_MAX {
            self.lost.store(true, Ordering::Relaxed);
            return false;
        }
        records.push(record);
        true
    }

    fn take(&self) -> Vec<Record> {
        std::mem::take(&mut *self.lock())
    }

    fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Whether an end was ever lost, or one is still owed.
    fn incomplete(&self) -> bool {
        self.lost.load(Ordering::Relaxed) || !self.is_empty()
    }
}

/// What travels on the queue.
#[derive(Debug)]
#[expect(
    clippy::large_enum_variant,
    reason = "records are nearly every message; boxing them would cost an allocation each"
)]
pub(crate) enum Command {
    Record(Record),
    /// The service catalog changed and the file must follow (a removal): wakes the task.
    Catalog,
    /// Every event numbered up to this was queued before (or is known lost).
    Mark(u64),
    /// Commit everything queued before this, then answer; with `stop`, also end the task.
    Flush {
        done: oneshot::Sender<()>,
        stop: bool,
    },
}

/// A cheap, cloneable handle producers use to queue records.
#[derive(Debug, Clone)]
pub struct Writer {
    /// Bounded: when it is full, `try_send` drops and counts the record instead of waiting.
    tx: mpsc::Sender<Command>,
    stats: Arc<StoreStats>,
    /// Services are kept here as well as queued, so a service whose record was dropped still
    /// reaches the file.
    catalog: Arc<Catalog>,
    /// The highest event number up to which history is complete, raised by the task.
    complete: Arc<AtomicU64>,
    /// Where a record that ends a row waits when the queue is full.
    owed: Arc<Owed>,
}

impl Writer {
    /// Queues `record` without waiting. Returns `false` (and counts a drop) if the queue is full or
    /// the writer has stopped. A service is also kept in memory, dropped or not: the store
    /// lists it at once and writes it again into a recreated file.
    pub fn try_send(&self, record: impl Into<Record>) -> bool {
        let record = record.into();
        let service = matches!(record, Record::Service(_));
        if let Record::Service(service) = &record {
            self.catalog.keep(service);
        }
        match self.tx.try_send(Command::Record(record)) {
            Ok(()) => {
                self.stats.add_queued(1);
                true
            }
            // The writer takes it with its next batch, if there is room.
            Err(mpsc::error::TrySendError::Full(Command::Record(record)))
                if record.ends_a_row() =>
            {
                let kept = self.owed.keep(record);
                if kept {
                    self.stats.add_queued(1);
                } else {
                    self.stats.add_dropped(1);
                }
                kept
            }
            Err(_) => {
                if service {
                    // Written with the catalog by a later batch instead.
                    self.catalog.mark_unsynced();
                }
                self.stats.add_dropped(1);
                false
            }
        }
    }

    /// Says that every event numbered up to `seq` has had its records queued (or was lost
    /// before reaching the queue): once those are committed or dropped, history is complete
    /// up to `seq`. Never waits; `false` if the queue is full (mark again later: a later
    /// mark covers this one).
    pub fn mark(&self, seq: u64) -> bool {
        self.tx.try_send(Command::Mark(seq)).is_ok()
    }

    /// The highest event number up to which history is complete: each event numbered up to
    /// it is committed, or will never be (dropped, or left out). Read it before querying,
    /// and what the query finds at or below it is final.
    pub fn complete_through(&self) -> u64 {
        self.complete.load(Ordering::Acquire)
    }

    /// Forgets the service `name`: it is no longer listed, and its row is deleted with the
    /// next batch (retried until a commit succeeds). Never waits.
    pub fn remove_service(&self, name: &str) {
        self.catalog.forget(name);
        // A full queue means batches are coming anyway; each writes the catalog.
        let _ = self.tx.try_send(Command::Catalog);
    }

    /// Returns once every record queued before the call is committed (or dropped as unwritable).
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.command(false).await
    }

    /// Records waiting in the queue now.
    pub fn queue_len(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    /// The store's counters.
    pub fn stats(&self) -> &StoreStats {
        &self.stats
    }

    /// The services given to [`try_send`](Self::try_send).
    pub(crate) fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// Flushes, then stops the task; later `try_send`s are dropped and counted.
    pub(crate) async fn stop(&self) -> Result<(), StoreError> {
        self.command(true).await
    }

    async fn command(&self, stop: bool) -> Result<(), StoreError> {
        let (done, answer) = oneshot::channel();
        self.tx
            .send(Command::Flush { done, stop })
            .await
            .map_err(|_| StoreError::WriterStopped)?;
        answer.await.map_err(|_| StoreError::WriterStopped)
    }
}

/// The task's state: its own connection, the statements, and whether it is in an error burst.
pub(crate) struct WriterTask {
    rx: mpsc::Receiver<Command>,
    path: PathBuf,
    /// Where history goes, for logs: the file, or the URL without its password.
    location: String,
    /// The shared database's URL and settings, when history goes there instead of the file.
    postgres: Option<(String, PgConnectOptions)>,
    /// Used again when the writer opens a fresh connection or read pool after a failure.
    busy_timeout: Duration,
    /// Size of the read pool the writer opens when it recreates a deleted file.
    max_readers: u32,
    /// The free space it leaves, given the filesystem's size ([`StoreOptions::reserve`]).
    options: StoreOptions,
    /// Most records committed in one transaction.
    batch_size: usize,
    /// Longest a queued record waits for its batch to fill before it is committed anyway.
    flush_interval: Duration,
    sql: BatchSql,
    stats: Arc<StoreStats>,
    /// Where a recreated file's new read pool is swapped in for the queries.
    pools: Arc<PoolCell>,
    /// Written again into a recreated file.
    catalog: Arc<Catalog>,
    /// The highest mark received: every record queued before it is committed or pending.
    marked: u64,
    /// Raised to `marked` once pending is committed (or dropped).
    complete: Arc<AtomicU64>,
    /// Records that end a row, kept for the next batch.
    owed: Arc<Owed>,
    /// `None` after a failure: the next batch opens a fresh connection.
    conn: Option<Conn>,
    /// The file `conn` and the read pool were opened on.
    file: Option<FileId>,
    /// The journal files (`-wal`, `-shm`) SQLite kept beside it when `conn` was opened:
    /// one deleted (or replaced) since is written on unseen, and lost with the process.
    journal: [Option<FileId>; 2],
    /// `Later` until the writer has opened a file that was locked at start, or reached a
    /// database that was out of reach.
    opened: Opened,
    /// Set by the first error of a burst, cleared by the next success; errors are logged only
    /// when it flips, so a broken disk produces two log lines, not thousands.
    failing: bool,
    /// The file's one-writer lock, let go when the task ends (none for a shared database).
    lock: Option<WriterLock>,
    /// What an earlier process left open, and whether it is closed yet.
    leftovers: Leftovers,
    /// The task trying again to close what an earlier process left open, once a try failed:
    /// in the background, off the batches' way (a lock on those rows would hold each batch
    /// for the read timeout).
    retrying: Option<Retrying>,
}

/// The longest wait between two tries at closing what an earlier process left open.
const LEFTOVERS_RETRY_MAX: Duration = Duration::from_secs(30);

/// A task trying again to close what an earlier process left open; stopped when dropped.
struct Retrying(Option<tokio::task::JoinHandle<()>>);

impl Retrying {
    /// Stops the task and waits until it has (a try under way is dropped; its
    /// transaction's rollback may still be on its way to the server). Whether it had
    /// closed them: it ends of itself only then, and a task aborted or panicked is not.
    async fn stop(mut self) -> bool {
        let Some(task) = self.0.take() else {
            return false;
        };
        task.abort();
        task.await.is_ok()
    }
}

impl Drop for Retrying {
    fn drop(&mut self) {
        if let Some(task) = &self.0 {
            task.abort();
        }
    }
}

/// What an earlier process left open: rows begun before `started_ms` (when this store was
/// opened), and whether they are closed yet (else the writer tries again in the background).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Leftovers {
    pub(crate) started_ms: i64,
    /// When the process before was last seen alive (`WriterLock::previous_alive_ms`).
    pub(crate) alive_ms: Option<i64>,
    pub(crate) closed: bool,
}

/// Whether the store's file was opened and migrated before the writer was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Opened {
    Now,
    /// Another program held it locked, or the database server was out of reach: the
    /// writer's first batch to find it free (or reach it) migrates it, closes what an
    /// earlier process left open, and opens it.
    Later,
}

/// Creates the queue and the task (not yet spawned), on a file already migrated unless
/// `opened` says it is left to the writer.
pub(crate) async fn create(
    options: &StoreOptions,
    stats: Arc<StoreStats>,
    pools: Arc<PoolCell>,
    lock: Option<WriterLock>,
    opened: Opened,
    leftovers: Leftovers,
) -> Result<(Writer, WriterTask), StoreError> {
    let postgres = match &options.url {
        // A batch waits this long at most for a table another session holds locked, then
        // fails (counted, and the dashboard says history is behind) and the next tries.
        Some(url) => Some((
            url.clone(),
            backend::pg_options(url)?.options([("lock_timeout", backend::WRITE_LOCK_WAIT)]),
        )),
        None => None,
    };
    let (conn, dialect) = match &postgres {
        // Out of reach at start: the first batch connects.
        Some(_) if opened == Opened::Later => (None, Dialect::Postgres),
        Some((url, pg)) => (
            Some(Conn::Postgres(
                backend::open_pg_connection(pg, url, options.busy_timeout).await?,
            )),
            Dialect::Postgres,
        ),
        None if opened == Opened::Later => (None, Dialect::Sqlite),
        // Locked again since it was migrated: the first batch opens the connection.
        None => match schema::open_writer_connection(&options.path, options.busy_timeout).await {
            Ok(conn) => (Some(Conn::Sqlite(conn)), Dialect::Sqlite),
            Err(e) if e.is_busy() => (None, Dialect::Sqlite),
            Err(e) => return Err(e),
        },
    };
    let (tx, rx) = mpsc::channel(options.queue_capacity.max(1));
    let catalog = Arc::new(Catalog::default());
    let complete = Arc::new(AtomicU64::new(0));
    let owed = Arc::new(Owed::default());
    let task = WriterTask {
        rx,
        path: options.path.clone(),
        location: options.location(),
        postgres,
        busy_timeout: options.busy_timeout,
        max_readers: options.max_readers,
        options: options.clone(),
        batch_size: options.batch_size.max(1),
        flush_interval: options.flush_interval,
        sql: BatchSql::new(dialect, options.rows_per_statement, &options.instance),
        stats: stats.clone(),
        pools,
        catalog: catalog.clone(),
        marked: 0,
        complete: complete.clone(),
        owed: owed.clone(),
        conn,
        file: match opened {
            Opened::Now => FileId::of(&options.path),
            Opened::Later => None,
        },
        journal: schema::journal_ids(&options.path),
        opened,
        failing: false,
        lock,
        leftovers,
        retrying: None,
    };
    Ok((
        Writer {
            tx,
            stats,
            catalog,
            complete,
            owed,
        },
        task,
    ))
}

impl WriterTask {
    /// Runs until stopped or until every [`Writer`] is gone, committing what is queued first.
    pub(crate) async fn run(mut self) {
        if self.opened == Opened::Now && !self.leftovers.closed {
            self.retry_leftovers();
        }
        let mut pending: Vec<Record> = Vec::with_capacity(self.batch_size);
        let mut incoming: Vec<Command> = Vec::with_capacity(self.batch_size);
        let mut deadline: Option<Instant> = None;
        loop {
            // `pending` is always below `batch_size` here, so the limit is at least 1.
            let limit = self.batch_size - pending.len();
            let received = match deadline {
                // Idle, the lock is still looked after: deleted with the history files,
                // it is taken again before a second writer can start on them.
                None if self.lock.is_some() => {
                    match tokio::time::timeout(LOCK_CHECK, self.rx.recv_many(&mut incoming, limit))
                        .await
                    {
                        Ok(n) => n,
                        Err(_elapsed) => {
                            if let Err(error) = self.keep_lock() {
                                self.begin_failing(&error, "cannot keep the history file's lock; until writes succeed again, rows' ends are kept to write then (as many as fit) and other records dropped and counted");
                            }
                            continue;
                        }
                    }
                }
                None => self.rx.recv_many(&mut incoming, limit).await,
                Some(at) => match timeout_at(at, self.rx.recv_many(&mut incoming, limit)).await {
                    Ok(n) => n,
                    Err(_elapsed) => {
                        self.commit(&mut pending).await;
                        deadline = self.retry_catalog();
                        continue;
                    }
                },
            };
            if received == 0 {
                // Every sender is gone.
                self.commit(&mut pending).await;
                break;
            }
            let mut stop = None;
            for command in incoming.drain(..) {
                match command {
                    Command::Record(record) => {
                        pending.push(record);
                        if pending.len() >= self.batch_size {
                            self.commit(&mut pending).await;
                            deadline = None;
                        }
                    }
                    Command::Flush { done, stop: false } => {
                        self.commit(&mut pending).await;
                        deadline = None;
                        let _ = done.send(());
                    }
                    Command::Flush { done, stop: true } => stop = Some(done),
                    Command::Mark(seq) => self.mark(seq, &pending),
                    Command::Catalog => {}
                }
            }
            if let Some(done) = stop {
                self.drain(&mut pending).await;
                self.last_try_at_leftovers().await;
                if self.owed.incomplete() && !self.failing {
                    let pool = self.pools.get();
                    crate::interrupted::close_unrecorded(
                        &pool,
                        self.sql.instance(),
                        &self.location,
                    )
                    .await;
                }
                self.close().await;
                let _ = done.send(());
                return;
            }
            if (!pending.is_empty() || self.catalog.is_unsynced() || !self.owed.is_empty())
                && deadline.is_none()
            {
                deadline = Some(Instant::now() + self.flush_interval);
            }
        }
        self.close().await;
    }

    /// Refuses new records and commits everything already queued.
    async fn drain(&mut self, pending: &mut Vec<Record>) {
        self.rx.close();
        while let Some(command) = self.rx.recv().await {
            match command {
                Command::Record(record) => {
                    pending.push(record);
                    if pending.len() >= self.batch_size {
                        self.commit(pending).await;
                    }
                }
                Command::Flush { done, .. } => {
                    self.commit(pending).await;
                    let _ = done.send(());
                }
                Command::Mark(seq) => self.mark(seq, pending),
                Command::Catalog => {}
            }
        }
        self.commit(pending).await;
    }

    /// Takes a mark: with nothing pending, what it covers is already settled.
    fn mark(&mut self, seq: u64, pending: &[Record]) {
        self.marked = self.marked.max(seq);
        if pending.is_empty() {
            self.settle();
        }
    }

    /// Everything queued before the last mark is committed or dropped.
    fn settle(&self) {
        self.complete.fetch_max(self.marked, Ordering::Release);
    }

    /// When to try again to write a catalog the file may not hold, or records that end a
    /// row (the last batch failed), even if no record comes meanwhile.
    fn retry_catalog(&self) -> Option<Instant> {
        (self.catalog.is_unsynced() || !self.owed.is_empty())
            .then(|| Instant::now() + self.flush_interval)
    }

    /// Lets go of the connection; the ends of rows still owed (the last batches failed)
    /// are lost now, and counted so.
    async fn close(&mut self) {
        if let Some(conn) = self.conn.take() {
            conn.close().await;
        }
        let lost = self.owed.take().len() as u64;
        self.stats.add_dropped_queued(lost);
        if lost > 0 {
            tracing::warn!(
                path = %self.location,
                records = lost,
                "stopping with the ends of connections and chains history could not write; \
                 the next start closes them as process_ended"
            );
        }
    }

    /// The first failure of a burst: remembered (for the dashboard's note), and logged once
    /// with `what` is done meanwhile.
    fn begin_failing(&mut self, error: &StoreError, what: &'static str) {
        if self.failing {
            return;
        }
        self.failing = true;
        let now = u64::try_from(crate::retention::now_ms()).unwrap_or(1);
        self.stats.set_failing(Some(now.max(1)));
        tracing::warn!(path = %self.location, %error, "{what}");
    }

    /// Commits `pending`, with the service catalog when the file may not hold it (or drops
    /// and counts the records), and leaves it empty.
    async fn commit(&mut self, pending: &mut Vec<Record>) {
        let catalog = self.catalog.take_unsynced();
        // Older than the batch: written first (a row's last write wins).
        let owed = self.owed.take();
        if !owed.is_empty() {
            pending.splice(0..0, owed);
        }
        if pending.is_empty() && catalog.is_none() {
            self.settle();
            return;
        }
        let n = pending.len() as u64;
        let result = match self.ready_connection().await {
            Ok(()) => match self.conn.as_mut() {
                Some(conn) => self
                    .sql
                    .write_with(conn, pending, catalog.as_ref())
                    .await
                    .map_err(StoreError::from),
                None => Err(StoreError::WriterStopped),
            },
            Err(e) => Err(e),
        };
        if result.is_err()
            && (catalog.is_some() || pending.iter().any(|r| matches!(r, Record::Service(_))))
        {
            self.catalog.mark_unsynced();
        }
        let mut kept = 0;
        if result.is_err() {
            for record in pending.drain(..).filter(Record::ends_a_row) {
                kept += u64::from(self.owed.keep(record));
            }
        }
        pending.clear();
        // Committed or dropped, what the last mark covers is settled either way.
        self.settle();
        match result {
            Ok(()) => {
                // A writer kept busy never idles to renew its lock: it beats here.
                if let Some(lock) = &mut self.lock {
                    lock.beat();
                }
                self.stats.add_written(n);
                if self.failing {
                    self.failing = false;
                    self.stats.set_failing(None);
                    tracing::info!(path = %self.location, "history writes resumed");
                }
            }
            Err(error) => {
                self.stats.add_dropped_queued(n - kept);
                self.stats.record_error(error.to_string());
                if self.postgres.is_some() && error.is_undefined_table() {
                    let missing = match self.conn.as_mut() {
                        Some(Conn::Postgres(conn)) => {
                            backend::missing_table(conn).await.ok().flatten()
                        }
                        _ => None,
                    };
                    match missing {
                        // A table dropped by hand from a schema whose migrations say it
                        // was made: not made again; said once, batches fail until restored.
                        Some(table) => {
                            let missing = backend::missing_table_error(&self.location, table);
                            self.begin_failing(
                                &missing,
                                "cannot write history; until the table is back, rows' ends are kept to write then (as many as fit) and other records dropped and counted",
                            );
                        }
                        // The database was recreated (or restored) empty: the next batch
                        // brings its schema back and writes the catalog, as a server
                        // reached late does.
                        None => self.opened = Opened::Later,
                    }
                }
                self.begin_failing(
                    &error,
                    "cannot write history; until writes succeed again, rows' ends are kept to write then (as many as fit) and other records dropped and counted",
                );
                // The connection may be left mid-transaction, holding a stale file, or
                // cut by a server that went away; start over.
                if let Some(conn) = self.conn.take() {
                    conn.close().await;
                }
            }
        }
    }

    /// The connection to write on, recreating the file first if it was deleted or replaced.
    async fn ready_connection(&mut self) -> Result<(), StoreError> {
        if let Some((url, options)) = &self.postgres {
            if self.conn.is_none() {
                let conn = backend::open_pg_connection(options, url, self.busy_timeout).await?;
                self.conn = Some(Conn::Postgres(conn));
            }
            if self.opened == Opened::Later {
                self.reached().await?;
            }
            return Ok(());
        }
        self.keep_lock()?;
        self.room().await?;
        let now = FileId::of(&self.path);
        if now.is_none() || now != self.file {
            self.recreate().await?;
        } else if self.conn.is_some() && self.journal_lost() {
            self.save_lost_journal().await;
            // Said there: not the database that is gone.
            self.file = None;
            self.recreate().await?;
        }
        if self.conn.is_none() {
            let conn = schema::open_writer_connection(&self.path, self.busy_timeout).await?;
            self.conn = Some(Conn::Sqlite(conn));
            self.journal = schema::journal_ids(&self.path);
        }
        Ok(())
    }

    /// Closes what an earlier process left open, on a database reached (or a file found
    /// free) late, before this process writes a row: only rows begun before this store
    /// opened, so its own are never touched, however late this runs. A failure (a table
    /// or those rows another session holds locked) is tried again in the background.
    async fn close_leftovers_on(&mut self, pool: &crate::backend::Pool) {
        if self.leftovers.closed || self.retrying.is_some() {
            return;
        }
        self.leftovers.closed = crate::interrupted::close_what_was_left_open(
            pool,
            self.sql.instance(),
            &self.location,
            (self.leftovers.started_ms, self.leftovers.alive_ms),
            crate::interrupted::Then::Retry,
        )
        .await;
        if !self.leftovers.closed {
            self.retry_leftovers();
        }
    }

    /// Tries again, and again, to close what an earlier process left open, in a task of
    /// its own: the writer's batches go on meanwhile (none of them touches those rows),
    /// and a failure that repeats is not said again.
    fn retry_leftovers(&mut self) {
        let pools = self.pools.clone();
        let instance = self.sql.instance().to_owned();
        let location = self.location.clone();
        let since = (self.leftovers.started_ms, self.leftovers.alive_ms);
        self.retrying = Some(Retrying(Some(tokio::spawn(async move {
            let mut wait = Duration::from_secs(1);
            loop {
                tokio::time::sleep(wait).await;
                let pool = pools.get();
                let quietly = crate::interrupted::Then::Quietly;
                if crate::interrupted::close_what_was_left_open(
                    &pool, &instance, &location, since, quietly,
                )
                .await
                {
                    return;
                }
                wait = (wait * 2).min(LEFTOVERS_RETRY_MAX);
            }
        }))));
    }

    /// At a clean stop, a last try at what an earlier process left open if the retries
    /// have not closed it yet: closed now, it is closed as that process's, not as one of
    /// this process's rows whose end history lost.
    async fn last_try_at_leftovers(&mut self) {
        let Some(retrying) = self.retrying.take() else {
            return;
        };
        if retrying.stop().await {
            return;
        }
        self.leftovers.closed = crate::interrupted::close_what_was_left_open(
            &self.pools.get(),
            self.sql.instance(),
            &self.location,
            (self.leftovers.started_ms, self.leftovers.alive_ms),
            crate::interrupted::Then::NextStart,
        )
        .await;
    }

    /// The database was out of reach at start and answers now: before this process writes
    /// a row, its schema is brought up to date and what an earlier process left open in it
    /// is closed, as an open at start would have done.
    async fn reached(&mut self) -> Result<(), StoreError> {
        let (Some((url, _)), crate::backend::Pool::Postgres(pool)) =
            (&self.postgres, self.pools.get())
        else {
            return Ok(());
        };
        backend::migrate_pg(url, self.busy_timeout).await?;
        self.close_leftovers_on(&crate::backend::Pool::Postgres(pool))
            .await;
        let services = self.catalog_records();
        if let Some(conn) = self.conn.as_mut() {
            self.sql.write(conn, &services).await?;
        }
        self.opened = Opened::Now;
        tracing::info!(url = %self.location, "the history database answers; writing history");
        Ok(())
    }

    /// Every service the writer was given, as records to write into a database that may
    /// not hold them.
    fn catalog_records(&self) -> Vec<Record> {
        self.catalog
            .all()
            .into_iter()
            .map(Record::Service)
            .collect()
    }

    /// Whether the `-wal` or `-shm` file SQLite kept beside the database when the writer
    /// connection opened is gone (or another is in its place): SQLite goes on writing
    /// into the deleted one.
    fn journal_lost(&self) -> bool {
        let now = schema::journal_ids(&self.path);
        self.journal
            .iter()
            .zip(now)
            .any(|(was, now)| was.is_some() && *was != now)
    }

    /// Copies what the deleted journal holds into the database through the writer's
    /// connection, which still has it open: closing the connections would do it only if
    /// no other process (a `sqlite3` shell, a backup) had the file open.
    async fn save_lost_journal(&mut self) {
        let path = self.path.display().to_string();
        let Some(Conn::Sqlite(conn)) = self.conn.as_mut() else {
            return;
        };
        let saved: Result<(i64, i64, i64), sqlx::Error> =
            sqlx::query_as("PRAGMA wal_checkpoint(TRUNCATE)")
                .fetch_one(&mut *conn)
                .await;
        match saved {
            Ok((0, log, done)) if done >= log => tracing::warn!(
                %path,
                "the history database's journal (-wal, -shm) was deleted; saved what it held \
                 into the database and starting a new one"
            ),
            Ok((_, log, done)) => tracing::error!(
                %path,
                pages = log,
                saved = done,
                "the history database's journal (-wal, -shm) was deleted, and another \
                 connection to the file kept part of it from being saved; starting a new one"
            ),
            Err(error) => tracing::error!(
                %path,
                %error,
                "the history database's journal (-wal, -shm) was deleted and could not be \
                 saved; starting a new one"
            ),
        }
    }

    /// Refuses to write when the file's filesystem has less free space than the writer
    /// leaves, after handing the journal back (a checkpoint, then truncating it): deleting
    /// needs room to write first, so retention could never free a full disk.
    async fn room(&mut self) -> Result<(), StoreError> {
        let dir = match self.path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => std::path::Path::new("."),
        };
        let space = || {
            let fs = rustix::fs::statvfs(dir).ok()?;
            Some((fs.f_bavail * fs.f_frsize, fs.f_blocks * fs.f_frsize))
        };
        let Some((free, size)) = space() else {
            return Ok(());
        };
        let reserve = self.options.reserve(size);
        if free >= reserve {
            return Ok(());
        }
        // What retention deleted: its pages handed back, and the journal copied into the
        // file and cut back, the space is the filesystem's again. On the read pool, which
        // is there whether or not the writer's own connection is (a failed batch closes it).
        if let crate::backend::Pool::Sqlite(pool) = self.pools.get() {
            let _ = crate::retention::give_back(&pool).await;
            crate::retention::truncate_journal(&pool).await;
        }
        let free = space().map_or(free, |(free, _)| free);
        if free >= reserve {
            return Ok(());
        }
        Err(StoreError::DiskLow {
            path: self.path.clone(),
            free,
            reserve,
            size,
        })
    }

    /// Takes the file's lock again if its lock file was deleted or replaced.
    fn keep_lock(&mut self) -> Result<(), StoreError> {
        match &mut self.lock {
            Some(lock) => lock.renew(&self.path),
            None => Ok(()),
        }
    }

    /// The path no longer names the file we opened: let go of the old one, then create, migrate and
    /// open the new one, and hand readers a pool on it.
    async fn recreate(&mut self) -> Result<(), StoreError> {
        let late = self.opened == Opened::Later;
        if self.file.is_some() {
            tracing::warn!(
                path = %self.path.display(),
                "history database was deleted or replaced; recreating it"
            );
            self.file = None;
        }
        if let Some(conn) = self.conn.take() {
            conn.close().await;
        }
        // Closing the last connection to a deleted file removes its WAL; anything left beside a
        // missing file is stale and must not be replayed into the new one. A file locked at
        // start is the same file: its readers go on reading until the new pool is in.
        let old = self.pools.get();
        if !late {
            old.close().await;
        }
        if !self.path.exists() {
            // Beside the file a link leads to, where SQLite keeps them.
            for sidecar in schema::sidecar_paths(&crate::lock::through_links(&self.path)) {
                let _ = std::fs::remove_file(sidecar);
            }
        }
        let pool = crate::backend::Pool::Sqlite(
            schema::open_pool(&self.path, self.busy_timeout, self.max_readers).await?,
        );
        // A file locked at start, before this process writes a row: what is open in it
        // now, an earlier process left, as an open at start would have closed.
        self.close_leftovers_on(&pool).await;
        self.pools.replace(pool);
        if late {
            old.close().await;
        }
        let mut conn =
            Conn::Sqlite(schema::open_writer_connection(&self.path, self.busy_timeout).await?);
        let services = self.catalog_records();
        self.sql.write(&mut conn, &services).await?;
        self.conn = Some(conn);
        self.file = FileId::of(&self.path);
        self.journal = schema::journal_ids(&self.path);
        if late {
            self.opened = Opened::Now;
            tracing::info!(path = %self.location, "the history file is open; writing history");
        } else {
            self.stats.add_reopen();
        }
        Ok(())
    }
}

//! What can go wrong opening, writing and querying the store.

use std::path::PathBuf;

/// An error from the store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database file could not be opened or created.
    #[error("cannot open the history database {path}: {}{}", said(.source), open_hint(.source))]
    Open {
        /// The database file.
        path: PathBuf,
        /// What SQLite said.
        #[source]
        source: sqlx::Error,
    },
    /// The schema could not be brought up to date.
    #[error("cannot migrate the history database {path}: {source}")]
    Migrate {
        /// The database file.
        path: PathBuf,
        /// What the migrator said.
        #[source]
        source: sqlx::migrate::MigrateError,
    },
    /// A `[store] url` that is not a PostgreSQL URL sqlx can read.
    #[error("cannot read the history database URL {url}: {}", said(.source))]
    Url {
        /// The URL, without its password.
        url: String,
        /// What the driver said.
        #[source]
        source: sqlx::Error,
    },
    /// The PostgreSQL server could not be reached or refused the login.
    #[error(
        "cannot connect to the history database {url}: {} (check that the server runs \
         and accepts this user)",
        said(.source)
    )]
    Connect {
        /// The URL, without its password.
        url: String,
        /// What the driver said.
        #[source]
        source: sqlx::Error,
    },
    /// A table of the PostgreSQL schema is missing though its migrations say it was made.
    #[error(
        "the history database {url}: its history table {table:?} is missing though its \
         migrations say it was made (dropped by hand?), and weft does not make it again: \
         restore it from a backup, or drop the schema's history tables and _sqlx_migrations \
         (or the schema) for weft to make them anew"
    )]
    MissingTable {
        /// The URL, without its password.
        url: String,
        /// The table.
        table: &'static str,
    },
    /// The PostgreSQL schema could not be brought up to date.
    #[error("cannot migrate the history database {url}: {source}")]
    MigrateUrl {
        /// The URL, without its password.
        url: String,
        /// What the migrator said.
        #[source]
        source: sqlx::migrate::MigrateError,
    },
    /// The history file's filesystem has less free space than the writer leaves for
    /// retention ([`StoreOptions::min_free_bytes`](crate::StoreOptions::min_free_bytes)).
    #[error(
        "the filesystem of the history database {path} has {free} bytes free, under the \
         {reserve} kept so retention can free space; {}",
        disk_low_hint(*size, *reserve)
    )]
    DiskLow {
        /// The database file.
        path: PathBuf,
        /// Bytes free to an unprivileged writer.
        free: u64,
        /// Bytes the writer leaves free.
        reserve: u64,
        /// The filesystem's size.
        size: u64,
    },
    /// Another store, in this process or another, writes the file: a file takes one
    /// writer at a time.
    #[error(
        "the history database {path} is in use by {} (it holds {lock}): a history file takes \
         one writer at a time; stop that process, or give this one another file",
        holder_text(*.holder)
    )]
    InUse {
        /// The database file.
        path: PathBuf,
        /// The lock file beside it.
        lock: PathBuf,
        /// The id of the process holding it, when it could be read.
        holder: Option<u32>,
    },
    /// The history file has several names (hard links).
    #[error(
        "{path} has {names} names (hard links): SQLite keeps a journal beside each name, and \
         a writer given another name would not see this one's lock; give the file one name"
    )]
    HardLinked {
        /// The database file.
        path: PathBuf,
        /// How many names it has.
        names: u64,
    },
    /// The file holds tables of another program, not weft's history.
    #[error("{path} holds another program's tables, not weft's history; name another file")]
    Foreign {
        /// The database file.
        path: PathBuf,
    },
    /// The file was migrated by a later weft, past what this build knows.
    #[error(
        "{path} was written by a later weft (its schema has migration {version}, which this \
         build does not know); run that weft, or name another file"
    )]
    Later {
        /// The database file.
        path: PathBuf,
        /// A migration the file applied that this build does not have.
        version: i64,
    },
    /// The file's tables are not those its recorded migrations make (changed by hand, or
    /// a migration's record removed): writing history to it would fail, or migrating it
    /// would.
    #[error(
        "{path}: its tables are not what its recorded migrations make ({detail}), so it was \
         changed outside weft; restore it from a backup, or name another file"
    )]
    Schema {
        /// The database file.
        path: PathBuf,
        /// What differs.
        detail: String,
    },
    /// The lock file beside the database could not be created or locked.
    #[error("cannot lock the history database: {path}: {source}")]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// A query failed.
    #[error("history query failed: {}", said(.0))]
    Query(#[from] sqlx::Error),
    /// A filter value given by a caller is not one the store knows.
    #[error("unknown {what} {value:?}; expected one of: {expected}")]
    BadFilter {
        /// Which filter (`connection state`, `deferred state`).
        what: &'static str,
        /// The value given.
        value: String,
        /// The accepted values.
        expected: &'static str,
    },
    /// The writer task has stopped (the store was shut down).
    #[error("the history writer has stopped")]
    WriterStopped,
    /// A search of text within the history (a peer containing some text) waited its
    /// time for the searches before it, which read every row they may match, and did not
    /// run.
    #[error("other searches of the history were still running after {0:?}; try again")]
    SearchBusy(std::time::Duration),
}

fn holder_text(holder: Option<u32>) -> String {
    match holder {
        Some(pid) => format!("process {pid}"),
        None => "another process".to_owned(),
    }
}

impl StoreError {
    /// Whether the database server could not be reached at all (refused, unreachable, no
    /// answer within the timeout), as opposed to one that answered and refused: a wrong
    /// password, a database that does not exist. Trying again later may succeed.
    pub fn is_unreachable(&self) -> bool {
        match self {
            Self::Connect {
                source: sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut,
                ..
            } => true,
            // It answers, but takes no connection now: every slot is taken
            // (`too_many_connections`), or it is starting or stopping (`cannot_connect_now`).
            Self::Connect {
                source: sqlx::Error::Database(e),
                ..
            } => matches!(e.code().as_deref(), Some("53300" | "57P03")),
            // The migration waited out its lock timeout (another session holds the tables:
            // a long search, another gateway's migration): tried again with each batch.
            Self::MigrateUrl {
                source:
                    sqlx::migrate::MigrateError::Execute(sqlx::Error::Database(e))
                    | sqlx::migrate::MigrateError::ExecuteMigration(sqlx::Error::Database(e), _),
                ..
            } => e.code().as_deref() == Some(crate::backend::LOCK_NOT_AVAILABLE),
            _ => false,
        }
    }

    /// Whether a query gave up waiting for a lock another session holds (PostgreSQL's
    /// `lock_not_available`: a `LOCK TABLE`, a migration, a `VACUUM FULL`).
    pub fn is_lock_wait(&self) -> bool {
        matches!(self, Self::Query(sqlx::Error::Database(e))
            if e.code().as_deref() == Some(crate::backend::LOCK_NOT_AVAILABLE))
    }

    /// Whether a query found a table of the schema missing (PostgreSQL's `undefined_table`):
    /// the database was recreated or restored empty under the store.
    pub fn is_undefined_table(&self) -> bool {
        match self {
            Self::Query(sqlx::Error::Database(e)) => e.code().as_deref() == Some("42P01"),
            _ => false,
        }
    }

    /// Whether the query, or opening or migrating the file, could not run because another
    /// connection holds the file locked (SQLite's `BUSY` or `LOCKED`, with their extended
    /// codes; PostgreSQL's `lock_not_available`, a read's `lock_timeout` run out), every
    /// reader was busy, or other searches were: trying again later may succeed.
    pub fn is_busy(&self) -> bool {
        const SQLITE_BUSY: i32 = 5;
        const SQLITE_LOCKED: i32 = 6;
        let locked = |e: &sqlx::Error| match e {
            sqlx::Error::Database(e) => {
                let code = e.code();
                code.as_deref() == Some(crate::backend::LOCK_NOT_AVAILABLE)
                    || code
                        .and_then(|c| c.parse::<i32>().ok())
                        .is_some_and(|c| matches!(c & 0xff, SQLITE_BUSY | SQLITE_LOCKED))
            }
            _ => false,
        };
        match self {
            Self::Query(sqlx::Error::PoolTimedOut) | Self::SearchBusy(_) => true,
            Self::Query(e) | Self::Open { source: e, .. } => locked(e),
            Self::Migrate {
                source: sqlx::migrate::MigrateError::Execute(e),
                ..
            } => locked(e),
            _ => false,
        }
    }

    /// Whether the file could not be made or grown for want of room (SQLITE_FULL; or
    /// SQLITE_IOERR_SHMSIZE, the WAL index not made for want of it; or the disk full as
    /// the file was opened): tried again with each batch, as a lock is.
    pub fn is_full(&self) -> bool {
        const SQLITE_FULL: i32 = 13;
        const SQLITE_IOERR_SHMSIZE: i32 = 10 | (19 << 8);
        let full = |e: &sqlx::Error| match e {
            sqlx::Error::Database(e) => e
                .code()
                .and_then(|c| c.parse::<i32>().ok())
                .is_some_and(|c| c & 0xff == SQLITE_FULL || c == SQLITE_IOERR_SHMSIZE),
            sqlx::Error::Io(e) => e.kind() == std::io::ErrorKind::StorageFull,
            _ => false,
        };
        match self {
            Self::Query(e) | Self::Open { source: e, .. } => full(e),
            Self::Migrate {
                source:
                    sqlx::migrate::MigrateError::Execute(e)
                    | sqlx::migrate::MigrateError::ExecuteMigration(e, _),
                ..
            } => full(e),
            _ => false,
        }
    }
}

/// What to do about too little free space: wait for retention, or, on a filesystem too
/// small to keep the reserve, move history.
fn disk_low_hint(size: u64, reserve: u64) -> &'static str {
    if size <= reserve.saturating_mul(2) {
        "the filesystem is too small to keep that free and hold history: give `[store] path` \
         a larger one (history is not written here)"
    } else {
        "writing resumes when there is more (retention deletes what is older than its window)"
    }
}

/// What the driver said, without the PostgreSQL server's own source line that its errors
/// carry (`... at line 334`, which reads as a line of the configuration).
fn said(error: &sqlx::Error) -> String {
    match error {
        sqlx::Error::Database(e)
            if e.try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
                .is_some() =>
        {
            format!("error returned from database: {}", e.message())
        }
        other => other.to_string(),
    }
}

/// A hint for an open that failed because the file could not be opened or made (a missing
/// or read-only directory): nothing for a file that is locked or is not a database.
fn open_hint(source: &sqlx::Error) -> &'static str {
    use std::io::ErrorKind::{NotFound, PermissionDenied, ReadOnlyFilesystem};
    let cannot_open = match source {
        // SQLITE_CANTOPEN, SQLITE_READONLY and SQLITE_PERM.
        sqlx::Error::Database(e) => e.code().is_some_and(|c| ["14", "8", "3"].contains(&&*c)),
        sqlx::Error::Io(e) => matches!(e.kind(), NotFound | PermissionDenied | ReadOnlyFilesystem),
        _ => false,
    };
    match cannot_open {
        true => " (check that the directory exists and is writable)",
        false => "",
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use sqlx::ConnectOptions;

    use super::*;
    use crate::schema::connect_options;

    #[tokio::test]
    async fn a_lock_held_elsewhere_is_busy_and_other_failures_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("weft.db");
        let opts = |ms| connect_options(&path, Duration::from_millis(ms));
        let mut holder = opts(1000).connect().await.unwrap();
        sqlx::query("BEGIN EXCLUSIVE")
            .execute(&mut holder)
            .await
            .unwrap();
        // Opening a writer's connection needs the lock too.
        let locked = opts(50).connect().await.unwrap_err();
        assert!(StoreError::from(locked).is_busy());
        assert!(StoreError::Query(sqlx::Error::PoolTimedOut).is_busy());
        let missing = sqlx::query("SELECT * FROM nowhere")
            .execute(&mut holder)
            .await
            .unwrap_err();
        assert!(!StoreError::from(missing).is_busy());
        assert!(!StoreError::WriterStopped.is_busy());
    }
}

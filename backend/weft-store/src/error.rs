//! What can go wrong opening, writing and querying the store.

use std::path::PathBuf;

/// An error from the store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database file could not be opened or created.
    #[error(
        "cannot open the history database {path}: {source} (check that the directory exists and is writable)"
    )]
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
    /// A query failed.
    #[error("history query failed: {0}")]
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
}

//! The two databases history can live in: a SQLite file (embedded, the default) or a
//! PostgreSQL database a fleet of gateways shares.
//!
//! Every statement is written once. Where the two dialects differ (the scalar `max`, how a
//! flag column is tested, SQLite's `INDEXED BY`, placeholders, and the key an upsert meets
//! on), [`Dialect`] spells the difference, and [`on_pool!`] runs the same code on whichever
//! pool the store has: each arm is compiled for its own driver, so SQLite pays nothing for
//! the second backend.

use std::time::Duration;

use sqlx::ConnectOptions;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnection, SqlitePool};

use crate::StoreError;

/// The PostgreSQL schema, embedded from the repository's `migrations/postgres/`.
///
/// Migrations a later release applied, which this one does not know, are passed over: a
/// fleet upgrades one gateway at a time, and a gateway of the release before goes on
/// writing (and restarts) beside one that migrated. So a PostgreSQL migration only adds
/// (tables, and columns that may be NULL), never renames or drops what an earlier release
/// writes.
pub(crate) static PG_MIGRATOR: std::sync::LazyLock<Migrator> = std::sync::LazyLock::new(|| {
    let mut migrator = sqlx::migrate!("../../migrations/postgres");
    migrator.set_ignore_missing(true);
    migrator
});

/// How the SQL of one backend differs from the other's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    /// SQLite: one writer per file, so ids are the file's alone.
    Sqlite,
    /// PostgreSQL: many gateways write, so every key leads with the instance.
    Postgres,
}

impl Dialect {
    /// The two-argument function giving the larger value.
    pub(crate) fn greatest(self) -> &'static str {
        match self {
            Self::Sqlite => "max",
            Self::Postgres => "GREATEST",
        }
    }

    /// The two-argument function giving the smaller value.
    pub(crate) fn least(self) -> &'static str {
        match self {
            Self::Sqlite => "min",
            Self::Postgres => "LEAST",
        }
    }

    /// The condition that the flag `column` is set: SQLite keeps 0/1 integers (and its
    /// partial indexes say `<> 0`, which a query must repeat to use them), PostgreSQL booleans.
    pub(crate) fn flag(self, column: &str) -> String {
        match self {
            Self::Sqlite => format!("{column} <> 0"),
            Self::Postgres => column.to_owned(),
        }
    }

    /// SQLite's index hint (its planner has no statistics); PostgreSQL plans by its own.
    pub(crate) fn indexed_by(self, index: &str) -> String {
        match self {
            Self::Sqlite => format!(" INDEXED BY {index}"),
            Self::Postgres => String::new(),
        }
    }

    /// The `n`th (from 1) bind parameter of a statement built row by row.
    pub(crate) fn placeholder(self, n: usize) -> String {
        match self {
            Self::Sqlite => "?".to_owned(),
            Self::Postgres => format!("${n}"),
        }
    }

    /// A row's key in `IN` lists and subqueries, `key` of `table`'s column (or `(instance,
    /// key)` in a shared database): SQLite then still reads its rowid b-tree.
    pub(crate) fn key(self, key: &str) -> String {
        match self {
            Self::Sqlite => key.to_owned(),
            Self::Postgres => format!("(instance, {key})"),
        }
    }

    /// The select list of a row's key, as [`key`](Self::key) compares it.
    pub(crate) fn key_columns(self, key: &str) -> String {
        match self {
            Self::Sqlite => key.to_owned(),
            Self::Postgres => format!("instance, {key}"),
        }
    }

    /// Whether keys lead with the instance (rows of many gateways share the tables).
    pub(crate) fn shared(self) -> bool {
        self == Self::Postgres
    }
}

/// A read pool on either backend. Cloning is an `Arc` bump.
#[derive(Debug, Clone)]
pub(crate) enum Pool {
    /// The history file.
    Sqlite(SqlitePool),
    /// The shared database.
    Postgres(PgPool),
}

/// Runs `$body` with `$p` bound to the pool (or connection) of either backend: the same
/// code, compiled once per driver.
macro_rules! on_pool {
    ($pool:expr, $p:ident => $body:expr) => {
        match $pool {
            $crate::backend::Pool::Sqlite($p) => $body,
            $crate::backend::Pool::Postgres($p) => $body,
        }
    };
}
pub(crate) use on_pool;

impl Pool {
    /// The dialect its statements are written in.
    pub(crate) fn dialect(&self) -> Dialect {
        match self {
            Self::Sqlite(_) => Dialect::Sqlite,
            Self::Postgres(_) => Dialect::Postgres,
        }
    }

    /// Closes every connection of the pool.
    pub(crate) async fn close(&self) {
        on_pool!(self, p => p.close().await)
    }
}

/// The writer's own connection on either backend.
#[derive(Debug)]
pub(crate) enum Conn {
    /// On the history file.
    Sqlite(SqliteConnection),
    /// On the shared database.
    Postgres(PgConnection),
}

impl Conn {
    /// Closes it, ignoring errors: it is dropped either way.
    pub(crate) async fn close(self) {
        use sqlx::Connection;
        let _ = match self {
            Self::Sqlite(c) => c.close().await,
            Self::Postgres(c) => c.close().await,
        };
    }
}

/// `url` without its password, for messages and logs: none in its user part, and of its
/// parameters only the values of those that name where and who (host, port, database,
/// user, application name, TLS mode) are shown, every other one `***` (a `password=`, or
/// a misspelt one).
pub(crate) fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "(an unreadable postgres URL)".to_owned();
    };
    let (rest, query) = match rest.split_once('?') {
        Some((rest, query)) => (rest, Some(query)),
        None => (rest, None),
    };
    let rest = match rest.rsplit_once('@') {
        Some((user, host)) => format!("{}@{host}", user.split(':').next().unwrap_or_default()),
        None => rest.to_owned(),
    };
    let Some(query) = query else {
        return format!("{scheme}://{rest}");
    };
    let params: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((key, value)) if SHOWN_PARAMS.contains(&key) => format!("{key}={value}"),
            Some((key, _)) => format!("{key}=***"),
            None => pair.to_owned(),
        })
        .collect();
    format!("{scheme}://{rest}?{}", params.join("&"))
}

/// URL parameters whose values [`redacted`] shows.
const SHOWN_PARAMS: &[&str] = &[
    "host",
    "hostaddr",
    "port",
    "dbname",
    "user",
    "application_name",
    "sslmode",
    "ssl-mode",
];

/// The parameters the driver reads; any other it would ignore, logging its value (a
/// misspelt `passwd=` with the password).
const KNOWN_PARAMS: &[&str] = &[
    "host",
    "hostaddr",
    "port",
    "dbname",
    "user",
    "password",
    "application_name",
    "options",
    "statement-cache-capacity",
    "sslmode",
    "ssl-mode",
    "sslrootcert",
    "ssl-root-cert",
    "ssl-ca",
    "sslcert",
    "ssl-cert",
    "sslkey",
    "ssl-key",
];

/// Why `url`'s parameters cannot work: one the driver does not know (it would be ignored,
/// its value logged), or a TLS mode this build cannot meet (its driver has no TLS: a
/// connection that requires it always fails).
fn refused_params(url: &str) -> Option<String> {
    let query = url.split_once('?')?.1;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if !KNOWN_PARAMS.contains(&key) {
            return Some(format!(
                "unknown parameter `{key}` (known: {})",
                KNOWN_PARAMS.join(", ")
            ));
        }
        if matches!(key, "sslmode" | "ssl-mode")
            && matches!(value, "require" | "verify-ca" | "verify-full")
        {
            return Some(format!(
                "`{key}={value}` asks for TLS, which this build of weft does not speak to \
                 PostgreSQL; connect over a private network or a unix socket, or through a \
                 TLS tunnel (stunnel, pgbouncer)"
            ));
        }
    }
    None
}

/// The connection settings `url` describes, with statement logging off as for SQLite.
pub(crate) fn pg_options(url: &str) -> Result<PgConnectOptions, StoreError> {
    let failed = |source| StoreError::Url {
        url: redacted(url),
        source,
    };
    if let Some(why) = refused_params(url) {
        return Err(failed(sqlx::Error::Configuration(why.into())));
    }
    url.parse::<PgConnectOptions>()
        .map(|o| o.disable_statement_logging())
        .map_err(failed)
}

/// The settings of a read pool's connections: a read waits at most `timeout` for a lock
/// (`lock_timeout`, as SQLite's busy timeout bounds its reads), then fails as busy. A
/// session holding a table locked (a `LOCK TABLE`, a long migration elsewhere) would
/// otherwise hold each dashboard request that reads it, and the pool's connection, for as
/// long as it holds the lock.
fn pg_read_options(url: &str, timeout: Duration) -> Result<PgConnectOptions, StoreError> {
    let wait = format!("{}ms", timeout.as_millis().max(1));
    Ok(pg_options(url)?.options([("lock_timeout", wait.as_str())]))
}

/// Connects to the database at `url`, brings its schema up to date (PostgreSQL's migrator
/// takes an advisory lock, so gateways starting together migrate once) and returns a read pool.
pub(crate) async fn open_pg_pool(
    url: &str,
    timeout: Duration,
    max_readers: u32,
) -> Result<PgPool, StoreError> {
    let options = pg_read_options(url, timeout)?;
    let open_error = |source| StoreError::Connect {
        url: redacted(url),
        source,
    };
    let pool = PgPoolOptions::new()
        .max_connections(max_readers.max(1))
        .min_connections(0)
        .acquire_timeout(timeout)
        .connect_with(options)
        .await
        .map_err(open_error)?;
    migrate_pg(url, timeout).await?;
    let mut conn = pool.acquire().await.map_err(open_error)?;
    if let Some(table) = missing_table(&mut conn).await.map_err(open_error)? {
        return Err(missing_table_error(url, table));
    }
    Ok(pool)
}

/// A read pool on the database at `url` that connects when first asked, for a server not
/// reachable at start: reads fail as they would were it lost at run time, until it is back.
pub(crate) fn lazy_pg_pool(
    url: &str,
    timeout: Duration,
    max_readers: u32,
) -> Result<PgPool, StoreError> {
    Ok(PgPoolOptions::new()
        .max_connections(max_readers.max(1))
        .min_connections(0)
        .acquire_timeout(timeout)
        .connect_lazy_with(pg_read_options(url, timeout)?))
}

/// How long a migration waits for a lock (a table another session reads, the advisory
/// lock of another gateway migrating) before it gives up, to be tried again with the
/// next batch: waiting, it would hold the start, and every other session's use of the
/// table would queue behind its own request.
const MIGRATE_LOCK_WAIT: &str = "5s";

/// How long a batch of the writer waits for a lock (a table another session holds locked)
/// before it fails, counted, and the next batch tries: waiting, it would hold every
/// record behind it with no sign of why.
pub(crate) const WRITE_LOCK_WAIT: &str = "10s";

/// The tables the schema makes.
const PG_TABLES: [&str; 6] = [
    "services",
    "connections",
    "deferreds",
    "deferred_steps",
    "events",
    "queries",
];

/// A table of the schema that is missing from a database whose migrations say it was
/// made (dropped by hand): the migrator would not make it again, and every batch that
/// writes it would fail.
pub(crate) async fn missing_table(
    conn: &mut PgConnection,
) -> Result<Option<&'static str>, sqlx::Error> {
    let migrated: bool = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
        .fetch_one(&mut *conn)
        .await?;
    if !migrated {
        return Ok(None);
    }
    for table in PG_TABLES {
        let there: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
            .bind(table)
            .fetch_one(&mut *conn)
            .await?;
        if !there {
            return Ok(Some(table));
        }
    }
    Ok(None)
}

/// What is said of a database missing `table` ([`missing_table`]).
pub(crate) fn missing_table_error(url: &str, table: &'static str) -> StoreError {
    StoreError::MissingTable {
        url: redacted(url),
        table,
    }
}

/// PostgreSQL's `lock_not_available`: a lock wait ran out (`lock_timeout`).
pub(crate) const LOCK_NOT_AVAILABLE: &str = "55P03";

/// Brings the schema of the database at `url` up to date, as opening it does, on a
/// connection of its own that waits at most [`MIGRATE_LOCK_WAIT`] for any lock.
pub(crate) async fn migrate_pg(url: &str, timeout: Duration) -> Result<(), StoreError> {
    let failed = |source| StoreError::MigrateUrl {
        url: redacted(url),
        source,
    };
    let options = pg_options(url)?.options([("lock_timeout", MIGRATE_LOCK_WAIT)]);
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .min_connections(0)
        .acquire_timeout(timeout)
        .connect_with(options)
        .await
        .map_err(|source| StoreError::Connect {
            url: redacted(url),
            source,
        })?;
    let migrated = PG_MIGRATOR.run(&pool).await.map_err(failed);
    pool.close().await;
    migrated
}

/// Opens the writer's own connection to the database at `url`, giving up after `timeout`.
pub(crate) async fn open_pg_connection(
    options: &PgConnectOptions,
    url: &str,
    timeout: Duration,
) -> Result<PgConnection, StoreError> {
    let failed = |source| StoreError::Connect {
        url: redacted(url),
        source,
    };
    match tokio::time::timeout(timeout, options.connect()).await {
        Ok(connected) => connected.map_err(failed),
        Err(_) => Err(failed(sqlx::Error::PoolTimedOut)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_is_shown_without_its_password() {
        assert_eq!(
            redacted("postgres://weft:secret@db.example:5432/weft"),
            "postgres://weft@db.example:5432/weft"
        );
        assert_eq!(redacted("postgres://db/weft"), "postgres://db/weft");
        assert_eq!(
            redacted("postgres:///weft?host=127.0.0.1&port=5432&user=weft&password=S3cret"),
            "postgres:///weft?host=127.0.0.1&port=5432&user=weft&password=***"
        );
        assert_eq!(
            redacted("postgres://weft@db/weft?password=S3cret&passwd=S3cret&sslmode=prefer"),
            "postgres://weft@db/weft?password=***&passwd=***&sslmode=prefer"
        );
    }

    /// A parameter the driver would ignore (logging its value) and a TLS mode this build
    /// cannot meet are refused, by `weft check` as by `weft run`; the error shows no secret.
    #[test]
    fn unknown_parameters_and_tls_modes_are_refused_without_showing_secrets() {
        let err = |url: &str| pg_options(url).unwrap_err().to_string();
        let typo = err("postgres://weft@db/weft?passwd=S3cret");
        assert!(typo.contains("unknown parameter `passwd`"), "{typo}");
        assert!(!typo.contains("S3cret"), "{typo}");
        for mode in ["require", "verify-ca", "verify-full"] {
            let tls = err(&format!("postgres://weft:S3cret@db/weft?sslmode={mode}"));
            assert!(tls.contains("does not speak to PostgreSQL"), "{tls}");
            assert!(!tls.contains("S3cret"), "{tls}");
        }
        for ok in [
            "postgres://weft@db/weft?sslmode=prefer&application_name=edge",
            "postgres:///weft?host=/run/postgresql&user=weft&password=x",
        ] {
            assert!(pg_options(ok).is_ok(), "{ok}");
        }
    }
}

//! Opening the database file: connection settings, migrations, and the file's identity.
//!
//! Every connection runs in WAL mode with `synchronous=NORMAL`: readers never block the writer and
//! a commit costs no fsync. A killed process loses nothing it committed; a power cut may lose the
//! last commits but never the file's integrity.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sqlx::ConnectOptions;
use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    SqliteAutoVacuum, SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool,
    SqlitePoolOptions, SqliteSynchronous,
};

use crate::StoreError;
use crate::backend::Pool;

/// The one schema, embedded from the repository's `migrations/`.
pub(crate) static MIGRATOR: Migrator = sqlx::migrate!("../../migrations");

/// Settings every connection shares.
fn shared_options(path: &Path, busy_timeout: Duration) -> SqliteConnectOptions {
    SqliteConnectOptions::new()
        .filename(path)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(busy_timeout)
        .foreign_keys(false)
        // A journal grown by a burst is cut back to this once checkpointed, so the disk
        // gets its space back (else it keeps its largest size for as long as it is open).
        .pragma("journal_size_limit", (8 << 20).to_string())
        .disable_statement_logging()
}

/// Connection settings of the writer and of the connection that creates the file.
pub(crate) fn connect_options(path: &Path, busy_timeout: Duration) -> SqliteConnectOptions {
    shared_options(path, busy_timeout)
        .create_if_missing(true)
        // Must be set before the first table exists; lets retention hand pages back to the OS.
        .auto_vacuum(SqliteAutoVacuum::Incremental)
}

/// Connection settings of the read pool. Setting `auto_vacuum`, even to the value it has,
/// takes the write lock, so a reader opened while another process holds the file locked
/// would fail; readers leave it alone, and never create the file.
fn read_options(path: &Path, busy_timeout: Duration) -> SqliteConnectOptions {
    shared_options(path, busy_timeout)
}

/// Creates the file if needed, migrates it, and returns a read pool on it; another
/// program's database, or one a later weft migrated, is refused before anything is
/// written to it.
pub(crate) async fn open_pool(
    path: &Path,
    busy_timeout: Duration,
    max_readers: u32,
) -> Result<SqlitePool, StoreError> {
    let open_error = |source| StoreError::Open {
        path: path.to_owned(),
        source,
    };
    // Never another program's database, whether it was there at start (a check refused
    // it already) or put in place of the history file later: read before anything is set
    // (connecting sets the journal mode, a write). A file locked now is tried by the
    // connect below, which finds it locked too.
    if path.exists()
        && let Err(e) = check_file(path).await
        && !e.is_busy()
    {
        return Err(e);
    }
    // One connection of its own creates and migrates the file: `auto_vacuum` must be set
    // before the first table exists.
    let setup = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(connect_options(path, busy_timeout))
        .await
        .map_err(open_error)?;
    // And read again on the connection that migrates: the read above may have found the
    // file locked, or another file may have been put in its place since.
    let held = match setup.acquire().await {
        Ok(mut conn) => holds_weft_history(&mut conn, path).await,
        Err(e) => Err(open_error(e)),
    };
    if let Err(e) = held {
        setup.close().await;
        return Err(e);
    }
    let migrated = match record_relanded(&setup).await {
        Ok(()) => MIGRATOR.run(&setup).await,
        Err(e) => Err(e.into()),
    };
    setup.close().await;
    migrated.map_err(|source| StoreError::Migrate {
        path: path.to_owned(),
        source,
    })?;
    read_pool_options(busy_timeout, max_readers)
        .connect_with(read_options(path, busy_timeout))
        .await
        .map_err(open_error)
}

/// A read pool on `path` that connects only when a query asks: for a file another program
/// holds locked at start, whose readers may still read (WAL) while nothing can be written.
pub(crate) fn lazy_read_pool(path: &Path, busy_timeout: Duration, max_readers: u32) -> SqlitePool {
    read_pool_options(busy_timeout, max_readers).connect_lazy_with(read_options(path, busy_timeout))
}

/// The read pool's settings. A query waits for a free reader no longer than for a lock: a
/// view over a busy pool degrades in seconds rather than sqlx's default of 30.
fn read_pool_options(busy_timeout: Duration, max_readers: u32) -> SqlitePoolOptions {
    SqlitePoolOptions::new()
        .max_connections(max_readers.max(1))
        .min_connections(0)
        .acquire_timeout(busy_timeout)
}

/// Migrations that were once applied under another version: `(was, is)`. The tasks
/// migration was on main as 5 for a few hours (0988742 to 8124595), withdrawn, and landed
/// again as 7, the same statements byte for byte. A file from those hours records 5, which
/// the migrations no longer have (sqlx refuses such a file) and then needs 7, whose
/// columns it already has.
const RELANDED: &[(i64, i64)] = &[(5, 7)];

/// Records a migration a file applied under an earlier version as applied under the one
/// it landed as, when it is the same migration (its checksum says so), so the file opens
/// and the migration is not run twice. Nothing for a new file or any other.
async fn record_relanded(setup: &SqlitePool) -> Result<(), sqlx::Error> {
    let table: Option<i64> = sqlx::query_scalar(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'",
    )
    .fetch_optional(setup)
    .await?;
    if table.is_none() {
        return Ok(());
    }
    for &(was, is) in RELANDED {
        let Some(landed) = MIGRATOR.iter().find(|m| m.version == is) else {
            continue;
        };
        sqlx::query(
            "UPDATE _sqlx_migrations SET version = ?1 WHERE version = ?2 AND checksum = ?3 \
             AND NOT EXISTS (SELECT 1 FROM _sqlx_migrations WHERE version = ?1)",
        )
        .bind(is)
        .bind(was)
        .bind(landed.checksum.as_ref())
        .execute(setup)
        .await?;
    }
    Ok(())
}

/// What opening the file at `path` would refuse, read only (see `Store::check_file`).
/// Without a `-wal` or `-journal` beside it (nothing in a journal to read) the file is
/// read as immutable, so SQLite makes no `-wal` or `-shm` of its own to read it, nor
/// takes a lock.
pub(crate) async fn check_file(path: &Path) -> Result<(), StoreError> {
    use sqlx::Connection;
    let open_error = |source| StoreError::Open {
        path: path.to_owned(),
        source,
    };
    // Beside the file a link leads to, where SQLite keeps them; a hot rollback journal is
    // to be read too.
    let target = crate::lock::through_links(path);
    let [wal, _] = sidecar_paths(&target);
    let mut journal = target.into_os_string();
    journal.push("-journal");
    let quiet = !wal.exists() && !Path::new(&journal).exists();
    let mut conn = SqliteConnectOptions::new()
        .filename(path)
        .read_only(true)
        .immutable(quiet)
        .connect()
        .await
        .map_err(open_error)?;
    let result = holds_weft_history(&mut conn, path).await;
    let _ = conn.close().await;
    result
}

/// Whether the database `conn` is open on (the file at `path`) is one this weft can keep
/// its history in, as opening it would find: empty, or weft's with no migration of a
/// later weft, none changed since it was applied, none half applied, and its tables
/// those its migrations make. Read only, in one read transaction: what is read of the
/// migrations and of the tables is the same moment of the file, though another process
/// migrates it meanwhile.
pub(crate) async fn holds_weft_history(
    conn: &mut SqliteConnection,
    path: &Path,
) -> Result<(), StoreError> {
    use sqlx::Connection;
    let open_error = |source| StoreError::Open {
        path: path.to_owned(),
        source,
    };
    let mut read = conn.begin().await.map_err(open_error)?;
    let held = read_history(&mut read, path).await;
    // Nothing was written: rolling back only ends the read.
    let _ = read.rollback().await;
    held
}

/// [`holds_weft_history`] within its read transaction.
async fn read_history(conn: &mut SqliteConnection, path: &Path) -> Result<(), StoreError> {
    let open_error = |source| StoreError::Open {
        path: path.to_owned(),
        source,
    };
    let tables: Vec<String> =
        sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table'")
            .fetch_all(&mut *conn)
            .await
            .map_err(open_error)?;
    if tables.is_empty() {
        return Ok(());
    }
    if !tables.iter().any(|t| t == "_sqlx_migrations") {
        return Err(StoreError::Foreign {
            path: path.to_owned(),
        });
    }
    let applied: Vec<(i64, Vec<u8>, bool)> =
        sqlx::query_as("SELECT version, checksum, success FROM _sqlx_migrations ORDER BY version")
            .fetch_all(&mut *conn)
            .await
            .map_err(open_error)?;
    let refused = |source| StoreError::Migrate {
        path: path.to_owned(),
        source,
    };
    let mut recorded = Vec::with_capacity(applied.len());
    for (version, checksum, success) in applied {
        // Recorded under its old version, the same migration as the one it landed as:
        // renamed when the file is opened.
        let relanded = RELANDED.iter().any(|&(was, is)| {
            was == version
                && MIGRATOR
                    .iter()
                    .any(|m| m.version == is && m.checksum.as_ref() == checksum.as_slice())
        });
        if relanded {
            recorded.extend(RELANDED.iter().filter(|r| r.0 == version).map(|r| r.1));
            continue;
        }
        let Some(known) = MIGRATOR.iter().find(|m| m.version == version) else {
            return Err(StoreError::Later {
                path: path.to_owned(),
                version,
            });
        };
        // As the migrator finds them when it runs, in the words it uses.
        if !success {
            return Err(refused(sqlx::migrate::MigrateError::Dirty(version)));
        }
        if known.checksum.as_ref() != checksum.as_slice() {
            return Err(refused(sqlx::migrate::MigrateError::VersionMismatch(
                version,
            )));
        }
        recorded.push(version);
    }
    // And the tables are what those migrations make: a column dropped by hand would fail
    // every write, and one a migration to come makes (its record deleted, say) would fail
    // that migration. What the file has besides (an index, a view or a table of one's
    // own) is left alone, and said; but a trigger or a UNIQUE index, which could refuse
    // weft's rows.
    recorded.sort_unstable();
    recorded.dedup();
    let schema_error = |detail| StoreError::Schema {
        path: path.to_owned(),
        detail,
    };
    let replayed = |e: sqlx::Error| schema_error(format!("its migrations did not replay: {e}"));
    let made = schema_made_by(&recorded).await.map_err(replayed)?;
    let found = schema_of(conn).await.map_err(open_error)?;
    let missing: Vec<&String> = made.difference(&found).collect();
    let extra: Vec<&String> = found.difference(&made).collect();
    if missing.is_empty() && extra.is_empty() {
        return Ok(());
    }
    let all: Vec<i64> = MIGRATOR.iter().map(|m| m.version).collect();
    let to_come = schema_made_by(&all).await.map_err(replayed)?;
    // In the way too: a trigger or a UNIQUE index of one's own, either of which can fail
    // weft's inserts (told by its statement, `index NAME: CREATE UNIQUE INDEX ...`, not
    // by a name that happens to say unique).
    let refuses_rows = |item: &str| {
        let unique = |sql: &str| {
            let mut words = sql.split_ascii_whitespace();
            words
                .next()
                .is_some_and(|w| w.eq_ignore_ascii_case("CREATE"))
                && words
                    .next()
                    .is_some_and(|w| w.eq_ignore_ascii_case("UNIQUE"))
        };
        item.starts_with("trigger ")
            || item
                .strip_prefix("index ")
                .and_then(|rest| rest.split_once(": "))
                .is_some_and(|(_, sql)| unique(sql))
    };
    let (in_the_way, own): (Vec<&String>, Vec<&String>) = extra
        .into_iter()
        .partition(|item| (to_come.contains(*item) && !made.contains(*item)) || refuses_rows(item));
    if !own.is_empty() {
        tracing::warn!(
            path = %path.display(),
            objects = %listed(&own),
            "the history file has tables, columns, indexes or views weft's migrations do not make; left alone"
        );
    }
    let said: Vec<String> = [
        (missing, "missing"),
        (
            in_the_way,
            "made though no recorded migration makes it, or able to refuse rows",
        ),
    ]
    .into_iter()
    .filter(|(items, _)| !items.is_empty())
    .map(|(items, what)| format!("{what}: {}", listed(&items)))
    .collect();
    match said.is_empty() {
        true => Ok(()),
        false => Err(schema_error(said.join("; "))),
    }
}

/// The first few of `items`, and how many more there are.
fn listed(items: &[&String]) -> String {
    let shown: Vec<&str> = items.iter().take(3).map(|s| s.as_str()).collect();
    match items.len() - shown.len() {
        0 => shown.join("; "),
        more => format!("{} and {more} more", shown.join("; ")),
    }
}

/// Each column of each table (its name, declared type, NOT NULL, default and place in
/// the primary key), and each index, trigger and view (its statement), of the database
/// `conn` is open on; sqlx's own table and SQLite's left out.
async fn schema_of(conn: &mut SqliteConnection) -> Result<Schema, sqlx::Error> {
    let columns: Vec<(String, String, String, bool, Option<String>, i64)> = sqlx::query_as(
        "SELECT m.name, p.name, p.type, p.\"notnull\", p.dflt_value, p.pk \
         FROM sqlite_master m JOIN pragma_table_info(m.name) p \
         WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite\\_%' ESCAPE '\\' \
         AND m.name != '_sqlx_migrations'",
    )
    .fetch_all(&mut *conn)
    .await?;
    let others: Vec<(String, String, Option<String>)> = sqlx::query_as(
        "SELECT type, name, sql FROM sqlite_master \
         WHERE type != 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'",
    )
    .fetch_all(&mut *conn)
    .await?;
    let columns = columns
        .into_iter()
        .map(|(table, column, kind, not_null, default, pk)| {
            let not_null = if not_null { " NOT NULL" } else { "" };
            let default = default.map(|d| format!(" DEFAULT {d}")).unwrap_or_default();
            let pk = if pk > 0 {
                format!(" (primary key {pk})")
            } else {
                String::new()
            };
            format!("column {table}.{column} {kind}{not_null}{default}{pk}")
        });
    let others = others
        .into_iter()
        .map(|(kind, name, sql)| format!("{kind} {name}: {}", sql.unwrap_or_default()));
    Ok(columns.chain(others).collect())
}

/// A schema as [`schema_of`] describes it.
type Schema = std::collections::BTreeSet<String>;

/// The schema (see [`schema_of`]) the migrations `versions` make, applied in that order to
/// an empty database in memory; made once a process for each list of versions (a writer
/// reopening a file again and again replays nothing).
async fn schema_made_by(versions: &[i64]) -> Result<std::sync::Arc<Schema>, sqlx::Error> {
    use sqlx::Connection;
    type Made = std::sync::Mutex<std::collections::HashMap<Vec<i64>, std::sync::Arc<Schema>>>;
    static MADE: std::sync::OnceLock<Made> = std::sync::OnceLock::new();
    let made = MADE.get_or_init(Made::default);
    let lock = || {
        made.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    };
    if let Some(schema) = lock().get(versions) {
        return Ok(schema.clone());
    }
    let mut conn = SqliteConnection::connect("sqlite::memory:").await?;
    for version in versions {
        if let Some(migration) = MIGRATOR.iter().find(|m| m.version == *version) {
            sqlx::raw_sql(migration.sql.clone())
                .execute(&mut conn)
                .await?;
        }
    }
    let schema = schema_of(&mut conn).await;
    let _ = conn.close().await;
    let schema = std::sync::Arc::new(schema?);
    lock().insert(versions.to_vec(), schema.clone());
    Ok(schema)
}

/// Opens the writer's own connection; the file must already be migrated.
pub(crate) async fn open_writer_connection(
    path: &Path,
    busy_timeout: Duration,
) -> Result<SqliteConnection, StoreError> {
    connect_options(path, busy_timeout)
        .connect()
        .await
        .map_err(|source| StoreError::Open {
            path: path.to_owned(),
            source,
        })
}

/// Which file a path names: a deleted-and-recreated file keeps its path but not its inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileId {
    /// The device, since an inode number is unique only within one.
    dev: u64,
    ino: u64,
}

impl FileId {
    /// The identity of the file at `path` now, or `None` if there is none.
    pub(crate) fn of(path: &Path) -> Option<FileId> {
        std::fs::metadata(path).ok().map(|m| FileId {
            dev: m.dev(),
            ino: m.ino(),
        })
    }
}

/// Which files SQLite keeps its journal in beside the database at `path` now: the `-wal`
/// and `-shm` of the file the path leads to (SQLite follows links and keeps them beside
/// the file itself).
pub(crate) fn journal_ids(path: &Path) -> [Option<FileId>; 2] {
    sidecar_paths(&crate::lock::through_links(path)).map(|p| FileId::of(&p))
}

/// The `-wal` and `-shm` companions of a database file.
pub(crate) fn sidecar_paths(path: &Path) -> [PathBuf; 2] {
    let with_suffix = |suffix: &str| {
        let mut s = path.as_os_str().to_owned();
        s.push(suffix);
        PathBuf::from(s)
    };
    [with_suffix("-wal"), with_suffix("-shm")]
}

/// The current read pool. The writer swaps in a new one when it recreates a deleted file; readers
/// take a clone (an `Arc` bump) per query.
#[derive(Debug)]
pub(crate) struct PoolCell(std::sync::RwLock<Pool>);

impl PoolCell {
    pub(crate) fn new(pool: Pool) -> Self {
        Self(std::sync::RwLock::new(pool))
    }

    pub(crate) fn get(&self) -> Pool {
        self.0
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Installs `pool` and returns the one it replaces.
    pub(crate) fn replace(&self, pool: Pool) -> Pool {
        let mut guard = self
            .0
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        std::mem::replace(&mut *guard, pool)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each migration that has landed, with the SHA-384 of its SQL as sqlx records it in
    /// every history file that applied it.
    const LANDED: &[(i64, &str, &str)] = &[
        (
            1,
            "initial",
            "eac30766e84740ba4e8c4c9278e5db3a0f6a3a6fc0f9715dbe2fcdbbbabb2e07a76725cf2cab898350d0e60368cbfd5f",
        ),
        (
            2,
            "connection events",
            "577b1bb2afa2d9768947c95dee0be4e0b0bd6d29dc2e4616848d652d9c101d104e215e3d086f553e32ee6d2610e8bcaa",
        ),
        (
            3,
            "named steps",
            "85a668a6fa80dec58eaee70abeabf7650a886a339dae2da52768bad81fece5eec52be4625a9c1247a3976a1be81e840f",
        ),
        (
            4,
            "query log",
            "c00f8e8381ce7321b0169fea1c90df16a8ca725ee642dcc57aa5de7696ef57bf4fa506d49e520362f96fab554bfcce05",
        ),
        (
            6,
            "deadlock",
            "adeb9442b884813e2909879db1704cf2029458d90d8c0d0bf7e26ba82924c0c7a0bed67bf2f3fc30d0a5e2743abb5cf2",
        ),
        (
            7,
            "tasks",
            "97a904ef18109df0a81f1a07b693bb22118f61a27f92a6e0a21c1a98d977c10e6cec886d02a9c1089e83a4c44e15e9e8",
        ),
        (
            8,
            "instance",
            "56b67d58ebfe622ca7f46c6e6549299d69dc56d87233b1abef54043993f57a0b3bcfde82b74542776b42b8b704e50577",
        ),
        (
            9,
            "reactor",
            "e6e3a701997b97817a8d110a79edafc922bd10edae2fac775f0abe78a53f5dff36d18dbb7a257d04a780cdead2ce3c0a",
        ),
        (
            10,
            "ended at",
            "d320333e6105b35813f11d85448f66890b2c7682bebf7973ece33348d3935b6ab5bfa4bd41ef14fdd5701f910f2f0c78",
        ),
    ];

    /// The same, for the PostgreSQL schema in `migrations/postgres/`.
    const LANDED_POSTGRES: &[(i64, &str, &str)] = &[
        (
            1,
            "initial",
            "574d5c83761acf30782455b6c4c310b0da5dbdcdcd10e4c4dcc5ac35dd6d02dc7f2daed90a324153239379cae0853fd3",
        ),
        (
            2,
            "reactor",
            "9758cffcd99385d578f36b4b92c0073a90e18ce2730ed0bf006c20b2381c2e3f565ff2310febe578bac17ae8d0f91f16",
        ),
        (
            3,
            "ended at",
            "00ae20a14d8e87a6bce9cb3d073aa6be88f1dc8d7a62849d1dbe84d15415eaa41a28be81e69068601976afffa5a02cb2",
        ),
    ];

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// sqlx refuses to open a file whose applied migrations changed checksum, so editing a
    /// landed migration would strand every user's history.
    #[test]
    fn landed_migrations_are_never_edited() {
        assert_pinned(&MIGRATOR, LANDED);
        assert_pinned(&crate::backend::PG_MIGRATOR, LANDED_POSTGRES);
    }

    fn assert_pinned(migrator: &Migrator, landed: &[(i64, &str, &str)]) {
        let embedded: Vec<_> = migrator.iter().collect();
        for &(version, description, checksum) in landed {
            let Some(m) = embedded.iter().find(|m| m.version == version) else {
                panic!(
                    "migration {version} ({description}) is gone: history files that applied it can no longer be opened"
                );
            };
            assert_eq!(
                (m.description.as_ref(), hex(&m.checksum).as_str()),
                (description, checksum),
                "migration {version} ({description}) changed after it landed: history files \
                 that applied it can no longer be opened. Released migrations are never edited: \
                 restore it and add a new migration instead."
            );
        }
        for m in embedded {
            assert!(
                landed.iter().any(|&(version, ..)| version == m.version),
                "migration {} ({}) is not pinned: add its version, description and checksum \
                 ({}) to LANDED when it lands",
                m.version,
                m.description,
                hex(&m.checksum)
            );
        }
    }

    /// A file written while the tasks migration was number 5 (before it landed again as
    /// 7) opens, with its tasks columns, and has 7 recorded rather than run again.
    #[tokio::test]
    async fn a_file_that_applied_the_tasks_migration_as_5_opens() {
        let dir = tempfile::tempdir().unwrap();
        let then = dir.path().join("migrations");
        std::fs::create_dir(&then).unwrap();
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../migrations");
        for name in [
            "0001_initial.sql",
            "0002_connection_events.sql",
            "0003_named_steps.sql",
            "0004_query_log.sql",
        ] {
            std::fs::copy(root.join(name), then.join(name)).unwrap();
        }
        std::fs::copy(root.join("0007_tasks.sql"), then.join("0005_tasks.sql")).unwrap();
        let path = dir.path().join("weft.db");
        let old = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(connect_options(&path, Duration::from_secs(5)))
            .await
            .unwrap();
        Migrator::new(then.as_path())
            .await
            .unwrap()
            .run(&old)
            .await
            .unwrap();
        old.close().await;

        let pool = open_pool(&path, Duration::from_secs(5), 1)
            .await
            .expect("a file from the days of migration 5 opens");
        let versions: Vec<i64> =
            sqlx::query_scalar("SELECT version FROM _sqlx_migrations ORDER BY version")
                .fetch_all(&pool)
                .await
                .unwrap();
        let latest = MIGRATOR.iter().map(|m| m.version).max().unwrap();
        assert_eq!(
            versions,
            (1..=latest).filter(|v| *v != 5).collect::<Vec<_>>()
        );
        let kind: Option<String> = sqlx::query_scalar("SELECT kind FROM deferreds LIMIT 1")
            .fetch_optional(&pool)
            .await
            .unwrap();
        assert_eq!(kind, None, "the tasks column is there");
    }

    /// What a configuration check finds in a file without opening it for writing: what
    /// opening it would refuse.
    #[tokio::test]
    async fn a_file_open_would_refuse_is_found_read_only() {
        use sqlx::Connection;
        let dir = tempfile::tempdir().unwrap();
        let ours = dir.path().join("weft.db");
        open_pool(&ours, Duration::from_secs(5), 1)
            .await
            .unwrap()
            .close()
            .await;
        check_file(&ours).await.expect("weft's own history");

        let corrupt = dir.path().join("corrupt.db");
        let mut bytes = b"SQLite format 3\0".to_vec();
        bytes.extend(std::iter::repeat_n(0xa5, 4096));
        std::fs::write(&corrupt, bytes).unwrap();
        assert!(matches!(
            check_file(&corrupt).await,
            Err(StoreError::Open { .. })
        ));

        let foreign = dir.path().join("foreign.db");
        let mut other = connect_options(&foreign, Duration::from_secs(5))
            .connect()
            .await
            .unwrap();
        sqlx::query("CREATE TABLE connections (x)")
            .execute(&mut other)
            .await
            .unwrap();
        other.close().await.unwrap();
        assert!(matches!(
            check_file(&foreign).await,
            Err(StoreError::Foreign { .. })
        ));

        let later = dir.path().join("later.db");
        let pool = open_pool(&later, Duration::from_secs(5), 1).await.unwrap();
        let mut conn = connect_options(&later, Duration::from_secs(5))
            .connect()
            .await
            .unwrap();
        sqlx::query(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, \
             execution_time) VALUES (999, 'later', 1, x'00', 0)",
        )
        .execute(&mut conn)
        .await
        .unwrap();
        conn.close().await.unwrap();
        pool.close().await;
        assert!(matches!(
            check_file(&later).await,
            Err(StoreError::Later { version: 999, .. })
        ));

        // A migration changed since it was applied, or applied in part: what the migrator
        // refuses when it runs, in its words. And tables that are not what the recorded
        // migrations make: a column dropped by hand (every write would fail), and
        // migration 10's record removed (its column is there, and running it again would
        // fail). Each refused by a check and at start alike.
        for (change, says) in [
            (
                "UPDATE _sqlx_migrations SET checksum = x'00' WHERE version = 3",
                "migration 3 was previously applied but has been modified",
            ),
            (
                "UPDATE _sqlx_migrations SET success = 0 WHERE version = 2",
                "migration 2 is partially applied",
            ),
            (
                "ALTER TABLE connections DROP COLUMN reactor",
                "(missing: column connections.reactor INTEGER)",
            ),
            (
                "DELETE FROM _sqlx_migrations WHERE version = 10",
                "(made though no recorded migration makes it, or able to refuse rows: column deferreds.ended_at_ms INTEGER)",
            ),
        ] {
            let file = dir.path().join("changed.db");
            std::fs::copy(&ours, &file).unwrap();
            let mut conn = connect_options(&file, Duration::from_secs(5))
                .connect()
                .await
                .unwrap();
            sqlx::query(change).execute(&mut conn).await.unwrap();
            conn.close().await.unwrap();
            let checked = check_file(&file).await.unwrap_err().to_string();
            assert!(checked.contains(says), "{checked}");
            let opened = open_pool(&file, Duration::from_secs(5), 1)
                .await
                .unwrap_err();
            assert!(opened.to_string().contains(says), "{opened}");
        }

        // What a file has besides its migrations' tables (an operator's own index, view or
        // table) is left alone: it fails no write and no migration. A trigger or a UNIQUE
        // index of one's own could refuse weft's rows: refused.
        for statement in [
            "CREATE TRIGGER nope BEFORE INSERT ON connections BEGIN SELECT RAISE(ABORT, 'no'); END",
            "CREATE UNIQUE INDEX one ON connections (service)",
        ] {
            let file = dir.path().join("refusing.db");
            std::fs::copy(&ours, &file).unwrap();
            let mut conn = connect_options(&file, Duration::from_secs(5))
                .connect()
                .await
                .unwrap();
            sqlx::query(statement).execute(&mut conn).await.unwrap();
            conn.close().await.unwrap();
            let checked = check_file(&file).await.unwrap_err().to_string();
            assert!(checked.contains("able to refuse rows"), "{checked}");
        }
        let own = dir.path().join("own.db");
        std::fs::copy(&ours, &own).unwrap();
        let mut conn = connect_options(&own, Duration::from_secs(5))
            .connect()
            .await
            .unwrap();
        for statement in [
            "CREATE INDEX mine_not_unique ON connections (service)",
            "CREATE TABLE notes (x)",
            "CREATE VIEW recent AS SELECT id FROM connections",
        ] {
            sqlx::query(statement).execute(&mut conn).await.unwrap();
        }
        conn.close().await.unwrap();
        check_file(&own)
            .await
            .expect("an index, table and view of one's own");
        open_pool(&own, Duration::from_secs(5), 1)
            .await
            .expect("opens")
            .close()
            .await;

        // A file in rollback-journal mode that another program holds locked: read as it
        // is, without waiting on the lock (a start serves and writes once it is let go).
        let journal = dir.path().join("journal.db");
        std::fs::copy(&ours, &journal).unwrap();
        let mut holder = connect_options(&journal, Duration::from_secs(5))
            .journal_mode(SqliteJournalMode::Delete)
            .connect()
            .await
            .unwrap();
        sqlx::query("BEGIN EXCLUSIVE")
            .execute(&mut holder)
            .await
            .unwrap();
        check_file(&journal).await.expect("read past the lock");
        sqlx::query("COMMIT").execute(&mut holder).await.unwrap();
        holder.close().await.unwrap();

        // Reading a WAL file makes its `-wal` and `-shm`: a check leaves none behind.
        for sidecar in sidecar_paths(&ours) {
            let _ = std::fs::remove_file(sidecar);
        }
        check_file(&ours).await.expect("weft's own history");
        for sidecar in sidecar_paths(&ours) {
            assert!(!sidecar.exists(), "{} left", sidecar.display());
        }
    }

    #[tokio::test]
    async fn readers_open_while_another_process_holds_the_write_lock() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("weft.db");
        let pool = open_pool(&path, Duration::from_millis(200), 4)
            .await
            .unwrap();
        let mut other = connect_options(&path, Duration::from_secs(5))
            .connect()
            .await
            .unwrap();
        sqlx::query("BEGIN EXCLUSIVE")
            .execute(&mut other)
            .await
            .unwrap();
        // Four at once: the pool opens new connections while the lock is held.
        let mut readers = Vec::new();
        for _ in 0..4 {
            readers.push(pool.acquire().await.expect("a reader opens"));
        }
        for reader in &mut readers {
            let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM connections")
                .fetch_one(&mut **reader)
                .await
                .unwrap();
            assert_eq!(n, 0);
        }
    }
}

//! Retention: deleting finished rows older than the retention window, a chunk at a time.
//!
//! Only closed connections, fired or leaked Deferreds (with their steps), events and the query
//! log are ever deleted; an open connection or a pending Deferred stays however old it is,
//! because it is still live. Each chunk is its own short transaction so the writer is never
//! locked out for long, and freed pages are handed back with `incremental_vacuum` so the file
//! shrinks as well as stops growing.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::{AssertSqlSafe, SqlSafeStr, SqlStr};
use tokio::sync::watch;

use crate::backend::{Dialect, Pool, on_pool};
use crate::schema::PoolCell;
use crate::stats::StoreStats;

/// Each statement deletes at most `$2` rows finished before `$1` (unix ms). In a shared
/// database every gateway prunes every instance's finished rows by its own window: give the
/// fleet one retention.
fn prune_connections_sql(d: Dialect) -> String {
    format!(
        "DELETE FROM connections WHERE {} IN (
    SELECT {} FROM connections
    WHERE closed_at_ms IS NOT NULL AND closed_at_ms < $1
    ORDER BY closed_at_ms LIMIT $2)",
        d.key("id"),
        d.key_columns("id")
    )
}

/// Rows of `table` (keyed by `key`) stamped at `at_ms` before `$1`, the oldest `$2`.
fn prune_by_time_sql(d: Dialect, table: &str, key: &str) -> String {
    format!(
        "DELETE FROM {table} WHERE {} IN (
    SELECT {} FROM {table} WHERE at_ms < $1 ORDER BY at_ms LIMIT $2)",
        d.key(key),
        d.key_columns(key)
    )
}

/// Fired chains (`$1`, `$2` as above), by key.
fn fired_sql(d: Dialect) -> String {
    format!(
        "SELECT {} FROM deferreds{}
    WHERE fired_at_ms IS NOT NULL AND fired_at_ms < $1
      AND state IN ('succeeded', 'failed', 'cancelled')
    ORDER BY fired_at_ms LIMIT $2",
        d.key_columns("id"),
        d.indexed_by("deferreds_fired")
    )
}

/// A leaked Deferred was dropped without firing: it is finished even though its state never
/// left `pending`, and would otherwise be kept forever.
fn leaked_sql(d: Dialect) -> String {
    format!(
        "SELECT {} FROM deferreds
    WHERE {} AND created_at_ms < $1
    ORDER BY created_at_ms LIMIT $2",
        d.key_columns("id"),
        d.flag("leaked")
    )
}

/// Steps whose Deferred was never stored (dropped under load) would otherwise stay forever.
fn orphan_steps_sql(d: Dialect) -> String {
    let row = match d {
        Dialect::Sqlite => "rowid",
        Dialect::Postgres => "ctid",
    };
    format!(
        "DELETE FROM deferred_steps WHERE {row} IN (
    SELECT s.{row} FROM deferred_steps s
    WHERE s.started_at_us < $1 * 1000
      AND NOT EXISTS (SELECT 1 FROM deferreds d WHERE d.id = s.deferred_id{})
    LIMIT $2)",
        if d.shared() {
            " AND d.instance = s.instance"
        } else {
            ""
        }
    )
}

fn sql(text: String) -> SqlStr {
    AssertSqlSafe(text).into_sql_str()
}

/// Deletes every finished row older than `cutoff_ms` (unix ms), `chunk` rows per
/// transaction, adding each chunk to `deleted` as it commits (a pass that fails part way
/// has still deleted those). A file's freed pages are then handed back to the filesystem.
pub(crate) async fn prune(
    pool: &Pool,
    cutoff_ms: i64,
    chunk: u32,
    deleted: &mut u64,
) -> Result<(), sqlx::Error> {
    let d = pool.dialect();
    let chunk = i64::from(chunk.max(1));
    for text in [
        prune_connections_sql(d),
        prune_by_time_sql(d, "events", "seq"),
        prune_by_time_sql(d, "queries", "id"),
    ] {
        prune_table(pool, sql(text), cutoff_ms, chunk, deleted).await?;
    }
    for finished in [fired_sql(d), leaked_sql(d)] {
        prune_deferreds(pool, d, &finished, cutoff_ms, chunk, deleted).await?;
    }
    prune_table(pool, sql(orphan_steps_sql(d)), cutoff_ms, chunk, deleted).await?;
    if let Pool::Sqlite(pool) = pool {
        give_back(pool).await?;
    }
    Ok(())
}

/// Hands a file's free pages back to the filesystem (`incremental_vacuum`), whenever it
/// has any: also those an earlier pass freed and failed to hand back.
///
/// A step at a time, with a checkpoint after each: the pages it moves go through the
/// journal, so freeing all at once would need as much room as it frees.
pub(crate) async fn give_back(pool: &sqlx::SqlitePool) -> Result<(), sqlx::Error> {
    let count = || async {
        sqlx::query_scalar::<_, i64>("PRAGMA freelist_count")
            .fetch_one(pool)
            .await
    };
    let mut free = count().await?;
    while free > 0 {
        sqlx::query("PRAGMA incremental_vacuum(1024)")
            .execute(pool)
            .await?;
        checkpoint(pool).await;
        let left = count().await?;
        if left >= free {
            break;
        }
        free = left;
    }
    Ok(())
}

/// Journal frames past which a chunk's checkpoint cuts the journal back (8 MiB of 4 KiB
/// pages): deleting rows spread over a table's indexes writes many pages a chunk.
const LARGE_JOURNAL_FRAMES: i64 = 2048;

/// Lets the journal be written again from its start (a passive checkpoint, which waits
/// for no one): deletions chunk after chunk then reuse its space rather than grow it.
/// A journal grown large anyway (a reader held it) is cut back, waiting for readers at
/// most the busy timeout: on a filesystem kept nearly full, it is the room retention has.
async fn checkpoint(pool: &sqlx::SqlitePool) {
    let passive: Result<(i64, i64, i64), _> = sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)")
        .fetch_one(pool)
        .await;
    if let Ok((_, frames, _)) = passive
        && frames > LARGE_JOURNAL_FRAMES
    {
        truncate_journal(pool).await;
    }
}

/// Copies the journal into the file and cuts it to nothing, if no reader holds it now:
/// waiting for readers would hold the writer's batches behind this (it takes the write
/// lock first), so it does not wait.
pub(crate) async fn truncate_journal(pool: &sqlx::SqlitePool) {
    let Ok(mut conn) = pool.acquire().await else {
        return;
    };
    let Ok(wait) = sqlx::query_scalar::<_, i64>("PRAGMA busy_timeout")
        .fetch_one(&mut *conn)
        .await
    else {
        return;
    };
    if sqlx::query("PRAGMA busy_timeout = 0")
        .execute(&mut *conn)
        .await
        .is_ok()
    {
        let _ = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&mut *conn)
            .await;
    }
    let restore = format!("PRAGMA busy_timeout = {wait}");
    if sqlx::query(sqlx::AssertSqlSafe(restore).into_sql_str())
        .execute(&mut *conn)
        .await
        .is_err()
    {
        // A connection left with no wait would fail reads a lock makes wait: not reused.
        conn.detach();
    }
}

async fn prune_table(
    pool: &Pool,
    text: SqlStr,
    cutoff_ms: i64,
    chunk: i64,
    deleted: &mut u64,
) -> Result<(), sqlx::Error> {
    loop {
        let n = on_pool!(pool, p => sqlx::query(text.clone())
            .bind(cutoff_ms)
            .bind(chunk)
            .execute(p)
            .await?
            .rows_affected());
        *deleted += n;
        if let Pool::Sqlite(pool) = pool {
            checkpoint(pool).await;
        }
        if n < chunk as u64 {
            return Ok(());
        }
        tokio::task::yield_now().await;
    }
}

/// Deferreds chosen by `finished` and their steps go together, in one transaction per chunk.
async fn prune_deferreds(
    pool: &Pool,
    d: Dialect,
    finished: &str,
    cutoff_ms: i64,
    chunk: i64,
    deleted: &mut u64,
) -> Result<(), sqlx::Error> {
    let steps = sql(format!(
        "DELETE FROM deferred_steps WHERE {} IN ({finished})",
        d.key("deferred_id")
    ));
    let deferreds = sql(format!(
        "DELETE FROM deferreds WHERE {} IN ({finished})",
        d.key("id")
    ));
    loop {
        let (s, d) = on_pool!(pool, p => {
            let mut tx = p.begin().await?;
            // Same subquery, same snapshot: both statements see the same chunk of Deferreds.
            let s = sqlx::query(steps.clone())
                .bind(cutoff_ms)
                .bind(chunk)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            let d = sqlx::query(deferreds.clone())
                .bind(cutoff_ms)
                .bind(chunk)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            tx.commit().await?;
            (s, d)
        });
        *deleted += s + d;
        if let Pool::Sqlite(pool) = pool {
            checkpoint(pool).await;
        }
        if d < chunk as u64 {
            return Ok(());
        }
        tokio::task::yield_now().await;
    }
}

/// Now, in unix milliseconds.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Prunes every `interval` until `stop` changes or its sender is dropped.
pub(crate) async fn run(
    pools: Arc<PoolCell>,
    stats: Arc<StoreStats>,
    retention: Duration,
    interval: Duration,
    chunk: u32,
    mut stop: watch::Receiver<bool>,
) {
    let window = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
    let mut failing = false;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.changed() => return,
        }
        let cutoff = now_ms().saturating_sub(window);
        let pool = pools.get();
        let mut n = 0;
        let result = tokio::select! {
            r = prune(&pool, cutoff, chunk, &mut n) => r,
            _ = stop.changed() => return,
        };
        stats.add_pruned(n);
        match result {
            Ok(()) => {
                if n > 0 {
                    tracing::debug!(rows = n, "pruned history older than the retention window");
                }
                failing = false;
            }
            Err(error) => {
                stats.record_error(format!("retention: {error}"));
                if !failing {
                    failing = true;
                    tracing::warn!(%error, "cannot prune history; will retry");
                }
            }
        }
    }
}

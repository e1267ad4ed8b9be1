//! Retention: deleting finished rows older than the retention window, a chunk at a time.
//!
//! Only closed connections, fired or leaked Deferreds (with their steps), events and the query
//! log are ever
//! deleted; an open connection or a pending Deferred stays however old it is, because it is still
//! live. Each chunk is
//! its own short transaction so the writer is never locked out for long, and freed pages are handed
//! back with `incremental_vacuum` so the file shrinks as well as stops growing.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::SqlitePool;
use tokio::sync::watch;

use crate::schema::PoolCell;
use crate::stats::StoreStats;

/// Each statement deletes at most `?2` rows finished before `?1` (unix ms).
const PRUNE_CONNECTIONS: &str = "DELETE FROM connections WHERE id IN (
    SELECT id FROM connections
    WHERE closed_at_ms IS NOT NULL AND closed_at_ms < ?1
    ORDER BY closed_at_ms LIMIT ?2)";

const FIRED: &str = "SELECT id FROM deferreds INDEXED BY deferreds_fired
    WHERE fired_at_ms IS NOT NULL AND fired_at_ms < ?1
      AND state IN ('succeeded', 'failed', 'cancelled')
    ORDER BY fired_at_ms LIMIT ?2";

/// A leaked Deferred was dropped without firing: it is finished even though its state never
/// left `pending`, and would otherwise be kept forever.
const LEAKED: &str = "SELECT id FROM deferreds
    WHERE leaked <> 0 AND created_at_ms < ?1
    ORDER BY created_at_ms LIMIT ?2";

/// Steps whose Deferred was never stored (dropped under load) would otherwise stay forever.
const PRUNE_ORPHAN_STEPS: &str = "DELETE FROM deferred_steps WHERE rowid IN (
    SELECT s.rowid FROM deferred_steps s
    WHERE s.started_at_us < ?1 * 1000
      AND NOT EXISTS (SELECT 1 FROM deferreds d WHERE d.id = s.deferred_id)
    LIMIT ?2)";

const PRUNE_EVENTS: &str = "DELETE FROM events WHERE seq IN (
    SELECT seq FROM events WHERE at_ms < ?1 ORDER BY at_ms LIMIT ?2)";

const PRUNE_QUERIES: &str = "DELETE FROM queries WHERE id IN (
    SELECT id FROM queries WHERE at_ms < ?1 ORDER BY at_ms LIMIT ?2)";

/// Deletes every finished row older than `cutoff_ms` (unix ms), `chunk` rows per transaction.
/// Returns the number of rows deleted.
pub(crate) async fn prune(
    pool: &SqlitePool,
    cutoff_ms: i64,
    chunk: u32,
) -> Result<u64, sqlx::Error> {
    let chunk = i64::from(chunk.max(1));
    let mut total = 0;
    for sql in [PRUNE_CONNECTIONS, PRUNE_EVENTS, PRUNE_QUERIES] {
        total += prune_table(pool, sql, cutoff_ms, chunk).await?;
    }
    for finished in [FIRED, LEAKED] {
        total += prune_deferreds(pool, finished, cutoff_ms, chunk).await?;
    }
    total += prune_table(pool, PRUNE_ORPHAN_STEPS, cutoff_ms, chunk).await?;
    if total > 0 {
        sqlx::query("PRAGMA incremental_vacuum")
            .execute(pool)
            .await?;
    }
    Ok(total)
}

async fn prune_table(
    pool: &SqlitePool,
    sql: &'static str,
    cutoff_ms: i64,
    chunk: i64,
) -> Result<u64, sqlx::Error> {
    let mut total = 0;
    loop {
        let n = sqlx::query(sql)
            .bind(cutoff_ms)
            .bind(chunk)
            .execute(pool)
            .await?
            .rows_affected();
        total += n;
        if n < chunk as u64 {
            return Ok(total);
        }
        tokio::task::yield_now().await;
    }
}

/// Deferreds chosen by `finished` and their steps go together, in one transaction per chunk.
async fn prune_deferreds(
    pool: &SqlitePool,
    finished: &'static str,
    cutoff_ms: i64,
    chunk: i64,
) -> Result<u64, sqlx::Error> {
    let steps = sqlx::AssertSqlSafe(format!(
        "DELETE FROM deferred_steps WHERE deferred_id IN ({finished})"
    ));
    let deferreds = sqlx::AssertSqlSafe(format!("DELETE FROM deferreds WHERE id IN ({finished})"));
    let (steps, deferreds) = (
        sqlx::SqlSafeStr::into_sql_str(steps),
        sqlx::SqlSafeStr::into_sql_str(deferreds),
    );
    let mut total = 0;
    loop {
        let mut tx = pool.begin().await?;
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
        total += s + d;
        if d < chunk as u64 {
            return Ok(total);
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
        let result = tokio::select! {
            r = prune(&pool, cutoff, chunk) => r,
            _ = stop.changed() => return,
        };
        match result {
            Ok(n) => {
                stats.add_pruned(n);
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

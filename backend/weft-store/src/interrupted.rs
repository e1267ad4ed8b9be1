//! Rows a previous process left unfinished: closed when a store opens the file.
//!
//! A process that stops cleanly closes its connections and ends its chains, and writes so.
//! One that is killed (or crashes, or loses power) leaves their rows open or pending, and
//! nothing would ever finish them: they would be hidden from the live views (nothing live
//! matches them), listed nowhere as closed, and never pruned, since retention deletes only
//! finished rows. The store that opens the file has taken its one-writer lock first (see
//! `lock`), so every row still open then belongs to a process that is gone: it is closed
//! with [`PROCESS_ENDED`] at the last moment the history shows that process alive.

use sqlx::SqlitePool;

/// The close reason of a connection whose process ended without closing it.
pub const PROCESS_ENDED: &str = "process_ended";

const CONNECTION_DETAIL: &str = "the process ended without closing it (killed or crashed); \
     closed at the last activity its history recorded";

const CHAIN_FAILURE: &str = "ProcessEnded: the process ended before this chain did (killed or \
     crashed); ended at the last activity its history recorded";

/// Reads the two partial indexes of open and pending rows only.
const ANY_LEFT_OPEN: &str = "SELECT EXISTS (SELECT 1 FROM connections WHERE closed_at_ms IS NULL) \
     OR EXISTS (SELECT 1 FROM deferreds INDEXED BY deferreds_pending \
     WHERE state IN ('pending', 'running', 'paused', 'waiting'))";

/// The latest time any row records, unix ms: when the previous process was last seen alive.
const LAST_SEEN: &str = "SELECT max( \
     coalesce((SELECT max(at_ms) FROM events), 0), \
     coalesce((SELECT max(opened_at_ms) FROM connections), 0), \
     coalesce((SELECT max(closed_at_ms) FROM connections), 0), \
     coalesce((SELECT max(created_at_ms) FROM deferreds), 0), \
     coalesce((SELECT max(fired_at_ms) FROM deferreds), 0), \
     coalesce((SELECT max(started_at_us) / 1000 FROM deferred_steps), 0))";

const CLOSE_CONNECTIONS: &str = "UPDATE connections \
     SET closed_at_ms = max(opened_at_ms, ?1), close_reason = ?2, close_detail = ?3 \
     WHERE closed_at_ms IS NULL";

/// `cancelled` with a fired time: ended for the views and for retention alike.
const END_CHAINS: &str = "UPDATE deferreds \
     SET state = 'cancelled', fired_at_ms = coalesce(fired_at_ms, max(created_at_ms, ?1)), \
     waiting_on = NULL, failure = ?2 \
     WHERE state IN ('pending', 'running', 'paused', 'waiting')";

/// What [`close_left_open`] closed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Closed {
    pub(crate) connections: u64,
    pub(crate) chains: u64,
}

/// Closes every connection left open and ends every chain left pending, in one transaction.
/// Reads only, and takes no write lock, when there are none.
pub(crate) async fn close_left_open(pool: &SqlitePool) -> Result<Closed, sqlx::Error> {
    let (any,): (bool,) = sqlx::query_as(ANY_LEFT_OPEN).fetch_one(pool).await?;
    if !any {
        return Ok(Closed::default());
    }
    let mut tx = pool.begin().await?;
    let (last_seen,): (i64,) = sqlx::query_as(LAST_SEEN).fetch_one(&mut *tx).await?;
    let connections = sqlx::query(CLOSE_CONNECTIONS)
        .bind(last_seen)
        .bind(PROCESS_ENDED)
        .bind(CONNECTION_DETAIL)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    let chains = sqlx::query(END_CHAINS)
        .bind(last_seen)
        .bind(CHAIN_FAILURE)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    tx.commit().await?;
    Ok(Closed {
        connections,
        chains,
    })
}

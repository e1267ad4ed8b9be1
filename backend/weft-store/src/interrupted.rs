//! Rows a previous process left unfinished: closed when a store opens the file.
//!
//! A process that stops cleanly closes its connections and ends its chains, and writes so.
//! One that is killed (or crashes, or loses power) leaves their rows open or pending, and
//! nothing would ever finish them: they would be hidden from the live views (nothing live
//! matches them), listed nowhere as closed, and never pruned, since retention deletes only
//! finished rows. The store that opens the file has taken its one-writer lock first (see
//! `lock`), so every row still open then belongs to a process that is gone: it is closed
//! with [`PROCESS_ENDED`] at the last moment the history shows that process alive.

use sqlx::{AssertSqlSafe, SqlSafeStr};

use crate::backend::{Dialect, Pool, on_pool};

/// The close reason of a connection whose process ended without closing it.
pub const PROCESS_ENDED: &str = "process_ended";

/// The close reason of a connection whose close history lost (more ends owed than the
/// writer keeps through a long write outage), written when its process stops cleanly.
pub const NOT_RECORDED: &str = "not_recorded";

const UNRECORDED_DETAIL: &str = "its close was not recorded (history writes failed or fell \
     behind for too long); closed when the process stopped";

const UNRECORDED_FAILURE: &str = "NotRecorded: the end of this chain was not recorded (history \
     writes failed or fell behind for too long); ended when the process stopped";

/// Why rows are closed here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Why {
    /// Opening the file: what an earlier process left open.
    ProcessEnded,
    /// Stopping cleanly: what this process closed and history did not record.
    NotRecorded,
}

impl Why {
    fn words(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Self::ProcessEnded => (PROCESS_ENDED, CONNECTION_DETAIL, CHAIN_FAILURE),
            Self::NotRecorded => (NOT_RECORDED, UNRECORDED_DETAIL, UNRECORDED_FAILURE),
        }
    }
}

const CONNECTION_DETAIL: &str = "the process ended without closing it in history (killed or \
     crashed, or stopped while history could not be written); closed when the process was last \
     seen alive";

const CHAIN_FAILURE: &str = "ProcessEnded: the process ended before this chain did in history \
     (killed or crashed, or stopped while history could not be written); ended when the process \
     was last seen alive";

/// Reads the two partial indexes of open and pending rows only; `$1` is the instance, which
/// scopes the search in a shared database, `$2` the time before which the rows began.
fn any_left_open_sql(d: Dialect) -> String {
    let mine = own_rows(d);
    format!(
        "SELECT EXISTS (SELECT 1 FROM connections WHERE closed_at_ms IS NULL \
         AND opened_at_ms < $2{mine}) \
         OR EXISTS (SELECT 1 FROM deferreds{} \
         WHERE state IN ('pending', 'running', 'paused', 'waiting') AND created_at_ms < $2{mine})",
        d.indexed_by("deferreds_pending")
    )
}

/// `AND instance = $1` in a shared database, where other instances' open rows are live;
/// nothing in a file, which has one writer.
fn own_rows(d: Dialect) -> &'static str {
    if d.shared() {
        " AND instance = $1"
    } else {
        " AND $1 IS NOT NULL"
    }
}

/// The latest time any of the instance's rows records, unix ms: when the previous process
/// was last seen alive.
fn last_seen_sql(d: Dialect) -> String {
    let (max, mine) = (d.greatest(), own_rows(d).replacen(" AND", " WHERE", 1));
    format!(
        "SELECT {max}( \
         coalesce((SELECT max(at_ms) FROM events{mine}), 0), \
         coalesce((SELECT max(opened_at_ms) FROM connections{mine}), 0), \
         coalesce((SELECT max(closed_at_ms) FROM connections{mine}), 0), \
         coalesce((SELECT max(created_at_ms) FROM deferreds{mine}), 0), \
         coalesce((SELECT max(fired_at_ms) FROM deferreds{mine}), 0), \
         coalesce((SELECT max(ended_at_ms) FROM deferreds{mine}), 0), \
         coalesce((SELECT max(started_at_us) / 1000 FROM deferred_steps{mine}), 0))"
    )
}

fn close_connections_sql(d: Dialect) -> String {
    format!(
        "UPDATE connections \
         SET closed_at_ms = {}(opened_at_ms, $2), close_reason = $3, close_detail = $4 \
         WHERE closed_at_ms IS NULL AND opened_at_ms < $5{}",
        d.greatest(),
        own_rows(d)
    )
}

/// `cancelled` with a fired time and an end: ended for the views and for retention alike.
fn end_chains_sql(d: Dialect) -> String {
    let greatest = d.greatest();
    format!(
        "UPDATE deferreds \
         SET state = 'cancelled', fired_at_ms = coalesce(fired_at_ms, {greatest}(created_at_ms, $2)), \
         ended_at_ms = {greatest}(created_at_ms, $2), waiting_on = NULL, failure = $3 \
         WHERE state IN ('pending', 'running', 'paused', 'waiting') AND created_at_ms < $4{}",
        own_rows(d)
    )
}

/// What [`close_left_open`] closed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Closed {
    pub(crate) connections: u64,
    pub(crate) chains: u64,
}

/// When closing what an earlier process left open failed, what happens next: said in the
/// log with the failure, or not said (a retry that fails as the last one did).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Then {
    /// The first try: the writer tries again in the background (history still works).
    Retry,
    /// A retry: its failure is the one already said.
    Quietly,
    /// At a clean stop: the next start closes them.
    NextStart,
}

/// Closes what a process that did not stop cleanly left open ([`close_left_open`]), and
/// says so in the log; a failure is said as `then` asks, and leaves those rows open.
///
/// Only rows begun before `started_ms` (unix ms), when this process opened the store: an
/// earlier process's, never this one's, whenever it runs. `alive_ms` is when that process
/// was last seen alive by its heartbeat (a file's lock), if it is known: its rows are
/// closed then, or at the last activity its history recorded if that is later. Returns
/// whether it finished.
pub(crate) async fn close_what_was_left_open(
    pool: &Pool,
    instance: &str,
    location: &str,
    (started_ms, alive_ms): (i64, Option<i64>),
    then: Then,
) -> bool {
    let cannot = match then {
        Then::Retry => Some(
            "cannot close the rows the previous process left open; trying again in the \
             background until it can",
        ),
        Then::Quietly => None,
        Then::NextStart => {
            Some("cannot close the rows the previous process left open; the next start closes them")
        }
    };
    close_and_say(
        pool,
        instance,
        location,
        (Why::ProcessEnded, alive_ms),
        started_ms,
        cannot,
    )
    .await
}

/// At a clean stop whose history lost the end of some rows: every connection is closed and
/// every chain ended by now, so what reads open of `instance` is closed, and logged.
pub(crate) async fn close_unrecorded(pool: &Pool, instance: &str, location: &str) {
    let cannot = "cannot close the rows whose end history lost; the next start closes them";
    close_and_say(
        pool,
        instance,
        location,
        (Why::NotRecorded, None),
        i64::MAX,
        Some(cannot),
    )
    .await;
}

/// [`close_left_open`], logging what it closed or why it could not, in `why`'s words.
async fn close_and_say(
    pool: &Pool,
    instance: &str,
    location: &str,
    (why, alive_ms): (Why, Option<i64>),
    before_ms: i64,
    cannot: Option<&str>,
) -> bool {
    let closed_them = match why {
        Why::ProcessEnded => "the previous process did not stop cleanly; closed what it left open",
        Why::NotRecorded => {
            "history lost the end of some connections and chains; closed them as it stopped"
        }
    };
    match close_left_open(pool, instance, (why, alive_ms), before_ms).await {
        Ok(closed) => {
            if closed != Closed::default() {
                tracing::warn!(
                    path = %location,
                    connections = closed.connections,
                    chains = closed.chains,
                    "{closed_them}"
                );
            }
            true
        }
        Err(error) => {
            match cannot {
                Some(cannot) => tracing::warn!(path = %location, %error, "{cannot}"),
                None => {
                    tracing::debug!(path = %location, %error, "closing what was left open failed again")
                }
            }
            false
        }
    }
}

/// Closes every connection of `instance` left open and ends every chain it left pending, in
/// one transaction, saying `why`, at the last moment its process was seen alive: its
/// heartbeat `alive_ms` or the last activity its rows record, whichever is later. Reads
/// only, and takes no write lock, when there are none.
pub(crate) async fn close_left_open(
    pool: &Pool,
    instance: &str,
    (why, alive_ms): (Why, Option<i64>),
    before_ms: i64,
) -> Result<Closed, sqlx::Error> {
    let (reason, detail, failure) = why.words();
    let d = pool.dialect();
    let sql = |text: String| AssertSqlSafe(text).into_sql_str();
    on_pool!(pool, pool => {
        let (any,): (bool,) = sqlx::query_as(sql(any_left_open_sql(d)))
            .bind(instance)
            .bind(before_ms)
            .fetch_one(pool)
            .await?;
        if !any {
            return Ok(Closed::default());
        }
        let mut tx = pool.begin().await?;
        let (last_seen,): (i64,) = sqlx::query_as(sql(last_seen_sql(d)))
            .bind(instance)
            .fetch_one(&mut *tx)
            .await?;
        // Not past this process's start, whose own rows may be the latest.
        let last_seen = last_seen.max(alive_ms.unwrap_or(0)).min(before_ms);
        let connections = sqlx::query(sql(close_connections_sql(d)))
            .bind(instance)
            .bind(last_seen)
            .bind(reason)
            .bind(detail)
            .bind(before_ms)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        let chains = sqlx::query(sql(end_chains_sql(d)))
            .bind(instance)
            .bind(last_seen)
            .bind(failure)
            .bind(before_ms)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(Closed {
            connections,
            chains,
        })
    })
}

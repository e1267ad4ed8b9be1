//! The history queries the dashboard and its JSON API run.
//!
//! Every list is newest first (events: in sequence order) and capped at [`MAX_LIMIT`] rows.
//! Queries run on the read pool, which in WAL mode never waits for the writer.

use std::fmt;
use std::str::FromStr;

use sqlx::{QueryBuilder, Sqlite};
use weft::defer::DeferredState;

use crate::columns::{self, Column};
use crate::records::{
    ConnectionRecord, DeferredDetail, DeferredRecord, EventRecord, QueryRecord, ServiceRecord,
    StepRecord,
};
use crate::{Store, StoreError};

/// The most rows one list query returns, whatever limit is asked for.
pub const MAX_LIMIT: u32 = 10_000;

const CONNECTION_COLUMNS: &str = "SELECT id, service, transport, peer, local, opened_at_ms, closed_at_ms, \
     bytes_in, bytes_out, reads, writes, close_reason, close_detail, opened_seq, closed_seq \
     FROM connections";

const DEFERRED_COLUMNS: &str = "SELECT id, parent_id, label, site, connection_id, service, state, \
     created_at_ms, fired_at_ms, current_step, waiting_on, failure, stalled, slow, unhandled, leaked, \
     deadlock, step_name, step_detail, waiting_on_connection, named_steps_json, kind, task_json \
     FROM deferreds";

/// Which connections to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionState {
    /// Not closed yet, newest opened first.
    Open,
    /// Closed, most recently closed first.
    Closed,
}

impl FromStr for ConnectionState {
    type Err = StoreError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "open" => Ok(Self::Open),
            "closed" => Ok(Self::Closed),
            _ => Err(StoreError::BadFilter {
                what: "connection state",
                value: s.to_owned(),
                expected: "open, closed",
            }),
        }
    }
}

impl fmt::Display for ConnectionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Open => "open",
            Self::Closed => "closed",
        })
    }
}

/// Which Deferreds to list: `pending` and `failed` are states, the others are flags a detector set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeferredFilter {
    /// Not fired yet: `pending`, `running`, `paused` or `waiting` on a child.
    Pending,
    /// Pending or paused longer than the stall threshold.
    Stalled,
    /// Ended with a failure.
    Failed,
    /// Dropped holding an unhandled failure.
    Unhandled,
    /// Ran a callback longer than the slow threshold.
    Slow,
    /// Dropped without firing.
    Leaked,
    /// Waited, through locks, on chains that waited on it.
    Deadlock,
}

impl DeferredFilter {
    /// Every filter, in the order the dashboard shows them as tabs.
    pub const ALL: [Self; 7] = [
        Self::Pending,
        Self::Stalled,
        Self::Slow,
        Self::Failed,
        Self::Unhandled,
        Self::Leaked,
        Self::Deadlock,
    ];

    /// The name the API and pages use (`?state=`), which [`FromStr`] reads back.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Stalled => "stalled",
            Self::Failed => "failed",
            Self::Unhandled => "unhandled",
            Self::Slow => "slow",
            Self::Leaked => "leaked",
            Self::Deadlock => "deadlock",
        }
    }

    /// The SQL condition, one per variant; each is the `WHERE` of a partial index or
    /// leads with an indexed column.
    fn condition(self) -> String {
        match self {
            Self::Pending => format!("state {}", columns::pending_states_sql()),
            Self::Stalled => "stalled <> 0".into(),
            Self::Failed => format!("state = '{}'", DeferredState::Failed.label()),
            Self::Unhandled => "unhandled <> 0".into(),
            Self::Slow => "slow <> 0".into(),
            Self::Leaked => "leaked <> 0".into(),
            Self::Deadlock => "deadlock <> 0".into(),
        }
    }
}

impl FromStr for DeferredFilter {
    type Err = StoreError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|f| f.as_str() == s)
            .ok_or_else(|| StoreError::BadFilter {
                what: "deferred state",
                value: s.to_owned(),
                expected: "pending, stalled, failed, unhandled, slow, leaked, deadlock",
            })
    }
}

impl fmt::Display for DeferredFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The connections list up to its `LIMIT`; the caller binds the limit.
fn connections_query(
    state: Option<ConnectionState>,
    service: Option<&str>,
) -> QueryBuilder<Sqlite> {
    let mut q = QueryBuilder::<Sqlite>::new(CONNECTION_COLUMNS);
    q.push(match state {
        None => " WHERE 1 = 1",
        Some(ConnectionState::Open) => " WHERE closed_at_ms IS NULL",
        Some(ConnectionState::Closed) => " WHERE closed_at_ms IS NOT NULL",
    });
    if let Some(service) = service {
        q.push(" AND service = ").push_bind(service.to_owned());
    }
    // Each order matches an index, so a page is read without sorting the table.
    q.push(match state {
        Some(ConnectionState::Closed) => " ORDER BY closed_at_ms DESC, id DESC LIMIT ",
        _ => " ORDER BY opened_at_ms DESC, id DESC LIMIT ",
    });
    q
}

/// The Deferreds list up to its `LIMIT`; the caller binds the limit.
fn deferreds_query(filter: Option<DeferredFilter>, service: Option<&str>) -> QueryBuilder<Sqlite> {
    let mut q = QueryBuilder::<Sqlite>::new(DEFERRED_COLUMNS);
    if filter == Some(DeferredFilter::Pending) {
        // Without statistics the planner prefers the state index and sorts every pending row.
        q.push(" INDEXED BY deferreds_pending");
    }
    q.push(" WHERE ");
    q.push(filter.map_or_else(|| "1 = 1".to_owned(), DeferredFilter::condition));
    if let Some(service) = service {
        q.push(" AND service = ").push_bind(service.to_owned());
    }
    q.push(" ORDER BY created_at_ms DESC, id DESC LIMIT ");
    q
}

fn children_sql() -> String {
    format!("{DEFERRED_COLUMNS} WHERE parent_id = ? ORDER BY created_at_ms, id LIMIT {MAX_LIMIT}")
}

fn connection_deferreds_sql() -> String {
    format!(
        "{DEFERRED_COLUMNS} WHERE connection_id = ? ORDER BY created_at_ms DESC, id DESC LIMIT ?"
    )
}

const EVENTS_AFTER_SQL: &str =
    "SELECT seq, at_ms, kind, payload_json FROM events WHERE seq > ? ORDER BY seq LIMIT ?";

/// Walks the event log from its newest end; a kind the log holds often is found at once.
const RECENT_OF_KIND_SQL: &str =
    "SELECT seq, at_ms, kind, payload_json FROM events WHERE kind = ? ORDER BY seq DESC LIMIT ?";

/// Each `max` reads one end of an index (or the rowid b-tree).
const LAST_IDS_SQL: &str = "SELECT max(coalesce((SELECT max(id) FROM connections), 0), \
     coalesce((SELECT max(id) FROM deferreds), 0)), \
     max(coalesce((SELECT max(seq) FROM events), 0), \
     coalesce((SELECT max(opened_seq) FROM connections), 0), \
     coalesce((SELECT max(closed_seq) FROM connections), 0))";

/// Connections opened (closed) after an event number, in event order: the
/// `connection_opened` (`connection_closed`) events kept in their rows.
fn connections_by_seq_sql(column: &str) -> String {
    format!("{CONNECTION_COLUMNS} WHERE {column} > ? ORDER BY {column} LIMIT ?")
}

fn limit(n: u32) -> i64 {
    i64::from(n.min(MAX_LIMIT))
}

impl Store {
    /// Every service, by name: those the file records, with the ones given to this store's
    /// writer in place of theirs (listed from the moment they are given, committed or not).
    pub async fn services(&self) -> Result<Vec<ServiceRecord>, StoreError> {
        let rows = sqlx::query_as(
            "SELECT name, kind, endpoints_json, config_json FROM services ORDER BY name",
        )
        .fetch_all(&self.pool())
        .await?;
        Ok(self.inner.writer.catalog().overlay(rows))
    }

    /// Connections newest first (closed ones by close time), optionally only open or closed ones
    /// and only of one service.
    pub async fn connections(
        &self,
        state: Option<ConnectionState>,
        service: Option<&str>,
        max: u32,
    ) -> Result<Vec<ConnectionRecord>, StoreError> {
        let mut q = connections_query(state, service);
        q.push_bind(limit(max));
        Ok(q.build_query_as().fetch_all(&self.pool()).await?)
    }

    /// One connection by id.
    pub async fn connection(&self, id: i64) -> Result<Option<ConnectionRecord>, StoreError> {
        let sql = sqlx::AssertSqlSafe(format!("{CONNECTION_COLUMNS} WHERE id = ?"));
        Ok(sqlx::query_as(sql)
            .bind(id)
            .fetch_optional(&self.pool())
            .await?)
    }

    /// Deferreds, newest first, optionally filtered by state or flag and by service.
    pub async fn deferreds(
        &self,
        filter: Option<DeferredFilter>,
        service: Option<&str>,
        max: u32,
    ) -> Result<Vec<DeferredRecord>, StoreError> {
        let mut q = deferreds_query(filter, service);
        q.push_bind(limit(max));
        Ok(q.build_query_as().fetch_all(&self.pool()).await?)
    }

    /// One Deferred with its steps (in chain order) and its children (oldest first).
    pub async fn deferred(&self, id: i64) -> Result<Option<DeferredDetail>, StoreError> {
        let pool = self.pool();
        let sql = sqlx::AssertSqlSafe(format!("{DEFERRED_COLUMNS} WHERE id = ?"));
        let Some(deferred) = sqlx::query_as::<_, DeferredRecord>(sql)
            .bind(id)
            .fetch_optional(&pool)
            .await?
        else {
            return Ok(None);
        };
        let steps = sqlx::query_as::<_, StepRecord>(
            "SELECT deferred_id, idx, kind, site, started_at_us, duration_us, outcome, child_id \
             FROM deferred_steps WHERE deferred_id = ? ORDER BY idx",
        )
        .bind(id)
        .fetch_all(&pool)
        .await?;
        let sql = sqlx::AssertSqlSafe(children_sql());
        let children = sqlx::query_as(sql).bind(id).fetch_all(&pool).await?;
        Ok(Some(DeferredDetail {
            named_steps: deferred.named_steps(),
            task: deferred.task(),
            deferred,
            steps,
            children,
        }))
    }

    /// The Deferreds of one connection, newest first.
    pub async fn connection_deferreds(
        &self,
        connection_id: i64,
        max: u32,
    ) -> Result<Vec<DeferredRecord>, StoreError> {
        let sql = sqlx::AssertSqlSafe(connection_deferreds_sql());
        Ok(sqlx::query_as(sql)
            .bind(connection_id)
            .bind(limit(max))
            .fetch_all(&self.pool())
            .await?)
    }

    /// The highest connection or Deferred id and the highest event number the history holds
    /// (0 when empty): a new run continues above both, so its rows never overwrite old ones.
    pub async fn last_ids(&self) -> Result<(i64, i64), StoreError> {
        Ok(sqlx::query_as(LAST_IDS_SQL).fetch_one(&self.pool()).await?)
    }

    /// The last `max` answers of service `service`'s query log from before `before_ms`
    /// (unix ms), newest first.
    pub async fn recent_queries(
        &self,
        service: &str,
        before_ms: i64,
        max: usize,
    ) -> Result<Vec<QueryRecord>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT service, at_ms, client, name, qtype, rcode, latency_us, source, failed, weight
             FROM queries INDEXED BY queries_service_at
             WHERE service = ?1 AND at_ms < ?2 ORDER BY at_ms DESC, id DESC LIMIT ?3",
        )
        .bind(service)
        .bind(before_ms)
        .bind(i64::try_from(max).unwrap_or(i64::MAX))
        .fetch_all(&self.pool())
        .await?)
    }

    /// The newest `max` events of `kind` (such as `reactor_lag`), newest first.
    pub async fn recent_events(
        &self,
        kind: &str,
        max: u32,
    ) -> Result<Vec<EventRecord>, StoreError> {
        Ok(sqlx::query_as(RECENT_OF_KIND_SQL)
            .bind(kind)
            .bind(limit(max))
            .fetch_all(&self.pool())
            .await?)
    }

    /// Events with a sequence number above `after`, in sequence order: the event log, with
    /// each connection's opening and closing rebuilt from its row (where they are kept).
    pub async fn events_after(&self, after: i64, max: u32) -> Result<Vec<EventRecord>, StoreError> {
        let n = limit(max);
        let mut events: Vec<EventRecord> = sqlx::query_as(EVENTS_AFTER_SQL)
            .bind(after)
            .bind(n)
            .fetch_all(&self.pool())
            .await?;
        for (column, opened) in [("opened_seq", true), ("closed_seq", false)] {
            let sql = sqlx::AssertSqlSafe(connections_by_seq_sql(column));
            let rows: Vec<ConnectionRecord> = sqlx::query_as(sql)
                .bind(after)
                .bind(n)
                .fetch_all(&self.pool())
                .await?;
            events.extend(rows.iter().filter_map(|c| c.event(opened)));
        }
        events.sort_unstable_by_key(|e| e.seq);
        events.truncate(usize::try_from(n).unwrap_or(usize::MAX));
        Ok(events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema;

    /// Every list the dashboard pages through is read in index order: no table scan, no sort.
    #[tokio::test]
    async fn list_queries_use_an_index_and_never_sort() {
        let dir = tempfile::tempdir().unwrap();
        let pool = schema::open_pool(
            &dir.path().join("plan.db"),
            std::time::Duration::from_secs(1),
            1,
        )
        .await
        .unwrap();
        let mut lists: Vec<String> = Vec::new();
        for state in [
            None,
            Some(ConnectionState::Open),
            Some(ConnectionState::Closed),
        ] {
            for service in [None, Some("echo")] {
                lists.push(format!(
                    "{}?",
                    connections_query(state, service).sql().as_str()
                ));
            }
        }
        let filters = [
            DeferredFilter::Pending,
            DeferredFilter::Stalled,
            DeferredFilter::Failed,
            DeferredFilter::Unhandled,
            DeferredFilter::Slow,
            DeferredFilter::Leaked,
        ];
        for filter in filters.into_iter().map(Some).chain([None]) {
            for service in [None, Some("echo")] {
                lists.push(format!(
                    "{}?",
                    deferreds_query(filter, service).sql().as_str()
                ));
            }
        }
        lists.extend([
            children_sql(),
            connection_deferreds_sql(),
            EVENTS_AFTER_SQL.to_owned(),
            connections_by_seq_sql("opened_seq"),
            connections_by_seq_sql("closed_seq"),
        ]);
        for sql in lists {
            let plan: Vec<(i64, i64, i64, String)> =
                sqlx::query_as(sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}")))
                    .fetch_all(&pool)
                    .await
                    .unwrap();
            let plan: Vec<String> = plan.into_iter().map(|row| row.3).collect();
            assert!(
                plan.iter().all(|step| !step.contains("TEMP B-TREE")
                    && (step.contains("INDEX") || step.contains("PRIMARY KEY"))),
                "{sql}\n  {plan:?}"
            );
        }
    }
}

//! The history queries the dashboard and its JSON API run.
//!
//! Every list is newest first (events: in sequence order) and capped at [`MAX_LIMIT`] rows,
//! and one more when asked: what shows a list was cut.
//! Queries run on the read pool, which in WAL mode never waits for the writer.
//!
//! In a database a fleet shares, the lists (connections, chains) show every instance's rows
//! unless asked for one; what follows one row (a chain's steps and children, a connection's
//! chains) stays within its instance; the event log, the query log and the services are this
//! gateway's own.

use std::fmt;
use std::str::FromStr;

use crate::query_sql::{
    ListFilter, children_sql, connection_deferreds_sql, connections_by_seq_sql, connections_query,
    deferreds_query, events_after_sql, instances_sql, last_ids_sql, one_connection_sql,
    one_deferred_sql, recent_of_kind_sql, recent_queries_sql, services_sql, sql, steps_sql,
};
use weft::defer::DeferredState;

use crate::backend::{Dialect, on_pool};
use crate::columns::{self, Column};
use crate::records::{
    ConnectionRecord, DeferredDetail, DeferredRecord, EventRecord, QueryRecord, ServiceRecord,
    StepRecord,
};
use crate::{Store, StoreError};

/// The most rows a list shows, whatever limit is asked for. A query returns one more
/// when asked: a list asks for a row past its limit to tell whether it was cut.
pub const MAX_LIMIT: u32 = 10_000;

/// Searches of text within a column (a peer containing some text) that run at once.
pub const SEARCHES_AT_ONCE: usize = 1;

/// How long a search waits for the searches before it to finish before it gives up.
pub const SEARCH_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

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
    pub(crate) fn condition(self, d: Dialect) -> String {
        match self {
            Self::Pending => format!("state {}", columns::pending_states_sql()),
            Self::Stalled => d.flag("stalled"),
            Self::Failed => format!("state = '{}'", DeferredState::Failed.label()),
            Self::Unhandled => d.flag("unhandled"),
            Self::Slow => d.flag("slow"),
            Self::Leaked => d.flag("leaked"),
            Self::Deadlock => d.flag("deadlock"),
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

fn limit(n: u32) -> i64 {
    i64::from(n.min(MAX_LIMIT + 1))
}

impl Store {
    /// The instance the store's own rows are scoped to: this one in a shared database; none
    /// in a file, whose rows are all its own (whatever name wrote them).
    fn own(&self) -> Option<&str> {
        self.pool()
            .dialect()
            .shared()
            .then_some(self.inner.options.instance.as_str())
    }

    /// Rows that follow `instance`'s row: of that instance in a shared database.
    fn same_instance<'a>(&self, instance: &'a str) -> Option<&'a str> {
        self.pool().dialect().shared().then_some(instance)
    }

    /// Every service, by name: those the file records, with the ones given to this store's
    /// writer in place of theirs (listed from the moment they are given, committed or not).
    pub async fn services(&self) -> Result<Vec<ServiceRecord>, StoreError> {
        let own = self.own();
        let rows = on_pool!(self.pool(), p => sqlx::query_as(sql(services_sql()))
            .bind(own)
            .fetch_all(&p)
            .await?);
        Ok(self.inner.writer.catalog().overlay(rows))
    }

    /// The gateways (`[gateway] instance`) whose services history holds, by name (at most
    /// 1 000): more than one in a database a fleet shares, or in a file a renamed host
    /// wrote under both names.
    pub async fn instances(&self) -> Result<Vec<String>, StoreError> {
        let rows: Vec<(String,)> = on_pool!(self.pool(), p => sqlx::query_as(sql(instances_sql()))
            .fetch_all(&p)
            .await?);
        Ok(rows.into_iter().map(|(i,)| i).collect())
    }

    /// Connections newest first (closed ones by close time), optionally only open or closed ones
    /// and only of one service; of every instance.
    pub async fn connections(
        &self,
        state: Option<ConnectionState>,
        service: Option<&str>,
        max: u32,
    ) -> Result<Vec<ConnectionRecord>, StoreError> {
        let filter = ListFilter {
            service,
            ..ListFilter::default()
        };
        self.connections_where(state, filter, max).await
    }

    /// Connections newest first (closed ones by close time), optionally only open or closed ones,
    /// of one service, of one instance and of one reactor.
    ///
    /// A search by peer text reads every row it may match (no index finds text within a
    /// column), so [`SEARCHES_AT_ONCE`] run at a time and the others wait, each at most
    /// [`SEARCH_WAIT`] ([`StoreError::SearchBusy`] after): however many are asked for, the
    /// other readers stay free for every other view.
    pub async fn connections_where(
        &self,
        state: Option<ConnectionState>,
        filter: ListFilter<'_>,
        max: u32,
    ) -> Result<Vec<ConnectionRecord>, StoreError> {
        // The semaphore is never closed: `ok()` only drops an error that cannot come.
        let _searching = match filter.peer {
            Some(_) => tokio::time::timeout(SEARCH_WAIT, self.inner.searches.acquire())
                .await
                .map_err(|_| StoreError::SearchBusy(SEARCH_WAIT))?
                .ok(),
            None => None,
        };
        Ok(on_pool!(self.pool(), p => {
            let mut q = connections_query(state, filter);
            q.push_bind(limit(max));
            q.build_query_as().fetch_all(&p).await?
        }))
    }

    /// One connection of this gateway by id.
    pub async fn connection(&self, id: i64) -> Result<Option<ConnectionRecord>, StoreError> {
        self.connection_of(id, None).await
    }

    /// One connection by id: of `instance`, or of this gateway when `None`.
    pub async fn connection_of(
        &self,
        id: i64,
        instance: Option<&str>,
    ) -> Result<Option<ConnectionRecord>, StoreError> {
        let scope = instance.or(self.own());
        Ok(
            on_pool!(self.pool(), p => sqlx::query_as(sql(one_connection_sql()))
            .bind(id)
            .bind(scope)
            .fetch_optional(&p)
            .await?),
        )
    }

    /// Deferreds of every instance, newest first, optionally filtered by state or flag and
    /// by service.
    pub async fn deferreds(
        &self,
        state: Option<DeferredFilter>,
        service: Option<&str>,
        max: u32,
    ) -> Result<Vec<DeferredRecord>, StoreError> {
        let filter = ListFilter {
            service,
            ..ListFilter::default()
        };
        self.deferreds_where(state, filter, max).await
    }

    /// Deferreds, newest first, optionally filtered by state or flag, service, instance and
    /// reactor.
    pub async fn deferreds_where(
        &self,
        state: Option<DeferredFilter>,
        filter: ListFilter<'_>,
        max: u32,
    ) -> Result<Vec<DeferredRecord>, StoreError> {
        let pool = self.pool();
        let d = pool.dialect();
        Ok(on_pool!(pool, p => {
            let mut q = deferreds_query(d, state, filter);
            q.push_bind(limit(max));
            q.build_query_as().fetch_all(&p).await?
        }))
    }

    /// One Deferred of this gateway with its steps (in chain order) and its children
    /// (oldest first).
    pub async fn deferred(&self, id: i64) -> Result<Option<DeferredDetail>, StoreError> {
        self.deferred_of(id, None).await
    }

    /// One Deferred with its steps (in chain order) and its children (oldest first): of
    /// `instance`, or of this gateway when `None`.
    pub async fn deferred_of(
        &self,
        id: i64,
        instance: Option<&str>,
    ) -> Result<Option<DeferredDetail>, StoreError> {
        let scope = instance.or(self.own());
        let found: Option<DeferredRecord> = on_pool!(self.pool(), p => {
            sqlx::query_as(sql(one_deferred_sql()))
                .bind(id)
                .bind(scope)
                .fetch_optional(&p)
                .await?
        });
        let Some(deferred) = found else {
            return Ok(None);
        };
        let scope = self.same_instance(&deferred.instance);
        let (steps, children) = on_pool!(self.pool(), p => {
            let steps: Vec<StepRecord> = sqlx::query_as(sql(steps_sql()))
                .bind(id)
                .bind(scope)
                .fetch_all(&p)
                .await?;
            let children: Vec<DeferredRecord> = sqlx::query_as(sql(children_sql()))
                .bind(id)
                .bind(scope)
                .fetch_all(&p)
                .await?;
            (steps, children)
        });
        Ok(Some(DeferredDetail {
            named_steps: deferred.named_steps(),
            task: deferred.task(),
            deferred,
            steps,
            children,
        }))
    }

    /// The Deferreds of one connection of this gateway, newest first.
    pub async fn connection_deferreds(
        &self,
        connection_id: i64,
        max: u32,
    ) -> Result<Vec<DeferredRecord>, StoreError> {
        self.connection_deferreds_of(connection_id, None, max).await
    }

    /// The Deferreds of one connection, newest first: of `instance`'s connection, or of this
    /// gateway's when `None`.
    pub async fn connection_deferreds_of(
        &self,
        connection_id: i64,
        instance: Option<&str>,
        max: u32,
    ) -> Result<Vec<DeferredRecord>, StoreError> {
        let scope = instance.or(self.own());
        Ok(
            on_pool!(self.pool(), p => sqlx::query_as(sql(connection_deferreds_sql()))
            .bind(connection_id)
            .bind(scope)
            .bind(limit(max))
            .fetch_all(&p)
            .await?),
        )
    }

    /// The highest connection or Deferred id and the highest event number the history holds
    /// (0 when empty), of this instance in a shared database: a new run continues above
    /// both, so its rows never overwrite old ones.
    pub async fn last_ids(&self) -> Result<(i64, i64), StoreError> {
        let pool = self.pool();
        let d = pool.dialect();
        let own = self.own();
        Ok(on_pool!(pool, p => {
            let q = sqlx::query_as(sql(last_ids_sql(d)));
            let q = match own {
                Some(instance) => q.bind(instance),
                None => q,
            };
            q.fetch_one(&p).await?
        }))
    }

    /// The last `max` answers of service `service`'s query log from before `before_ms`
    /// (unix ms), newest first.
    pub async fn recent_queries(
        &self,
        service: &str,
        before_ms: i64,
        max: usize,
    ) -> Result<Vec<QueryRecord>, StoreError> {
        let pool = self.pool();
        let d = pool.dialect();
        let own = self.own();
        Ok(
            on_pool!(pool, p => sqlx::query_as(sql(recent_queries_sql(d)))
            .bind(service)
            .bind(before_ms)
            .bind(i64::try_from(max).unwrap_or(i64::MAX))
            .bind(own)
            .fetch_all(&p)
            .await?),
        )
    }

    /// The newest `max` events of `kind` (such as `reactor_lag`), newest first.
    pub async fn recent_events(
        &self,
        kind: &str,
        max: u32,
    ) -> Result<Vec<EventRecord>, StoreError> {
        let own = self.own();
        Ok(
            on_pool!(self.pool(), p => sqlx::query_as(sql(recent_of_kind_sql()))
            .bind(kind)
            .bind(own)
            .bind(limit(max))
            .fetch_all(&p)
            .await?),
        )
    }

    /// Events with a sequence number above `after`, in sequence order: the event log, with
    /// each connection's opening and closing rebuilt from its row (where they are kept).
    pub async fn events_after(&self, after: i64, max: u32) -> Result<Vec<EventRecord>, StoreError> {
        let n = limit(max);
        let own = self.own();
        let pool = self.pool();
        let mut events: Vec<EventRecord> = on_pool!(&pool, p => sqlx::query_as(sql(events_after_sql()))
            .bind(after)
            .bind(own)
            .bind(n)
            .fetch_all(p)
            .await?);
        for (column, opened) in [("opened_seq", true), ("closed_seq", false)] {
            let text = connections_by_seq_sql(column);
            let rows: Vec<ConnectionRecord> = on_pool!(&pool, p => sqlx::query_as(sql(text.clone()))
                .bind(after)
                .bind(own)
                .bind(n)
                .fetch_all(p)
                .await?);
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

    fn filters_to_plan() -> [ListFilter<'static>; 6] {
        let (service, instance, reactor) = (Some("echo"), Some("edge-1"), Some(1));
        [
            ListFilter::default(),
            ListFilter {
                service,
                ..ListFilter::default()
            },
            ListFilter {
                instance,
                ..ListFilter::default()
            },
            ListFilter {
                service,
                instance,
                ..ListFilter::default()
            },
            ListFilter {
                reactor,
                ..ListFilter::default()
            },
            ListFilter {
                service,
                instance,
                reactor,
                peer: None,
            },
        ]
    }

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
            for filter in filters_to_plan() {
                lists.push(format!(
                    "{}?",
                    connections_query::<sqlx::Sqlite>(state, filter)
                        .sql()
                        .as_str()
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
            for list in filters_to_plan() {
                lists.push(format!(
                    "{}?",
                    deferreds_query::<sqlx::Sqlite>(Dialect::Sqlite, filter, list)
                        .sql()
                        .as_str()
                ));
            }
        }
        lists.extend([
            children_sql(),
            connection_deferreds_sql(),
            events_after_sql(),
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

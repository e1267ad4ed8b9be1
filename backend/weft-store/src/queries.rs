//! The history queries the dashboard and its JSON API run.
//!
//! Every list is newest first (events: in sequence order) and capped at [`MAX_LIMIT`] rows.
//! Queries run on the read pool, which in WAL mode never waits for the writer.

use std::fmt;
use std::str::FromStr;

use sqlx::{QueryBuilder, Sqlite};

use crate::records::{
    ConnectionRecord, DeferredDetail, DeferredRecord, EventRecord, ServiceRecord, StepRecord,
};
use crate::{Store, StoreError};

/// The most rows one list query returns, whatever limit is asked for.
pub const MAX_LIMIT: u32 = 10_000;

const CONNECTION_COLUMNS: &str = "SELECT id, service, transport, peer, local, opened_at_ms, closed_at_ms, \
     bytes_in, bytes_out, reads, writes, close_reason FROM connections";

const DEFERRED_COLUMNS: &str = "SELECT id, parent_id, label, site, connection_id, service, state, \
     created_at_ms, fired_at_ms, current_step, waiting_on, failure, stalled, slow, unhandled, leaked \
     FROM deferreds";

/// Which connections to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionState {
    /// Not closed yet.
    Open,
    /// Closed.
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
    /// Not fired yet: `pending`, `running` or `paused`.
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
}

impl DeferredFilter {
    /// The SQL condition, a constant per variant.
    fn condition(self) -> &'static str {
        match self {
            Self::Pending => "state IN ('pending', 'running', 'paused')",
            Self::Stalled => "stalled <> 0",
            Self::Failed => "state = 'failed'",
            Self::Unhandled => "unhandled <> 0",
            Self::Slow => "slow <> 0",
            Self::Leaked => "leaked <> 0",
        }
    }
}

impl FromStr for DeferredFilter {
    type Err = StoreError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "pending" => Self::Pending,
            "stalled" => Self::Stalled,
            "failed" => Self::Failed,
            "unhandled" => Self::Unhandled,
            "slow" => Self::Slow,
            "leaked" => Self::Leaked,
            _ => {
                return Err(StoreError::BadFilter {
                    what: "deferred state",
                    value: s.to_owned(),
                    expected: "pending, stalled, failed, unhandled, slow, leaked",
                });
            }
        })
    }
}

impl fmt::Display for DeferredFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Pending => "pending",
            Self::Stalled => "stalled",
            Self::Failed => "failed",
            Self::Unhandled => "unhandled",
            Self::Slow => "slow",
            Self::Leaked => "leaked",
        })
    }
}

fn limit(n: u32) -> i64 {
    i64::from(n.min(MAX_LIMIT))
}

impl Store {
    /// Every configured service, by name.
    pub async fn services(&self) -> Result<Vec<ServiceRecord>, StoreError> {
        let rows = sqlx::query_as(
            "SELECT name, kind, endpoints_json, config_json FROM services ORDER BY name",
        )
        .fetch_all(&self.pool())
        .await?;
        Ok(rows)
    }

    /// Connections, newest first, optionally only open or closed ones and only of one service.
    pub async fn connections(
        &self,
        state: Option<ConnectionState>,
        service: Option<&str>,
        max: u32,
    ) -> Result<Vec<ConnectionRecord>, StoreError> {
        let mut q = QueryBuilder::<Sqlite>::new(CONNECTION_COLUMNS);
        q.push(" WHERE 1 = 1");
        match state {
            Some(ConnectionState::Open) => q.push(" AND closed_at_ms IS NULL"),
            Some(ConnectionState::Closed) => q.push(" AND closed_at_ms IS NOT NULL"),
            None => &mut q,
        };
        if let Some(service) = service {
            q.push(" AND service = ").push_bind(service.to_owned());
        }
        q.push(" ORDER BY opened_at_ms DESC, id DESC LIMIT ")
            .push_bind(limit(max));
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
        let mut q = QueryBuilder::<Sqlite>::new(DEFERRED_COLUMNS);
        q.push(" WHERE 1 = 1");
        if let Some(filter) = filter {
            q.push(" AND ").push(filter.condition());
        }
        if let Some(service) = service {
            q.push(" AND service = ").push_bind(service.to_owned());
        }
        q.push(" ORDER BY created_at_ms DESC, id DESC LIMIT ")
            .push_bind(limit(max));
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
        let sql = sqlx::AssertSqlSafe(format!(
            "{DEFERRED_COLUMNS} WHERE parent_id = ? ORDER BY created_at_ms, id LIMIT {MAX_LIMIT}"
        ));
        let children = sqlx::query_as(sql).bind(id).fetch_all(&pool).await?;
        Ok(Some(DeferredDetail {
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
        let sql = sqlx::AssertSqlSafe(format!(
            "{DEFERRED_COLUMNS} WHERE connection_id = ? ORDER BY created_at_ms DESC, id DESC LIMIT ?"
        ));
        Ok(sqlx::query_as(sql)
            .bind(connection_id)
            .bind(limit(max))
            .fetch_all(&self.pool())
            .await?)
    }

    /// Events with a sequence number above `after`, in sequence order.
    pub async fn events_after(&self, after: i64, max: u32) -> Result<Vec<EventRecord>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT seq, at_ms, kind, payload_json FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
        )
        .bind(after)
        .bind(limit(max))
        .fetch_all(&self.pool())
        .await?)
    }
}

//! Writing one batch of records in one transaction.
//!
//! Records are grouped by table (keeping their order within a table, so the last upsert of an id
//! wins) and written with multi-row `INSERT ... ON CONFLICT` statements of a fixed row count, plus
//! single-row statements for the remainder. Both shapes are prepared once per connection and reused
//! from sqlx's statement cache; a fixed shape keeps that cache small.
//!
//! An upsert merges rather than overwrites where a later record may know less than the stored
//! row ([`Merge`]): a detection reported after its chain ended carries the flag and little else,
//! and must add the flag without wiping when the chain was created, fired and where it stopped.

use sqlx::query::Query;
use sqlx::sqlite::{SqliteArguments, SqliteConnection};
use sqlx::{AssertSqlSafe, Connection, SqlSafeStr, SqlStr, Sqlite};

use crate::catalog::CatalogSync;
use crate::columns;
use crate::records::{
    ConnectionRecord, DeferredRecord, EventRecord, QueryRecord, Record, ServiceRecord, StepRecord,
};

type SqliteQuery<'q> = Query<'q, Sqlite, SqliteArguments>;

/// A row type that knows its table and how to bind itself.
trait Insert {
    /// Table name.
    const TABLE: &'static str;
    /// Columns in bind order.
    const COLUMNS: &'static [&'static str];
    /// The columns of the primary key.
    const KEY: &'static [&'static str];
    /// Whether a row with an existing key replaces the stored one (`false`: the first one stays).
    const UPSERT: bool = true;
    /// Columns an upsert merges with the stored value instead of replacing it.
    const MERGE: &'static [(&'static str, Merge)] = &[];
    /// A condition on the stored row under which an upsert leaves it as it is.
    const FINAL_WHEN: Option<&'static str> = None;

    fn bind<'q>(&self, q: SqliteQuery<'q>) -> SqliteQuery<'q>;
}

/// How an upsert combines a column's stored value with the one a record brings.
#[derive(Debug, Clone, Copy)]
enum Merge {
    /// The stored value stays when the record brings NULL (it did not know it).
    KeepIfNull,
    /// The smaller value stays: a time a partial record can only report later than it was.
    Least,
    /// Once set (non-zero) it stays set: a detector's verdict is never taken back.
    Sticky,
    /// The stored value stays once it satisfies this condition (on the stored column).
    KeepOnce(fn() -> String),
}

impl Merge {
    /// The `SET` expression for `column` of `table`.
    fn set(self, table: &str, column: &str) -> String {
        let (stored, new) = (format!("{table}.{column}"), format!("excluded.{column}"));
        match self {
            Self::KeepIfNull => format!("{column} = coalesce({new}, {stored})"),
            Self::Least => format!("{column} = min({stored}, {new})"),
            Self::Sticky => format!("{column} = max({stored}, {new})"),
            Self::KeepOnce(when) => {
                let when = when();
                format!("{column} = CASE WHEN {stored} {when} THEN {stored} ELSE {new} END")
            }
        }
    }
}

impl Insert for ServiceRecord {
    const TABLE: &'static str = "services";
    const COLUMNS: &'static [&'static str] = &["name", "kind", "endpoints_json", "config_json"];
    const KEY: &'static [&'static str] = &["name"];

    fn bind<'q>(&self, q: SqliteQuery<'q>) -> SqliteQuery<'q> {
        // A Vec<String> always serializes.
        let endpoints = serde_json::to_string(&self.endpoints).unwrap_or_else(|_| "[]".into());
        q.bind(self.name.as_str())
            .bind(self.kind.as_str())
            .bind(endpoints)
            .bind(self.config_json.as_str())
    }
}

impl Insert for ConnectionRecord {
    const TABLE: &'static str = "connections";
    const COLUMNS: &'static [&'static str] = &[
        "id",
        "service",
        "transport",
        "peer",
        "local",
        "opened_at_ms",
        "closed_at_ms",
        "bytes_in",
        "bytes_out",
        "reads",
        "writes",
        "close_reason",
        "close_detail",
        "opened_seq",
        "closed_seq",
    ];
    const KEY: &'static [&'static str] = &["id"];
    const MERGE: &'static [(&'static str, Merge)] = &[
        ("opened_seq", Merge::KeepIfNull),
        ("closed_seq", Merge::KeepIfNull),
    ];
    const FINAL_WHEN: Option<&'static str> = Some("closed_at_ms IS NOT NULL");

    fn bind<'q>(&self, q: SqliteQuery<'q>) -> SqliteQuery<'q> {
        q.bind(self.id)
            .bind(self.service.as_str())
            .bind(self.transport.as_str())
            .bind(self.peer.as_str())
            .bind(self.local.as_str())
            .bind(self.opened_at_ms)
            .bind(self.closed_at_ms)
            .bind(self.bytes_in)
            .bind(self.bytes_out)
            .bind(self.reads)
            .bind(self.writes)
            .bind(self.close_reason.as_deref())
            .bind(self.close_detail.as_deref())
            .bind(self.opened_seq)
            .bind(self.closed_seq)
    }
}

impl Insert for DeferredRecord {
    const TABLE: &'static str = "deferreds";
    const COLUMNS: &'static [&'static str] = &[
        "id",
        "parent_id",
        "label",
        "site",
        "connection_id",
        "service",
        "state",
        "created_at_ms",
        "fired_at_ms",
        "current_step",
        "waiting_on",
        "failure",
        "stalled",
        "slow",
        "unhandled",
        "leaked",
        "deadlock",
        "step_name",
        "step_detail",
        "waiting_on_connection",
        "named_steps_json",
        "kind",
        "task_json",
    ];
    const KEY: &'static [&'static str] = &["id"];
    /// Every write of a chain is a full picture except a detection the hub reports after it
    /// forgot the chain (an unhandled failure found when the last handle goes, long after the
    /// chain ended): that record knows the flag, the failure and the chain's identity only.
    /// None of these columns goes back to NULL in a chain's life, its creation time is the
    /// earliest one seen, flags only get set, and an ended chain stays ended (a snapshot of
    /// it taken while it was pending may be written after its end).
    const MERGE: &'static [(&'static str, Merge)] = &[
        ("parent_id", Merge::KeepIfNull),
        ("label", Merge::KeepIfNull),
        ("connection_id", Merge::KeepIfNull),
        ("service", Merge::KeepIfNull),
        ("state", Merge::KeepOnce(columns::ended_states_sql)),
        ("created_at_ms", Merge::Least),
        ("fired_at_ms", Merge::KeepIfNull),
        ("current_step", Merge::KeepIfNull),
        ("failure", Merge::KeepIfNull),
        ("stalled", Merge::Sticky),
        ("slow", Merge::Sticky),
        ("unhandled", Merge::Sticky),
        ("leaked", Merge::Sticky),
        ("deadlock", Merge::Sticky),
        ("step_name", Merge::KeepIfNull),
        ("step_detail", Merge::KeepIfNull),
        ("waiting_on_connection", Merge::KeepIfNull),
        ("named_steps_json", Merge::KeepIfNull),
        ("kind", Merge::KeepIfNull),
        ("task_json", Merge::KeepIfNull),
    ];

    fn bind<'q>(&self, q: SqliteQuery<'q>) -> SqliteQuery<'q> {
        q.bind(self.id)
            .bind(self.parent_id)
            .bind(self.label.as_deref())
            .bind(self.site.as_str())
            .bind(self.connection_id)
            .bind(self.service.as_deref())
            .bind(self.state.as_str())
            .bind(self.created_at_ms)
            .bind(self.fired_at_ms)
            .bind(self.current_step.as_deref())
            .bind(self.waiting_on)
            .bind(self.failure.as_deref())
            .bind(self.stalled)
            .bind(self.slow)
            .bind(self.unhandled)
            .bind(self.leaked)
            .bind(self.deadlock)
            .bind(self.step_name.as_deref())
            .bind(self.step_detail.as_deref())
            .bind(self.waiting_on_connection)
            .bind(self.named_steps_json.as_deref())
            .bind(self.kind.as_deref())
            .bind(self.task_json.as_deref())
    }
}

impl Insert for StepRecord {
    const TABLE: &'static str = "deferred_steps";
    const COLUMNS: &'static [&'static str] = &[
        "deferred_id",
        "idx",
        "kind",
        "site",
        "started_at_us",
        "duration_us",
        "outcome",
        "child_id",
    ];
    const KEY: &'static [&'static str] = &["deferred_id", "idx"];

    fn bind<'q>(&self, q: SqliteQuery<'q>) -> SqliteQuery<'q> {
        q.bind(self.deferred_id)
            .bind(self.idx)
            .bind(self.kind.as_str())
            .bind(self.site.as_str())
            .bind(self.started_at_us)
            .bind(self.duration_us)
            .bind(self.outcome.as_str())
            .bind(self.child_id)
    }
}

impl Insert for EventRecord {
    const TABLE: &'static str = "events";
    const COLUMNS: &'static [&'static str] = &["seq", "at_ms", "kind", "payload_json"];
    const KEY: &'static [&'static str] = &["seq"];
    const UPSERT: bool = false;

    fn bind<'q>(&self, q: SqliteQuery<'q>) -> SqliteQuery<'q> {
        q.bind(self.seq)
            .bind(self.at_ms)
            .bind(self.kind.as_str())
            .bind(self.payload_json.as_str())
    }
}

impl Insert for QueryRecord {
    const TABLE: &'static str = "queries";
    /// `id` is left to SQLite: each row is new.
    const COLUMNS: &'static [&'static str] = &[
        "service",
        "at_ms",
        "client",
        "name",
        "qtype",
        "rcode",
        "latency_us",
        "source",
        "failed",
        "weight",
    ];
    const KEY: &'static [&'static str] = &["id"];
    const UPSERT: bool = false;

    fn bind<'q>(&self, q: SqliteQuery<'q>) -> SqliteQuery<'q> {
        q.bind(self.service.as_str())
            .bind(self.at_ms)
            .bind(self.client.as_str())
            .bind(self.name.as_str())
            .bind(self.qtype.as_str())
            .bind(self.rcode.as_str())
            .bind(self.latency_us)
            .bind(self.source.as_str())
            .bind(self.failed)
            .bind(self.weight)
    }
}

/// The two statement shapes for one table.
#[derive(Debug, Clone)]
struct TableSql {
    /// Inserts `rows_per_statement` rows in one statement: full chunks of a batch go through it.
    many: SqlStr,
    /// Inserts one row: the remainder of a batch that fills no full chunk.
    one: SqlStr,
}

impl TableSql {
    fn new<T: Insert>(rows_per_statement: usize) -> Self {
        Self {
            many: AssertSqlSafe(insert_sql::<T>(rows_per_statement)).into_sql_str(),
            one: AssertSqlSafe(insert_sql::<T>(1)).into_sql_str(),
        }
    }
}

/// `INSERT INTO t (cols) VALUES (?,..),(?,..) ON CONFLICT (key) DO UPDATE SET c = excluded.c, ...`
fn insert_sql<T: Insert>(rows: usize) -> String {
    let placeholders = format!("({})", vec!["?"; T::COLUMNS.len()].join(", "));
    let values = vec![placeholders; rows].join(", ");
    let conflict = if T::UPSERT {
        let set = T::COLUMNS
            .iter()
            .filter(|c| !T::KEY.contains(c))
            .map(|c| match T::MERGE.iter().find(|(m, _)| m == c) {
                Some((_, merge)) => merge.set(T::TABLE, c),
                None => format!("{c} = excluded.{c}"),
            })
            .collect::<Vec<_>>()
            .join(", ");
        match T::FINAL_WHEN {
            Some(stored) => format!("DO UPDATE SET {set} WHERE NOT ({}.{stored})", T::TABLE),
            None => format!("DO UPDATE SET {set}"),
        }
    } else {
        "DO NOTHING".to_owned()
    };
    format!(
        "INSERT INTO {} ({}) VALUES {values} ON CONFLICT ({}) {conflict}",
        T::TABLE,
        T::COLUMNS.join(", "),
        T::KEY.join(", "),
    )
}

/// The statements the writer uses, built once.
#[derive(Debug, Clone)]
pub(crate) struct BatchSql {
    /// Rows per multi-row insert: fewer statements per batch; 1 writes each row on its own.
    rows_per_statement: usize,
    services: TableSql,
    connections: TableSql,
    deferreds: TableSql,
    steps: TableSql,
    events: TableSql,
    queries: TableSql,
}

impl BatchSql {
    /// Statements inserting up to `rows_per_statement` rows each (at least 1).
    pub(crate) fn new(rows_per_statement: usize) -> Self {
        let n = rows_per_statement.max(1);
        Self {
            rows_per_statement: n,
            services: TableSql::new::<ServiceRecord>(n),
            connections: TableSql::new::<ConnectionRecord>(n),
            deferreds: TableSql::new::<DeferredRecord>(n),
            steps: TableSql::new::<StepRecord>(n),
            events: TableSql::new::<EventRecord>(n),
            queries: TableSql::new::<QueryRecord>(n),
        }
    }

    /// Writes `records` in one transaction: all of them, or none.
    pub(crate) async fn write(
        &self,
        conn: &mut SqliteConnection,
        records: &[Record],
    ) -> Result<(), sqlx::Error> {
        self.write_with(conn, records, None).await
    }

    /// Like [`write`](Self::write), with the whole service catalog in the same transaction
    /// when `catalog` is given: its services replace those among `records` (the catalog
    /// has the latest of each), and the services it names as removed are deleted.
    pub(crate) async fn write_with(
        &self,
        conn: &mut SqliteConnection,
        records: &[Record],
        catalog: Option<&CatalogSync>,
    ) -> Result<(), sqlx::Error> {
        let mut services = Vec::new();
        let mut connections = Vec::new();
        let mut deferreds = Vec::new();
        let mut steps = Vec::new();
        let mut events = Vec::with_capacity(records.len());
        let mut queries = Vec::new();
        for record in records {
            match record {
                Record::Service(_) if catalog.is_some() => {}
                Record::Service(r) => services.push(r),
                Record::Connection(r) => connections.push(r),
                Record::Deferred(r) => deferreds.push(r),
                Record::Step(r) => steps.push(r),
                Record::Event(r) => events.push(r),
                Record::Query(r) => queries.push(r),
            }
        }
        if let Some(catalog) = catalog {
            services.extend(catalog.services.iter());
        }
        let mut tx = conn.begin().await?;
        for name in catalog.iter().flat_map(|c| c.removed.iter()) {
            sqlx::query("DELETE FROM services WHERE name = ?")
                .bind(name)
                .execute(&mut *tx)
                .await?;
        }
        self.write_rows(&mut tx, &self.services, &services).await?;
        self.write_rows(&mut tx, &self.connections, &connections)
            .await?;
        self.write_rows(&mut tx, &self.deferreds, &deferreds)
            .await?;
        self.write_rows(&mut tx, &self.steps, &steps).await?;
        self.write_rows(&mut tx, &self.events, &events).await?;
        self.write_rows(&mut tx, &self.queries, &queries).await?;
        tx.commit().await
    }

    async fn write_rows<T: Insert>(
        &self,
        conn: &mut SqliteConnection,
        sql: &TableSql,
        rows: &[&T],
    ) -> Result<(), sqlx::Error> {
        let mut chunks = rows.chunks_exact(self.rows_per_statement);
        if self.rows_per_statement > 1 {
            for chunk in &mut chunks {
                let mut q = sqlx::query(sql.many.clone());
                for row in chunk {
                    q = row.bind(q);
                }
                q.execute(&mut *conn).await?;
            }
        }
        let rest = if self.rows_per_statement > 1 {
            chunks.remainder()
        } else {
            rows
        };
        for row in rest {
            row.bind(sqlx::query(sql.one.clone()))
                .execute(&mut *conn)
                .await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upsert_sql_updates_every_column_but_the_key() {
        let sql = insert_sql::<StepRecord>(2);
        assert!(sql.starts_with("INSERT INTO deferred_steps (deferred_id, idx, kind,"));
        assert!(sql.contains("VALUES (?, ?, ?, ?, ?, ?, ?, ?), (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (deferred_id, idx) DO UPDATE SET kind = excluded.kind"));
        assert!(!sql.contains("idx = excluded.idx"));
    }

    #[test]
    fn a_deferred_upsert_merges_what_a_partial_record_does_not_know() {
        let sql = insert_sql::<DeferredRecord>(1);
        for set in [
            "parent_id = coalesce(excluded.parent_id, deferreds.parent_id)",
            "created_at_ms = min(deferreds.created_at_ms, excluded.created_at_ms)",
            "unhandled = max(deferreds.unhandled, excluded.unhandled)",
            "state = CASE WHEN deferreds.state IN ('succeeded', 'failed', 'cancelled') \
             THEN deferreds.state ELSE excluded.state END",
            "waiting_on = excluded.waiting_on",
        ] {
            assert!(sql.contains(set), "{set}\n{sql}");
        }
    }

    #[test]
    fn events_keep_the_first_row() {
        let sql = insert_sql::<EventRecord>(1);
        assert!(sql.ends_with("ON CONFLICT (seq) DO NOTHING"), "{sql}");
    }
}

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

use sqlx::postgres::{PgArguments, PgConnection};
use sqlx::query::Query;
use sqlx::sqlite::{SqliteArguments, SqliteConnection};
use sqlx::{AssertSqlSafe, Connection, Postgres, SqlSafeStr, SqlStr, Sqlite};

use crate::backend::{Conn, Dialect};
use crate::batch_rounds::{Tables, by_table, one_round, rounds};
use crate::catalog::CatalogSync;
use crate::columns;
use crate::records::{
    ConnectionRecord, DeferredRecord, EventRecord, QueryRecord, Record, ServiceRecord, StepRecord,
};

type SqliteQuery<'q> = Query<'q, Sqlite, SqliteArguments>;
type PgQuery<'q> = Query<'q, Postgres, PgArguments>;

/// The two `bind`s of an [`Insert`], one per driver, from one list of values (`$r` is the
/// record); the writer binds the instance after them.
macro_rules! binds {
    ($r:ident => $($value:expr),+ $(,)?) => {
        fn bind<'q>(&self, q: SqliteQuery<'q>) -> SqliteQuery<'q> {
            let $r = self;
            q$(.bind($value))+
        }

        fn bind_pg<'q>(&self, q: PgQuery<'q>) -> PgQuery<'q> {
            let $r = self;
            q$(.bind($value))+
        }
    };
}

/// A row type that knows its table and how to bind itself.
pub(crate) trait Insert {
    /// Table name.
    const TABLE: &'static str;
    /// Columns in bind order (the instance, bound last, is not among them).
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

    fn bind_pg<'q>(&self, q: PgQuery<'q>) -> PgQuery<'q>;

    /// The row's key, hashed; `None` for rows that never meet another (the query log's).
    fn key_hash(&self) -> Option<u64>;
}

/// `value`'s hash, for [`Insert::key_hash`].
fn hash_of(value: impl std::hash::Hash) -> Option<u64> {
    use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
    Some(BuildHasherDefault::<DefaultHasher>::default().hash_one(value))
}

/// How an upsert combines a column's stored value with the one a record brings.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Merge {
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
    fn set(self, dialect: Dialect, table: &str, column: &str) -> String {
        let (stored, new) = (format!("{table}.{column}"), format!("excluded.{column}"));
        match self {
            Self::KeepIfNull => format!("{column} = coalesce({new}, {stored})"),
            Self::Least => format!("{column} = {}({stored}, {new})", dialect.least()),
            Self::Sticky => format!("{column} = {}({stored}, {new})", dialect.greatest()),
            Self::KeepOnce(when) => {
                let when = when();
                format!("{column} = CASE WHEN {stored} {when} THEN {stored} ELSE {new} END")
            }
        }
    }
}

/// A service's endpoints as the JSON array its column holds.
fn endpoints_json(r: &ServiceRecord) -> String {
    // A Vec<String> always serializes.
    serde_json::to_string(&r.endpoints).unwrap_or_else(|_| "[]".into())
}

impl Insert for ServiceRecord {
    const TABLE: &'static str = "services";
    const COLUMNS: &'static [&'static str] = &["name", "kind", "endpoints_json", "config_json"];
    const KEY: &'static [&'static str] = &["name"];

    binds!(r => r.name.as_str(), r.kind.as_str(), endpoints_json(r), r.config_json.as_str());

    fn key_hash(&self) -> Option<u64> {
        hash_of(&self.name)
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
        "reactor",
    ];
    const KEY: &'static [&'static str] = &["id"];
    const MERGE: &'static [(&'static str, Merge)] = &[
        ("opened_seq", Merge::KeepIfNull),
        ("closed_seq", Merge::KeepIfNull),
        ("reactor", Merge::KeepIfNull),
    ];
    const FINAL_WHEN: Option<&'static str> = Some("closed_at_ms IS NOT NULL");

    binds!(r =>
        r.id,
        r.service.as_str(),
        r.transport.as_str(),
        r.peer.as_str(),
        r.local.as_str(),
        r.opened_at_ms,
        r.closed_at_ms,
        r.bytes_in,
        r.bytes_out,
        r.reads,
        r.writes,
        r.close_reason.as_deref(),
        r.close_detail.as_deref(),
        r.opened_seq,
        r.closed_seq,
        r.reactor,
    );

    fn key_hash(&self) -> Option<u64> {
        hash_of(self.id)
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
        "reactor",
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
        ("reactor", Merge::KeepIfNull),
    ];

    binds!(r =>
        r.id,
        r.parent_id,
        r.label.as_deref(),
        r.site.as_str(),
        r.connection_id,
        r.service.as_deref(),
        r.state.as_str(),
        r.created_at_ms,
        r.fired_at_ms,
        r.current_step.as_deref(),
        r.waiting_on,
        r.failure.as_deref(),
        r.stalled,
        r.slow,
        r.unhandled,
        r.leaked,
        r.deadlock,
        r.step_name.as_deref(),
        r.step_detail.as_deref(),
        r.waiting_on_connection,
        r.named_steps_json.as_deref(),
        r.kind.as_deref(),
        r.task_json.as_deref(),
        r.reactor,
    );

    fn key_hash(&self) -> Option<u64> {
        hash_of(self.id)
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

    binds!(r =>
        r.deferred_id,
        r.idx,
        r.kind.as_str(),
        r.site.as_str(),
        r.started_at_us,
        r.duration_us,
        r.outcome.as_str(),
        r.child_id,
    );

    fn key_hash(&self) -> Option<u64> {
        hash_of((self.deferred_id, self.idx))
    }
}

impl Insert for EventRecord {
    const TABLE: &'static str = "events";
    const COLUMNS: &'static [&'static str] = &["seq", "at_ms", "kind", "payload_json"];
    const KEY: &'static [&'static str] = &["seq"];
    const UPSERT: bool = false;

    binds!(r =>
        r.seq,
        r.at_ms,
        r.kind.as_str(),
        r.payload_json.as_str(),
    );

    fn key_hash(&self) -> Option<u64> {
        hash_of(self.seq)
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

    binds!(r =>
        r.service.as_str(),
        r.at_ms,
        r.client.as_str(),
        r.name.as_str(),
        r.qtype.as_str(),
        r.rcode.as_str(),
        r.latency_us,
        r.source.as_str(),
        r.failed,
        r.weight,
    );

    fn key_hash(&self) -> Option<u64> {
        None
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
    fn new<T: Insert>(dialect: Dialect, rows_per_statement: usize) -> Self {
        Self {
            many: AssertSqlSafe(insert_sql::<T>(dialect, rows_per_statement)).into_sql_str(),
            one: AssertSqlSafe(insert_sql::<T>(dialect, 1)).into_sql_str(),
        }
    }
}

/// `INSERT INTO t (cols, instance) VALUES (?,..),(?,..) ON CONFLICT (key) DO UPDATE SET c =
/// excluded.c, ...`. In a shared database the key leads with the instance: each gateway
/// numbers its own rows.
fn insert_sql<T: Insert>(dialect: Dialect, rows: usize) -> String {
    let width = T::COLUMNS.len() + 1;
    let values = (0..rows)
        .map(|row| {
            let params: Vec<String> = (1..=width)
                .map(|i| dialect.placeholder(row * width + i))
                .collect();
            format!("({})", params.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ");
    let conflict = if T::UPSERT {
        let set = T::COLUMNS
            .iter()
            .filter(|c| !T::KEY.contains(c))
            .map(|c| match T::MERGE.iter().find(|(m, _)| m == c) {
                Some((_, merge)) => merge.set(dialect, T::TABLE, c),
                None => format!("{c} = excluded.{c}"),
            })
            .collect::<Vec<_>>()
            .join(", ");
        // In a file the key is the id alone: the row takes the name of its latest writer
        // (a renamed host, a file moved to another).
        let set = if dialect.shared() {
            set
        } else {
            format!("{set}, instance = excluded.instance")
        };
        match T::FINAL_WHEN {
            Some(stored) => format!("DO UPDATE SET {set} WHERE NOT ({}.{stored})", T::TABLE),
            None => format!("DO UPDATE SET {set}"),
        }
    } else {
        "DO NOTHING".to_owned()
    };
    let key = T::KEY.join(", ");
    let key = if dialect.shared() {
        format!("instance, {key}")
    } else {
        key
    };
    format!(
        "INSERT INTO {} ({}, instance) VALUES {values} ON CONFLICT ({key}) {conflict}",
        T::TABLE,
        T::COLUMNS.join(", "),
    )
}

/// The statements the writer uses, built once.
#[derive(Debug, Clone)]
pub(crate) struct BatchSql {
    /// Rows per multi-row insert: fewer statements per batch; 1 writes each row on its own.
    rows_per_statement: usize,
    /// Bound into every row.
    instance: String,
    /// Deletes a removed service (of this instance, in a shared database).
    delete_service: SqlStr,
    services: TableSql,
    connections: TableSql,
    deferreds: TableSql,
    steps: TableSql,
    events: TableSql,
    queries: TableSql,
}

/// The body of one batch, the same for each driver: `$bind` is the `Insert` method binding
/// a row for that driver, `$rounds` splits a table's rows into the statements' rounds.
macro_rules! write_batch {
    ($self:ident, $conn:ident, $bind:ident, $rounds:ident, $removed:expr, $tables:expr) => {{
        let (services, connections, deferreds, steps, events, queries) = $tables;
        let mut tx = $conn.begin().await?;
        for name in $removed {
            sqlx::query($self.delete_service.clone())
                .bind(name)
                .bind($self.instance.as_str())
                .execute(&mut *tx)
                .await?;
        }
        for rows in $rounds(services) {
            write_rows!($self, tx, $bind, rows, &$self.services);
        }
        for rows in $rounds(connections) {
            write_rows!($self, tx, $bind, rows, &$self.connections);
        }
        for rows in $rounds(deferreds) {
            write_rows!($self, tx, $bind, rows, &$self.deferreds);
        }
        for rows in $rounds(steps) {
            write_rows!($self, tx, $bind, rows, &$self.steps);
        }
        for rows in $rounds(events) {
            write_rows!($self, tx, $bind, rows, &$self.events);
        }
        for rows in $rounds(queries) {
            write_rows!($self, tx, $bind, rows, &$self.queries);
        }
        tx.commit().await
    }};
}

/// Writes `$rows` in full chunks of the multi-row statement, then the rest one by one.
macro_rules! write_rows {
    ($self:ident, $tx:ident, $bind:ident, $rows:expr, $sql:expr) => {{
        let (rows, sql) = ($rows, $sql);
        let mut chunks = rows.chunks_exact($self.rows_per_statement);
        if $self.rows_per_statement > 1 {
            for chunk in &mut chunks {
                let mut q = sqlx::query(sql.many.clone());
                for row in chunk {
                    q = row.$bind(q).bind($self.instance.as_str());
                }
                q.execute(&mut *$tx).await?;
            }
        }
        let rest = if $self.rows_per_statement > 1 {
            chunks.remainder()
        } else {
            &rows[..]
        };
        for row in rest {
            row.$bind(sqlx::query(sql.one.clone()))
                .bind($self.instance.as_str())
                .execute(&mut *$tx)
                .await?;
        }
    }};
}

impl BatchSql {
    /// Statements in `dialect` inserting up to `rows_per_statement` rows each (at least 1),
    /// every row carrying `instance`.
    pub(crate) fn new(dialect: Dialect, rows_per_statement: usize, instance: &str) -> Self {
        let n = rows_per_statement.max(1);
        let delete_service = match dialect {
            // One writer per file: the name is the key (`$2` is bound and unused).
            Dialect::Sqlite => "DELETE FROM services WHERE name = $1 AND $2 IS NOT NULL",
            Dialect::Postgres => "DELETE FROM services WHERE name = $1 AND instance = $2",
        };
        Self {
            rows_per_statement: n,
            instance: instance.to_owned(),
            delete_service: delete_service.into_sql_str(),
            services: TableSql::new::<ServiceRecord>(dialect, n),
            connections: TableSql::new::<ConnectionRecord>(dialect, n),
            deferreds: TableSql::new::<DeferredRecord>(dialect, n),
            steps: TableSql::new::<StepRecord>(dialect, n),
            events: TableSql::new::<EventRecord>(dialect, n),
            queries: TableSql::new::<QueryRecord>(dialect, n),
        }
    }

    /// Writes `records` in one transaction: all of them, or none.
    pub(crate) async fn write(
        &self,
        conn: &mut Conn,
        records: &[Record],
    ) -> Result<(), sqlx::Error> {
        self.write_with(conn, records, None).await
    }

    /// Like [`write`](Self::write), with the whole service catalog in the same transaction
    /// when `catalog` is given: its services replace those among `records` (the catalog
    /// has the latest of each), and the services it names as removed are deleted.
    pub(crate) async fn write_with(
        &self,
        conn: &mut Conn,
        records: &[Record],
        catalog: Option<&CatalogSync>,
    ) -> Result<(), sqlx::Error> {
        let tables = by_table(records, catalog);
        let removed = catalog.iter().flat_map(|c| c.removed.iter());
        match conn {
            Conn::Sqlite(conn) => self.write_sqlite(conn, removed, tables).await,
            Conn::Postgres(conn) => self.write_pg(conn, removed, tables).await,
        }
    }

    async fn write_sqlite(
        &self,
        conn: &mut SqliteConnection,
        removed: impl Iterator<Item = &String>,
        tables: Tables<'_>,
    ) -> Result<(), sqlx::Error> {
        write_batch!(self, conn, bind, one_round, removed, tables)
    }

    async fn write_pg(
        &self,
        conn: &mut PgConnection,
        removed: impl Iterator<Item = &String>,
        tables: Tables<'_>,
    ) -> Result<(), sqlx::Error> {
        write_batch!(self, conn, bind_pg, rounds, removed, tables)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upsert_sql_updates_every_column_but_the_key() {
        let sql = insert_sql::<StepRecord>(Dialect::Sqlite, 2);
        assert!(sql.starts_with("INSERT INTO deferred_steps (deferred_id, idx, kind,"));
        assert!(sql.contains("VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?), (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (deferred_id, idx) DO UPDATE SET kind = excluded.kind"));
        assert!(!sql.contains("idx = excluded.idx"));
    }

    #[test]
    fn a_deferred_upsert_merges_what_a_partial_record_does_not_know() {
        let sql = insert_sql::<DeferredRecord>(Dialect::Sqlite, 1);
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
    fn in_a_shared_database_keys_lead_with_the_instance() {
        let sql = insert_sql::<StepRecord>(Dialect::Postgres, 2);
        assert!(
            sql.contains("VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9), ($10,"),
            "{sql}"
        );
        assert!(
            sql.contains("ON CONFLICT (instance, deferred_id, idx) DO UPDATE"),
            "{sql}"
        );
        let sql = insert_sql::<DeferredRecord>(Dialect::Postgres, 1);
        assert!(sql.contains("unhandled = GREATEST(deferreds.unhandled, excluded.unhandled)"));
    }

    #[test]
    fn events_keep_the_first_row() {
        let sql = insert_sql::<EventRecord>(Dialect::Sqlite, 1);
        assert!(sql.ends_with("ON CONFLICT (seq) DO NOTHING"), "{sql}");
    }
}

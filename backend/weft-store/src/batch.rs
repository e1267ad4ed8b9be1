//! Writing one batch of records in one transaction.
//!
//! Records are grouped by table (keeping their order within a table, so the last upsert of an id
//! wins) and written with multi-row `INSERT ... ON CONFLICT` statements of a fixed row count, plus
//! single-row statements for the remainder. Both shapes are prepared once per connection and reused
//! from sqlx's statement cache; a fixed shape keeps that cache small. What each table's row is,
//! and how its upsert merges, is each record's [`Insert`] (`insert.rs`).

use sqlx::postgres::PgConnection;
use sqlx::sqlite::SqliteConnection;
use sqlx::{AssertSqlSafe, Connection, SqlSafeStr, SqlStr};

use crate::backend::{Conn, Dialect};
use crate::batch_rounds::{Tables, by_table, one_round, rounds};
use crate::catalog::CatalogSync;
use crate::insert::Insert;
use crate::records::{
    ConnectionRecord, DeferredRecord, EventRecord, QueryRecord, Record, ServiceRecord, StepRecord,
};

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
    /// Bound into every row: shared, not copied (a `&str` would be copied into a new
    /// `String` for each row).
    instance: std::sync::Arc<str>,
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
                .bind($self.instance.clone())
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
                    q = row.$bind(q).bind($self.instance.clone());
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
                .bind($self.instance.clone())
                .execute(&mut *$tx)
                .await?;
        }
    }};
}

impl BatchSql {
    /// The instance every row carries.
    pub(crate) fn instance(&self) -> &str {
        &self.instance
    }

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
            instance: instance.into(),
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

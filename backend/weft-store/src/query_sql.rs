//! The text of the history queries, written once for both backends (`$n` placeholders,
//! which SQLite reads too), and the list builders the dashboard's filters extend.

use sqlx::{AssertSqlSafe, Database, Encode, QueryBuilder, SqlSafeStr, SqlStr, Type};

use crate::backend::Dialect;
use crate::queries::{ConnectionState, DeferredFilter, MAX_LIMIT};

const CONNECTION_COLUMNS: &str = "SELECT id, service, transport, peer, local, opened_at_ms, closed_at_ms, \
     bytes_in, bytes_out, reads, writes, close_reason, close_detail, opened_seq, closed_seq, \
     reactor, instance FROM connections";

const DEFERRED_COLUMNS: &str = "SELECT id, parent_id, label, site, connection_id, service, state, \
     created_at_ms, fired_at_ms, current_step, waiting_on, failure, stalled, slow, unhandled, leaked, \
     deadlock, step_name, step_detail, waiting_on_connection, named_steps_json, kind, task_json, \
     reactor, ended_at_ms, instance FROM deferreds";

/// Which rows a list shows: of one service, of one instance, of one reactor (each optional).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ListFilter<'a> {
    /// Only rows of this service.
    pub service: Option<&'a str>,
    /// Only rows this instance wrote (`[gateway] instance`); every instance's when `None`.
    pub instance: Option<&'a str>,
    /// Only rows of this reactor (`[gateway] reactors`); rows that do not know theirs
    /// (written before history kept it) match no reactor.
    pub reactor: Option<u16>,
    /// Only connections whose peer address contains this text (the Deferreds list has no
    /// peer and ignores it).
    pub peer: Option<&'a str>,
}

/// Appends the filter's conditions to a query that has its `WHERE`.
fn push_filter<DB: Database>(q: &mut QueryBuilder<DB>, filter: ListFilter<'_>)
where
    for<'t> String: Encode<'t, DB> + Type<DB>,
    for<'t> i64: Encode<'t, DB> + Type<DB>,
{
    if let Some(service) = filter.service {
        q.push(" AND service = ").push_bind(service.to_owned());
    }
    if let Some(instance) = filter.instance {
        q.push(" AND instance = ").push_bind(instance.to_owned());
    }
    if let Some(reactor) = filter.reactor {
        q.push(" AND reactor = ").push_bind(i64::from(reactor));
    }
}

/// The connections list up to its `LIMIT`; the caller binds the limit.
pub(crate) fn connections_query<DB: Database>(
    state: Option<ConnectionState>,
    filter: ListFilter<'_>,
) -> QueryBuilder<DB>
where
    DB::Arguments: Default,
    for<'t> String: Encode<'t, DB> + Type<DB>,
    for<'t> i64: Encode<'t, DB> + Type<DB>,
{
    let mut q = QueryBuilder::<DB>::new(CONNECTION_COLUMNS);
    q.push(match state {
        None => " WHERE 1 = 1",
        Some(ConnectionState::Open) => " WHERE closed_at_ms IS NULL",
        Some(ConnectionState::Closed) => " WHERE closed_at_ms IS NOT NULL",
    });
    push_filter(&mut q, filter);
    if let Some(peer) = filter.peer {
        q.push(" AND peer LIKE ")
            .push_bind(contains_pattern(peer))
            .push(" ESCAPE '\\'");
    }
    // Each order matches an index, so a page is read without sorting the table.
    q.push(match state {
        Some(ConnectionState::Closed) => " ORDER BY closed_at_ms DESC, id DESC LIMIT ",
        _ => " ORDER BY opened_at_ms DESC, id DESC LIMIT ",
    });
    q
}

/// A `LIKE` pattern matching text that contains `needle` as it is (its `%`, `_` and `\`
/// escaped with `\`).
fn contains_pattern(needle: &str) -> String {
    let mut pattern = String::with_capacity(needle.len() + 2);
    pattern.push('%');
    for c in needle.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// The Deferreds list up to its `LIMIT`; the caller binds the limit.
pub(crate) fn deferreds_query<DB: Database>(
    d: Dialect,
    state: Option<DeferredFilter>,
    filter: ListFilter<'_>,
) -> QueryBuilder<DB>
where
    DB::Arguments: Default,
    for<'t> String: Encode<'t, DB> + Type<DB>,
    for<'t> i64: Encode<'t, DB> + Type<DB>,
{
    let mut q = QueryBuilder::<DB>::new(DEFERRED_COLUMNS);
    if state == Some(DeferredFilter::Pending) {
        // Without statistics the planner prefers the state index and sorts every pending row.
        q.push(d.indexed_by("deferreds_pending"));
    }
    q.push(" WHERE ");
    q.push(state.map_or_else(|| "1 = 1".to_owned(), |f| f.condition(d)));
    push_filter(&mut q, filter);
    q.push(" ORDER BY created_at_ms DESC, id DESC LIMIT ");
    q
}

/// `AND instance = $n` where rows of one instance are wanted (`$n` bound to `Some`);
/// nothing matches fewer rows when it is bound to NULL, which a file binds.
fn scoped(n: u8) -> String {
    format!(" AND (${n} IS NULL OR instance = ${n})")
}

pub(crate) fn sql(text: String) -> SqlStr {
    AssertSqlSafe(text).into_sql_str()
}

pub(crate) fn one_connection_sql() -> String {
    format!("{CONNECTION_COLUMNS} WHERE id = $1{}", scoped(2))
}

pub(crate) fn one_deferred_sql() -> String {
    format!("{DEFERRED_COLUMNS} WHERE id = $1{}", scoped(2))
}

pub(crate) fn steps_sql() -> String {
    format!(
        "SELECT deferred_id, idx, kind, site, started_at_us, duration_us, outcome, child_id \
         FROM deferred_steps WHERE deferred_id = $1{} ORDER BY idx",
        scoped(2)
    )
}

pub(crate) fn children_sql() -> String {
    format!(
        "{DEFERRED_COLUMNS} WHERE parent_id = $1{} ORDER BY created_at_ms, id LIMIT {MAX_LIMIT}",
        scoped(2)
    )
}

pub(crate) fn connection_deferreds_sql() -> String {
    format!(
        "{DEFERRED_COLUMNS} WHERE connection_id = $1{} ORDER BY created_at_ms DESC, id DESC LIMIT $3",
        scoped(2)
    )
}

pub(crate) fn events_after_sql() -> String {
    format!(
        "SELECT seq, at_ms, kind, payload_json FROM events WHERE seq > $1{} ORDER BY seq LIMIT $3",
        scoped(2)
    )
}

/// Walks the event log from its newest end; a kind the log holds often is found at once.
pub(crate) fn recent_of_kind_sql() -> String {
    format!(
        "SELECT seq, at_ms, kind, payload_json FROM events WHERE kind = $1{} \
         ORDER BY seq DESC LIMIT $3",
        scoped(2)
    )
}

/// Each `max` reads one end of an index (or the rowid b-tree); in a shared database, of the
/// instance's own rows (`$1`).
pub(crate) fn last_ids_sql(d: Dialect) -> String {
    let (max, mine) = match d {
        Dialect::Sqlite => ("max", ""),
        Dialect::Postgres => ("GREATEST", " WHERE instance = $1"),
    };
    format!(
        "SELECT {max}(coalesce((SELECT max(id) FROM connections{mine}), 0), \
         coalesce((SELECT max(id) FROM deferreds{mine}), 0)), \
         {max}(coalesce((SELECT max(seq) FROM events{mine}), 0), \
         coalesce((SELECT max(opened_seq) FROM connections{mine}), 0), \
         coalesce((SELECT max(closed_seq) FROM connections{mine}), 0))"
    )
}

/// Connections opened (closed) after an event number, in event order: the
/// `connection_opened` (`connection_closed`) events kept in their rows.
pub(crate) fn connections_by_seq_sql(column: &str) -> String {
    format!(
        "{CONNECTION_COLUMNS} WHERE {column} > $1{} ORDER BY {column} LIMIT $3",
        scoped(2)
    )
}

pub(crate) fn recent_queries_sql(d: Dialect) -> String {
    format!(
        "SELECT service, at_ms, client, name, qtype, rcode, latency_us, source, failed, weight
         FROM queries{} WHERE service = $1 AND at_ms < $2{}
         ORDER BY at_ms DESC, id DESC LIMIT $3",
        d.indexed_by("queries_service_at"),
        scoped(4)
    )
}

/// The most instances [`instances_sql`] names.
const MAX_INSTANCES: u32 = 1_000;

/// Every instance whose services history holds (each gateway records its own), by name;
/// rows written before instances were kept have none.
pub(crate) fn instances_sql() -> String {
    format!(
        "SELECT DISTINCT instance FROM services WHERE instance <> '' \
         ORDER BY instance LIMIT {MAX_INSTANCES}"
    )
}

pub(crate) fn services_sql() -> String {
    format!(
        "SELECT name, kind, endpoints_json, config_json FROM services WHERE 1 = 1{} ORDER BY name",
        scoped(1)
    )
}

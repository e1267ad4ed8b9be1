//! How a batch's records reach their statements: grouped by table, and, where the database
//! demands it, in rounds that write no key twice.

use crate::catalog::CatalogSync;
use crate::insert::Insert;
use crate::records::{
    ConnectionRecord, DeferredRecord, EventRecord, QueryRecord, Record, ServiceRecord, StepRecord,
};

/// A batch's records by table, in their order within each.
pub(crate) type Tables<'a> = (
    Vec<&'a ServiceRecord>,
    Vec<&'a ConnectionRecord>,
    Vec<&'a DeferredRecord>,
    Vec<&'a StepRecord>,
    Vec<&'a EventRecord>,
    Vec<&'a QueryRecord>,
);

/// SQLite upserts the rows of one statement one after the other: a batch is one round.
pub(crate) fn one_round<T>(rows: Vec<&T>) -> [Vec<&T>; 1] {
    [rows]
}

/// PostgreSQL refuses to upsert one row twice in a statement, so a batch that writes a key
/// more than once goes in rounds: the n-th write of each key in round n, each key's writes
/// in their order. A batch without repeats is one round.
pub(crate) fn rounds<T: Insert>(rows: Vec<&T>) -> Vec<Vec<&T>> {
    let mut seen: std::collections::HashMap<u64, usize> = std::collections::HashMap::new();
    let mut rounds: Vec<Vec<&T>> = vec![Vec::with_capacity(rows.len())];
    for row in rows {
        let n = match row.key_hash() {
            Some(key) => {
                let n = seen.entry(key).or_insert(0);
                *n += 1;
                *n - 1
            }
            None => 0,
        };
        if rounds.len() <= n {
            rounds.push(Vec::new());
        }
        rounds[n].push(row);
    }
    rounds
}

/// `records` by table; the catalog's services in place of those among them when given.
pub(crate) fn by_table<'a>(records: &'a [Record], catalog: Option<&'a CatalogSync>) -> Tables<'a> {
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
    (services, connections, deferreds, steps, events, queries)
}

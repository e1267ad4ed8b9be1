//! Each record as a row of its table: [`Insert`] names the table, the columns in bind
//! order, the key and what an upsert does with a row already stored, and binds the record
//! for either driver; `batch` builds the statements from these.
//!
//! An upsert merges rather than overwrites where a later record may know less than the stored
//! row ([`Merge`]): a detection reported after its chain ended carries the flag and little else,
//! and must add the flag without wiping when the chain was created, fired and where it stopped.

use sqlx::postgres::PgArguments;
use sqlx::query::Query;
use sqlx::sqlite::SqliteArguments;
use sqlx::{Postgres, Sqlite};

use crate::backend::Dialect;
use crate::columns;
use crate::records::{
    ConnectionRecord, DeferredRecord, EventRecord, QueryRecord, ServiceRecord, StepRecord,
};

pub(crate) type SqliteQuery<'q> = Query<'q, Sqlite, SqliteArguments>;
pub(crate) type PgQuery<'q> = Query<'q, Postgres, PgArguments>;

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
    pub(crate) fn set(self, dialect: Dialect, table: &str, column: &str) -> String {
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
        "ended_at_ms",
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
        ("ended_at_ms", Merge::KeepIfNull),
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
        r.ended_at_ms,
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

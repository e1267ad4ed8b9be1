//! The plain rows the store keeps, and the [`Record`] the writer accepts.
//!
//! These types know nothing of the reactor: the inspector's history pipeline converts the
//! hub's events into them. Strings that name a closed set (a transport, a Deferred state, a
//! step outcome) stay strings here so the schema does not have to change when the library
//! grows a new one; [`Column`](crate::Column) is the one place they are written from and
//! read back into weft's enums.

use serde::{Deserialize, Serialize};
use sqlx::{ColumnIndex, Decode, FromRow, Row, Type};
use weft::defer::DeferredState;

/// A configured service, upserted by `name`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceRecord {
    /// The service name from the configuration; unique.
    pub name: String,
    /// `echo`, `discard`, `tcp-proxy`, `http`, `dns`, ...
    pub kind: String,
    /// Endpoint strings it listens on, such as `tcp:8000`.
    pub endpoints: Vec<String>,
    /// The service's configuration as a JSON object.
    pub config_json: String,
}

// Endpoints are kept as a JSON array in one column, so the row is decoded by hand.
impl<'r, R: Row> FromRow<'r, R> for ServiceRecord
where
    &'r str: ColumnIndex<R>,
    String: Decode<'r, R::Database> + Type<R::Database>,
{
    fn from_row(row: &'r R) -> Result<Self, sqlx::Error> {
        let endpoints_json: String = row.try_get("endpoints_json")?;
        let endpoints =
            serde_json::from_str(&endpoints_json).map_err(|e| sqlx::Error::ColumnDecode {
                index: "endpoints_json".into(),
                source: Box::new(e),
            })?;
        Ok(Self {
            name: row.try_get("name")?,
            kind: row.try_get("kind")?,
            endpoints,
            config_json: row.try_get("config_json")?,
        })
    }
}

/// One connection, upserted by `id`: written while open with fresh counters, and once more at close.
/// A closed row is final: a later write of the same id as open (a snapshot taken just before the
/// close but written after it) leaves it as it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, FromRow)]
pub struct ConnectionRecord {
    /// The reactor's connection id.
    pub id: i64,
    /// Name of the service that accepted or opened it.
    pub service: String,
    /// `tcp`, `udp`, `unix` or `tls`.
    pub transport: String,
    /// The remote address.
    pub peer: String,
    /// The local address.
    pub local: String,
    /// When it opened, unix milliseconds.
    pub opened_at_ms: i64,
    /// When it closed, unix milliseconds; `None` while open.
    pub closed_at_ms: Option<i64>,
    /// Bytes received.
    pub bytes_in: i64,
    /// Bytes sent.
    pub bytes_out: i64,
    /// Read operations.
    pub reads: i64,
    /// Write operations.
    pub writes: i64,
    /// Why it closed (`eof`, `reset`, `timeout`, ...), once closed.
    pub close_reason: Option<String>,
    /// The reason in words, once closed.
    pub close_detail: Option<String>,
    /// The number of its `connection_opened` event, when that event was recorded; a write
    /// without one keeps the stored number.
    pub opened_seq: Option<i64>,
    /// The number of its `connection_closed` event, likewise.
    pub closed_seq: Option<i64>,
    /// The reactor that owned it (0 to `[gateway] reactors` - 1); `None` in rows written
    /// before history kept it (migration 9).
    #[serde(default)]
    #[sqlx(default)]
    pub reactor: Option<i64>,
    /// The gateway that wrote it (`[gateway] instance`), as read back; the writer stores
    /// its own name whatever a record says.
    #[serde(default)]
    #[sqlx(default)]
    pub instance: String,
}

impl ConnectionRecord {
    /// Whether the connection is still open.
    pub fn is_open(&self) -> bool {
        self.closed_at_ms.is_none()
    }

    /// Its `connection_opened` (or `connection_closed`) event as the event log would have
    /// kept it, when the row has that event's number.
    pub fn event(&self, opened: bool) -> Option<EventRecord> {
        let (seq, at_ms, kind) = if opened {
            (self.opened_seq?, self.opened_at_ms, "connection_opened")
        } else {
            (self.closed_seq?, self.closed_at_ms?, "connection_closed")
        };
        // As it was then: nothing counted yet when it opened, the final figures at close.
        let (age_ms, bytes_in, bytes_out, reads, writes) = if opened {
            (0, 0, 0, 0, 0)
        } else {
            let age = at_ms.saturating_sub(self.opened_at_ms).max(0);
            (age, self.bytes_in, self.bytes_out, self.reads, self.writes)
        };
        let mut payload = serde_json::json!({
            "type": kind,
            "connection": {
                "id": self.id,
                "service": self.service,
                "transport": self.transport,
                "peer": self.peer,
                "local": self.local,
                "opened_at_ms": self.opened_at_ms,
                "age_ms": age_ms,
                "bytes_in": bytes_in,
                "bytes_out": bytes_out,
                "reads": reads,
                "writes": writes,
                "reactor": self.reactor,
            },
        });
        if !opened {
            payload["reason"] = self.close_reason.clone().into();
            payload["detail"] = self.close_detail.clone().into();
        }
        Some(EventRecord {
            seq,
            at_ms,
            kind: kind.to_owned(),
            payload_json: payload.to_string(),
        })
    }
}

/// One Deferred chain, upserted by `id` like connections.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, FromRow)]
pub struct DeferredRecord {
    /// The reactor's Deferred id.
    pub id: i64,
    /// The Deferred this one was chained from (it appears as a step's child there).
    pub parent_id: Option<i64>,
    /// A name given by the program, if any.
    pub label: Option<String>,
    /// Where it was created, `file:line`.
    pub site: String,
    /// The connection it belongs to, if any.
    pub connection_id: Option<i64>,
    /// The service it belongs to, if any.
    pub service: Option<String>,
    /// `pending`, `running`, `paused`, `succeeded`, `failed` or `cancelled`.
    pub state: String,
    /// When it was created, unix milliseconds.
    pub created_at_ms: i64,
    /// When it fired (got its result), unix milliseconds.
    pub fired_at_ms: Option<i64>,
    /// The callback it is in or stopped at, `file:line`.
    pub current_step: Option<String>,
    /// The child Deferred it is paused on.
    pub waiting_on: Option<i64>,
    /// The failure it ended with or carries.
    pub failure: Option<String>,
    /// Pending or paused for longer than the stall threshold.
    pub stalled: bool,
    /// One of its callbacks ran longer than the slow-callback threshold.
    pub slow: bool,
    /// It was dropped holding a failure nobody handled.
    pub unhandled: bool,
    /// It was dropped without ever firing.
    pub leaked: bool,
    /// It waited, through locks, on chains that waited on it (migration 6; files written
    /// before it read as `false`).
    #[sqlx(default)]
    pub deadlock: bool,
    // The named-step columns came with migration 3: files written before it are read
    // (without migrating, as a backup tool would) with these empty.
    /// The named step its code says it is at, or ended at ("response head").
    #[sqlx(default)]
    pub step_name: Option<String>,
    /// What that step is about (an upstream's name), at most 128 bytes.
    #[sqlx(default)]
    pub step_detail: Option<String>,
    /// The connection that step waits on.
    #[sqlx(default)]
    pub waiting_on_connection: Option<i64>,
    /// Every named step so far, a JSON array of [`NamedStepRecord`]s; shown parsed, as
    /// [`DeferredDetail::named_steps`].
    #[serde(skip)]
    #[sqlx(default)]
    pub named_steps_json: Option<String>,
    // The task columns came with migration 7.
    /// `chain`, or `task` for an async task (`None` in rows written before tasks were kept).
    #[sqlx(default)]
    pub kind: Option<String>,
    /// An async task's figures, a JSON [`TaskRecord`]; shown parsed, as `task`.
    #[serde(skip)]
    #[sqlx(default)]
    pub task_json: Option<String>,
    /// The reactor that ran it (0 to `[gateway] reactors` - 1); `None` in rows written
    /// before history kept it (migration 9).
    #[serde(default)]
    #[sqlx(default)]
    pub reactor: Option<i64>,
    /// When it ended, unix milliseconds: a chain that fired and then waited on a Deferred
    /// a step returned ends after it fired. `None` while pending, and in rows written
    /// before history kept it (migration 10), where `fired_at_ms` is the end known.
    #[serde(default)]
    #[sqlx(default)]
    pub ended_at_ms: Option<i64>,
    /// The gateway that wrote it (`[gateway] instance`), as read back; the writer stores
    /// its own name whatever a record says.
    #[serde(default)]
    #[sqlx(default)]
    pub instance: String,
}

impl DeferredRecord {
    /// Whether the Deferred has not fired yet (`pending`, `running`, `paused`, or `waiting`
    /// on a child).
    pub fn is_pending(&self) -> bool {
        self.deferred_state().is_some_and(DeferredState::is_pending)
    }
}

/// One callback step of a Deferred chain, upserted by `(deferred_id, idx)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, FromRow)]
pub struct StepRecord {
    /// The Deferred the step belongs to.
    pub deferred_id: i64,
    /// Position in the chain, from 0.
    pub idx: i64,
    /// `callback`, `errback` or `both`.
    pub kind: String,
    /// Where the callback was added, `file:line`.
    pub site: String,
    /// When it started, unix microseconds; for a `queued` step, when it was added.
    pub started_at_us: i64,
    /// How long it ran; `None` while it has not finished (or not started).
    pub duration_us: Option<i64>,
    /// `ok`, `err`, `skipped`, `chained`, `waiting` (it returned the Deferred the chain
    /// waits on), or `queued` (added, not run yet).
    pub outcome: String,
    /// The Deferred it returned, which the chain then waited on.
    pub child_id: Option<i64>,
}

/// A step a chain's own code named (`weft::defer::Steps`), as stored in
/// [`DeferredRecord::named_steps_json`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamedStepRecord {
    /// Position among the chain's named steps, from 0.
    pub index: u32,
    /// Its name, such as `connect upstream`.
    pub name: String,
    /// What it is about (an upstream's name, a route's prefix), at most 128 bytes.
    pub detail: Option<String>,
    /// The connection it waits on.
    pub waiting_on_connection: Option<u64>,
    /// The Deferred it waits on.
    pub waiting_on_deferred: Option<u64>,
    /// When it began, unix milliseconds.
    pub started_at_ms: i64,
    /// How long it lasted, milliseconds; `None` while the chain is still at it.
    pub duration_ms: Option<u64>,
}

impl DeferredRecord {
    /// Its named steps, read from [`named_steps_json`](Self::named_steps_json); none when
    /// the column is empty or unreadable.
    pub fn named_steps(&self) -> Vec<NamedStepRecord> {
        self.named_steps_json
            .as_deref()
            .and_then(|json| serde_json::from_str(json).ok())
            .unwrap_or_default()
    }
}

/// An async task's figures, as stored in [`DeferredRecord::task_json`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskRecord {
    /// `spawned`, `connection` or `from_future`.
    pub kind: String,
    /// `idle`, `running` or `done`.
    pub state: String,
    /// Polls so far.
    pub polls: u64,
    /// Time spent in its polls, microseconds.
    pub busy_us: u64,
    /// Time spent pending between polls, microseconds.
    pub idle_us: u64,
    /// Milliseconds since it was last woken (its last poll began).
    pub since_wake_ms: u64,
    /// Times it was woken.
    pub wakes: u64,
    /// The Deferred its last poll left it awaiting.
    pub awaiting: Option<u64>,
    /// The Deferred it fires (`Deferred::from_future`).
    pub resolves: Option<u64>,
    /// Whether it waits for its own peer's input.
    pub waiting_on_peer: bool,
}

impl DeferredRecord {
    /// Its task figures, read from [`task_json`](Self::task_json); `None` for a chain.
    pub fn task(&self) -> Option<TaskRecord> {
        self.task_json
            .as_deref()
            .and_then(|json| serde_json::from_str(json).ok())
    }
}

/// An entry of the event log, keyed by the producer's monotonic sequence number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, FromRow)]
pub struct EventRecord {
    /// Monotonic sequence number assigned by the producer; writing the same one twice keeps the first.
    pub seq: i64,
    /// When it happened, unix milliseconds.
    pub at_ms: i64,
    /// The event's type, such as `connection_opened`.
    pub kind: String,
    /// The event's fields as a JSON object.
    pub payload_json: String,
}

/// One answer of the query log (a DNS service's), inserted once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, FromRow)]
pub struct QueryRecord {
    /// The service that answered.
    pub service: String,
    /// When, unix milliseconds.
    pub at_ms: i64,
    /// Who asked (`IP:port`), empty when unknown.
    pub client: String,
    /// The name asked, empty without a readable question.
    pub name: String,
    /// Its type (`A`).
    pub qtype: String,
    /// The answer's code (`NOERROR`).
    pub rcode: String,
    /// From arrival to answer, microseconds.
    pub latency_us: i64,
    /// Where the answer came from (`zone`, `cache`, `upstream 127.0.0.1:53`, ...).
    pub source: String,
    /// An error answer, kept whatever the budget.
    pub failed: bool,
    /// How many answers the row stands for: 1, or N when sampled one in N past the budget.
    pub weight: i64,
}

/// Anything the writer stores.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Record {
    /// A service, upserted.
    Service(ServiceRecord),
    /// A connection, upserted.
    Connection(ConnectionRecord),
    /// A Deferred, upserted.
    Deferred(DeferredRecord),
    /// A Deferred's step, upserted.
    Step(StepRecord),
    /// An event, inserted once.
    Event(EventRecord),
    /// An answer of the query log, inserted once.
    Query(QueryRecord),
}

impl Record {
    /// Whether it ends its row: a connection's close, a chain's end. Lost, the row would
    /// read open (or pending) for as long as history keeps it; a later write of the row as
    /// still open leaves it ended.
    pub(crate) fn ends_a_row(&self) -> bool {
        match self {
            Self::Connection(c) => c.closed_at_ms.is_some(),
            Self::Deferred(d) => !d.is_pending(),
            _ => false,
        }
    }
}

impl From<QueryRecord> for Record {
    fn from(r: QueryRecord) -> Self {
        Self::Query(r)
    }
}

impl From<ServiceRecord> for Record {
    fn from(r: ServiceRecord) -> Self {
        Self::Service(r)
    }
}

impl From<ConnectionRecord> for Record {
    fn from(r: ConnectionRecord) -> Self {
        Self::Connection(r)
    }
}

impl From<DeferredRecord> for Record {
    fn from(r: DeferredRecord) -> Self {
        Self::Deferred(r)
    }
}

impl From<StepRecord> for Record {
    fn from(r: StepRecord) -> Self {
        Self::Step(r)
    }
}

impl From<EventRecord> for Record {
    fn from(r: EventRecord) -> Self {
        Self::Event(r)
    }
}

/// A Deferred with its steps and the Deferreds chained from it, for `/api/deferreds/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeferredDetail {
    /// The Deferred itself.
    #[serde(flatten)]
    pub deferred: DeferredRecord,
    /// Its steps in chain order.
    pub steps: Vec<StepRecord>,
    /// The steps its code named, in order.
    pub named_steps: Vec<NamedStepRecord>,
    /// Its figures, when it is an async task.
    pub task: Option<TaskRecord>,
    /// Deferreds whose `parent_id` is this one, oldest first.
    pub children: Vec<DeferredRecord>,
}

//! The dashboard's view of the world: live figures from the hub merged with history from
//! the store, as plain serializable rows shared by the pages, the JSON API and `/ws`.
//!
//! Live rows come from the hub's memory and never wait on the store. When history cannot
//! be read, a view that has live rows answers with them and a note (`history_error`); one
//! that is history only answers `503` ([`ApiError::HistoryUnavailable`]).

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use weft::defer::{DeferredState, StepStatus};
use weft::observe::ConnectionId;
use weft_store::{
    Column, ConnectionRecord, ConnectionState, DeferredDetail, DeferredFilter, DeferredRecord,
    ListFilter, NamedStepRecord, ServiceRecord, StepRecord,
};
use weft_telemetry::{ConnectionSnapshot, DeferredSnapshot};

use crate::error::ApiError;
use crate::history;
use crate::series::ServiceStats;
use crate::sort::ConnectionOrder;
use crate::state::DashboardState;

/// Rows a list returns when no `limit` is given.
pub const DEFAULT_LIMIT: u32 = 500;

/// Now, unix milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// An id from a path: digits only (no sign, no spaces) and within range, else `None`.
pub fn parse_id<T: std::str::FromStr>(raw: &str) -> Option<T> {
    if raw.is_empty() || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    raw.parse().ok()
}

/// [`parse_id`] for the JSON API: a `400` naming what `raw` should have been (and not
/// repeating it).
pub fn api_id<T: std::str::FromStr>(raw: &str, what: &str) -> Result<T, ApiError> {
    parse_id(raw).ok_or_else(|| ApiError::BadRequest(format!("a {what} id is a whole number")))
}

/// One connection, open (from the hub) or closed (from history).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConnectionView {
    /// The reactor's connection id.
    pub id: u64,
    /// Its service.
    pub service: String,
    /// `tcp`, `udp`, `unix`, `tls`.
    pub transport: String,
    /// The remote address (peer-controlled text: always escaped).
    pub peer: String,
    /// The local address.
    pub local: String,
    /// `open` or `closed`.
    pub state: &'static str,
    /// When it opened, unix milliseconds.
    pub opened_at_ms: i64,
    /// When it closed, unix milliseconds.
    pub closed_at_ms: Option<i64>,
    /// How long it has been (or was) open, milliseconds.
    pub age_ms: u64,
    /// Bytes received.
    pub bytes_in: u64,
    /// Bytes sent.
    pub bytes_out: u64,
    /// Reads.
    pub reads: u64,
    /// Writes.
    pub writes: u64,
    /// Why it closed.
    pub close_reason: Option<String>,
    /// The index of the reactor that owns (or owned) it; `None` in history written before
    /// the reactor was kept.
    pub reactor: Option<u16>,
    /// The gateway that served it (`[gateway] instance`).
    pub instance: String,
}

impl From<ConnectionSnapshot> for ConnectionView {
    fn from(c: ConnectionSnapshot) -> Self {
        Self {
            id: c.id,
            service: c.service.to_string(),
            transport: c.transport.column(),
            peer: c.peer.to_string(),
            local: c.local.to_string(),
            state: "open",
            opened_at_ms: c.opened_at_ms,
            closed_at_ms: None,
            age_ms: c.age_ms,
            bytes_in: c.bytes_in,
            bytes_out: c.bytes_out,
            reads: c.reads,
            writes: c.writes,
            close_reason: None,
            reactor: Some(c.reactor),
            instance: String::new(),
        }
    }
}

impl ConnectionView {
    /// A row from history; its age runs to its close, or to `now_ms` if it never closed
    /// (a connection the last run left open).
    pub fn from_record(r: ConnectionRecord, now_ms: i64) -> Self {
        let u = |v: i64| u64::try_from(v).unwrap_or(0);
        Self {
            id: u(r.id),
            state: if r.is_open() { "open" } else { "closed" },
            age_ms: u(r.closed_at_ms.unwrap_or(now_ms) - r.opened_at_ms),
            service: r.service,
            transport: r.transport,
            peer: r.peer,
            local: r.local,
            opened_at_ms: r.opened_at_ms,
            closed_at_ms: r.closed_at_ms,
            bytes_in: u(r.bytes_in),
            bytes_out: u(r.bytes_out),
            reads: u(r.reads),
            writes: u(r.writes),
            close_reason: r.close_reason,
            reactor: crate::reactors::of_record(r.reactor),
            instance: r.instance,
        }
    }
}

/// `?state=&service=&peer=&reactor=&sort=&dir=&limit=` of the connection lists.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ConnectionQuery {
    /// `open`, `closed`, or empty for both.
    pub state: Option<String>,
    /// Only this service.
    pub service: Option<String>,
    /// Only peers containing this text.
    pub peer: Option<String>,
    /// Only connections of this reactor.
    #[serde(default, deserialize_with = "crate::reactors::param")]
    pub reactor: Option<u16>,
    /// Only those of this gateway (`[gateway] instance`) of a fleet sharing history.
    pub instance: Option<String>,
    /// The column to sort by ([`SortKey`](crate::sort::SortKey)); the id when empty.
    pub sort: Option<String>,
    /// `asc` or `desc` (the default).
    pub dir: Option<String>,
    /// At most this many rows.
    pub limit: Option<u32>,
}

impl ConnectionQuery {
    /// The order asked for, or a 400 naming the accepted values.
    pub fn order(&self) -> Result<ConnectionOrder, ApiError> {
        ConnectionOrder::parse(non_empty(&self.sort), non_empty(&self.dir))
    }
}

/// A capped list and how many rows the cap hid.
#[derive(Debug, Clone, Serialize)]
pub struct Page<T> {
    /// The rows, newest first unless another order was asked for.
    pub items: Vec<T>,
    /// Rows that matched but were left out by the limit (a lower bound for history).
    pub hidden: usize,
    /// Set when history could not be read: the rows are the live ones only, and this
    /// says why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history_error: Option<String>,
}

fn non_empty(s: &Option<String>) -> Option<&str> {
    s.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// The connections `q` asks for: open ones from the hub (always current), closed ones
/// from history (the most recently closed, as many as the limit), in the order asked for;
/// the limit then keeps the first rows of that order.
pub async fn connections(
    state: &DashboardState,
    q: &ConnectionQuery,
) -> Result<Page<ConnectionView>, ApiError> {
    let which = non_empty(&q.state)
        .map(|s| s.parse::<ConnectionState>())
        .transpose()
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let order = q.order()?;
    let service = non_empty(&q.service);
    let peer = non_empty(&q.peer);
    let instance = non_empty(&q.instance);
    let own = history::own_instance(state);
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT).min(weft_store::MAX_LIMIT) as usize;
    let keep = |c: &ConnectionView| {
        service.is_none_or(|s| c.service == s)
            && peer.is_none_or(|p| c.peer.contains(p))
            && q.reactor.is_none_or(|r| c.reactor == Some(r))
    };
    let mut rows: Vec<ConnectionView> = Vec::new();
    let mut history_error = None;
    // Live connections are this gateway's own.
    if which != Some(ConnectionState::Closed) && instance.is_none_or(|i| i == own) {
        rows.extend(
            state
                .hub
                .connections()
                .into_iter()
                .map(|c| ConnectionView {
                    instance: own.to_owned(),
                    ..ConnectionView::from(c)
                })
                .filter(keep),
        );
    }
    if which != Some(ConnectionState::Open)
        && let Some(store) = &state.store
    {
        let now = now_ms();
        // One more than needed tells whether the cap hid something.
        let want = u32::try_from(limit + 1).unwrap_or(u32::MAX);
        let (closed, error) = history::or_note(
            state,
            store
                .connections_where(
                    Some(ConnectionState::Closed),
                    ListFilter {
                        service,
                        instance,
                        reactor: q.reactor,
                    },
                    want,
                )
                .await,
            Vec::new(),
        );
        history_error = error;
        rows.extend(
            closed
                .into_iter()
                .map(|r| ConnectionView::from_record(r, now))
                .filter(keep),
        );
    }
    order.sort(&mut rows);
    let hidden = rows.len().saturating_sub(limit);
    rows.truncate(limit);
    Ok(Page {
        items: rows,
        hidden,
        history_error,
    })
}

/// `?instance=` of a detail page: the gateway whose row of that id it shows (this one's
/// when empty).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct DetailQuery {
    /// The instance (`[gateway] instance`) that wrote the row.
    pub instance: Option<String>,
}

/// One connection of this gateway, live if open, else from history, or of `instance`
/// from history (`503` if history cannot be read).
pub async fn connection(
    state: &DashboardState,
    id: u64,
    instance: Option<&str>,
) -> Result<Option<ConnectionView>, ApiError> {
    let other = crate::instances::other(state, instance);
    if other.is_none()
        && let Some(c) = state.hub.connection(ConnectionId(id))
    {
        return Ok(Some(ConnectionView {
            instance: history::own_instance(state).to_owned(),
            ..c.into()
        }));
    }
    let Some(store) = &state.store else {
        return Ok(None);
    };
    let id = i64::try_from(id).map_err(|_| ApiError::NotFound("connection"))?;
    let record = store
        .connection_of(id, other)
        .await
        .map_err(|e| ApiError::HistoryUnavailable(history::unavailable(state, &e)))?;
    Ok(record.map(|r| ConnectionView::from_record(r, now_ms())))
}

/// A Deferred as listed: its record plus its age.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeferredView {
    /// The record.
    #[serde(flatten)]
    pub record: DeferredRecord,
    /// Milliseconds from creation to firing, or to now while pending.
    pub age_ms: u64,
    /// Its figures, when it is an async task.
    pub task: Option<weft_store::TaskRecord>,
}

impl DeferredView {
    /// Wraps `record`, computing its age at `now_ms`.
    pub fn new(record: DeferredRecord, now_ms: i64) -> Self {
        let end = record
            .fired_at_ms
            .filter(|_| !record.is_pending())
            .unwrap_or(now_ms);
        Self {
            age_ms: u64::try_from(end - record.created_at_ms).unwrap_or(0),
            task: record.task(),
            record,
        }
    }
}

/// `?state=&service=&reactor=&instance=&limit=` of the Deferred lists.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct DeferredQuery {
    /// `pending`, `stalled`, `slow`, `failed`, `unhandled`, `leaked`, `deadlock`.
    pub state: Option<String>,
    /// Only this service.
    pub service: Option<String>,
    /// Only chains and tasks of this reactor.
    #[serde(default, deserialize_with = "crate::reactors::param")]
    pub reactor: Option<u16>,
    /// Only those of this gateway (`[gateway] instance`) of a fleet sharing history.
    pub instance: Option<String>,
    /// At most this many rows.
    pub limit: Option<u32>,
}

/// Parses a Deferred tab name.
pub fn deferred_filter(s: Option<&str>) -> Result<Option<DeferredFilter>, ApiError> {
    s.map(str::parse::<DeferredFilter>)
        .transpose()
        .map_err(|e| ApiError::BadRequest(e.to_string()))
}

/// A live chain as the store would keep it.
pub fn deferred_record(d: &DeferredSnapshot) -> DeferredRecord {
    let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    DeferredRecord {
        id: n(d.id),
        parent_id: d.parent.map(n),
        label: d.label.clone(),
        site: d.site.clone(),
        connection_id: d.connection.map(n),
        service: d.service.clone(),
        state: d.state.column(),
        created_at_ms: d.created_at_ms,
        fired_at_ms: d.fired_at_ms,
        current_step: d.current_step.clone(),
        waiting_on: d.waiting_on.map(n),
        failure: d.failure.clone(),
        stalled: d.stalled,
        slow: d.slow,
        unhandled: d.unhandled,
        leaked: d.leaked,
        deadlock: d.deadlock,
        step_name: d.named_step().map(|s| s.name.to_owned()),
        step_detail: d.named_step().and_then(|s| s.detail.clone()),
        waiting_on_connection: d.named_step().and_then(|s| s.waiting_on_connection).map(n),
        named_steps_json: (!d.named_steps.is_empty())
            .then(|| serde_json::to_string(&d.named_steps).ok())
            .flatten(),
        kind: Some(if d.task.is_some() { "task" } else { "chain" }.to_owned()),
        task_json: d.task.as_ref().and_then(|t| serde_json::to_string(t).ok()),
        reactor: Some(i64::from(d.reactor)),
        instance: String::new(),
    }
}

/// A live chain's named steps as the store would keep them.
pub fn named_step_records(d: &DeferredSnapshot) -> Vec<NamedStepRecord> {
    d.named_steps
        .iter()
        .map(|s| NamedStepRecord {
            index: s.index,
            name: s.name.to_owned(),
            detail: s.detail.clone(),
            waiting_on_connection: s.waiting_on_connection,
            waiting_on_deferred: s.waiting_on_deferred,
            started_at_ms: s.started_at_ms,
            duration_ms: s.duration_ms,
        })
        .collect()
}

/// A live chain's steps as the store would keep them: those run, then those queued.
pub fn step_records(d: &DeferredSnapshot) -> Vec<StepRecord> {
    let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    let ran = d.steps.iter().map(|s| StepRecord {
        deferred_id: n(d.id),
        idx: i64::from(s.index),
        kind: s.kind.column(),
        site: s.site.clone(),
        started_at_us: s
            .at_ms
            .saturating_mul(1000)
            .saturating_sub(n(s.duration_us)),
        duration_us: Some(n(s.duration_us)),
        outcome: s.outcome.column(),
        child_id: s.child.map(n),
    });
    let queued = d.queued.iter().map(|q| StepRecord {
        deferred_id: n(d.id),
        idx: i64::from(q.index),
        kind: q.kind.column(),
        site: q.site.clone(),
        started_at_us: q.at_ms.saturating_mul(1000),
        duration_us: None,
        // Added and not run yet: no duration; its start is when it was added.
        outcome: StepStatus::Queued.column(),
        child_id: None,
    });
    ran.chain(queued).collect()
}

/// The step an unfinished chain waits at: while it waits on a child, the step that
/// returned the child; while it has not fired or is paused, the first step queued.
/// `None` when it is running or has ended, or has no step to wait at.
pub fn waiting_at(d: &DeferredDetail) -> Option<i64> {
    match d.deferred.deferred_state()? {
        DeferredState::Waiting => d
            .steps
            .iter()
            .rev()
            .find(|s| s.status() == Some(StepStatus::Waiting))
            .map(|s| s.idx),
        DeferredState::Pending | DeferredState::Paused => d
            .steps
            .iter()
            .find(|s| s.status() == Some(StepStatus::Queued))
            .map(|s| s.idx),
        _ => None,
    }
}

fn matches(filter: Option<DeferredFilter>, d: &DeferredRecord) -> bool {
    match filter {
        None => true,
        Some(DeferredFilter::Pending) => d.is_pending(),
        Some(DeferredFilter::Stalled) => d.stalled,
        Some(DeferredFilter::Failed) => d.deferred_state() == Some(DeferredState::Failed),
        Some(DeferredFilter::Unhandled) => d.unhandled,
        Some(DeferredFilter::Slow) => d.slow,
        Some(DeferredFilter::Leaked) => d.leaked,
        Some(DeferredFilter::Deadlock) => d.deadlock,
    }
}

/// The Deferreds `q` asks for: pending chains live from the hub, those that ended or were
/// flagged lately from the hub's ring of them, the rest from history; a live chain
/// replaces its older rows.
pub async fn deferreds(
    state: &DashboardState,
    q: &DeferredQuery,
) -> Result<Page<DeferredView>, ApiError> {
    let filter = deferred_filter(non_empty(&q.state))?;
    let service = non_empty(&q.service);
    let instance = non_empty(&q.instance);
    let own = history::own_instance(state);
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT).min(weft_store::MAX_LIMIT) as usize;
    let mut history_error = None;
    // Live chains are this gateway's own.
    let live = instance.is_none_or(|i| i == own);
    let wanted = |d: &DeferredRecord| {
        matches(filter, d)
            && service.is_none_or(|s| d.service.as_deref() == Some(s))
            && q.reactor.is_none_or(|r| d.reactor == Some(i64::from(r)))
    };
    let mut rows: Vec<DeferredRecord> = state
        .hub
        .pending_deferreds()
        .iter()
        .filter(|_| live)
        .map(|d| history::own_record(deferred_record(d), own))
        .filter(|d| wanted(d))
        .collect();
    // A pending row in history that is not live belongs to a run that has ended.
    if filter != Some(DeferredFilter::Pending) {
        let mut stored = Vec::new();
        if let Some(store) = &state.store {
            let want = u32::try_from(limit + 1).unwrap_or(u32::MAX);
            let list = ListFilter {
                service,
                instance,
                reactor: q.reactor,
            };
            (stored, history_error) = history::or_note(
                state,
                store.deferreds_where(filter, list, want).await,
                Vec::new(),
            );
        }
        crate::recent::add_ended(&state.hub, own, &mut rows, stored, |d| live && wanted(d));
    }
    rows.sort_by_key(|d| std::cmp::Reverse((d.created_at_ms, d.id)));
    let hidden = rows.len().saturating_sub(limit);
    rows.truncate(limit);
    let now = now_ms();
    Ok(Page {
        items: rows
            .into_iter()
            .map(|r| DeferredView::new(r, now))
            .collect(),
        hidden,
        history_error,
    })
}

/// One Deferred with its steps and children: live while pending or lately ended, else
/// from history; and
/// the note when history could not be read (`503` if it was all there was to show).
pub async fn deferred(
    state: &DashboardState,
    id: i64,
    instance: Option<&str>,
) -> Result<(Option<DeferredDetail>, Option<String>), ApiError> {
    let other = crate::instances::other(state, instance);
    // Pending, or ended so recently that history may not have it yet.
    let live = u64::try_from(id)
        .ok()
        .filter(|_| other.is_none())
        .and_then(|id| (state.hub.deferred(id)).or_else(|| state.hub.recent().deferred(id)));
    let (stored, history_error) = match &state.store {
        Some(store) => history::or_note(state, store.deferred_of(id, other).await, None),
        None => (None, None),
    };
    let Some(live) = live else {
        return match history_error {
            Some(note) => Err(ApiError::HistoryUnavailable(note)),
            None => Ok((stored, None)),
        };
    };
    let mut record = history::own_record(deferred_record(&live), history::own_instance(state));
    if let Some(stored) = &stored {
        crate::recent::keep_flags(&mut record, &stored.deferred);
    }
    let mut children: Vec<DeferredRecord> = stored.map(|d| d.children).unwrap_or_default();
    for child in state.hub.pending_deferreds() {
        if child.parent == Some(live.id) && !children.iter().any(|c| c.id as u64 == child.id) {
            children.push(deferred_record(&child));
        }
    }
    let detail = DeferredDetail {
        task: record.task(),
        deferred: record,
        steps: step_records(&live),
        named_steps: named_step_records(&live),
        children,
    };
    Ok((Some(detail), history_error))
}

/// What the wait-for graph says about a chain: only a pending one can be in it.
pub fn chain_waits(
    state: &DashboardState,
    d: &DeferredDetail,
) -> Option<weft_telemetry::ChainWaits> {
    if !d.deferred.is_pending() {
        return None;
    }
    let id = u64::try_from(d.deferred.id).ok()?;
    state.hub.deferreds().waits().chain(id)
}

/// The Deferreds of one connection (from history; of `instance`'s connection, or this
/// gateway's), newest first, and the note when history could not be read.
pub async fn connection_deferreds(
    state: &DashboardState,
    id: u64,
    instance: Option<&str>,
) -> (Vec<DeferredView>, Option<String>) {
    let (Some(store), Ok(id)) = (&state.store, i64::try_from(id)) else {
        return (Vec::new(), None);
    };
    let now = now_ms();
    let other = crate::instances::other(state, instance);
    let found = store.connection_deferreds_of(id, other, 200).await;
    let (records, note) = history::or_note(state, found, Vec::new());
    let views = records
        .into_iter()
        .map(|r| DeferredView::new(r, now))
        .collect();
    (views, note)
}

/// A service: its configuration from history and its live figures.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceView {
    /// The name.
    pub name: String,
    /// `echo`, `http`, ... (empty when the service was never recorded).
    pub kind: String,
    /// The endpoints it listens on.
    pub endpoints: Vec<String>,
    /// Its configuration, as a JSON object.
    pub config: serde_json::Value,
    /// Figures now and over the last minutes.
    pub stats: ServiceStats,
}

/// Every service, configured (from history) or seen in the metrics, by name; and the note
/// when history could not be read (the services are then those in the metrics, without
/// their configuration).
pub async fn services(state: &DashboardState) -> (Vec<ServiceView>, Option<String>) {
    let (records, note): (Vec<ServiceRecord>, _) = match &state.store {
        Some(store) => history::or_note(state, store.services().await, Vec::new()),
        None => (Vec::new(), None),
    };
    let mut stats = live_stats(state);
    let mut out: Vec<ServiceView> = records
        .into_iter()
        .map(|r| {
            let s = stats
                .iter()
                .position(|s| s.service == r.name)
                .map(|i| stats.remove(i))
                .unwrap_or_else(|| ServiceStats {
                    service: r.name.clone(),
                    ..ServiceStats::default()
                });
            ServiceView {
                config: serde_json::from_str(&r.config_json).unwrap_or_default(),
                name: r.name,
                kind: r.kind,
                endpoints: r.endpoints,
                stats: s,
            }
        })
        .collect();
    out.extend(stats.into_iter().map(|s| ServiceView {
        name: s.service.clone(),
        kind: String::new(),
        endpoints: Vec::new(),
        config: serde_json::Value::Null,
        stats: s,
    }));
    out.sort_by(|a, b| a.name.cmp(&b.name));
    (out, note)
}

/// The names of the services with live figures, for views that must not wait on history.
pub fn live_service_names(state: &DashboardState) -> Vec<String> {
    live_stats(state).into_iter().map(|s| s.service).collect()
}

/// The figures of every service served now: one a reload removed leaves at once, not at
/// the next sample.
fn live_stats(state: &DashboardState) -> Vec<ServiceStats> {
    let mut stats = state.series.stats();
    stats.retain(|s| s.service != weft_telemetry::NO_SERVICE && !state.hub.is_retired(&s.service));
    stats
}

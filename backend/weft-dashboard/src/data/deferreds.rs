//! The Deferred rows: pending chains live from the hub, those that ended or were flagged
//! lately from the hub's ring, the rest from history ([`deferreds`], [`deferred`]); and a
//! live chain as the store would keep it ([`deferred_record`], [`step_records`]), so
//! both sources show as one kind of row.

use serde::{Deserialize, Serialize};
use weft::defer::{DeferredState, StepStatus};
use weft_store::{
    Column, DeferredDetail, DeferredFilter, DeferredRecord, ListFilter, NamedStepRecord, StepRecord,
};
use weft_telemetry::DeferredSnapshot;

use super::{DEFAULT_LIMIT, Page, non_empty, now_ms};
use crate::error::ApiError;
use crate::history;
use crate::state::DashboardState;

/// A Deferred as listed: its record plus its age.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeferredView {
    /// The record.
    #[serde(flatten)]
    pub record: DeferredRecord,
    /// Milliseconds from creation to its end (to firing in rows that do not know their
    /// end), or to now while pending.
    pub age_ms: u64,
    /// Its figures, when it is an async task.
    pub task: Option<weft_store::TaskRecord>,
}

impl DeferredView {
    /// Wraps `record`, computing its age at `now_ms`.
    pub fn new(record: DeferredRecord, now_ms: i64) -> Self {
        let end = record
            .ended_at_ms
            .or(record.fired_at_ms)
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
        ended_at_ms: d.ended_at_ms,
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
                peer: None,
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

/// The most Deferreds a connection's page lists, newest first.
const CONNECTION_DEFERREDS: usize = 200;

/// The Deferreds of one connection (of `instance`'s connection, or this gateway's),
/// newest first, and the note when history could not be read: from history, and for this
/// gateway's those pending now too (async tasks and chains history has not been told of
/// yet, or has not written).
pub async fn connection_deferreds(
    state: &DashboardState,
    id: u64,
    instance: Option<&str>,
) -> (Vec<DeferredView>, Option<String>) {
    let now = now_ms();
    let other = crate::instances::other(state, instance);
    let (mut records, note) = match (&state.store, i64::try_from(id)) {
        (Some(store), Ok(stored)) => {
            let found = store
                .connection_deferreds_of(stored, other, CONNECTION_DEFERREDS as u32)
                .await;
            history::or_note(state, found, Vec::new())
        }
        _ => (Vec::new(), None),
    };
    if other.is_none() {
        // The live row, where history has one too: history's may be a second old.
        let own = history::own_instance(state);
        for live in state.hub.pending_deferreds() {
            if live.connection != Some(id) {
                continue;
            }
            let record = history::own_record(deferred_record(&live), own);
            match records.iter_mut().find(|r| r.id == record.id) {
                Some(stored) => *stored = record,
                None => records.push(record),
            }
        }
        records.sort_by_key(|d| std::cmp::Reverse((d.created_at_ms, d.id)));
        records.truncate(CONNECTION_DEFERREDS);
    }
    let views = records
        .into_iter()
        .map(|r| DeferredView::new(r, now))
        .collect();
    (views, note)
}

/// The chains of this gateway pending now that wait on connection `id` (a proxied
/// request waiting for its response head on an upstream connection), oldest first, at
/// most 200: none for `instance`'s connections. Live only: history
/// keeps what each chain waited on, not an index of it by connection.
pub fn deferreds_waiting_on(
    state: &DashboardState,
    id: u64,
    instance: Option<&str>,
) -> Vec<DeferredView> {
    if crate::instances::other(state, instance).is_some() {
        return Vec::new();
    }
    let now = now_ms();
    let own = history::own_instance(state);
    let mut views: Vec<DeferredView> = state
        .hub
        .pending_deferreds()
        .iter()
        .filter(|d| d.named_step().and_then(|s| s.waiting_on_connection) == Some(id))
        .map(|d| DeferredView::new(history::own_record(deferred_record(d), own), now))
        .collect();
    views.sort_by_key(|v| (v.record.created_at_ms, v.record.id));
    views.truncate(CONNECTION_DEFERREDS);
    views
}

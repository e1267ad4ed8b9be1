//! Async tasks in the hub: each is kept beside the chains, as a chain whose `task` says
//! what it is, so the detections, the bus, history, `/api/deferreds` and `/ws` carry
//! tasks with no path of their own.
//!
//! The hub holds each task's [`TaskCell`] weakly and reads its figures (polls, busy and
//! idle time, what it awaits) when a snapshot is taken: the task's polls never call the
//! hub.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use serde::Serialize;
use weft::defer::DeferredState;
use weft::tasks::{TaskCell, TaskEnded, TaskFigures, TaskKind, TaskSpawned, TaskState};

use crate::bus::EventKind;
use crate::chains::{Chain, DeferredSnapshot, Origin};
use crate::deferred::{DeferredTracker, blank_snapshot};
use crate::live::unix_ms;

/// A task's figures, as shown and stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TaskSnapshot {
    /// `spawned`, `connection` or `from_future`.
    pub kind: TaskKind,
    /// `idle`, `running` or `done`.
    pub state: TaskState,
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
    /// Whether it waits for its own peer's input (an idle connection, not a stall).
    pub waiting_on_peer: bool,
}

fn us(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

impl TaskSnapshot {
    fn new(kind: TaskKind, resolves: Option<u64>) -> Self {
        Self {
            kind,
            state: TaskState::Idle,
            polls: 0,
            busy_us: 0,
            idle_us: 0,
            since_wake_ms: 0,
            wakes: 0,
            awaiting: None,
            resolves,
            waiting_on_peer: false,
        }
    }

    /// Takes `f`'s figures.
    pub(crate) fn update(&mut self, f: &TaskFigures) {
        self.state = f.state;
        self.polls = f.polls;
        self.busy_us = us(f.busy);
        self.idle_us = us(f.idle);
        self.since_wake_ms = u64::try_from(f.since_wake.as_millis()).unwrap_or(u64::MAX);
        self.wakes = f.wakes;
        self.awaiting = f.awaiting.map(|d| d.0);
        self.waiting_on_peer = f.waiting_on_peer;
    }
}

/// Reads a live task's figures into `snapshot`: its connection, once it has one, and
/// what it waits on.
pub(crate) fn refresh(cell: &Weak<TaskCell>, snapshot: &mut DeferredSnapshot) {
    let Some(cell) = cell.upgrade() else {
        return;
    };
    let figures = cell.figures();
    apply(&figures, snapshot);
}

fn apply(figures: &TaskFigures, snapshot: &mut DeferredSnapshot) {
    if let Some(task) = &mut snapshot.task {
        task.update(figures);
    }
    // A connector's task takes the connection it opens after the one it was spawned for.
    snapshot.connection = figures.connection.map(|c| c.0).or(snapshot.connection);
    snapshot.waiting_on = figures.awaiting.map(|d| d.0).or(snapshot.waiting_on);
    snapshot.state = match figures.state {
        TaskState::Running => DeferredState::Running,
        TaskState::Idle if figures.awaiting.is_some() => DeferredState::Waiting,
        TaskState::Idle => DeferredState::Pending,
        _ => snapshot.state,
    };
}

impl DeferredTracker {
    /// Starts tracking a task beside the chains; links a `from_future` Deferred to it.
    pub(crate) fn task_spawned(&self, t: &TaskSpawned) -> Option<EventKind> {
        let service = t.connection.and_then(|id| self.live().service_of(id));
        let metrics = self.service_handles(service.clone());
        let mut snapshot =
            blank_snapshot(t.id, t.connection, unix_ms(t.at), DeferredState::Pending);
        snapshot.parent = t.parent.map(|p| p.0);
        snapshot.task = Some(TaskSnapshot::new(t.kind, t.resolves.map(|d| d.0)));
        let chain = Chain {
            snapshot,
            origin: Origin {
                label: t.label,
                site: t.site,
                service,
            },
            created: Instant::now(),
            metrics,
            task: Some(t.cell.clone()),
            current_step: None,
            sampled: false,
            in_history: false,
        };
        let mut chains = self.chains().lock();
        chains.insert(t.id.0, chain);
        // The chain a `from_future` task fires waits on the task.
        if let Some(chain) = t.resolves.and_then(|d| chains.get_mut(&d.0)) {
            chain.snapshot.waiting_on = Some(t.id.0);
        }
        None
    }

    /// Ends a task: published (and so stored) when a detector flagged it.
    pub(crate) fn task_ended(&self, e: &TaskEnded) -> Option<EventKind> {
        let chain = self.chains().lock().remove(&e.id.0)?;
        if chain.snapshot.stalled {
            chain.metrics.stalled.dec();
        }
        let mut snapshot = chain.into_snapshot();
        apply(&e.figures, &mut snapshot);
        snapshot.state = if e.completed {
            DeferredState::Succeeded
        } else {
            DeferredState::Cancelled
        };
        snapshot.waiting_on = None;
        // When it ended, as a chain's firing: its age ends there, and retention prunes it.
        let now = unix_ms(std::time::SystemTime::now());
        snapshot.fired_at_ms = Some(now);
        snapshot.ended_at_ms = Some(now);
        snapshot
            .flagged()
            .then_some(EventKind::DeferredEnded { deferred: snapshot })
    }
}

/// Labels a task's service once its connection is known (a connection's task learns it
/// at its first poll).
pub(crate) fn with_service(
    snapshot: &mut DeferredSnapshot,
    service_of: impl Fn(u64) -> Option<Arc<str>>,
) {
    if snapshot.service.is_none()
        && let Some(c) = snapshot.connection
    {
        snapshot.service = service_of(c).map(|s| s.to_string());
    }
}

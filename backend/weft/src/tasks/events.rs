//! What a task reports to the observer, beside the Deferred events: its spawn and its
//! end. Its detections are the chains' own ([`Stalled`](crate::defer::Stalled),
//! [`SlowCallback`](crate::defer::SlowCallback), [`Leaked`](crate::defer::Leaked)), whose
//! subject is the task.

use std::sync::Weak;
use std::time::SystemTime;

use super::{TaskCell, TaskFigures, TaskKind};
use crate::defer::{DeferredId, Site};
use crate::observe::ConnectionId;

/// A task was spawned.
#[derive(Debug, Clone)]
pub struct TaskSpawned {
    /// Its id.
    pub id: DeferredId,
    /// Its header, to read its figures from any thread while it lives. Weak: a strong
    /// reference would count as one of its wakers.
    pub cell: Weak<TaskCell>,
    /// Its label.
    pub label: Option<&'static str>,
    /// The line that spawned it.
    pub site: Site,
    /// What started it.
    pub kind: TaskKind,
    /// The connection whose callback spawned it.
    pub connection: Option<ConnectionId>,
    /// The Deferred whose step (or the task whose poll) spawned it.
    pub parent: Option<DeferredId>,
    /// The Deferred it fires (`Deferred::from_future`).
    pub resolves: Option<DeferredId>,
    /// Wall-clock spawn time.
    pub at: SystemTime,
}

/// A task returned, or was dropped before it did.
#[derive(Debug, Clone)]
pub struct TaskEnded {
    /// Its id.
    pub id: DeferredId,
    /// Its figures as it ended.
    pub figures: TaskFigures,
    /// Whether it ran to its end (`false`: dropped pending, e.g. cancelled or aborted).
    pub completed: bool,
}

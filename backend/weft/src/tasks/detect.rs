//! The task detectors: slow polls (inline, after the poll), leaked wakers (after a
//! pending poll, and again by the scan) and stalls (by the scan the Deferred stall
//! detector runs on the thread's clock). Each reports a task at most once.

use std::cell::RefCell;
use std::sync::{Arc, Weak};
use std::time::Duration;

use super::cell::{
    LEAK_REPORTED, SLOW_REPORTED, STALL_REPORTED, TaskCell, TaskFigures, TaskKind, ns,
};
use crate::defer::{
    DeferredEvent, DeferredId, DeferredState, Detector, Leaked, Site, SlowCallback, Stalled,
    Subject,
};
use crate::observe::{self, Event, detection_logged};

/// The live tasks of a thread, weak so the table never keeps a task's cell alive (nor
/// counts as one of its wakers).
#[derive(Default)]
pub(crate) struct TaskSlots {
    slots: Vec<Option<Weak<TaskCell>>>,
    /// Emptied slots, reused so the table stays as large as the most tasks at once.
    free: Vec<usize>,
}

impl TaskSlots {
    pub(crate) const fn new() -> Self {
        Self {
            slots: Vec::new(),
            free: Vec::new(),
        }
    }
}

fn slots<R>(f: impl FnOnce(&RefCell<TaskSlots>) -> R) -> R {
    crate::context::with(|cx| f(&cx.tasks))
}

pub(super) fn register(cell: &Arc<TaskCell>) -> usize {
    let weak = Arc::downgrade(cell);
    slots(|t| {
        let mut t = t.borrow_mut();
        match t.free.pop() {
            Some(slot) => {
                t.slots[slot] = Some(weak);
                slot
            }
            None => {
                t.slots.push(Some(weak));
                t.slots.len() - 1
            }
        }
    })
}

pub(super) fn unregister(slot: usize) {
    // `try_with`: a task dropped while the thread exits finds the table gone.
    let _ = crate::context::try_with(|cx| {
        let mut t = cx.tasks.borrow_mut();
        t.slots[slot] = None;
        t.free.push(slot);
    });
}

fn live() -> Vec<Arc<TaskCell>> {
    slots(|t| {
        t.borrow()
            .slots
            .iter()
            .filter_map(|s| s.as_ref().and_then(Weak::upgrade))
            .collect()
    })
}

/// A live task as this thread sees it at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingTask {
    /// Its id.
    pub id: DeferredId,
    /// Its label.
    pub label: Option<&'static str>,
    /// The line that spawned it.
    pub site: Site,
    /// What started it.
    pub kind: TaskKind,
    /// The Deferred it fires (`Deferred::from_future`).
    pub resolves: Option<DeferredId>,
    /// Its figures.
    pub figures: TaskFigures,
}

/// The live tasks of this thread (the reactor's), oldest first.
pub fn pending_tasks() -> Vec<PendingTask> {
    let now = ns(crate::defer::clock_now());
    let mut out: Vec<PendingTask> = live()
        .iter()
        .map(|cell| PendingTask {
            id: cell.id(),
            label: cell.label(),
            site: cell.site(),
            kind: cell.kind(),
            resolves: cell.resolves(),
            figures: cell.figures_at(now),
        })
        .collect();
    out.sort_by_key(|t| std::cmp::Reverse(t.figures.age));
    out
}

fn subject(cell: &TaskCell) -> Subject {
    Subject {
        id: cell.id(),
        label: cell.label(),
        site: cell.site(),
        connection: cell.connection(),
    }
}

/// Builds and sends a task's event, only when an observer listens.
pub(super) fn emit(build: impl FnOnce() -> DeferredEvent) {
    if observe::enabled() {
        let event = build();
        observe::emit(|| Event::Deferred(&event));
    }
}

pub(super) fn report_slow(cell: &TaskCell, took: Duration, threshold: Duration) {
    if !cell.mark(SLOW_REPORTED) {
        return;
    }
    let polls = cell.figures_at(0).polls;
    if let Some(suppressed) = detection_logged(Detector::Slow, cell.label()) {
        tracing::warn!(
            task = %cell.id(), spawned = %cell.site(), label = cell.label(), ?took, suppressed,
            "a task's poll blocked the reactor"
        );
    }
    emit(|| {
        DeferredEvent::SlowCallback(SlowCallback {
            subject: subject(cell),
            index: u32::try_from(polls).unwrap_or(u32::MAX),
            callback_site: cell.site(),
            duration: took,
            threshold,
        })
    });
}

/// Reports `cell` leaked if it is pending and nothing but the task itself holds its
/// waker: the task's own two references (its cell and its waker), plus `looking` (the
/// scan's own), are all there are.
pub(super) fn check_leaked(cell: &Arc<TaskCell>, looking: usize) {
    if cell.waker_holders() > 2 + looking || cell.has(LEAK_REPORTED) || !cell.mark(LEAK_REPORTED) {
        return;
    }
    let now = ns(crate::defer::clock_now());
    let age = Duration::from_nanos(now.saturating_sub(cell.created_ns()));
    if let Some(suppressed) = detection_logged(Detector::Leaked, cell.label()) {
        tracing::warn!(
            task = %cell.id(), spawned = %cell.site(), label = cell.label(), suppressed,
            "a pending task's waker was dropped; nothing can wake it again"
        );
    }
    emit(|| {
        DeferredEvent::Leaked(Leaked {
            subject: subject(cell),
            age,
        })
    });
}

/// Looks at every live task once: reports those pending past their stall threshold and
/// those nothing can wake.
pub(crate) fn scan_for_stalls() {
    let now = ns(crate::defer::clock_now());
    for cell in live() {
        if !cell.is_idle() {
            continue;
        }
        if cell.unwoken() {
            check_leaked(&cell, 1);
        }
        let figures = cell.figures_at(now);
        let idle_for = Duration::from_nanos(now.saturating_sub(cell.last_end_ns()));
        let threshold = crate::defer::stall_threshold(cell.label());
        if idle_for < threshold
            || figures.waiting_on_peer
            || !cell.unwoken()
            || cell.has(STALL_REPORTED)
            || !cell.mark(STALL_REPORTED)
        {
            continue;
        }
        if let Some(suppressed) = detection_logged(Detector::Stalled, cell.label()) {
            tracing::warn!(
                task = %cell.id(), spawned = %cell.site(), label = cell.label(), ?idle_for,
                suppressed, "a task is stalled"
            );
        }
        emit(|| {
            DeferredEvent::Stalled(Stalled {
                subject: subject(&cell),
                state: DeferredState::Pending,
                stalled_for: idle_for,
                threshold,
                step: u32::try_from(figures.polls).unwrap_or(u32::MAX),
                step_site: None,
                waiting_on: figures.awaiting,
                named: None,
            })
        });
    }
}

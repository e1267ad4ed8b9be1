//! The header of one inspected task: written by its polls on the reactor thread, read
//! by anyone (the stall scan, the hub listing tasks from another thread).
//!
//! Every field is a relaxed atomic with one writer (the reactor thread), so a poll only
//! stores; readers may see figures a poll apart, never torn ones. The cell is also the
//! task's waker ([`std::task::Wake`]): a wake counts, then wakes the executor's waker,
//! and how many wakers exist is the `Arc`'s strong count, which is how a task nobody
//! can wake is noticed.

use std::sync::atomic::{AtomicU8, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Wake, Waker};
use std::time::{Duration, Instant};

use crate::defer::{DeferredId, Site};
use crate::observe::ConnectionId;

/// What started a task; serialised as [`as_str`](Self::as_str).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum TaskKind {
    /// [`Reactor::spawn`](crate::Reactor::spawn) or
    /// [`Reactor::spawn_labeled`](crate::Reactor::spawn_labeled).
    Spawned,
    /// A connection's own task: a listener's or a connector's.
    Connection,
    /// [`Deferred::from_future`](crate::defer::Deferred::from_future): the task fires a
    /// Deferred.
    FromFuture,
}

impl TaskKind {
    /// The label, as serialised.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Spawned => "spawned",
            Self::Connection => "connection",
            Self::FromFuture => "from_future",
        }
    }
}

/// Where a task is; serialised as [`as_str`](Self::as_str).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum TaskState {
    /// Pending between polls.
    Idle,
    /// Being polled now.
    Running,
    /// Returned, or dropped before it did.
    Done,
}

impl TaskState {
    /// The label, as serialised.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Idle => "idle",
            Self::Running => "running",
            Self::Done => "done",
        }
    }

    fn from_u8(v: u8) -> Self {
        match v {
            RUNNING => Self::Running,
            DONE => Self::Done,
            _ => Self::Idle,
        }
    }
}

const IDLE: u8 = 0;
const RUNNING: u8 = 1;
const DONE: u8 = 2;

/// Detector flags: each detector reports a task once.
pub(crate) const SLOW_REPORTED: u8 = 1;
pub(crate) const STALL_REPORTED: u8 = 2;
pub(crate) const LEAK_REPORTED: u8 = 4;
/// Its last poll ended waiting for its own peer's input.
pub(crate) const ON_PEER: u8 = 8;
/// A poll was given a second executor waker, kept in `other`.
const OTHER: u8 = 16;
/// It took the first connection it opened as its own (see `instrument::end_poll`).
pub(crate) const OPENED: u8 = 32;

/// A task's figures at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskFigures {
    /// Idle, running or done.
    pub state: TaskState,
    /// Polls so far.
    pub polls: u64,
    /// Time spent in its polls.
    pub busy: Duration,
    /// Time spent pending between polls (and since the last one, while idle).
    pub idle: Duration,
    /// Time since it was last woken (since its last poll began).
    pub since_wake: Duration,
    /// Time since it was spawned.
    pub age: Duration,
    /// The connection it serves: the one whose callback or task spawned it, or else the
    /// first it opened (a connection's own task: the one it opened).
    pub connection: Option<ConnectionId>,
    /// The Deferred its last poll awaited and left it pending on.
    pub awaiting: Option<DeferredId>,
    /// Whether its last poll left it waiting for its own peer's input.
    pub waiting_on_peer: bool,
    /// Times it was woken.
    pub wakes: u64,
}

/// The header of one inspected task; see the module docs.
#[derive(Debug)]
pub struct TaskCell {
    id: DeferredId,
    label: Option<&'static str>,
    site: Site,
    kind: TaskKind,
    /// The Deferred a `from_future` task fires.
    resolves: Option<DeferredId>,
    /// The reactor clock's zero as an `Instant`, so another thread can tell the time on
    /// the clock the figures are kept in.
    base: Instant,
    /// When it was spawned, nanoseconds on the thread's clock.
    created_ns: u64,
    connection: AtomicU64,
    awaiting: AtomicU64,
    state: AtomicU8,
    pub(crate) flags: AtomicU8,
    polls: AtomicU64,
    busy_ns: AtomicU64,
    idle_ns: AtomicU64,
    last_start_ns: AtomicU64,
    last_end_ns: AtomicU64,
    wakes: AtomicU64,
    /// `wakes` as the last poll began: a wake since then means it is about to run.
    wakes_seen: AtomicU64,
    /// The executor's waker, taken at the first poll; an executor's waker for a task does
    /// not change, so later polls only compare.
    waker: OnceLock<Waker>,
    /// A different waker a later poll was given (another executor); rare.
    other: Mutex<Option<Waker>>,
}

pub(crate) fn ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl TaskCell {
    pub(crate) fn new(
        id: DeferredId,
        label: Option<&'static str>,
        site: Site,
        kind: TaskKind,
        resolves: Option<DeferredId>,
        now: Duration,
    ) -> Self {
        let created_ns = ns(now);
        Self {
            id,
            label,
            site,
            kind,
            resolves,
            base: Instant::now().checked_sub(now).unwrap_or_else(Instant::now),
            created_ns,
            connection: AtomicU64::new(0),
            awaiting: AtomicU64::new(0),
            state: AtomicU8::new(IDLE),
            flags: AtomicU8::new(0),
            polls: AtomicU64::new(0),
            busy_ns: AtomicU64::new(0),
            idle_ns: AtomicU64::new(0),
            last_start_ns: AtomicU64::new(created_ns),
            last_end_ns: AtomicU64::new(created_ns),
            wakes: AtomicU64::new(0),
            wakes_seen: AtomicU64::new(0),
            waker: OnceLock::new(),
            other: Mutex::new(None),
        }
    }

    /// Its id, from the sequence Deferreds and connections share.
    pub fn id(&self) -> DeferredId {
        self.id
    }

    /// Its label, if it was given one.
    pub fn label(&self) -> Option<&'static str> {
        self.label
    }

    /// The line that spawned it.
    pub fn site(&self) -> Site {
        self.site
    }

    /// What started it.
    pub fn kind(&self) -> TaskKind {
        self.kind
    }

    /// The Deferred it fires, for a `from_future` task.
    pub fn resolves(&self) -> Option<DeferredId> {
        self.resolves
    }

    /// Its figures now, readable from any thread.
    pub fn figures(&self) -> TaskFigures {
        self.figures_at(ns(self.base.elapsed()))
    }

    /// Its figures at `now_ns` on the reactor's clock.
    pub(crate) fn figures_at(&self, now_ns: u64) -> TaskFigures {
        let state = TaskState::from_u8(self.state.load(Relaxed));
        let last_end = self.last_end_ns.load(Relaxed);
        let mut idle = self.idle_ns.load(Relaxed);
        if state == TaskState::Idle {
            idle = idle.saturating_add(now_ns.saturating_sub(last_end));
        }
        let id = |v: u64| (v != 0).then_some(v);
        TaskFigures {
            state,
            polls: self.polls.load(Relaxed),
            busy: Duration::from_nanos(self.busy_ns.load(Relaxed)),
            idle: Duration::from_nanos(idle),
            since_wake: Duration::from_nanos(
                now_ns.saturating_sub(self.last_start_ns.load(Relaxed)),
            ),
            age: Duration::from_nanos(now_ns.saturating_sub(self.created_ns)),
            connection: id(self.connection.load(Relaxed)).map(ConnectionId),
            awaiting: id(self.awaiting.load(Relaxed)).map(DeferredId),
            waiting_on_peer: self.has(ON_PEER),
            wakes: self.wakes.load(Relaxed),
        }
    }

    pub(crate) fn connection(&self) -> Option<ConnectionId> {
        let c = self.connection.load(Relaxed);
        (c != 0).then_some(ConnectionId(c))
    }

    pub(crate) fn set_connection(&self, id: ConnectionId) {
        self.connection.store(id.0, Relaxed);
    }

    pub(crate) fn has(&self, flag: u8) -> bool {
        self.flags.load(Relaxed) & flag != 0
    }

    /// Sets `flag`; `false` if it was set already.
    pub(crate) fn mark(&self, flag: u8) -> bool {
        self.flags.fetch_or(flag, Relaxed) & flag == 0
    }

    pub(crate) fn wakes(&self) -> u64 {
        self.wakes.load(Relaxed)
    }

    /// Whether nothing woke it since its last poll began. A task not polled yet is not:
    /// its executor has it queued to run, and holds no waker for that.
    pub(crate) fn unwoken(&self) -> bool {
        self.polls.load(Relaxed) > 0 && self.wakes.load(Relaxed) == self.wakes_seen.load(Relaxed)
    }

    pub(crate) fn is_done(&self) -> bool {
        self.state.load(Relaxed) == DONE
    }

    pub(crate) fn is_idle(&self) -> bool {
        self.state.load(Relaxed) == IDLE
    }

    pub(crate) fn last_end_ns(&self) -> u64 {
        self.last_end_ns.load(Relaxed)
    }

    pub(crate) fn created_ns(&self) -> u64 {
        self.created_ns
    }

    /// Keeps the executor's waker to pass wakes on to.
    #[inline]
    pub(crate) fn remember_waker(&self, waker: &Waker) {
        match self.waker.get() {
            Some(known) if known.will_wake(waker) => {}
            Some(_) => {
                self.mark(OTHER);
                let mut other = self.other.lock().unwrap_or_else(|p| p.into_inner());
                if !other.as_ref().is_some_and(|w| w.will_wake(waker)) {
                    *other = Some(waker.clone());
                }
            }
            None => {
                let _ = self.waker.set(waker.clone());
            }
        }
    }

    /// A poll begins at `start_ns`: the time since the last one ended was idle.
    #[inline]
    pub(crate) fn begin(&self, start_ns: u64) {
        let idle = start_ns.saturating_sub(self.last_end_ns.load(Relaxed));
        self.idle_ns
            .store(self.idle_ns.load(Relaxed).saturating_add(idle), Relaxed);
        self.last_start_ns.store(start_ns, Relaxed);
        self.state.store(RUNNING, Relaxed);
    }

    /// A poll that began at `start_ns` ended at `end_ns`; single writer, so plain stores.
    #[inline]
    pub(crate) fn end(
        &self,
        start_ns: u64,
        end_ns: u64,
        done: bool,
        wakes_at_start: u64,
        awaiting: Option<DeferredId>,
        on_peer: bool,
    ) {
        self.wakes_seen.store(wakes_at_start, Relaxed);
        self.polls
            .store(self.polls.load(Relaxed).wrapping_add(1), Relaxed);
        let took = end_ns.saturating_sub(start_ns);
        self.busy_ns
            .store(self.busy_ns.load(Relaxed).saturating_add(took), Relaxed);
        self.last_end_ns.store(end_ns, Relaxed);
        self.awaiting.store(awaiting.map_or(0, |d| d.0), Relaxed);
        let flags = self.flags.load(Relaxed);
        let flags = if on_peer {
            flags | ON_PEER
        } else {
            flags & !ON_PEER
        };
        self.flags.store(flags, Relaxed);
        self.state.store(if done { DONE } else { IDLE }, Relaxed);
    }

    /// Dropped (or returned): done, whatever it was doing.
    pub(crate) fn finish(&self) {
        self.state.store(DONE, Relaxed);
    }

    pub(crate) fn waker_holders(self: &Arc<Self>) -> usize {
        Arc::strong_count(self)
    }
}

impl Wake for TaskCell {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.wakes.fetch_add(1, Relaxed);
        if let Some(waker) = self.waker.get() {
            waker.wake_by_ref();
        }
        if self.has(OTHER) {
            let other = self.other.lock().ok().and_then(|o| o.clone());
            if let Some(other) = other {
                other.wake();
            }
        }
    }
}

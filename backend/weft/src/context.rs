//! What weft keeps per thread (the reactor's thread): one struct, one thread-local.
//!
//! The reactor, the observer, the clock, the detector thresholds, the Deferred and task
//! registries and the connection, Deferred and task running now all live on the reactor's thread; each
//! module reaches its part through [`with`], so there is one place that says what a
//! thread carries and how it starts out.

use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::defer::{DeferredId, Registry, StallConfig, Unannounced, WaitTable};
use crate::observe::{ConnectionId, Observer};
use crate::reactor::{Inner, ReactorConfig};
use crate::tasks::{PollClock, Scope, TaskSlots};
use crate::time::Clock;

/// The state of one thread; every field starts empty or at its default.
pub(crate) struct Context {
    /// The thread's reactor; weak so the last `Reactor` clone still ends it.
    pub(crate) reactor: RefCell<Weak<Inner>>,
    /// The observer every event goes to. The `Rc` layer makes the per-event clone (which
    /// lets an observer replace itself mid-call) a plain increment instead of two atomic
    /// operations.
    pub(crate) observer: RefCell<Option<Rc<Arc<dyn Observer>>>>,
    /// The clock `call_later` uses (the reactor's, or a fake one in tests).
    pub(crate) clock: RefCell<Option<Clock>>,
    /// `clock`'s time as task polls read it: from the process stopwatch, anchored on it.
    pub(crate) poll_clock: PollClock,
    /// The connection whose callback is running, so a Deferred created inside knows it.
    pub(crate) connection: Cell<Option<ConnectionId>>,
    /// The Deferred whose step is running, so a Deferred created inside knows its parent.
    pub(crate) running_deferred: Cell<Option<DeferredId>>,
    /// A callback running longer than this is reported as slow.
    pub(crate) slow_callback: Cell<Duration>,

    /// When a pending or paused Deferred is reported as stalled.
    pub(crate) stall: RefCell<StallConfig>,
    /// Pending Deferreds, listable at any time.
    pub(crate) deferreds: RefCell<Registry>,
    /// Deferreds created during the running task poll and not reported yet.
    pub(crate) unannounced: Unannounced,
    /// What the task being polled now was told during its poll.
    pub(crate) task: Scope,
    /// Live tasks, listable and scanned for stalls at any time.
    pub(crate) tasks: RefCell<TaskSlots>,
    /// Locks, semaphores and queues someone waits on: the wait-for graph.
    pub(crate) waits: RefCell<WaitTable>,
    /// Time origin when no clock is installed (a Deferred used outside any reactor); set
    /// on first use.
    pub(crate) origin: Cell<Option<Instant>>,
    /// The read buffer every connection of the thread shares, so an idle connection holds
    /// none; `None` while a read has it.
    pub(crate) read_buf: RefCell<Option<Box<[u8]>>>,
    /// The index of this thread's reactor in its pool (0 outside one).
    pub(crate) reactor_index: Cell<u16>,
    /// The pool's shared listening addresses while this thread's reactor is one of
    /// several: its listeners bind with `SO_REUSEPORT`.
    pub(crate) port_group: RefCell<Option<Arc<crate::net::group::PortGroup>>>,
    /// The reactor profile's table and open span (`reactor/profile.rs`).
    pub(crate) profile: crate::reactor::profile::Local,
}

impl Context {
    const fn new() -> Self {
        Self {
            reactor: RefCell::new(Weak::new()),
            observer: RefCell::new(None),
            clock: RefCell::new(None),
            poll_clock: PollClock::new(),
            connection: Cell::new(None),
            running_deferred: Cell::new(None),
            slow_callback: Cell::new(ReactorConfig::DEFAULT_SLOW_CALLBACK),
            stall: RefCell::new(StallConfig::new(ReactorConfig::DEFAULT_STALL_AFTER)),
            deferreds: RefCell::new(Registry::new()),
            unannounced: Unannounced::new(),
            task: Scope::new(),
            tasks: RefCell::new(TaskSlots::new()),
            waits: RefCell::new(WaitTable::new()),
            origin: Cell::new(None),
            read_buf: RefCell::new(None),
            reactor_index: Cell::new(0),
            port_group: RefCell::new(None),
            profile: crate::reactor::profile::Local::new(),
        }
    }
}

thread_local! {
    static CONTEXT: Context = const { Context::new() };
}

/// Runs `f` with this thread's context.
///
/// # Panics
/// When called while the thread is exiting and the context is already gone; code that may
/// run then (a drop) uses [`try_with`].
#[inline]
pub(crate) fn with<R>(f: impl FnOnce(&Context) -> R) -> R {
    CONTEXT.with(f)
}

/// Runs `f` with this thread's context, or returns `None` once the thread is exiting.
#[inline]
pub(crate) fn try_with<R>(f: impl FnOnce(&Context) -> R) -> Option<R> {
    CONTEXT.try_with(f).ok()
}

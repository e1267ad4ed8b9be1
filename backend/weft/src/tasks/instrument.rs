//! The wrapper every task runs in, and the per-poll path: two stopwatch reads, a few
//! relaxed stores into the task's own cell, no lock and no allocation.

use std::cell::Cell;
use std::future::{Future, poll_fn};
use std::panic::Location;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, SystemTime};

use super::cell::{OPENED, TaskCell, TaskKind};
use super::detect;
use super::events::{TaskEnded, TaskSpawned};
use crate::defer::{DeferredEvent, DeferredId, Site};
use crate::observe::{self, ConnectionId};
use crate::reactor::profile;

/// What the code inside a poll tells its task, kept per thread while the poll runs.
#[derive(Default)]
pub(crate) struct Scope {
    /// The task being polled.
    running: Cell<Option<DeferredId>>,
    /// The last pending Deferred the poll awaited.
    awaiting: Cell<Option<DeferredId>>,
    /// The first connection the poll opened.
    connection: Cell<Option<ConnectionId>>,
    /// Whether the poll ended waiting for its own peer's input.
    on_peer: Cell<bool>,
    /// Whether a callback inside the poll was reported slow already.
    slow_inside: Cell<bool>,
}

/// What a poll left in the scope, and what was there before it.
#[derive(Clone, Copy)]
struct Saved {
    running: Option<DeferredId>,
    awaiting: Option<DeferredId>,
    connection: Option<ConnectionId>,
    on_peer: bool,
    slow_inside: bool,
}

impl Scope {
    pub(crate) const fn new() -> Self {
        Self {
            running: Cell::new(None),
            awaiting: Cell::new(None),
            connection: Cell::new(None),
            on_peer: Cell::new(false),
            slow_inside: Cell::new(false),
        }
    }

    /// Whether a task is being polled now.
    #[inline]
    pub(crate) fn polling(&self) -> bool {
        self.running.get().is_some()
    }

    fn swap(&self, to: Saved) -> Saved {
        Saved {
            running: self.running.replace(to.running),
            awaiting: self.awaiting.replace(to.awaiting),
            connection: self.connection.replace(to.connection),
            on_peer: self.on_peer.replace(to.on_peer),
            slow_inside: self.slow_inside.replace(to.slow_inside),
        }
    }
}

/// A pending Deferred the running task awaits (called when a Deferred's poll is pending).
#[inline]
pub(crate) fn note_awaiting(id: DeferredId) {
    crate::context::with(|cx| {
        if cx.task.polling() {
            cx.task.awaiting.set(Some(id));
        }
    });
}

/// A connection the running task opened: its first becomes the task's connection.
pub(crate) fn note_connection(id: ConnectionId) {
    crate::context::with(|cx| {
        if cx.task.running.get().is_some() && cx.task.connection.get().is_none() {
            cx.task.connection.set(Some(id));
        }
    });
}

thread_local! {
    /// The time, in nanoseconds, of the callbacks (Deferred steps, protocol methods,
    /// delayed calls) reported slow on this thread so far, each for its own time: a
    /// callback that ran one is reported for what it blocked besides, not again for the
    /// same blocking. A thread-local of its own, read at every protocol callback's start:
    /// a plain word there, the cheapest read.
    static SLOW_REPORTED_NS: Cell<u64> = const { Cell::new(0) };
}

/// A callback the running task's poll ran (a protocol method, a delayed call, a Deferred
/// step) was reported slow for `own` of its time (besides what callbacks it ran were
/// reported for): the poll is not reported again for the same blocking, and a callback
/// that ran it counts that time as reported ([`slow_reported_total`]).
pub(crate) fn note_slow_inside(own: std::time::Duration) {
    crate::context::with(|cx| cx.task.slow_inside.set(true));
    let own = u64::try_from(own.as_nanos()).unwrap_or(u64::MAX);
    SLOW_REPORTED_NS.with(|total| total.set(total.get().saturating_add(own)));
}

/// The time of the callbacks reported slow on this thread so far, each for its own time,
/// in nanoseconds: read at a callback's start and, once it turned out slow, at its end,
/// it says how much of its time was reported already by callbacks it ran.
#[inline]
pub(crate) fn slow_reported_total() -> u64 {
    SLOW_REPORTED_NS.with(Cell::get)
}

/// How much of `took`, a callback's time that began when the total stood at `before`, is
/// its own: not reported already by callbacks it ran.
pub(crate) fn unreported(took: std::time::Duration, before: u64) -> std::time::Duration {
    let inside = slow_reported_total().saturating_sub(before);
    took.saturating_sub(std::time::Duration::from_nanos(inside))
}

/// Says that the running task, pending now, waits on its peer (its input, its reading
/// of what was sent, its window): idle there for any time is not a stall. weft's own
/// streams and transports say it when they wait; call it from a task whose waiting they
/// do not see, such as one that waits on a channel a peer's reading drains.
#[inline]
pub fn waiting_on_peer() {
    crate::context::with(|cx| cx.task.on_peer.set(true));
}

/// Now on the thread's clock (a fake clock in tests), in nanoseconds.
#[inline]
fn now_ns() -> u64 {
    crate::context::with(|cx| cx.poll_clock.now_ns(&cx.clock))
}

/// Holds the task's cell for its life; ends it however the task goes (returns, is
/// cancelled, or dropped unpolled at shutdown).
struct Guard {
    cell: Arc<TaskCell>,
    slot: usize,
}

impl Drop for Guard {
    fn drop(&mut self) {
        let completed = self.cell.is_done();
        self.cell.finish();
        detect::unregister(self.slot);
        // `try_with` inside: a task dropped as the thread exits finds no observer.
        let _ = crate::context::try_with(|_| {
            detect::emit(|| {
                DeferredEvent::TaskEnded(TaskEnded {
                    id: self.cell.id(),
                    figures: self.cell.figures_at(now_ns()),
                    completed,
                })
            });
        });
    }
}

/// Wraps `future` as an inspected task spawned at `site`; see the module docs.
pub(crate) fn instrument<F: Future>(
    future: F,
    kind: TaskKind,
    label: Option<&'static str>,
    site: &'static Location<'static>,
    resolves: Option<DeferredId>,
) -> Instrumented<F> {
    let now = Duration::from_nanos(now_ns());
    let cell = Arc::new(TaskCell::new(
        DeferredId(observe::next_id()),
        label,
        Site(site),
        kind,
        resolves,
        now,
    ));
    let (connection, parent) = crate::context::with(|cx| {
        (
            cx.connection.get(),
            cx.running_deferred.get().or(cx.task.running.get()),
        )
    });
    if let Some(c) = connection {
        cell.set_connection(c);
    }
    let slot = detect::register(&cell);
    detect::emit(|| {
        DeferredEvent::TaskSpawned(TaskSpawned {
            id: cell.id(),
            cell: Arc::downgrade(&cell),
            label,
            site: Site(site),
            kind,
            connection,
            parent,
            resolves,
            at: SystemTime::now(),
        })
    });
    let waker = Waker::from(cell.clone());
    Instrumented {
        future,
        guard: Guard { cell, slot },
        waker,
    }
}

pin_project_lite::pin_project! {
    /// A task's future with its inspection, polled in place: wrapping adds its guard and
    /// waker (three words) to the task, not a second copy of the future.
    pub(crate) struct Instrumented<F> {
        #[pin]
        future: F,
        guard: Guard,
        waker: Waker,
    }
}

impl<F: Future> Future for Instrumented<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        poll_task(&this.guard.cell, this.waker, this.future, cx)
    }
}

/// One poll of a task.
///
/// Every future weft runs goes through here on every poll. The generic part is only the
/// future's own poll between two calls shared by every task, so the bookkeeping is
/// compiled once rather than into each task's future; it reaches the thread's context
/// (the reactor profile is a field of it) once on each side and reads the stopwatch
/// (`clock.rs`).
#[inline]
fn poll_task<F: Future>(
    cell: &Arc<TaskCell>,
    waker: &Waker,
    future: Pin<&mut F>,
    cx: &mut Context<'_>,
) -> Poll<F::Output> {
    let polling = begin_poll(cell, cx.waker());
    let out = future.poll(&mut Context::from_waker(waker));
    end_poll(cell, polling, out.is_ready());
    out
}

/// What a poll's start hands to its end.
struct Polling {
    outer: Saved,
    /// The current connection before the poll: a task that belongs to a connection
    /// makes it the current one while it runs, so what it spawns or creates (a connect's
    /// own task, a Deferred) belongs to that connection, and so to its service, too.
    outer_connection: Option<ConnectionId>,
    start: u64,
    wakes: u64,
    span: profile::Span,
}

#[inline(never)]
fn begin_poll(cell: &Arc<TaskCell>, executor: &Waker) -> Polling {
    cell.remember_waker(executor);
    crate::context::with(|c| {
        let outer = c.task.swap(Saved {
            running: Some(cell.id()),
            awaiting: None,
            connection: None,
            on_peer: false,
            slow_inside: false,
        });
        let outer_connection = match cell.connection() {
            Some(own) => c.connection.replace(Some(own)),
            None => c.connection.get(),
        };
        let start = c.poll_clock.now_ns(&c.clock);
        cell.begin(start);
        Polling {
            outer,
            outer_connection,
            start,
            wakes: cell.wakes(),
            span: profile::Thread(&c.profile).enter(),
        }
    })
}

#[inline(never)]
fn end_poll(cell: &Arc<TaskCell>, polling: Polling, ready: bool) {
    let Polling {
        outer,
        outer_connection,
        start,
        wakes,
        span,
    } = polling;
    crate::context::with(|c| {
        let end = c.poll_clock.now_ns(&c.clock);
        let inner = c.task.swap(outer);
        c.connection.set(outer_connection);
        cell.end(start, end, ready, wakes, inner.awaiting, inner.on_peer);
        // The first connection a task opens is its own if it has none, or if it is a
        // connection's own task (a connector's, spawned for the connection it asks for):
        // it runs that connection from then on. Any other task stays with the connection
        // it was spawned for (an HTTP/2 stream that opens an upstream connection for the
        // pool is still its client's).
        if let Some(conn) = inner.connection
            && !cell.has(OPENED)
            && (cell.connection().is_none() || cell.kind() == TaskKind::Connection)
        {
            cell.mark(OPENED);
            cell.set_connection(conn);
        }
        let took = end.saturating_sub(start);
        let site = profile::Site::Line(cell.site().0);
        profile::Thread(&c.profile).exit(span, site, profile::SiteKind::Poll, took);
        if !inner.slow_inside {
            polled(cell, Duration::from_nanos(took), c.slow_callback.get());
        }
        if !ready && cell.wakes() == wakes {
            detect::check_leaked(cell, 0);
        }
        c.unannounced.hold_pending();
    });
}

/// What a poll's duration says to the slow detector (the reactor profile has it from the
/// poll's span, by spawn site).
#[inline]
fn polled(cell: &TaskCell, took: Duration, threshold: Duration) {
    if took >= threshold {
        detect::report_slow(cell, took, threshold);
    }
}

/// Runs `future` noting, whenever it is pending, that its task waits on events from
/// outside (a listener's peers, a signal, a request from another thread): idle there for
/// any time is not a stall. Wrap a task's whole body in it when that is all it does.
pub async fn awaiting_outside_events<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    poll_fn(|cx| {
        let out = future.as_mut().poll(cx);
        if out.is_pending() {
            waiting_on_peer();
        }
        out
    })
    .await
}

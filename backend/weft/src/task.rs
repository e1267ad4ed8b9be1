//! Scheduling that produces Deferreds (`twisted.internet.task` and `threads`):
//! [`LoopingCall`], [`defer_later`], [`defer_to_thread`]; and [`drop_in_background`],
//! which frees a large value off the reactor thread.
//!
//! All of them schedule on a [`Clock`], so tests drive them with a fake
//! clock and never sleep.
//!
//! ```
//! use std::{cell::Cell, rc::Rc, time::Duration};
//! use weft::defer::Failure;
//! use weft::task::LoopingCall;
//! use weft::testing::Clock;
//!
//! let clock = Clock::fake();
//! let _installed = clock.install();
//! let ticks = Rc::new(Cell::new(0));
//! let t = ticks.clone();
//! let lc = LoopingCall::new(move || {
//!     t.set(t.get() + 1);
//!     Ok::<_, Failure>(())
//! });
//! let mut done = lc.start(Duration::from_secs(1), true).unwrap();
//! clock.pump([Duration::from_secs(1); 3]);
//! assert_eq!(ticks.get(), 4);
//! lc.stop();
//! assert!(done.try_take().unwrap().is_ok());
//! ```

use std::cell::{Cell, RefCell};
use std::panic::Location;
use std::rc::{Rc, Weak};
use std::time::Duration;

use crate::defer::{CallbackResult, Deferred, Failure, PanicError, Resolver, maybe_deferred_at};
use crate::time::{Clock, ClockInner, DelayedCall, current_clock};

/// Why a [`LoopingCall`] could not start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LoopingCallError {
    /// It is running already, or its last run has not finished; `stop` it and wait.
    #[error("the LoopingCall is already running")]
    AlreadyRunning,
}

type Func = Box<dyn FnMut() -> Deferred<()>>;

struct Inner {
    /// Called once per tick; a `RefCell` because the loop is shared through `Rc` and the function
    /// is `FnMut`.
    func: RefCell<Func>,
    /// The clock the loop runs on; chosen at `start` (the thread's current one) unless `with_clock`
    /// gave one. Not held: a running loop's next call holds the loop, and the clock its calls.
    clock: RefCell<Weak<ClockInner>>,
    /// Cleared by `stop`; a run in flight checks it when it ends to decide whether to schedule the
    /// next.
    running: Cell<bool>,
    interval: Cell<Duration>,
    /// The grid's origin: runs are due at `started_at + k × interval`, so late runs are skipped,
    /// not drifted.
    started_at: Cell<Duration>,
    /// The scheduled next run, kept so `stop` can cancel it.
    call: RefCell<Option<DelayedCall>>,
    /// Fires the Deferred `start` returned, once the loop stops or fails.
    done: RefCell<Option<Resolver<()>>>,
    /// A run (or the Deferred it returned) has not finished: `stop` defers firing `done` until it
    /// does, and `start` refuses meanwhile.
    in_flight: Cell<bool>,
    /// How many runs started, as `calls()` reports.
    calls: Cell<u64>,
    /// Where the loop was made: the creation site of the Deferred `start` returns.
    site: &'static Location<'static>,
    /// The grid point of the last run (`None` before a first run at once; `Some(0)`, the
    /// start, before one an interval later, and after `reset`), and how
    /// many points the run now going passed since the one before, as
    /// [`LoopingCall::with_count`]'s function is told.
    last_point: Cell<Option<u128>>,
    intervals: Rc<Cell<u64>>,
}

/// Calls a function every `interval`, on a grid (Twisted's `task.LoopingCall`).
///
/// Runs are due at `start + k × interval`; if a run (or the Deferred it returned) ends
/// after one or more grid points went by, those runs are skipped, not made up. A
/// function returning a Deferred is not called again until that Deferred fires. `start`
/// returns a Deferred that fires when `stop` is called, or fails with the function's
/// failure (which also stops the loop). As in Twisted, a started loop runs on with
/// every handle to it dropped (its next call holds it); keep one to `stop` it.
#[derive(Clone)]
pub struct LoopingCall {
    inner: Rc<Inner>,
}

impl std::fmt::Debug for LoopingCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoopingCall")
            .field("running", &self.running())
            .field("interval", &self.inner.interval.get())
            .field("calls", &self.calls())
            .finish()
    }
}

impl LoopingCall {
    /// A loop over `f`, which returns `Ok(())`, a failure, or a `Deferred<()>`.
    #[track_caller]
    pub fn new<R: CallbackResult<()>>(f: impl FnMut() -> R + 'static) -> Self {
        Self::made_at(Location::caller(), Rc::default(), f)
    }

    /// A loop over `f`, told at each run how many intervals went by since the run before
    /// (1, or more when runs were skipped because one ran late), the first counted from
    /// `start` (1 for a run at once; a first run due an interval after `start` that ran
    /// late is told how many went by): Twisted's `LoopingCall.withCount`, for a function
    /// that must make up for the runs it missed.
    #[track_caller]
    pub fn with_count<R: CallbackResult<()>>(mut f: impl FnMut(u64) -> R + 'static) -> Self {
        let intervals: Rc<Cell<u64>> = Rc::default();
        let told = intervals.clone();
        Self::made_at(Location::caller(), intervals, move || f(told.get()))
    }

    fn made_at<R: CallbackResult<()>>(
        site: &'static Location<'static>,
        intervals: Rc<Cell<u64>>,
        mut f: impl FnMut() -> R + 'static,
    ) -> Self {
        Self {
            inner: Rc::new(Inner {
                // Each run's Deferred is said to be made where the loop was.
                func: RefCell::new(Box::new(move || maybe_deferred_at(site, &mut f))),
                clock: RefCell::new(Weak::new()),
                running: Cell::new(false),
                interval: Cell::new(Duration::ZERO),
                started_at: Cell::new(Duration::ZERO),
                call: RefCell::new(None),
                done: RefCell::new(None),
                in_flight: Cell::new(false),
                calls: Cell::new(0),
                site,
                last_point: Cell::new(None),
                intervals,
            }),
        }
    }

    /// Uses `clock` instead of the thread's clock at `start`.
    pub fn with_clock(self, clock: Clock) -> Self {
        *self.inner.clock.borrow_mut() = clock.downgrade();
        self
    }

    /// Whether it is running.
    pub fn running(&self) -> bool {
        self.inner.running.get()
    }

    /// How many times the function has been called.
    pub fn calls(&self) -> u64 {
        self.inner.calls.get()
    }

    /// Starts calling the function every `interval`, the first time at once if `now`.
    ///
    /// An interval of zero calls it as often as it can, as Twisted's does: on the
    /// reactor's clock once a turn (a call made while the clock runs its due calls waits
    /// for the next pass, after the reactor's other tasks and its I/O had their turn); on
    /// a fake clock, again and again within one `advance`, until the function stops the
    /// loop, as Twisted's `task.Clock` runs it. With `with_count` each run is told 1.
    ///
    /// # Panics
    /// When no clock was given and none is installed on this thread.
    pub fn start(&self, interval: Duration, now: bool) -> Result<Deferred<()>, LoopingCallError> {
        // A run still in flight after `stop` belongs to the old loop: starting again
        // before it ends would orphan that loop's Deferred and schedule twice.
        if self.running() || self.inner.in_flight.get() {
            return Err(LoopingCallError::AlreadyRunning);
        }
        let clock = Clock::upgrade(&self.inner.clock.borrow()).unwrap_or_else(current_clock);
        *self.inner.clock.borrow_mut() = clock.downgrade();
        let (resolver, done) = Deferred::new_at(self.inner.site, Some("LoopingCall"), None);
        done.expect_long_wait();
        *self.inner.done.borrow_mut() = Some(resolver);
        self.inner.running.set(true);
        self.inner.interval.set(interval);
        self.inner.started_at.set(clock.now());
        // A run at once is the first point's; otherwise the start is, as in Twisted.
        self.inner.last_point.set((!now).then_some(0));
        if now {
            tick(&self.inner);
        } else {
            schedule_from(&self.inner, &clock, clock.now());
        }
        Ok(done)
    }

    /// Skips the run now due and starts the grid again from now: the next run is one
    /// interval away (Twisted's `LoopingCall.reset`). A run in progress finishes first; the
    /// next is then scheduled on the new grid. Nothing happens to a loop not running.
    pub fn reset(&self) {
        if !self.running() {
            return;
        }
        let Some(clock) = Clock::upgrade(&self.inner.clock.borrow()) else {
            return;
        };
        self.inner.started_at.set(clock.now());
        self.inner.last_point.set(Some(0));
        let pending = self.inner.call.borrow_mut().take();
        if let Some(call) = pending {
            let _ = call.cancel();
            schedule_from(&self.inner, &clock, clock.now());
        }
    }

    /// Stops the loop. Its Deferred fires now, or when a run in progress finishes.
    pub fn stop(&self) {
        if !self.inner.running.replace(false) {
            return;
        }
        if let Some(call) = self.inner.call.borrow_mut().take() {
            let _ = call.cancel();
        }
        if !self.inner.in_flight.get() {
            finish(&self.inner, Ok(()));
        }
    }
}

fn finish(inner: &Inner, result: Result<(), Failure>) {
    inner.running.set(false);
    let done = inner.done.borrow_mut().take();
    if let Some(done) = done {
        done.resolve(result);
    }
}

fn tick(inner: &Rc<Inner>) {
    inner.call.borrow_mut().take();
    inner.calls.set(inner.calls.get() + 1);
    if let Some(clock) = Clock::upgrade(&inner.clock.borrow()) {
        let since = clock
            .now()
            .saturating_sub(inner.started_at.get())
            .as_nanos();
        // With no interval there is no grid to have skipped points of: always 1.
        let interval = inner.interval.get().as_nanos();
        let point = since.checked_div(interval).unwrap_or(0);
        let passed = inner
            .last_point
            .replace(Some(point))
            .map_or(1, |last| point.saturating_sub(last).max(1));
        inner
            .intervals
            .set(u64::try_from(passed).unwrap_or(u64::MAX));
    }
    inner.in_flight.set(true);
    let ran = (inner.func.borrow_mut())();
    // The run holds the loop, as its next call does: a loop whose handles were all
    // dropped runs on until stopped or failed (Twisted's reactor holds its calls).
    let inner = inner.clone();
    let _attached = ran.add_both(move |result| {
        inner.in_flight.set(false);
        match result {
            Err(failure) => finish(&inner, Err(failure)),
            Ok(()) if inner.running.get() => {
                // A loop whose clock is gone (its reactor stopped) has nothing to run on.
                if let Some(clock) = Clock::upgrade(&inner.clock.borrow()) {
                    schedule_from(&inner, &clock, clock.now());
                }
            }
            Ok(()) => finish(&inner, Ok(())),
        }
        Ok::<(), Failure>(())
    });
}

/// Schedules the next run at the first grid point after `now`.
fn schedule_from(inner: &Rc<Inner>, clock: &Clock, now: Duration) {
    let interval = inner.interval.get().as_nanos();
    let running_for = now.saturating_sub(inner.started_at.get()).as_nanos();
    let until_next = match interval {
        0 => 0,
        _ => interval - running_for % interval,
    };
    let delay = Duration::from_nanos(u64::try_from(until_next).unwrap_or(u64::MAX));
    // Held until it runs or `stop` cancels it, which frees it and so this hold.
    let held = inner.clone();
    let call = clock.call_later(delay, move || {
        if held.running.get() {
            tick(&held);
        }
    });
    *inner.call.borrow_mut() = Some(call);
}

/// Calls `f` after `delay` on `clock` and gives its result as a Deferred (Twisted's
/// `deferLater`). Cancelling before then cancels the call.
#[track_caller]
pub fn defer_later<U: 'static, R: CallbackResult<U>>(
    clock: &Clock,
    delay: Duration,
    f: impl FnOnce() -> R + 'static,
) -> Deferred<U> {
    let site = Location::caller();
    let slot: Rc<RefCell<Option<DelayedCall>>> = Rc::default();
    let for_cancel = slot.clone();
    let (resolver, timer) = Deferred::<()>::new_at(
        site,
        None,
        Some(Box::new(move || {
            if let Some(call) = for_cancel.borrow_mut().take() {
                let _ = call.cancel();
            }
        })),
    );
    *slot.borrow_mut() = Some(clock.call_later(delay, move || resolver.callback(())));
    timer.and_then_at(site, move |()| f())
}

/// Runs `f` on tokio's blocking pool and delivers its result on the reactor thread
/// (Twisted's `deferToThread`). Cancelling the Deferred discards the result; the
/// thread itself runs to completion.
///
/// # Panics
/// When called outside a reactor (or a tokio runtime with a `LocalSet`).
#[track_caller]
pub fn defer_to_thread<T, E, F>(f: F) -> Deferred<T>
where
    T: Send + 'static,
    E: std::error::Error + Send + 'static,
    F: FnOnce() -> Result<T, E> + Send + 'static,
{
    let site = Location::caller();
    let reactor = crate::Reactor::try_current();
    let handle = {
        let _context = reactor.as_ref().map(crate::Reactor::runtime_context);
        tokio::task::spawn_blocking(f)
    };
    Deferred::from_future_at(site, async move {
        match handle.await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(Failure::with_site(error, site)),
            Err(join) => {
                let message = match join.try_into_panic() {
                    Ok(panic) => crate::time::panic_message(&panic),
                    Err(join) => join.to_string(),
                };
                Err(Failure::with_site(PanicError { message }, site))
            }
        }
    })
}

/// Drops `value` on tokio's blocking pool (here, when no runtime runs): for a structure so
/// large that freeing it (a DNS zone of a million records) would hold the reactor thread
/// long enough to delay every connection on it.
///
/// Safe in any drop: outside a runtime (a thread's locals being destroyed, say) it drops
/// `value` where it is.
pub fn drop_in_background<T: Send + 'static>(value: T) {
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => drop(runtime.spawn_blocking(move || drop(value))),
        Err(_) => drop(value),
    }
}

/// Waits until the reactor has looked at its sockets and timers once more (tokio's
/// `yield_now`, which wakes the task only after the runtime's driver ran): work done in
/// many long steps (a zone transfer's messages, each decoded) awaits it between them, so
/// the connections sharing the thread are served in between, not after dozens of steps.
pub async fn next_turn() {
    tokio::task::yield_now().await;
}

#[cfg(test)]
mod tests;

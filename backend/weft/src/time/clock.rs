//! The timer heap shared by the reactor's real clock and the fake test clock.

use std::cell::{Cell, RefCell};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::panic::AssertUnwindSafe;
use std::rc::{Rc, Weak};
use std::time::Duration;

use super::delayed::{CallState, DelayedCall, Entry};

/// One heap slot; stale when its generation no longer matches the entry's.
struct Slot {
    time: Duration,
    /// Breaks ties between calls due at the same time: they run in the order they were scheduled.
    seq: u64,
    /// The entry's generation when this slot was pushed; `reset` and `delay` push a new slot and
    /// leave this one stale.
    generation: u64,
    entry: Rc<Entry>,
}

impl PartialEq for Slot {
    fn eq(&self, other: &Self) -> bool {
        (self.time, self.seq) == (other.time, other.seq)
    }
}
impl Eq for Slot {}
impl PartialOrd for Slot {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Slot {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.time, self.seq).cmp(&(other.time, other.seq))
    }
}

enum Source {
    /// Follows tokio's clock; `wake` tells the reactor's timer task the earliest deadline moved.
    Real {
        origin: tokio::time::Instant,
        wake: tokio::sync::Notify,
    },
    /// Moves only on `advance`.
    Fake { now: Cell<Duration> },
}

pub(crate) struct ClockInner {
    source: Source,
    /// Pending calls, earliest first; stale slots are skipped when popped instead of being removed
    /// on `reset`.
    heap: RefCell<BinaryHeap<Reverse<Slot>>>,
    /// The next tie-breaking sequence number.
    seq: Cell<u64>,
    /// Calls cancelled since the heap last let go of theirs ([`Self::cancelled`]).
    cancelled: Cell<usize>,
}

impl ClockInner {
    pub(super) fn now(&self) -> Duration {
        match &self.source {
            Source::Real { origin, .. } => origin.elapsed(),
            Source::Fake { now } => now.get(),
        }
    }

    /// A pending call was cancelled. Its slot would stay in the heap until its time (a
    /// request's 30 s timeout cancelled after 1 ms, 10,000 a second, keeps 300,000): once
    /// they are more than half of it (and over 64), the heap keeps only live slots, as
    /// Twisted's reactor rebuilds its own.
    pub(super) fn cancelled(&self) {
        let cancelled = self.cancelled.get() + 1;
        self.cancelled.set(cancelled);
        let Ok(mut heap) = self.heap.try_borrow_mut() else {
            return;
        };
        if cancelled > 64 && cancelled > heap.len() / 2 {
            heap.retain(|Reverse(slot)| {
                slot.generation == slot.entry.generation.get()
                    && slot.entry.state.get() == CallState::Pending
            });
            self.cancelled.set(0);
        }
    }

    /// Slots in the heap, live or not (for tests).
    #[cfg(test)]
    pub(super) fn slots(&self) -> usize {
        self.heap.borrow().len()
    }

    /// Moves a pending call to `time`.
    ///
    /// Moving it later (an idle timeout reset on every read) only updates the entry;
    /// its heap slot is moved when it surfaces. So a call reset a million times still
    /// holds one slot, as in Twisted.
    pub(super) fn reschedule(&self, entry: &Rc<Entry>, time: Duration) {
        if time >= entry.time.get() {
            entry.time.set(time);
            return;
        }
        entry.generation.set(entry.generation.get() + 1);
        entry.time.set(time);
        self.push(entry.clone());
    }

    fn push(&self, entry: Rc<Entry>) {
        let seq = self.seq.get();
        self.seq.set(seq + 1);
        let slot = Slot {
            time: entry.time.get(),
            seq,
            generation: entry.generation.get(),
            entry,
        };
        let earliest = {
            let mut heap = self.heap.borrow_mut();
            let time = slot.time;
            heap.push(Reverse(slot));
            heap.peek().is_some_and(|Reverse(top)| top.time == time)
        };
        if earliest && let Source::Real { wake, .. } = &self.source {
            wake.notify_one();
        }
    }

    /// The earliest live call's time, after dropping stale or cancelled slots and moving
    /// slots whose call was pushed later. A moved slot keeps its sequence number: the
    /// call was scheduled when it was, only for later (so a timer pass begun since
    /// still runs it, if it is due).
    fn settle_top(heap: &mut BinaryHeap<Reverse<Slot>>) -> Option<Duration> {
        while let Some(Reverse(top)) = heap.peek() {
            let entry = &top.entry;
            if top.generation != entry.generation.get() || entry.state.get() != CallState::Pending {
                heap.pop();
            } else if entry.time.get() > top.time {
                let Reverse(mut slot) = heap.pop().expect("peeked");
                slot.time = slot.entry.time.get();
                heap.push(Reverse(slot));
            } else {
                return Some(top.time);
            }
        }
        None
    }

    /// Pops the next call due at `now` and pushed before `before` (a sequence number).
    /// Due calls pushed since (scheduled, or moved sooner, during the pass) go to `later`
    /// for the caller to put back: they wait for the next pass, and do not keep the
    /// calls behind them from this one.
    fn pop_due(
        &self,
        now: Duration,
        before: u64,
        later: &mut Vec<Reverse<Slot>>,
    ) -> Option<(Rc<Entry>, Duration)> {
        let mut heap = self.heap.borrow_mut();
        loop {
            if Self::settle_top(&mut heap)? > now {
                return None;
            }
            let Reverse(slot) = heap.pop().expect("settled");
            if slot.seq < before {
                return Some((slot.entry, slot.time));
            }
            later.push(Reverse(slot));
        }
    }

    fn next_time(&self) -> Option<Duration> {
        Self::settle_top(&mut self.heap.borrow_mut())
    }
}

impl Drop for ClockInner {
    /// Frees the calls never run: what they hold may hold them in turn (a running
    /// `LoopingCall` holds its next call, which holds the loop).
    fn drop(&mut self) {
        let funcs: Vec<_> = self
            .heap
            .get_mut()
            .drain()
            .filter_map(|Reverse(slot)| slot.entry.func.borrow_mut().take())
            .collect();
        drop(funcs);
    }
}

/// A source of time and a schedule of calls (Twisted's `IReactorTime`).
///
/// Cloning gives another handle to the same clock. Clocks live on one thread.
#[derive(Clone)]
pub struct Clock {
    inner: Rc<ClockInner>,
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Clock")
            .field("now", &self.now())
            .field("fake", &matches!(self.inner.source, Source::Fake { .. }))
            .finish()
    }
}

impl Clock {
    /// A handle that does not keep the clock (for what its calls hold).
    pub(crate) fn downgrade(&self) -> Weak<ClockInner> {
        Rc::downgrade(&self.inner)
    }

    /// The clock `weak` names, if it is still there.
    pub(crate) fn upgrade(weak: &Weak<ClockInner>) -> Option<Self> {
        weak.upgrade().map(|inner| Self { inner })
    }

    /// A clock following tokio's time, driven by a reactor.
    pub(crate) fn real() -> Self {
        Self::with_source(Source::Real {
            origin: tokio::time::Instant::now(),
            wake: tokio::sync::Notify::new(),
        })
    }

    /// A clock that stands still until [`advance`](Self::advance) is called
    /// (Twisted's `task.Clock`).
    pub fn fake() -> Self {
        Self::with_source(Source::Fake {
            now: Cell::new(Duration::ZERO),
        })
    }

    fn with_source(source: Source) -> Self {
        Self {
            inner: Rc::new(ClockInner {
                source,
                heap: RefCell::new(BinaryHeap::new()),
                seq: Cell::new(0),
                cancelled: Cell::new(0),
            }),
        }
    }

    /// Time since the clock started (Twisted's `seconds()`).
    pub fn now(&self) -> Duration {
        self.inner.now()
    }

    /// Whether it is a fake clock, moving only when told to.
    pub(crate) fn is_fake(&self) -> bool {
        matches!(self.inner.source, Source::Fake { .. })
    }

    /// Runs `f` once, `delay` from now.
    #[track_caller]
    pub fn call_later(&self, delay: Duration, f: impl FnOnce() + 'static) -> DelayedCall {
        let entry = Rc::new(Entry {
            // `Duration::MAX` is a common "never"; it must not overflow.
            time: Cell::new(self.now().saturating_add(delay)),
            state: Cell::new(CallState::Pending),
            generation: Cell::new(0),
            func: RefCell::new(Some(Box::new(f))),
            site: std::panic::Location::caller(),
            clock: Rc::downgrade(&self.inner),
        });
        self.inner.push(entry.clone());
        DelayedCall { entry }
    }

    /// The calls still pending, earliest first (Twisted's `getDelayedCalls`).
    pub fn pending_calls(&self) -> Vec<DelayedCall> {
        let heap = self.inner.heap.borrow();
        let mut calls: Vec<_> = heap
            .iter()
            .filter(|Reverse(s)| {
                s.generation == s.entry.generation.get()
                    && s.entry.state.get() == CallState::Pending
            })
            .map(|Reverse(s)| {
                (
                    s.time,
                    s.seq,
                    DelayedCall {
                        entry: s.entry.clone(),
                    },
                )
            })
            .collect();
        calls.sort_by_key(|(time, seq, _)| (*time, *seq));
        calls.into_iter().map(|(_, _, call)| call).collect()
    }

    /// Moves a fake clock forward by `by` and runs every call that came due, in order,
    /// including calls those calls schedule for no later than the new time.
    ///
    /// # Panics
    /// On the reactor's real clock, which only tokio's time moves.
    pub fn advance(&self, by: Duration) {
        let Source::Fake { now } = &self.inner.source else {
            panic!("advance() is for a fake clock; the reactor's clock follows real time")
        };
        now.set(now.get() + by);
        self.run_due();
    }

    /// Advances a fake clock by each step in turn (Twisted's `pump`).
    pub fn pump(&self, steps: impl IntoIterator<Item = Duration>) {
        for step in steps {
            self.advance(step);
        }
    }

    /// Runs every call due now; returns the largest lateness seen.
    ///
    /// On the real clock this is one pass, as Twisted's `runUntilCurrent`: the calls due
    /// when it starts, not those they schedule (a `call_later(0)` that schedules itself
    /// again runs once a pass, and the reactor serves its connections in between). A
    /// fake clock runs those too, up to its time, as `task.Clock.advance` does.
    pub(crate) fn run_due(&self) -> Duration {
        let mut worst = Duration::ZERO;
        let (start, before) = match self.inner.source {
            Source::Real { .. } => (Some(self.now()), self.inner.seq.get()),
            Source::Fake { .. } => (None, u64::MAX),
        };
        let mut later = Vec::new();
        loop {
            let now = start.unwrap_or_else(|| self.now());
            let Some((entry, due)) = self.inner.pop_due(now, before, &mut later) else {
                self.inner.heap.borrow_mut().extend(later);
                return worst;
            };
            worst = worst.max(now.saturating_sub(due));
            entry.state.set(CallState::Called);
            let func = entry.func.borrow_mut().take();
            if let Some(func) = func {
                run_call(func, entry.site);
            }
        }
    }

    /// When the earliest pending call is due.
    pub(crate) fn next_time(&self) -> Option<Duration> {
        self.inner.next_time()
    }

    /// Runs the real clock's calls as they come due; the reactor spawns this once.
    pub(crate) async fn drive(self) {
        let Source::Real { origin, wake } = &self.inner.source else {
            return;
        };
        loop {
            match self.next_time() {
                // A deadline beyond what an `Instant` can hold never comes.
                Some(time) if let Some(at) = origin.checked_add(time) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(at) => {
                            self.run_due();
                            // Calls already due again wait for the next pass, after the
                            // reactor's other tasks had a turn.
                            if self.next_time().is_some_and(|next| next <= self.now()) {
                                tokio::task::yield_now().await;
                            }
                        }
                        _ = wake.notified() => {}
                    }
                }
                _ => wake.notified().await,
            }
        }
    }

    /// Makes this the clock [`call_later`] uses on this thread until the guard drops.
    pub fn install(&self) -> ClockGuard {
        let previous = crate::context::with(|cx| {
            cx.poll_clock.forget();
            cx.clock.replace(Some(self.clone()))
        });
        ClockGuard { previous }
    }
}

/// Runs one delayed call: a panic is logged and contained, a call that blocks the
/// reactor is reported by the line that scheduled it.
fn run_call(func: Box<dyn FnOnce()>, site: &'static std::panic::Location<'static>) {
    let span = crate::reactor::profile::enter();
    let started = std::time::Instant::now();
    let reported_before = crate::tasks::slow_reported_total();
    if let Err(panic) = std::panic::catch_unwind(AssertUnwindSafe(func))
        && let Some(suppressed) = timer_line_budget("delayed call panicked")
    {
        tracing::error!(panic = %panic_message(&panic), %site, suppressed, "a delayed call panicked");
    }
    let took = started.elapsed();
    span.exit(
        crate::reactor::profile::Site::Line(site),
        crate::reactor::profile::SiteKind::Timer,
        took,
    );
    // A Deferred step (or another callback) it ran that blocked was reported, by its own
    // site: the call is reported for what it blocked besides, if that is over the
    // threshold, not again for the same blocking.
    let threshold = crate::observe::slow_threshold();
    if took >= threshold
        && let own = crate::tasks::unreported(took, reported_before)
        && own >= threshold
    {
        crate::tasks::note_slow_inside(own);
        let callback = format!("delayed call scheduled at {site}");
        if let Some(suppressed) = timer_line_budget("slow delayed call") {
            tracing::warn!(%callback, ?took, suppressed, "a callback blocked the reactor");
        }
        crate::observe::emit(|| {
            crate::observe::Event::SlowCallback(crate::observe::SlowCallback {
                callback,
                service: None,
                connection: None,
                duration: took,
            })
        });
    }
}

/// The log's budget for the timers' own lines (they have no service): 20 a second, as for
/// each service's.
fn timer_line_budget(what: &'static str) -> Option<Option<u64>> {
    thread_local! {
        static TIMERS: std::sync::Arc<str> = std::sync::Arc::from("");
    }
    TIMERS.with(|timers| crate::observe::log_line_budget(timers, what))
}

pub(crate) fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

/// Restores the previously installed clock when dropped.
#[must_use = "the clock is uninstalled when the guard drops"]
pub struct ClockGuard {
    /// The clock that was current before this one was installed, restored on drop.
    previous: Option<Clock>,
}

impl Drop for ClockGuard {
    fn drop(&mut self) {
        let previous = self.previous.take();
        crate::context::with(|cx| {
            cx.poll_clock.forget();
            *cx.clock.borrow_mut() = previous;
        });
    }
}

/// The clock installed on this thread, if any.
pub fn try_current_clock() -> Option<Clock> {
    crate::context::with(|cx| cx.clock.borrow().clone())
}

/// The clock installed on this thread: the running reactor's, or a test's fake clock.
///
/// # Panics
/// When there is neither; create a `Reactor` or install a `testing::Clock` first.
pub fn current_clock() -> Clock {
    try_current_clock().expect(
        "no clock on this thread: create a weft::Reactor, or install a weft::testing::Clock",
    )
}

/// Runs `f` once, `delay` from now, on this thread's clock (Twisted's `reactor.callLater`).
///
/// # Panics
/// When no clock is installed on this thread.
#[track_caller]
pub fn call_later(delay: Duration, f: impl FnOnce() + 'static) -> DelayedCall {
    current_clock().call_later(delay, f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::DelayedCallError;

    /// Timeouts set and cancelled long before they are due (a request's, each answered in
    /// a millisecond) do not pile up in the heap until their time; the live ones still run.
    #[test]
    fn cancelled_calls_do_not_pile_up_until_they_are_due() {
        let clock = Clock::fake();
        let ran = Rc::new(Cell::new(0));
        let counter = ran.clone();
        let live = clock.call_later(Duration::from_secs(30), move || counter.set(1));
        for _ in 0..10_000 {
            clock
                .call_later(Duration::from_secs(30), || panic!("cancelled"))
                .cancel()
                .unwrap();
        }
        assert!(clock.inner.slots() <= 130, "{} slots", clock.inner.slots());
        clock.advance(Duration::from_secs(30));
        assert_eq!(ran.get(), 1);
        assert!(!live.active());
    }

    type Log = Rc<RefCell<Vec<&'static str>>>;

    fn log() -> (Log, impl Fn(&'static str) -> Box<dyn FnOnce()>) {
        let log = Rc::new(RefCell::new(Vec::new()));
        let l = log.clone();
        (log, move |name| {
            let l = l.clone();
            Box::new(move || l.borrow_mut().push(name))
        })
    }

    #[test]
    fn calls_run_in_time_order_when_the_fake_clock_advances() {
        let clock = Clock::fake();
        let (log, push) = log();
        clock.call_later(Duration::from_secs(2), push("b"));
        clock.call_later(Duration::from_secs(1), push("a"));
        clock.call_later(Duration::from_secs(2), push("c"));
        clock.advance(Duration::from_millis(999));
        assert!(log.borrow().is_empty());
        clock.advance(Duration::from_millis(1001));
        assert_eq!(*log.borrow(), ["a", "b", "c"]);
    }

    #[test]
    fn cancel_reset_and_delay_follow_twisted() {
        let clock = Clock::fake();
        let (log, push) = log();
        let a = clock.call_later(Duration::from_secs(1), push("a"));
        let b = clock.call_later(Duration::from_secs(1), push("b"));
        let c = clock.call_later(Duration::from_secs(1), push("c"));
        a.cancel().unwrap();
        assert_eq!(a.cancel(), Err(DelayedCallError::AlreadyCancelled));
        b.reset(Duration::from_secs(5)).unwrap();
        c.delay(Duration::from_secs(2)).unwrap();
        assert_eq!(b.time(), Duration::from_secs(5));
        assert_eq!(c.time(), Duration::from_secs(3));
        clock.advance(Duration::from_secs(3));
        assert_eq!(*log.borrow(), ["c"]);
        assert!(!c.active() && c.called());
        assert_eq!(
            c.reset(Duration::ZERO),
            Err(DelayedCallError::AlreadyCalled)
        );
        assert!(b.active());
        clock.advance(Duration::from_secs(2));
        assert_eq!(*log.borrow(), ["c", "b"]);
        assert!(clock.pending_calls().is_empty());
    }

    #[test]
    fn resetting_later_keeps_one_heap_slot() {
        let clock = Clock::fake();
        let (log, push) = log();
        let call = clock.call_later(Duration::from_secs(10), push("idle"));
        for i in 1..=10_000u64 {
            clock.advance(Duration::from_millis(1));
            call.reset(Duration::from_secs(10)).unwrap();
            assert_eq!(
                call.time(),
                Duration::from_millis(i) + Duration::from_secs(10)
            );
        }
        assert_eq!(clock.inner.heap.borrow().len(), 1);
        clock.advance(Duration::from_millis(9_999));
        assert!(log.borrow().is_empty());
        clock.advance(Duration::from_millis(1));
        assert_eq!(*log.borrow(), ["idle"]);
        // Moving a call earlier still works.
        let early = clock.call_later(Duration::from_secs(5), push("early"));
        early.reset(Duration::from_secs(1)).unwrap();
        clock.advance(Duration::from_secs(1));
        assert_eq!(*log.borrow(), ["idle", "early"]);
    }

    #[test]
    fn a_call_may_schedule_another_that_is_already_due() {
        let clock = Clock::fake();
        let (log, push) = log();
        let inner = clock.clone();
        let then = push("second");
        clock.call_later(Duration::from_secs(1), move || {
            inner.call_later(Duration::ZERO, then);
        });
        clock.advance(Duration::from_secs(1));
        assert_eq!(*log.borrow(), ["second"]);
    }

    /// A pass of the real clock runs the calls due when it began, those moved later but
    /// still due among them; a call moved so, or one scheduled during the pass, does not
    /// end the pass before the calls behind it.
    #[test]
    fn a_pass_runs_every_call_due_when_it_began() {
        let clock = Clock::real();
        let (log, push) = log();
        let moved = clock.call_later(Duration::from_millis(1), push("moved"));
        clock.call_later(Duration::from_millis(2), push("behind"));
        moved.delay(Duration::from_micros(500)).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        clock.run_due();
        assert_eq!(*log.borrow(), ["moved", "behind"]);

        // A call scheduled, or moved sooner, during a pass waits for the next one.
        let (log, push) = self::log();
        let inner = clock.clone();
        let first = clock.call_later(Duration::from_millis(1), push("first"));
        let early = clock.call_later(Duration::from_secs(60), push("early"));
        clock.call_later(Duration::ZERO, move || {
            inner.call_later(Duration::ZERO, || {});
            early.reset(Duration::ZERO).unwrap();
        });
        clock.call_later(Duration::from_millis(3), push("last"));
        std::thread::sleep(Duration::from_millis(5));
        clock.run_due();
        assert_eq!(*log.borrow(), ["first", "last"]);
        assert!(first.called());
        clock.run_due();
        assert_eq!(*log.borrow(), ["first", "last", "early"]);
    }

    #[test]
    fn a_panicking_call_does_not_stop_the_others() {
        let clock = Clock::fake();
        let (log, push) = log();
        clock.call_later(Duration::from_secs(1), || panic!("boom"));
        clock.call_later(Duration::from_secs(1), push("after"));
        clock.advance(Duration::from_secs(1));
        assert_eq!(*log.borrow(), ["after"]);
    }

    #[test]
    fn a_delayed_call_that_blocks_is_reported_by_the_line_that_scheduled_it() {
        let recorder = crate::testing::RecordingObserver::new();
        crate::observe::set_observer(Some(recorder.clone()));
        crate::observe::set_slow_threshold(Duration::from_millis(5));
        let clock = Clock::fake();
        let call = clock.call_later(Duration::from_secs(1), || {
            std::thread::sleep(Duration::from_millis(10));
        });
        assert!(call.site().file().ends_with("clock.rs"));
        clock.advance(Duration::from_secs(1));
        crate::observe::set_observer(None);
        crate::observe::set_slow_threshold(Duration::from_millis(100));
        let events = recorder.events();
        assert_eq!(events.len(), 1, "{events:?}");
        assert!(
            events[0].contains(&format!("delayed call scheduled at {}", call.site())),
            "{events:?}"
        );
    }

    /// A delayed call whose Deferred step blocked is reported once, by the step (its own
    /// site): the call around it is not reported again for the same blocking.
    #[test]
    fn a_delayed_call_whose_deferred_step_blocked_is_reported_once_by_the_step() {
        let recorder = crate::testing::RecordingObserver::new();
        crate::observe::set_observer(Some(recorder.clone()));
        crate::observe::set_slow_threshold(Duration::from_millis(5));
        let clock = Clock::fake();
        let (resolver, chain) = crate::defer::Deferred::<u32>::new();
        let chain = chain.add_callback(|n| {
            std::thread::sleep(Duration::from_millis(10));
            n
        });
        clock.call_later(Duration::from_secs(1), move || resolver.callback(1));
        clock.advance(Duration::from_secs(1));
        crate::observe::set_observer(None);
        crate::observe::set_slow_threshold(Duration::from_millis(100));
        drop(chain);
        let slow: Vec<String> = recorder
            .events()
            .into_iter()
            .filter(|e| e.contains("Slow"))
            .collect();
        assert_eq!(slow.len(), 1, "{slow:?}");
        assert!(!slow[0].contains("delayed call scheduled at"), "{slow:?}");

        // One that blocks besides, past the threshold, is reported for that too.
        let recorder = crate::testing::RecordingObserver::new();
        crate::observe::set_observer(Some(recorder.clone()));
        crate::observe::set_slow_threshold(Duration::from_millis(5));
        let (resolver, chain) = crate::defer::Deferred::<u32>::new();
        let chain = chain.add_callback(|n| {
            std::thread::sleep(Duration::from_millis(10));
            n
        });
        clock.call_later(Duration::from_secs(1), move || {
            resolver.callback(1);
            std::thread::sleep(Duration::from_millis(10));
        });
        clock.advance(Duration::from_secs(1));
        crate::observe::set_observer(None);
        crate::observe::set_slow_threshold(Duration::from_millis(100));
        drop(chain);
        let slow = recorder
            .events()
            .into_iter()
            .filter(|e| e.contains("Slow"))
            .count();
        assert_eq!(slow, 2, "{:?}", recorder.events());
    }

    #[test]
    fn installed_clock_serves_the_free_call_later() {
        let clock = Clock::fake();
        let (log, push) = log();
        {
            let _guard = clock.install();
            call_later(Duration::from_secs(1), push("x"));
        }
        assert!(try_current_clock().is_none());
        clock.advance(Duration::from_secs(1));
        assert_eq!(*log.borrow(), ["x"]);
    }
}

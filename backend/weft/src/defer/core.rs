//! The untyped heart of a Deferred: its identity, its queue of steps, the driver that
//! runs them (its loop in `drive.rs`), pausing, cancellation, and the moments the
//! detectors look at.

mod drive;

use std::cell::{Cell, RefCell};
use std::panic::Location;
use std::rc::{Rc, Weak};
use std::task::Waker;
use std::time::{Duration, SystemTime};

use super::events;
use super::events::{
    Created, DeferredEvent, DeferredId, DeferredState, Dropped, FailureInfo, Fired, Outcome,
    Paused, Resumed, Settled, StepQueued,
};
use super::slot::LinkSlot;
use super::step::{Holder, Link, take_result};
use super::{CancelledError, Failure, detect, registry};
use crate::observe::{self, ConnectionId};
use crate::reactor::profile;
use crate::time::DelayedCall;

/// How the Deferred was first fired.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Fire {
    Not,
    Value,
    Failure,
    Cancelled,
}

// Bits of `Core::flags`.
const RUNNING: u16 = 1;
/// A typed `Deferred<T>` handle exists: someone may still add an errback.
const CONSUMER: u16 = 1 << 1;
/// `cancel` is running the canceller; a resolver dropped meanwhile did not leak.
const CANCELLING: u16 = 1 << 2;
pub(crate) const STALL_REPORTED: u16 = 1 << 3;
pub(crate) const SLOW_REPORTED: u16 = 1 << 4;
/// Reported unhandled already: not reported again.
const UNHANDLED_REPORTED: u16 = 1 << 5;
const LEAKED: u16 = 1 << 6;
/// Expected to stay pending for long (a loop's completion): the stall scan skips it.
pub(crate) const LONG_WAIT: u16 = 1 << 7;
/// Reported as a member of a deadlock.
pub(crate) const DEADLOCK_REPORTED: u16 = 1 << 8;
/// Not reported to the observer yet: see [`Unannounced`].
const UNANNOUNCED: u16 = 1 << 9;
/// Its handle was let go saying its steps dealt with the failure it ends with
/// (`Deferred::end_handled`): not reported unhandled, but for a panic.
const HANDLED: u16 = 1 << 10;

/// How long a chain the observer passed over may stay pending unreported: one that ends
/// well sooner (an HTTP request answered by its upstream, say) is never reported.
pub(crate) const HOLD: Duration = Duration::from_millis(100);

/// Chains the observer passed over ([`Observer::sample_chain`](observe::Observer::sample_chain))
/// that were created during the running task poll, and whether any pending one is held
/// back beyond its poll.
///
/// Most chains a busy service makes (one per HTTP request) end well soon after they are
/// made: the observer would only count them pending and then not, and drop them. Such a
/// chain reports nothing. It is announced (`Created`, dated when it was made, then every
/// named step it went through and, if fired, that it was) the moment it needs to be seen:
/// when it has been pending for [`HOLD`] (a sweep on the thread's clock, scheduled while
/// such chains exist, looks for them), or before anything but a clean end is reported
/// (it stops, runs a traced step, fails, is cancelled or flagged, or is dropped unfired).
/// Until then it is listed by the thread's own [`pending`](super::pending), not by the
/// observer. A chain made outside a task poll is announced at once; on a thread without
/// a clock to sweep on, when its poll ends.
pub(crate) struct Unannounced {
    /// Made during the running poll.
    made: RefCell<Vec<Weak<Core>>>,
    /// The sweep due next, while chains are held.
    sweep: RefCell<Option<DelayedCall>>,
}

impl Unannounced {
    pub(crate) const fn new() -> Self {
        Self {
            made: RefCell::new(Vec::new()),
            sweep: RefCell::new(None),
        }
    }

    /// The task poll that made the chains has ended: those still pending are held until
    /// a sweep finds them pending for [`HOLD`].
    #[inline]
    pub(crate) fn hold_pending(&self) {
        if self.made.borrow().is_empty() {
            return;
        }
        self.hold_all();
    }

    #[inline(never)]
    fn hold_all(&self) {
        let mut chains = std::mem::take(&mut *self.made.borrow_mut());
        let mut swept = None;
        for core in chains.drain(..).filter_map(|c| c.upgrade()) {
            if core.slot.get().is_none() || core.announced() {
                continue;
            }
            // Without a clock to sweep on, it is announced now.
            if !*swept.get_or_insert_with(|| self.schedule_sweep()) {
                core.announce();
            }
        }
        // Keep the buffer for the next poll, unless an announcement made a new one.
        let mut kept = self.made.borrow_mut();
        if kept.capacity() == 0 {
            *kept = chains;
        }
    }

    /// Makes sure a sweep is due on this thread's clock; `false` when there is no clock.
    fn schedule_sweep(&self) -> bool {
        if self
            .sweep
            .borrow()
            .as_ref()
            .is_some_and(DelayedCall::will_run)
        {
            return true;
        }
        let Some(clock) = crate::time::try_current_clock() else {
            return false;
        };
        *self.sweep.borrow_mut() = Some(clock.call_later(HOLD, sweep));
        true
    }
}

/// Announces the held chains pending for [`HOLD`] or longer; comes back while younger
/// ones are held.
fn sweep() {
    let now = registry::clock_now();
    let mut younger = false;
    registry::for_each_pending(|core| {
        if core.announced() {
            return;
        }
        if now.saturating_sub(core.created) >= HOLD {
            core.announce();
        } else {
            younger = true;
        }
    });
    crate::context::with(|cx| {
        cx.unannounced.sweep.borrow_mut().take();
        if younger {
            cx.unannounced.schedule_sweep();
        }
    });
}

pub(crate) struct Core {
    pub(crate) id: DeferredId,
    pub(crate) site: &'static Location<'static>,
    pub(crate) label: Option<&'static str>,
    pub(crate) connection: Option<ConnectionId>,
    pub(crate) parent: Option<DeferredId>,
    /// On the thread clock's timeline, so a fake clock drives ages in tests.
    pub(crate) created: Duration,
    /// How the chain was fired, if at all: its state, and whether a dropped resolver leaked it.
    fired: Cell<Fire>,
    /// State bits in one `Cell` (running, consumer, cancelling, what was reported, long wait); see
    /// the constants above.
    flags: Cell<u16>,
    /// A count, not a flag: the chain runs on only when every pause has been lifted.
    pauses: Cell<u32>,
    /// When the chain last stopped (pause or child), on the clock's timeline.
    pub(crate) paused_since: Cell<Duration>,
    /// Callbacks added and not run yet, in order (a `Vec`: a run takes them all at once).
    steps: RefCell<Vec<LinkSlot>>,
    /// The chain's current result: the last step that ran, or the fired value.
    result: RefCell<Option<LinkSlot>>,
    pub(crate) steps_run: Cell<u32>,
    /// Traced steps added so far: the index the next one will run at.
    steps_added: Cell<u32>,
    /// The last step started; while waiting, the one that returned the child.
    pub(crate) step_site: Cell<Option<&'static Location<'static>>>,
    pub(crate) waiting_on: RefCell<Option<Rc<Core>>>,
    /// Run once by `cancel` on a pending Deferred, to stop the work that would fire it.
    canceller: RefCell<Option<Box<dyn FnOnce()>>>,
    /// The task awaiting this Deferred as a `Future`, woken when the result arrives.
    waker: RefCell<Option<Waker>>,
    /// Index in the live registry while pending.
    pub(crate) slot: Cell<Option<usize>>,
    /// The parent this chain's end resumed, run by [`run`](Self::run) once this chain's
    /// run is over rather than inside it.
    resume_next: Cell<Option<Rc<Core>>>,
    /// The named step its code says it is at ([`Steps`](super::Steps)).
    pub(crate) named: RefCell<super::named::Current>,
}

impl Core {
    /// A chain, registered and reported (or held back) as [`register`](Self::register)
    /// says.
    pub(crate) fn new(
        site: &'static Location<'static>,
        label: Option<&'static str>,
        connection: Option<ConnectionId>,
    ) -> Rc<Self> {
        let core = Self::unregistered(site, label, connection);
        core.register(None);
        core
    }

    /// A chain listed nowhere and reported to no one yet, dated now: what a
    /// [`Held`](super::Held) chain is until it is made. While an observer listens, its
    /// named steps are kept as an unannounced chain keeps them.
    pub(crate) fn unregistered(
        site: &'static Location<'static>,
        label: Option<&'static str>,
        connection: Option<ConnectionId>,
    ) -> Rc<Self> {
        let connection = connection.or_else(observe::current_connection);
        let (parent, observed) =
            crate::context::with(|cx| (cx.running_deferred.get(), cx.observer.borrow().is_some()));
        Rc::new(Self {
            id: DeferredId(observe::next_id()),
            site,
            label,
            connection,
            parent,
            created: registry::clock_now(),
            fired: Cell::new(Fire::Not),
            flags: Cell::new(if observed {
                CONSUMER | UNANNOUNCED
            } else {
                CONSUMER
            }),
            pauses: Cell::new(0),
            paused_since: Cell::new(Duration::ZERO),
            steps: RefCell::new(Vec::new()),
            result: RefCell::new(None),
            steps_run: Cell::new(0),
            steps_added: Cell::new(0),
            step_site: Cell::new(None),
            waiting_on: RefCell::new(None),
            canceller: RefCell::new(None),
            waker: RefCell::new(None),
            slot: Cell::new(None),
            resume_next: Cell::new(None),
            named: RefCell::default(),
        })
    }

    /// Lists the chain and tells the observer of it: at once (dated when it was made,
    /// with the named steps it went through) when the observer samples it, spans are
    /// exported, or it was made outside a task poll; else it is held back as
    /// [`Unannounced`]. `sampled` is the sampler's answer when it was asked already.
    pub(crate) fn register(self: &Rc<Self>, sampled: Option<bool>) {
        registry::register(self);
        let (observer, polling) =
            crate::context::with(|cx| (cx.observer.borrow().clone(), cx.task.polling()));
        let Some(observer) = observer else {
            self.set_flag(UNANNOUNCED, false);
            return;
        };
        let sampled = sampled.unwrap_or_else(|| observer.sample_chain());
        if !sampled && polling && !observe::trace::enabled() {
            self.set_flag(UNANNOUNCED, true);
            crate::context::with(|cx| {
                cx.unannounced.made.borrow_mut().push(Rc::downgrade(self));
            });
        } else {
            // Dated when it was made, with any steps it went through while held.
            self.announce_as(&**observer, sampled);
        }
    }

    fn created_event(&self, at: SystemTime, sampled: bool) -> DeferredEvent {
        DeferredEvent::Created(Created {
            id: self.id,
            label: self.label,
            site: super::Site(self.site),
            connection: self.connection,
            parent: self.parent,
            at,
            sampled,
        })
    }

    /// Reports a chain the observer has not heard of yet ([`Unannounced`]) from its
    /// creation: made, each named step it went through, fired if it was. Does nothing
    /// otherwise.
    pub(crate) fn announce(&self) {
        if !self.flags_has(UNANNOUNCED) {
            return;
        }
        if let Some(observer) = observe::current() {
            self.announce_as(&**observer, false);
        } else {
            self.set_flag(UNANNOUNCED, false);
        }
    }

    fn announce_as(&self, observer: &dyn observe::Observer, sampled: bool) {
        self.set_flag(UNANNOUNCED, false);
        let now = registry::clock_now();
        let wall = SystemTime::now();
        let dated = |since: Duration| wall.checked_sub(now.saturating_sub(since)).unwrap_or(wall);
        let send = |event: DeferredEvent| observer.on_event(&observe::Event::Deferred(&event));
        send(self.created_event(dated(self.created), sampled));
        let steps: Vec<_> = match self.named.try_borrow_mut() {
            Ok(mut named) => named.take_all().collect(),
            Err(_) => Vec::new(),
        };
        for (step, since) in steps {
            send(DeferredEvent::Named(super::events::StepNamed {
                id: self.id,
                step,
                at: dated(since),
            }));
        }
        // A failure or a cancel announces the chain before it is recorded as fired.
        if self.fired.get() != Fire::Not {
            send(DeferredEvent::Fired(Fired {
                id: self.id,
                outcome: Outcome::Succeeded,
                age: now.saturating_sub(self.created),
                at: wall,
            }));
        }
    }

    /// Whether the observer has heard of this chain (or there is none to hear).
    #[inline]
    pub(crate) fn announced(&self) -> bool {
        !self.flags_has(UNANNOUNCED)
    }

    #[inline]
    pub(crate) fn flags_has(&self, flag: u16) -> bool {
        self.flags.get() & flag != 0
    }

    #[inline]
    pub(crate) fn set_flag(&self, flag: u16, on: bool) {
        let flags = self.flags.get();
        self.flags
            .set(if on { flags | flag } else { flags & !flag });
    }

    pub(crate) fn fired(&self) -> Fire {
        self.fired.get()
    }

    /// Fired, not running, not paused, not waiting, nothing queued.
    pub(crate) fn at_rest(&self) -> bool {
        self.fired.get() != Fire::Not
            && !self.flags_has(RUNNING)
            && self.pauses.get() == 0
            && self.waiting_on.borrow().is_none()
            && self.steps.borrow().is_empty()
    }

    pub(crate) fn state(&self) -> DeferredState {
        if self.fired.get() == Fire::Not {
            return DeferredState::Pending;
        }
        if self.flags_has(RUNNING) {
            return DeferredState::Running;
        }
        if self.waiting_on.try_borrow().is_ok_and(|w| w.is_some()) {
            return DeferredState::Waiting;
        }
        if self.pauses.get() > 0 {
            return DeferredState::Paused;
        }
        let failed = self.result.try_borrow().ok().and_then(|r| {
            r.as_ref()
                .map(|h| h.failure().map(|f| f.check::<CancelledError>()))
        });
        match failed {
            Some(Some(true)) if self.fired.get() == Fire::Cancelled => DeferredState::Cancelled,
            Some(Some(_)) => DeferredState::Failed,
            _ => DeferredState::Succeeded,
        }
    }

    /// Gives the chain its first result and runs it.
    pub(crate) fn fire(self: &Rc<Self>, holder: LinkSlot, how: Fire) {
        debug_assert_eq!(self.fired.get(), Fire::Not, "fired twice");
        if !self.announced() && (how != Fire::Value || holder.failure().is_some()) {
            self.announce();
        }
        self.fired.set(how);
        events::emit_if(self.announced() && observe::enabled(), || {
            let outcome = match (how, holder.failure()) {
                (Fire::Cancelled, Some(f)) => Outcome::Cancelled(FailureInfo::of(f)),
                (_, Some(f)) => Outcome::Failed(FailureInfo::of(f)),
                _ => Outcome::Succeeded,
            };
            DeferredEvent::Fired(Fired {
                id: self.id,
                outcome,
                age: registry::clock_now().saturating_sub(self.created),
                at: std::time::SystemTime::now(),
            })
        });
        *self.result.borrow_mut() = Some(holder);
        if self.pauses.get() > 0 {
            self.stopped(None);
        }
        self.run();
    }

    pub(crate) fn fire_failure(self: &Rc<Self>, failure: Failure, how: Fire) {
        let site = failure.site().0;
        self.fire(Holder::<()>::boxed(Err(failure), site), how);
    }

    /// Appends a step; runs it at once if the chain has a result and is idle.
    pub(crate) fn push_step(self: &Rc<Self>, step: LinkSlot) {
        if let Some(kind) = step.kind {
            let index = self.steps_added.get();
            self.steps_added.set(index.saturating_add(1));
            // A step that runs at once is reported once, when it has run; one that waits
            // is reported now too, so "stuck before step N" can be seen. Only then is the
            // observer looked up.
            if !self.runs_at_once()
                && let Some(observer) = observe::current()
            {
                self.announce();
                let event = DeferredEvent::Queued(StepQueued {
                    id: self.id,
                    index,
                    kind,
                    site: super::Site(step.site),
                });
                observer.on_event(&observe::Event::Deferred(&event));
            }
        }
        self.steps.borrow_mut().push(step);
        if self.fired.get() != Fire::Not && !self.flags_has(RUNNING) {
            self.run();
        }
    }

    /// Whether a step added now would run before `push_step` returns.
    fn runs_at_once(&self) -> bool {
        self.fired.get() != Fire::Not
            && !self.flags_has(RUNNING)
            && self.pauses.get() == 0
            && self.waiting_on.try_borrow().is_ok_and(|w| w.is_none())
    }

    pub(crate) fn set_canceller(&self, canceller: Box<dyn FnOnce()>) {
        *self.canceller.borrow_mut() = Some(canceller);
    }

    /// Runs queued steps until the chain ends, pauses or waits on a child; then the
    /// parents its end resumed, and theirs, one after another (Twisted's chain loop): a
    /// chain nested 100,000 deep ends without deepening the stack.
    pub(crate) fn run(self: &Rc<Self>) {
        self.run_one();
        let mut next = self.resume_next.take();
        while let Some(parent) = next {
            parent.run_one();
            next = parent.resume_next.take();
        }
    }

    fn run_one(self: &Rc<Self>) {
        if self.flags_has(RUNNING) || self.pauses.get() > 0 || self.waiting_on.borrow().is_some() {
            return;
        }
        // A chain extended after it came to rest unreported (a step added to a Deferred
        // that had fired and run its steps, `Deferred::succeed(x).add_callback(f)`, made
        // inside a task poll and passed over) is listed again until it rests anew: a step
        // that announces it (slow, waiting, failing) is then followed by its end, where an
        // observer would otherwise see it run and never end. One already reported ended
        // is not: the observer has let it go.
        if self.slot.get().is_none() && !self.announced() && !self.steps.borrow().is_empty() {
            registry::register(self);
        }
        self.set_flag(RUNNING, true);
        let outer = crate::context::with(|cx| cx.running_deferred.replace(Some(self.id)));
        let waiting = profile::with_thread(|thread| self.run_steps(thread));
        crate::context::with(|cx| cx.running_deferred.set(outer));
        if let Some(child) = waiting {
            self.wait_on(child);
        }
        self.set_flag(RUNNING, false);
        if self.at_rest() {
            self.settle();
        }
    }

    fn wait_on(self: &Rc<Self>, child: Rc<Core>) {
        let id = child.id;
        *self.waiting_on.borrow_mut() = Some(child);
        self.stopped(Some(id));
    }

    fn stopped(self: &Rc<Self>, waiting_on: Option<DeferredId>) {
        self.paused_since.set(registry::clock_now());
        if self.slot.get().is_none() {
            registry::register(self);
        }
        self.announce();
        events::emit(|| {
            DeferredEvent::Paused(Paused {
                id: self.id,
                index: self.steps_run.get(),
                waiting_on,
            })
        });
    }

    fn resumed(&self) {
        events::emit(|| {
            DeferredEvent::Resumed(Resumed {
                id: self.id,
                paused_for: registry::clock_now().saturating_sub(self.paused_since.get()),
            })
        });
    }

    /// `child` ended: `deliver` writes its result into the waiting step, and the chain
    /// goes on when the child's run is over.
    pub(crate) fn resume_with(
        self: &Rc<Self>,
        child: &Rc<Self>,
        deliver: impl FnOnce(&mut dyn Link),
    ) {
        {
            let mut result = self.result.borrow_mut();
            deliver(&mut **result.as_mut().expect("a waiting chain holds its step"));
        }
        self.waiting_on.borrow_mut().take();
        self.resumed();
        child.resume_next.set(Some(self.clone()));
    }

    /// The chain came to rest with a result: no longer pending.
    fn settle(&self) {
        if let Some(slot) = self.slot.take() {
            registry::unregister(slot);
            let failed = self
                .result
                .borrow()
                .as_ref()
                .is_some_and(|h| h.failure().is_some());
            if failed {
                self.announce();
            }
            // An unannounced chain that ended well is never reported.
            events::emit_if(self.announced() && observe::enabled(), || {
                let outcome = match self.result.borrow().as_ref().and_then(|h| h.failure()) {
                    Some(f)
                        if self.fired.get() == Fire::Cancelled && f.check::<CancelledError>() =>
                    {
                        Outcome::Cancelled(FailureInfo::of(f))
                    }
                    Some(f) => Outcome::Failed(FailureInfo::of(f)),
                    None => Outcome::Succeeded,
                };
                DeferredEvent::Settled(Settled {
                    id: self.id,
                    outcome,
                    steps: self.steps_run.get(),
                    age: registry::clock_now().saturating_sub(self.created),
                })
            });
        }
        if let Some(waker) = self.waker.borrow_mut().take() {
            waker.wake();
        }
        self.check_unhandled();
    }

    /// Reports a failure left at the end of a chain nobody can extend any more.
    fn check_unhandled(&self) {
        if self.flags_has(CONSUMER) || self.flags_has(UNHANDLED_REPORTED) || !self.at_rest() {
            return;
        }
        let result = self.result.borrow();
        if let Some(failure) = result.as_ref().and_then(|h| h.failure()) {
            // A panic in a step is no failure its steps could have meant to deal with.
            if self.flags_has(HANDLED) && !failure.check::<super::PanicError>() {
                return;
            }
            self.set_flag(UNHANDLED_REPORTED, true);
            detect::report_unhandled(self, failure);
        }
    }

    /// The result, if the chain is at rest and has one; the chain is spent afterwards.
    pub(crate) fn take_result<T: 'static>(&self) -> Option<Result<T, Failure>> {
        if !self.at_rest() {
            return None;
        }
        let mut holder = self.result.borrow_mut().take()?;
        Some(take_result::<T>(&mut *holder))
    }

    pub(crate) fn set_waker(&self, waker: &Waker) {
        let mut slot = self.waker.borrow_mut();
        match &*slot {
            Some(w) if w.will_wake(waker) => {}
            _ => *slot = Some(waker.clone()),
        }
    }

    /// The typed handle went away, without handing its role to anyone.
    pub(crate) fn consumer_dropped(&self) {
        self.set_flag(CONSUMER, false);
        self.waker.borrow_mut().take();
        self.check_unhandled();
    }

    /// The typed handle went away saying a failure the chain ends with was dealt with
    /// ([`Deferred::end_handled`](super::Deferred::end_handled)).
    pub(crate) fn handled(&self) {
        self.set_flag(HANDLED, true);
        self.consumer_dropped();
    }

    /// Whether nobody can ever see this unfired Deferred's result: its handle was dropped
    /// (a `get` given up on, in a `select!` that timed out) and no step waits on it.
    pub(crate) fn abandoned(&self) -> bool {
        self.fired.get() == Fire::Not
            && !self.flags_has(CONSUMER)
            && self.steps.try_borrow().is_ok_and(|s| s.is_empty())
    }

    /// Cancels an [`abandoned`](Self::abandoned) Deferred, quietly: nobody is there to
    /// handle its `CancelledError`, and it did not leak.
    pub(crate) fn abandon(self: &Rc<Self>, site: &'static Location<'static>) {
        self.set_flag(HANDLED, true);
        self.cancel(site);
    }

    /// The typed handle passed its role on (to a parent chain, a combinator, a future).
    pub(crate) fn consumer_moved(&self) {
        self.set_flag(CONSUMER, false);
    }

    /// The firing side went away.
    pub(crate) fn resolver_dropped(&self) {
        if self.fired.get() != Fire::Not || self.flags_has(CANCELLING) || self.flags_has(LEAKED) {
            return;
        }
        self.set_flag(LEAKED, true);
        detect::report_leaked(self);
        // Nothing can fire this chain now, nor the chains that wait on it, theirs and so
        // on up: free what waits on each (a parent's forward link holds the parent), so
        // no reference cycle outlives the leak, and wake a task awaiting one
        // (`LeakedError`).
        let mut steps = self.never_to_end();
        while let Some(parent) = steps.iter_mut().find_map(|s| s.forwards_to()) {
            drop(steps);
            if parent.flags_has(LEAKED) {
                break;
            }
            parent.set_flag(LEAKED, true);
            steps = parent.never_to_end();
        }
    }

    /// A chain that can never end lets go of its steps (returned, to be dropped by the
    /// caller) and wakes a task awaiting it.
    fn never_to_end(&self) -> Vec<LinkSlot> {
        let steps = std::mem::take(&mut *self.steps.borrow_mut());
        if let Some(waker) = self.waker.borrow_mut().take() {
            waker.wake();
        }
        steps
    }

    /// Whether this chain can never end: it or a chain it waits on leaked.
    pub(crate) fn leaked(&self) -> bool {
        self.flags_has(LEAKED)
    }

    /// Whether its own firing side was dropped unfired (reported as leaked), rather than a
    /// chain it waits on (which it was not reported for).
    pub(crate) fn leaked_unfired(&self) -> bool {
        self.leaked() && self.fired.get() == Fire::Not
    }

    pub(crate) fn pause(self: &Rc<Self>) {
        let n = self.pauses.get();
        self.pauses.set(n + 1);
        if n == 0 && self.fired.get() != Fire::Not {
            self.stopped(None);
        }
    }

    pub(crate) fn next_step_site(&self) -> Option<&'static Location<'static>> {
        self.steps.try_borrow().ok()?.first().map(|s| s.site)
    }

    pub(crate) fn unpause(self: &Rc<Self>) {
        let n = self.pauses.get();
        if n == 0 {
            return;
        }
        self.pauses.set(n - 1);
        if n == 1 && self.fired.get() != Fire::Not {
            self.resumed();
            self.run();
        }
    }

    /// Twisted's `cancel`: the canceller (if any) runs; a Deferred still unfired gets a
    /// `CancelledError`; one waiting on a child cancels the child instead.
    pub(crate) fn cancel(self: &Rc<Self>, site: &'static Location<'static>) {
        if self.fired.get() == Fire::Not {
            self.set_flag(CANCELLING, true);
            let canceller = self.canceller.borrow_mut().take();
            if let Some(canceller) = canceller {
                // A canceller that panics still cancels: the Deferred fails with
                // `CancelledError` below, and a resolver dropped later is still a leak.
                if let Err(panic) =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(canceller))
                {
                    tracing::error!(
                        deferred = %self.id,
                        created = %super::Site(self.site),
                        panic = %crate::time::panic_message(&panic),
                        "a Deferred's canceller panicked; cancelling it anyway"
                    );
                }
            }
            if self.fired.get() == Fire::Not {
                self.fire_failure(Failure::with_site(CancelledError, site), Fire::Cancelled);
            }
            self.set_flag(CANCELLING, false);
        } else {
            // Down the line of children to the one not fired yet, in a loop: a chain
            // nested deep is cancelled without deepening the stack.
            let mut child = self.waiting_on.borrow().clone();
            while let Some(c) = child {
                if c.fired.get() == Fire::Not {
                    c.cancel(site);
                    break;
                }
                child = c.waiting_on.borrow().clone();
            }
        }
    }
}

impl Drop for Core {
    fn drop(&mut self) {
        // A chain waiting on a child holds it, which may wait on its own: freed one after
        // another here rather than each inside its parent's drop.
        let mut child = self.waiting_on.get_mut().take();
        while let Some(core) = child {
            child = Rc::try_unwrap(core)
                .ok()
                .and_then(|mut core| core.waiting_on.get_mut().take());
        }
        if let Some(slot) = self.slot.take() {
            registry::unregister(slot);
            self.announce();
            events::emit(|| {
                DeferredEvent::Dropped(Dropped {
                    id: self.id,
                    age: registry::clock_now().saturating_sub(self.created),
                })
            });
        }
    }
}

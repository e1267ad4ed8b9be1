//! The typed handles: [`Deferred<T>`] (the chain) and [`Resolver<T>`] (its firing side).

use std::fmt;
use std::marker::PhantomData;
use std::panic::Location;
use std::rc::{Rc, Weak};
use std::time::Duration;

use super::core::{Core, Fire};
use super::events::{DeferredId, DeferredState};
use super::step::{CallbackResult, Holder, OnBoth, OnEither, OnFailure, OnValue, Step};
use super::{AlreadyCalledError, CancelledError, Failure, TimeoutError};
use crate::observe::ConnectionId;

/// A result that will arrive later, and the chain of callbacks that processes it
/// (Twisted's `Deferred`).
///
/// Each `add_*` method consumes the handle and returns the handle for the chain's new
/// result type: the same Deferred (same id, same trace), one step longer. Dropping the
/// last handle while the chain ends in a failure reports the failure as unhandled.
///
/// `Deferred` is `!Send`: like everything on the reactor it lives on one thread.
#[must_use = "a Deferred's failure is reported as unhandled when it is dropped"]
pub struct Deferred<T: 'static> {
    /// `None` only once the result has been taken (by `await` or `try_take`).
    core: Option<Rc<Core>>,
    /// The result type, without owning a `T`: the value lives type-erased in the core.
    _type: PhantomData<fn() -> T>,
}

/// The firing side of a [`Deferred`]: whoever holds it produces the result.
///
/// Firing consumes it, so a Deferred cannot be fired twice. Dropping it unfired
/// reports the Deferred as leaked: nothing can complete its chain any more.
#[must_use = "dropping a Resolver unfired leaks its Deferred"]
pub struct Resolver<T: 'static> {
    /// Taken when fired; a `Resolver` dropped while still holding it reports its Deferred as
    /// leaked.
    core: Option<Rc<Core>>,
    _type: PhantomData<fn(T)>,
}

/// Cancels a Deferred without holding its chain (for combinators, timers, the inspector).
#[derive(Clone)]
pub struct CancelHandle {
    /// Weak, so a handle never keeps a finished chain alive.
    core: Weak<Core>,
}

pub(crate) fn pair_from<T: 'static>(core: Rc<Core>) -> (Resolver<T>, Deferred<T>) {
    (
        Resolver {
            core: Some(core.clone()),
            _type: PhantomData,
        },
        Deferred {
            core: Some(core),
            _type: PhantomData,
        },
    )
}

impl<T: 'static> Deferred<T> {
    /// A new, unfired Deferred and its firing side. The caller's line is its site; the
    /// connection whose callback is running, if any, is its connection.
    #[track_caller]
    pub fn new() -> (Resolver<T>, Deferred<T>) {
        pair_from(Core::new(Location::caller(), None, None))
    }

    /// Like [`new`](Self::new), with a label shown by the inspector (and used to pick a
    /// stall threshold, see [`set_stall_threshold_for`](super::set_stall_threshold_for)).
    #[track_caller]
    pub fn labeled(label: &'static str) -> (Resolver<T>, Deferred<T>) {
        pair_from(Core::new(Location::caller(), Some(label), None))
    }

    /// Like [`new`](Self::new), with an explicit label and connection.
    #[track_caller]
    pub fn traced(
        label: Option<&'static str>,
        connection: Option<ConnectionId>,
    ) -> (Resolver<T>, Deferred<T>) {
        pair_from(Core::new(Location::caller(), label, connection))
    }

    /// A Deferred whose `cancel` first runs `canceller` (to stop the work behind it);
    /// if that does not fire the Deferred, it fails with [`CancelledError`].
    #[track_caller]
    pub fn with_canceller(canceller: impl FnOnce() + 'static) -> (Resolver<T>, Deferred<T>) {
        let core = Core::new(Location::caller(), None, None);
        core.set_canceller(Box::new(canceller));
        pair_from(core)
    }

    /// A new Deferred with its site, label and canceller given (for weft's own helpers).
    pub(crate) fn new_at(
        site: &'static Location<'static>,
        label: Option<&'static str>,
        canceller: Option<Box<dyn FnOnce()>>,
    ) -> (Resolver<T>, Deferred<T>) {
        let core = Core::new(site, label, None);
        if let Some(canceller) = canceller {
            core.set_canceller(canceller);
        }
        pair_from(core)
    }

    /// A Deferred that already has `value` (Twisted's `succeed`).
    #[track_caller]
    pub fn succeed(value: T) -> Deferred<T> {
        let site = Location::caller();
        let core = Core::new(site, None, None);
        core.fire(Holder::boxed(Ok(value), site), Fire::Value);
        Self::from_core(core)
    }

    /// A Deferred that already failed (Twisted's `fail`).
    #[track_caller]
    pub fn fail(failure: Failure) -> Deferred<T> {
        let core = Core::new(Location::caller(), None, None);
        core.fire_failure(failure, Fire::Failure);
        Self::from_core(core)
    }

    pub(crate) fn from_core(core: Rc<Core>) -> Self {
        Self {
            core: Some(core),
            _type: PhantomData,
        }
    }

    pub(crate) fn core(&self) -> &Rc<Core> {
        self.core
            .as_ref()
            .expect("a Deferred used after its result was taken")
    }

    /// Hands the chain to someone who will consume its result (a step, a combinator).
    pub(crate) fn into_core(mut self) -> Rc<Core> {
        let core = self
            .core
            .take()
            .expect("a Deferred used after its result was taken");
        core.consumer_moved();
        core
    }

    /// Its id, as the inspector and the events name it.
    pub fn id(&self) -> DeferredId {
        self.core().id
    }

    /// Where it is in its life.
    pub fn state(&self) -> DeferredState {
        self.core().state()
    }

    /// Whether it has been fired (Twisted's `called`).
    pub fn called(&self) -> bool {
        self.core().fired() != Fire::Not
    }

    /// Marks it as expected to stay pending for a long time (the completion of a loop
    /// or of a whole connection), so the stall detector leaves it alone.
    pub fn expect_long_wait(&self) {
        self.core().set_flag(super::core::LONG_WAIT, true);
    }

    /// A handle that marks the named steps of this chain from async code.
    pub fn steps(&self) -> super::Steps {
        super::Steps::of(self.core())
    }

    /// Something that can cancel it later, without holding the chain.
    pub fn cancel_handle(&self) -> CancelHandle {
        CancelHandle {
            core: Rc::downgrade(self.core()),
        }
    }

    fn push<U: 'static>(mut self, step: super::slot::LinkSlot) -> Deferred<U> {
        // The new handle takes over as consumer; the old one must not report on drop.
        let core = self
            .core
            .take()
            .expect("a Deferred used after its result was taken");
        core.push_step(step);
        Deferred::from_core(core)
    }

    /// Adds a callback whose return value is the chain's next result.
    ///
    /// Failures skip it. For a callback that may fail or wait on another Deferred, use
    /// [`and_then`](Self::and_then).
    #[track_caller]
    pub fn add_callback<U: 'static>(self, f: impl FnOnce(T) -> U + 'static) -> Deferred<U> {
        let step =
            Step::<T, U, _>::boxed(OnValue(move |v| Ok::<U, Failure>(f(v))), Location::caller());
        self.push(step)
    }

    /// Adds a callback that returns `Result<U, Failure>` (an `Err` switches the chain to
    /// its errback path) or a `Deferred<U>` (the chain waits for it, then goes on with
    /// its result). Twisted's `addCallback` in full.
    #[track_caller]
    pub fn and_then<U: 'static, R: CallbackResult<U>>(
        self,
        f: impl FnOnce(T) -> R + 'static,
    ) -> Deferred<U> {
        self.push(Step::<T, U, _>::boxed(OnValue(f), Location::caller()))
    }

    /// `and_then` with the site given (for steps added on someone's behalf).
    pub(crate) fn and_then_at<U: 'static, R: CallbackResult<U>>(
        self,
        site: &'static Location<'static>,
        f: impl FnOnce(T) -> R + 'static,
    ) -> Deferred<U> {
        self.push(Step::<T, U, _>::boxed(OnValue(f), site))
    }

    /// Adds an errback: it runs on a failure and returns `Ok` to recover, `Err` to pass a
    /// failure on, or a Deferred to wait on. Values skip it.
    #[track_caller]
    pub fn add_errback<R: CallbackResult<T>>(
        self,
        f: impl FnOnce(Failure) -> R + 'static,
    ) -> Deferred<T> {
        self.push(Step::<T, T, _>::boxed(OnFailure(f), Location::caller()))
    }

    /// Adds a step that runs on either path (Twisted's `addBoth`).
    #[track_caller]
    pub fn add_both<U: 'static, R: CallbackResult<U>>(
        self,
        f: impl FnOnce(Result<T, Failure>) -> R + 'static,
    ) -> Deferred<U> {
        self.push(Step::<T, U, _>::boxed(OnBoth(f), Location::caller()))
    }

    /// Adds a callback and an errback as one step: exactly one of them runs, and the
    /// errback does not see the callback's failure (Twisted's `addCallbacks`).
    #[track_caller]
    pub fn add_callbacks<U: 'static, R1: CallbackResult<U>, R2: CallbackResult<U>>(
        self,
        callback: impl FnOnce(T) -> R1 + 'static,
        errback: impl FnOnce(Failure) -> R2 + 'static,
    ) -> Deferred<U> {
        self.push(Step::<T, U, _>::boxed(
            OnEither(callback, errback),
            Location::caller(),
        ))
    }

    /// Feeds this chain's result to `other` (Twisted's `chainDeferred`); this chain
    /// goes on with `()`.
    #[track_caller]
    pub fn chain_deferred(self, other: Resolver<T>) -> Deferred<()> {
        self.add_both(move |result| {
            other.resolve(result);
            Ok(())
        })
    }

    /// Cancels it if it has not fired after `after` on the thread's clock; the
    /// cancellation then surfaces as a [`TimeoutError`] (Twisted's `addTimeout`).
    ///
    /// # Panics
    /// When no clock is installed on this thread.
    #[track_caller]
    pub fn add_timeout(self, after: Duration) -> Deferred<T> {
        let site = Location::caller();
        let handle = self.cancel_handle();
        let timer = crate::time::call_later(after, move || handle.cancel_at(site));
        let step = Step::<T, T, _>::boxed(
            OnBoth(move |result: Result<T, Failure>| {
                if timer.active() {
                    let _ = timer.cancel();
                }
                match result {
                    Err(f) if timer.called() && f.check::<CancelledError>() => {
                        Err(Failure::with_site(TimeoutError { after }, site))
                    }
                    other => other,
                }
            }),
            site,
        );
        self.push(step)
    }

    /// Stops the chain before its next step until [`unpause`](Self::unpause).
    pub fn pause(&self) {
        self.core().pause();
    }

    /// Undoes one [`pause`](Self::pause); the chain goes on when none is left.
    pub fn unpause(&self) {
        self.core().unpause();
    }

    /// Cancels it (Twisted's `cancel`): an unfired Deferred runs its canceller and, if
    /// still unfired, fails with [`CancelledError`]; one waiting on another Deferred
    /// cancels that one instead. Does nothing once the chain has a result.
    #[track_caller]
    pub fn cancel(&self) {
        self.core().cancel(Location::caller());
    }

    /// The result, if the chain has finished; the Deferred is spent afterwards, and
    /// using it again panics. Twisted's trial calls this `successResultOf`.
    pub fn try_take(&mut self) -> Option<Result<T, Failure>> {
        let result = self.core().take_result::<T>()?;
        if let Some(core) = self.core.take() {
            core.consumer_moved();
        }
        Some(result)
    }

    /// Lets go of the chain's end, saying its steps dealt with what it ends with: a
    /// failure it ends with is recorded (the inspector lists the chain `failed`, with the
    /// failure) and not reported unhandled. For a chain that answers its client either way
    /// and ends with the failure so that its record says what went wrong (a forwarded
    /// question answered SERVFAIL because no upstream answered), where Twisted's idiom,
    /// an errback that logs and recovers, would record it as having succeeded. A panic in
    /// a step (`PanicError`) is still reported: no step meant to deal with that.
    pub fn end_handled(mut self) {
        if let Some(core) = self.core.take() {
            core.handled();
        }
    }

    /// Registers the task to wake when the chain finishes; used by the `Future` impl.
    pub(crate) fn poll_result(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> Option<Result<T, Failure>> {
        if let Some(result) = self.try_take() {
            return Some(result);
        }
        let core = self.core();
        if core.leaked() {
            let site = core.site;
            if let Some(core) = self.core.take() {
                core.consumer_moved();
            }
            return Some(Err(Failure::with_site(super::LeakedError, site)));
        }
        core.set_waker(cx.waker());
        None
    }
}

impl<T: 'static> Drop for Deferred<T> {
    fn drop(&mut self) {
        if let Some(core) = self.core.take() {
            core.consumer_dropped();
        }
    }
}

impl<T: 'static> fmt::Debug for Deferred<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.core {
            Some(core) => f
                .debug_struct("Deferred")
                .field("id", &core.id)
                .field("site", &super::Site(core.site))
                .field("state", &core.state())
                .finish(),
            None => f.write_str("Deferred(spent)"),
        }
    }
}

impl<T: 'static> Resolver<T> {
    fn take(mut self) -> Rc<Core> {
        self.core.take().expect("a resolver fires once")
    }

    /// Its Deferred's id.
    pub fn id(&self) -> DeferredId {
        self.core.as_ref().expect("live resolver").id
    }

    pub(crate) fn core(&self) -> &Rc<Core> {
        self.core.as_ref().expect("live resolver")
    }

    /// A handle that marks the named steps of its chain from async code.
    pub fn steps(&self) -> super::Steps {
        super::Steps::of(self.core.as_ref().expect("live resolver"))
    }

    /// Whether its Deferred already has a result: it was cancelled (or timed out), so
    /// firing now would be ignored.
    pub fn is_called(&self) -> bool {
        self.core.as_ref().is_some_and(|c| c.fired() != Fire::Not)
    }

    /// Fires the Deferred with `value`. Ignored if it was cancelled meanwhile, as in
    /// Twisted.
    #[track_caller]
    pub fn callback(self, value: T) {
        let _ = self.try_callback(value);
    }

    /// Fires the Deferred with `value`; `AlreadyCalledError` if a cancellation fired
    /// it first.
    #[track_caller]
    pub fn try_callback(self, value: T) -> Result<(), AlreadyCalledError> {
        let site = Location::caller();
        let core = self.take();
        if core.fired() != Fire::Not {
            return Err(AlreadyCalledError);
        }
        core.fire(Holder::boxed(Ok(value), site), Fire::Value);
        Ok(())
    }

    /// Fails the Deferred. Ignored if it was cancelled meanwhile.
    pub fn errback(self, failure: Failure) {
        let core = self.take();
        if core.fired() == Fire::Not {
            core.fire_failure(failure, Fire::Failure);
        }
    }

    /// Fires with a value or fails, whichever `result` holds.
    #[track_caller]
    pub fn resolve(self, result: Result<T, Failure>) {
        match result {
            Ok(value) => self.callback(value),
            Err(failure) => self.errback(failure),
        }
    }
}

impl<T: 'static> Drop for Resolver<T> {
    fn drop(&mut self) {
        if let Some(core) = self.core.take() {
            core.resolver_dropped();
        }
    }
}

impl<T: 'static> fmt::Debug for Resolver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Resolver")
            .field("id", &self.core.as_ref().map(|c| c.id))
            .finish()
    }
}

impl CancelHandle {
    /// Cancels the Deferred if it still exists; see [`Deferred::cancel`].
    #[track_caller]
    pub fn cancel(&self) {
        self.cancel_at(Location::caller());
    }

    pub(crate) fn cancel_at(&self, site: &'static Location<'static>) {
        if let Some(core) = self.core.upgrade() {
            core.cancel(site);
        }
    }

    /// The Deferred's id, if it still exists.
    pub fn id(&self) -> Option<DeferredId> {
        self.core.upgrade().map(|c| c.id)
    }
}

impl fmt::Debug for CancelHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CancelHandle")
            .field("id", &self.id())
            .finish()
    }
}

//! The links of a chain: typed steps behind one object-safe trait.
//!
//! A chain is a queue of [`Link`]s, each held inline when small ([`LinkSlot`], which also
//! keeps the step's kind and site, so a link is only its behaviour and its output). Each
//! step owns its function and its output, and takes its input out of the link before it
//! as it runs, so a value moves from one step straight into the next one's slot: no
//! allocation per value, and none per step that fits its slot. The erased driver in
//! `core.rs` never knows the types; each step downcasts its predecessor's output slot to
//! the type it was built for, which the typed `Deferred<T>` API guarantees.

use std::any::Any;
use std::panic::{AssertUnwindSafe, Location};
use std::rc::Rc;

use super::core::Core;
use super::events::{DeferredId, StepKind};
use super::slot::LinkSlot;
use super::{Deferred, Failure, PanicError};

/// What a callback hands on: a result now, or a Deferred whose result comes later.
#[derive(Debug)]
pub enum Next<U: 'static> {
    /// The step's result.
    Now(Result<U, Failure>),
    /// A Deferred to wait for; the chain pauses until it fires and then goes on with
    /// its result.
    Later(Deferred<U>),
}

/// What a callback may return: `Result<U, Failure>` (an `Err` switches to the errback
/// path) or `Deferred<U>` (the chain waits for it).
pub trait CallbackResult<U: 'static>: 'static {
    /// Converts into the chain's next input.
    fn into_next(self) -> Next<U>;
}

impl<U: 'static> CallbackResult<U> for Result<U, Failure> {
    #[inline]
    fn into_next(self) -> Next<U> {
        Next::Now(self)
    }
}

impl<U: 'static> CallbackResult<U> for Deferred<U> {
    #[inline]
    fn into_next(self) -> Next<U> {
        Next::Later(self)
    }
}

impl<U: 'static> CallbackResult<U> for Next<U> {
    #[inline]
    fn into_next(self) -> Next<U> {
        self
    }
}

/// What a step did, as the driver records it.
pub(crate) enum Did {
    Succeeded,
    Failed,
    Skipped,
    Chained(DeferredId),
}

pub(crate) enum Ran {
    Done(Did),
    /// Paused on this child; its result will be written into this step's output.
    Waiting(Rc<Core>),
}

/// One link of a chain, with its types erased.
pub(crate) trait Link {
    /// The success output, as `&mut Option<U>`.
    fn output_slot(&mut self) -> &mut dyn Any;
    /// Takes the failure output, or gives the success output as `output_slot` does: one
    /// call where the driver would otherwise make two.
    fn take_output(&mut self) -> Result<&mut dyn Any, Failure>;
    /// Sets the failure output (a child failed).
    fn set_failure(&mut self, failure: Failure);
    /// The failure output, if any.
    fn failure(&self) -> Option<&Failure>;
    /// The chain a child's last link hands its result to, given up: the child leaked.
    fn forwards_to(&mut self) -> Option<Rc<Core>> {
        None
    }
    /// Runs the step added at `site` on `from`'s result: the previous link, or the fired
    /// value.
    fn run(
        &mut self,
        from: &mut dyn Link,
        core: &Rc<Core>,
        site: &'static Location<'static>,
    ) -> Ran;
}

/// Takes a `Result<T, Failure>` out of `from`'s output.
#[inline]
pub(crate) fn take_result<T: 'static>(from: &mut dyn Link) -> Result<T, Failure> {
    let value = from
        .take_output()?
        .downcast_mut::<Option<T>>()
        .expect("the typed API lines chain types up")
        .take()
        .expect("a fired chain holds a result");
    Ok(value)
}

/// A result with nothing to run: what `callback`/`errback` put at the head of a chain.
pub(crate) struct Holder<T> {
    /// `Option`s because a chain moves results between type-erased links by taking them out.
    ok: Option<T>,
    err: Option<Failure>,
}

impl<T: 'static> Holder<T> {
    /// The slot of a chain's first result, fired at `site`.
    pub(crate) fn boxed(result: Result<T, Failure>, site: &'static Location<'static>) -> LinkSlot {
        let (ok, err) = match result {
            Ok(v) => (Some(v), None),
            Err(f) => (None, Some(f)),
        };
        LinkSlot::new(Self { ok, err }, None, site)
    }
}

impl<T: 'static> Link for Holder<T> {
    fn output_slot(&mut self) -> &mut dyn Any {
        &mut self.ok
    }
    fn take_output(&mut self) -> Result<&mut dyn Any, Failure> {
        match self.err.take() {
            Some(failure) => Err(failure),
            None => Ok(&mut self.ok),
        }
    }
    fn set_failure(&mut self, failure: Failure) {
        self.err = Some(failure);
    }
    fn failure(&self) -> Option<&Failure> {
        self.err.as_ref()
    }
    fn run(&mut self, _: &mut dyn Link, _: &Rc<Core>, _: &'static Location<'static>) -> Ran {
        unreachable!("a holder is never queued as a step")
    }
}

/// How a step treats its input.
pub(crate) trait Handler<T, U: 'static>: 'static {
    fn kind(&self) -> StepKind;
    /// `Err(result)` when the step does not apply to this path and passes it on.
    fn handle(self, input: Result<T, Failure>) -> Result<Next<U>, Result<U, Failure>>;
}

/// Runs on values (`add_callback`, `and_then`).
pub(crate) struct OnValue<F>(pub(crate) F);
/// Runs on failures (`add_errback`).
pub(crate) struct OnFailure<F>(pub(crate) F);
/// Runs on both (`add_both`).
pub(crate) struct OnBoth<F>(pub(crate) F);
/// One function per path (`add_callbacks`).
pub(crate) struct OnEither<F, G>(pub(crate) F, pub(crate) G);

impl<T, U, R, F> Handler<T, U> for OnValue<F>
where
    T: 'static,
    U: 'static,
    R: CallbackResult<U>,
    F: FnOnce(T) -> R + 'static,
{
    fn kind(&self) -> StepKind {
        StepKind::Callback
    }
    #[inline]
    fn handle(self, input: Result<T, Failure>) -> Result<Next<U>, Result<U, Failure>> {
        match input {
            Ok(value) => Ok((self.0)(value).into_next()),
            Err(failure) => Err(Err(failure)),
        }
    }
}

impl<T, R, F> Handler<T, T> for OnFailure<F>
where
    T: 'static,
    R: CallbackResult<T>,
    F: FnOnce(Failure) -> R + 'static,
{
    fn kind(&self) -> StepKind {
        StepKind::Errback
    }
    #[inline]
    fn handle(self, input: Result<T, Failure>) -> Result<Next<T>, Result<T, Failure>> {
        match input {
            Ok(value) => Err(Ok(value)),
            Err(failure) => Ok((self.0)(failure).into_next()),
        }
    }
}

impl<T, U, R, F> Handler<T, U> for OnBoth<F>
where
    T: 'static,
    U: 'static,
    R: CallbackResult<U>,
    F: FnOnce(Result<T, Failure>) -> R + 'static,
{
    fn kind(&self) -> StepKind {
        StepKind::Both
    }
    #[inline]
    fn handle(self, input: Result<T, Failure>) -> Result<Next<U>, Result<U, Failure>> {
        Ok((self.0)(input).into_next())
    }
}

impl<T, U, R1, R2, F, G> Handler<T, U> for OnEither<F, G>
where
    T: 'static,
    U: 'static,
    R1: CallbackResult<U>,
    R2: CallbackResult<U>,
    F: FnOnce(T) -> R1 + 'static,
    G: FnOnce(Failure) -> R2 + 'static,
{
    fn kind(&self) -> StepKind {
        StepKind::Both
    }
    #[inline]
    fn handle(self, input: Result<T, Failure>) -> Result<Next<U>, Result<U, Failure>> {
        Ok(match input {
            Ok(value) => (self.0)(value).into_next(),
            Err(failure) => (self.1)(failure).into_next(),
        })
    }
}

/// A user step: function and output; its slot keeps its kind and the line that added it.
pub(crate) struct Step<T, U, H> {
    /// Taken when the step runs: a handler runs at most once.
    handler: Option<H>,
    ok: Option<U>,
    err: Option<Failure>,
    /// The input's type: a step owns no `T`, it takes one from the link before it.
    _input: std::marker::PhantomData<fn(T)>,
}

impl<T: 'static, U: 'static, H: Handler<T, U>> Step<T, U, H> {
    pub(crate) fn boxed(handler: H, site: &'static Location<'static>) -> LinkSlot {
        // Callback, errback or both, as the step's trace reports it; the handler itself
        // decides what runs.
        let kind = handler.kind();
        let step = Self {
            handler: Some(handler),
            ok: None,
            err: None,
            _input: std::marker::PhantomData,
        };
        LinkSlot::new(step, Some(kind), site)
    }

    fn set(&mut self, result: Result<U, Failure>) -> Did {
        match result {
            Ok(value) => {
                self.ok = Some(value);
                Did::Succeeded
            }
            Err(failure) => {
                self.err = Some(failure);
                Did::Failed
            }
        }
    }
}

impl<T: 'static, U: 'static, H: Handler<T, U>> Link for Step<T, U, H> {
    fn output_slot(&mut self) -> &mut dyn Any {
        &mut self.ok
    }
    fn take_output(&mut self) -> Result<&mut dyn Any, Failure> {
        match self.err.take() {
            Some(failure) => Err(failure),
            None => Ok(&mut self.ok),
        }
    }
    fn set_failure(&mut self, failure: Failure) {
        self.err = Some(failure);
    }
    fn failure(&self) -> Option<&Failure> {
        self.err.as_ref()
    }

    fn run(
        &mut self,
        from: &mut dyn Link,
        core: &Rc<Core>,
        site: &'static Location<'static>,
    ) -> Ran {
        let input = take_result(from);
        let handler = self.handler.take().expect("a step runs once");
        let next = match std::panic::catch_unwind(AssertUnwindSafe(|| handler.handle(input))) {
            Ok(Ok(next)) => next,
            Ok(Err(passed_on)) => {
                self.set(passed_on);
                return Ran::Done(Did::Skipped);
            }
            Err(panic) => {
                let message = crate::time::panic_message(&panic);
                self.err = Some(Failure::with_site(PanicError { message }, site));
                return Ran::Done(Did::Failed);
            }
        };
        match next {
            Next::Now(result) => Ran::Done(self.set(result)),
            Next::Later(child) => {
                let child = child.into_core();
                // Its firing side is gone already: it can never hand on a result, and the
                // step fails now rather than wait for ever.
                if child.leaked() {
                    self.err = Some(Failure::with_site(super::LeakedError, site));
                    return Ran::Done(Did::Failed);
                }
                if child.at_rest()
                    && let Some(result) = child.take_result::<U>()
                {
                    self.set(result);
                    return Ran::Done(Did::Chained(child.id));
                }
                let forward = Forward::<U> {
                    parent: Some(core.clone()),
                    done: None,
                    _input: std::marker::PhantomData,
                };
                child.push_step(LinkSlot::new(forward, None, site));
                Ran::Waiting(child)
            }
        }
    }
}

/// The last link of a child chain: hands the child's result to the waiting parent.
struct Forward<U> {
    /// Strong, so a parent nobody else holds still finishes (and reports an unhandled
    /// failure) when its child fires; the cycle parent → child → this → parent ends
    /// when the child fires or its firing side is dropped.
    parent: Option<Rc<Core>>,
    /// The output slot a `Link` must expose; a forwarder's output carries nothing.
    done: Option<()>,
    _input: std::marker::PhantomData<fn(U)>,
}

impl<U: 'static> Link for Forward<U> {
    fn output_slot(&mut self) -> &mut dyn Any {
        &mut self.done
    }
    fn take_output(&mut self) -> Result<&mut dyn Any, Failure> {
        Ok(&mut self.done)
    }
    fn set_failure(&mut self, _failure: Failure) {}
    fn failure(&self) -> Option<&Failure> {
        None
    }

    fn forwards_to(&mut self) -> Option<Rc<Core>> {
        self.parent.take()
    }

    fn run(&mut self, from: &mut dyn Link, child: &Rc<Core>, _: &'static Location<'static>) -> Ran {
        let result = take_result::<U>(from);
        self.done = Some(());
        if let Some(parent) = self.parent.take() {
            parent.resume_with(child, |holder| match result {
                Ok(value) => {
                    *holder
                        .output_slot()
                        .downcast_mut::<Option<U>>()
                        .expect("the typed API lines chain types up") = Some(value);
                }
                Err(failure) => holder.set_failure(failure),
            });
        }
        Ran::Done(Did::Succeeded)
    }
}

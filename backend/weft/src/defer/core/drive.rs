//! The loop of [`Core::run`]: runs a chain's queued steps, times each one and reports it.
//! What a traced step costs is here.
//!
//! The steps queued when the loop starts are taken out of the chain as one batch and run
//! where they lie, each taking its input from the link before it, so no link moves while
//! the chain runs; the emptied batch's buffer goes back to the chain for the steps added
//! later. A step may add steps to its own chain while it runs: they queue behind the
//! batch, and run once it is done. A batch cut short by a pause or a child goes back in
//! front of them.
//!
//! What every step needs from the thread (the observer, the slow threshold, the reactor
//! profile, the clock) is looked up once per run: none of them changes while a chain runs.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use super::{Core, SLOW_REPORTED};
use crate::defer::detect;
use crate::defer::events::{DeferredEvent, FailureInfo, StepFinished, StepKind, StepOutcome};
use crate::defer::slot::LinkSlot;
use crate::defer::step::{Did, Ran};
use crate::observe::stopwatch::Laps;
use crate::observe::{self, Observer};
use crate::reactor::profile::{self, Site, SiteKind};

/// What a run looks up once for all its steps.
struct Driver<'a> {
    observer: Option<Rc<Arc<dyn Observer>>>,
    slow: Duration,
    /// The reactor profile the steps are charged to (none on a thread without a reactor).
    thread: Option<&'a profile::Thread<'a>>,
    /// One clock reading per step: the end of one step is the start of the next.
    laps: Laps,
}

impl Core {
    /// Runs queued steps until none is left, the chain pauses, or a step returns a child
    /// without a result, which it returns. The chain's result stays in a local meanwhile.
    pub(super) fn run_steps(
        self: &Rc<Self>,
        thread: Option<&profile::Thread<'_>>,
    ) -> Option<Rc<Core>> {
        let mut driver = Driver {
            observer: observe::current(),
            slow: observe::slow_threshold(),
            thread,
            laps: Laps::start(),
        };
        let mut result = self
            .result
            .borrow_mut()
            .take()
            .expect("a fired chain holds a result");
        let mut waiting = None;
        loop {
            let mut batch = std::mem::take(&mut *self.steps.borrow_mut());
            if batch.is_empty() {
                self.keep_buffer(batch);
                break;
            }
            let (ran, child) = self.run_batch(&mut result, &mut batch, &mut driver);
            let unrun = batch.split_off(ran);
            // The last step that ran holds the chain's result; the ones before it are spent.
            result = batch.pop().expect("a batch runs at least one step");
            batch.clear();
            if !unrun.is_empty() {
                let mut steps = self.steps.borrow_mut();
                let added = std::mem::replace(&mut *steps, unrun);
                steps.extend(added);
            }
            self.keep_buffer(batch);
            if child.is_some() || self.pauses.get() > 0 {
                waiting = child;
                break;
            }
        }
        *self.result.borrow_mut() = Some(result);
        waiting
    }

    /// Runs `batch` in place from its first step, whose input is `result`; returns how many
    /// steps ran and the child the last of them waits on.
    fn run_batch(
        self: &Rc<Self>,
        result: &mut LinkSlot,
        batch: &mut [LinkSlot],
        driver: &mut Driver<'_>,
    ) -> (usize, Option<Rc<Core>>) {
        let mut from = result;
        for (i, step) in batch.iter_mut().enumerate() {
            let ran = self.run_step(step, from, driver);
            if let Ran::Waiting(child) = ran {
                return (i + 1, Some(child));
            }
            if self.pauses.get() > 0 {
                return (i + 1, None);
            }
            from = step;
        }
        (batch.len(), None)
    }

    /// Gives the emptied batch's buffer back to the queue, unless steps were added meanwhile.
    fn keep_buffer(&self, batch: Vec<LinkSlot>) {
        debug_assert!(batch.is_empty());
        let mut steps = self.steps.borrow_mut();
        if steps.capacity() == 0 {
            *steps = batch;
        }
    }

    /// Runs one step on `from`'s result, times it, charges it to the reactor profile,
    /// reports it and looks for a slow callback.
    fn run_step(
        self: &Rc<Self>,
        step: &mut LinkSlot,
        from: &mut LinkSlot,
        driver: &mut Driver<'_>,
    ) -> Ran {
        let (kind, site) = (step.kind, step.site);
        let index = self.steps_run.get();
        if kind.is_some() {
            self.step_site.set(Some(site));
        }
        let span = driver.thread.map(profile::Thread::enter);
        let ran = step.run(&mut **from, self, site);
        let nanos = driver.laps.lap();
        if let (Some(thread), Some(span)) = (driver.thread, span) {
            thread.exit(span, Site::Line(site), SiteKind::Callback, nanos);
        }
        if let Some(kind) = kind {
            self.steps_run.set(index + 1);
            let took = Duration::from_nanos(nanos);
            if let Some(observer) = &driver.observer {
                self.announce();
                let event = self.step_finished(step, &ran, index, kind, took);
                observer.on_event(&observe::Event::Deferred(&event));
            }
            if took >= driver.slow && !self.flags_has(SLOW_REPORTED) {
                self.set_flag(SLOW_REPORTED, true);
                detect::report_slow(self, index, site, took, driver.slow);
            }
        }
        ran
    }

    /// The event of a step that ran.
    fn step_finished(
        &self,
        step: &LinkSlot,
        ran: &Ran,
        index: u32,
        kind: StepKind,
        duration: Duration,
    ) -> DeferredEvent {
        let outcome = match ran {
            Ran::Done(Did::Succeeded) => StepOutcome::Succeeded,
            Ran::Done(Did::Skipped) => StepOutcome::Skipped,
            Ran::Done(Did::Chained(child)) => StepOutcome::Chained { child: *child },
            Ran::Done(Did::Failed) => match step.failure() {
                Some(f) => StepOutcome::Failed(FailureInfo::of(f)),
                None => StepOutcome::Succeeded,
            },
            Ran::Waiting(child) => StepOutcome::Waiting { child: child.id },
        };
        DeferredEvent::Step(StepFinished {
            id: self.id,
            index,
            kind,
            site: crate::defer::Site(step.site),
            duration,
            outcome,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;

    use crate::defer::Deferred;

    type Order = Rc<RefCell<Vec<&'static str>>>;

    fn record(order: &Order, name: &'static str) -> impl FnOnce(u32) -> u32 + 'static {
        let order = order.clone();
        move |n| {
            order.borrow_mut().push(name);
            n + 1
        }
    }

    #[test]
    fn a_step_added_while_its_chain_runs_runs_after_the_queued_ones_even_across_a_pause() {
        let order: Order = Rc::default();
        // Where the chain's handle waits, so its own steps can reach it.
        let handle: Rc<RefCell<Option<Deferred<u32>>>> = Rc::default();
        let (resolver, d) = Deferred::<u32>::new();
        let (o, h) = (order.clone(), handle.clone());
        let d = d.add_callback(move |n| {
            o.borrow_mut().push("adds one");
            let d = h.borrow_mut().take().expect("the chain's handle");
            *h.borrow_mut() = Some(d.add_callback(record(&o, "added while running")));
            n + 1
        });
        let (o, h) = (order.clone(), handle.clone());
        let d = d.add_callback(move |n| {
            o.borrow_mut().push("pauses");
            h.borrow().as_ref().expect("the chain's handle").pause();
            n + 1
        });
        let d = d.add_callback(record(&order, "queued before firing"));
        *handle.borrow_mut() = Some(d);

        resolver.callback(0);
        assert_eq!(*order.borrow(), ["adds one", "pauses"]);
        let mut d = handle.borrow_mut().take().expect("the chain's handle");
        d.unpause();
        assert_eq!(
            *order.borrow(),
            [
                "adds one",
                "pauses",
                "queued before firing",
                "added while running"
            ]
        );
        assert_eq!(
            d.try_take().expect("ran to its end").expect("no failure"),
            4
        );
    }

    #[test]
    fn a_chain_fired_early_runs_each_step_added_later_at_once() {
        let order: Order = Rc::default();
        let d = Deferred::succeed(0_u32);
        let d = d.add_callback(record(&order, "first"));
        assert_eq!(*order.borrow(), ["first"]);
        let mut d = d.add_callback(record(&order, "second"));
        assert_eq!(*order.borrow(), ["first", "second"]);
        assert_eq!(
            d.try_take().expect("ran to its end").expect("no failure"),
            2
        );
    }
}

//! Combinators over many Deferreds: `DeferredList`, `gather_results`, `race`, and
//! `maybe_deferred`.

use std::cell::RefCell;
use std::panic::{AssertUnwindSafe, Location};
use std::rc::Rc;

use super::core::Core;
use super::deferred::{CancelHandle, pair_from};
use super::step::{CallbackResult, Next};
use super::{Deferred, Failure, FailureGroup, FirstError, PanicError, Resolver};

/// What a [`DeferredList`] fires with.
#[derive(Debug)]
pub enum ListResult<T> {
    /// Every Deferred's result, in list order.
    All(Vec<Result<T, Failure>>),
    /// With `fire_on_one_callback`: the first value to arrive, and its position.
    First {
        /// Position in the list.
        index: usize,
        /// Its value.
        value: T,
    },
}

/// Waits for a list of Deferreds (Twisted's `DeferredList`).
///
/// By default it fires with every result once all have one. `fire_on_one_callback`
/// fires with the first value instead; `fire_on_one_errback` fails with a
/// [`FirstError`] at the first failure. The list owns its Deferreds, so every failure
/// it delivers is the caller's to handle; a failure that arrives after the list fired
/// cannot be delivered, and `consume_errors(false)` (the default, as in Twisted) leaves
/// it on its Deferred to be reported as unhandled, while `consume_errors(true)` drops it.
/// Cancelling the list cancels every Deferred in it.
///
/// ```
/// use weft::defer::{Deferred, DeferredList, ListResult};
///
/// let (a, da) = Deferred::<u32>::new();
/// let (b, db) = Deferred::<u32>::new();
/// let mut list = DeferredList::new([da, db]).build();
/// b.callback(2);
/// a.callback(1);
/// let Ok(ListResult::All(results)) = list.try_take().unwrap() else { panic!() };
/// let values: Vec<u32> = results.into_iter().map(Result::unwrap).collect();
/// assert_eq!(values, [1, 2]);
/// ```
#[derive(Debug)]
#[must_use = "a DeferredList does nothing until built"]
pub struct DeferredList<T: 'static> {
    deferreds: Vec<Deferred<T>>,
    fire_on_one_callback: bool,
    fire_on_one_errback: bool,
    consume_errors: bool,
    site: &'static Location<'static>,
}

struct ListState<T: 'static> {
    /// One slot per Deferred, so the result keeps the order of the list, not the order of firing.
    results: Vec<Option<Result<T, Failure>>>,
    /// Deferreds not fired yet; the list fires when it reaches zero.
    remaining: usize,
    /// Taken when the list fires, so a result arriving after a fire-on-one changes nothing.
    resolver: Option<Resolver<ListResult<T>>>,
}

impl<T: 'static> DeferredList<T> {
    /// A list over `deferreds`, in order.
    #[track_caller]
    pub fn new(deferreds: impl IntoIterator<Item = Deferred<T>>) -> Self {
        Self {
            deferreds: deferreds.into_iter().collect(),
            fire_on_one_callback: false,
            fire_on_one_errback: false,
            consume_errors: false,
            site: Location::caller(),
        }
    }

    /// Fire with the first value that arrives.
    pub fn fire_on_one_callback(mut self, on: bool) -> Self {
        self.fire_on_one_callback = on;
        self
    }

    /// Fail with [`FirstError`] at the first failure.
    pub fn fire_on_one_errback(mut self, on: bool) -> Self {
        self.fire_on_one_errback = on;
        self
    }

    /// Drop failures the list cannot deliver instead of leaving them unhandled.
    pub fn consume_errors(mut self, on: bool) -> Self {
        self.consume_errors = on;
        self
    }

    /// Attaches to every Deferred and returns the list's own Deferred.
    pub fn build(self) -> Deferred<ListResult<T>> {
        let handles: Vec<CancelHandle> =
            self.deferreds.iter().map(Deferred::cancel_handle).collect();
        let core = Core::new(self.site, None, None);
        core.set_canceller(Box::new(move || {
            handles.iter().for_each(CancelHandle::cancel)
        }));
        let (resolver, list) = pair_from::<ListResult<T>>(core);
        let n = self.deferreds.len();
        if n == 0 {
            resolver.callback(ListResult::All(Vec::new()));
            return list;
        }
        let state = Rc::new(RefCell::new(ListState {
            results: (0..n).map(|_| None).collect(),
            remaining: n,
            resolver: Some(resolver),
        }));
        let site = self.site;
        let (on_callback, on_errback, consume) = (
            self.fire_on_one_callback,
            self.fire_on_one_errback,
            self.consume_errors,
        );
        for (index, d) in self.deferreds.into_iter().enumerate() {
            let state = state.clone();
            let step = move |result: Result<T, Failure>| -> Result<(), Failure> {
                let mut s = state.borrow_mut();
                let Some(resolver) = s.resolver.take() else {
                    // Fired already: this result has nowhere to go.
                    return match result {
                        Err(failure) if !consume => Err(failure),
                        _ => Ok(()),
                    };
                };
                let fire = match result {
                    Ok(value) if on_callback => Some(Ok(ListResult::First { index, value })),
                    Err(failure) if on_errback => {
                        Some(Err(Failure::with_site(FirstError { index, failure }, site)))
                    }
                    other => {
                        s.results[index] = Some(other);
                        s.remaining -= 1;
                        (s.remaining == 0).then(|| {
                            let all = s
                                .results
                                .iter_mut()
                                .map(|r| r.take().expect("all in"))
                                .collect();
                            Ok(ListResult::All(all))
                        })
                    }
                };
                match fire {
                    Some(result) => {
                        drop(s);
                        resolver.resolve(result);
                    }
                    None => s.resolver = Some(resolver),
                }
                Ok(())
            };
            let _attached = d.add_both(step);
        }
        list
    }
}

/// Waits for every Deferred and fires with their values in order, or fails with the
/// first failure as a [`FirstError`] (Twisted's `gatherResults`). Later failures are
/// consumed. An empty list fires at once with an empty `Vec`.
#[track_caller]
pub fn gather_results<T: 'static>(
    deferreds: impl IntoIterator<Item = Deferred<T>>,
) -> Deferred<Vec<T>> {
    let site = Location::caller();
    let mut list = DeferredList::new(deferreds)
        .fire_on_one_errback(true)
        .consume_errors(true);
    list.site = site;
    let built = list.build();
    built.and_then_at(site, |result: ListResult<T>| match result {
        ListResult::All(results) => results.into_iter().collect::<Result<Vec<T>, Failure>>(),
        ListResult::First { .. } => unreachable!("fire_on_one_callback is off"),
    })
}

struct RaceState<T: 'static> {
    resolver: Option<Resolver<(usize, T)>>,
    /// Kept by position so the `FailureGroup`, once every Deferred has failed, lists them in the
    /// order given.
    failures: Vec<Option<Failure>>,
    remaining: usize,
    /// Cancels the losers once one Deferred succeeds.
    handles: Vec<CancelHandle>,
}

/// Fires with the first value and its position, cancelling the others; fails with a
/// [`FailureGroup`] if every one fails (Twisted's `race`). Cancelling the race cancels
/// them all. An empty race fails at once.
#[track_caller]
pub fn race<T: 'static>(deferreds: impl IntoIterator<Item = Deferred<T>>) -> Deferred<(usize, T)> {
    let site = Location::caller();
    let deferreds: Vec<Deferred<T>> = deferreds.into_iter().collect();
    let handles: Vec<CancelHandle> = deferreds.iter().map(Deferred::cancel_handle).collect();
    let core = Core::new(site, None, None);
    let for_cancel = handles.clone();
    core.set_canceller(Box::new(move || {
        for_cancel.iter().for_each(CancelHandle::cancel)
    }));
    let (resolver, raced) = pair_from::<(usize, T)>(core);
    if deferreds.is_empty() {
        resolver.errback(Failure::with_site(
            FailureGroup {
                failures: Vec::new(),
            },
            site,
        ));
        return raced;
    }
    let state = Rc::new(RefCell::new(RaceState {
        resolver: Some(resolver),
        failures: (0..deferreds.len()).map(|_| None).collect(),
        remaining: deferreds.len(),
        handles,
    }));
    for (index, d) in deferreds.into_iter().enumerate() {
        let state = state.clone();
        let _attached = d.add_both(move |result: Result<T, Failure>| -> Result<(), Failure> {
            let mut s = state.borrow_mut();
            let Some(resolver) = s.resolver.take() else {
                return Ok(()); // a loser, cancelled or late: the race consumed it
            };
            match result {
                Ok(value) => {
                    let losers: Vec<CancelHandle> = std::mem::take(&mut s.handles)
                        .into_iter()
                        .enumerate()
                        .filter_map(|(i, h)| (i != index).then_some(h))
                        .collect();
                    drop(s);
                    resolver.callback((index, value));
                    losers.iter().for_each(CancelHandle::cancel);
                }
                Err(failure) => {
                    s.failures[index] = Some(failure);
                    s.remaining -= 1;
                    if s.remaining == 0 {
                        let failures = s.failures.iter_mut().filter_map(Option::take).collect();
                        drop(s);
                        resolver.errback(Failure::with_site(FailureGroup { failures }, site));
                    } else {
                        s.resolver = Some(resolver);
                    }
                }
            }
            Ok(())
        });
    }
    raced
}

/// Calls `f` and gives its result as a Deferred, whatever it returned: a result, a
/// Deferred, or a panic, which becomes a [`PanicError`] failure (Twisted's `maybeDeferred`).
#[track_caller]
pub fn maybe_deferred<U: 'static, R: CallbackResult<U>>(f: impl FnOnce() -> R) -> Deferred<U> {
    maybe_deferred_at(Location::caller(), f)
}

/// [`maybe_deferred`] with the site a Deferred it makes is said to be made at: the line
/// that asked for the calls (a [`LoopingCall`](crate::task::LoopingCall)'s), not the
/// library's line that makes them.
pub(crate) fn maybe_deferred_at<U: 'static, R: CallbackResult<U>>(
    site: &'static Location<'static>,
    f: impl FnOnce() -> R,
) -> Deferred<U> {
    match std::panic::catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => match r.into_next() {
            Next::Later(d) => d,
            Next::Now(result) => {
                let (resolver, d) = pair_from(Core::new(site, None, None));
                resolver.resolve(result);
                d
            }
        },
        Err(panic) => {
            let message = crate::time::panic_message(&panic);
            let (resolver, d) = pair_from(Core::new(site, None, None));
            resolver.errback(Failure::with_site(PanicError { message }, site));
            d
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::defer::CancelledError;
    use crate::observe;
    use crate::testing::RecordingObserver;

    #[derive(Debug, thiserror::Error)]
    #[error("boom {0}")]
    struct Boom(u32);

    fn take<T>(mut d: Deferred<T>) -> Result<T, Failure> {
        d.try_take().expect("fired")
    }

    fn record() -> Arc<RecordingObserver> {
        let rec = RecordingObserver::new();
        observe::set_observer(Some(rec.clone()));
        rec
    }

    #[test]
    fn an_empty_list_fires_at_once_with_nothing() {
        let d = DeferredList::<u32>::new([]).build();
        assert!(matches!(take(d), Ok(ListResult::All(v)) if v.is_empty()));
        assert!(take(gather_results::<u32>([])).unwrap().is_empty());
    }

    #[test]
    fn a_list_waits_for_all_and_keeps_list_order_and_failures() {
        let (a, da) = Deferred::<u32>::new();
        let (b, db) = Deferred::<u32>::new();
        let mut list = DeferredList::new([da, db]).build();
        b.errback(Failure::new(Boom(2)));
        assert!(list.try_take().is_none());
        a.callback(1);
        let Ok(ListResult::All(results)) = take(list) else {
            panic!("expected all results")
        };
        assert_eq!(*results[0].as_ref().unwrap(), 1);
        assert!(results[1].as_ref().unwrap_err().check::<Boom>());
    }

    #[test]
    fn all_failing_lists_deliver_every_failure() {
        let rec = record();
        let list = DeferredList::new([
            Deferred::<u32>::fail(Failure::new(Boom(1))),
            Deferred::fail(Failure::new(Boom(2))),
        ])
        .build();
        let Ok(ListResult::All(results)) = take(list) else {
            panic!()
        };
        assert!(results.iter().all(Result::is_err));
        assert_eq!(rec.count("Unhandled"), 0, "the caller got them all");
        observe::set_observer(None);
    }

    #[test]
    fn fire_on_one_callback_fires_with_the_first_value() {
        let (a, da) = Deferred::<u32>::new();
        let (b, db) = Deferred::<u32>::new();
        let list = DeferredList::new([da, db])
            .fire_on_one_callback(true)
            .build();
        b.callback(7);
        assert!(matches!(
            take(list),
            Ok(ListResult::First { index: 1, value: 7 })
        ));
        a.callback(1);
    }

    #[test]
    fn fire_on_one_errback_fails_with_first_error_and_consume_errors_governs_the_rest() {
        for consume in [false, true] {
            let rec = record();
            let (a, da) = Deferred::<u32>::new();
            let (b, db) = Deferred::<u32>::new();
            let list = DeferredList::new([da, db])
                .fire_on_one_errback(true)
                .consume_errors(consume)
                .build();
            a.errback(Failure::new(Boom(1)));
            let first = take(list).unwrap_err().trap::<FirstError>().unwrap();
            assert_eq!(first.index, 0);
            assert!(first.failure.check::<Boom>());
            b.errback(Failure::new(Boom(2)));
            let expected = if consume { 0 } else { 1 };
            assert_eq!(rec.count("Unhandled"), expected, "consume_errors={consume}");
            observe::set_observer(None);
        }
    }

    #[test]
    fn cancelling_a_list_cancels_its_deferreds() {
        let (a, da) = Deferred::<u32>::new();
        let list = DeferredList::new([da]).build();
        list.cancel();
        assert!(a.is_called());
        let Ok(ListResult::All(results)) = take(list) else {
            panic!()
        };
        assert!(results[0].as_ref().unwrap_err().check::<CancelledError>());
    }

    #[test]
    fn gather_results_collects_values_or_the_first_failure() {
        let d = gather_results([Deferred::succeed(1), Deferred::succeed(2)]);
        assert_eq!(take(d).unwrap(), [1, 2]);
        let d = gather_results([
            Deferred::succeed(1),
            Deferred::fail(Failure::new(Boom(2))),
            Deferred::fail(Failure::new(Boom(3))),
        ]);
        let first = take(d).unwrap_err().trap::<FirstError>().unwrap();
        assert_eq!(first.index, 1);
    }

    #[test]
    fn race_fires_with_the_first_value_and_cancels_the_losers() {
        let (a, da) = Deferred::<u32>::new();
        let (b, db) = Deferred::<u32>::new();
        let (c, dc) = Deferred::<u32>::new();
        let raced = race([da, db, dc]);
        a.errback(Failure::new(Boom(1)));
        b.callback(2);
        assert_eq!(take(raced).unwrap(), (1, 2));
        assert!(c.is_called(), "the loser was cancelled");
    }

    #[test]
    fn race_fails_with_every_failure_when_all_fail_or_none_run() {
        let raced = race([
            Deferred::<u32>::fail(Failure::new(Boom(1))),
            Deferred::fail(Failure::new(Boom(2))),
        ]);
        let group = take(raced).unwrap_err().trap::<FailureGroup>().unwrap();
        assert_eq!(group.failures.len(), 2);
        let empty = race::<u32>([]);
        assert!(take(empty).unwrap_err().check::<FailureGroup>());
    }

    #[test]
    fn maybe_deferred_wraps_results_deferreds_and_panics() {
        assert_eq!(take(maybe_deferred(|| Ok::<_, Failure>(1))).unwrap(), 1);
        assert_eq!(take(maybe_deferred(|| Deferred::succeed(2))).unwrap(), 2);
        let failed = maybe_deferred::<u32, Result<u32, Failure>>(|| panic!("no"));
        assert!(take(failed).unwrap_err().check::<PanicError>());
    }
}

//! Chain semantics and detectors, through the public API, on a fake clock.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::observe::{self, ConnectionId};
use crate::testing::Clock;
use crate::testing::RecordingObserver;

#[derive(Debug, thiserror::Error)]
#[error("boom")]
struct Boom;

fn record() -> Arc<RecordingObserver> {
    let rec = RecordingObserver::new();
    observe::set_observer(Some(rec.clone()));
    rec
}

fn ok<T: 'static>(mut d: Deferred<T>) -> T {
    d.try_take().expect("has a result").expect("succeeded")
}

fn err<T: 'static + std::fmt::Debug>(mut d: Deferred<T>) -> Failure {
    d.try_take().expect("has a result").expect_err("failed")
}

#[test]
fn callbacks_run_in_order_each_feeding_the_next() {
    let (r, d) = Deferred::<u32>::new();
    let d = d
        .add_callback(|n| n + 1)
        .add_callback(|n| n * 10)
        .add_callback(|n| n.to_string());
    r.callback(1);
    assert_eq!(ok(d), "20");
}

#[test]
fn callbacks_added_after_firing_run_at_once() {
    let d = Deferred::succeed(2).add_callback(|n: i32| n * 2);
    assert_eq!(d.state(), DeferredState::Succeeded);
    assert_eq!(ok(d), 4);
}

#[test]
fn an_error_switches_to_the_errback_path_and_an_errback_recovers() {
    let seen = Rc::new(RefCell::new(Vec::new()));
    let (s1, s2) = (seen.clone(), seen.clone());
    let (r, d) = Deferred::<u32>::new();
    let d = d
        .and_then(|_| Err::<u32, _>(Failure::new(Boom)))
        .add_callback(move |n| {
            s1.borrow_mut().push("skipped callback ran");
            n
        })
        .add_errback(move |f| {
            s2.borrow_mut().push(f.type_name());
            Ok(7)
        })
        .add_callback(|n| n + 1);
    r.callback(0);
    assert_eq!(ok(d), 8);
    assert_eq!(*seen.borrow(), ["Boom"]);
}

#[test]
fn an_errback_may_pass_the_failure_on_with_trap() {
    let d = Deferred::<u32>::fail(Failure::new(Boom))
        .add_errback(|f| {
            f.trap::<CancelledError>()?;
            Ok(0)
        })
        .add_errback(|f| {
            assert!(f.check::<Boom>());
            Err(f)
        });
    assert!(err(d).check::<Boom>());
}

#[test]
fn add_callbacks_errback_does_not_see_its_own_callbacks_failure() {
    let d = Deferred::succeed(1).add_callbacks(
        |_| Err::<u32, _>(Failure::new(Boom)),
        |_| -> Result<u32, Failure> { panic!("errback of the same step ran") },
    );
    assert!(err(d).check::<Boom>());
}

#[test]
fn add_both_sees_either_path() {
    let d = Deferred::<u32>::fail(Failure::new(Boom)).add_both(|r| Ok(r.is_err()));
    assert!(ok(d));
}

#[test]
fn a_panicking_callback_becomes_a_failure_at_its_site() {
    let line = line!() + 1;
    let d = Deferred::succeed(1).add_callback(|_: i32| -> i32 { panic!("kaboom") });
    let f = err(d);
    let panic = f.downcast_ref::<PanicError>().unwrap();
    assert_eq!(panic.message, "kaboom");
    assert_eq!(f.site().line(), line);
}

#[test]
fn a_callback_returning_an_unfired_deferred_waits_for_it_and_records_the_link() {
    let rec = record();
    let (outer, d) = Deferred::<u32>::new();
    let (inner, child) = Deferred::<u32>::new();
    let child_id = child.id();
    let d = d.and_then(move |n| child.add_callback(move |m| n + m));
    outer.callback(1);
    assert_eq!(d.state(), DeferredState::Waiting);
    let listed = pending().into_iter().find(|p| p.id == d.id()).unwrap();
    assert_eq!(listed.waiting_on, Some(child_id));
    assert_eq!(
        rec.count(&format!("Waiting {{ child: DeferredId({child_id}) }}")),
        1
    );
    inner.callback(41);
    assert_eq!(ok(d), 42);
    assert_eq!(rec.count("Resumed"), 1);
    observe::set_observer(None);
}

#[test]
fn a_callback_returning_a_fired_deferred_goes_on_at_once() {
    let rec = record();
    let d = Deferred::succeed(1).and_then(|n| Deferred::succeed(n + 1));
    assert_eq!(ok(d), 2);
    assert_eq!(rec.count("Chained"), 1);
    assert_eq!(rec.count("Paused"), 0);
    observe::set_observer(None);
}

#[test]
fn a_childs_failure_continues_on_the_parents_errback_path() {
    let (inner, child) = Deferred::<u32>::new();
    let d = Deferred::succeed(())
        .and_then(move |()| child)
        .add_errback(|f| Ok(if f.check::<Boom>() { 99 } else { 0 }));
    inner.errback(Failure::new(Boom));
    assert_eq!(ok(d), 99);
}

#[test]
fn chains_nest_through_several_levels() {
    let (r3, d3) = Deferred::<u32>::new();
    let d2 = Deferred::succeed(()).and_then(move |()| d3.add_callback(|n| n + 1));
    let d1 = Deferred::succeed(()).and_then(move |()| d2.add_callback(|n| n * 2));
    r3.callback(1);
    assert_eq!(ok(d1), 4);
}

#[test]
fn cancel_without_canceller_fails_with_cancelled_error_and_later_firing_is_ignored() {
    let (r, d) = Deferred::<u32>::new();
    d.cancel();
    assert!(r.is_called());
    assert_eq!(r.try_callback(1), Err(AlreadyCalledError));
    assert_eq!(d.state(), DeferredState::Cancelled);
    assert!(err(d).check::<CancelledError>());
}

/// A cancelled chain is reported with its `CancelledError` and where `cancel` was called,
/// as a failed one is with its failure.
#[test]
fn a_cancelled_chain_is_reported_with_the_cancel_and_its_site() {
    let rec = record();
    let (_r, d) = Deferred::<u32>::new();
    let d = d.add_errback(Err);
    let line = line!() + 1;
    d.cancel();
    for event in ["Fired", "Settled"] {
        let seen = rec.first(event).unwrap();
        assert!(
            seen.contains("Cancelled(FailureInfo { type_name: \"CancelledError\"")
                && seen.contains(&format!("tests.rs:{line}")),
            "{seen}"
        );
    }
    observe::set_observer(None);
    drop(d);
}

#[test]
fn the_canceller_runs_and_may_fire_the_deferred_itself() {
    let fired = Rc::new(RefCell::new(None::<Resolver<u32>>));
    let slot = fired.clone();
    let (r, d) = Deferred::<u32>::with_canceller(move || {
        slot.borrow_mut().take().unwrap().callback(5);
    });
    *fired.borrow_mut() = Some(r);
    d.cancel();
    assert_eq!(ok(d), 5);
}

/// A canceller that panics still cancels: the panic stays inside `cancel`, the Deferred
/// fails with `CancelledError`, and its resolver dropped afterwards is no leak.
#[test]
fn a_canceller_that_panics_still_cancels() {
    let rec = record();
    let (r, d) = Deferred::<u32>::with_canceller(|| panic!("the canceller broke"));
    d.cancel();
    assert!(err(d).check::<CancelledError>());
    assert!(r.is_called());
    drop(r);
    assert_eq!(rec.count("Leaked"), 0);
    observe::set_observer(None);
}

#[test]
fn cancel_propagates_into_the_deferred_being_waited_on() {
    let cancelled = Rc::new(RefCell::new(false));
    let flag = cancelled.clone();
    let (_inner, child) = Deferred::<u32>::with_canceller(move || *flag.borrow_mut() = true);
    let (outer, d) = Deferred::<()>::new();
    let d = d.and_then(move |()| child);
    outer.callback(());
    d.cancel();
    assert!(*cancelled.borrow());
    assert!(err(d).check::<CancelledError>());
}

#[test]
fn cancelling_a_fired_deferred_does_nothing() {
    let d = Deferred::succeed(3);
    d.cancel();
    assert_eq!(ok(d), 3);
}

#[test]
fn add_timeout_turns_the_cancellation_into_a_timeout_error() {
    let clock = Clock::fake();
    let _g = clock.install();
    let (r, d) = Deferred::<u32>::new();
    let d = d.add_timeout(Duration::from_secs(2));
    clock.advance(Duration::from_millis(1999));
    assert_eq!(d.state(), DeferredState::Pending);
    clock.advance(Duration::from_millis(1));
    let f = err(d);
    assert_eq!(
        f.downcast_ref::<TimeoutError>().unwrap().after,
        Duration::from_secs(2)
    );
    assert!(r.is_called());
    drop(r);
}

#[test]
fn a_deferred_that_fires_in_time_cancels_its_timer() {
    let clock = Clock::fake();
    let _g = clock.install();
    let (r, d) = Deferred::<u32>::new();
    let d = d.add_timeout(Duration::from_secs(2));
    r.callback(1);
    assert!(clock.pending_calls().is_empty());
    assert_eq!(ok(d), 1);
}

#[test]
fn a_timeout_cancels_the_child_being_waited_on() {
    let clock = Clock::fake();
    let _g = clock.install();
    let (inner, child) = Deferred::<u32>::new();
    let d = Deferred::succeed(())
        .and_then(move |()| child)
        .add_timeout(Duration::from_secs(1));
    clock.advance(Duration::from_secs(1));
    assert!(inner.is_called(), "the child was cancelled");
    assert!(err(d).check::<TimeoutError>());
}

#[test]
fn pause_holds_the_chain_until_unpaused() {
    let (r, d) = Deferred::<u32>::new();
    d.pause();
    d.pause();
    let d = d.add_callback(|n| n + 1);
    r.callback(1);
    assert_eq!(d.state(), DeferredState::Paused);
    d.unpause();
    assert_eq!(d.state(), DeferredState::Paused);
    d.unpause();
    assert_eq!(ok(d), 2);
}

#[test]
fn chain_deferred_feeds_another_deferred() {
    let (r2, d2) = Deferred::<u32>::new();
    let rest = Deferred::succeed(8).chain_deferred(r2);
    assert_eq!(ok(d2), 8);
    ok(rest);
}

#[test]
fn a_deferred_created_in_a_protocol_callback_belongs_to_its_connection() {
    let conn = ConnectionId(4242);
    let (_r, d) = observe::with_connection(Some(conn), Deferred::<()>::new);
    let (_r2, d2) = Deferred::<()>::traced(Some("explicit"), Some(ConnectionId(7)));
    let listed = pending();
    let find = |id| listed.iter().find(|p| p.id == id).unwrap().clone();
    assert_eq!(find(d.id()).connection, Some(conn));
    assert_eq!(find(d2.id()).connection, Some(ConnectionId(7)));
    assert_eq!(find(d2.id()).label, Some("explicit"));
}

#[test]
fn a_deferred_created_inside_a_callback_names_its_parent() {
    let rec = record();
    let parent = Deferred::succeed(());
    let parent_id = parent.id();
    let d = parent.and_then(|()| Deferred::succeed(1));
    ok(d);
    assert_eq!(
        rec.count(&format!("parent: Some(DeferredId({parent_id}))")),
        1
    );
    observe::set_observer(None);
}

#[test]
fn the_registry_lists_pending_deferreds_with_site_and_state_and_forgets_fired_ones() {
    let clock = Clock::fake();
    let _g = clock.install();
    let line = line!() + 1;
    let (r, d) = Deferred::<u32>::labeled("lookup");
    let d = d.add_callback(|n| n);
    clock.advance(Duration::from_secs(3));
    let p = pending().into_iter().find(|p| p.id == d.id()).unwrap();
    assert_eq!(p.site.line(), line);
    assert_eq!(p.label, Some("lookup"));
    assert_eq!(p.state, DeferredState::Pending);
    assert_eq!(p.age, Duration::from_secs(3));
    assert!(p.step_site.is_some());
    r.callback(1);
    assert!(pending().iter().all(|p| p.id != d.id()));
    ok(d);
}

#[test]
fn unhandled_failure_is_reported_once_when_the_last_handle_drops() {
    let rec = record();
    let line = line!() + 1;
    let d = Deferred::<u32>::fail(Failure::new(Boom)).add_callback(|n| n);
    assert_eq!(
        rec.count("Unhandled"),
        0,
        "someone may still add an errback"
    );
    drop(d);
    assert_eq!(rec.count("Unhandled"), 1);
    let event = rec.first("Unhandled").unwrap();
    assert!(event.contains(&format!("tests.rs:{line}")), "{event}");
    observe::set_observer(None);
}

/// A chain whose end is let go as handled still ends failed, and is recorded so (its
/// `Settled` says the failure), but nobody is told of an unhandled failure.
#[test]
fn a_chain_ended_as_handled_is_recorded_failed_and_never_reported_unhandled() {
    let rec = record();
    let (r, d) = Deferred::<u32>::new();
    d.add_callback(|n| n).end_handled();
    r.errback(Failure::new(Boom));
    assert_eq!(rec.count("Unhandled"), 0);
    assert_eq!(rec.count("Settled"), 1);
    let settled = rec.first("Settled").unwrap();
    assert!(settled.contains("Failed"), "{settled}");
    Deferred::<u32>::fail(Failure::new(Boom)).end_handled();
    assert_eq!(rec.count("Unhandled"), 0);
    // A step that panics is not what its chain's steps dealt with: still reported.
    Deferred::succeed(1_u32)
        .add_callback(|_| -> u32 { panic!("a bug in the last step") })
        .end_handled();
    assert_eq!(rec.count("Unhandled"), 1);
    observe::set_observer(None);
}

#[test]
fn unhandled_failure_after_the_handle_is_gone_is_reported_when_it_fires() {
    let rec = record();
    let (r, d) = Deferred::<u32>::new();
    drop(d);
    assert_eq!(rec.count("Unhandled"), 0);
    r.errback(Failure::new(Boom));
    assert_eq!(rec.count("Unhandled"), 1);
    observe::set_observer(None);
}

#[test]
fn no_unhandled_report_for_a_handled_or_successful_chain() {
    let rec = record();
    drop(Deferred::<u32>::fail(Failure::new(Boom)).add_errback(|_| Ok(0)));
    drop(Deferred::succeed(1));
    let (r, d) = Deferred::<u32>::new();
    drop(d.add_errback(|_| Ok(1)));
    r.errback(Failure::new(Boom));
    ok(Deferred::<u32>::fail(Failure::new(Boom)).add_errback(|_| Ok(1)));
    assert_eq!(rec.count("Unhandled"), 0);
    observe::set_observer(None);
}

#[test]
fn dropping_the_resolver_unfired_reports_a_leak_once() {
    let rec = record();
    let (r, d) = Deferred::<u32>::new();
    drop(r);
    assert_eq!(rec.count("Leaked"), 1);
    drop(d);
    assert_eq!(rec.count("Leaked"), 1);
    let (r, d) = Deferred::<u32>::new();
    r.callback(1);
    ok(d);
    let (r, d) = Deferred::<u32>::new();
    d.cancel();
    drop(r);
    assert_eq!(rec.count("Leaked"), 1, "fired or cancelled ones never leak");
    observe::set_observer(None);
}

#[test]
fn a_leaked_child_frees_the_parent_waiting_on_it() {
    let (inner, child) = Deferred::<u32>::new();
    let d = Deferred::succeed(()).and_then(move |()| child);
    let weak = std::rc::Rc::downgrade(d.core());
    drop(d);
    assert!(
        weak.upgrade().is_some(),
        "the child's forward link keeps the parent"
    );
    drop(inner);
    assert!(weak.upgrade().is_none());
}

/// The cycle parent → child → forward link → parent is broken at every level of a leak,
/// not only the leaked chain's own: no chain waiting on it, directly or not, outlives it.
#[test]
fn a_leaked_grandchild_frees_every_chain_waiting_on_it() {
    let (r3, d3) = Deferred::<u32>::new();
    let d2 = Deferred::succeed(()).and_then(move |()| d3);
    let weak2 = std::rc::Rc::downgrade(d2.core());
    let d1 = Deferred::succeed(()).and_then(move |()| d2);
    let weak1 = std::rc::Rc::downgrade(d1.core());
    drop(d1);
    assert!(weak1.upgrade().is_some() && weak2.upgrade().is_some());
    drop(r3);
    assert!(weak2.upgrade().is_none(), "the child waiting on the leak");
    assert!(
        weak1.upgrade().is_none(),
        "the parent waiting on that child"
    );
    assert_eq!(pending_count(), 0);
}

/// A step that returns a Deferred whose firing side is gone already fails at once with
/// `LeakedError`, rather than wait on it for ever.
#[test]
fn a_step_returning_a_deferred_leaked_already_fails_with_leaked_error() {
    let d = Deferred::succeed(()).and_then(|()| {
        let (_gone, child) = Deferred::<u32>::new();
        child
    });
    assert!(err(d).check::<crate::defer::LeakedError>());
    assert_eq!(pending_count(), 0);
}

/// Twisted's ticket 411: a chain that waits on a chain that waits on ... ends in a loop,
/// each parent resumed after its child's run, not inside it.
#[test]
fn a_chain_nested_a_hundred_thousand_deep_ends_without_deepening_the_stack() {
    const DEPTH: u32 = 100_000;
    let (r, mut d) = Deferred::<u32>::new();
    for _ in 0..DEPTH {
        let child = d;
        d = Deferred::succeed(()).and_then(move |()| child.add_callback(|n| n + 1));
    }
    r.callback(0);
    assert_eq!(ok(d), DEPTH);

    // Cancelled from the top, it is the innermost that is cancelled, found in a loop.
    let (_r, mut d) = Deferred::<u32>::new();
    for _ in 0..DEPTH {
        let child = d;
        d = Deferred::succeed(()).and_then(move |()| child);
    }
    d.cancel();
    assert!(err(d).check::<CancelledError>());

    // And one that leaks, then is dropped, frees every level the same way.
    let (r, mut d) = Deferred::<u32>::new();
    for _ in 0..DEPTH {
        let child = d;
        d = Deferred::succeed(()).and_then(move |()| child);
    }
    drop(d);
    drop(r);
    assert_eq!(pending_count(), 0);
}

#[test]
fn stalled_is_reported_once_past_the_threshold_and_never_for_fired_ones() {
    let rec = record();
    let clock = Clock::fake();
    let _g = clock.install();
    set_stall_threshold(Duration::from_secs(5));
    let _watch = watch_stalls();
    let (_stuck_r, stuck) = Deferred::<u32>::labeled("stuck");
    let (done_r, done) = Deferred::<u32>::new();
    clock.advance(Duration::from_secs(2));
    done_r.callback(1);
    clock.advance(Duration::from_secs(2));
    assert_eq!(rec.count("Stalled"), 0);
    for _ in 0..10 {
        clock.advance(Duration::from_secs(1));
    }
    assert_eq!(rec.count("Stalled"), 1);
    let event = rec.first("Stalled").unwrap();
    assert!(
        event.contains(&format!("DeferredId({})", stuck.id())),
        "{event}"
    );
    ok(done);
    observe::set_observer(None);
}

/// A chain whose firing side was dropped is reported leaked, once: it can never complete,
/// and a stall report past the threshold would say the same thing of it again.
#[test]
fn a_leaked_chain_is_not_reported_stalled_too() {
    let rec = record();
    let clock = Clock::fake();
    let _g = clock.install();
    set_stall_threshold(Duration::from_secs(5));
    let _watch = watch_stalls();
    let (r, leaked) = Deferred::<u32>::new();
    let (_r, stuck) = Deferred::<u32>::new();
    drop(r);
    // A chain waiting on a child that leaks was reported of nothing: it stalls.
    let (child_r, child) = Deferred::<u32>::new();
    let parent = Deferred::succeed(()).and_then(move |()| child);
    drop(child_r);
    for _ in 0..10 {
        clock.advance(Duration::from_secs(1));
    }
    assert_eq!(rec.count("Leaked"), 2, "the two that leaked");
    let stalled: Vec<String> = rec
        .events()
        .iter()
        .filter(|e| e.contains("Stalled"))
        .cloned()
        .collect();
    assert_eq!(stalled.len(), 2, "{stalled:?}");
    for id in [stuck.id(), parent.id()] {
        assert!(
            stalled
                .iter()
                .any(|e| e.contains(&format!("DeferredId({id})"))),
            "{id:?} stalled: {stalled:?}"
        );
    }
    drop((leaked, parent));
    observe::set_observer(None);
}

#[test]
fn a_chain_waiting_on_a_child_stalls_from_the_moment_it_paused_under_its_label_threshold() {
    let rec = record();
    let clock = Clock::fake();
    let _g = clock.install();
    set_stall_threshold_for("waits", Duration::from_secs(1));
    set_stall_threshold(Duration::from_secs(60));
    let _watch = watch_stalls();
    let (outer, d) = Deferred::<()>::labeled("waits");
    let (_inner, child) = Deferred::<u32>::new();
    let line = line!() + 1;
    let d = d.and_then(move |()| child);
    let tick = |ms: u64| clock.pump((0..ms / 50).map(|_| Duration::from_millis(50)));
    tick(900);
    outer.callback(());
    tick(900);
    assert_eq!(rec.count("Stalled"), 0, "the wait started when it fired");
    tick(400);
    let stalled: Vec<String> = rec
        .events()
        .into_iter()
        .filter(|e| e.contains("Stalled"))
        .collect();
    assert_eq!(stalled.len(), 1, "{stalled:?}");
    assert!(stalled[0].contains("Waiting"), "{}", stalled[0]);
    assert!(
        stalled[0].contains(&format!("tests.rs:{line}")),
        "{}",
        stalled[0]
    );
    drop(d);
    observe::set_observer(None);
}

#[test]
fn a_slow_callback_is_reported_once_with_its_site() {
    let rec = record();
    observe::set_slow_threshold(Duration::ZERO);
    let d = Deferred::succeed(1);
    let line = line!() + 1;
    let d = d.add_callback(|n: i32| n);
    let d = d.add_callback(|n| n);
    assert_eq!(rec.count("SlowCallback"), 1);
    let event = rec.first("SlowCallback").unwrap();
    assert!(
        event.contains(&format!("callback_site: {}:{line}", file!())),
        "{event}"
    );
    observe::set_slow_threshold(Duration::from_secs(3600));
    ok(d);
    ok(Deferred::succeed(1).add_callback(|n: i32| n));
    assert_eq!(rec.count("SlowCallback"), 1);
    observe::set_observer(None);
}

#[test]
fn every_step_reports_kind_site_and_outcome() {
    let rec = record();
    let d = Deferred::<u32>::fail(Failure::new(Boom))
        .add_callback(|n| n)
        .add_errback(|_| Ok(1));
    ok(d);
    let steps: Vec<String> = rec
        .events()
        .into_iter()
        .filter(|e| e.contains("Step("))
        .collect();
    assert_eq!(steps.len(), 2);
    assert!(steps[0].contains("kind: Callback") && steps[0].contains("Skipped"));
    assert!(steps[1].contains("kind: Errback") && steps[1].contains("outcome: Succeeded"));
    assert_eq!(rec.count("Created"), 1);
    assert_eq!(rec.count("Fired"), 1);
    assert_eq!(rec.count("Settled"), 1);
    observe::set_observer(None);
}

#[test]
fn steps_that_cannot_run_yet_are_reported_queued_at_the_place_they_will_run() {
    let rec = record();
    let queued = |rec: &RecordingObserver, id: DeferredId| -> Vec<String> {
        let id = format!("id: DeferredId({})", id.0);
        rec.events()
            .into_iter()
            .filter(|e| e.contains("Queued(") && e.contains(&id))
            .collect()
    };
    let (r, d) = Deferred::<u32>::new();
    let id = d.id();
    let line = line!() + 1;
    let d = d.add_callback(|n| n + 1).add_errback(|_| Ok(0));
    let q = queued(&rec, id);
    assert_eq!(q.len(), 2, "{q:?}");
    assert!(q[0].contains("index: 0") && q[0].contains("kind: Callback"));
    assert!(
        q[0].contains(&format!("site: {}:{line}", file!())),
        "{}",
        q[0]
    );
    assert!(q[1].contains("index: 1") && q[1].contains("kind: Errback"));
    r.callback(1);
    assert_eq!(rec.count("Step("), 2);

    // Fired and idle: a step added now runs at once, reported once, when it has run.
    let d = d.add_callback(|n| n * 2);
    assert_eq!(queued(&rec, id).len(), 2);

    // Waiting on a child: what is added after the step that returned it waits too, and
    // its index counts the steps that ran at once.
    let (child_r, child) = Deferred::<u32>::new();
    let d = d
        .and_then(move |n| child.add_callback(move |c| n + c))
        .add_callback(|n| n + 100);
    let q = queued(&rec, id);
    assert_eq!(q.len(), 3, "{q:?}");
    assert!(q[2].contains("index: 4"), "{}", q[2]);
    child_r.callback(10);
    assert_eq!(ok(d), 114);

    // Paused: queued until unpaused.
    let d = Deferred::succeed(1u8);
    let id = d.id();
    d.pause();
    let d = d.add_callback(|n| n + 1);
    assert_eq!(queued(&rec, id).len(), 1);
    d.unpause();
    assert_eq!(ok(d), 2);
    observe::set_observer(None);
}

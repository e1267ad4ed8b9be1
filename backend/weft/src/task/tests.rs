//! LoopingCall, defer_later and defer_to_thread on a fake clock (and one real reactor).

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use super::*;
use crate::defer::CancelledError;
use crate::testing::Clock;

#[derive(Debug, thiserror::Error)]
#[error("tick failed")]
struct TickFailed;

const SEC: Duration = Duration::from_secs(1);

/// A loop that records the clock time of each call.
/// A reactor for one test, leaving signals alone.
fn reactor() -> crate::Reactor {
    crate::Reactor::with_config(crate::ReactorConfig {
        handle_signals: false,
        ..Default::default()
    })
    .unwrap()
}

fn recording_loop(clock: &Clock) -> (LoopingCall, Rc<RefCell<Vec<Duration>>>) {
    let times = Rc::new(RefCell::new(Vec::new()));
    let (t, c) = (times.clone(), clock.clone());
    let lc = LoopingCall::new(move || {
        t.borrow_mut().push(c.now());
        Ok::<_, Failure>(())
    })
    .with_clock(clock.clone());
    (lc, times)
}

#[test]
fn runs_now_and_then_every_interval_until_stopped() {
    let clock = Clock::fake();
    let (lc, times) = recording_loop(&clock);
    let mut done = lc.start(SEC, true).unwrap();
    clock.pump([SEC; 3]);
    assert_eq!(*times.borrow(), [0, 1, 2, 3].map(Duration::from_secs));
    assert!(done.try_take().is_none());
    lc.stop();
    assert!(done.try_take().unwrap().is_ok());
    assert!(clock.pending_calls().is_empty());
    clock.advance(SEC * 5);
    assert_eq!(times.borrow().len(), 4);
}

/// A loop runs on with every handle to it dropped, as Twisted's does (the reactor holds
/// its next call), until its function fails; then nothing of it is left.
#[test]
fn a_loop_whose_handles_are_dropped_runs_until_it_ends() {
    let clock = Clock::fake();
    let calls = Rc::new(Cell::new(0));
    let counted = calls.clone();
    let lc = LoopingCall::new(move || {
        counted.set(counted.get() + 1);
        if counted.get() == 4 {
            return Err(Failure::new(TickFailed));
        }
        Ok(())
    })
    .with_clock(clock.clone());
    let inner = Rc::downgrade(&lc.inner);
    let mut done = lc.start(SEC, true).unwrap();
    drop(lc);
    clock.pump([SEC; 5]);
    assert_eq!(calls.get(), 4, "it ran until its function failed");
    assert!(done.try_take().unwrap().is_err());
    assert!(inner.upgrade().is_none(), "an ended loop is freed");
    assert!(clock.pending_calls().is_empty());

    // One still running when its clock goes (its reactor stopped) is freed with it.
    let lc = LoopingCall::new(|| Ok::<_, Failure>(())).with_clock(clock.clone());
    let inner = Rc::downgrade(&lc.inner);
    let _done = lc.start(SEC, true).unwrap();
    drop(lc);
    drop(clock);
    assert!(
        inner.upgrade().is_none(),
        "a loop outliving its clock is freed"
    );
}

#[test]
fn without_now_the_first_run_waits_one_interval() {
    let clock = Clock::fake();
    let (lc, times) = recording_loop(&clock);
    let _done = lc.start(SEC * 2, false).unwrap();
    clock.advance(SEC);
    assert!(times.borrow().is_empty());
    clock.advance(SEC);
    assert_eq!(*times.borrow(), [SEC * 2]);
    lc.stop();
}

#[test]
fn missed_intervals_are_skipped_and_runs_stay_on_the_grid() {
    let clock = Clock::fake();
    let (lc, times) = recording_loop(&clock);
    let _done = lc.start(SEC, true).unwrap();
    clock.advance(Duration::from_millis(3500));
    clock.advance(Duration::from_millis(500));
    assert_eq!(
        *times.borrow(),
        [Duration::ZERO, Duration::from_millis(3500), SEC * 4],
        "one late run for the missed points, then back on the grid"
    );
    assert_eq!(lc.calls(), 3);
    lc.stop();
}

#[test]
fn a_run_returning_a_deferred_is_waited_for() {
    let clock = Clock::fake();
    let pending: Rc<RefCell<Option<Resolver<()>>>> = Rc::default();
    let slot = pending.clone();
    let lc = LoopingCall::new(move || {
        let (r, d) = Deferred::<()>::new();
        *slot.borrow_mut() = Some(r);
        d
    })
    .with_clock(clock.clone());
    let _done = lc.start(SEC, true).unwrap();
    clock.pump([SEC; 3]);
    assert_eq!(
        lc.calls(),
        1,
        "no new run while the last one's Deferred is pending"
    );
    clock.advance(Duration::from_millis(500));
    pending.borrow_mut().take().unwrap().callback(());
    clock.advance(Duration::from_millis(500));
    assert_eq!(lc.calls(), 2, "next run at the next grid point, 4 s");
    lc.stop();
    pending.borrow_mut().take().unwrap().callback(());
}

#[test]
fn a_failing_run_fails_the_loop_and_stops_it() {
    let clock = Clock::fake();
    let n = Rc::new(Cell::new(0));
    let c = n.clone();
    let lc = LoopingCall::new(move || {
        c.set(c.get() + 1);
        if c.get() == 2 {
            Err(Failure::new(TickFailed))
        } else {
            Ok(())
        }
    })
    .with_clock(clock.clone());
    let mut done = lc.start(SEC, true).unwrap();
    clock.pump([SEC; 5]);
    assert_eq!(n.get(), 2);
    assert!(!lc.running());
    assert!(done.try_take().unwrap().unwrap_err().check::<TickFailed>());
}

#[test]
fn stop_during_a_run_fires_when_the_run_finishes() {
    let clock = Clock::fake();
    let pending: Rc<RefCell<Option<Resolver<()>>>> = Rc::default();
    let slot = pending.clone();
    let lc = LoopingCall::new(move || {
        let (r, d) = Deferred::<()>::new();
        *slot.borrow_mut() = Some(r);
        d
    })
    .with_clock(clock.clone());
    let mut done = lc.start(SEC, true).unwrap();
    lc.stop();
    assert!(done.try_take().is_none());
    pending.borrow_mut().take().unwrap().callback(());
    assert!(done.try_take().unwrap().is_ok());
    assert_eq!(lc.calls(), 1);
}

#[test]
fn starting_twice_is_refused() {
    let clock = Clock::fake();
    let (lc, _) = recording_loop(&clock);
    let _done = lc.start(SEC, false).unwrap();
    assert_eq!(
        lc.start(SEC, false).unwrap_err(),
        LoopingCallError::AlreadyRunning
    );
    lc.stop();
    let _again = lc.start(SEC, false).unwrap();
    lc.stop();
}

/// A zero interval on a fake clock: again and again within one `advance`, each run
/// told 1, until the function stops it (Twisted's `test_withCountIntervalZero`).
#[test]
fn a_zero_interval_runs_again_within_one_advance_of_a_fake_clock_until_stopped() {
    let clock = Clock::fake();
    let told = Rc::new(RefCell::new(Vec::new()));
    let slot: Rc<RefCell<Option<LoopingCall>>> = Rc::default();
    let (t, s) = (told.clone(), slot.clone());
    let lc = LoopingCall::with_count(move |count| {
        t.borrow_mut().push(count);
        if t.borrow().len() > 4
            && let Some(lc) = s.borrow().as_ref()
        {
            lc.stop();
        }
        Ok::<_, Failure>(())
    })
    .with_clock(clock.clone());
    let mut done = lc.start(Duration::ZERO, false).unwrap();
    *slot.borrow_mut() = Some(lc);
    clock.advance(Duration::ZERO);
    assert!(done.try_take().unwrap().is_ok());
    assert_eq!(*told.borrow(), [1, 1, 1, 1, 1]);
    slot.borrow_mut().take();
}

/// A zero interval on the reactor: once a turn, so the reactor's other work goes on
/// between runs (a timer of 20 ms fires while the loop runs, and stops it).
#[test]
fn a_zero_interval_on_the_reactor_runs_once_a_turn_and_lets_the_rest_run() {
    let reactor = reactor();
    let runs = Rc::new(Cell::new(0u64));
    let r = reactor.clone();
    let counted = runs.clone();
    reactor.call_when_running(move || {
        let lc = LoopingCall::new(move || {
            counted.set(counted.get() + 1);
            Ok::<_, Failure>(())
        });
        let _done = lc.start(Duration::ZERO, true).unwrap();
        let r2 = r.clone();
        let _stop = crate::time::call_later(Duration::from_millis(20), move || {
            lc.stop();
            r2.stop();
        });
    });
    reactor.run().unwrap();
    assert!(runs.get() > 10, "{} runs", runs.get());
}

#[test]
fn defer_later_calls_f_after_the_delay() {
    let clock = Clock::fake();
    let mut d = defer_later(&clock, SEC * 2, || Ok::<_, Failure>("late"));
    clock.advance(SEC);
    assert!(d.try_take().is_none());
    clock.advance(SEC);
    assert_eq!(d.try_take().unwrap().unwrap(), "late");
}

#[test]
fn cancelling_defer_later_cancels_the_call() {
    let clock = Clock::fake();
    let called = Rc::new(Cell::new(false));
    let c = called.clone();
    let mut d = defer_later(&clock, SEC, move || {
        c.set(true);
        Ok::<_, Failure>(())
    });
    d.cancel();
    assert!(clock.pending_calls().is_empty());
    clock.advance(SEC);
    assert!(!called.get());
    assert!(d.try_take().unwrap().unwrap_err().check::<CancelledError>());
}

#[test]
fn defer_to_thread_runs_elsewhere_and_delivers_on_the_reactor_thread() {
    let reactor = reactor();
    let reactor_thread = std::thread::current().id();
    let seen = Rc::new(RefCell::new(None));
    let s = seen.clone();
    let r = reactor.clone();
    reactor.call_when_running(move || {
        let d = defer_to_thread(|| Ok::<_, std::io::Error>(std::thread::current().id()));
        let failing = defer_to_thread(|| Err::<(), _>(std::io::Error::other("disk")));
        let both = crate::defer::gather_results([
            d.add_callback(|id| (id, std::thread::current().id())),
            failing
                .add_errback(|f| {
                    assert_eq!(f.type_name(), "Error");
                    Ok(())
                })
                .add_callback(|()| (std::thread::current().id(), std::thread::current().id())),
        ]);
        let _stopped = both.add_callback(move |ids| {
            *s.borrow_mut() = Some(ids[0]);
            r.stop();
        });
    });
    reactor.run().unwrap();
    let (worker, delivered) = seen.borrow_mut().take().expect("the Deferred fired");
    assert_ne!(worker, reactor_thread);
    assert_eq!(delivered, reactor_thread);
}

/// Records the thread it is dropped on.
struct DroppedOn(std::sync::mpsc::Sender<std::thread::ThreadId>);

impl Drop for DroppedOn {
    fn drop(&mut self) {
        let _ = self.0.send(std::thread::current().id());
    }
}

#[test]
fn drop_in_background_frees_on_a_blocking_thread_under_a_reactor_and_here_without_one() {
    let (tx, rx) = std::sync::mpsc::channel();
    let here = std::thread::current().id();
    drop_in_background(DroppedOn(tx.clone()));
    assert_eq!(rx.recv().unwrap(), here, "no runtime: dropped at once");

    let reactor = reactor();
    let r = reactor.clone();
    reactor.call_when_running(move || {
        drop_in_background(DroppedOn(tx));
        r.stop();
    });
    reactor.run().unwrap();
    let on = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("dropped in the background");
    assert_ne!(on, here, "dropped off the reactor thread");
}

#[test]
fn each_run_s_deferred_is_made_where_the_loop_was() {
    // The inspector lists a run's chain where the loop was asked for, not at the library
    // line that calls the function.
    let recorder = crate::testing::RecordingObserver::new();
    crate::observe::set_observer(Some(recorder.clone()));
    let clock = Clock::fake();
    let line = line!() + 1;
    let lc = LoopingCall::new(|| Ok::<_, Failure>(())).with_clock(clock.clone());
    let _done = lc.start(SEC, true).unwrap();
    clock.pump([SEC; 2]);
    lc.stop();
    crate::observe::set_observer(None);
    let created: Vec<String> = recorder
        .events()
        .into_iter()
        .filter(|e| e.contains("Created"))
        .collect();
    // The loop's own Deferred and one for each of its three runs.
    assert_eq!(created.len(), 4, "{created:#?}");
    let here = format!("task/tests.rs:{line}");
    assert!(created.iter().all(|e| e.contains(&here)), "{created:#?}");
}

/// A `with_count` loop on `clock` that keeps what each run was told.
fn counting_loop(clock: &Clock) -> (LoopingCall, Rc<RefCell<Vec<u64>>>) {
    let counts = Rc::new(RefCell::new(Vec::new()));
    let seen = counts.clone();
    let lc = LoopingCall::with_count(move |n| {
        seen.borrow_mut().push(n);
        Ok::<_, Failure>(())
    })
    .with_clock(clock.clone());
    (lc, counts)
}

/// `with_count` tells each run how many intervals went by since the last (Twisted's
/// `withCount`): 1 on time, more after runs skipped for a late one.
#[test]
fn with_count_tells_each_run_the_intervals_since_the_last() {
    let clock = Clock::fake();
    let (lc, counts) = counting_loop(&clock);
    let _done = lc.start(SEC, true).unwrap();
    clock.advance(SEC);
    clock.advance(SEC);
    // Late by two and a half intervals: the runs due meanwhile are skipped, and counted.
    clock.advance(SEC * 3 + SEC / 2);
    clock.advance(SEC / 2);
    assert_eq!(*counts.borrow(), [1, 1, 1, 3, 1]);
    lc.stop();
}

/// Without a run at once, the first run is counted from `start`: one that ran late by
/// nine intervals is told ten, as Twisted's `withCount` tells it.
#[test]
fn with_count_counts_a_late_first_run_from_the_start() {
    let clock = Clock::fake();
    let (lc, counts) = counting_loop(&clock);
    let _done = lc.start(SEC, false).unwrap();
    clock.advance(SEC * 10);
    clock.advance(SEC);
    assert_eq!(*counts.borrow(), [10, 1]);
    lc.stop();
    counts.borrow_mut().clear();
    let _done = lc.start(SEC, false).unwrap();
    clock.advance(SEC);
    assert_eq!(*counts.borrow(), [1], "on time, 1");
    lc.stop();
}

/// `reset` skips the run due and starts the grid from now (Twisted's `reset`).
#[test]
fn reset_starts_the_grid_again_from_now() {
    let clock = Clock::fake();
    let (lc, times) = recording_loop(&clock);
    let _done = lc.start(SEC * 2, false).unwrap();
    clock.advance(SEC + SEC / 2);
    lc.reset();
    clock.advance(SEC);
    assert!(times.borrow().is_empty(), "the run due at 2 s was skipped");
    clock.advance(SEC);
    clock.advance(SEC * 2);
    assert_eq!(
        *times.borrow(),
        [Duration::from_millis(3500), Duration::from_millis(5500)]
    );
    lc.stop();
    lc.reset();
    assert!(clock.pending_calls().is_empty());
}

//! Tasks polled by hand on a fake clock: figures, and each detector.

use std::cell::RefCell;
use std::future::{Future, poll_fn};
use std::panic::Location;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use super::*;
use crate::defer::{
    Deferred, DeferredEvent, DeferredId, HOLD, set_stall_threshold, set_stall_threshold_for,
};
use crate::observe::{self, ConnectionId, Event, Observer};
use crate::testing::Clock;

/// Keeps every Deferred event (tasks report through them).
#[derive(Default)]
struct Capture {
    events: Mutex<Vec<DeferredEvent>>,
    /// Passes every chain over (`sample_chain` says no), as a sampling hub does mostly.
    passes_over: bool,
    /// How many times `sample_chain` was asked.
    asked: std::sync::atomic::AtomicUsize,
}

impl Observer for Capture {
    fn on_event(&self, event: &Event<'_>) {
        if let Event::Deferred(d) = event {
            self.events.lock().unwrap().push((*d).clone());
        }
    }

    fn sample_chain(&self) -> bool {
        self.asked
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        !self.passes_over
    }
}

impl Capture {
    fn install() -> Arc<Self> {
        Self::installed(Self::default())
    }

    /// Installed, passing every chain over.
    fn passing_over() -> Arc<Self> {
        Self::installed(Self {
            passes_over: true,
            ..Self::default()
        })
    }

    fn installed(capture: Self) -> Arc<Self> {
        let capture = Arc::new(capture);
        observe::set_observer(Some(capture.clone()));
        capture
    }

    fn events(&self) -> Vec<DeferredEvent> {
        self.events.lock().unwrap().clone()
    }

    /// What was reported of the chain `id`, by event name.
    fn of_chain(&self, id: DeferredId) -> Vec<&'static str> {
        self.events()
            .iter()
            .filter_map(|e| match e {
                DeferredEvent::Created(c) if c.id == id => Some("created"),
                DeferredEvent::Named(n) if n.id == id => Some(n.step.name),
                DeferredEvent::Fired(f) if f.id == id => Some(match f.outcome {
                    crate::defer::Outcome::Succeeded => "fired",
                    _ => "failed",
                }),
                DeferredEvent::Settled(s) if s.id == id => Some("settled"),
                DeferredEvent::Paused(p) if p.id == id => Some("paused"),
                _ => None,
            })
            .collect()
    }
}

fn poll<F: Future + ?Sized>(f: Pin<&mut F>) -> Poll<F::Output> {
    f.poll(&mut Context::from_waker(Waker::noop()))
}

fn site() -> &'static Location<'static> {
    Location::caller()
}

#[test]
fn polls_busy_and_idle_time_are_counted_in_the_tasks_cell() {
    let clock = Clock::fake();
    let _installed = clock.install();
    let capture = Capture::install();
    let step = clock.clone();
    let mut polls = 0;
    let task = instrument(
        poll_fn(move |cx| {
            polls += 1;
            step.advance(Duration::from_millis(10));
            if polls < 3 {
                cx.waker().wake_by_ref();
                Poll::Pending
            } else {
                Poll::Ready(())
            }
        }),
        TaskKind::Spawned,
        Some("counter"),
        site(),
        None,
    );
    let mut task = Box::pin(task);
    assert!(poll(task.as_mut()).is_pending());
    clock.advance(Duration::from_millis(5));
    assert!(poll(task.as_mut()).is_pending());
    clock.advance(Duration::from_millis(5));
    let listed = pending_tasks();
    let [mine] = &listed[..] else {
        panic!("one live task: {listed:?}")
    };
    assert_eq!(mine.label, Some("counter"));
    assert_eq!(mine.figures.polls, 2);
    assert_eq!(mine.figures.busy, Duration::from_millis(20));
    assert_eq!(mine.figures.idle, Duration::from_millis(10));
    assert_eq!(mine.figures.state, TaskState::Idle);
    assert_eq!(mine.figures.wakes, 2);
    assert!(poll(task.as_mut()).is_ready());
    drop(task);
    assert!(pending_tasks().is_empty(), "an ended task leaves the table");
    let ended = capture
        .events()
        .into_iter()
        .find_map(|e| match e {
            DeferredEvent::TaskEnded(e) => Some(e),
            _ => None,
        })
        .expect("its end is reported");
    assert!(ended.completed);
    assert_eq!(ended.figures.polls, 3);
    assert_eq!(ended.figures.busy, Duration::from_millis(30));
    observe::set_observer(None);
}

#[test]
fn a_poll_longer_than_slow_callback_is_slow_naming_the_spawn_site_and_label() {
    let clock = Clock::fake();
    let _installed = clock.install();
    let capture = Capture::install();
    observe::set_slow_threshold(Duration::from_millis(100));
    let spawned_at = site();
    let busy = clock.clone();
    let mut task = Box::pin(instrument(
        async move {
            // Blocks the thread past the threshold, as a CPU-bound poll would.
            busy.advance(Duration::from_millis(250));
        },
        TaskKind::Spawned,
        Some("cruncher"),
        spawned_at,
        None,
    ));
    assert!(poll(task.as_mut()).is_ready());
    let slow: Vec<_> = capture
        .events()
        .into_iter()
        .filter_map(|e| match e {
            DeferredEvent::SlowCallback(s) => Some(s),
            _ => None,
        })
        .collect();
    let [slow] = &slow[..] else {
        panic!("one slow report: {slow:?}")
    };
    assert_eq!(slow.subject.site.0, spawned_at);
    assert_eq!(slow.subject.label, Some("cruncher"));
    assert_eq!(slow.duration, Duration::from_millis(250));
    observe::set_observer(None);
}

#[test]
fn a_task_pending_past_stall_after_is_stalled_once_with_the_deferred_it_awaits() {
    let clock = Clock::fake();
    let _installed = clock.install();
    let capture = Capture::install();
    set_stall_threshold(Duration::from_secs(1));
    set_stall_threshold_for("patient", Duration::from_secs(60));
    let (resolver, d) = Deferred::<()>::new();
    let awaited = d.id();
    let mut stuck = Box::pin(instrument(
        async move {
            let _ = d.await;
        },
        TaskKind::Spawned,
        Some("stuck"),
        site(),
        None,
    ));
    let (_keep, never) = Deferred::<()>::new();
    let mut patient = Box::pin(instrument(
        async move {
            let _ = never.await;
        },
        TaskKind::Spawned,
        Some("patient"),
        site(),
        None,
    ));
    assert!(poll(stuck.as_mut()).is_pending());
    assert!(poll(patient.as_mut()).is_pending());
    clock.advance(Duration::from_millis(900));
    crate::defer::scan_for_stalls();
    let stalled = || {
        capture
            .events()
            .into_iter()
            .filter_map(|e| match e {
                // The Deferreds themselves stall too; only the tasks are labelled here.
                DeferredEvent::Stalled(s) if s.subject.label.is_some() => Some(s),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    assert!(stalled().is_empty(), "not stalled before its threshold");
    clock.advance(Duration::from_millis(200));
    crate::defer::scan_for_stalls();
    crate::defer::scan_for_stalls();
    let reports = stalled();
    let [report] = &reports[..] else {
        panic!("the stuck task, once, and not the patient one: {reports:?}")
    };
    assert_eq!(report.subject.label, Some("stuck"));
    assert_eq!(report.waiting_on, Some(awaited));
    assert!(report.stalled_for >= Duration::from_secs(1));
    resolver.callback(());
    assert!(poll(stuck.as_mut()).is_ready());
    set_stall_threshold(crate::ReactorConfig::DEFAULT_STALL_AFTER);
    observe::set_observer(None);
}

#[test]
fn a_task_waiting_on_its_peer_is_not_stalled() {
    let clock = Clock::fake();
    let _installed = clock.install();
    let capture = Capture::install();
    set_stall_threshold(Duration::from_secs(1));
    let waker = Rc::new(RefCell::new(None::<Waker>));
    let kept = waker.clone();
    let mut reading = Box::pin(instrument(
        poll_fn(move |cx| {
            *kept.borrow_mut() = Some(cx.waker().clone());
            waiting_on_peer();
            Poll::<()>::Pending
        }),
        TaskKind::Connection,
        None,
        site(),
        None,
    ));
    assert!(poll(reading.as_mut()).is_pending());
    clock.advance(Duration::from_secs(5));
    crate::defer::scan_for_stalls();
    assert!(
        !capture
            .events()
            .iter()
            .any(|e| matches!(e, DeferredEvent::Stalled(_) | DeferredEvent::Leaked(_))),
        "{:?}",
        capture.events()
    );
    set_stall_threshold(crate::ReactorConfig::DEFAULT_STALL_AFTER);
    observe::set_observer(None);
}

#[test]
fn a_task_whose_waker_is_dropped_while_pending_is_leaked() {
    let clock = Clock::fake();
    let _installed = clock.install();
    let capture = Capture::install();
    let leaked = || {
        capture
            .events()
            .into_iter()
            .filter_map(|e| match e {
                DeferredEvent::Leaked(l) => Some(l.subject.label),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    // Pending without keeping its waker anywhere: noticed as the poll returns.
    let mut forgetful = Box::pin(instrument(
        poll_fn(|_| Poll::<()>::Pending),
        TaskKind::Spawned,
        Some("forgetful"),
        site(),
        None,
    ));
    assert!(poll(forgetful.as_mut()).is_pending());
    assert_eq!(leaked(), vec![Some("forgetful")]);

    // Keeps its waker, until whoever held it drops it unwoken: noticed by the scan.
    let held = Rc::new(RefCell::new(None::<Waker>));
    let keep = held.clone();
    let mut dropped_later = Box::pin(instrument(
        poll_fn(move |cx| {
            *keep.borrow_mut() = Some(cx.waker().clone());
            Poll::<()>::Pending
        }),
        TaskKind::Spawned,
        Some("dropped later"),
        site(),
        None,
    ));
    assert!(poll(dropped_later.as_mut()).is_pending());
    crate::defer::scan_for_stalls();
    assert_eq!(leaked().len(), 1, "held: not leaked");
    held.borrow_mut().take();
    crate::defer::scan_for_stalls();
    assert_eq!(leaked(), vec![Some("forgetful"), Some("dropped later")]);

    // Woken and dropped (the waker consumed): about to run, not leaked.
    let woken = Rc::new(RefCell::new(None::<Waker>));
    let keep = woken.clone();
    let mut about_to_run = Box::pin(instrument(
        poll_fn(move |cx| {
            *keep.borrow_mut() = Some(cx.waker().clone());
            Poll::<()>::Pending
        }),
        TaskKind::Spawned,
        Some("woken"),
        site(),
        None,
    ));
    assert!(poll(about_to_run.as_mut()).is_pending());
    woken.borrow_mut().take().unwrap().wake();
    crate::defer::scan_for_stalls();
    assert_eq!(leaked().len(), 2);
    observe::set_observer(None);
}

#[test]
fn a_task_spawned_and_not_yet_polled_is_neither_leaked_nor_stalled() {
    // Its executor has it queued: nothing holds its waker, and nothing needs to. A scan
    // between the spawn and the first poll (hyper spawning HTTP/2 streams under load)
    // once reported such tasks leaked.
    let clock = Clock::fake();
    let _installed = clock.install();
    let capture = Capture::install();
    set_stall_threshold(Duration::from_secs(1));
    let mut queued = Box::pin(instrument(
        poll_fn(|_| Poll::Ready(())),
        TaskKind::Spawned,
        Some("queued"),
        site(),
        None,
    ));
    crate::defer::scan_for_stalls();
    clock.advance(Duration::from_secs(5));
    crate::defer::scan_for_stalls();
    let reported = |events: Vec<DeferredEvent>| {
        events
            .into_iter()
            .filter(|e| matches!(e, DeferredEvent::Leaked(_) | DeferredEvent::Stalled(_)))
            .count()
    };
    assert_eq!(reported(capture.events()), 0, "queued, not stuck");
    assert!(poll(queued.as_mut()).is_ready());
    assert_eq!(reported(capture.events()), 0);
    set_stall_threshold(crate::ReactorConfig::DEFAULT_STALL_AFTER);
    observe::set_observer(None);
}

/// Runs `body` as one poll of an instrumented task.
fn one_poll<T>(body: impl FnOnce() -> T) -> T {
    let mut body = Some(body);
    let task = instrument(
        poll_fn(move |_| Poll::Ready(body.take().expect("polled once")())),
        TaskKind::Spawned,
        Some("connection"),
        site(),
        None,
    );
    match poll(std::pin::pin!(task)) {
        Poll::Ready(out) => out,
        Poll::Pending => unreachable!("the body is ready at once"),
    }
}

/// A request's chain made, taken through `steps` and ended well, in one task poll.
fn served(steps: &[&'static str]) -> DeferredId {
    one_poll(|| {
        let (resolver, d) = Deferred::<()>::traced(Some("request"), None);
        let marks = d.steps();
        for step in steps {
            marks.step(step);
        }
        let id = d.id();
        drop(d);
        resolver.callback(());
        id
    })
}

/// A request's chain made, taken through `steps` and failed, in one task poll.
fn failed(steps: &[&'static str]) -> DeferredId {
    one_poll(|| {
        let (resolver, mut d) = Deferred::<()>::traced(Some("request"), None);
        let id = d.id();
        let marks = d.steps();
        for step in steps {
            marks.step(step);
        }
        resolver.errback(crate::defer::Failure::new(std::io::Error::other("refused")));
        let _ = d.try_take();
        id
    })
}

#[test]
fn a_chain_passed_over_that_ends_well_inside_one_poll_reports_nothing() {
    let clock = Clock::fake();
    let _installed = clock.install();
    let capture = Capture::passing_over();
    let id = served(&["route"]);
    assert_eq!(capture.of_chain(id), Vec::<&str>::new());
    assert!(crate::defer::pending().is_empty());

    // Sampled, the same chain is reported from start to end.
    let capture = Capture::install();
    let id = served(&["route"]);
    assert_eq!(
        capture.of_chain(id),
        ["created", "route", "fired", "settled"]
    );
    observe::set_observer(None);
}

#[test]
fn a_chain_passed_over_is_announced_once_pending_for_the_hold_with_every_step_dated() {
    let clock = Clock::fake();
    let _installed = clock.install();
    let capture = Capture::passing_over();
    let step_clock = clock.clone();
    let (resolver, d) = one_poll(|| {
        let made = Deferred::<()>::traced(Some("request"), None);
        let prefix = crate::defer::StepDetail::from_static("/api/");
        made.1.steps().step_with("route", None, Some(&prefix));
        step_clock.advance(Duration::from_millis(30));
        made.1.steps().step("response head");
        made
    });
    let id = d.id();
    // Pending past its poll, it is listed on its thread but not reported yet.
    assert_eq!(capture.of_chain(id), Vec::<&str>::new());
    let listed = crate::defer::pending();
    assert_eq!(listed.iter().map(|p| p.id).collect::<Vec<_>>(), [id]);
    assert_eq!(
        listed[0].named.as_ref().map(|n| (n.index, n.name)),
        Some((1, "response head"))
    );

    clock.advance(HOLD);
    assert_eq!(
        capture.of_chain(id),
        ["created", "route", "response head"],
        "announced with every step it went through"
    );
    let events = capture.events();
    let created = events
        .iter()
        .find_map(|e| match e {
            DeferredEvent::Created(c) if c.id == id => Some(c.clone()),
            _ => None,
        })
        .expect("created");
    assert!(!created.sampled);
    let step = |index| {
        events
            .iter()
            .find_map(|e| match e {
                DeferredEvent::Named(n) if n.id == id && n.step.index == index => Some(n.clone()),
                _ => None,
            })
            .unwrap_or_else(|| panic!("step {index}"))
    };
    let (route, head) = (step(0), step(1));
    assert_eq!(
        route.step.detail.as_ref().map(|d| d.as_str()),
        Some("/api/"),
        "a step passed keeps its detail"
    );
    let age = |at: std::time::SystemTime| {
        std::time::SystemTime::now()
            .duration_since(at)
            .expect("dated in the past")
    };
    assert!(
        age(created.at) >= HOLD + Duration::from_millis(30),
        "dated at its creation: {:?}",
        age(created.at)
    );
    assert!(
        age(head.at) >= HOLD && age(head.at) < HOLD + Duration::from_millis(30),
        "each step dated at its start: {:?}",
        age(head.at)
    );

    drop(d);
    resolver.callback(());
    assert_eq!(
        capture.of_chain(id),
        ["created", "route", "response head", "fired", "settled"]
    );
    observe::set_observer(None);
}

#[test]
fn a_chain_passed_over_that_ends_well_within_the_hold_reports_nothing() {
    let clock = Clock::fake();
    let _installed = clock.install();
    let capture = Capture::passing_over();
    let (resolver, d) = one_poll(|| {
        let made = Deferred::<()>::traced(Some("request"), None);
        made.1.steps().step("route");
        made
    });
    let id = d.id();
    clock.advance(HOLD - Duration::from_millis(1));
    let steps = d.steps();
    one_poll(|| steps.step("response head"));
    drop(d);
    resolver.callback(());
    clock.advance(HOLD * 3);
    assert_eq!(capture.of_chain(id), Vec::<&str>::new());
    assert!(crate::defer::pending().is_empty());
    observe::set_observer(None);
}

#[test]
fn a_chain_passed_over_is_announced_before_a_failure_or_a_leak_is_reported() {
    let clock = Clock::fake();
    let _installed = clock.install();
    let capture = Capture::passing_over();
    let failed = failed(&[]);
    assert_eq!(capture.of_chain(failed), ["created", "failed", "settled"]);

    let leaked = one_poll(|| {
        let (resolver, d) = Deferred::<()>::traced(Some("request"), None);
        let id = d.id();
        drop(resolver);
        id
    });
    let events = capture.events();
    let reported: Vec<&str> = events
        .iter()
        .filter_map(|e| match e {
            DeferredEvent::Created(c) if c.id == leaked => Some("created"),
            DeferredEvent::Leaked(l) if l.subject.id == leaked => Some("leaked"),
            _ => None,
        })
        .collect();
    assert_eq!(reported, ["created", "leaked"]);
    observe::set_observer(None);
}

#[test]
fn a_chain_passed_over_outside_a_task_poll_is_reported_at_once() {
    let clock = Clock::fake();
    let _installed = clock.install();
    let capture = Capture::passing_over();
    let (resolver, d) = Deferred::<()>::traced(Some("callback"), None);
    let id = d.id();
    drop(d);
    resolver.callback(());
    assert_eq!(capture.of_chain(id), ["created", "fired", "settled"]);
    observe::set_observer(None);
}

#[test]
fn a_chain_passed_over_that_goes_through_several_steps_in_one_poll_reports_nothing() {
    let clock = Clock::fake();
    let _installed = clock.install();
    let capture = Capture::passing_over();
    let id = served(&["route", "connect upstream", "response head"]);
    assert_eq!(capture.of_chain(id), Vec::<&str>::new());

    // Failing after them, it reports every one.
    let failed = failed(&["route", "connect upstream"]);
    assert_eq!(
        capture.of_chain(failed),
        ["created", "route", "connect upstream", "failed", "settled"]
    );
    observe::set_observer(None);
}

#[test]
fn a_chain_passed_over_that_marks_steps_in_a_loop_keeps_only_the_first_ones() {
    let clock = Clock::fake();
    let _installed = clock.install();
    let capture = Capture::passing_over();
    const NAMES: [&str; 4] = ["read", "parse", "write", "flush"];
    let (resolver, d) = one_poll(|| {
        let made = Deferred::<()>::traced(Some("stream"), None);
        for i in 0..10_000 {
            made.1.steps().step(NAMES[i % NAMES.len()]);
        }
        made
    });
    let id = d.id();
    clock.advance(HOLD);
    let reported = capture.of_chain(id);
    assert_eq!(
        reported.len(),
        1 + 32,
        "created, 31 first steps and the current one"
    );
    let last = capture
        .events()
        .into_iter()
        .filter_map(|e| match e {
            DeferredEvent::Named(n) if n.id == id => Some(n.step.index),
            _ => None,
        })
        .last();
    assert_eq!(last, Some(9_999), "the current step keeps its place");
    drop(d);
    resolver.callback(());
    observe::set_observer(None);
}

#[test]
fn a_held_chain_whose_work_ends_in_its_poll_is_never_made_listed_or_reported() {
    let clock = Clock::fake();
    let _installed = clock.install();
    let capture = Capture::passing_over();
    let id = one_poll(|| {
        let held = crate::defer::Held::<()>::new(Some("request"), None);
        assert!(!held.wanted(), "passed over, with no spans exported");
        held.steps().step("route");
        assert!(crate::defer::pending().is_empty(), "held: listed nowhere");
        held.id()
    });
    clock.advance(HOLD * 2);
    assert_eq!(capture.of_chain(id), Vec::<&str>::new());
    assert!(crate::defer::pending().is_empty());

    // Sampled, it is wanted: its maker makes it at once, and it is reported as made.
    let capture = Capture::install();
    let (id, resolver, d) = one_poll(|| {
        let held = crate::defer::Held::<()>::new(Some("request"), None);
        assert!(held.wanted());
        let id = held.id();
        let (resolver, d) = held.make();
        (id, resolver, d)
    });
    assert_eq!(d.id(), id);
    assert_eq!(capture.of_chain(id), ["created"]);
    let sampled = capture.events().iter().any(|e| match e {
        DeferredEvent::Created(c) => c.id == id && c.sampled,
        _ => false,
    });
    assert!(sampled, "made with the sampler's answer");
    let asked = capture.asked.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(
        asked, 1,
        "the sampler is asked once, when the chain is held"
    );
    drop(d);
    resolver.callback(());
    observe::set_observer(None);
}

#[test]
fn a_held_chain_made_when_its_work_waits_is_dated_when_held_with_its_steps() {
    let clock = Clock::fake();
    let _installed = clock.install();
    let capture = Capture::passing_over();
    let step_clock = clock.clone();
    let (resolver, d) = one_poll(|| {
        let held = crate::defer::Held::<()>::new(Some("request"), None);
        held.steps().step("route");
        step_clock.advance(Duration::from_millis(30));
        held.steps().step("read file");
        // The work has to wait: the chain is made, and held back as any passed over.
        held.make()
    });
    let id = d.id();
    assert_eq!(capture.of_chain(id), Vec::<&str>::new());
    let listed = crate::defer::pending();
    assert_eq!(listed.iter().map(|p| p.id).collect::<Vec<_>>(), [id]);
    assert_eq!(listed[0].age, Duration::from_millis(30), "dated when held");
    assert_eq!(
        listed[0].named.as_ref().map(|n| (n.index, n.name)),
        Some((1, "read file"))
    );

    clock.advance(HOLD);
    assert_eq!(
        capture.of_chain(id),
        ["created", "route", "read file"],
        "announced with every step it went through while held"
    );
    drop(d);
    resolver.callback(());
    assert_eq!(
        capture.of_chain(id),
        ["created", "route", "read file", "fired", "settled"]
    );

    // Made outside any task poll, it is reported at once, from when it was held.
    let held = crate::defer::Held::<()>::new(Some("request"), None);
    held.steps().step("route");
    let (resolver, d) = held.make();
    let id = d.id();
    assert_eq!(capture.of_chain(id), ["created", "route"]);
    drop(d);
    resolver.callback(());
    observe::set_observer(None);
}

#[test]
fn a_chain_passed_over_and_extended_after_it_ended_is_reported_whole_if_its_new_step_fails() {
    // `Deferred::succeed(x)` made in a poll and passed over ends unreported; a step added
    // later that fails announces it: its end must follow, or the observer would list it
    // as running for ever (before, it was announced made and fired, and never ended).
    let clock = Clock::fake();
    let _installed = clock.install();
    let capture = Capture::passing_over();
    let d = one_poll(|| Deferred::succeed(1));
    let id = d.id();
    assert_eq!(capture.of_chain(id), Vec::<&str>::new());
    let d = d.and_then(|_| Err::<u32, _>(crate::defer::Failure::new(std::fmt::Error)));
    // It fired with a success; it ended failed.
    assert_eq!(capture.of_chain(id), ["created", "fired", "settled"]);
    let settled = capture.events().into_iter().find_map(|e| match e {
        DeferredEvent::Settled(s) if s.id == id => Some(s),
        _ => None,
    });
    assert!(
        settled.is_some_and(|s| s.outcome.state() == crate::defer::DeferredState::Failed),
        "{:?}",
        capture.events()
    );
    assert!(crate::defer::pending().is_empty());
    drop(d);
    observe::set_observer(None);
}

#[test]
fn what_a_connections_task_spawns_or_creates_in_its_polls_belongs_to_the_connection() {
    let capture = Capture::install();
    let connection = ConnectionId(41);
    let inner = Rc::new(RefCell::new(None));
    // Spawned from the connection's callback, as a tcp-proxy connects its upstream.
    let spawned = observe::with_connection(Some(connection), || {
        let inner = inner.clone();
        instrument(
            poll_fn(move |_| {
                // In its own poll, outside any callback: a connect's task, a Deferred.
                let task = instrument(
                    std::future::pending::<()>(),
                    TaskKind::Spawned,
                    None,
                    site(),
                    None,
                );
                let (_resolver, d) = Deferred::<()>::traced(Some("made inside"), None);
                *inner.borrow_mut() = Some((task, d));
                Poll::Ready(())
            }),
            TaskKind::Spawned,
            None,
            site(),
            None,
        )
    });
    assert!(poll(std::pin::pin!(spawned)).is_ready());
    assert_eq!(
        observe::current_connection(),
        None,
        "put back after the poll"
    );
    let events = capture.events();
    let spawned: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            DeferredEvent::TaskSpawned(t) => Some(t.connection),
            _ => None,
        })
        .collect();
    assert_eq!(spawned, [Some(connection), Some(connection)], "both tasks");
    let created = events.iter().find_map(|e| match e {
        DeferredEvent::Created(c) if c.label == Some("made inside") => Some(c.connection),
        _ => None,
    });
    assert_eq!(created, Some(Some(connection)));

    // A connection it opens: a connection's own task (a connector's) runs it, so takes
    // it; any other task stays with the connection it was spawned for; one with none
    // takes it.
    for (kind, spawned_for, listed) in [
        (TaskKind::Connection, Some(connection), ConnectionId(42)),
        (TaskKind::Spawned, Some(connection), connection),
        (TaskKind::Spawned, None, ConnectionId(42)),
    ] {
        let opener = observe::with_connection(spawned_for, || {
            instrument(
                poll_fn(|_| {
                    note_connection(ConnectionId(42));
                    note_connection(ConnectionId(43));
                    Poll::Ready(())
                }),
                kind,
                None,
                site(),
                None,
            )
        });
        assert!(poll(std::pin::pin!(opener)).is_ready());
        let ended = capture.events().iter().rev().find_map(|e| match e {
            DeferredEvent::TaskEnded(t) => Some(t.figures.connection),
            _ => None,
        });
        assert_eq!(
            ended,
            Some(Some(listed)),
            "{kind:?} spawned for {spawned_for:?}"
        );
    }
    observe::set_observer(None);
}

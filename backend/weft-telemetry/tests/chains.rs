//! The hub's picture of a pending chain: the steps it ran and the ones it has not run yet,
//! so an operator can see where a chain is stuck ("before step 3 of 5"), and the steps
//! its code named.

use std::sync::Arc;
use std::time::Duration;

use weft::defer::{Deferred, DeferredState, StepDetail, WaitsOn};
use weft::observe::ConnectionId;
use weft::{Reactor, ReactorConfig};
use weft_telemetry::chains::QueuedStep;
use weft_telemetry::{Hub, HubConfig};

fn hub_on(reactor: &Reactor) -> Arc<Hub> {
    let hub = Hub::new(HubConfig::default()).unwrap();
    hub.install(reactor);
    hub
}

/// Every event the feed holds.
fn drain(feed: &mut weft_telemetry::Feed) -> Vec<Arc<weft_telemetry::TelemetryEvent>> {
    let mut events = Vec::new();
    feed.try_recv_many(&mut events, usize::MAX).unwrap();
    events
}

/// The record of the chain labelled `label` as it ended, among `events`.
fn ended(
    events: &[Arc<weft_telemetry::TelemetryEvent>],
    label: &str,
) -> Option<weft_telemetry::DeferredSnapshot> {
    events.iter().find_map(|e| match &e.kind {
        weft_telemetry::EventKind::DeferredEnded { deferred }
            if deferred.label.as_deref() == Some(label) =>
        {
            Some(deferred.clone())
        }
        _ => None,
    })
}

fn places(queued: &[QueuedStep]) -> Vec<(u32, &'static str)> {
    queued.iter().map(|q| (q.index, q.kind.as_str())).collect()
}

#[test]
fn steps_added_before_the_chain_fires_are_listed_as_queued_until_they_run() {
    let reactor = Reactor::new().unwrap();
    let hub = hub_on(&reactor);

    let (resolver, d) = Deferred::<u32>::labeled("lookup");
    let id = d.id().0;
    let line = line!() + 1;
    let d = d.add_callback(|n| n + 1).add_errback(|_| Ok(0));
    let (child_resolver, child) = Deferred::<u32>::new();
    let d = d
        .and_then(move |n| child.add_callback(move |c| n + c))
        .add_callback(|n| n * 10);

    // Not fired: nothing ran, four steps wait, the first one is where it is stuck.
    let chain = hub.deferred(id).expect("pending");
    assert_eq!(chain.state, DeferredState::Pending);
    assert!(chain.steps.is_empty());
    assert_eq!(
        places(&chain.queued),
        [
            (0, "callback"),
            (1, "errback"),
            (2, "callback"),
            (3, "callback")
        ]
    );
    let site = format!("tests/chains.rs:{line}");
    assert!(chain.queued[0].site.ends_with(&site), "{:?}", chain.queued);
    assert!(chain.queued[0].at_ms > 0);

    // Fired: the first three run, the third returns a child not fired yet; the chain
    // waits there and the last step is still queued.
    resolver.callback(1);
    let chain = hub.deferred(id).expect("waiting on its child");
    assert_eq!(chain.state, DeferredState::Waiting);
    let outcomes: Vec<_> = chain
        .steps
        .iter()
        .map(|s| (s.index, s.outcome.as_str()))
        .collect();
    assert_eq!(outcomes, [(0, "ok"), (1, "skipped"), (2, "waiting")]);
    assert_eq!(places(&chain.queued), [(3, "callback")]);

    // The child fires: everything ran, the chain is no longer pending.
    child_resolver.callback(10);
    assert!(hub.deferred(id).is_none());
    let mut d = d;
    assert_eq!(d.try_take().unwrap().unwrap(), 120);
}

#[test]
fn a_paused_chain_lists_what_it_will_run_after_unpause_and_a_stall_report_carries_it() {
    let reactor = Reactor::with_config(ReactorConfig {
        stall_after: Duration::from_secs(5),
        ..ReactorConfig::default()
    })
    .unwrap();
    let hub = Hub::new(HubConfig::default()).unwrap();
    hub.install(&reactor);
    let clock = weft::testing::Clock::fake();
    let _clock = clock.install();

    let (resolver, d) = Deferred::<u8>::new();
    let id = d.id().0;
    d.pause();
    resolver.callback(1);
    // Added while paused: it waits, at the index after the ones that ran (none).
    let d = d.add_both(|r| r.map(|n| n + 1));
    let chain = hub.deferred(id).expect("paused");
    assert_eq!(chain.state, DeferredState::Paused);
    assert_eq!(places(&chain.queued), [(0, "both")]);

    clock.advance(Duration::from_secs(6));
    weft::defer::scan_for_stalls();
    let chain = hub.deferred(id).expect("still paused");
    assert!(chain.stalled);
    assert_eq!(places(&chain.queued), [(0, "both")]);

    d.unpause();
    assert!(hub.deferred(id).is_none());
    let mut d = d;
    assert_eq!(d.try_take().unwrap().unwrap(), 2);
}

#[test]
fn a_leaked_chain_still_lists_the_steps_it_will_never_run() {
    let reactor = Reactor::new().unwrap();
    let hub = hub_on(&reactor);

    let (resolver, d) = Deferred::<u8>::labeled("never answered");
    let id = d.id().0;
    let d = d.add_callback(|n| n + 1).add_errback(|_| Ok(0));
    drop(resolver);
    let chain = hub.deferred(id).expect("held, so still listed");
    assert!(chain.leaked);
    assert!(chain.steps.is_empty());
    assert_eq!(places(&chain.queued), [(0, "callback"), (1, "errback")]);
    drop(d);
    assert!(hub.deferred(id).is_none());
}

/// A flagged chain freed unfired, and a flagged task that ended, are recorded ended, with
/// the time they ended: a record left pending would never be pruned, and the next start
/// would take it for one a killed process left.
#[test]
fn a_leaked_chain_and_a_stalled_task_are_recorded_ended_when_they_end() {
    let reactor = Reactor::new().unwrap();
    let hub = hub_on(&reactor);
    let mut feed = hub.subscribe("test");

    let (resolver, d) = Deferred::<u8>::labeled("never answered");
    drop(resolver);
    drop(d);

    weft::defer::set_stall_threshold_for("slow task", Duration::from_millis(50));
    // Stopped once the task has ended (however late a busy machine runs it), with time
    // for its end to be recorded.
    let stopping = reactor.clone();
    reactor.spawn_labeled("slow task", async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let stop = stopping.clone();
        stopping.call_later(Duration::from_millis(200), move || stop.stop());
    });
    reactor.run().unwrap();

    let events = drain(&mut feed);
    let ended = |label: &str| ended(&events, label);
    let leaked = ended("never answered").expect("the leaked chain is recorded");
    assert_eq!(leaked.state, DeferredState::Cancelled, "{leaked:?}");
    assert!(leaked.fired_at_ms.is_some(), "{leaked:?}");
    let task = ended("slow task").expect("the stalled task is recorded");
    assert!(task.stalled, "{task:?}");
    assert_eq!(task.state, DeferredState::Succeeded, "{task:?}");
    let took = task.fired_at_ms.unwrap() - task.created_at_ms;
    assert!((250..5000).contains(&took), "ended when it ended: {task:?}");
}

/// An unhandled failure is found when the chain's last handle goes, after the chain ended:
/// the report carries the chain's record as it ended, with the flag added.
#[test]
fn an_unhandled_failure_reported_after_the_end_carries_the_chains_record() {
    let reactor = Reactor::new().unwrap();
    let hub = hub_on(&reactor);
    let mut feed = hub.subscribe("test");

    let kept = std::rc::Rc::new(std::cell::RefCell::new(None));
    let slot = kept.clone();
    let (resolver, parent) = Deferred::<u8>::labeled("parent");
    let parent = parent.add_callback(move |n| {
        let (child_resolver, child) = Deferred::<u8>::labeled("upstream call");
        let child = child.add_callback(|n| n + 1);
        child_resolver.errback(weft::defer::Failure::msg("upstream refused"));
        *slot.borrow_mut() = Some(child);
        n
    });
    resolver.callback(1);
    drop(parent);
    // Long after the end, the handle goes.
    kept.borrow_mut().take();

    let mut events = Vec::new();
    feed.try_recv_many(&mut events, usize::MAX).unwrap();
    let chains: Vec<_> = events
        .iter()
        .filter_map(|e| match &e.kind {
            weft_telemetry::EventKind::DeferredEnded { deferred }
            | weft_telemetry::EventKind::DeferredDetected { deferred, .. }
                if deferred.label.as_deref() == Some("upstream call") =>
            {
                Some(deferred.clone())
            }
            _ => None,
        })
        .collect();
    let [ended, detected] = &chains[..] else {
        panic!("its end, then the report: {chains:?}");
    };
    assert!(!ended.unhandled && detected.unhandled);
    assert_eq!(ended.state, DeferredState::Failed);
    assert!(ended.parent.is_some() && ended.fired_at_ms.is_some());
    assert!(ended.current_step.is_some());
    assert_eq!(
        weft_telemetry::DeferredSnapshot {
            unhandled: false,
            steps: ended.steps.clone(),
            ..detected.clone()
        },
        *ended,
        "the report is the record as it ended, flagged"
    );
}

/// The ended chains kept for such reports are bounded: beyond the last
/// [`ENDED_KEPT`](weft_telemetry::chains::ENDED_KEPT), a report carries what it knows
/// (the store merges it into the stored record).
#[test]
fn only_the_last_chains_that_failed_are_kept_for_a_late_report() {
    let reactor = Reactor::new().unwrap();
    let hub = hub_on(&reactor);
    let mut feed = hub.subscribe("test");

    let held: Vec<Deferred<u8>> = (0..=weft_telemetry::chains::ENDED_KEPT)
        .map(|_| Deferred::<u8>::fail(weft::defer::Failure::msg("refused")))
        .collect();
    let (first, last) = (held[0].id().0, held[held.len() - 1].id().0);
    drop(held);

    let mut events = Vec::new();
    feed.try_recv_many(&mut events, usize::MAX).unwrap();
    let reported = |id: u64| {
        events
            .iter()
            .find_map(|e| match &e.kind {
                weft_telemetry::EventKind::DeferredDetected { deferred, .. }
                    if deferred.id == id =>
                {
                    Some(deferred.clone())
                }
                _ => None,
            })
            .expect("reported unhandled")
    };
    let (first, last) = (reported(first), reported(last));
    assert!(first.unhandled && last.unhandled);
    assert_eq!(
        first.fired_at_ms, None,
        "forgotten: only what the report knows"
    );
    assert!(last.fired_at_ms.is_some(), "kept: the record as it ended");
}

/// Async code names its steps: the hub lists them in order, each ended by the next, the
/// current one with what it waits on; the stall report says where the chain is.
#[test]
fn named_steps_are_listed_in_order_and_a_stall_report_names_the_current_one() {
    let reactor = Reactor::with_config(ReactorConfig {
        stall_after: Duration::from_secs(5),
        ..ReactorConfig::default()
    })
    .unwrap();
    let hub = hub_on(&reactor);
    let mut feed = hub.subscribe("test");
    let clock = weft::testing::Clock::fake();
    let _clock = clock.install();

    let (resolver, d) = Deferred::<()>::traced(Some("http request"), None);
    let id = d.id().0;
    let steps = d.steps();
    let upstream = StepDetail::new("http://backend-a");
    steps.step_with("connect upstream", None, Some(&upstream));
    steps.waits_on(WaitsOn::Connection(ConnectionId(12)));
    steps.step_with(
        "response head",
        Some(WaitsOn::Connection(ConnectionId(12))),
        Some(&upstream),
    );
    let chain = hub.deferred(id).expect("pending");
    let named: Vec<_> = chain
        .named_steps
        .iter()
        .map(|s| (s.index, s.name, s.duration_ms.is_some()))
        .collect();
    assert_eq!(
        named,
        [(0, "connect upstream", true), (1, "response head", false)]
    );
    assert_eq!(chain.named_steps[0].waiting_on_connection, Some(12));
    let at = chain.named_step().expect("at a named step");
    assert_eq!(at.detail.as_deref(), Some("http://backend-a"));
    assert_eq!(at.waiting_on_connection, Some(12));

    clock.advance(Duration::from_secs(6));
    weft::defer::scan_for_stalls();
    let mut events = Vec::new();
    feed.try_recv_many(&mut events, usize::MAX).unwrap();
    let detail = events
        .iter()
        .find_map(|e| match &e.kind {
            weft_telemetry::EventKind::DeferredDetected { detail, .. } => Some(detail.clone()),
            _ => None,
        })
        .expect("a stall report");
    assert!(
        detail.contains(r#"at "response head" (http://backend-a) on connection 12"#),
        "{detail}"
    );

    // Steps beyond the bound move the last slot; the first ones stay.
    for _ in 0..weft_telemetry::MAX_NAMED_STEPS {
        steps.step("retry");
    }
    steps.step("answer");
    let chain = hub.deferred(id).expect("pending");
    assert_eq!(chain.named_steps.len(), weft_telemetry::MAX_NAMED_STEPS);
    assert_eq!(chain.named_steps[0].name, "connect upstream");
    assert_eq!(chain.named_step().map(|s| s.name), Some("answer"));

    resolver.callback(());
    drop(d);
    assert!(hub.deferred(id).is_none());
}

/// A chain history has a row of (pending chains are written as they go) and that is freed
/// unfired, unflagged: its row is ended too, or it would stay pending for ever.
#[test]
fn a_chain_in_history_freed_unfired_is_recorded_ended() {
    let reactor = Reactor::new().unwrap();
    let hub = hub_on(&reactor);
    let mut feed = hub.subscribe("test");

    let (resolver, parent) = Deferred::<u8>::labeled("waits on a child");
    let (child_resolver, child) = Deferred::<u8>::new();
    let parent = parent.and_then(move |_| child);
    resolver.callback(1);
    // The history's writer takes the chains pending a while, as it does every second.
    std::thread::sleep(weft_telemetry::chains::HISTORY_PENDING_AFTER);
    let written = hub.deferreds().pending_for_history();
    assert!(
        written
            .iter()
            .any(|d| d.label.as_deref() == Some("waits on a child")),
        "{written:?}"
    );
    drop(parent);
    drop(child_resolver);

    let mut events = Vec::new();
    feed.try_recv_many(&mut events, usize::MAX).unwrap();
    let ended = events.iter().find_map(|e| match &e.kind {
        weft_telemetry::EventKind::DeferredEnded { deferred }
            if deferred.label.as_deref() == Some("waits on a child") =>
        {
            Some(deferred.clone())
        }
        _ => None,
    });
    let ended = ended.expect("its row is ended");
    assert_eq!(ended.state, DeferredState::Cancelled, "{ended:?}");
}

/// A chain that fires at once and then waits on a Deferred one of its steps returned
/// ends when its last step runs: its record says when, and the step that returned the
/// Deferred no longer says `waiting` once the chain went on.
#[test]
fn a_chain_that_fired_and_then_waited_ends_when_its_last_step_runs() {
    let reactor = Reactor::new().unwrap();
    let hub = hub_on(&reactor);
    let mut feed = hub.subscribe("test");

    let (child_resolver, child) = Deferred::<u8>::labeled("upstream answer");
    let (resolver, d) = Deferred::<u8>::labeled("slow request");
    let d = d
        .and_then(move |_| child)
        .and_then(|_| Err::<u8, _>(weft::defer::Failure::msg("refused late")));
    resolver.callback(1);
    reactor.call_later(Duration::from_millis(300), move || {
        child_resolver.callback(2)
    });
    let stopping = reactor.clone();
    reactor.call_later(Duration::from_millis(400), move || stopping.stop());
    reactor.run().unwrap();
    drop(d);

    let ended = ended(&drain(&mut feed), "slow request").expect("the failed chain is recorded");
    assert_eq!(ended.state, DeferredState::Failed, "{ended:?}");
    let fired = ended.fired_at_ms.unwrap() - ended.created_at_ms;
    let took = ended.ended_at_ms.expect("its end") - ended.created_at_ms;
    assert!(fired < 250, "it fired at once: {ended:?}");
    assert!(
        (250..5000).contains(&took),
        "it ended after the wait: {ended:?}"
    );
    let outcomes: Vec<_> = ended.steps.iter().map(|s| s.outcome.as_str()).collect();
    assert_eq!(outcomes, ["chained", "err"], "{ended:?}");
}

/// Failed chains neither sampled nor flagged are published at most `failed_per_second` a
/// second, the rest counted: a peer that makes chains fail cheaply (questions no
/// upstream answers) cannot write history faster than that. A failure reported unhandled
/// later is published all the same, with its record.
#[test]
fn failed_chains_are_published_up_to_their_budget_a_second_and_the_rest_counted() {
    let reactor = Reactor::new().unwrap();
    let mut config = HubConfig::default();
    config.sample = 0.0;
    config.failed_per_second = 5;
    let hub = Hub::new(config).unwrap();
    hub.install(&reactor);
    let mut feed = hub.subscribe("test");

    for _ in 0..50 {
        let (resolver, d) = Deferred::<u8>::labeled("question");
        resolver.errback(weft::defer::Failure::msg("no upstream answered"));
        d.end_handled();
    }
    let unhandled = Deferred::<u8>::fail(weft::defer::Failure::msg("refused"));
    let id = unhandled.id().0;
    drop(unhandled);

    let events = drain(&mut feed);
    let published = events
        .iter()
        .filter(|e| {
            matches!(&e.kind, weft_telemetry::EventKind::DeferredEnded { deferred }
                if deferred.label.as_deref() == Some("question"))
        })
        .count();
    // Within one second (the test takes milliseconds): at most two windows' worth.
    assert!((5..=10).contains(&published), "published {published}");
    let skipped = hub
        .gather()
        .iter()
        .find(|f| f.name() == "weft_deferred_failures_skipped_total")
        .map(|f| f.get_metric()[0].get_counter().get_value())
        .unwrap();
    assert!(skipped >= 41.0, "skipped {skipped}");
    let reported = events.iter().find_map(|e| match &e.kind {
        weft_telemetry::EventKind::DeferredDetected { deferred, .. } if deferred.id == id => {
            Some(deferred.clone())
        }
        _ => None,
    });
    let reported = reported.expect("the unhandled failure is reported");
    assert!(
        reported.unhandled && reported.fired_at_ms.is_some(),
        "{reported:?}"
    );
}

/// A history snapshot writes the chains pending a while, not every chain pending at that
/// instant, and at most so many new ones each time, the oldest first: a flood of chains
/// each pending until a timeout (questions no upstream answers) would have every one
/// written, and its end with it, past the budget of failures.
#[test]
fn a_history_snapshot_writes_chains_pending_a_while_and_so_many_new_ones_at_most() {
    use weft_telemetry::chains::{HISTORY_NEW_PENDING, HISTORY_PENDING_AFTER};
    let reactor = Reactor::new().unwrap();
    let mut config = HubConfig::default();
    config.sample = 0.0;
    let hub = Hub::new(config).unwrap();
    hub.install(&reactor);

    let old: Vec<_> = (0..HISTORY_NEW_PENDING + 50)
        .map(|_| Deferred::<u8>::labeled("old"))
        .collect();
    std::thread::sleep(HISTORY_PENDING_AFTER);
    let young = Deferred::<u8>::labeled("young");
    let written = hub.deferreds().pending_for_history();
    assert_eq!(written.len(), HISTORY_NEW_PENDING);
    assert!(written.iter().all(|d| d.label.as_deref() == Some("old")));
    // The next takes the rest, and keeps those it has rows of.
    let written = hub.deferreds().pending_for_history();
    assert_eq!(written.len(), HISTORY_NEW_PENDING + 50);
    drop((old, young));
}

/// A task names as what it waits on only a chain that is still pending: the chain its
/// last poll awaited may have ended without waking it (it stopped awaiting it), and a
/// link to it would lead nowhere.
#[test]
fn a_task_names_only_a_pending_chain_as_what_it_waits_on() {
    use std::future::{Future, poll_fn};
    use std::task::Poll;

    let reactor = Reactor::new().unwrap();
    let hub = hub_on(&reactor);
    let (resolver, awaited) = Deferred::<u8>::labeled("awaited once");
    let awaited_id = awaited.id().0;
    let (done, finish) = tokio::sync::oneshot::channel::<()>();
    reactor.spawn_labeled("holder", async move {
        // Awaited for one poll, then let go of, unfired: nothing will wake this task.
        let mut awaited = Box::pin(awaited);
        poll_fn(|cx| {
            let _ = awaited.as_mut().poll(cx);
            Poll::Ready(())
        })
        .await;
        drop(awaited);
        let _ = finish.await;
    });
    let listed = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let (seen, h) = (listed.clone(), hub.clone());
    let look = move || {
        let holder = h
            .pending_deferreds()
            .into_iter()
            .find(|d| d.label.as_deref() == Some("holder"))
            .expect("the task is pending");
        seen.borrow_mut().push(holder.waiting_on);
    };
    let first = look.clone();
    reactor.call_later(Duration::from_millis(50), first);
    reactor.call_later(Duration::from_millis(100), move || resolver.callback(1));
    reactor.call_later(Duration::from_millis(150), look);
    let stopping = reactor.clone();
    reactor.call_later(Duration::from_millis(200), move || {
        let _ = done.send(());
        stopping.stop();
    });
    reactor.run().unwrap();
    assert_eq!(*listed.borrow(), [Some(awaited_id), None]);
}

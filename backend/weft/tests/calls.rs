//! Calls from other threads wait for the reactor in a bounded queue: a thread calling in a
//! loop while the reactor is blocked is refused once the queue is full, counted, never
//! made to wait, and the calls already queued all run once the reactor is free again.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use weft::{CALL_QUEUE, CallError, Reactor, ReactorConfig};

#[test]
fn a_blocked_reactor_refuses_calls_past_its_queue_and_runs_the_queued_ones_once_free() {
    let (handle_tx, handle_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let (blocked_tx, blocked_rx) = mpsc::channel();
    let reactor_thread = std::thread::spawn(move || {
        let reactor = Reactor::with_config(ReactorConfig {
            handle_signals: false,
            ..Default::default()
        })
        .unwrap();
        let handle = reactor.handle();
        handle_tx.send(handle.clone()).unwrap();
        // The reactor thread blocks in a call until the test releases it.
        handle.call_from_thread(move || {
            blocked_tx.send(()).unwrap();
            release_rx.recv().unwrap();
        });
        reactor.run().unwrap();
    });
    let handle = handle_rx.recv().unwrap();
    blocked_rx.recv().unwrap();

    let ran = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    for i in 0..CALL_QUEUE {
        let ran = ran.clone();
        let queued = handle.try_call_from_thread(move || {
            ran.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(queued, Ok(()), "call {i} fits in the queue");
    }
    for _ in 0..3 {
        assert_eq!(
            handle.try_call_from_thread(|| panic!("a refused call never runs")),
            Err(CallError::Full)
        );
    }
    assert!(!handle.call_from_thread(|| panic!("a refused call never runs")));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "calling never waits for the blocked reactor ({:?})",
        started.elapsed()
    );
    assert_eq!(handle.calls_refused(), 4, "every refusal is counted");
    assert_eq!(
        ran.load(Ordering::Relaxed),
        0,
        "the reactor is still blocked"
    );

    release_tx.send(()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while ran.load(Ordering::Relaxed) < CALL_QUEUE {
        assert!(Instant::now() < deadline, "the queued calls never ran");
        std::thread::sleep(Duration::from_millis(1));
    }
    let (done_tx, done_rx) = mpsc::channel();
    assert_eq!(
        handle.try_call_from_thread(move || done_tx.send(()).unwrap()),
        Ok(()),
        "a drained queue takes calls again"
    );
    done_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(
        ran.load(Ordering::Relaxed),
        CALL_QUEUE,
        "each queued call ran once"
    );
    assert_eq!(handle.calls_refused(), 4);

    handle.stop();
    reactor_thread.join().unwrap();
    assert_eq!(
        handle.try_call_from_thread(|| {}),
        Err(CallError::Gone),
        "a stopped reactor takes no calls"
    );
}

/// A shutdown held to its deadline by a spawned task (one awaiting a Deferred that never
/// fires) says which task it waited for, by label and spawn site: the warning said only
/// `hooks=1`, naming nothing the program had registered.
#[test]
fn a_shutdown_held_to_its_deadline_names_the_tasks_still_running() {
    let logs = weft_test_support::Logs::default();
    let subscriber = logs.subscriber();
    tracing::subscriber::with_default(subscriber, || {
        let reactor = weft::Reactor::with_config(weft::ReactorConfig {
            handle_signals: false,
            shutdown_deadline: std::time::Duration::from_millis(200),
            ..weft::ReactorConfig::default()
        })
        .unwrap();
        let (_resolver, never) = weft::defer::Deferred::<()>::new();
        reactor.spawn_labeled("waiter", async move {
            let _ = never.await;
        });
        reactor.call_later(std::time::Duration::from_millis(10), || {
            weft::Reactor::current().stop();
        });
        reactor.run().unwrap();
    });
    let text = logs.text();
    let warning = text
        .lines()
        .find(|l| l.contains("did not finish before its deadline"))
        .unwrap_or_else(|| panic!("no warning in\n{text}"));
    assert!(
        warning.contains("(waiter) spawned at backend/weft/tests/calls.rs:")
            || warning.contains("(waiter) spawned at tests/calls.rs:"),
        "{warning}"
    );
}

//! Holders, waiters and deadlocks of locks, semaphores and queues, through the public API.

use super::*;
use crate::defer::deadlock::strongly_connected;
use crate::defer::{Deferred, DeferredLock, DeferredQueue, DeferredSemaphore, Resolver};
use crate::observe;
use crate::testing::RecordingObserver;

/// A chain labelled `label` that takes `first`, then waits on a gate, then asks for
/// `second` while it still holds `first`: fire the first resolver to take `first`, the
/// second to ask for `second`.
#[track_caller]
fn two_step<A: 'static, B: 'static>(
    label: &'static str,
    first: impl FnOnce() -> Deferred<A> + 'static,
    second: impl FnOnce() -> Deferred<B> + 'static,
) -> (Resolver<()>, Resolver<()>, Deferred<()>) {
    let (go, d) = Deferred::<()>::labeled(label);
    let (gate_r, gate) = Deferred::<()>::new();
    let d = d
        .and_then(move |()| first())
        .and_then(move |held| gate.add_callback(move |()| held))
        .and_then(move |held| {
            second().add_callback(move |got| {
                drop(got);
                drop(held);
            })
        });
    (go, gate_r, d)
}

fn contended_locks() -> usize {
    table(|t| t.locks.len())
}

#[test]
fn a_lock_taken_only_when_free_stays_out_of_the_graph() {
    let lock = DeferredLock::new();
    for _ in 0..3 {
        let guard = lock.acquire().try_take().unwrap().unwrap();
        drop(guard);
    }
    let ran = lock.run(|| Ok::<_, crate::defer::Failure>(1));
    assert_eq!(ran.state(), crate::defer::DeferredState::Succeeded);
    assert_eq!(contended_locks(), 0, "never contended, never in the table");
    assert_eq!(wait_graph(), WaitGraph::default());
}

#[test]
fn two_chains_taking_two_locks_in_opposite_orders_are_a_deadlock_naming_both() {
    let rec = RecordingObserver::new();
    observe::set_observer(Some(rec.clone()));
    let (a, b) = (DeferredLock::labeled("a"), DeferredLock::labeled("b"));
    let (a1, b1, a2, b2) = (a.clone(), b.clone(), a.clone(), b.clone());
    let created_line = line!() + 1;
    let (go_x, gate_x, x) = two_step("x", move || a1.acquire(), move || b1.acquire());
    let (go_y, gate_y, y) = two_step("y", move || b2.acquire(), move || a2.acquire());
    go_x.callback(());
    go_y.callback(());
    // Each holds its first lock; nobody waits yet.
    assert_eq!(wait_graph(), WaitGraph::default());
    gate_x.callback(()); // x waits on b, held by y
    let graph = wait_graph();
    assert_eq!(graph.locks.len(), 1);
    let lock_b = &graph.locks[0];
    assert_eq!(
        (lock_b.id, lock_b.kind, lock_b.label),
        (b.id(), LockKind::Lock, Some("b"))
    );
    assert_eq!(lock_b.holders.len(), 1);
    assert_eq!(
        lock_b.holders[0].chain,
        y.id(),
        "the holder is the chain that asked"
    );
    assert_eq!(lock_b.holders[0].label, Some("y"));
    assert_eq!(lock_b.holders[0].site.unwrap().line(), created_line + 1);
    assert_eq!(lock_b.waiters.len(), 1);
    assert_eq!(lock_b.waiters[0].chain, x.id());
    assert_eq!(lock_b.waiters[0].site.unwrap().line(), created_line);
    assert!(lock_b.waiters[0].at.file().ends_with("waits_tests.rs"));
    assert!(graph.deadlocks.is_empty(), "y can still go on");
    assert_eq!(rec.count("Deadlock("), 0);

    gate_y.callback(()); // y waits on a, held by x: a cycle
    let graph = wait_graph();
    assert_eq!(graph.locks.len(), 2);
    assert_eq!(graph.deadlocks.len(), 1);
    let cycle = &graph.deadlocks[0];
    let mut members: Vec<_> = cycle
        .iter()
        .map(|m| (m.chain.chain, m.lock, m.held_by.clone()))
        .collect();
    members.sort();
    let mut expected = vec![
        (x.id(), b.id(), vec![y.id()]),
        (y.id(), a.id(), vec![x.id()]),
    ];
    expected.sort();
    assert_eq!(members, expected);
    for m in cycle.iter() {
        assert!(m.chain.site.is_some() && m.lock_site.file().ends_with("waits_tests.rs"));
        assert!(describe_member(m).contains(&format!("chain {}", m.chain.chain)));
    }

    // The scan reports it once, one report per member, and hands the graph over.
    crate::defer::scan_for_stalls();
    crate::defer::scan_for_stalls();
    assert_eq!(rec.count("Deadlock(Deadlock"), 2, "{:?}", rec.events());
    assert!(rec.count("Waits(") >= 1);

    // Cancelling one member breaks the cycle: its lock goes to the other, which finishes.
    y.cancel();
    assert_eq!(x.state(), crate::defer::DeferredState::Succeeded);
    assert!(wait_graph().deadlocks.is_empty());
    assert_eq!(wait_graph().locks.len(), 0);
    crate::defer::scan_for_stalls();
    assert_eq!(
        contended_locks(),
        0,
        "a lock whose line emptied leaves the table"
    );
    observe::set_observer(None);
    drop((x, y));
}

#[test]
fn a_semaphore_of_two_deadlocks_only_once_both_holders_are_stuck() {
    let sem = DeferredSemaphore::labeled(2, "pool");
    let lock = DeferredLock::labeled("row");
    let (s1, s2, s3, l1, l2, l3) = (
        sem.clone(),
        sem.clone(),
        sem.clone(),
        lock.clone(),
        lock.clone(),
        lock.clone(),
    );
    let (go_a, gate_a, a) = two_step("a", move || s1.acquire(), move || l1.acquire());
    let (go_b, gate_b, b) = two_step("b", move || s2.acquire(), move || l2.acquire());
    let (go_c, gate_c, c) = two_step("c", move || l3.acquire(), move || s3.acquire());
    go_a.callback(());
    go_b.callback(());
    go_c.callback(());
    assert_eq!(sem.tokens(), 0);
    gate_a.callback(()); // a waits on the row, held by c
    gate_c.callback(()); // c waits on the pool, held by a and b
    let graph = wait_graph();
    let pool = graph.locks.iter().find(|l| l.id == sem.id()).unwrap();
    assert_eq!((pool.kind, pool.limit), (LockKind::Semaphore, Some(2)));
    let mut holders: Vec<_> = pool.holders.iter().map(|h| h.chain).collect();
    holders.sort();
    assert_eq!(holders, vec![a.id(), b.id()]);
    assert_eq!(pool.waiters[0].chain, c.id());
    assert!(
        graph.deadlocks.is_empty(),
        "b holds a token and may give it back"
    );

    gate_b.callback(()); // b waits on the row too: nobody can go on
    let graph = wait_graph();
    assert_eq!(graph.deadlocks.len(), 1);
    let mut members: Vec<_> = graph.deadlocks[0].iter().map(|m| m.chain.chain).collect();
    members.sort();
    let mut expected = vec![a.id(), b.id(), c.id()];
    expected.sort();
    assert_eq!(members, expected);
    let c_member = graph.deadlocks[0]
        .iter()
        .find(|m| m.chain.chain == c.id())
        .unwrap();
    assert_eq!(c_member.lock, sem.id());
    assert_eq!(c_member.held_by.len(), 2);
    c.cancel();
    drop((a, b));
}

#[test]
fn a_queue_getter_waits_with_no_holder_and_is_never_a_deadlock() {
    let queue = DeferredQueue::<u32>::labeled(None, None, "jobs");
    let q = queue.clone();
    let (go, d) = Deferred::<()>::labeled("worker");
    let d = d.and_then(move |()| q.get().unwrap());
    go.callback(());
    let graph = wait_graph();
    assert_eq!(graph.locks.len(), 1);
    let jobs = &graph.locks[0];
    assert_eq!(
        (jobs.kind, jobs.label, jobs.limit),
        (LockKind::Queue, Some("jobs"), None)
    );
    assert!(jobs.holders.is_empty());
    assert_eq!(jobs.waiters.len(), 1);
    assert_eq!(jobs.waiters[0].chain, d.id());
    assert_eq!(jobs.waiters[0].label, Some("worker"));
    assert!(graph.deadlocks.is_empty());
    queue.put(7).unwrap();
    assert_eq!(d.state(), crate::defer::DeferredState::Succeeded);
    assert!(wait_graph().locks.is_empty());
}

#[test]
fn a_chain_asking_again_for_the_lock_it_holds_deadlocks_with_itself() {
    let lock = DeferredLock::new();
    let (l1, l2) = (lock.clone(), lock.clone());
    let (go, gate, d) = two_step("again", move || l1.acquire(), move || l2.acquire());
    go.callback(());
    gate.callback(());
    let graph = wait_graph();
    assert_eq!(graph.deadlocks.len(), 1);
    assert_eq!(graph.deadlocks[0].len(), 1);
    assert_eq!(graph.deadlocks[0][0].chain.chain, d.id());
    assert_eq!(graph.deadlocks[0][0].held_by, vec![d.id()]);
    d.cancel();
}

#[test]
fn strongly_connected_components_find_cycles_and_leave_tails_alone() {
    // 0 -> 1 -> 2 -> 0 is a cycle; 3 -> 0 only waits behind it.
    let edges = vec![vec![1], vec![2], vec![0], vec![0]];
    let mut components = strongly_connected(&edges);
    components.sort();
    assert_eq!(components, vec![vec![0, 1, 2], vec![3]]);
}

//! What inspecting a task costs: one poll and one spawn of a trivial task, inspected
//! (`Reactor::spawn`, as every task weft runs) against the same task spawned bare on the
//! reactor's `LocalSet` (`tokio::task::spawn_local`), on one reactor in the same run.
//!
//! Run with `cargo bench -p weft --bench tasks`. Printed, each the median of several
//! alternating batches:
//! - per poll: a task that wakes itself and yields [`POLLS`] times, so a poll is a wake,
//!   a trip through the run queue and the poll (what a connection's task does per
//!   readiness event, less the IO);
//! - per spawn: [`SPAWNS`] tasks that return at once, spawned and run to their end, with
//!   no observer and with the cheapest one (inspection reports a task's start and end
//!   to it);
//!
//! and the difference, which is what inspection adds per poll and per spawn. Multiplied
//! by the polls an operation takes (a task's poll count, on the Tasks page), it gives
//! what inspection adds to the operation, free of the noise an end-to-end run has.

use std::cell::Cell;
use std::future::{Future, poll_fn};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::task::Poll;
use std::time::Instant;

use tokio::sync::Notify;
use weft::Reactor;
use weft::observe::{Event, Observer};

/// Polls per timed task.
const POLLS: u32 = 200_000;
/// Tasks per timed batch of spawns.
const SPAWNS: u32 = 20_000;
/// Batches per figure; the median is printed.
const BATCHES: usize = 9;

/// The cheapest real observer: counts events.
struct Counting(AtomicU64);

impl Observer for Counting {
    fn on_event(&self, _: &Event<'_>) {
        self.0.fetch_add(1, Relaxed);
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Spawn {
    Inspected,
    Bare,
}

fn spawn(how: Spawn, task: impl Future<Output = ()> + 'static) {
    match how {
        Spawn::Inspected => Reactor::current().spawn(task),
        Spawn::Bare => drop(tokio::task::spawn_local(task)),
    }
}

/// Pending `n` times, waking itself each time, then ready.
async fn yielding(n: u32) {
    let mut left = n;
    poll_fn(|cx| {
        if left == 0 {
            return Poll::Ready(());
        }
        left -= 1;
        cx.waker().wake_by_ref();
        Poll::Pending
    })
    .await;
}

/// Nanoseconds per poll of a task spawned `how`.
async fn per_poll(how: Spawn) -> f64 {
    let done = Rc::new(Notify::new());
    let notify = done.clone();
    let started = Instant::now();
    spawn(how, async move {
        yielding(POLLS).await;
        notify.notify_one();
    });
    done.notified().await;
    started.elapsed().as_nanos() as f64 / f64::from(POLLS)
}

/// Nanoseconds per spawn of a task spawned `how` that returns at once, to its end.
async fn per_spawn(how: Spawn) -> f64 {
    let done = Rc::new(Notify::new());
    let left = Rc::new(Cell::new(SPAWNS));
    let started = Instant::now();
    for _ in 0..SPAWNS {
        let (done, left) = (done.clone(), left.clone());
        spawn(how, async move {
            left.set(left.get() - 1);
            if left.get() == 0 {
                done.notify_one();
            }
        });
    }
    done.notified().await;
    started.elapsed().as_nanos() as f64 / f64::from(SPAWNS)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Medians of `measure` for inspected and bare tasks, batches alternating.
async fn compare<F: Future<Output = f64>>(measure: impl Fn(Spawn) -> F) -> (f64, f64) {
    let (mut inspected, mut bare) = (Vec::new(), Vec::new());
    measure(Spawn::Inspected).await; // warm up
    for _ in 0..BATCHES {
        inspected.push(measure(Spawn::Inspected).await);
        bare.push(measure(Spawn::Bare).await);
    }
    (median(inspected), median(bare))
}

fn print(what: &str, (inspected, bare): (f64, f64)) {
    println!(
        "  {what:<28} inspected {inspected:>7.1} ns, bare {bare:>7.1} ns, inspection adds {:>6.1} ns",
        inspected - bare
    );
}

async fn measure(reactor: Reactor) {
    println!("task inspection, medians of {BATCHES} batches:");
    print("per poll", compare(per_poll).await);
    print("per spawn, no observer", compare(per_spawn).await);
    let counting = Arc::new(Counting(AtomicU64::new(0)));
    reactor.set_observer(counting.clone());
    print("per spawn, counting observer", compare(per_spawn).await);
    print("per poll, counting observer", compare(per_poll).await);
    assert!(counting.0.load(Relaxed) > 0, "the observer saw the tasks");
}

fn main() {
    let reactor = Reactor::new().expect("a reactor");
    let running = reactor.clone();
    reactor.spawn(async move {
        measure(running.clone()).await;
        running.stop();
    });
    reactor.run().expect("the reactor ran");
}

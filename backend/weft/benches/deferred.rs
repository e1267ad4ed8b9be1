//! What a traced Deferred costs: create, add N callbacks, fire, take the result, for
//! N = 1, 5, 20, with the observer off and on, against a plain chain of boxed closures
//! and a tokio oneshot feeding the same closures; and what one named step
//! (`Steps::step_with`, as async code marks them) adds to a chain.
//!
//! The observer here is the cheapest one (it counts events): the figure is what the
//! reactor side costs. The same chain with the telemetry hub as observer is
//! `cargo bench -p weft-telemetry --bench deferred_hub`.
//!
//! Run with `cargo bench -p weft --bench deferred`. Before criterion's timings it
//! prints allocations per run and per step, counted by `stats_alloc`'s instrumented
//! system allocator (so this file needs no `unsafe`). The chain, the counting observer
//! and the timing are in `chain/mod.rs`, shared with the hub's bench.

mod chain;

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use chain::{Counting, allocations, deferred_chain, nanos};
use criterion::{BenchmarkId, Criterion};
use weft::defer::{Deferred, StepDetail};
use weft::observe;

const SIZES: [usize; 3] = [1, 5, 20];

/// A traced chain whose code marks `n` named steps, each with a detail, then fires.
fn named_chain(n: usize) -> u64 {
    const UPSTREAM: StepDetail = StepDetail::from_static("http://backend-a");
    let (resolver, mut d) = Deferred::<u64>::traced(Some("request"), None);
    let steps = d.steps();
    for _ in 0..n {
        steps.step_with(black_box("response head"), None, Some(&UPSTREAM));
    }
    resolver.callback(black_box(1));
    d.try_take().expect("fired").expect("succeeded")
}

fn boxed_chain(n: usize) -> u64 {
    let mut steps: Vec<Box<dyn FnOnce(u64) -> u64>> = Vec::new();
    for _ in 0..n {
        steps.push(Box::new(|v| black_box(v + 1)));
    }
    steps.into_iter().fold(black_box(1), |v, f| f(v))
}

fn oneshot_chain(n: usize) -> u64 {
    let (tx, mut rx) = tokio::sync::oneshot::channel::<u64>();
    let mut steps: Vec<Box<dyn FnOnce(u64) -> u64>> = Vec::new();
    for _ in 0..n {
        steps.push(Box::new(|v| black_box(v + 1)));
    }
    tx.send(black_box(1)).expect("receiver alive");
    let v = rx.try_recv().expect("sent");
    steps.into_iter().fold(v, |v, f| f(v))
}

fn print_allocations() {
    println!("allocations per run (and per step):");
    for n in SIZES {
        observe::set_observer(None);
        let off = allocations(deferred_chain, n);
        observe::set_observer(Some(Arc::new(Counting(AtomicU64::new(0)))));
        let on = allocations(deferred_chain, n);
        observe::set_observer(None);
        let boxed = allocations(boxed_chain, n);
        let oneshot = allocations(oneshot_chain, n);
        let per = |a: f64| a / n as f64;
        println!(
            "  N={n:>2}: deferred off {off:.1} ({:.2}/step), on {on:.1} ({:.2}/step), \
             boxed closures {boxed:.1} ({:.2}/step), oneshot {oneshot:.1} ({:.2}/step)",
            per(off),
            per(on),
            per(boxed),
            per(oneshot),
        );
    }
    let marginal = |f: fn(usize) -> u64| (allocations(f, 20) - allocations(f, 1)) / 19.0;
    println!(
        "  marginal per added step (N=1 -> 20): deferred {:.2}, boxed closures {:.2}",
        marginal(deferred_chain),
        marginal(boxed_chain)
    );
    let named_off = marginal(named_chain);
    observe::set_observer(Some(Arc::new(Counting(AtomicU64::new(0)))));
    let named_on = marginal(named_chain);
    observe::set_observer(None);
    println!(
        "  marginal per named step (N=1 -> 20): observer off {named_off:.2}, on {named_on:.2}"
    );
}

/// The figure the target is about: what one more traced step costs, and the ratio to
/// the baselines, all measured in this run.
fn print_per_step() {
    let step = |f: fn(usize) -> u64| (nanos(f, 20) - nanos(f, 1)) / 19.0;
    observe::set_observer(None);
    let off = step(deferred_chain);
    observe::set_observer(Some(Arc::new(Counting(AtomicU64::new(0)))));
    let on = step(deferred_chain);
    observe::set_observer(None);
    let boxed = step(boxed_chain);
    let oneshot = step(oneshot_chain);
    println!("time per added step (N=1 -> 20, medians of 9 batches):");
    println!(
        "  deferred, observer off: {off:>6.1} ns  ({:.1}x boxed closures, {:.1}x oneshot)",
        off / boxed,
        off / oneshot
    );
    println!(
        "  deferred, observer on:  {on:>6.1} ns  ({:.1}x boxed closures, {:.1}x oneshot)",
        on / boxed,
        on / oneshot
    );
    observe::set_observer(None);
    let named_off = step(named_chain);
    observe::set_observer(Some(Arc::new(Counting(AtomicU64::new(0)))));
    let named_on = step(named_chain);
    observe::set_observer(None);
    println!("  named step, observer off: {named_off:>4.1} ns");
    println!("  named step, observer on:  {named_on:>4.1} ns");
    println!("  boxed closures:         {boxed:>6.1} ns");
    println!("  tokio oneshot + boxed:  {oneshot:>6.1} ns");
    println!("  target: <= 50 ns per traced step with the observer on, <= 1 allocation per step\n");
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("chain");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for n in SIZES {
        observe::set_observer(None);
        group.bench_with_input(BenchmarkId::new("deferred_observer_off", n), &n, |b, &n| {
            b.iter(|| deferred_chain(n))
        });
        observe::set_observer(Some(Arc::new(Counting(AtomicU64::new(0)))));
        group.bench_with_input(BenchmarkId::new("deferred_observer_on", n), &n, |b, &n| {
            b.iter(|| deferred_chain(n))
        });
        observe::set_observer(None);
        group.bench_with_input(BenchmarkId::new("boxed_closures", n), &n, |b, &n| {
            b.iter(|| boxed_chain(n))
        });
        group.bench_with_input(BenchmarkId::new("tokio_oneshot", n), &n, |b, &n| {
            b.iter(|| oneshot_chain(n))
        });
    }
    group.finish();
}

fn main() {
    // `-- profile N [on]`: only run N-step chains (with the observer on), for a profiler.
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "profile") {
        let n = args.get(i + 1).and_then(|n| n.parse().ok()).unwrap_or(20);
        if args.iter().any(|a| a == "on") {
            observe::set_observer(Some(Arc::new(Counting(AtomicU64::new(0)))));
        }
        for _ in 0..100_000 {
            black_box(deferred_chain(black_box(n)));
        }
        return;
    }
    print_allocations();
    print_per_step();
    let mut criterion = Criterion::default().configure_from_args();
    bench(&mut criterion);
    criterion.final_summary();
}

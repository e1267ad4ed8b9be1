//! What the Deferred benches share: the chain they time, the cheapest observer, and how
//! they time it and count its allocations. `benches/deferred.rs` and weft-telemetry's
//! `benches/deferred_hub.rs` (through `#[path]`) both include it, so both measure the
//! same chain the same way.

use std::alloc::System;
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use weft::defer::Deferred;
use weft::observe::{Event, Observer};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// The cheapest real observer: looks at each event and counts it.
pub(crate) struct Counting(pub(crate) AtomicU64);

impl Observer for Counting {
    fn on_event(&self, event: &Event<'_>) {
        if let Event::Deferred(_) = event {
            self.0.fetch_add(1, Relaxed);
        }
    }
}

/// A traced chain: create, add `n` callbacks, fire, take the result.
pub(crate) fn deferred_chain(n: usize) -> u64 {
    let (resolver, mut d) = Deferred::<u64>::new();
    for _ in 0..n {
        d = d.add_callback(|v| black_box(v + 1));
    }
    resolver.callback(black_box(1));
    d.try_take().expect("fired").expect("succeeded")
}

/// Median nanoseconds per call of `f(n)` over several timed batches.
pub(crate) fn nanos(f: fn(usize) -> u64, n: usize) -> f64 {
    const BATCH: u32 = 20_000;
    let mut samples: Vec<f64> = (0..9)
        .map(|_| {
            let started = Instant::now();
            for _ in 0..BATCH {
                black_box(f(black_box(n)));
            }
            started.elapsed().as_nanos() as f64 / f64::from(BATCH)
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

/// Allocations per call of `f(n)`, over many calls after a first one.
pub(crate) fn allocations(f: impl Fn(usize) -> u64, n: usize) -> f64 {
    const RUNS: usize = 1000;
    f(n); // warm thread-locals (registry slab, observer cell)
    let region = Region::new(GLOBAL);
    for _ in 0..RUNS {
        black_box(f(n));
    }
    region.change().allocations as f64 / RUNS as f64
}

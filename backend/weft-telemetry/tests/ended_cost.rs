//! What the hub spends when a chain ends in failure does not grow with the chain: the
//! record it keeps for a late unhandled report carries no steps, and is built without
//! copying them.
//!
//! Alone in its test binary: the allocator counts every thread.

use std::sync::Arc;

use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use weft::Reactor;
use weft::defer::{Deferred, DeferredState, Failure};
use weft_telemetry::chains::MAX_STEPS;
use weft_telemetry::{Hub, HubConfig};

#[global_allocator]
static GLOBAL: &StatsAlloc<std::alloc::System> = &INSTRUMENTED_SYSTEM;

/// Allocations made while a chain of `steps` steps, waiting on a child, fails because the
/// child does.
fn allocations_to_fail_a_chain_of(hub: &Arc<Hub>, steps: usize) -> usize {
    let (resolver, d) = Deferred::<u32>::labeled("long chain");
    let mut d = d;
    for _ in 1..steps {
        d = d.add_callback(|n| n);
    }
    let (child_resolver, child) = Deferred::<u32>::new();
    let d = d.and_then(move |n| child.add_callback(move |c| n + c));
    resolver.callback(1);
    let id = d.id().0;
    let chain = hub.deferred(id).expect("waiting on its child");
    assert_eq!(
        (chain.state, chain.steps.len()),
        (DeferredState::Waiting, steps)
    );
    drop(chain);

    let region = Region::new(GLOBAL);
    child_resolver.errback(Failure::msg("the child failed"));
    let allocations = region.change().allocations;
    assert!(hub.deferred(id).is_none(), "the chain ended");
    drop(d);
    allocations
}

#[test]
fn ending_a_long_failed_chain_costs_what_a_short_one_does() {
    let reactor = Reactor::new().unwrap();
    let hub = Hub::new(HubConfig::default()).unwrap();
    hub.install(&reactor);
    // Once for what is set up on first use.
    allocations_to_fail_a_chain_of(&hub, 2);
    let short = allocations_to_fail_a_chain_of(&hub, 2);
    let long = allocations_to_fail_a_chain_of(&hub, MAX_STEPS);
    assert!(
        long <= short + 8,
        "a chain of {MAX_STEPS} steps took {long} allocations to end, one of 2 took {short}"
    );
}

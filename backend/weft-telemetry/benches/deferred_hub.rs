//! What a traced Deferred step costs when the observer is the hub: the chain of
//! `weft`'s own Deferred bench (create, add N callbacks, fire, take the result), with the
//! hub receiving its events, against the cheapest observer (one that only counts them)
//! in the same run. The difference is the hub's own work per step: the chain map's lock
//! and lookup, the step's record, the callback-duration histogram.
//!
//! `cargo bench -p weft-telemetry --bench deferred_hub`
//!
//! Prints nanoseconds and allocations per added step (N = 1 -> 20), medians of 9 batches.

#[path = "../../weft/benches/chain/mod.rs"]
mod chain;

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use chain::{Counting, allocations, deferred_chain, nanos};
use weft::observe::{self, Observer};
use weft_telemetry::{Hub, HubConfig};

/// Time and allocations of one more step with `observer` installed.
fn per_step(observer: Arc<dyn Observer>) -> (f64, f64) {
    observe::set_observer(Some(observer));
    let time = (nanos(deferred_chain, 20) - nanos(deferred_chain, 1)) / 19.0;
    let allocs = (allocations(deferred_chain, 20) - allocations(deferred_chain, 1)) / 19.0;
    observe::set_observer(None);
    (time, allocs)
}

fn main() {
    let hub = Hub::new(HubConfig::default()).expect("default settings are valid");
    // A reader, as the store's history pipeline is: publishing is part of the cost.
    let _feed = hub.subscribe("bench");
    let (counting, counting_allocs) = per_step(Arc::new(Counting(AtomicU64::new(0))));
    let (hub_time, hub_allocs) = per_step(hub);
    println!("per added step (N=1 -> 20, medians of 9 batches):");
    println!("  counting observer: {counting:>6.1} ns, {counting_allocs:.2} allocations");
    println!("  hub as observer:   {hub_time:>6.1} ns, {hub_allocs:.2} allocations");
    println!("  the hub's own work: {:>5.1} ns", hub_time - counting);
}

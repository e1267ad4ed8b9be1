//! Deferred callback chains and failures (`twisted.internet.defer`), traced all the time.
//!
//! A [`Deferred<T>`] is a result that arrives later plus the chain of callbacks that
//! processes it. Whoever produces the result holds its [`Resolver<T>`]; whoever
//! consumes it adds steps. Every Deferred has an id, a creation site (file:line), a
//! connection when it was created inside a protocol callback, a state, and a trace of
//! its steps, all reported to the reactor's observer as [`DeferredEvent`]s and listed
//! by [`pending()`] while it is pending.
//!
//! # From Twisted
//!
//! | Twisted | weft |
//! |---|---|
//! | `d = Deferred()` | `let (resolver, d) = Deferred::<T>::new()` |
//! | `d.callback(v)` / `d.errback(f)` | `resolver.callback(v)` / `resolver.errback(f)` (consumes the resolver) |
//! | `AlreadyCalledError` | does not compile; [`Resolver::try_callback`] reports a prior cancellation |
//! | `d.addCallback(f)`, f returns a value | `d.add_callback(f)` → `Deferred<U>` |
//! | f raises / returns a Deferred | `d.and_then(f)`, f returns `Result<U, Failure>` or `Deferred<U>` |
//! | `d.addErrback(eb)`, `addBoth`, `addCallbacks` | `add_errback`, `add_both`, `add_callbacks` |
//! | `d.pause()`, `unpause()`, `chainDeferred(d2)` | same names |
//! | `Deferred(canceller)`, `d.cancel()`, `addTimeout` | [`Deferred::with_canceller`], `cancel`, `add_timeout` |
//! | `succeed(v)`, `fail(f)`, `maybeDeferred(f)` | [`Deferred::succeed`], [`Deferred::fail`], [`maybe_deferred`] |
//! | `DeferredList`, `gatherResults`, `race` | [`DeferredList`], [`gather_results`], [`race`] |
//! | `DeferredLock`, `DeferredSemaphore`, `DeferredQueue` | same names |
//! | `inlineCallbacks`, `ensureDeferred` | `d.await` in an `async fn`; [`Deferred::from_future`] |
//! | `Failure`, `f.trap(E)`, `f.check(E)` | [`Failure`], `trap::<E>()`, `check::<E>()`, `downcast_ref` |
//! | `setDebugging(True)` | [`set_debugging`] (backtraces); sites and tracing are always on |
//!
//! ## Why the API looks like this
//!
//! The chain is typed: each `add_*` consumes the handle and returns one for the new
//! result type, so `d.add_callback(|n: u32| n.to_string())` turns a `Deferred<u32>`
//! into a `Deferred<String>` and a type error shows at compile time, not in an errback.
//! It is still one Deferred (same id, same trace); only the handle's type changes.
//! A plain value is the common case, so `add_callback` takes `FnOnce(T) -> U`;
//! Rust cannot tell "a value that happens to be a `Result`" from "fail the chain", so
//! the callbacks that may fail or wait say so by their return type in `and_then` /
//! `add_errback` / `add_both` ([`CallbackResult`]: `Result<U, Failure>` or `Deferred<U>`).
//! The firing side is a separate, consumed [`Resolver`], so firing twice cannot be
//! written and "the firing side was dropped unfired" is something we can see.
//!
//! ```
//! use weft::defer::{Deferred, Failure};
//!
//! let (resolver, d) = Deferred::<u32>::new();
//! let mut d = d
//!     .add_callback(|n| n + 1)
//!     .and_then(|n| if n > 10 { Err(Failure::msg("too big")) } else { Ok(n * 2) })
//!     .add_errback(|failure| {
//!         assert_eq!(failure.error().to_string(), "too big");
//!         Ok(0) // recovered
//!     });
//! resolver.callback(41);
//! assert_eq!(d.try_take().unwrap().unwrap(), 0);
//! ```
//!
//! A callback that returns a Deferred pauses the chain until that one fires:
//!
//! ```
//! use weft::defer::{Deferred, DeferredState};
//!
//! let (outer, d) = Deferred::<&str>::new();
//! let (inner, child) = Deferred::<usize>::new();
//! let mut d = d.and_then(move |s| child.add_callback(move |n| s.len() + n));
//! outer.callback("four");
//! assert_eq!(d.state(), DeferredState::Waiting);
//! inner.callback(1);
//! assert_eq!(d.try_take().unwrap().unwrap(), 5);
//! ```
//!
//! Timeouts and cancellation run on the thread's clock, a fake one in tests:
//!
//! ```
//! use std::time::Duration;
//! use weft::defer::{Deferred, TimeoutError};
//! use weft::testing::Clock;
//!
//! let clock = Clock::fake();
//! let _installed = clock.install();
//! let (_resolver, d) = Deferred::<()>::new();
//! let mut d = d.add_timeout(Duration::from_secs(5));
//! clock.advance(Duration::from_secs(5));
//! assert!(d.try_take().unwrap().unwrap_err().check::<TimeoutError>());
//! ```
//!
//! In async code a Deferred is a future:
//!
//! ```
//! # use weft::defer::{Deferred, Failure};
//! async fn lookup(d: Deferred<u32>) -> Result<u32, Failure> {
//!     let n = d.await?;
//!     Ok(n + 1)
//! }
//! ```
//!
//! # Tracing and detectors
//!
//! Always on, and cheap (see `benches/deferred.rs`): a step costs no allocation of its own
//! and one clock read. The detectors report each Deferred at most once per kind, as events and
//! log lines naming the site and the connection:
//! - **stalled**: pending or paused longer than [`stall_threshold`] (the reactor scans;
//!   per-label overrides with [`set_stall_threshold_for`]);
//! - **slow callback**: one step held the thread longer than
//!   [`observe::slow_threshold`](crate::observe::slow_threshold), naming the step's site;
//! - **unhandled**: the chain ends in a failure and its last handle is dropped —
//!   reported at that moment, not at some garbage collection;
//! - **leaked**: the [`Resolver`] is dropped unfired; the chain can never complete;
//! - **deadlock**: chains wait, through [`DeferredLock`]s, [`DeferredSemaphore`]s or
//!   [`DeferredQueue`]s, on each other in a cycle (found by the stall scan, so within
//!   a quarter of the stall threshold); each member is reported with the whole cycle.
//!
//! A chain waiting on a child and the child's callback refer to each other until the
//! child fires or leaks; a child whose resolver is kept alive inside its own parent's
//! later steps is a cycle that only firing breaks.
//!
//! # Layout
//!
//! - `deferred.rs`: the typed handles [`Deferred`], [`Resolver`], [`CancelHandle`].
//! - `step.rs`: typed steps behind the object-safe `Link` trait; [`CallbackResult`].
//! - `core.rs`: the untyped chain: queue, pause, cancel, child links; the points where the
//!   inline detectors look. `core/drive.rs`: the driver's loop, which runs the queued
//!   steps in place, times and reports each one.
//! - `slot.rs`: where the chain keeps a link (inline when small), with its kind and site.
//! - `failure.rs`: [`Failure`] and the typed errors.
//! - `events.rs`: [`DeferredEvent`] and its parts, what the observer receives.
//! - `registry.rs`: the live registry of pending Deferreds, [`pending()`], cross-thread listing.
//! - `detect.rs`: the detectors' reports and the stall scan.
//! - `future.rs`: `Future for Deferred`, [`Deferred::from_future`].
//! - `held.rs`: [`Held`], a traced chain made only if its work has to wait.
//! - `named.rs`: [`Steps`], the named steps async code marks on its chain.
//! - `list.rs`: [`DeferredList`], [`gather_results`], [`race`], [`maybe_deferred`].
//! - `sync.rs`: [`DeferredLock`], [`DeferredSemaphore`], [`DeferredQueue`].
//! - `waits.rs`: who holds and who waits on each of them, [`wait_graph()`], and the
//!   deadlock scan; `deadlock.rs`: the search for cycles in that graph.
//!
//! A value moves: `Resolver::callback` → a holder at the head of the chain → each step's
//! box in turn (`core.rs` drives, `step.rs` moves) → the consumer (`try_take`, `await`,
//! or the last step's box until the handle drops). Events flow out at each move.

mod core;
mod deadlock;
mod deferred;
mod detect;
pub(crate) mod events;
mod failure;
mod future;
mod held;
mod list;
mod named;
mod registry;
mod slot;
mod step;
mod sync;
mod waits;

#[cfg(test)]
pub(crate) use core::HOLD;
pub(crate) use core::Unannounced;
pub use deadlock::{Deadlock, DeadlockMember, describe_member};
pub use deferred::{CancelHandle, Deferred, Resolver};
pub(crate) use detect::{StallConfig, start_detectors};
pub use detect::{
    StallWatch, scan_for_stalls, set_stall_threshold, set_stall_threshold_for, stall_threshold,
    watch_stalls,
};
pub use events::{
    Created, DeferredEvent, DeferredId, DeferredState, Detector, Dropped, FailureInfo, Fired,
    Leaked, Outcome, Paused, Resumed, Settled, Site, SlowCallback, Stalled, StepFinished, StepKind,
    StepNamed, StepOutcome, StepQueued, StepStatus, Subject, Unhandled,
};
pub use failure::{
    AlreadyCalledError, CancelledError, Failure, FailureGroup, FirstError, LeakedError, PanicError,
    QueueOverflow, QueueUnderflow, TimeoutError, append_causes, debugging, set_debugging,
};
pub use held::Held;
pub(crate) use list::maybe_deferred_at;
pub use list::{DeferredList, ListResult, gather_results, maybe_deferred, race};
pub use named::{NamedStep, StepDetail, Steps, WaitsOn};
pub(crate) use registry::Registry;
pub use registry::{PendingDeferred, cancel, pending, pending_count};
pub(crate) use registry::{clock_now, clock_now_exact};
pub use step::{CallbackResult, Next};
pub use sync::{DeferredLock, DeferredQueue, DeferredSemaphore, LockGuard, SemaphoreGuard};
pub(crate) use waits::WaitTable;
pub use waits::{LockKind, LockWaits, MAX_HOLDERS, Party, WaitGraph, wait_graph};

#[cfg(test)]
mod tests;

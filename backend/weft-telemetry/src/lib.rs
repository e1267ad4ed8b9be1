//! The weft telemetry hub: turns reactor events into Prometheus metrics, a live registry of
//! connections, and a bounded event bus for the store and the live feed.
//!
//! ```no_run
//! use std::sync::Arc;
//! use weft_telemetry::{Hub, HubConfig};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let reactor = weft::Reactor::new()?;
//! let hub = Hub::new(HubConfig::default())?;
//! hub.install(&reactor);
//! // ... listen, run; from any thread:
//! let text = hub.encode_metrics();
//! let open = hub.connections();
//! # let _ = (text, open);
//! # Ok(()) }
//! ```
//!
//! # Layout
//!
//! - [`hub`]: [`Hub`], the [`Observer`](weft::observe::Observer) the reactor calls; it routes each
//!   event to the modules below and never blocks (atomics, short map updates, an append).
//! - [`metrics`]: the Prometheus families on an owned registry, with labelled handles resolved
//!   once per service and cached.
//! - `calls`: `weft_reactor_calls_refused_total`, read from each reactor's handle at
//!   scrape time.
//! - [`live`]: the registry of open connections and the byte totals of closed ones; the
//!   byte counters are derived from it at scrape time by a custom collector, so the data path
//!   does nothing for them.
//! - [`bus`]: [`TelemetryEvent`], the owned form of an event, and the bounded ring that
//!   readers (the store writer, the dashboard's encoder) pull batches from through a
//!   [`Feed`]; events a slow reader loses are counted per reader.
//! - [`mod@fold`]: [`fold()`], how both readers fold a connection that opened and closed
//!   within one batch into its closing.
//! - [`deferred`]: Deferred chain events: their metrics, detections and the sampling of
//!   successful chains.
//! - [`chains`]: the pending chains with their steps so far, and [`DeferredSnapshot`].
//! - [`tasks`]: async tasks kept beside the chains, their figures read from each task's
//!   own cell when a snapshot is taken ([`TaskSnapshot`]).
//! - [`config`]: [`HubConfig`], the `[inspect]` thresholds and the sample rate.
//! - [`recent`]: [`Recent`], the last chains that ended or were flagged, kept as published
//!   so the API lists a detection at once, before history has committed it.
//! - [`ready`]: which expected listeners are up and whether the reactor serves, for
//!   `/readyz` ([`ReadinessReport`]); after a reload, the new set of listeners and the
//!   services retired.
//! - [`reload`]: configuration reloads counted by result, and the last [`ReloadOutcome`]
//!   for the dashboard's banner.
//! - `process`: the `process_*` series (CPU, memory, descriptors, start time) read from
//!   `/proc/self` at scrape time, and `weft_build_info`.
//!
//! A service's connection series (opened, active, closed by reason, bytes) exist at zero
//! from the moment one of its listeners starts, so `rate()` sees its first connection and
//! an alert on their absence means the service is not there.
//! - [`views`]: [`ServiceViews`], what each service shows of itself beyond its
//!   connections (routes with their status classes and latency, upstreams), registered
//!   by the program and asked for by the dashboard from any thread.
//! - [`waits`]: the wait-for graph of locks, semaphores and queues the reactor's scan
//!   hands over when it changes, and what it says about one chain.
//! - [`profile`]: reactor-lag spikes with the call that held the reactor ([`LagSpike`]),
//!   the recent ones kept in a small ring; the per-site profile itself is the reactor's
//!   ([`weft::reactor::profile`]).
//! - [`openmetrics`]: the OpenMetrics text exposition of the same families, with the
//!   exemplars latency histograms keep beside them
//!   ([`ExemplarIndex`](weft::observe::exemplar::ExemplarIndex)), for a scraper that asks.
//! - `sum`: families a service kind makes once per reactor, summed into one series per
//!   label set when metrics are rendered.
//! - [`refusals`]: refusals reach the bus at most once a second per service and reason
//!   (each carrying how many were left out); the metric counts every one.
//!
//! Data moves reactor → `Hub::on_event` → (metrics, live registry, bus) → consumers; readers
//! (a scrape, the dashboard) take snapshots from any thread.

pub mod bus;
mod calls;
pub mod chains;
pub mod config;
pub mod deferred;
pub mod fold;
pub mod hub;
pub mod live;
pub mod metrics;
pub mod openmetrics;
mod process;
pub mod profile;
pub mod ready;
pub mod recent;
pub mod refusals;
pub mod reload;
mod sum;
pub mod tasks;
pub mod views;
pub mod waits;

pub use bus::{EventKind, Feed, Missed, TelemetryEvent};

/// The `service` label of work done outside any service: a chain, task or callback no
/// connection of a service owns (a timer, a reload, a hook). Not a service: the dashboard
/// does not list it, and no service may take the name.
pub const NO_SERVICE: &str = "reactor";
pub use chains::{ChainTrace, DeferredSnapshot, MAX_NAMED_STEPS, NamedStepSnapshot, StepSnapshot};
pub use config::{HubConfig, TelemetryError};
pub use fold::{Folded, fold};
pub use hub::Hub;
pub use live::ConnectionSnapshot;
pub use process::VERSION;
pub use profile::LagSpike;
pub use ready::ReadinessReport;
pub use recent::{RECENT_CAPACITY, Recent};
pub use reload::{ReloadOutcome, ReloadResult};
pub use tasks::TaskSnapshot;
pub use views::{ServiceSnapshot, ServiceView, ServiceViews};
pub use waits::{ChainWaits, WaitsSnapshot};

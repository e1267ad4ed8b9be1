//! The weft inspector: one call gives a program on a weft reactor the telemetry hub,
//! SQLite history and the dashboard, for its own protocols.
//!
//! ```no_run
//! use weft_inspector::{Inspector, InspectorConfig};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let reactor = weft::Reactor::new()?;
//! let inspector = Inspector::start(&reactor, InspectorConfig::default())?;
//! // reactor.listen_as("my-service", "tcp:8000", my_factory)?;
//! reactor.run()?;
//! inspector.join();
//! # Ok(()) }
//! ```
//!
//! A program needs `weft` and this crate only: the settings' types are re-exported here
//! ([`HubConfig`], [`StoreOptions`], [`AllowedHost`], [`Reloader`]), and so are the crates
//! behind them for anything deeper.
//!
//! # Layout
//!
//! - `inspector`: [`Inspector`], [`InspectorConfig`], [`InspectorError`]: starting on the
//!   reactor's thread (the hub installed, ids continued above the history's), stopping
//!   with the reactor's last shutdown phase.
//! - `background`: the inspector's own thread and tokio runtime: opens the store, binds
//!   the dashboard, runs the history pipeline and the dashboard, flushes at exit.
//! - `history`: the history pipeline: the bus reader `store` turns events into rows (a
//!   connection opened and closed within one batch is one row, folded by
//!   [`weft_telemetry::fold()`]; routine ones past the per-second budget are skipped and
//!   counted), and open connections and pending chains are written every second.
//! - `notify`: [`NotifyConfig`]: the bus reader `notify` posts each detection worth a page
//!   (all but `slow`) as JSON to a URL, rate-limited, through a bounded queue, drops and
//!   failures counted (`weft_notifications_*`).
//! - `otlp`: [`OtlpConfig`]: the bus reader `otlp` exports the chains history keeps as
//!   OpenTelemetry spans over OTLP/HTTP (protobuf), through a bounded queue, drops and
//!   failures counted (`weft_otlp_*`); starting it turns on W3C trace context
//!   ([`weft::observe::trace`]). DNS services hand it the answers their query logs keep
//!   through [`QuerySpans`] ([`Inspector::query_spans`]).
//! - `post`: one `POST` to a receiver outside, shared by `notify` and `otlp`.
//! - `store_metrics`: the `weft_store_*` families, read from the store at scrape time.
//! - `endpoint`: [`dashboard_addr`], where a dashboard may listen: a `tcp:` endpoint, off
//!   loopback only with a token. The gateway's configuration check asks the same function.
//!
//! Threads: the hub runs on the reactor's thread; everything else here runs on the
//! inspector's thread, so a slow browser or a locked database never stalls a service.

mod background;
mod endpoint;
mod history;
mod inspector;
mod notify;
mod otlp;
mod post;
mod store_metrics;

pub use endpoint::{DashboardEndpointError, dashboard_addr};
pub use inspector::{
    DEFAULT_HISTORY_CONNECTIONS_PER_S, Inspector, InspectorConfig, InspectorError,
};
pub use notify::{
    DEFAULT_NOTIFY_PER_MINUTE, DEFAULT_NOTIFY_QUEUE, MAX_NOTIFY, NotifyConfig, NotifyError,
};
pub use otlp::{
    BATCH as OTLP_BATCH, DEFAULT_OTLP_QUEUE, DNS_QUERY, MAX_OTLP_QUEUE, OtlpConfig, OtlpError,
    QuerySpans,
};
pub use weft_dashboard::{self, AllowedHost, Reloader};
pub use weft_store::{self, StoreOptions};
pub use weft_telemetry::{self, HubConfig};

//! HTTP service for weft (twisted.web): static files, a reverse proxy and an access log,
//! on hyper's HTTP/1.1 and HTTP/2, with every connection and request visible to the inspector.
//!
//! ```no_run
//! use std::rc::Rc;
//! use weft::Reactor;
//! use weft_web::{HttpService, NoRecorder, Route, WebConfig};
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let reactor = Reactor::new()?;
//!     let config = WebConfig {
//!         root: Some("./public".into()),
//!         routes: vec![Route::new("/api/", "http://127.0.0.1:9000")?],
//!         ..WebConfig::default()
//!     };
//!     let web = HttpService::new("web", config, Rc::new(NoRecorder))?;
//!     web.listen(&reactor, "tcp:8080:interface=127.0.0.1")?;
//!     reactor.run()?;
//!     Ok(())
//! }
//! ```
//!
//! # Layout
//!
//! - [`config`]: [`WebConfig`] (root or embedded files, index, routes, [`Limits`]);
//!   `config::upstreams`: upstream URLs (`http://`, `https://`), [`Balance`],
//!   [`Health`], [`PoolConfig`] and their bounds.
//! - [`server`]: [`HttpService`]: its state, built once, and its listeners through
//!   weft's `listen_stream`; `server::connection` runs hyper on each connection
//!   (finishing the exchange in flight when asked to close), with HTTP/2 request heads
//!   timed by `server::heads`, which hyper does not do; `server::request` traces,
//!   times, records and logs each request, and sends it to the proxy or to the static
//!   files.
//! - `protocol`: which HTTP a connection speaks (ALPN on TLS, the HTTP/2 preface on
//!   plain connections) and hyper's HTTP/2 limits against abuse.
//! - `rules`: the RFC 9112 / 9110 message rules checked before routing (`Host`,
//!   `CONNECT`).
//! - [`path`]: the request path's normal form (dot segments removed, unreserved
//!   characters decoded) that routing, forwarding and files share; request path → file
//!   under the root, refusing traversal and symlink escapes.
//! - `files`: GET/HEAD of files, index files, from a root directory or from
//!   [`EmbeddedFiles`] held in memory: entity tags and preconditions
//!   (`files::conditional`), byte ranges and `multipart/byteranges` (`files::ranges`),
//!   precompressed siblings and gzip / brotli on the fly (`files::encoding`), directory
//!   listings (`files::listing`); `mime`: content types and which are compressible.
//! - [`proxy`]: forwarding to one of a route's upstreams; `proxy::upstreams` picks it
//!   (round robin or least connections), ejects one that keeps failing, runs active
//!   health checks and shares each upstream's state with other threads
//!   ([`UpstreamsView`]); `proxy::pool` keeps HTTP/1.1 connections alive per upstream
//!   (opened by the reactor, so listed under the service); `proxy::outgoing` keeps the
//!   request across attempts; `proxy::upgrade`: requests
//!   that switch protocols (WebSocket), tunnelled after the 101. [`headers`]: hop-by-hop
//!   removal and `Forwarded` / `X-Forwarded-*`.
//! - [`access_log`]: one entry per response, escaped, written when the response body
//!   ends, with the bytes actually sent: a Combined Log Format line or fields through
//!   `tracing`, or lines appended to an [`AccessLogFile`] by a writer thread (buffered,
//!   reopened for logrotate, losses counted).
//! - [`metrics`]: the [`Recorder`] the caller plugs in, its bounded labels
//!   (`metrics::labels`), and the Prometheus families that record it ([`HttpMetrics`]
//!   in `metrics::service`, per upstream in `metrics::upstream`, [`AccessLogLosses`] in
//!   `metrics::losses`).
//! - [`routes`]: each route's series ([`RouteMetrics`]: requests by status class,
//!   latency, upstream errors and the last few of them), readable from any thread, and a
//!   service's routes as a view lists them ([`RouteFigures`]).
//! - [`body`]: the response body type. `client_body`: the request body as the proxy
//!   reads it, each piece due within `request_timeout` of the one before (408 and
//!   `body_timeout` otherwise, one HTTP/2 stream and not its connection).
//! - `trace`: a request's traced Deferred and its named steps (`route`, `connect
//!   upstream`, `response head`, `read file`); a cancel from the inspector ends the
//!   request's work and answers 503.
//!
//! A request moves: socket → `InspectedStream` (counts bytes) → hyper → `server::request`
//! (trace, rules, normal path, route) → `proxy` or `files` → response → recorder → hyper
//! → socket, and the access log when the body has gone.

pub mod access_log;
mod behind;
pub mod body;
mod client_body;
pub mod config;
mod deadline;
mod embedded;
mod files;
pub mod headers;
pub mod metrics;
mod mime;
pub mod path;
mod private;
mod protocol;
pub mod proxy;
mod response;
pub mod routes;
mod rules;
pub mod server;
mod trace;

pub use access_log::{AccessLog, AccessLogFile, AccessLogFiles, LogLoss, LossRecorder};
pub use config::{
    Access, ActiveCheck, Balance, Compression, ConfigError, FileOptions, Health, Limits,
    PoolConfig, RateLimit, Route, Upstream, WebConfig,
};
pub use embedded::EmbeddedFiles;
pub use files::{HOT_REQUESTS, REVALIDATE_EVERY};
pub use metrics::{
    AccessLogLosses, ConnectionsUsed, HttpMetrics, MethodLabel, NoRecorder, Recorder, Refusal,
    StatusClass, UpgradeOutcome, UpstreamFailure,
};
pub use mime::content_type;
pub use private::keep_private;
pub use proxy::{BodiesSnapshot, BodiesView, RecentError, UpstreamSnapshot, UpstreamsView};
pub use routes::{RouteFigures, RouteMetrics};
pub use server::{Handover, HttpService, StaticFiles};

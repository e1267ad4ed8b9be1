//! The `weft` gateway as a library: configuration, services and the wiring the binary
//! runs; the inspector it starts is [`weft_inspector`].
//!
//! # Layout
//!
//! - [`config`]: `weft.toml` parsed and validated before anything binds a port; errors
//!   name the file, line and key. The built-in demo configuration.
//! - [`services`]: one module per service kind (echo, discard, tcp-proxy, http, dns), each
//!   with its settings, how it starts and its tests; `limits` for what every kind bounds.
//! - [`running`]: [`running::Running`], the services running now, and applying another
//!   configuration to them: added, removed, changed (their sockets handed over) and
//!   unchanged services.
//! - [`replicas`]: the services of reactors 1 to N-1 (`[gateway] reactors`), each
//!   reactor's kept on its thread, following what reactor 0 applies.
//! - [`reload`]: SIGHUP and `POST /api/reload`: re-read and validate the file as
//!   `weft check` does, apply it, report the outcome.
//! - [`demo`]: what `[demo] traffic = true` adds (the built-in demo sets it): the
//!   demo's upstreams and a traffic generator written as weft protocols; the built-in
//!   site and zones.
//! - [`app`]: [`app::run`], what `weft run` does: reactor, inspector, services, reloads,
//!   run, drain, flush.
//! - [`logging`]: the process log on stderr, as text or JSON lines.
//! - [`notify`]: tells systemd (`Type=notify`) when every service listens and when
//!   shutdown begins.
//!
//! Threads: reactor 0 runs on the calling thread, and with `[gateway] reactors = N` each
//! other reactor on a thread of its own, every one serving every service; the dashboard and
//! the store writer run on the inspector's own tokio runtime on a background thread, so a
//! slow browser or a locked database never stalls a service.

pub mod app;
pub mod config;
pub mod demo;
pub mod logging;
pub mod notify;
pub mod reload;
pub mod replicas;
pub mod running;
mod secondaries;
pub mod services;

pub use config::{Config, ConfigError, LogFormat};

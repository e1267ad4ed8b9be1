//! The weft inspector on axum: pages, the JSON API, the live feed, actions, `/metrics` and
//! `/healthz`, all over one [`DashboardState`].
//!
//! ```no_run
//! # async fn demo(hub: std::sync::Arc<weft_telemetry::Hub>) -> std::io::Result<()> {
//! let state = weft_dashboard::DashboardState::new(hub);
//! // The sampler (sparklines) and the live encoder (`/ws`) run beside the server.
//! tokio::spawn(weft_dashboard::background(state.clone(), std::future::pending()));
//! let listener = weft_dashboard::bind("127.0.0.1:9180".parse().unwrap())?;
//! let state = state.with_listen_addr(listener.local_addr()?);
//! weft_dashboard::serve(listener, state, std::future::pending()).await;
//! # Ok(())
//! # }
//! ```
//!
//! # Layout
//!
//! - [`state`]: [`DashboardState`], what every handler reads: the hub, the store, the
//!   token, the reactor handle for actions, the series and the live fan-out.
//! - [`data`]: live figures from the hub merged with history from the store, as the rows
//!   every view shows; [`api`] serves them as JSON and `pages` as askama templates from
//!   `frontend/templates/` (auto-escaped).
//! - `instances`: the instance filter of the list pages and the instance a history row
//!   names, where history holds more than one gateway's rows.
//! - `reactors`: the reactor column and filter of the connection and Deferred lists,
//!   shown when there is more than one reactor to tell apart.
//! - `recent`: the hub's ring of chains that ended or were flagged lately, merged into the
//!   Deferred lists and `/api/events` ahead of history, so a detection is listed at once.
//! - [`sort`]: the order of the connections list (`?sort=&dir=`), shared by the page's
//!   header links and the JSON API.
//! - [`cards`]: the overview's service cards, their sparklines drawn on the server with a
//!   title that reads out their figures.
//! - [`views`]: the figures of the services' own views (`weft_telemetry::ServiceViews`)
//!   for the HTTP page and `/api/http`: per route requests per second, status classes and
//!   p50/p99 over a window, measured against readings kept while someone looks; each
//!   service's upstreams.
//! - [`dns`]: the DNS page and `/api/dns` from the same views measured over a minute:
//!   queries per second by type and code, cache hit ratio, p50/p99, upstream latency and
//!   timeouts, top names, and recent queries (from the query log after a restart).
//! - [`profile`]: `/profile` and `/api/profile`: reactor time per callback site over the
//!   last fifteen minutes (a stacked chart drawn on the server) and the reactor-lag
//!   spikes with the call that held the reactor.
//! - [`series`]: the last minutes of per-service figures, sampled from the hub's registry.
//! - [`live`]: `/ws`: one encoder batching the hub's events into shared frames, and a
//!   session per client (snapshot, deltas, resync when it lags), generic over
//!   `Sink`/`Stream`.
//! - `actions`: closing a connection and cancelling a Deferred through the reactor handle;
//!   reloading the program's configuration through its [`Reloader`].
//! - [`host`]: the names a request's `Host` may give (DNS rebinding); `421` otherwise.
//! - `auth`: the token (bearer header or login cookie) and the same-origin check for
//!   actions and `/ws`.
//! - `headers`: `Content-Security-Policy`, `nosniff` and `Referrer-Policy` on every answer.
//! - `history`: a view whose history cannot be read answers with its live part and a
//!   note, and the failure is counted.
//! - `assets`: `frontend/static/` (ES modules and CSS, no build step), compiled in.
//! - `exposition`, `health`: `/metrics` (Prometheus text, or OpenMetrics with exemplars
//!   when the scraper asks for it), `/healthz` and `/readyz`.
//! - `metrics`: [`DashboardMetrics`], the dashboard's own counters (refusals, live
//!   clients, history errors).
//! - [`server`]: [`serve`], the listener: [`router`] on hyper's HTTP/1.1 with a deadline
//!   for request heads and idle keep-alive, and caps on connections per peer and in all.
//!
//! Connections come in through [`serve`], requests through [`router`]; they pass `host`
//! and `auth`, and read the state; the only writes to the reactor are the actions, queued
//! through its handle or the reload queue. Nothing here blocks the
//! reactor or waits on a browser.

pub mod actions;
pub mod api;
mod assets;
pub mod attempts;
mod auth;
pub mod cards;
pub mod data;
mod defer;
pub mod dns;
pub mod error;
mod exposition;
pub mod fmt;
mod headers;
mod health;
mod history;
pub mod host;
mod instances;
pub mod live;
mod metrics;
mod pages;
pub mod profile;
mod reactors;
mod recent;
pub mod series;
pub mod server;
mod session;
pub mod sort;
pub mod state;
pub mod views;
pub mod waits;

use std::future::Future;
use std::net::SocketAddr;

use axum::Router;
use axum::routing::{get, post};

pub use auth::{MIN_TOKEN_LEN, token_problem};
pub use error::ApiError;
pub use health::Health;
pub use host::{AllowedHost, HostError};
pub use metrics::DashboardMetrics;
pub use server::serve;
pub use state::{DashboardState, ReloadRequest, Reloader};

/// The dashboard's routes over `state`.
pub fn router(state: DashboardState) -> Router {
    let actions = Router::new()
        .route(
            "/api/connections/{id}/close",
            post(actions::close_connection),
        )
        .route("/api/deferreds/{id}/cancel", post(actions::cancel_deferred))
        .route("/api/reload", post(actions::reload))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_same_origin,
        ));
    Router::new()
        .route("/", get(pages::overview))
        .route("/connections", get(pages::connections))
        .route("/connections/{id}", get(pages::connection))
        .route("/deferreds", get(pages::deferreds))
        .route("/deferreds/{id}", get(pages::deferred))
        .route("/services", get(pages::services))
        .route("/http", get(pages::http))
        .route("/dns", get(pages::dns))
        .route("/waits", get(waits::page))
        .route("/profile", get(profile::page))
        .route("/login", get(auth::login_form).post(auth::login))
        .route("/api/services", get(api::services))
        .route("/api/connections", get(api::connections))
        .route("/api/connections/{id}", get(api::connection))
        .route("/api/deferreds", get(api::deferreds))
        .route("/api/deferreds/{id}", get(api::deferred))
        .route("/api/events", get(api::events))
        .route("/api/http", get(api::http))
        .route("/api/dns", get(api::dns))
        .route("/api/waits", get(waits::api))
        .route("/api/profile", get(profile::api))
        .route("/ws", get(live::ws))
        .route("/static/{name}", get(assets::file))
        .route("/metrics", get(exposition::metrics))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .merge(actions)
        .fallback(pages::not_found)
        .layer(axum::middleware::from_fn(error::api_method_errors_as_json))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::refuse_cross_site_fetches,
        ))
        // Before the token check: the login form's body is read by anyone who can reach
        // the listener, so it is bounded in size and time for every route alike.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            server::bounded_body,
        ))
        // Outside the token check: a rebound name learns nothing, not even that a token is
        // needed; outermost, the headers go on every answer, refusals included.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            host::require_known_host,
        ))
        .layer(axum::middleware::map_response(headers::secure))
        .with_state(state)
}

/// The kernel send buffer of each dashboard connection, in bytes (the kernel doubles it
/// for its own bookkeeping).
pub const SEND_BUFFER: u32 = 64 * 1024;

/// Binds the dashboard's listener on `addr`. Its connections inherit a fixed send buffer
/// of [`SEND_BUFFER`] (the kernel otherwise grows it to megabytes): a client that stops
/// reading holds at most that much, and sends to it block soon enough for the live feed's
/// send timeout to notice. On IPv6 it takes IPv6 alone (`IPV6_V6ONLY`), as the services'
/// listeners do: `[::]` does not also take the IPv4 port, which a service may listen on
/// (and `weft check` says they do not clash).
pub fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = weft::net::tcp_listening_socket(addr)?;
    socket.set_send_buffer_size(SEND_BUFFER as usize)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    socket.set_nonblocking(true)?;
    tokio::net::TcpListener::from_std(socket.into())
}

/// Samples figures for the sparklines and encodes the live feed until `stop` completes,
/// then closes every live client's feed (1001, going away) and waits a moment for them to
/// leave. Run it beside [`router`]'s server.
pub async fn background(state: DashboardState, stop: impl Future<Output = ()>) {
    live::run(state.hub, state.series, state.fanout, stop).await;
}

#[cfg(test)]
mod tests;

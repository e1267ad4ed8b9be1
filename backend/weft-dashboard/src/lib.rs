//! The weft inspector on axum: `/metrics` and `/healthz` today; pages, the JSON API and the
//! live feed build on the same [`DashboardState`].
//!
//! ```no_run
//! # async fn demo(hub: std::sync::Arc<weft_telemetry::Hub>) -> std::io::Result<()> {
//! let app = weft_dashboard::router(weft_dashboard::DashboardState::new(hub));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:9180").await?;
//! axum::serve(listener, app).await
//! # }
//! ```
//!
//! # Layout
//!
//! - [`state`]: [`DashboardState`], what every handler reads: the telemetry hub, the history
//!   store, the access token.
//! - `auth`: the bearer-token check in front of everything but `/healthz`.
//! - `metrics`: `/metrics`, the hub's registry in Prometheus' text format.
//! - `health`: `/healthz`, a small JSON liveness report.
//!
//! Requests come in through [`router`], pass `auth`, and read the state; nothing here writes
//! to the reactor or waits on it.

mod auth;
mod health;
mod metrics;
pub mod state;

use axum::Router;
use axum::routing::get;

pub use health::Health;
pub use state::DashboardState;

/// The dashboard's routes over `state`.
pub fn router(state: DashboardState) -> Router {
    Router::new()
        .route("/metrics", get(metrics::metrics))
        .route("/healthz", get(health::healthz))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ))
        .with_state(state)
}

#[cfg(test)]
mod tests;

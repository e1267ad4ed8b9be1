//! `/healthz`: the process is alive, with a few figures worth a glance. `/readyz`: it
//! serves every configured listener (a load balancer's or orchestrator's readiness probe).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use weft_telemetry::ReadinessReport;

use crate::DashboardState;

/// The `/healthz` answer.
#[derive(Debug, Clone, Serialize)]
pub struct Health {
    /// Always `ok` when the dashboard answers.
    pub status: &'static str,
    /// Seconds since the dashboard started.
    pub uptime_seconds: u64,
    /// Connections open now.
    pub open_connections: usize,
    /// The history store's counters, when a store is open.
    pub store: Option<StoreHealth>,
}

/// The store's part of [`Health`]; error texts stay in the log, not in answers.
#[derive(Debug, Clone, Serialize)]
pub struct StoreHealth {
    /// Records committed.
    pub written: u64,
    /// Records lost.
    pub dropped: u64,
    /// Failed write attempts.
    pub write_errors: u64,
    /// Since when (unix ms) every write has failed, while they do (the cause is in the
    /// log): history is not being kept, though the process is alive.
    pub failing_since_ms: Option<u64>,
}

pub(crate) async fn healthz(State(state): State<DashboardState>) -> Json<Health> {
    Json(Health {
        status: "ok",
        uptime_seconds: state.started.elapsed().as_secs(),
        open_connections: state.hub.open_connections(),
        store: state.store.as_ref().map(|s| {
            let stats = s.stats();
            StoreHealth {
                written: stats.written(),
                dropped: stats.dropped(),
                write_errors: stats.write_errors(),
                failing_since_ms: stats.failing_since_ms(),
            }
        }),
    })
}

/// `200` once the reactor runs and every expected listener is up; `503` before (and while
/// shutting down), with what is missing.
pub(crate) async fn readyz(
    State(state): State<DashboardState>,
) -> (StatusCode, Json<ReadinessReport>) {
    let report = state.hub.readiness();
    let code = if report.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(report))
}

//! `POST /api/connections/{id}/close` and `POST /api/deferreds/{id}/cancel`: the two things
//! an operator can do from the dashboard. Both are queued to the reactor thread through its
//! [`ReactorHandle`](weft::ReactorHandle) and answer `202 Accepted` at once; the effect shows
//! on `/ws` as the usual events.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Serialize;
use weft::observe::ConnectionId;

use crate::error::ApiError;
use crate::state::DashboardState;

/// What an action answers.
#[derive(Debug, Serialize)]
pub struct Accepted {
    /// Always `true`: the request was queued to the reactor.
    pub accepted: bool,
    /// What will happen.
    pub message: String,
}

fn reactor(state: &DashboardState) -> Result<&weft::ReactorHandle, ApiError> {
    state.reactor.as_ref().ok_or(ApiError::Unavailable(
        "this dashboard is not attached to a reactor",
    ))
}

fn accepted(message: String) -> (StatusCode, Json<Accepted>) {
    (
        StatusCode::ACCEPTED,
        Json(Accepted {
            accepted: true,
            message,
        }),
    )
}

pub(crate) async fn close_connection(
    State(state): State<DashboardState>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    let id: u64 = crate::data::api_id(&id, "connection")?;
    let reactor = reactor(&state)?;
    if state.hub.connection(ConnectionId(id)).is_none() {
        return Err(ApiError::NotFound("open connection"));
    }
    if !reactor.close_connection(ConnectionId(id)) {
        return Err(ApiError::Unavailable("the reactor has stopped"));
    }
    Ok(accepted(format!("connection {id} is being closed")))
}

pub(crate) async fn cancel_deferred(
    State(state): State<DashboardState>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    let id: u64 = crate::data::api_id(&id, "deferred")?;
    let reactor = reactor(&state)?;
    if state.hub.deferred(id).is_none() {
        return Err(ApiError::NotFound("pending Deferred"));
    }
    if !crate::defer::cancel(reactor, id) {
        return Err(ApiError::Unavailable("the reactor has stopped"));
    }
    Ok(accepted(format!("Deferred {id} is being cancelled")))
}

//! What an operator can do from the dashboard: `POST /api/connections/{id}/close` and
//! `POST /api/deferreds/{id}/cancel`, queued to the thread of the reactor that owns the
//! connection or chain through its [`ReactorHandle`](weft::ReactorHandle) and answered `202 Accepted` at once (the effect
//! shows on `/ws` as the usual events); and `POST /api/reload`, sent to the program's
//! [`Reloader`](crate::state::Reloader) and answered with the outcome once the reload is
//! done: `200` applied, `422` the configuration does not validate, `409` it could not be
//! read or applied (an address in use), each with `result`, `message` and the services
//! `added`, `removed` and `changed`.

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Serialize;
use weft::observe::{ConnectionId, TransportKind};
use weft_telemetry::{ReloadOutcome, ReloadResult};

use crate::error::ApiError;
use crate::metrics::Refusal;
use crate::server::Peer;
use crate::state::{DashboardState, ReloadRefused};

/// How long `POST /api/reload` waits for the outcome.
const RELOAD_TIMEOUT: Duration = Duration::from_secs(30);

/// What an action answers.
#[derive(Debug, Serialize)]
pub struct Accepted {
    /// Always `true`: the request was queued to the reactor.
    pub accepted: bool,
    /// What will happen.
    pub message: String,
}

const DETACHED: ApiError = ApiError::Unavailable("this dashboard is not attached to a reactor");

/// Whether the dashboard has a reactor to act on at all.
fn attached(state: &DashboardState) -> Result<(), ApiError> {
    if state.reactor.is_some() || state.hub.reactor_count() > 0 {
        Ok(())
    } else {
        Err(DETACHED)
    }
}

/// The reactor that owns what an action is about: the one of `index` the hub is
/// installed on, or the dashboard's own reactor.
fn reactor(state: &DashboardState, index: u16) -> Result<weft::ReactorHandle, ApiError> {
    state
        .hub
        .reactor(index)
        .or_else(|| state.reactor.clone())
        .ok_or(DETACHED)
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

/// Why an action was not queued to its reactor: the handle never waits, so a reactor that
/// is blocked with its queue full turns the action away rather than stall this thread.
const NOT_QUEUED: &str = "the reactor has stopped, or is blocked with its queue of calls full";

/// Why a UDP endpoint is not closed: it is a port, not a connection to one peer.
const UDP_PORT: &str = "a UDP endpoint is its service's port, shared by every peer, not a connection: it closes with its service (remove the endpoint from the configuration and reload)";

pub(crate) async fn close_connection(
    State(state): State<DashboardState>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    let id: u64 = crate::data::api_id(&id, "connection")?;
    attached(&state)?;
    let Some(connection) = state.hub.connection(ConnectionId(id)) else {
        return Err(ApiError::NotFound("open connection"));
    };
    if connection.transport == TransportKind::Udp {
        return Err(ApiError::Conflict(UDP_PORT));
    }
    let reactor = reactor(&state, connection.reactor)?;
    if !reactor.close_connection(ConnectionId(id)) {
        return Err(ApiError::Unavailable(NOT_QUEUED));
    }
    Ok(accepted(format!("connection {id} is being closed")))
}

pub(crate) async fn cancel_deferred(
    State(state): State<DashboardState>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    let id: u64 = crate::data::api_id(&id, "deferred")?;
    attached(&state)?;
    let Some(chain) = state.hub.deferred(id) else {
        return Err(ApiError::NotFound("pending Deferred"));
    };
    if chain.task.is_some() {
        // An async task has no errback to run: the reactor's cancel finds no Deferred by
        // its id, and answering 202 would claim what did not happen.
        return Err(ApiError::Conflict(
            "an async task cannot be cancelled; close its connection instead",
        ));
    }
    let reactor = reactor(&state, chain.reactor)?;
    if !crate::defer::cancel(&reactor, id) {
        return Err(ApiError::Unavailable(NOT_QUEUED));
    }
    Ok(accepted(format!("Deferred {id} is being cancelled")))
}

/// What `POST /api/reload` answers.
#[derive(Debug, Serialize)]
pub struct Reloaded {
    /// `ok`, `invalid` or `failed`.
    pub result: ReloadResult,
    /// What was applied, or why nothing was.
    pub message: String,
    /// The reason, when nothing was applied (the same as `message`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Services started.
    pub added: Vec<String>,
    /// Services stopped.
    pub removed: Vec<String>,
    /// Services replaced.
    pub changed: Vec<String>,
}

impl From<ReloadOutcome> for Reloaded {
    fn from(o: ReloadOutcome) -> Self {
        Self {
            error: (o.result != ReloadResult::Ok).then(|| o.message.clone()),
            result: o.result,
            message: o.message,
            added: o.added,
            removed: o.removed,
            changed: o.changed,
        }
    }
}

pub(crate) async fn reload(
    State(state): State<DashboardState>,
    extensions: axum::http::Extensions,
) -> Result<(StatusCode, Json<Reloaded>), ApiError> {
    let reloader = state.reloader.as_ref().ok_or(ApiError::Unavailable(
        "this dashboard's program does not reload its configuration",
    ))?;
    let answer = match reloader.request() {
        Ok(answer) => answer,
        Err(ReloadRefused::Busy) => {
            state
                .metrics
                .refused(Refusal::ReloadBusy, Peer::of(&extensions));
            return Err(ApiError::Unavailable(
                "reloads are already queued; try again when they are done",
            ));
        }
        Err(ReloadRefused::Gone) => return Err(ApiError::Unavailable("the reactor has stopped")),
    };
    let outcome = match tokio::time::timeout(RELOAD_TIMEOUT, answer).await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(_)) => return Err(ApiError::Unavailable("the reactor has stopped")),
        Err(_) => {
            return Err(ApiError::Unavailable(
                "the reload did not finish within 30 s; its outcome will be logged",
            ));
        }
    };
    let status = match outcome.result {
        ReloadResult::Ok => StatusCode::OK,
        ReloadResult::Invalid => StatusCode::UNPROCESSABLE_ENTITY,
        ReloadResult::Failed => StatusCode::CONFLICT,
    };
    Ok((status, Json(outcome.into())))
}

//! The JSON API: one handler per view, each a thin wrapper over [`crate::data`].

use axum::Json;
use axum::extract::{Path, State};
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use weft_store::DeferredDetail;

use crate::data::{
    self, ConnectionQuery, ConnectionView, DeferredQuery, DeferredView, DetailQuery, Page,
    ServiceView,
};
use crate::error::{ApiError, Query};
use crate::history;
use crate::state::DashboardState;
use crate::views::{self, ServiceFigures};

/// The header that carries the note on answers whose JSON has no place for it (lists).
pub const HISTORY_ERROR_HEADER: &str = "weft-history-error";

/// `/api/connections/{id}`: the connection and its Deferreds.
#[derive(Debug, Serialize)]
pub struct ConnectionDetail {
    /// The connection.
    #[serde(flatten)]
    pub connection: ConnectionView,
    /// Its Deferreds, newest first.
    pub deferreds: Vec<DeferredView>,
    /// Chains of other connections pending now that wait on this one (requests waiting
    /// for their response head on an upstream connection), oldest first.
    pub waited_on_by: Vec<DeferredView>,
    /// Set when history could not be read (`deferreds` is then empty), saying why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history_error: Option<String>,
}

/// `/api/services`; with history unreadable, the services in the metrics (no
/// configuration) and the note in [`HISTORY_ERROR_HEADER`].
pub(crate) async fn services(State(state): State<DashboardState>) -> Response {
    let (services, note) = data::services(&state).await;
    let mut response = Json::<Vec<ServiceView>>(services).into_response();
    if let Some(value) = note.and_then(|n| HeaderValue::from_str(&n).ok()) {
        response.headers_mut().insert(HISTORY_ERROR_HEADER, value);
    }
    response
}

pub(crate) async fn connections(
    State(state): State<DashboardState>,
    Query(q): Query<ConnectionQuery>,
) -> Result<Json<Page<ConnectionView>>, ApiError> {
    Ok(Json(data::connections(&state, &q).await?))
}

pub(crate) async fn connection(
    State(state): State<DashboardState>,
    Path(id): Path<String>,
    Query(q): Query<DetailQuery>,
) -> Result<Json<ConnectionDetail>, ApiError> {
    let id = data::api_id(&id, "connection")?;
    let instance = q.instance.as_deref();
    let connection = data::connection(&state, id, instance)
        .await?
        .ok_or(ApiError::NotFound("connection"))?;
    let (deferreds, history_error) = data::connection_deferreds(&state, id, instance).await;
    Ok(Json(ConnectionDetail {
        connection,
        deferreds,
        waited_on_by: data::deferreds_waiting_on(&state, id, instance),
        history_error,
    }))
}

pub(crate) async fn deferreds(
    State(state): State<DashboardState>,
    Query(q): Query<DeferredQuery>,
) -> Result<Json<Page<DeferredView>>, ApiError> {
    Ok(Json(data::deferreds(&state, &q).await?))
}

/// `/api/deferreds/{id}`: the Deferred, its steps (run, then queued) and its children.
#[derive(Debug, Serialize)]
pub struct DeferredChain {
    /// The Deferred, its steps and children.
    #[serde(flatten)]
    pub detail: DeferredDetail,
    /// Milliseconds from creation to its end, or to now while pending, as the lists say.
    pub age_ms: u64,
    /// The `idx` of the step the chain waits at ([`data::waiting_at`]).
    pub waiting_at: Option<i64>,
    /// The locks it waits on (with their holders) or holds, while it is in the wait-for
    /// graph.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waits: Option<weft_telemetry::ChainWaits>,
    /// Set when history could not be read (the chain is live; its finished children may
    /// be missing), saying why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history_error: Option<String>,
}

pub(crate) async fn deferred(
    State(state): State<DashboardState>,
    Path(id): Path<String>,
    Query(q): Query<DetailQuery>,
) -> Result<Json<DeferredChain>, ApiError> {
    // Any whole number is an id, as for connections; one past what history stores is
    // simply not there.
    let id: u64 = data::api_id(&id, "deferred")?;
    let id = i64::try_from(id).map_err(|_| ApiError::NotFound("deferred"))?;
    let (detail, history_error) = data::deferred(&state, id, q.instance.as_deref()).await?;
    let detail = detail.ok_or(ApiError::NotFound("deferred"))?;
    Ok(Json(DeferredChain {
        age_ms: data::DeferredView::new(detail.deferred.clone(), data::now_ms()).age_ms,
        waiting_at: data::waiting_at(&detail),
        waits: data::chain_waits(&state, &detail),
        detail,
        history_error,
    }))
}

/// `/api/http`: each HTTP service's routes and upstreams ([`crate::views`]).
pub(crate) async fn http(State(state): State<DashboardState>) -> Json<Vec<ServiceFigures>> {
    Json(views::http(&state))
}

/// `/api/dns`: each DNS service's figures ([`crate::dns`]); with history unreadable, the
/// recent queries the service holds and the note in [`HISTORY_ERROR_HEADER`].
pub(crate) async fn dns(State(state): State<DashboardState>) -> Response {
    let (services, note) = crate::dns::dns(&state).await;
    let mut response = Json::<Vec<crate::dns::DnsFigures>>(services).into_response();
    if let Some(value) = note.and_then(|n| HeaderValue::from_str(&n).ok()) {
        response.headers_mut().insert(HISTORY_ERROR_HEADER, value);
    }
    response
}

/// `?after=SEQ&limit=N` of `/api/events`.
#[derive(Debug, Deserialize)]
pub(crate) struct EventQuery {
    /// A sequence number: none is below 0, and one that is (a client's arithmetic gone
    /// wrong) is refused like a negative `limit`, not taken for 0.
    after: Option<u64>,
    limit: Option<u32>,
}

/// One entry of `/api/events`.
#[derive(Debug, Serialize)]
pub struct EventView {
    /// Its sequence number; pass the last one not [`pending`](Self::pending) as `after`
    /// to page on.
    pub seq: i64,
    /// When it happened, unix milliseconds.
    pub at_ms: i64,
    /// The event's type, as on `/ws`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Its fields.
    pub data: serde_json::Value,
    /// Listed ahead of history: events numbered below it may not be committed yet, so a
    /// client pages on from before it, and it is listed again (not pending) once history
    /// is complete up to it. Left out when false.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub pending: bool,
}

/// `/api/events`: what history holds after `after`, with the note in
/// [`HISTORY_ERROR_HEADER`] while writing history fails (events since are missing).
pub(crate) async fn events(
    State(state): State<DashboardState>,
    Query(q): Query<EventQuery>,
) -> Result<Response, ApiError> {
    let store = state.store.as_ref().ok_or(ApiError::Unavailable(
        "no history store: events are not kept",
    ))?;
    let after = i64::try_from(q.after.unwrap_or(0)).unwrap_or(i64::MAX);
    let limit = q.limit.unwrap_or(data::DEFAULT_LIMIT);
    // Read before history: whatever the query finds at or below it is final.
    let complete = i64::try_from(store.complete_through()).unwrap_or(i64::MAX);
    let rows = store
        .events_after(after, limit)
        .await
        .map_err(|e| ApiError::HistoryUnavailable(history::unavailable(&state, &e)))?;
    // Chains that ended or were flagged lately, before history has committed them.
    let limit = limit.min(weft_store::MAX_LIMIT) as usize;
    let rows = crate::recent::events(&state.hub, rows, after, limit);
    let events: Vec<EventView> = rows
        .into_iter()
        .map(|r| EventView {
            seq: r.seq,
            at_ms: r.at_ms,
            kind: r.kind,
            data: serde_json::from_str(&r.payload_json).unwrap_or_default(),
            pending: r.seq > complete,
        })
        .collect();
    let mut response = Json(events).into_response();
    if let Some(value) = history::behind(&state).and_then(|n| HeaderValue::from_str(&n).ok()) {
        response.headers_mut().insert(HISTORY_ERROR_HEADER, value);
    }
    Ok(response)
}

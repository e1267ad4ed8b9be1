//! `GET /ws`: the upgrade, the origin check, and the adapter from axum's socket to
//! [`session::serve`](super::session::serve).

use axum::extract::State;
use axum::extract::ws::{Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};

use super::session::{Incoming, serve};
use crate::error::ApiError;
use crate::state::DashboardState;

/// Bytes read from a page's socket at a time.
const READ_BUFFER: usize = 4096;

pub(crate) async fn ws(
    State(state): State<DashboardState>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    // Browsers always send an Origin on a WebSocket; another site's must not read the feed.
    if headers.contains_key(axum::http::header::ORIGIN)
        && !crate::auth::same_origin(&state, &headers)
    {
        return ApiError::Forbidden("the live feed only serves this dashboard's own pages")
            .into_response();
    }
    match upgrade {
        // Pages send nothing but pings and the close: a small read buffer, which is
        // zeroed on every read, keeps each wake-up cheap.
        Ok(upgrade) => upgrade
            .read_buffer_size(READ_BUFFER)
            .on_upgrade(move |socket| client(socket, state)),
        Err(rejection) => rejection.into_response(),
    }
}

async fn client(socket: WebSocket, state: DashboardState) {
    let (sink, stream) = socket.split();
    let sink =
        sink.with(|text: Utf8Bytes| async move { Ok::<_, axum::Error>(Message::Text(text)) });
    let incoming = stream.map(|m| match m {
        Ok(Message::Close(_)) | Err(_) => Incoming::Close,
        Ok(_) => Incoming::Other,
    });
    let frames = state.fanout.subscribe();
    let snapshot = |seq| super::snapshot(&state.hub, &state.series, seq);
    serve(
        Box::pin(sink),
        Box::pin(incoming),
        &state.fanout,
        frames,
        snapshot,
    )
    .await;
}

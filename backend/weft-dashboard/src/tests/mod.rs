//! The router without a socket, through `tower::ServiceExt::oneshot`, and the live session
//! over in-memory channels.

mod api;
mod auth;
mod chains;
mod dns;
mod history;
mod http;
mod live;
mod pages;
mod security;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use tower::ServiceExt;
use weft_store::{ConnectionRecord, DeferredRecord, Record, StepRecord, Store};
use weft_telemetry::{Hub, HubConfig};

use super::*;

/// Markup a peer or a program might put in text the dashboard shows.
pub(crate) const EVIL: &str = "<script>alert('pwned')</script>";

fn state() -> DashboardState {
    DashboardState::new(Hub::new(HubConfig::default()).unwrap())
}

/// What a test reads back.
struct Answer {
    status: StatusCode,
    kind: String,
    headers: axum::http::HeaderMap,
    body: String,
}

impl Answer {
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

/// The `Host` requests carry unless a test sets its own: a loopback name, which a
/// dashboard that was not told its address accepts on any port.
const HOST: &str = "127.0.0.1:9180";

async fn send(app: axum::Router, mut request: Request<Body>) -> Answer {
    if !request.headers().contains_key(header::HOST) {
        request
            .headers_mut()
            .insert(header::HOST, header::HeaderValue::from_static(HOST));
    }
    let response = app.oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let kind = headers
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        kind,
        headers,
        body: String::from_utf8(body.to_vec()).unwrap(),
    }
}

async fn get(app: axum::Router, path: &str) -> Answer {
    send(app, Request::get(path).body(Body::empty()).unwrap()).await
}

/// A store in a temporary directory, holding `records`.
async fn store_with(records: Vec<Record>) -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("weft.db")).await.unwrap();
    for r in records {
        assert!(store.try_send(r));
    }
    store.flush().await.unwrap();
    (dir, store)
}

fn closed_connection(id: i64, service: &str, peer: &str) -> ConnectionRecord {
    ConnectionRecord {
        id,
        service: service.into(),
        transport: "tcp".into(),
        peer: peer.into(),
        local: "127.0.0.1:8000".into(),
        opened_at_ms: 1_000,
        closed_at_ms: Some(2_500),
        bytes_in: 10,
        bytes_out: 10,
        reads: 1,
        writes: 1,
        close_reason: Some("done".into()),
        close_detail: None,
        opened_seq: None,
        closed_seq: None,
        reactor: Some(0),
        instance: String::new(),
    }
}

fn deferred(id: i64, state: &str) -> DeferredRecord {
    DeferredRecord {
        id,
        parent_id: None,
        label: Some("fetch user".into()),
        site: "src/proto.rs:42".into(),
        connection_id: Some(7),
        service: Some("echo".into()),
        state: state.into(),
        created_at_ms: 1_000,
        fired_at_ms: None,
        current_step: Some("src/proto.rs:50".into()),
        waiting_on: None,
        failure: None,
        stalled: false,
        slow: false,
        unhandled: false,
        leaked: false,
        deadlock: false,
        step_name: None,
        step_detail: None,
        waiting_on_connection: None,
        named_steps_json: None,
        kind: None,
        task_json: None,
        reactor: Some(0),
        ended_at_ms: None,
        instance: String::new(),
    }
}

fn step(deferred_id: i64, idx: i64, outcome: &str, child_id: Option<i64>) -> StepRecord {
    StepRecord {
        deferred_id,
        idx,
        kind: "callback".into(),
        site: format!("src/proto.rs:{}", 50 + idx),
        started_at_us: 1_000_000 + idx * 2_000,
        duration_us: Some(1_500),
        outcome: outcome.into(),
        child_id,
    }
}

//! The router without a socket, through `tower::ServiceExt::oneshot`.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use tower::ServiceExt;
use weft_telemetry::{Hub, HubConfig};

use super::*;

fn state() -> DashboardState {
    DashboardState::new(Hub::new(HubConfig::default()).unwrap())
}

async fn get(app: axum::Router, path: &str, token: Option<&str>) -> (StatusCode, String, String) {
    let mut request = Request::get(path);
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let response = app
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let kind = response
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, kind, String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test]
async fn metrics_are_served_in_the_text_format() {
    let (status, kind, body) = get(router(state()), "/metrics", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(kind.starts_with("text/plain; version=0.0.4"), "{kind}");
    assert!(
        body.contains("# TYPE weft_reactor_lag_seconds histogram"),
        "{body}"
    );
}

#[tokio::test]
async fn healthz_reports_ok_as_json() {
    let (status, kind, body) = get(router(state()), "/healthz", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(kind, "application/json");
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["open_connections"], 0);
    assert!(health["store"].is_null());
}

#[tokio::test]
async fn a_token_guards_everything_but_healthz() {
    let app = router(state().with_token("s3cret"));
    assert_eq!(
        get(app.clone(), "/metrics", None).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        get(app.clone(), "/metrics", Some("wrong")).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        get(app.clone(), "/metrics", Some("s3cret")).await.0,
        StatusCode::OK
    );
    assert_eq!(get(app.clone(), "/healthz", None).await.0, StatusCode::OK);
    assert_eq!(
        get(app, "/nowhere", Some("s3cret")).await.0,
        StatusCode::NOT_FOUND
    );
}

//! `/static/*`: the scripts, stylesheet and icon under `frontend/static/`, compiled into
//! the binary so it needs nothing else on disk.

use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

/// Name, content type, bytes.
const FILES: [(&str, &str, &str); 12] = [
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("../../../frontend/static/app.js"),
    ),
    (
        "live.js",
        "text/javascript; charset=utf-8",
        include_str!("../../../frontend/static/live.js"),
    ),
    (
        "dom.js",
        "text/javascript; charset=utf-8",
        include_str!("../../../frontend/static/dom.js"),
    ),
    (
        "fmt.js",
        "text/javascript; charset=utf-8",
        include_str!("../../../frontend/static/fmt.js"),
    ),
    (
        "overview.js",
        "text/javascript; charset=utf-8",
        include_str!("../../../frontend/static/overview.js"),
    ),
    (
        "connections.js",
        "text/javascript; charset=utf-8",
        include_str!("../../../frontend/static/connections.js"),
    ),
    (
        "deferreds.js",
        "text/javascript; charset=utf-8",
        include_str!("../../../frontend/static/deferreds.js"),
    ),
    (
        "dns.js",
        "text/javascript; charset=utf-8",
        include_str!("../../../frontend/static/dns.js"),
    ),
    (
        "http.js",
        "text/javascript; charset=utf-8",
        include_str!("../../../frontend/static/http.js"),
    ),
    (
        "polled.js",
        "text/javascript; charset=utf-8",
        include_str!("../../../frontend/static/polled.js"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("../../../frontend/static/style.css"),
    ),
    (
        "favicon.svg",
        "image/svg+xml",
        include_str!("../../../frontend/static/favicon.svg"),
    ),
];

pub(crate) async fn file(Path(name): Path<String>) -> Response {
    match FILES.iter().find(|(n, _, _)| *n == name) {
        Some((_, kind, body)) => (
            [
                (header::CONTENT_TYPE, *kind),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            *body,
        )
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

//! Responses the service makes itself: short plain-text error pages that never echo
//! what the client sent.

use http::header::{self, HeaderValue};
use http::{Response, StatusCode};

use crate::body::{self, Body};

/// A response with `status` and `body`.
pub(crate) fn with_status(status: StatusCode, body: Body) -> Response<Body> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response
}

/// `404 Not Found: not found` and the like, as text/plain.
pub(crate) fn error_page(status: StatusCode, detail: &str) -> Response<Body> {
    let reason = status.canonical_reason().unwrap_or("");
    let text = format!("{} {reason}: {detail}\n", status.as_u16());
    let len = text.len();
    let mut response = with_status(status, body::full(text));
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    response
}

//! Headers every answer of the dashboard carries, refusals and errors included, so no
//! page can be framed, sniffed into another type, or made to load or run anything that is
//! not the dashboard's own.

use axum::http::HeaderValue;
use axum::http::header::{
    CONTENT_SECURITY_POLICY, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use axum::response::Response;

/// Only the dashboard's own scripts, styles, images and connections (`'self'` covers the
/// `/ws` socket on the same host); no plugins, no `<base>`, forms post only here, and no
/// other site may frame a page. The pages need nothing more: no inline script or style.
pub(crate) const CSP: &str = "default-src 'self'; base-uri 'none'; form-action 'self'; \
                              frame-ancestors 'none'; object-src 'none'";

pub(crate) async fn secure(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    // For browsers that predate `frame-ancestors`.
    h.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

//! [`ApiError`]: what a handler answers when it cannot; internal causes are logged once
//! here and never sent to the client.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// A query parameter or path segment is malformed; the text says which and why.
    #[error("{0}")]
    BadRequest(String),
    /// No such connection or Deferred.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The feature needs something this dashboard runs without (a store, a reactor).
    #[error("{0}")]
    Unavailable(&'static str),
    /// The dashboard has a token and the request did not carry it.
    #[error("{0}")]
    Unauthorized(&'static str),
    /// The route does not take the request's method (`Allow` says which it takes).
    #[error("{0}")]
    MethodNotAllowed(String),
    /// The action was refused (no token and not same-origin).
    #[error("{0}")]
    Forbidden(&'static str),
    /// The peer tried too many wrong tokens; the text says how long to wait.
    #[error("{0}")]
    TooManyAttempts(String),
    /// The request names a host this dashboard does not answer to.
    #[error("{0}")]
    Misdirected(String),
    /// `/ws` asked for without a WebSocket handshake this server speaks.
    #[error("{0}")]
    UpgradeRequired(&'static str),
    /// The request head is larger than the dashboard reads.
    #[error("{0}")]
    HeadTooLarge(String),
    /// The request body is larger than any the dashboard takes.
    #[error("{0}")]
    BodyTooLarge(String),
    /// The request body did not all come within the time allowed.
    #[error("{0}")]
    BodyTimeout(String),
    /// The action does not apply to what it names; the text says why.
    #[error("{0}")]
    Conflict(&'static str),
    /// History is needed and cannot be read right now; the text says why (the cause is
    /// logged and counted where it happened).
    #[error("{0}")]
    HistoryUnavailable(String),
    /// The history store failed; the cause is logged.
    #[error("the history store could not answer")]
    Store(#[from] weft_store::StoreError),
}

impl ApiError {
    /// The HTTP status it maps to.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::TooManyAttempts(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::Misdirected(_) => StatusCode::MISDIRECTED_REQUEST,
            Self::UpgradeRequired(_) => StatusCode::UPGRADE_REQUIRED,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::HeadTooLarge(_) => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Self::HistoryUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Logs an internal cause once, at the edge.
    pub(crate) fn log(&self) {
        if let Self::Store(e) = self {
            tracing::error!(error = %e, "dashboard query failed");
        }
    }
}

#[derive(Serialize)]
struct Body {
    error: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.log();
        let error = self.to_string();
        (self.status(), Json(Body { error })).into_response()
    }
}

/// A query string deserialized into `T`, as axum's `Query`, but refused as an [`ApiError`]
/// (400 with a JSON `error` naming the parameter) rather than axum's plain-text rejection,
/// so every answer of the API is JSON.
pub(crate) struct Query<T>(pub(crate) T);

impl<T, S> axum::extract::FromRequestParts<S> for Query<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(q)| Self(q))
            .map_err(|rejection| {
                ApiError::BadRequest(query_error(&rejection.body_text(), parts.uri.query()))
            })
    }
}

/// serde's words for a query parameter that does not parse, said as the API says the
/// rest: the parameter, what it takes and what it got (`limit: expected a whole number,
/// 0 or more, got "abc"`). Every number a query takes is a whole number of 0 or more.
fn query_error(said: &str, query: Option<&str>) -> String {
    let said = said
        .strip_prefix("Failed to deserialize query string: ")
        .unwrap_or(said);
    if let Some(key) = said
        .strip_prefix("duplicate field `")
        .and_then(|rest| rest.strip_suffix('`'))
    {
        return format!("{key}: given more than once; give it once");
    }
    let Some((key, why)) = said.split_once(": ") else {
        return said.to_owned();
    };
    let expected = match why {
        "invalid digit found in string" | "cannot parse integer from empty string" => {
            "a whole number, 0 or more"
        }
        "number too large to fit in target type" => "a smaller whole number",
        // A parameter's own deserializer says what it expects (`reactor`).
        own if own.starts_with("expected ") => &own["expected ".len()..],
        _ => return said.to_owned(),
    };
    let got = form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.chars().take(64).collect::<String>())
        .unwrap_or_default();
    format!("{key}: expected {expected}, got {got:?}")
}

/// Gives the API's `405` (a route asked with a method it does not take) the `{error}`
/// body every other API error has, keeping its `Allow`; elsewhere, an error the router
/// answers with no body at all (a `405` on a page, a static file not there) says what it
/// is in plain text.
pub(crate) async fn api_method_errors_as_json(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let api = request.uri().path().starts_with("/api/");
    let method = request.method().clone();
    let mut response = next.run(request).await;
    if !api {
        return said_in_text(response, &method);
    }
    if response.status() != StatusCode::METHOD_NOT_ALLOWED {
        return response;
    }
    let allow = response.headers_mut().remove(axum::http::header::ALLOW);
    let mut json = ApiError::MethodNotAllowed(format!(
        "{method} is not allowed here; `Allow` names the methods that are"
    ))
    .into_response();
    if let Some(allow) = allow {
        json.headers_mut().insert(axum::http::header::ALLOW, allow);
    }
    json
}

/// `response`, or, when it is an error with no body and no type, the same with a line of
/// plain text saying what it is.
fn said_in_text(response: Response, method: &axum::http::Method) -> Response {
    use hyper::body::Body as _;
    let status = response.status();
    let bare = !response
        .headers()
        .contains_key(axum::http::header::CONTENT_TYPE)
        && response.body().size_hint().exact() == Some(0);
    if !(status.is_client_error() || status.is_server_error()) || !bare {
        return response;
    }
    let text = match status {
        StatusCode::METHOD_NOT_ALLOWED => {
            format!("{method} is not allowed here; `Allow` names the methods that are\n")
        }
        StatusCode::NOT_FOUND => "not found\n".to_owned(),
        other => format!("{}\n", other.canonical_reason().unwrap_or("error")),
    };
    let (mut parts, _) = response.into_parts();
    parts.headers.insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    Response::from_parts(parts, axum::body::Body::from(text))
}

//! Who may read and who may act.
//!
//! - **Reading.** With a token configured, every route but `/healthz`, `/readyz`, `/login` and
//!   `/static/` needs it: as `Authorization: Bearer TOKEN` (scripts, Prometheus) or as the
//!   session `/login` sets in the `weft_token` cookie (browsers; `HttpOnly`,
//!   `SameSite=Strict`, for a week or until a restart, the token never in it:
//!   `crate::session`). A browser
//!   asking for a page without either is sent to `/login`; anything else gets `401`.
//! - **Guessing.** A peer that presented too many wrong tokens is refused `429` for any
//!   token it presents, until it may try again (`crate::attempts`).
//! - **Acting** (`POST /api/...`) and **`/ws`** additionally resist cross-site requests: a
//!   request carrying the bearer header cannot be forged by another site, otherwise its
//!   `Origin` (or `Sec-Fetch-Site`) must say it came from this very dashboard. Cookies are
//!   `SameSite=Strict` besides, and no CORS header is ever sent.

use std::time::{Duration, Instant, SystemTime};

use axum::Form;
use axum::extract::{Request, State};
use axum::http::{Extensions, HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use crate::DashboardState;
use crate::error::ApiError;
use crate::metrics::Refusal;
use crate::pages::Login;
use crate::server::Peer;

/// The cookie `/login` sets.
pub(crate) const COOKIE: &str = "weft_token";

/// Paths anyone may read: a load balancer's probe, the login form and its stylesheet.
fn open(path: &str) -> bool {
    path == "/healthz" || path == "/readyz" || path == "/login" || path.starts_with("/static/")
}

/// The token of `Authorization: Bearer TOKEN`; the scheme's name is case-insensitive
/// (RFC 9110 section 11.1).
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim_start_matches(' '))
}

/// Every value of the sign-in cookie the request carries: another service on the host
/// may have set one of the same name for a narrower path, which comes first.
fn cookies(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .filter(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v)
}

/// Whole seconds to wait, rounded up: `Retry-After` counts in seconds (RFC 9110
/// section 10.2.3), and 0 would invite a try that is refused again.
fn retry_after(wait: Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
}

/// `429` for a peer that tried too many wrong tokens, with `Retry-After`: JSON on the API,
/// the error page on a page, text elsewhere.
fn too_many_attempts(path: &str, wait: Duration) -> Response {
    let secs = retry_after(wait);
    let why = format!("too many wrong tokens from this address: try again in {secs} s");
    let response = if path.starts_with("/api/") {
        ApiError::TooManyAttempts(why).into_response()
    } else if path == "/metrics" || path == "/ws" {
        (StatusCode::TOO_MANY_REQUESTS, format!("{why}\n")).into_response()
    } else {
        crate::pages::error_page("none", ApiError::TooManyAttempts(why))
    };
    with_retry_after(response, secs)
}

/// `response` with `Retry-After: secs`.
fn with_retry_after(mut response: Response, secs: u64) -> Response {
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    response
}

pub(crate) async fn require_token(
    State(state): State<DashboardState>,
    request: Request,
    next: Next,
) -> Response {
    let Some(token) = state.token.as_deref() else {
        return next.run(request).await;
    };
    let path = request.uri().path();
    if open(path) {
        return next.run(request).await;
    }
    // A session's MAC is not guessed: a cookie that is not one (ended, from before the
    // token changed) sends the browser to sign in again, and spends no attempt.
    let now = SystemTime::now();
    if cookies(request.headers()).any(|session| state.sessions.admits(session, now)) {
        return next.run(request).await;
    }
    if let Some(given) = bearer(request.headers()) {
        let peer = Peer::of(request.extensions());
        let now = Instant::now();
        if let Err(wait) = state.attempts.admit(peer, now) {
            state.metrics.refused(Refusal::TokenAttempts, peer);
            return too_many_attempts(path, wait);
        }
        if same(given.as_bytes(), token.as_bytes()) {
            return next.run(request).await;
        }
        state.attempts.wrong(peer, given.as_bytes(), now);
    }
    state
        .metrics
        .refused(Refusal::Token, Peer::of(request.extensions()));
    let is_page = request.method() == Method::GET
        && !path.starts_with("/api/")
        && path != "/metrics"
        && path != "/ws";
    if is_page {
        let next = request
            .uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        return Redirect::to(&format!("/login?next={}", crate::fmt::url(&next))).into_response();
    }
    const NEEDS: &str = "this dashboard needs its token: send `Authorization: Bearer TOKEN`";
    let challenge = [(header::WWW_AUTHENTICATE, "Bearer")];
    if path.starts_with("/api/") {
        // The API answers every error as `{error}`.
        return (challenge, ApiError::Unauthorized(NEEDS)).into_response();
    }
    (StatusCode::UNAUTHORIZED, challenge, format!("{NEEDS}\n")).into_response()
}

/// Whether `headers` prove the request for `target` came from a page of this dashboard
/// (or from a client that holds the bearer token, which no other site can make a browser
/// send): its `Origin` names the host the request was accepted for, an absolute-form
/// target's authority when it has one (which the `Host` check took in place of the
/// field, RFC 9112 §3.2.2), else its `Host`.
pub(crate) fn same_origin(state: &DashboardState, target: &Uri, headers: &HeaderMap) -> bool {
    if let (Some(token), Some(given)) = (state.token.as_deref(), bearer(headers))
        && same(given.as_bytes(), token.as_bytes())
    {
        return true;
    }
    let mut origins = headers.get_all(header::ORIGIN).iter();
    if let Some(origin) = origins.next() {
        // One page has one origin: a request naming two is not a browser's, and neither
        // may vouch for it.
        if origins.next().is_some() {
            return false;
        }
        let Ok(origin) = origin.to_str() else {
            return false;
        };
        let host = match target.authority() {
            Some(authority) => Some(authority.as_str()),
            None => headers.get(header::HOST).and_then(|v| v.to_str().ok()),
        };
        let origin_host = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"));
        return host.is_some() && origin_host == host;
    }
    headers
        .get("sec-fetch-site")
        .is_some_and(|v| v == "same-origin")
}

/// The resource isolation policy of Fetch Metadata (OWASP's): a request a browser made
/// for another site's page (`Sec-Fetch-Site: cross-site` or `same-site`) is refused,
/// but for a link followed to one of the dashboard's pages (a top-level navigation,
/// `GET`). Another page cannot make the browser spend the dashboard's time on its API
/// (an `<img>` per costly listing), whatever it could read of the answers; a client that
/// sends no such field (curl, Prometheus, a browser that predates it) is not affected.
pub(crate) async fn refuse_cross_site_fetches(
    State(state): State<DashboardState>,
    request: Request,
    next: Next,
) -> Response {
    let headers = request.headers();
    let field = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let foreign = matches!(field("sec-fetch-site"), Some("cross-site" | "same-site"));
    let navigation = matches!(*request.method(), Method::GET | Method::HEAD)
        && field("sec-fetch-mode") == Some("navigate")
        && !matches!(
            field("sec-fetch-dest"),
            Some("object" | "embed" | "iframe" | "frame")
        );
    if foreign && !navigation {
        state
            .metrics
            .refused(Refusal::CrossSite, Peer::of(request.extensions()));
        return ApiError::Forbidden(
            "a request another site's page made the browser send is refused (Sec-Fetch-Site); \
             follow a link to the dashboard instead",
        )
        .into_response();
    }
    next.run(request).await
}

/// Refuses cross-site POSTs before any action runs.
pub(crate) async fn require_same_origin(
    State(state): State<DashboardState>,
    request: Request,
    next: Next,
) -> Response {
    if request.method() == Method::POST && !same_origin(&state, request.uri(), request.headers()) {
        state
            .metrics
            .refused(Refusal::CrossSite, Peer::of(request.extensions()));
        return ApiError::Forbidden(
            "actions need the bearer token or a request from this dashboard's own pages",
        )
        .into_response();
    }
    next.run(request).await
}

/// `?next=` of `/login`.
#[derive(Debug, Deserialize)]
pub(crate) struct LoginQuery {
    next: Option<String>,
}

/// Whether `next` (already percent-decoded) can only lead to a page of this dashboard: one
/// leading `/` and then no `/` or `\` (browsers read `//host` and `/\host` as another
/// host), no backslash anywhere, and nothing but visible ASCII (browsers drop tabs and line
/// breaks, so `/\t/host` is `//host`; a line break could also split the `Location`
/// header).
fn is_local_path(next: &str) -> bool {
    let b = next.as_bytes();
    // No `//` anywhere: only a leading one leaves the host, but a path that holds one
    // (`/.//evil.example`) is no page of the dashboard's either.
    b.first() == Some(&b'/')
        && !next.contains("//")
        && b.iter().all(|&c| c.is_ascii_graphic() && c != b'\\')
}

/// `next` if it is a path on this dashboard, else `/`.
fn local_path(next: Option<String>) -> String {
    next.filter(|n| is_local_path(n))
        .unwrap_or_else(|| "/".into())
}

pub(crate) async fn login_form(
    axum::extract::Query(q): axum::extract::Query<LoginQuery>,
) -> Response {
    Login {
        next: local_path(q.next),
        failed: false,
        wait: None,
    }
    .response(StatusCode::OK)
}

/// The login form's fields.
#[derive(Debug, Deserialize)]
pub(crate) struct LoginForm {
    token: String,
    next: Option<String>,
}

pub(crate) async fn login(
    State(state): State<DashboardState>,
    uri: Uri,
    headers: HeaderMap,
    extensions: Extensions,
    Form(form): Form<LoginForm>,
) -> Response {
    let next = local_path(form.next);
    let Some(token) = state.token.as_deref() else {
        return Redirect::to(&next).into_response();
    };
    let peer = Peer::of(&extensions);
    if !same_origin(&state, &uri, &headers) {
        state.metrics.refused(Refusal::CrossSite, peer);
        return ApiError::Forbidden("sign in from this dashboard's own login page").into_response();
    }
    let now = Instant::now();
    if let Err(wait) = state.attempts.admit(peer, now) {
        state.metrics.refused(Refusal::TokenAttempts, peer);
        let secs = retry_after(wait);
        let page = Login {
            next,
            failed: false,
            wait: Some(secs),
        };
        return with_retry_after(page.response(StatusCode::TOO_MANY_REQUESTS), secs);
    }
    if !same(form.token.as_bytes(), token.as_bytes()) {
        state.attempts.wrong(peer, form.token.as_bytes(), now);
        state.metrics.refused(Refusal::Token, peer);
        let failed = Login {
            next,
            failed: true,
            wait: None,
        };
        return failed.response(StatusCode::UNAUTHORIZED);
    }
    // Both values are checked before anything is sent: the cookie goes out only with the
    // redirect it belongs to. It holds a session, never the token (`crate::session`).
    let session = state.sessions.issue(SystemTime::now());
    let cookie = HeaderValue::from_str(&format!(
        "{COOKIE}={session}; Max-Age={}; HttpOnly; SameSite=Strict; Path=/",
        crate::session::LIFETIME.as_secs()
    ));
    let location = HeaderValue::from_str(&next);
    match (cookie, location) {
        (Ok(cookie), Ok(location)) => (
            StatusCode::SEE_OTHER,
            [(header::SET_COOKIE, cookie), (header::LOCATION, location)],
        )
            .into_response(),
        _ => {
            tracing::error!("the login cookie or redirect is not a valid header value");
            (StatusCode::INTERNAL_SERVER_ERROR, "cannot sign in").into_response()
        }
    }
}

/// The fewest characters a token may have: 16 random ones take longer to guess, a
/// peer's ten tries a minute at a time ([`crate::attempts`]), than anyone will wait.
pub const MIN_TOKEN_LEN: usize = 16;

/// Why `token` cannot be the dashboard's, if it cannot: shorter than [`MIN_TOKEN_LEN`], or
/// holding what either way of presenting it (`Authorization: Bearer TOKEN`, the
/// `weft_token` cookie) cannot carry, so that it would be accepted here and never match:
/// only printable ASCII without spaces, quotes, commas, semicolons or backslashes
/// (RFC 6265's cookie-octet).
pub fn token_problem(token: &str) -> Option<String> {
    if let Some(c) = token
        .chars()
        .find(|&c| !c.is_ascii_graphic() || matches!(c, '"' | ',' | ';' | '\\'))
    {
        return Some(format!(
            "holds {c:?}, which a cookie or an Authorization header cannot carry: use \
             printable ASCII without spaces, quotes, commas, semicolons or backslashes"
        ));
    }
    (token.len() < MIN_TOKEN_LEN).then(|| {
        format!(
            "is {} characters long, too few to resist guessing: use at least \
             {MIN_TOKEN_LEN} (`openssl rand -hex 16` makes 32)",
            token.len()
        )
    })
}

/// Compares without stopping at the first difference, so timing tells nothing.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0, |acc, (x, y)| acc | (x ^ y)) == 0
}

//! One request: its trace, the message rules and the normal path before routing, the
//! proxy or the static files, then the response timed, recorded and handed to the access
//! log.

use std::convert::Infallible;
use std::pin::pin;
use std::rc::Rc;
use std::sync::Arc;

use http::header;
use http::request::Parts;
use http::{Request, Response, StatusCode, Version};
use hyper::body::{Body as _, Incoming};
use weft::defer::{StepDetail, Steps};
use weft::observe::{self, ErrorKind, Stopwatch};

use super::connection::Conn;
use super::{State, route_index};
use crate::access_log::{Cut, Logged, Pending};
use crate::behind::{Behind, Claim};
use crate::body::Body;
use crate::config::{Route, WebConfig};
use crate::files;
use crate::metrics::{MethodLabel, Refusal};
use crate::path::PathError;
use crate::proxy::{self, Marks};
use crate::response::error_page;
use crate::routes::RouteMetrics;
use crate::rules::{self, Refused};
use crate::trace::Trace;

/// The detail of the `route` step of a request for a static file.
const FILES: StepDetail = StepDetail::from_static("files");
/// The detail of the `route` step of a request over plain HTTP sent to HTTPS.
const TO_HTTPS: StepDetail = StepDetail::from_static("https redirect");

/// The answer to `request`, timed, counted and logged.
///
/// Not an `async fn`, which would keep its arguments in the future and move them into
/// locals beside them: the request is split here and the future holds its parts once.
/// The head stays in the future and what serves the request borrows it (the proxy
/// rewrites its header fields there); a request passed on by value would be copied into
/// each callee's future, a quarter of a kilobyte each time.
pub(super) fn handle(
    state: Rc<State>,
    conn: Rc<Conn>,
    request: Request<Incoming>,
) -> impl Future<Output = Result<Response<Logged>, Infallible>> {
    let (head, body) = request.into_parts();
    // Counted here, as hyper takes the request up: an HTTP/2 connection is told GOAWAY
    // at its cap by the task polling it (`connection::until_closed`), an HTTP/1.1 one
    // by its last response.
    let taken = conn.requests.get().saturating_add(1);
    conn.requests.set(taken);
    let cap = conn.max_requests;
    let last = cap != 0 && taken >= cap && !conn.multiplexed.get();
    if !conn.multiplexed.get() {
        conn.end_hold.begin();
    }
    let mut taken = Taken {
        state,
        conn,
        head,
        polled: false,
        since: Stopwatch::start(),
    };
    async move {
        taken.polled = true;
        let started = taken.since;
        let (state, conn, head) = (&*taken.state, &*taken.conn, &mut taken.head);
        // The client as a trusted proxy in front names it, if the peer is one.
        let behind = state.behind(conn, &head.headers);
        if let Some(behind) = &behind {
            // For what serves the request (the proxy's fields, the redirect): there, not in
            // each future between.
            head.extensions.insert(behind.claim());
        }
        let mut trace = Trace::start(&conn.info, &mut head.headers);
        if trace.invalid_parent {
            state.recorder.traceparent_invalid();
        }
        let method_label = MethodLabel::from(&head.method);
        trace.method(method_label);
        // The body's declared length as hyper parsed it (`Content-Length`), without a
        // second lookup of the field: nothing for a chunked or absent body.
        let declared = body.size_hint().exact().unwrap_or(0);
        // What follows a CONNECT on an HTTP/1.1 connection is meant for the tunnel it
        // asked for, never a request: the connection closes with the refusal.
        conn.body_unread.set(
            !conn.multiplexed.get()
                && (!body.is_end_stream() || head.method == http::Method::CONNECT),
        );
        conn.consumed
            .set(conn.info.stats.bytes_in().saturating_add(declared));
        // What the log line says of the request, taken before it is routed; nothing when
        // the log is off.
        let mut logged = state.access_log.is_on().then(|| logged_request(head));

        // An HTTP/2 request holds its place in the peer's count until its body has gone:
        // the count its service's generations share, under the cap of the one in force.
        let mut slot = None;
        let admitted = if conn.multiplexed.get()
            && let Some(limit) = state.h2_requests.get()
        {
            match limit.admit(&conn.info.peer) {
                Some(place) => {
                    // Boxed: held across the request's awaits, and most requests have none.
                    slot = Some(Box::new(place));
                    admit(&state.config, conn, head)
                }
                None => Err(rules::Refused {
                    status: StatusCode::SERVICE_UNAVAILABLE,
                    reason: Refusal::LimitPeer,
                    detail: "too many requests from this client at once",
                }),
            }
        } else {
            admit(&state.config, conn, head)
        };
        // A request the message rules took is judged by the client policy: the lists,
        // then its client's budgets (the service's, then its route's), spent.
        let admitted = admitted.and_then(|route| {
            let peer = Behind::peer(&behind, conn.peer);
            state
                .policy
                .check((&state.config, route), peer, &*state.recorder)
                .map(|()| route)
        });
        let (route, mut response) = match admitted {
            Ok(route) => {
                let series = state.routes.of(&state.config, route);
                let steps = trace.steps.clone();
                let request = (&mut *head, body);
                let dispatched = pin!(dispatch(state, conn, route, series, &steps, request));
                let answering = Answering::begin(&conn.answering);
                let unanswered = Unanswered {
                    state,
                    client: Behind::text(&behind, &conn.client_text),
                    route: series,
                    method: method_label,
                    started,
                    logged: &mut logged,
                };
                let response = trace.unless_cancelled(dispatched).await;
                unanswered.answered();
                drop(answering);
                let response = match response {
                    Some(response) => response,
                    None => {
                        state.recorder.refused(Refusal::Cancelled);
                        tracing::info!(service = %state.name, connection = %conn.info.id, "a request was cancelled from the inspector");
                        error_page(StatusCode::SERVICE_UNAVAILABLE, "the request was cancelled")
                    }
                };
                (series, response)
            }
            Err(refused) if matches!(refused.reason, Refusal::RateLimited | Refusal::Forbidden) => {
                routed_refusal(state, Behind::peer(&behind, conn.peer), head, refused)
            }
            Err(refused) => refused_page(state, refused),
        };
        let span = trace.span;
        trace.responded(response.status());
        trace.done(response.status());
        if Behind::secure(&behind, conn.secure)
            && let Some(hsts) = &state.hsts
        {
            response
                .headers_mut()
                .entry(header::STRICT_TRANSPORT_SECURITY)
                .or_insert_with(|| hsts.clone());
        }
        if !state.config.error_pages.is_empty() {
            crate::response::own_page(&mut response, &state.config.error_pages);
        }
        for (name, value) in &state.config.response_headers {
            response
                .headers_mut()
                .entry(name)
                .or_insert_with(|| value.clone());
        }

        // An answer given without reading the request's body (refused before routing,
        // a file, the proxy's own error page) leaves the rest of the body on the
        // connection, where hyper cannot tell it from a next request: it closes the
        // connection then, and the answer says so (RFC 9112 §9.6), so a client with
        // requests pipelined behind it knows they go unanswered. A small body already
        // read in whole would let the connection live on; telling that apart costs a
        // check of every body's end, for answers that are errors.
        let body_left = conn.body_unread.replace(false);
        // An HTTP/1.0 client cannot take chunks: a body of unknown length ends with the
        // connection, which the answer must say even to a client that asked to keep it
        // (RFC 9112 §9.3), or hyper's `keep-alive` promises what it will not keep.
        let unframed =
            head.version == Version::HTTP_10 && response.body().size_hint().exact().is_none();
        if (last || body_left || unframed) && response.status() != StatusCode::SWITCHING_PROTOCOLS {
            // hyper closes the connection once it has written a response saying so.
            response
                .headers_mut()
                .insert(header::CONNECTION, http::HeaderValue::from_static("close"));
            // To an HTTP/1.0 client that asked to keep the connection, hyper adds
            // `keep-alive` to the field of an HTTP/1.1 answer, whatever it says already;
            // it leaves an HTTP/1.0 answer's alone (and sends every answer as 1.0 to it).
            if head.version == Version::HTTP_10 {
                *response.version_mut() = Version::HTTP_10;
            }
        }

        let status = response.status();
        let elapsed = started.elapsed();
        state
            .recorder
            .request(method_label, status.into(), elapsed, span);
        route.request(status.into(), elapsed, span);
        // The method is still the client's: the proxy changes only the header fields.
        let head_only = head.method == http::Method::HEAD
            || status.is_informational()
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED;
        let pending = logged.map(|logged| {
            pending(
                state,
                Behind::text(&behind, &conn.client_text),
                logged,
                status,
                started,
            )
        });
        let end = (!conn.multiplexed.get()).then(|| conn.end_hold.clone());
        Ok(response.map(|body| {
            Logged::new(body, pending, head_only)
                .holding(slot)
                .ending(end)
        }))
    }
}

/// The answer to a request refused before it was routed, and the series it counts in.
fn refused_page(state: &State, refused: Refused) -> (&Arc<RouteMetrics>, Response<Body>) {
    state.recorder.refused(refused.reason);
    let mut page = error_page(refused.status, refused.detail);
    if refused.reason == Refusal::LimitPeer {
        page.headers_mut()
            .insert(header::RETRY_AFTER, http::HeaderValue::from_static("1"));
    }
    (&state.routes.unrouted, page)
}

/// The answer to a request refused once routed (over its client's `rate_limit`, or
/// refused by `allow` and `deny`), and the series it counts in: its route's. The route
/// is found again from the request (its path in normal form by now), rather than kept
/// from the check: what a request's future holds across its awaits is copied with every
/// request.
fn routed_refusal<'s>(
    state: &'s State,
    peer: Option<std::net::IpAddr>,
    head: &Parts,
    refused: Refused,
) -> (&'s Arc<RouteMetrics>, Response<Body>) {
    state.recorder.refused(refused.reason);
    let route = state
        .config
        .route_path(head.uri.path())
        .ok()
        .and_then(|(_, route)| route);
    let mut page = error_page(refused.status, refused.detail);
    if refused.reason == Refusal::RateLimited {
        let wait = state.policy.wait((&state.config, route), peer);
        // Whole seconds (RFC 9110 §10.2.3), rounded up: never sooner than the budget has
        // a request again.
        let seconds = u64::try_from(wait.as_millis().div_ceil(1000).max(1)).unwrap_or(u64::MAX);
        page.headers_mut()
            .insert(header::RETRY_AFTER, http::HeaderValue::from(seconds));
    }
    (state.routes.of(&state.config, route), page)
}

/// What a request's log line says of it (request line, referer, user agent), taken
/// before it is routed.
type LoggedRequest = (String, Option<http::HeaderValue>, Option<http::HeaderValue>);

/// What the log line says of the request with `head`.
fn logged_request(head: &Parts) -> LoggedRequest {
    let method = &head.method;
    // An HTTP/2 target always carries scheme and authority; the log shows the path, as
    // the request line of HTTP/1.1 would.
    let request_line = match head.uri.path_and_query() {
        Some(target) if head.version >= Version::HTTP_2 => {
            format!("{method} {target} {:?}", head.version)
        }
        _ => format!("{} {} {:?}", method, head.uri, head.version),
    };
    (
        request_line,
        head.headers.get(header::REFERER).cloned(),
        head.headers.get(header::USER_AGENT).cloned(),
    )
}

/// The log line of a request answered `status`, to write when its answer has gone.
fn pending(
    state: &State,
    client: &Rc<str>,
    (request, referer, user_agent): LoggedRequest,
    status: StatusCode,
    started: Stopwatch,
) -> Pending {
    Pending {
        to: state.access_log.clone(),
        service: state.name.clone(),
        client: client.clone(),
        request,
        status: status.as_u16(),
        referer,
        user_agent,
        started,
    }
}

/// A request hyper has taken up, owning its head, until its future is first polled.
/// hyper can drop the future before that: an HTTP/1.1 client's end-of-stream read behind
/// a pipelined request (the client half-closed, or left) ends the connection with the
/// request's future made and never polled. It is then counted and logged as 499, as a
/// request given up later is ([`Unanswered`]), so no request taken up goes unrecorded.
struct Taken {
    state: Rc<State>,
    conn: Rc<Conn>,
    head: Parts,
    /// Set at the first poll: from then on the request records itself.
    polled: bool,
    since: Stopwatch,
}

impl Drop for Taken {
    fn drop(&mut self) {
        if self.polled {
            return;
        }
        // Never to be answered: nothing holds back the client's end for it.
        self.conn.end_hold.end();
        let state = &*self.state;
        let head = &self.head;
        // Counted under the route its path leads to, as it would have been; one whose
        // path no route could take is unrouted.
        let route = match state.config.route_path(head.uri.path()) {
            Ok((_, route)) => state.routes.of(&state.config, route),
            Err(_) => &state.routes.unrouted,
        };
        let conn = &*self.conn;
        let behind = state.behind(conn, &head.headers);
        Unanswered {
            state,
            client: Behind::text(&behind, &conn.client_text),
            route,
            method: MethodLabel::from(&head.method),
            started: self.since,
            logged: &mut state.access_log.is_on().then(|| logged_request(head)),
        };
    }
}

/// A request waiting for its answer. Dropped unanswered, its future was: the client
/// closed the connection or reset the stream, or the connection was aborted (at the
/// shutdown deadline, from the dashboard). Nothing is sent, but the request is counted
/// and logged as 499 (nginx's "client closed request"), cut short as its connection
/// closed, so the log and the request counts keep every request taken up.
struct Unanswered<'a> {
    state: &'a State,
    client: &'a Rc<str>,
    route: &'a RouteMetrics,
    method: MethodLabel,
    started: Stopwatch,
    logged: &'a mut Option<LoggedRequest>,
}

impl Unanswered<'_> {
    /// The request has its answer: nothing to say at drop.
    fn answered(self) {
        std::mem::forget(self);
    }
}

impl Drop for Unanswered<'_> {
    fn drop(&mut self) {
        let status =
            StatusCode::from_u16(proxy::CLIENT_CLOSED_REQUEST).expect("499 is a status code");
        let elapsed = self.started.elapsed();
        let state = self.state;
        state
            .recorder
            .request(self.method, status.into(), elapsed, None);
        self.route.request(status.into(), elapsed, None);
        if let Some(logged) = self.logged.take() {
            pending(state, self.client, logged, status, self.started)
                .write(0, Some(Cut::ConnectionClosed));
        }
    }
}

/// A request of a connection whose response head is being made (routed, a file read, an
/// upstream asked), counted in `Conn::answering` until it is dropped.
struct Answering<'a>(&'a std::cell::Cell<u32>);

impl<'a> Answering<'a> {
    fn begin(count: &'a std::cell::Cell<u32>) -> Self {
        count.set(count.get() + 1);
        Self(count)
    }
}

impl Drop for Answering<'_> {
    fn drop(&mut self) {
        self.0.set(self.0.get() - 1);
    }
}

/// Applies the message rules and puts the path in normal form (in the request, so the
/// proxy and the files see only that form); returns the route it leads to.
fn admit<'c>(
    config: &'c WebConfig,
    conn: &Conn,
    head: &mut Parts,
) -> Result<Option<&'c Route>, Refused> {
    rules::check(head, &conn.last_host, conn.max_header_bytes)?;
    let uri = &head.uri;
    let bad_path = |e: PathError| Refused {
        status: StatusCode::BAD_REQUEST,
        reason: Refusal::Path,
        detail: e.message(),
    };
    let (path, route) = config.route_path(uri.path()).map_err(bad_path)?;
    let query = uri.query().map(crate::path::encode_query);
    let query_changed = matches!(query, Some(std::borrow::Cow::Owned(_)));
    if path != uri.path() || uri.authority().is_some() || query_changed {
        let target = match query {
            Some(query) => format!("{path}?{query}"),
            None => path.into_owned(),
        };
        head.uri = target.parse().map_err(|_| bad_path(PathError::Malformed))?;
    }
    Ok(route)
}

async fn dispatch(
    state: &State,
    conn: &Conn,
    route: Option<&Route>,
    series: &RouteMetrics,
    steps: &Steps,
    (head, body): (&mut Parts, Incoming),
) -> Response<Body> {
    let config = &state.config;
    if let Some(port) = config.https_redirect
        && !head
            .extensions
            .get::<Claim>()
            .map_or(conn.secure, |c| c.secure)
        && crate::response::redirected_to_https(head.uri.path())
    {
        steps.step_with("route", None, Some(&TO_HTTPS));
        return crate::response::https_redirect(head, port).unwrap_or_else(|| {
            state.recorder.refused(Refusal::Host);
            error_page(
                StatusCode::BAD_REQUEST,
                "a request redirected to https must name its host",
            )
        });
    }
    if let Some(route) = route {
        // The client's end abandons a proxied exchange, as nginx's does.
        conn.end_hold.end();
        let Some(upstreams) = state.proxy.upstreams(config, route) else {
            return error_page(StatusCode::BAD_GATEWAY, "no upstream for this route");
        };
        let details = route_index(config, Some(route)).and_then(|i| state.route_details.get(i));
        steps.step_with("route", None, details.map(|d| &d.prefix));
        let marks = Marks {
            steps,
            upstreams: details.map_or(&[], |d| &d.upstreams[..]),
        };
        let client = proxy::Client {
            connection: conn.info.id,
            peer: conn.peer,
            forwarding: &conn.forwarding,
            via: &state.via,
            tunnel: &conn.tunnel,
        };
        if proxy::last_hop(head) {
            // An OPTIONS that may go no further, answered here without its body.
            return proxy::reachable();
        }
        let forwarded = proxy::forward(
            route,
            upstreams,
            &config.limits,
            client,
            &state.recorder,
            (head, body),
            &marks,
        );
        // Not boxed, though its state is most of a request's future (about 1 KB of the
        // 1.5; a file's is 48 bytes, its slow paths boxed where they start): boxed,
        // every request's future moves less, but a proxied request pays the box and one
        // more copy of the state into it. Measured with callgrind, 0.8% fewer
        // instructions for a file and 0.9% more for a proxied request; timed, no
        // difference either way.
        return match forwarded.await {
            Ok(response) => {
                // The upstream answered: it read the body, or answered before it had all
                // of it, as it may (then hyper closes the connection as it must).
                conn.body_unread.set(false);
                response
            }
            // Refused or failed, maybe before the body was read (a loop, a body too large,
            // no upstream to connect to): the answer closes the connection if the request
            // had a body.
            Err(err) => not_forwarded(state, conn, route, series, &err),
        };
    }
    match &state.files {
        Some(source) => {
            steps.step_with("route", None, Some(&FILES));
            let to = files::Serving {
                index: &config.index,
                options: &config.files,
                recorder: &*state.recorder,
                steps,
            };
            files::serve(source, &to, head).await
        }
        None => error_page(StatusCode::NOT_FOUND, "no route for this path"),
    }
}

/// Counts, logs and answers a request the proxy did not get an answer for: out of line,
/// so the path of a request that was answered stays as small as it was.
#[cold]
#[inline(never)]
fn not_forwarded(
    state: &State,
    conn: &Conn,
    route: &Route,
    series: &RouteMetrics,
    err: &proxy::UpstreamError,
) -> Response<Body> {
    if let Some(reason) = err.refusal() {
        state.recorder.refused(reason);
        if reason == Refusal::Loop {
            // The configuration's fault, not the client's: said where it is seen.
            tracing::warn!(service = %state.name, connection = %conn.info.id, route = %route.prefix, %err, "refused a request");
        } else {
            // The client's fault, said as a malformed head is: one line a
            // second at most for each kind, and an event for the inspector.
            let kind = if reason == Refusal::BodyTooLarge {
                ErrorKind::FrameTooLong
            } else {
                ErrorKind::BadFrame
            };
            observe::report_error(&conn.info, kind, format!("refused a request: {err}"));
        }
    } else if matches!(
        err,
        proxy::UpstreamError::ClientGone(_) | proxy::UpstreamError::StreamReset(_)
    ) {
        tracing::debug!(service = %state.name, connection = %conn.info.id, %err, "the client went away or broke the protocol");
    } else if matches!(err, proxy::UpstreamError::CutByDrain(_)) {
        tracing::info!(service = %state.name, connection = %conn.info.id, %err, "a proxied request was cut short by the drain's deadline");
    } else if matches!(err, proxy::UpstreamError::ClosedHere(_)) {
        tracing::info!(service = %state.name, connection = %conn.info.id, %err, "a proxied request was cut short: its upstream connection was closed from the dashboard");
    } else if !err.is_upstream() {
        // The body's file failed (counted where it did): weft's own fault,
        // not the upstream's.
        tracing::error!(service = %state.name, connection = %conn.info.id, %err, "proxying failed");
    } else {
        state.recorder.upstream_error();
        series.upstream_error(&err.to_string());
        tracing::warn!(service = %state.name, connection = %conn.info.id, %err, "proxying failed");
    }
    // The client learns what kind of failure it was; the log has the rest.
    let mut page = error_page(err.status(), err.client_message());
    if let Some(after) = err.retry_after() {
        page.headers_mut().insert(
            header::RETRY_AFTER,
            http::HeaderValue::from(after.as_secs()),
        );
    }
    page
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The size of the future `f` returns, without calling it.
    fn future_size<A, B, C, F: Future>(_: impl FnOnce(A, B, C) -> F) -> usize {
        size_of::<F>()
    }

    #[test]
    fn a_request_s_future_is_small_enough_to_move_each_request() {
        // hyper moves each request's future into its connection's slot, so every byte
        // of it is copied, and each cache line touched, once a request. The rare paths
        // (opening an upstream connection, an upgrade, a file that must wait for the
        // disk or the blocking pool) keep their state in boxes of their own; inlined, any
        // of them adds kilobytes here. Nor is anything held twice: the request is split
        // once and its head borrowed, not passed on by value into each callee's future,
        // and the exchange with the upstream is polled where it lies. A request's future
        // is 1,672 bytes in both the test and the release profile (2,320 before the
        // request was split once, 6 KB before the boxes; 8 of them hold the client a
        // trusted proxy names); a file's answer 48 (1.8 KB before its box).
        let files = future_size(files::serve);
        assert!(files <= 512, "a file's answer: {files} bytes");
        let request = future_size(handle);
        assert!(request <= 1680, "a request: {request} bytes");
    }
}

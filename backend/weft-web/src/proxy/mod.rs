//! The reverse proxy: each request goes to one of its route's upstreams
//! (`upstreams`: balancing, health, retries) over a kept-alive HTTP/1.1 connection
//! (`pool`) that the reactor opened, so it is registered, counted and listed under the
//! service, with response bodies streamed.
//!
//! A request's body is read ahead before any upstream is contacted, whole when it is
//! small enough (`body`), so a slow client holds no upstream connection while it sends it.
//!
//! A request is sent again to another upstream only when nothing of it can have reached
//! the first: the connection could not be made (whatever the method). On a
//! reused connection that turns out to be closed or reset, it is sent again on a new
//! connection to the same upstream when none of it went out, or when it has an
//! idempotent method and no body or one read whole.
//!
//! A request that asks to switch protocols (`Connection: upgrade` with `Upgrade`) goes
//! through `upgrade` instead: its own upstream connection, and a tunnel after the 101.

mod body;
mod outgoing;
mod pool;
pub(crate) mod upgrade;
mod upstreams;

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use http::header::{self, HeaderName, HeaderValue};
use http::request::Parts;
use http::{Method, Request, Response, StatusCode, Uri};
use hyper::body::Incoming;
use weft::Transport;
use weft::defer::{StepDetail, Steps, WaitsOn};
use weft::observe::ConnectionId;

pub use self::body::{BodiesSnapshot, BodiesView};
use self::body::{BodyBuffers, BodyFiles, BodyRoom, ReadAhead, ReqBody};
use self::outgoing::Outgoing;
use self::pool::SendError;
pub use self::upstreams::{RecentError, UpstreamSnapshot, UpstreamsView};
use self::upstreams::{RouteUpstreams, Target, Tried};
use crate::body::Body;
use crate::client_body::ClientBodyError;
use crate::config::{Limits, Route, Upstream, WebConfig};
use crate::headers::{
    Forwarding, Via, one_content_length, other_transfer_coding, strip_from_trailers,
    strip_hop_by_hop_from_response,
};
use crate::metrics::{BodyBuffered, Recorder, Refusal, UpstreamFailure};

/// Why an upstream gave no response; each maps to the status the client gets.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UpstreamError {
    /// Nothing listens there.
    #[error("upstream {0} refused the connection")]
    Refused(String),
    /// No connection within the connect timeout.
    #[error("upstream {0} did not accept a connection within {1:?}")]
    ConnectTimeout(String, Duration),
    /// Connecting failed otherwise (name resolution, for one).
    #[error("cannot connect to upstream {0}: {1}")]
    Connect(String, String),
    /// The TLS handshake failed: a certificate that does not verify, for one.
    #[error("TLS with upstream {0} failed: {1}")]
    Tls(String, String),
    /// The connection was made and the TLS handshake not completed within the connect
    /// timeout: a TLS failure, answered as a timeout.
    #[error("upstream {0} did not complete the TLS handshake within {1:?}")]
    TlsTimeout(String, Duration),
    /// No response head within the upstream timeout.
    #[error("upstream {0} did not answer within {1:?}")]
    Timeout(String, Duration),
    /// The upstream switched protocols when it must not have: for a request that did not
    /// ask to, to a protocol the request did not offer, or without naming one.
    #[error("upstream {0} switched protocols {1}")]
    Switch(String, String),
    /// The exchange broke (the upstream closed, or sent something that is not HTTP).
    #[error("upstream {0} failed: {1}")]
    Exchange(String, String),
    /// A health check was answered with an error status.
    #[error("upstream {0} answered its health check with {1}")]
    Unhealthy(String, StatusCode),
    /// Every upstream of the route (named by its prefix) is ejected, the first for this
    /// long yet.
    #[error("every upstream of route {0} is ejected after failing")]
    Unavailable(String, Duration),
    /// The request body is larger than the limit.
    #[error("request body larger than {0} bytes")]
    BodyTooLarge(u64),
    /// The client's request body broke off or was malformed (bad chunked framing, say).
    #[error("the request body is malformed or incomplete: {0}")]
    RequestBody(String),
    /// The client sent nothing of its request body for this long, or not all that was
    /// read ahead of the upstream in this long.
    #[error("the request body stopped coming, or did not all come, within {0:?}")]
    BodyTimeout(Duration),
    /// No response head within the upstream timeout while sending the request body waited
    /// on the client (all it had sent taken, more still to come): the upstream was waiting
    /// on the client. Answered 408 and counted as the client's refusal, not against the
    /// upstream's health: one client sending slowly ejects no upstream for the others.
    #[error(
        "upstream {0} did not answer within {1:?}, the request body still coming from the client"
    )]
    BodyStillComing(String, Duration),
    /// The request body's temporary file could not be read back as it was sent: weft's
    /// own failure (a disk error), neither the client's nor the upstream's.
    #[error("{0}")]
    BodyFile(String),
    /// The client reset its HTTP/2 stream while its body was read (it cancelled the
    /// request): nobody is left to answer. Neither a refusal of a bad body nor the
    /// upstream's failure; logged as 499, as nginx does.
    #[error("the client reset its stream: {0}")]
    ClientGone(String),
    /// The upstream connection was aborted at a drain's deadline (the gateway stopping, or
    /// the service removed by a reload) before the answer came: the stop cut the request,
    /// not the upstream; logged as 499, as a request whose client connection the deadline
    /// cut.
    #[error("the drain's deadline cut it: {0}")]
    CutByDrain(String),
    /// The upstream connection was closed from the dashboard before the answer came: the
    /// operator cut the request, not the upstream, whose health it does not count
    /// against. Answered 502 (nothing came from the upstream), and not sent again: the
    /// close was asked for.
    #[error("its upstream connection was closed from the dashboard: {0}")]
    ClosedHere(String),
    /// The HTTP/2 stream was reset here while its body was read, for the client breaking
    /// the protocol (DATA past its `content-length`, say): the client was told with
    /// RST_STREAM, which is counted where it is sent (`stream_error`), so not again here.
    #[error("the stream was reset for the client's error: {0}")]
    StreamReset(String),
    /// The request's `Via` names this service (by its pseudonym, here): a route's upstream
    /// leads back to it, directly or through other proxies. Refused rather than sent round
    /// again.
    #[error(
        "the request came through this service before (its Via names {0}): a route's upstream leads back here"
    )]
    Loop(String),
}

/// The status logged for a request whose client went away before its answer (nginx's
/// "client closed request"); nothing is sent.
pub(crate) const CLIENT_CLOSED_REQUEST: u16 = 499;

impl UpstreamError {
    /// The status the client is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::ConnectTimeout(..) | Self::TlsTimeout(..) | Self::Timeout(..) => {
                StatusCode::GATEWAY_TIMEOUT
            }
            Self::BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Unavailable(..) => StatusCode::SERVICE_UNAVAILABLE,
            Self::RequestBody(_) | Self::StreamReset(_) => StatusCode::BAD_REQUEST,
            // RFC 9110 §15.5.9: the server would not wait longer for the request.
            Self::BodyTimeout(_) | Self::BodyStillComing(..) => StatusCode::REQUEST_TIMEOUT,
            Self::BodyFile(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Loop(_) => StatusCode::LOOP_DETECTED,
            Self::ClientGone(_) | Self::CutByDrain(_) => {
                StatusCode::from_u16(CLIENT_CLOSED_REQUEST).unwrap_or(StatusCode::BAD_REQUEST)
            }
            _ => StatusCode::BAD_GATEWAY,
        }
    }

    /// What the client is told: the kind of failure, never where the upstream is or
    /// what the system said (that goes to the log).
    pub fn client_message(&self) -> &'static str {
        match self {
            Self::ConnectTimeout(..) | Self::TlsTimeout(..) | Self::Timeout(..) => {
                "the upstream server did not answer in time"
            }
            Self::Unavailable(..) => "no upstream server is available",
            Self::BodyTooLarge(_) => "the request body is too large",
            Self::RequestBody(_) | Self::StreamReset(_) => {
                "the request body is malformed or incomplete"
            }
            Self::BodyTimeout(_) | Self::BodyStillComing(..) => {
                "the request body did not come in time"
            }
            Self::BodyFile(_) => "the server could not read the request body back",
            Self::ClientGone(_) => "the client went away",
            Self::CutByDrain(_) => "the server is stopping",
            Self::ClosedHere(_) => "the gateway closed the upstream connection",
            Self::Loop(_) => "the request came back to this proxy: a forwarding loop",
            _ => "the upstream server could not be reached or failed",
        }
    }

    /// The upstream's failure as a bounded label; `None` when the client is at fault or
    /// no upstream was tried.
    pub fn failure(&self) -> Option<UpstreamFailure> {
        Some(match self {
            Self::Refused(_) => UpstreamFailure::Refused,
            Self::ConnectTimeout(..) => UpstreamFailure::ConnectTimeout,
            Self::Connect(..) => UpstreamFailure::Connect,
            Self::Tls(..) | Self::TlsTimeout(..) => UpstreamFailure::Tls,
            Self::Timeout(..) => UpstreamFailure::Timeout,
            Self::Exchange(..) | Self::Switch(..) => UpstreamFailure::Exchange,
            Self::Unhealthy(..) => UpstreamFailure::Unhealthy,
            Self::Unavailable(..)
            | Self::BodyTooLarge(_)
            | Self::RequestBody(_)
            | Self::BodyTimeout(_)
            | Self::BodyStillComing(..)
            | Self::BodyFile(_)
            | Self::ClientGone(_)
            | Self::CutByDrain(_)
            | Self::ClosedHere(_)
            | Self::StreamReset(_)
            | Self::Loop(_) => return None,
        })
    }

    /// Whether no connection could be made, so nothing of the request was sent.
    fn is_connect(&self) -> bool {
        matches!(
            self,
            Self::Refused(_)
                | Self::ConnectTimeout(..)
                | Self::Connect(..)
                | Self::Tls(..)
                | Self::TlsTimeout(..)
        )
    }

    /// Whether the upstream is at fault (and counted), rather than the client or weft.
    pub fn is_upstream(&self) -> bool {
        self.refusal().is_none()
            && !matches!(
                self,
                Self::BodyFile(_)
                    | Self::ClientGone(_)
                    | Self::CutByDrain(_)
                    | Self::ClosedHere(_)
                    | Self::StreamReset(_)
            )
    }

    /// When the client may ask again (`Retry-After`): for a route whose every upstream is
    /// ejected, once the first ejection is over.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Unavailable(_, after) => Some(*after),
            _ => None,
        }
    }

    /// Why the client's request was refused, when the client is at fault.
    pub fn refusal(&self) -> Option<Refusal> {
        match self {
            Self::BodyTooLarge(_) => Some(Refusal::BodyTooLarge),
            Self::RequestBody(_) => Some(Refusal::Body),
            Self::BodyTimeout(_) | Self::BodyStillComing(..) => Some(Refusal::BodyTimeout),
            Self::Loop(_) => Some(Refusal::Loop),
            _ => None,
        }
    }
}

/// RFC 9110 §15: a status outside 100-599 is not one; the client could not read it.
pub(crate) fn a_status<B>(
    response: &Response<B>,
    upstream: &Upstream,
) -> Result<(), UpstreamError> {
    if response.status().as_u16() > 599 {
        return Err(UpstreamError::Exchange(
            upstream.url.clone(),
            format!(
                "the response's status {} is not a status code",
                response.status()
            ),
        ));
    }
    Ok(())
}

/// The path and query to ask `upstream` for: the request's, with the route's prefix
/// replaced by the upstream's base path when it has one.
pub(crate) fn upstream_target(route: &Route, upstream: &Upstream, uri: &Uri) -> String {
    let path = uri.path();
    let base = &upstream.base_path;
    let mut target = if base.is_empty() {
        path.to_owned()
    } else {
        let rest = path.get(route.prefix.len()..).unwrap_or("");
        let rest = rest.trim_start_matches('/');
        if rest.is_empty() && !path.ends_with('/') {
            base.clone()
        } else {
            format!("{base}/{rest}")
        }
    };
    if let Some(q) = uri.query() {
        target.push('?');
        target.push_str(q);
    }
    target
}

/// Where a redirect of `upstream`'s that names the upstream itself leads the client, in
/// the route's own paths (nginx's `proxy_redirect default`): the client cannot reach
/// the upstream's address, and should not learn it. `None` for a location elsewhere.
fn client_location(route: &Route, upstream: &Upstream, location: &str) -> Option<String> {
    let scheme = if upstream.tls { "https://" } else { "http://" };
    let rest = location.get(..scheme.len())?;
    if !rest.eq_ignore_ascii_case(scheme) {
        return None;
    }
    let rest = &location[scheme.len()..];
    let default_port = if upstream.tls { 443 } else { 80 };
    let authority = upstream.authority();
    let bare = match upstream.host.contains(':') {
        true => format!("[{}]", upstream.host),
        false => upstream.host.clone(),
    };
    let path = [
        Some(authority.as_str()),
        (upstream.port == default_port).then_some(&*bare),
    ]
    .into_iter()
    .flatten()
    .find_map(|a| {
        let head = rest.get(..a.len())?;
        let after = &rest[a.len()..];
        (head.eq_ignore_ascii_case(a) && (after.is_empty() || after.starts_with(['/', '?'])))
            .then_some(after)
    })?;
    let base = &upstream.base_path;
    if base.is_empty() {
        // Paths go upstream unchanged: the upstream's path is the client's.
        return Some(on_this_host(path));
    }
    let after = path.strip_prefix(base.as_str())?;
    if !(after.is_empty() || after.starts_with(['/', '?'])) {
        return None;
    }
    // The base path stands for the prefix without its last slash, both ways
    // (`upstream_target`; a route `/app/` takes `/app` itself, `Route::matched`): so
    // `/base` is `/app` and `/base/` is `/app/`, and an upstream that redirects one to
    // the other is not sent round in a loop.
    let joined = format!("{}{after}", route.prefix.trim_end_matches('/'));
    Some(on_this_host(&joined))
}

/// A `Refresh` value (`DELAY; url=URL`, the URL possibly quoted) whose URL
/// [`client_location`] makes the route's, with that URL replaced; `None` otherwise.
fn client_refresh(route: &Route, upstream: &Upstream, refresh: &str) -> Option<String> {
    let (delay, rest) = refresh.split_once(';')?;
    let rest = rest.trim_start_matches([' ', '\t']);
    let url = rest
        .get(..4)
        .filter(|key| key.eq_ignore_ascii_case("url="))
        .map(|_| rest[4..].trim_start_matches([' ', '\t']))?;
    let (quote, url) = match url.strip_prefix(['"', '\'']) {
        Some(inner) => (&url[..1], inner.strip_suffix(&url[..1])?),
        None => ("", url),
    };
    let ours = client_location(route, upstream, url)?;
    Some(format!("{delay}; url={quote}{ours}{quote}"))
}

/// `path` as a location on the client's host: with one `/` in front in place of any run
/// of slashes, backslashes and the tabs and newlines a browser drops between them. The
/// upstream's `http://up//evil.example/x` is a path on the upstream; `//evil.example/x`
/// (or `/\evil.example/x`, browsers reading `\` as `/`) would send the client to
/// another host (RFC 3986 §4.2).
fn on_this_host(path: &str) -> String {
    let rest = path.trim_start_matches(['/', '\\', '\t', '\n', '\r']);
    format!("/{rest}")
}

/// The target to ask `upstream` for, as a URI: the request's own (shared, not parsed
/// again) when the upstream has no base path to put in place of the route's prefix.
pub(crate) fn upstream_uri(
    route: &Route,
    upstream: &Upstream,
    uri: &Uri,
) -> Result<Uri, UpstreamError> {
    // The request's URI is in normal form, origin-form only (`admit`).
    if upstream.base_path.is_empty() && uri.authority().is_none() {
        return Ok(uri.clone());
    }
    upstream_target(route, upstream, uri)
        .parse()
        .map_err(|e| UpstreamError::Exchange(upstream.url.clone(), format!("bad target: {e}")))
}

/// Every route's upstreams, with their pools and health; made when the service is.
pub(crate) struct Proxy {
    /// By route, in the configuration's order.
    routes: Vec<Rc<RouteUpstreams>>,
    view: UpstreamsView,
    /// `None` without routes: no body is read ahead.
    bodies: Option<BodiesView>,
}

impl Proxy {
    /// The upstreams of `config`'s routes, connections reported under `service`; the
    /// state of those `before` (the generation a reload replaces) has too is taken over
    /// ([`RouteUpstreams::start`]).
    pub(crate) fn start(
        service: &str,
        config: &WebConfig,
        recorder: &Rc<dyn Recorder>,
        before: Option<&Self>,
    ) -> Self {
        let service: Arc<str> = service.into();
        let limits = &config.limits;
        let bodies = Rc::new(BodyRoom {
            buffers: BodyBuffers::new(
                limits.body_buffer_total_bytes,
                limits.body_buffer_bytes,
                recorder.clone(),
            ),
            files: config.body_files().then(|| {
                BodyFiles::new(
                    &config.body_file_dir,
                    limits.body_file_total_bytes,
                    limits.max_body_bytes,
                    recorder.clone(),
                )
            }),
        });
        let routes: Vec<_> = config
            .routes
            .iter()
            .map(|route| {
                let before = before.map_or(&[][..], |p| &p.routes[..]);
                RouteUpstreams::start(
                    &service,
                    route,
                    &config.pool,
                    limits,
                    recorder,
                    &bodies,
                    before,
                )
            })
            .collect();
        let view = UpstreamsView(Arc::new(routes.iter().flat_map(|r| r.states()).collect()));
        let bodies = (!routes.is_empty()).then(|| bodies.view());
        Self {
            routes,
            view,
            bodies,
        }
    }

    /// The upstreams of `route`, one of `config`'s routes.
    pub(crate) fn upstreams(&self, config: &WebConfig, route: &Route) -> Option<&RouteUpstreams> {
        let i = config.routes.iter().position(|r| std::ptr::eq(r, route))?;
        self.routes.get(i).map(|r| &**r)
    }

    /// Ends the active checks of its routes' upstreams: a later generation of the service
    /// is in force, and these serve only the requests already under way.
    pub(crate) fn retire(&self) {
        for route in &self.routes {
            route.retire();
        }
    }

    /// What other threads may read of the upstreams.
    pub(crate) fn view(&self) -> &UpstreamsView {
        &self.view
    }

    /// What other threads may read of the request bodies read ahead; `None` without
    /// routes.
    pub(crate) fn bodies(&self) -> Option<&BodiesView> {
        self.bodies.as_ref()
    }
}

/// Where `forward` marks the request chain's named steps, and the upstreams' names it
/// gives them.
pub(crate) struct Marks<'a> {
    pub(crate) steps: &'a Steps,
    /// Each upstream of the route, in order.
    pub(crate) upstreams: &'a [StepDetail],
}

/// Aborts the upstream connection if the exchange ends before its response head (dropped
/// by a cancel from the inspector or by the client going away, or failed): it is
/// mid-request and must not be reused.
pub(crate) struct Abandon(pub(crate) Option<Transport>);

impl Drop for Abandon {
    fn drop(&mut self) {
        if let Some(transport) = self.0.take() {
            transport.abort_connection();
        }
    }
}

/// What forwarding needs of the client's connection.
pub(crate) struct Client<'a> {
    /// Its id: what a request waits on while its body is read.
    pub(crate) connection: ConnectionId,
    /// The peer's address, whose share of the body buffers its requests use.
    pub(crate) peer: Option<std::net::IpAddr>,
    /// What upstreams are told of it (`X-Forwarded-For`, `Forwarded`).
    pub(crate) forwarding: &'a Forwarding,
    /// What the service adds to `Via`, and knows its own requests by.
    pub(crate) via: &'a Via,
    /// Where the upstream end of a tunnel goes after a 101.
    pub(crate) tunnel: &'a upgrade::Slot,
}

/// Forwards a request (its head, whose header fields become the upstream's, and its body)
/// along `route` to one of `upstreams` (whose pools report their connections under the
/// service).
pub(crate) async fn forward(
    route: &Route,
    upstreams: &RouteUpstreams,
    limits: &Limits,
    client: Client<'_>,
    recorder: &Rc<dyn Recorder>,
    (head, body): (&mut Parts, Incoming),
    marks: &Marks<'_>,
) -> Result<Response<Body>, UpstreamError> {
    if let Some(offered) = upgrade::asked(head) {
        // Never pooled: after a 101 its upstream connection is the tunnel's.
        let asks = upgrade::Asks { client, offered };
        let to = upgrade::To { route, upstreams };
        // Boxed, as a rare path: its state (a connection opened for the tunnel) is
        // kilobytes that every proxied request's future would otherwise carry.
        return Box::pin(upgrade::forward(
            to,
            limits,
            asks,
            recorder,
            (head, body),
            marks,
        ))
        .await;
    }
    let mut outgoing = Outgoing::new(head, body, limits, client.forwarding, client.via)?;
    if !outgoing.bodiless() {
        let buffered = if limits.body_buffer_bytes == 0 {
            BodyBuffered::None
        } else {
            let waits_on = Some(WaitsOn::Connection(client.connection));
            marks.steps.step_with("request body", waits_on, None);
            let how = ReadAhead {
                limit: limits.body_buffer_bytes,
                deadline: limits.request_timeout,
                max_body: limits.max_body_bytes,
                room: &upstreams.bodies,
                peer: client.peer,
            };
            // Boxed, as only requests with a body take this path.
            Box::pin(outgoing.read_ahead(how, limits)).await?
        };
        recorder.request_body(buffered);
    }
    let mut tried = Tried::default();
    let mut last = None;
    let (i, response) = loop {
        let Some(i) = upstreams.pick(tried) else {
            return Err(last.unwrap_or_else(|| {
                recorder.upstream_unavailable(&route.prefix);
                UpstreamError::Unavailable(route.prefix.clone(), upstreams.back_in())
            }));
        };
        tried.insert(i);
        let target = &upstreams.targets[i];
        let detail = marks.upstreams.get(i);
        let since = target.state.ejections();
        match exchange(route, target, &mut outgoing, limits, marks.steps, detail).await {
            Ok(response) => {
                if let Some(err) = unusable(&response.0.0, outgoing.is_head(), target) {
                    upstreams.failed(i, &err, &**recorder);
                    return Err(err);
                }
                upstreams.succeeded(i, since);
                break (i, response);
            }
            Err(err) => {
                if err.is_upstream() {
                    upstreams.failed(i, &err, &**recorder);
                }
                if !(err.is_connect() && outgoing.may_retry()) {
                    return Err(err);
                }
                tracing::info!(%err, "trying another upstream");
                last = Some(err);
            }
        }
    };
    let (answered, in_flight) = response;
    a_status(&answered.0, &upstreams.targets[i].upstream)?;
    Ok(respond(
        route,
        &upstreams.targets[i],
        answered,
        in_flight,
        limits.upstream_timeout,
    ))
}

/// Why an upstream's answer cannot go to the client, as the upstream's failure: a switch
/// of protocols the request did not ask for (RFC 9110 §15.2.2: requests that ask go
/// through `upgrade`; the client could not follow), or a body in a transfer coding other
/// than `chunked` (RFC 9112 §6.1: hyper undoes `chunked` only, so it would reach the client
/// undone, its coding unsaid; nginx answers 502).
fn unusable(
    response: &Response<Incoming>,
    to_head: bool,
    target: &Target,
) -> Option<UpstreamError> {
    let url = || target.upstream.url.clone();
    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
        return Some(UpstreamError::Switch(
            url(),
            "for a request that did not ask to".into(),
        ));
    }
    let coding = untransferable(response, to_head)?;
    Some(UpstreamError::Exchange(
        url(),
        format!("answered in a transfer coding other than chunked ({coding})"),
    ))
}

/// The transfer coding of a response that has a body (not one to HEAD, nor a 1xx, 204 or
/// 304), when it is anything but `chunked` alone.
fn untransferable(response: &Response<Incoming>, to_head: bool) -> Option<String> {
    let status = response.status();
    if to_head
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return None;
    }
    other_transfer_coding(response.headers())
}

/// One upstream's part: a pooled connection, the request sent on it, the response head.
/// A reused connection found closed is replaced by a new one when the request can go
/// again.
async fn exchange(
    route: &Route,
    target: &Target,
    outgoing: &mut Outgoing<'_>,
    limits: &Limits,
    steps: &Steps,
    detail: Option<&StepDetail>,
) -> Result<(pool::Answered, upstreams::InFlight), UpstreamError> {
    let url = || target.upstream.url.clone();
    let in_flight = upstreams::InFlight::enter(&target.state);
    // Set once the request went out on a reused connection that then failed: it goes
    // again once, on a new connection, never through the other idle ones (each of which
    // would take it again).
    let mut fresh = false;
    loop {
        steps.step_with("connect upstream", None, detail);
        let conn = target
            .pool
            .checkout(limits.upstream_connect_timeout, fresh)
            .await?;
        let reused = conn.reused;
        let on = WaitsOn::Connection(conn.connection());
        steps.step_with("response head", Some(on), detail);
        // Copied before the request takes the header fields: a replay goes with them.
        let copy = if reused { outgoing.replay_copy() } else { None };
        let request = outgoing.request(route, &target.upstream)?;
        let sent = target
            .pool
            .send(conn, request, limits.upstream_timeout)
            .await;
        let err = match sent {
            Err(pool::TimedOut { on_client: true }) => {
                return Err(UpstreamError::BodyStillComing(
                    url(),
                    limits.upstream_timeout,
                ));
            }
            Err(pool::TimedOut { on_client: false }) => {
                return Err(UpstreamError::Timeout(url(), limits.upstream_timeout));
            }
            Ok(Ok(answered)) => return Ok((answered, in_flight)),
            Ok(Err(SendError::BrokenBody(err))) => {
                return Err(UpstreamError::Exchange(
                    url(),
                    format!("its response's body broke off before any of it: {err}"),
                ));
            }
            Ok(Err(SendError::NotSent(request))) => {
                outgoing.give_back(*request);
                if reused {
                    continue;
                }
                return Err(UpstreamError::Exchange(
                    url(),
                    "connection closed before the request was sent".into(),
                ));
            }
            Ok(Err(SendError::CutByDrain(err))) => {
                return Err(UpstreamError::CutByDrain(err.to_string()));
            }
            Ok(Err(SendError::ClosedHere(err))) => {
                return Err(UpstreamError::ClosedHere(err.to_string()));
            }
            Ok(Err(SendError::Unframed)) => {
                return Err(UpstreamError::Exchange(url(), pool::UNFRAMED.into()));
            }
            Ok(Err(SendError::Failed(err))) => err,
        };
        if let Some(fault) = body_fault(&err) {
            return Err(fault.error(limits));
        }
        // A kept-alive connection the upstream closed or reset as the request crossed
        // it surfaces as an incomplete message or as a reset, depending on timing; an
        // idempotent request without a body may go again either way (RFC 9110 §9.2.2).
        // An answer that could not be read is an answer: the request is not sent again.
        match copy {
            Some(copy) if closed_under(&err) => {
                tracing::debug!(upstream = %target.upstream.url, %err, "a reused connection failed before its response head; sending again");
                outgoing.replay(copy);
                fresh = true;
            }
            _ => return Err(UpstreamError::Exchange(url(), err.to_string())),
        }
    }
}

/// Whether an exchange failed as one on a kept-alive connection the upstream had closed
/// does: the connection ended, or was reset, with no response head read.
fn closed_under(err: &hyper::Error) -> bool {
    use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset};
    err.is_incomplete_message()
        || std::error::Error::source(err)
            .and_then(|e| e.downcast_ref::<std::io::Error>())
            .is_some_and(|e| matches!(e.kind(), ConnectionReset | BrokenPipe | ConnectionAborted))
}

/// The answer of this gateway as the final recipient of an OPTIONS that may go no
/// further ([`last_hop`]): it has nothing to say about the target beyond that it is
/// reachable.
pub(crate) fn reachable() -> Response<Body> {
    let mut response = Response::new(crate::body::empty());
    response
        .headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    response
}

/// RFC 9110 §7.6.2: an intermediary that receives an OPTIONS (or TRACE, never served
/// here) with `Max-Forwards` MUST NOT forward it when the value is 0, but answer it as
/// the final recipient (true), and otherwise forwards it with the value one less. A
/// value that is not a number is left as it came.
pub(crate) fn last_hop(head: &mut Parts) -> bool {
    if head.method != Method::OPTIONS {
        return false;
    }
    let Some(left) = head
        .headers
        .get(header::MAX_FORWARDS)
        .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok())
    else {
        return false;
    };
    if left == 0 {
        return true;
    }
    head.headers
        .insert(header::MAX_FORWARDS, HeaderValue::from(left - 1));
    false
}

/// Sends `request` and waits for the response head, up to the upstream timeout.
async fn send(
    sender: &mut hyper::client::conn::http1::SendRequest<ReqBody>,
    request: Request<ReqBody>,
    upstream: &Upstream,
    limits: &Limits,
) -> Result<Response<Incoming>, UpstreamError> {
    tokio::time::timeout(limits.upstream_timeout, sender.send_request(request))
        .await
        .map_err(|_| UpstreamError::Timeout(upstream.url.clone(), limits.upstream_timeout))?
        .map_err(|e| match body_fault(&e) {
            Some(fault) => fault.error(limits),
            None => UpstreamError::Exchange(upstream.url.clone(), e.to_string()),
        })
}

/// The client's response from `target`'s: hop-by-hop fields out, a redirect to the
/// upstream's own address made the route's, the route's `Cache-Control` added; a body
/// that breaks off is counted against the upstream. It is in this service's HTTP version,
/// not the upstream's (RFC 9110 §6.2): hyper speaks HTTP/1.0 only to a client that does.
fn respond(
    route: &Route,
    target: &Target,
    (response, first): pool::Answered,
    in_flight: upstreams::InFlight,
    stall_limit: Duration,
) -> Response<Body> {
    let upstream = &target.upstream;
    let (mut parts, body) = response.into_parts();
    parts.version = http::Version::HTTP_11;
    strip_hop_by_hop_from_response(&mut parts.headers);
    one_content_length(&mut parts.headers);
    // `Refresh: 5; url=...` redirects as `Location` does (nginx's `proxy_redirect`
    // rewrites both): its URL is made the route's the same way.
    type Rewrite = fn(&Route, &Upstream, &str) -> Option<String>;
    let redirects: [(HeaderName, Rewrite); 2] = [
        (header::LOCATION, client_location),
        (header::REFRESH, client_refresh),
    ];
    for (name, rewrite) in redirects {
        if let Some(field) = parts.headers.get_mut(&name)
            && let Some(ours) = field
                .to_str()
                .ok()
                .and_then(|text| rewrite(route, upstream, text))
            && let Ok(value) = HeaderValue::from_str(&ours)
        {
            *field = value;
        }
    }
    if let Some(value) = &route.cache_control {
        parts
            .headers
            .entry(header::CACHE_CONTROL)
            .or_insert_with(|| value.clone());
    }
    for (name, value) in &route.response_headers {
        parts.headers.entry(name).or_insert_with(|| value.clone());
    }
    // RFC 9110 §8.6: a server MUST NOT send `Content-Length` with a 1xx or 204.
    if parts.status == StatusCode::NO_CONTENT || parts.status.is_informational() {
        parts.headers.remove(header::CONTENT_LENGTH);
    }
    let body = FromUpstream {
        inner: body,
        first,
        state: in_flight,
        stall_limit,
        stalled: None,
    };
    Response::from_parts(parts, Body::boxed(body))
}

pin_project_lite::pin_project! {
    /// An upstream's response body on its way to the client: its trailers lose the fields
    /// that do not travel in trailers (`strip_from_trailers`); a body that breaks off, or
    /// of which no piece comes for `upstream_timeout` (nginx's `proxy_read_timeout`), is
    /// counted against the upstream and cuts the response short.
    struct FromUpstream {
        #[pin]
        inner: Incoming,
        // The first frame, read with the head (`pool::Answer`), given before the rest.
        first: Option<hyper::body::Frame<bytes::Bytes>>,
        // Its upstream, with the request counted in flight until the body goes.
        state: upstreams::InFlight,
        stall_limit: Duration,
        // Set when a poll finds no piece, cleared when one comes.
        #[pin]
        stalled: Option<tokio::time::Sleep>,
    }
}

impl hyper::body::Body for FromUpstream {
    type Data = bytes::Bytes;
    type Error = crate::body::BoxError;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        use std::task::Poll;
        let mut this = self.project();
        let polled = match this.first.take() {
            Some(frame) => Poll::Ready(Some(Ok(frame))),
            None => this.inner.as_mut().poll_frame(cx),
        };
        let Poll::Ready(polled) = polled else {
            if this.stalled.is_none() {
                this.stalled
                    .set(Some(tokio::time::sleep(*this.stall_limit)));
            }
            if let Some(sleep) = this.stalled.as_pin_mut()
                && sleep.poll(cx).is_ready()
            {
                let limit = *this.stall_limit;
                let reason = format!("no piece of it came for {limit:?}");
                this.state.body_broke_off(&reason);
                return Poll::Ready(Some(Err(reason.into())));
            }
            return Poll::Pending;
        };
        if this.stalled.is_some() {
            this.stalled.set(None);
        }
        Poll::Ready(polled.map(|frame| match frame {
            Ok(frame) if frame.is_trailers() => {
                let mut trailers = frame.into_trailers().expect("trailers");
                strip_from_trailers(&mut trailers);
                Ok(hyper::body::Frame::trailers(trailers))
            }
            Ok(frame) => Ok(frame),
            Err(err) => {
                this.state.body_broke_off(&err);
                Err(err.into())
            }
        }))
    }

    fn is_end_stream(&self) -> bool {
        self.first.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        let mut hint = self.inner.size_hint();
        if let Some(data) = self.first.as_ref().and_then(hyper::body::Frame::data_ref) {
            let read = data.len() as u64;
            // Upper first: a hint's lower bound may never pass its upper.
            if let Some(upper) = hint.upper() {
                hint.set_upper(upper + read);
            }
            hint.set_lower(hint.lower() + read);
        }
        hint
    }
}

/// How the request body failed: the client's (all but `File`) or its file's.
enum BodyFault {
    TooLarge,
    Body(String),
    TimedOut(Duration),
    File(String),
    Gone(String),
    Reset(String),
}

impl BodyFault {
    fn error(self, limits: &Limits) -> UpstreamError {
        match self {
            Self::TooLarge => UpstreamError::BodyTooLarge(limits.max_body_bytes),
            Self::Body(reason) => UpstreamError::RequestBody(reason),
            Self::TimedOut(after) => UpstreamError::BodyTimeout(after),
            Self::File(reason) => UpstreamError::BodyFile(reason),
            Self::Gone(reason) => UpstreamError::ClientGone(reason),
            Self::Reset(reason) => UpstreamError::StreamReset(reason),
        }
    }
}

/// The request body's part in a failed exchange: a body that failed as it was sent
/// surfaces here as the cause of hyper's error. Such an exchange is neither the
/// upstream's failure nor sent again.
fn body_fault(err: &hyper::Error) -> Option<BodyFault> {
    fault_in(std::error::Error::source(err))
}

/// What went wrong with a request body read ahead (`Outgoing::read_ahead`): always the
/// client's fault.
fn body_error(err: &(dyn std::error::Error + 'static), limits: &Limits) -> UpstreamError {
    match fault_in(Some(err)) {
        Some(fault) => fault.error(limits),
        None => UpstreamError::RequestBody(err.to_string()),
    }
}

/// The request body failing, at `cause` or further down its chain of causes.
fn fault_in(mut cause: Option<&(dyn std::error::Error + 'static)>) -> Option<BodyFault> {
    while let Some(c) = cause {
        if c.is::<http_body_util::LengthLimitError>() {
            return Some(BodyFault::TooLarge);
        }
        if let Some(e) = c.downcast_ref::<body::ReadBack>() {
            return Some(BodyFault::File(e.to_string()));
        }
        match c.downcast_ref() {
            Some(ClientBodyError::Broken(e)) => {
                return Some(match stream_reset(e) {
                    Some((reason, true)) => BodyFault::Gone(reason),
                    Some((reason, false)) => BodyFault::Reset(reason),
                    None => BodyFault::Body(e.to_string()),
                });
            }
            Some(ClientBodyError::TimedOut(after) | ClientBodyError::TooSlow(after)) => {
                return Some(BodyFault::TimedOut(*after));
            }
            None => {}
        }
        cause = c.source();
    }
    None
}

/// If `err` is its HTTP/2 stream being reset, the reason, and whether the client reset it
/// (RST_STREAM, such as CANCEL: it went away) rather than this end (for breaking the
/// protocol: a body longer than its `content-length`, say). A body that broke off
/// otherwise (shorter than its `content-length`) is a bad body, not this. A stream whose
/// connection the client closed (an I/O error under h2, or its GOAWAY) went away with it;
/// an I/O error of weft's own side (rare: the socket is the client's) is taken so too.
fn stream_reset(err: &hyper::Error) -> Option<(String, bool)> {
    let mut cause = std::error::Error::source(err);
    while let Some(c) = cause {
        if let Some(h2) = c.downcast_ref::<h2::Error>() {
            if h2.is_io() || h2.is_go_away() && h2.is_remote() {
                return Some((h2.to_string(), true));
            }
            return h2.is_reset().then(|| (h2.to_string(), h2.is_remote()));
        }
        cause = c.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(prefix: &str, upstream: &str, uri: &str) -> String {
        let route = Route::new(prefix, upstream).unwrap();
        upstream_target(&route, &route.upstreams[0], &uri.parse().unwrap())
    }

    #[test]
    fn paths_are_forwarded_unchanged_without_a_base_path() {
        assert_eq!(
            target("/api/", "http://u:1", "/api/users?id=3"),
            "/api/users?id=3"
        );
    }

    #[test]
    fn without_a_base_path_the_request_s_target_goes_as_it_is() {
        let route = Route::new("/api/", "http://u:1").unwrap();
        let uri: Uri = "/api/users?id=3".parse().unwrap();
        let sent = upstream_uri(&route, &route.upstreams[0], &uri).unwrap();
        assert_eq!(sent, uri);
        let based = Route::new("/api/", "http://u:1/v1").unwrap();
        let sent = upstream_uri(&based, &based.upstreams[0], &uri).unwrap();
        assert_eq!(sent, "/v1/users?id=3");
    }

    #[test]
    fn a_base_path_replaces_the_prefix() {
        assert_eq!(target("/api/", "http://u:1/v1", "/api/users"), "/v1/users");
        assert_eq!(
            target("/api", "http://u:1/v1/", "/api/users?x"),
            "/v1/users?x"
        );
        assert_eq!(target("/api", "http://u:1/v1", "/api"), "/v1");
        assert_eq!(target("/api/", "http://u:1/v1", "/api/"), "/v1/");
    }

    #[test]
    fn a_redirect_to_the_upstream_itself_leads_the_client_through_the_route() {
        let location = |prefix: &str, upstream: &str, l: &str| {
            let route = Route::new(prefix, upstream).unwrap();
            client_location(&route, &route.upstreams[0], l)
        };
        // Paths forwarded unchanged come back unchanged, without the upstream's origin.
        let up = "http://127.0.0.1:9000";
        for (l, ours) in [
            (
                "http://127.0.0.1:9000/api/login?next=/",
                "/api/login?next=/",
            ),
            ("HTTP://127.0.0.1:9000", "/"),
            ("http://127.0.0.1:9000?x", "/?x"),
            // A path on the upstream that would be another host on the client's side.
            ("http://127.0.0.1:9000//evil.example/x", "/evil.example/x"),
            ("http://127.0.0.1:9000/\\evil.example/x", "/evil.example/x"),
            ("http://127.0.0.1:9000/\t/evil.example", "/evil.example"),
        ] {
            assert_eq!(location("/api/", up, l).as_deref(), Some(ours), "{l}");
        }
        assert_eq!(
            location("/", "http://u:1/base", "http://u:1/base//evil.example").as_deref(),
            Some("/evil.example")
        );
        // A base path stands for the prefix.
        let up = "http://app.internal/base";
        for (l, ours) in [
            ("http://app.internal/base/login", "/app/login"),
            ("http://app.internal:80/base", "/app"),
            ("http://app.internal/base/", "/app/"),
            ("http://app.internal/base?x=1", "/app?x=1"),
        ] {
            assert_eq!(location("/app/", up, l).as_deref(), Some(ours), "{l}");
        }
        // A Refresh's URL likewise, quoted or not.
        let route = Route::new("/app/", up).unwrap();
        for (refresh, ours) in [
            (
                "0; url=http://app.internal/base/next",
                Some("0; url=/app/next"),
            ),
            ("5;URL='http://app.internal/base'", Some("5; url='/app'")),
            (
                "1; url=\"http://app.internal/base/x\"",
                Some("1; url=\"/app/x\""),
            ),
            ("0; url=http://elsewhere.test/base/x", None),
            ("0; url='http://app.internal/base/x", None),
            ("30", None),
        ] {
            assert_eq!(
                client_refresh(&route, &route.upstreams[0], refresh).as_deref(),
                ours,
                "{refresh}"
            );
        }
        // Anywhere else is left as it is.
        for l in [
            "/relative",
            "http://elsewhere.test/base/x",
            "http://app.internal/basement",
            "http://app.internal/other",
            "https://app.internal/base/x",
            "http://app.internal:8080/base/x",
            "http://app.internal.evil/base/x",
        ] {
            assert_eq!(location("/app/", up, l), None, "{l}");
        }
        let v6 = "http://[::1]:8080";
        assert_eq!(
            location("/", v6, "http://[::1]:8080/x").as_deref(),
            Some("/x")
        );
    }

    #[tokio::test]
    async fn a_body_file_that_cannot_be_read_back_is_weft_s_failure_not_the_upstream_s() {
        // An upstream that takes the request and never answers: the exchange breaks on
        // the body, as hyper sends it.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let accepted = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut sink = Vec::new();
            let _ = tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut sink).await;
        });
        let stream = tokio::net::TcpStream::connect(url.trim_start_matches("http://"))
            .await
            .unwrap();
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .unwrap();
        let route = Route::new("/", &url).unwrap();
        let request = Request::post("/upload")
            .header(header::CONTENT_LENGTH, 1000)
            .body(ReqBody::unreadable(1000))
            .unwrap();
        let limits = Limits::default();
        // The connection is driven here: the body (an `Rc` inside) does not leave the
        // thread.
        let sent = send(&mut sender, request, &route.upstreams[0], &limits);
        let (sent, _) = tokio::join!(sent, connection);
        let err = sent.unwrap_err();
        assert!(matches!(err, UpstreamError::BodyFile(_)), "{err:?}");
        assert_eq!(err.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!err.is_upstream(), "not counted against the upstream");
        assert_eq!(err.failure(), None);
        assert_eq!(err.refusal(), None);
        assert!(!err.client_message().contains("upstream"));
        accepted.abort();
    }

    #[test]
    fn errors_map_to_gateway_statuses() {
        let t = Duration::from_secs(1);
        assert_eq!(
            UpstreamError::Refused("u".into()).status(),
            StatusCode::BAD_GATEWAY
        );
        assert_eq!(
            UpstreamError::ConnectTimeout("u".into(), t).status(),
            StatusCode::GATEWAY_TIMEOUT
        );
        assert_eq!(
            UpstreamError::Timeout("u".into(), t).status(),
            StatusCode::GATEWAY_TIMEOUT
        );
        assert_eq!(
            UpstreamError::BodyTooLarge(1).status(),
            StatusCode::PAYLOAD_TOO_LARGE
        );
        assert!(!UpstreamError::BodyTooLarge(1).is_upstream());
        let unasked = UpstreamError::Switch("u".into(), "unasked".into());
        assert_eq!(unasked.status(), StatusCode::BAD_GATEWAY);
        assert!(unasked.is_upstream());
        let bad = UpstreamError::RequestBody("bad chunk".into());
        assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
        assert_eq!(bad.refusal(), Some(Refusal::Body));
    }
}

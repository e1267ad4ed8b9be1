//! [`HttpService`]: one service's state, its listeners, and the life of a request.
//!
//! Each accepted connection is an [`InspectedStream`] served by hyper's HTTP/1.1 server
//! (keep-alive, header size, header count and header time limits). Each request is
//! checked against the message rules and its path put in normal form, once, before it
//! is routed; it is a traced Deferred (label `http request`, tied to its connection)
//! while it is being handled, so a slow handler or a stuck upstream shows in the
//! inspector with its age; when the response head is ready it is timed and recorded, and
//! when its body ends it is written to the access log with the bytes actually sent.
//!
//! When the connection is asked to close (at shutdown), the exchange in flight finishes
//! and the connection closes after it; an idle keep-alive connection closes at once.
//! After a 101 from the proxy the connection is a tunnel (`proxy::upgrade`), still this
//! task's, so it stays listed, and closable, until the tunnel ends.

use std::convert::Infallible;
use std::future::{Future, poll_fn};
use std::net::IpAddr;
use std::pin::{Pin, pin};
use std::rc::Rc;
use std::sync::Arc;
use std::task::Poll;
use std::time::Instant;

use http::header;
use http::{HeaderValue, Request, Response, StatusCode, Version};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use weft::defer::{StepDetail, Steps};
use weft::observe::{self, ConnectionInfo, ErrorKind, TransportKind};
use weft::{
    Address, CloseReason, InspectedStream, ListenError, ListenOptions, ListeningPort, Reactor,
    Transport,
};

use crate::access_log::{AccessLog, Entry, Logged, Pending};
use crate::body::Body;
use crate::config::{ConfigError, Route, WebConfig};
use crate::files;
use crate::metrics::{MethodLabel, Recorder, Refusal};
use crate::path::PathError;
use crate::protocol::{self, Version as Speaks};
use crate::proxy::{self, Marks, UpstreamsView};
use crate::response::error_page;
use crate::routes::{self as route_series, RouteEntry, RouteFigures, RouteMetrics};
use crate::rules::{self, Refused};
use crate::trace::Trace;

/// hyper's smallest read buffer; the header limit is enforced separately.
const MIN_BUF: usize = 8192;

/// The static files a [`WebConfig`] names, checked: its root canonicalized and listed
/// once, or its embedded files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticFiles(Option<files::Source>);

impl StaticFiles {
    /// Checks that `config`'s root is a readable directory, that there are not both
    /// a root and embedded files, and that the compression bounds leave some size.
    pub fn of(config: &WebConfig) -> Result<Self, ConfigError> {
        config.files.compression.check()?;
        let source = match (&config.root, &config.embedded) {
            (Some(_), Some(_)) => return Err(ConfigError::RootAndEmbedded),
            (Some(path), None) => {
                let err = |reason: String| ConfigError::Root {
                    path: path.clone(),
                    reason,
                };
                let canonical = path.canonicalize().map_err(|e| err(e.to_string()))?;
                std::fs::read_dir(&canonical).map_err(|e| err(e.to_string()))?;
                Some(files::Source::Dir(files::Root::new(canonical)))
            }
            (None, Some(embedded)) => Some(files::Source::Memory(embedded.clone())),
            (None, None) => None,
        };
        Ok(Self(source))
    }
}

/// An HTTP service: static files, proxy routes, limits, and where it reports.
#[derive(Clone)]
pub struct HttpService {
    state: Rc<State>,
}

impl std::fmt::Debug for HttpService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpService")
            .field("name", &self.state.name)
            .field("config", &self.state.config)
            .finish_non_exhaustive()
    }
}

struct State {
    name: Arc<str>,
    config: WebConfig,
    /// Where static files come from, if anywhere.
    files: Option<files::Source>,
    recorder: Rc<dyn Recorder>,
    access_log: AccessLog,
    /// `Strict-Transport-Security`, built once, for responses over TLS.
    hsts: Option<HeaderValue>,
    /// The routes' upstreams: pools and health.
    proxy: Rc<proxy::Proxy>,
    /// Each route's series, resolved once.
    routes: RouteSlots,
    /// What each route's named steps say (its prefix, its upstream), built once, in the
    /// order of `config.routes`.
    route_details: Rc<[RouteDetails]>,
}

/// Each route's series, in the order of the configuration's routes, and those of the
/// requests no route matched and of those refused before routing.
#[derive(Clone)]
struct RouteSlots {
    configured: Vec<Arc<RouteMetrics>>,
    files: Arc<RouteMetrics>,
    unrouted: Arc<RouteMetrics>,
}

impl RouteSlots {
    fn new(config: &WebConfig, recorder: &dyn Recorder) -> Self {
        Self {
            configured: config
                .routes
                .iter()
                .map(|r| recorder.route(&r.prefix))
                .collect(),
            files: recorder.route(route_series::FILES),
            unrouted: recorder.route(route_series::UNROUTED),
        }
    }

    /// The series of `route`, one of `config`'s routes, or of the files for none.
    fn of(&self, config: &WebConfig, route: Option<&Route>) -> &Arc<RouteMetrics> {
        route_index(config, route).map_or(&self.files, |i| &self.configured[i])
    }
}

/// The position of `route`, one of `config`'s routes, among them.
fn route_index(config: &WebConfig, route: Option<&Route>) -> Option<usize> {
    route.and_then(|route| config.routes.iter().position(|r| std::ptr::eq(r, route)))
}

/// The details a route's requests give their named steps.
struct RouteDetails {
    prefix: StepDetail,
    /// Each upstream's URL, in the route's order.
    upstreams: Vec<StepDetail>,
}

/// The detail of the `route` step of a request for a static file.
const FILES: StepDetail = StepDetail::from_static("files");

impl HttpService {
    /// A service named `name` (its connections, metrics and log lines carry it). Checks
    /// that the root is a readable directory, that there are not both a root and
    /// embedded files, and the routes' settings ([`WebConfig::check_proxy`]).
    pub fn new(
        name: &str,
        config: WebConfig,
        recorder: Rc<dyn Recorder>,
    ) -> Result<Self, ConfigError> {
        config.check_proxy()?;
        let files = StaticFiles::of(&config)?;
        Ok(Self::with_files(name, config, files, recorder))
    }

    /// A service named `name` serving the static files `files`, checked from `config`
    /// earlier ([`StaticFiles::of`], [`WebConfig::check_proxy`]): a program that checks
    /// its configuration before it starts anything has nothing left to fail on here.
    /// Active health checks, if any route has them, start here (on the reactor thread).
    pub fn with_files(
        name: &str,
        config: WebConfig,
        files: StaticFiles,
        recorder: Rc<dyn Recorder>,
    ) -> Self {
        let hsts = hsts_header(&config.hsts_max_age);
        let proxy = Rc::new(proxy::Proxy::start(name, &config, &recorder));
        let routes = RouteSlots::new(&config, &*recorder);
        let route_details = config
            .routes
            .iter()
            .map(|r| RouteDetails {
                prefix: StepDetail::new(&r.prefix),
                upstreams: r
                    .upstreams
                    .iter()
                    .map(|u| StepDetail::new(&u.url))
                    .collect(),
            })
            .collect();
        Self {
            state: Rc::new(State {
                route_details,
                name: name.into(),
                config,
                files: files.0,
                recorder,
                access_log: AccessLog::default(),
                hsts,
                proxy,
                routes,
            }),
        }
    }

    /// The state of every upstream of every route, readable from any thread (for a
    /// dashboard): health, pool connections, requests and recent errors. The handle
    /// stays valid for the service's life; take a
    /// [`snapshot`](UpstreamsView::snapshot) whenever it is needed.
    pub fn upstreams(&self) -> UpstreamsView {
        self.state.proxy.view().clone()
    }

    /// Writes the access log to `to` rather than as [`AccessLog::Line`]s. Call it before
    /// listening: connections accepted earlier keep the log they started with.
    #[must_use]
    pub fn with_access_log(self, to: AccessLog) -> Self {
        let state = &self.state;
        Self {
            state: Rc::new(State {
                name: state.name.clone(),
                config: state.config.clone(),
                files: state.files.clone(),
                recorder: state.recorder.clone(),
                access_log: to,
                hsts: state.hsts.clone(),
                proxy: state.proxy.clone(),
                routes: state.routes.clone(),
                route_details: state.route_details.clone(),
            }),
        }
    }

    /// Its routes with their series, for a view of the service on another thread.
    pub fn routes(&self) -> RouteFigures {
        let state = &self.state;
        let configured = state
            .config
            .routes
            .iter()
            .zip(&state.routes.configured)
            .map(|(route, metrics)| RouteEntry {
                route: route.prefix.clone(),
                upstream: route.upstreams.first().map(|u| u.url.clone()),
                metrics: metrics.clone(),
            });
        let others = [&state.routes.files, &state.routes.unrouted].map(|metrics| RouteEntry {
            route: metrics.route().to_owned(),
            upstream: None,
            metrics: metrics.clone(),
        });
        RouteFigures(configured.chain(others).collect())
    }

    /// Serves on a stream endpoint string (`tcp:8080:interface=127.0.0.1`, `unix:`, `ssl:`).
    pub fn listen(&self, reactor: &Reactor, endpoint: &str) -> Result<ListeningPort, ListenError> {
        self.listen_with(reactor, endpoint, &ListenOptions::default())
    }

    /// Like [`listen`](Self::listen), accepting connections under `options` (idle
    /// timeout, per-peer cap).
    pub fn listen_with(
        &self,
        reactor: &Reactor,
        endpoint: &str,
        options: &ListenOptions,
    ) -> Result<ListeningPort, ListenError> {
        let state = self.state.clone();
        // Offered by `ssl:` listeners in the TLS handshake; plain ones ignore it.
        let options = options.clone().alpn_protocols(&protocol::ALPN);
        reactor.listen_stream_with(&self.state.name, endpoint, &options, move |stream| {
            serve_connection(state.clone(), stream)
        })
    }
}

/// `max-age` in seconds (RFC 6797 §6.1), or nothing when HSTS is off.
fn hsts_header(max_age: &Option<std::time::Duration>) -> Option<HeaderValue> {
    max_age.and_then(|age| HeaderValue::try_from(format!("max-age={}", age.as_secs())).ok())
}

/// What the requests of one connection share.
struct Conn {
    info: Arc<ConnectionInfo>,
    /// Whether the client came over TLS: proxied requests say `https`, and HSTS is sent.
    secure: bool,
    /// The peer's address, as proxied requests pass it on (`X-Forwarded-For`).
    client: Option<IpAddr>,
    /// The same, formatted once for every access log line of the connection.
    client_text: Rc<str>,
    /// Bytes received when the last request's head and declared body were in; more
    /// than that at a header timeout means a client stalled mid-request.
    consumed: std::cell::Cell<u64>,
    /// The upstream end of a tunnel, once a 101 is answered: the connection is then the
    /// tunnel's when hyper has written it.
    tunnel: proxy::upgrade::Slot,
}

async fn serve_connection(state: Rc<State>, mut stream: InspectedStream) {
    let _ = stream.set_nodelay(true);
    // A close request must not end reads: hyper takes an early end-of-stream for the
    // client going away and drops the response in flight. It is told to finish instead.
    stream.keep_reading_when_closing();
    let transport = stream.transport().clone();
    let conn = Rc::new(Conn::new(stream.info().clone()));
    let started = Instant::now();
    let request_timeout = state.config.limits.request_timeout;
    let (version, prefix) = match detect_version(&mut stream, &transport, request_timeout).await {
        Ok(Some(detected)) => detected,
        Ok(None) => return,
        Err(_) => return transport.lose_connection_with(CloseReason::TimedOut),
    };
    let io = TokioIo::new(protocol::Prefixed::new(prefix, stream));
    let handler_state = state.clone();
    let handler_conn = conn.clone();
    let service =
        service_fn(move |request| handle(handler_state.clone(), handler_conn.clone(), request));
    let limits = &state.config.limits;
    // The handler is polled again whenever a close is requested (`listen_stream`). hyper
    // then finishes the exchanges in flight (HTTP/1.1 answers with `Connection: close`,
    // HTTP/2 sends GOAWAY) and closes; an idle connection closes at once.
    let served = match version {
        Speaks::H1 => {
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(limits.request_timeout)
                .max_header_size(limits.max_header_bytes)
                .max_buf_size(limits.max_header_bytes.max(MIN_BUF))
                .keep_alive(true);
            let mut connection = builder.serve_connection(io, service);
            let served = until_closed(&transport, Pin::new(&mut connection), |c| {
                c.graceful_shutdown();
            })
            .await;
            if served.is_ok()
                && let Some(upstream) = conn.tunnel.take()
            {
                // hyper has written the 101 and hands the connection back, with any bytes
                // of the new protocol it read behind the request.
                let parts = connection.into_parts();
                let client = parts.io.into_inner();
                return proxy::upgrade::tunnel(client, parts.read_buf, &transport, upstream).await;
            }
            served
        }
        Speaks::H2 => {
            let builder = protocol::h2_builder(limits.max_header_bytes);
            let connection = pin!(builder.serve_connection(io, service));
            until_closed(&transport, connection, |c| c.graceful_shutdown()).await
        }
    };
    if let Err(err) = served {
        connection_failed(&state, &conn, &transport, &err, started);
    }
}

impl Conn {
    fn new(info: Arc<ConnectionInfo>) -> Self {
        let client = match &info.peer {
            Address::Ip(addr) => Some(addr.ip()),
            _ => None,
        };
        Self {
            client_text: client.map_or_else(|| "-".into(), |ip| ip.to_string().into()),
            client,
            secure: info.transport == TransportKind::Tls,
            info,
            consumed: std::cell::Cell::new(0),
            tunnel: proxy::upgrade::Slot::default(),
        }
    }
}

/// Reads until the first bytes tell the version (`None`: a close was requested first).
/// Until then a close request ends the connection at once (it is idle), and a client
/// that says nothing is timed out like a slow head.
async fn detect_version(
    stream: &mut InspectedStream,
    transport: &Transport,
    request_timeout: std::time::Duration,
) -> Result<Option<(Speaks, Vec<u8>)>, tokio::time::error::Elapsed> {
    let mut detecting = pin!(tokio::time::timeout(
        request_timeout,
        protocol::detect(stream)
    ));
    poll_fn(|cx| {
        if transport.is_disconnecting() {
            return Poll::Ready(Ok(None));
        }
        detecting.as_mut().poll(cx)
    })
    .await
}

/// A connection hyper gave up on: answered-and-counted malformed heads, a GOAWAY for a
/// broken protocol, a slow head, or a client that went away.
fn connection_failed(
    state: &State,
    conn: &Conn,
    transport: &Transport,
    err: &hyper::Error,
    started: Instant,
) {
    let info = &conn.info;
    let request_timeout = state.config.limits.request_timeout;
    if err.is_parse_too_large() || err.is_parse() {
        // hyper has answered 431 (too many header bytes or lines) or 400 and closes;
        // count and log it like a request.
        let (status, reason) = if err.is_parse_too_large() {
            (
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                Refusal::HeadTooLarge,
            )
        } else {
            (StatusCode::BAD_REQUEST, Refusal::Malformed)
        };
        state.recorder.refused(reason);
        state
            .recorder
            .request(MethodLabel::Other, status.into(), started.elapsed());
        Entry {
            service: &state.name,
            client: &conn.client_text,
            request: b"-",
            status: status.as_u16(),
            bytes: 0,
            referer: None,
            user_agent: None,
            elapsed: started.elapsed(),
            cut: None,
        }
        .log(&state.access_log);
        let message = format!("malformed request: {err}");
        observe::report_error(info, ErrorKind::BadFrame, message.clone());
        transport.lose_connection_with(CloseReason::Protocol(message));
    } else if let Some(message) = protocol::goaway_sent(err) {
        // HTTP/2 has sent GOAWAY (too many resets, a malformed frame, a broken limit).
        state.recorder.refused(Refusal::Protocol);
        observe::report_error(info, ErrorKind::BadFrame, message.clone());
        transport.lose_connection_with(CloseReason::Protocol(message));
    } else if err.is_timeout() {
        if info.stats.bytes_in() > conn.consumed.get() {
            let message =
                format!("client sent no complete request head within {request_timeout:?}");
            observe::report_error(info, ErrorKind::BadFrame, message);
        }
        transport.lose_connection_with(CloseReason::TimedOut);
    } else {
        tracing::debug!(connection = %info.id, %err, "HTTP connection ended with an error");
    }
}

/// Drives `connection` to its end, asking it to shut down gracefully (once) when the
/// transport is asked to close.
async fn until_closed<C>(
    transport: &Transport,
    mut connection: Pin<&mut C>,
    shutdown: impl Fn(Pin<&mut C>),
) -> hyper::Result<()>
where
    C: Future<Output = hyper::Result<()>>,
{
    let mut draining = false;
    poll_fn(|cx| {
        if !draining && transport.is_disconnecting() {
            draining = true;
            shutdown(connection.as_mut());
        }
        connection.as_mut().poll(cx)
    })
    .await
}

async fn handle(
    state: Rc<State>,
    conn: Rc<Conn>,
    mut request: Request<Incoming>,
) -> Result<Response<Logged>, Infallible> {
    let started = Instant::now();
    let mut trace = Trace::start(&conn.info);
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        .unwrap_or(0);
    conn.consumed
        .set(conn.info.stats.bytes_in().saturating_add(declared));
    let method = request.method().clone();
    // What the log line says of the request, taken before it is routed; nothing when
    // the log is off.
    let logged = state.access_log.is_on().then(|| {
        // An HTTP/2 target always carries scheme and authority; the log shows the path,
        // as the request line of HTTP/1.1 would.
        let request_line = match request.uri().path_and_query() {
            Some(target) if request.version() >= Version::HTTP_2 => {
                format!("{method} {target} {:?}", request.version())
            }
            _ => format!("{} {} {:?}", method, request.uri(), request.version()),
        };
        let headers = request.headers();
        (
            request_line,
            headers.get(header::REFERER).cloned(),
            headers.get(header::USER_AGENT).cloned(),
        )
    });

    let (route, mut response) = match admit(&state.config, &mut request) {
        Ok(route) => {
            let series = state.routes.of(&state.config, route);
            let steps = trace.steps.clone();
            let dispatched = dispatch(&state, &conn, route, series, &steps, request);
            let response = match trace.unless_cancelled(dispatched).await {
                Some(response) => response,
                None => {
                    state.recorder.refused(Refusal::Cancelled);
                    tracing::info!(service = %state.name, connection = %conn.info.id, "a request was cancelled from the inspector");
                    error_page(StatusCode::SERVICE_UNAVAILABLE, "the request was cancelled")
                }
            };
            (series, response)
        }
        Err(refused) => {
            state.recorder.refused(refused.reason);
            (
                &state.routes.unrouted,
                error_page(refused.status, refused.detail),
            )
        }
    };
    trace.done();
    if conn.secure
        && let Some(hsts) = &state.hsts
    {
        response
            .headers_mut()
            .entry(header::STRICT_TRANSPORT_SECURITY)
            .or_insert_with(|| hsts.clone());
    }

    let status = response.status();
    let elapsed = started.elapsed();
    state
        .recorder
        .request(MethodLabel::from(&method), status.into(), elapsed);
    route.request(status.into(), elapsed);
    let head_only = method == http::Method::HEAD
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let pending = logged.map(|(request, referer, user_agent)| Pending {
        to: state.access_log.clone(),
        service: state.name.clone(),
        client: conn.client_text.clone(),
        request,
        status: status.as_u16(),
        referer,
        user_agent,
        started,
    });
    Ok(response.map(|body| Logged::new(body, pending, head_only)))
}

/// Applies the message rules and puts the path in normal form (in the request, so the
/// proxy and the files see only that form); returns the route it leads to.
fn admit<'c, B>(
    config: &'c WebConfig,
    request: &mut Request<B>,
) -> Result<Option<&'c Route>, Refused> {
    rules::check(request)?;
    let uri = request.uri();
    let bad_path = |e: PathError| Refused {
        status: StatusCode::BAD_REQUEST,
        reason: Refusal::Path,
        detail: e.message(),
    };
    let (path, route) = config.route_path(uri.path()).map_err(bad_path)?;
    if path != uri.path() || uri.authority().is_some() {
        let target = match uri.query() {
            Some(query) => format!("{path}?{query}"),
            None => path,
        };
        *request.uri_mut() = target.parse().map_err(|_| bad_path(PathError::Malformed))?;
    }
    Ok(route)
}

async fn dispatch(
    state: &State,
    conn: &Conn,
    route: Option<&Route>,
    series: &RouteMetrics,
    steps: &Steps,
    request: Request<Incoming>,
) -> Response<Body> {
    let config = &state.config;
    if let Some(route) = route {
        let Some(upstreams) = state.proxy.upstreams(config, route) else {
            return error_page(StatusCode::BAD_GATEWAY, "no upstream for this route");
        };
        let details = route_index(config, Some(route)).and_then(|i| state.route_details.get(i));
        steps.step_with("route", None, details.map(|d| &d.prefix));
        let marks = Marks {
            steps,
            upstream: details.and_then(|d| d.upstreams.first()),
            upstreams: details.map_or(&[], |d| &d.upstreams[..]),
        };
        let client = proxy::Client {
            addr: conn.client,
            secure: conn.secure,
            tunnel: &conn.tunnel,
        };
        let forwarded = proxy::forward(
            &state.name,
            route,
            upstreams,
            &config.limits,
            client,
            &state.recorder,
            request,
            &marks,
        );
        return match forwarded.await {
            Ok(response) => response,
            Err(err) => {
                if let Some(reason) = err.refusal() {
                    state.recorder.refused(reason);
                    tracing::debug!(service = %state.name, connection = %conn.info.id, %err, "refused a request body");
                } else {
                    state.recorder.upstream_error();
                    series.upstream_error(&err.to_string());
                    tracing::warn!(service = %state.name, connection = %conn.info.id, %err, "proxying failed");
                }
                // The client learns what kind of failure it was; the log has the rest.
                error_page(err.status(), err.client_message())
            }
        };
    }
    match &state.files {
        Some(source) => {
            steps.step_with("route", None, Some(&FILES));
            steps.step("read file");
            let (parts, _body) = request.into_parts();
            files::serve(
                source,
                &config.index,
                &config.files,
                &*state.recorder,
                &parts,
            )
            .await
        }
        None => error_page(StatusCode::NOT_FOUND, "no route for this path"),
    }
}

//! One accepted connection: which HTTP it speaks, hyper serving it under the service's
//! limits (and HTTP/2 heads under `request_timeout`, which hyper does not bound: `heads`),
//! a graceful end when it is asked to close, the tunnel after a 101, and what a
//! connection hyper gave up on is counted and logged as.

use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use http::StatusCode;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use weft::observe::{self, ConnectionInfo, ErrorKind, TransportKind};
use weft::{Address, CloseReason, InspectedStream, Transport};

use super::State;
use super::head_timer::HeadTimer;
use super::heads;
use super::request::handle;
use super::streams::{Sent, StreamTasks};
use crate::access_log::Entry;
use crate::headers::Forwarding;
use crate::metrics::{MethodLabel, Refusal};
use crate::protocol::{self, Version as Speaks};
use crate::proxy;
use crate::rules;

/// hyper's smallest read buffer; the header limit is enforced separately.
const MIN_BUF: usize = 8192;

/// What the requests of one connection share.
pub(super) struct Conn {
    pub(super) info: Arc<ConnectionInfo>,
    /// The peer's address (none over a unix socket).
    pub(super) peer: Option<std::net::IpAddr>,
    /// Whether the client came over TLS: proxied requests say `https`, and HSTS is sent.
    pub(super) secure: bool,
    /// What proxied requests tell upstreams of the peer (`X-Forwarded-For`,
    /// `Forwarded`), made once for the connection's requests.
    pub(super) forwarding: Forwarding,
    /// The peer's address, formatted once for every access log line of the connection.
    pub(super) client_text: Rc<str>,
    /// Bytes received when the last request's head and declared body were in; more
    /// than that at a header timeout means a client stalled mid-request.
    pub(super) consumed: std::cell::Cell<u64>,
    /// The upstream end of a tunnel, once a 101 is answered: the connection is then the
    /// tunnel's when hyper has written it.
    pub(super) tunnel: proxy::upgrade::Slot,
    /// The `Host` value its last request carried, found valid.
    pub(super) last_host: rules::LastHost,
    /// Its requests waiting on a file or an upstream: for the response head (while it is
    /// made) or, over HTTP/2, for the next piece of the body. An HTTP/2 connection
    /// closing with none is waiting only on its client.
    pub(super) answering: std::cell::Cell<u32>,
    /// Whether it speaks HTTP/2: its requests are counted against the peer's cap.
    pub(super) multiplexed: std::cell::Cell<bool>,
    /// Requests it has made, counted as hyper takes them up (for HTTP/2, while the
    /// connection is polled), against `limits.max_requests_per_connection`.
    pub(super) requests: std::cell::Cell<u32>,
    /// What it was accepted with, for every request it carries (a reload's settings serve
    /// its requests, but not these): its request cap (0: none), and the header size and
    /// time hyper and the h2 codec were built with.
    pub(super) max_requests: u32,
    pub(super) max_header_bytes: usize,
    pub(super) request_timeout: std::time::Duration,
    /// HTTP/1.1: the end of the client's side, held back while an answer is made.
    pub(super) end_hold: Rc<protocol::EndHold>,
    /// Over HTTP/1.1, whether the request being answered may leave a body unread: set
    /// when its future is first polled, if it has a body; cleared when an upstream
    /// answers it. Its answer then closes the connection and says so.
    pub(super) body_unread: std::cell::Cell<bool>,
}

/// Streams an HTTP/2 client may go on opening after it was told GOAWAY for its request
/// cap: those already on their way when the GOAWAY left. Past them it is ignoring the
/// GOAWAY, and the connection is closed.
const STREAMS_AFTER_GOAWAY: u32 = 2 * protocol::H2_MAX_CONCURRENT_STREAMS;

pub(super) async fn serve_connection(state: Rc<State>, mut stream: InspectedStream) {
    let _ = stream.set_nodelay(true);
    // A close request must not end reads: hyper takes an early end-of-stream for the
    // client going away and drops the response in flight. It is told to finish instead.
    stream.keep_reading_when_closing();
    let transport = stream.transport().clone();
    let conn = Rc::new(Conn::new(stream.info().clone(), &state));
    let started = Instant::now();
    let (version, prefix) =
        match detect_version(&mut stream, &transport, conn.request_timeout).await {
            Ok(Some(detected)) => detected,
            Ok(None) => return,
            Err(_) => return transport.lose_connection_with(CloseReason::TimedOut),
        };
    let io = protocol::Prefixed::new(prefix, stream);
    let handler_state = state.clone();
    let handler_conn = conn.clone();
    // Each request is served by the generation in force when it comes (a reload's), the
    // connection by the limits it was accepted with.
    let service = service_fn(move |request| {
        handle(State::newest(&handler_state), handler_conn.clone(), request)
    });
    // The handler is polled again whenever a close is requested (`listen_stream`). hyper
    // then finishes the exchanges in flight (HTTP/1.1 answers with `Connection: close`,
    // HTTP/2 sends GOAWAY) and closes; an idle connection closes at once.
    let ended = match version {
        Speaks::H1 => {
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(HeadTimer::default())
                .header_read_timeout(conn.request_timeout)
                .max_header_size(conn.max_header_bytes)
                .max_buf_size(conn.max_header_bytes.max(MIN_BUF))
                .keep_alive(true);
            let io = io.holding_end(conn.end_hold.clone());
            let mut connection = builder.serve_connection(TokioIo::new(io), service);
            // Its request cap is kept by `handle`: the last response says
            // `Connection: close`.
            let ended = until_closed(
                &transport,
                Pin::new(&mut connection),
                |c| c.graceful_shutdown(),
                |_| None,
                None,
            )
            .await;
            if matches!(ended, Ended::Served(Ok(())))
                && let Some(upstream) = conn.tunnel.take()
            {
                // hyper has written the 101 and hands the connection back, with any bytes
                // of the new protocol it read behind the request.
                let parts = connection.into_parts();
                let client = parts.io.into_inner();
                return proxy::upgrade::tunnel(client, parts.read_buf, &transport, upstream).await;
            }
            ended
        }
        Speaks::H2 => {
            conn.multiplexed.set(true);
            let tasks = StreamTasks::new(state.clone(), conn.clone(), transport.clone());
            let (scan, mut deadline) = heads::watch(
                conn.request_timeout,
                tokio::time::Instant::from_std(started),
                transport.clone(),
            );
            let io = io.watching_frames(scan, Sent::new(&tasks));
            let builder = protocol::h2_builder(conn.max_header_bytes, tasks);
            let connection = pin!(builder.serve_connection(TokioIo::new(io), service));
            let streams = Streams {
                answering: &conn.answering,
                taken: &conn.requests,
                cap: conn.max_requests,
            };
            until_closed(
                &transport,
                connection,
                |c| c.graceful_shutdown(),
                |cx| deadline.poll_late(cx),
                Some(streams),
            )
            .await
        }
    };
    // Its last log lines go where the generation in force writes them, as its requests'.
    let logs = State::newest(&state);
    match ended {
        Ended::Served(Ok(())) => {}
        Ended::Served(Err(err)) => connection_failed(&logs, &conn, &transport, &err, started),
        Ended::HeadTimedOut(late) => head_timed_out(&logs, &conn, &transport, late, started),
        Ended::ClientStalled(after) => {
            let message = format!(
                "the HTTP/2 client moved no request or response along for {after:?} after \
                 it was told to go away (GOAWAY); closing gave up"
            );
            tracing::info!(connection = %conn.info.id, service = %state.name, "{message}");
            transport.abort_connection_with(CloseReason::SendTimeout);
        }
        Ended::GoawayIgnored(taken) => {
            let cap = conn.max_requests;
            logs.recorder.refused(Refusal::Protocol);
            let message = format!(
                "the HTTP/2 client went on opening streams after it was told to go away \
                 (GOAWAY) at its cap of {cap} requests: {taken} taken"
            );
            observe::report_error(&conn.info, ErrorKind::BadFrame, message.clone());
            transport.abort_connection_with(CloseReason::Protocol(message));
        }
    }
}

/// How [`until_closed`] ended.
enum Ended {
    /// hyper finished the connection (or gave up on it).
    Served(hyper::Result<()>),
    /// An HTTP/2 preface or request head (this) was not complete within
    /// `request_timeout`: the connection has been told GOAWAY and is to be closed.
    HeadTimedOut(heads::Late),
    /// An HTTP/2 connection asked to close (GOAWAY sent) made no progress
    /// (`server::streams`) for the reactor's close timeout with no request waiting on a
    /// file or an upstream: what is left waits on the client alone (its preface, a PING's
    /// answer, windows it never opens), which will not come.
    ClientStalled(std::time::Duration),
    /// An HTTP/2 client told GOAWAY at its request cap opened more streams than could
    /// have been on their way (this many taken in all).
    GoawayIgnored(u32),
}

/// What [`until_closed`] follows of an HTTP/2 connection's streams.
struct Streams<'a> {
    /// Requests waiting on a file or an upstream (`Conn::answering`).
    answering: &'a std::cell::Cell<u32>,
    /// Requests taken up so far (`Conn::requests`).
    taken: &'a std::cell::Cell<u32>,
    /// `limits.max_requests_per_connection` (0: none).
    cap: u32,
}

impl Streams<'_> {
    /// Whether the connection has taken its last request.
    fn spent(&self) -> bool {
        self.cap != 0 && self.taken.get() >= self.cap
    }

    /// Whether it has taken more than a client heeding GOAWAY could have sent.
    fn goaway_ignored(&self) -> bool {
        self.cap != 0 && self.taken.get() > self.cap.saturating_add(STREAMS_AFTER_GOAWAY)
    }
}

/// An HTTP/2 client that left its preface or a request head unfinished past
/// `request_timeout`: closed and counted like an HTTP/1.1 client that sends its head too
/// slowly. One that sent nothing at all (over TLS, HTTP/2 chosen by ALPN) is closed
/// uncounted, as a silent HTTP/1.1 client is.
fn head_timed_out(
    state: &State,
    conn: &Conn,
    transport: &Transport,
    late: heads::Late,
    started: Instant,
) {
    if late == heads::Late::Silent {
        transport.lose_connection_with(CloseReason::TimedOut);
        return;
    }
    let what = late.what();
    let timeout = conn.request_timeout;
    state.recorder.refused(Refusal::HeadTimeout);
    log_headless(state, conn, StatusCode::REQUEST_TIMEOUT, started);
    let message = format!("client sent no complete {what} within {timeout:?}");
    observe::report_error(&conn.info, ErrorKind::BadFrame, message);
    transport.lose_connection_with(CloseReason::TimedOut);
}

impl Conn {
    fn new(info: Arc<ConnectionInfo>, state: &State) -> Self {
        let client = match &info.peer {
            Address::Ip(addr) => Some(addr.ip()),
            _ => None,
        };
        let secure = info.transport == TransportKind::Tls;
        Self {
            client_text: client.map_or_else(|| "-".into(), |ip| ip.to_string().into()),
            forwarding: Forwarding::new(client, secure),
            peer: client,
            secure,
            info,
            consumed: std::cell::Cell::new(0),
            last_host: rules::LastHost::default(),
            tunnel: proxy::upgrade::Slot::default(),
            answering: std::cell::Cell::new(0),
            multiplexed: std::cell::Cell::new(false),
            requests: std::cell::Cell::new(0),
            body_unread: std::cell::Cell::new(false),
            max_requests: state.config.limits.max_requests_per_connection,
            max_header_bytes: state.config.limits.max_header_bytes,
            request_timeout: state.config.limits.request_timeout,
            end_hold: Rc::default(),
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
    let request_timeout = conn.request_timeout;
    if err.is_parse_too_large() || err.is_parse() {
        // hyper has answered 431 (too many header bytes or lines), 414 (a target too
        // long) or 400 and closes; count and log it like a request. hyper tells the two
        // kinds of too large apart only in its message.
        let (status, reason) = if err.is_parse_too_large() {
            if err.to_string().contains("URI too long") {
                (StatusCode::URI_TOO_LONG, Refusal::UriTooLong)
            } else {
                (
                    StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                    Refusal::HeadTooLarge,
                )
            }
        } else {
            (StatusCode::BAD_REQUEST, Refusal::Malformed)
        };
        state.recorder.refused(reason);
        log_headless(state, conn, status, started);
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
            state.recorder.refused(Refusal::HeadTimeout);
            // Logged and counted as nginx does a `client_header_timeout`; nothing is
            // sent (the client is not reading a response it has not finished asking).
            log_headless(state, conn, StatusCode::REQUEST_TIMEOUT, started);
            let message =
                format!("client sent no complete request head within {request_timeout:?}");
            observe::report_error(info, ErrorKind::BadFrame, message);
        }
        transport.lose_connection_with(CloseReason::TimedOut);
    } else {
        tracing::debug!(connection = %info.id, %err, "HTTP connection ended with an error");
    }
}

/// Counts and logs, like a request, one that ended before its head was whole (no
/// method, no target).
fn log_headless(state: &State, conn: &Conn, status: StatusCode, started: Instant) {
    state
        .recorder
        .request(MethodLabel::Other, status.into(), started.elapsed(), None);
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
}

/// Drives `connection` to its end, asking it to shut down gracefully (once) when the
/// transport is asked to close. When `head_late` names a preface or request head that
/// took too long, the connection is asked to shut down (HTTP/2 sends GOAWAY), polled once
/// more to send it, and left. With `streams` (HTTP/2), the connection is asked to shut down too once it
/// has taken its last request, and closed if the client goes on opening streams; and a
/// connection asked to close that has no request waiting on a file or an upstream and
/// makes no progress for the reactor's close timeout is given up: hyper would wait on the
/// client for ever.
async fn until_closed<C>(
    transport: &Transport,
    mut connection: Pin<&mut C>,
    shutdown: impl Fn(Pin<&mut C>),
    mut head_late: impl FnMut(&mut Context<'_>) -> Option<heads::Late>,
    streams: Option<Streams<'_>>,
) -> Ended
where
    C: Future<Output = hyper::Result<()>>,
{
    // Told to shut down (GOAWAY sent, for HTTP/2), and why: the transport asked to
    // close (shutdown, an idle timeout, the dashboard), or the last request taken.
    let (mut draining, mut closing) = (false, false);
    let grace = weft::Reactor::try_current()
        .map_or(weft::ReactorConfig::DEFAULT_CLOSE_TIMEOUT, |r| {
            r.config().close_timeout
        });
    let mut check = pin!(tokio::time::sleep(grace));
    let spent = || streams.as_ref().is_some_and(Streams::spent);
    poll_fn(|cx| {
        loop {
            if !closing && transport.is_disconnecting() {
                closing = true;
                check.as_mut().reset(tokio::time::Instant::now() + grace);
            }
            if !draining && (closing || spent()) {
                draining = true;
                shutdown(connection.as_mut());
            }
            if let Poll::Ready(served) = connection.as_mut().poll(cx) {
                return Poll::Ready(Ended::Served(served));
            }
            // A poll that took the last request is followed by one that sends GOAWAY.
            if draining || !spent() {
                break;
            }
        }
        if let Some(streams) = &streams
            && streams.goaway_ignored()
        {
            return Poll::Ready(Ended::GoawayIgnored(streams.taken.get()));
        }
        if let Some(late) = head_late(cx) {
            shutdown(connection.as_mut());
            if let Poll::Ready(served) = connection.as_mut().poll(cx) {
                return Poll::Ready(Ended::Served(served));
            }
            return Poll::Ready(Ended::HeadTimedOut(late));
        }
        // Only once asked to close: after GOAWAY for its request cap, a stream that is
        // quiet for a while (a long poll, server-sent events) is left to finish.
        if closing
            && let Some(streams) = &streams
            && check.as_mut().poll(cx).is_ready()
        {
            let idle = transport.idle();
            if streams.answering.get() == 0 && idle >= grace {
                return Poll::Ready(Ended::ClientStalled(idle));
            }
            // Look again once the connection has been still for the whole grace.
            let wait = grace.saturating_sub(idle).max(grace / 10);
            check.as_mut().reset(tokio::time::Instant::now() + wait);
            let _ = check.as_mut().poll(cx);
        }
        Poll::Pending
    })
    .await
}

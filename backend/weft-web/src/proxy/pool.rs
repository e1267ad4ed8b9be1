//! Keep-alive connections to one upstream, reused across requests.
//!
//! Each connection is opened by the reactor (`connect_stream`), so it is registered,
//! counted and listed under the service like any other, and a task drives hyper's
//! HTTP/1.1 client on it for its whole life: it writes each request and reads each
//! response. The request's own task only waits. Writing a request the moment its task
//! made it would be one task hop sooner, but requests then reach the upstream one at a
//! time, a request's worth of work apart, and a local upstream has gone back to sleep
//! before each: one wake-up of it (an interrupt to its core) for every request, where
//! a turn of the reactor that writes what its tasks made wakes it once for them all.
//! Measured against the inline way on a 2-core machine, the upstream and the load on
//! the other core, 12,800 requests a second: 0.9 wake-up interrupts to that core a
//! request against 0.1, and 12-14% more of the server's CPU a request (17-22% more
//! when the server's core is saturated).
//! A connection goes back to the pool when its response body has been read to the end
//! and hyper says it can take another request (the driving task sees it: an exchange
//! spawns no task of its own); a connection the upstream closed, that failed, that was
//! asked to close (by the dashboard or at shutdown) or that was left unused for
//! `idle_timeout` leaves the pool and closes.
//! The most recently used idle connection is reused first: it is the least likely to
//! have been closed by the upstream meanwhile.

use std::cell::{Cell, RefCell};
use std::future::{Future, poll_fn};
use std::path::Path;
use std::pin::{Pin, pin};
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use http::{Request, Response, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::client::conn::TrySendError;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::time::{Instant, Sleep};
use weft::observe::ConnectionId;
use weft::{ConnectError, InspectedStream, Reactor, Transport};

use super::body::ReqBody;
use super::upstreams::UpstreamState;
use super::{Abandon, UpstreamError};
use crate::config::{PoolConfig, Upstream};
use crate::headers::content_length;
use crate::metrics::ConnectionsUsed;

/// The most of a health check's response body read (so its connection can be reused);
/// a longer body closes the connection instead.
const CHECK_BODY_BYTES: usize = 64 * 1024;

/// The most hyper reads from an upstream at once, and so the largest response head it
/// takes (its default is about 400 KB): a response body goes to its client in pieces no
/// larger, so a client that stops reading holds one piece waiting to be written and one
/// read buffer, about 200 KiB in all where it held 600 KiB. nginx's `proxy_buffers` hold
/// 32 to 64 KiB.
pub(crate) const UPSTREAM_READ_BUF: usize = 64 * 1024;

/// The pool of one upstream of one route.
pub(crate) struct Pool(Rc<Inner>);

struct Inner {
    service: Arc<str>,
    /// The upstream's URL, naming it in errors and metric labels.
    url: String,
    /// `Host` of health checks.
    authority: String,
    /// The client endpoint, but for its timeout: `tcp:HOST:PORT` or `ssl:...`.
    endpoint: String,
    config: PoolConfig,
    idle: RefCell<Vec<Idle>>,
    state: Arc<UpstreamState>,
    /// Connections used for requests and health checks, new or reused.
    used: ConnectionsUsed,
}

/// hyper's side of one upstream connection: what reads and writes it.
type Connection = http1::Connection<TokioIo<InspectedStream>, ReqBody>;

/// What the pool, a connection's driving task and the exchange on it share.
struct Link {
    transport: Transport,
    /// The upstream's state, whose `busy` the connection leaves as its sender comes back
    /// (with or without its pool: a reload's new generation may share the state).
    state: Arc<UpstreamState>,
    /// In the pool, waiting for a request: only then do idle timeouts and close requests
    /// end the connection (a request in flight finishes first).
    idle: Cell<bool>,
    idle_since: Cell<Instant>,
    /// The driving task, woken when the connection goes idle to arm its timer, and when
    /// a request's sender is handed back to it.
    waker: RefCell<Option<Waker>>,
    /// The connection's sender, handed back as its request was sent (or unused): the
    /// driving task puts it back in the pool once hyper can take another request on the
    /// connection (the response body read to its end), or drops it if the connection
    /// cannot.
    returning: RefCell<Option<SendRequest<ReqBody>>>,
    /// When the response head of the exchange on it is due, and the sleep that waits for
    /// it: one for the connection's life, moved only when it goes off before the deadline
    /// of the moment (`crate::deadline`), rather than a timer registered and cancelled, or
    /// moved, a request.
    answer_due: Cell<Instant>,
    answer_by: RefCell<Pin<Box<Sleep>>>,
    /// Sending the exchange's streamed body waits on its client: the last poll of what is
    /// still to come from it found nothing there yet.
    on_client: Cell<bool>,
    /// The upstream's connection counters, which count it each time it is reused.
    used: ConnectionsUsed,
}

/// The upstream connection a streamed request body goes out on, as the body sees it: to
/// reset if the rest of the body fails to come, to say whether sending it waits on the
/// client, and to put off the answer's deadline when its end comes from the client.
pub(crate) struct Outstanding {
    link: Rc<Link>,
    timeout: Duration,
}

impl Outstanding {
    /// The client's part of the body failed: the upstream must not take what it got for
    /// the whole body (hyper would end the connection in order).
    pub(crate) fn abort(&self) {
        self.link.transport.abort_connection();
    }

    /// Whether the last poll of what is still to come from the client found nothing:
    /// an answer late then was waited for on the client, not the upstream.
    pub(crate) fn waiting_on_client(&self, waiting: bool) {
        self.link.on_client.set(waiting);
    }

    /// The body's end came from the client: the upstream has `upstream_timeout` from
    /// here to answer (nginx's `proxy_read_timeout` runs from the request's end), so a
    /// client that finished its body late makes the upstream look no slower. Until then
    /// the deadline runs from the exchange's start: a client sending slowly holds the
    /// upstream connection no longer than that (and is answered 408 if the upstream
    /// waited on it).
    pub(crate) fn client_done(&self) {
        let due = Instant::now() + self.timeout;
        if due > self.link.answer_due.get() {
            self.link.answer_due.set(due);
        }
    }
}

impl Link {
    /// Wakes the driving task.
    fn wake(&self) {
        if let Some(waker) = self.waker.borrow().as_ref() {
            waker.wake_by_ref();
        }
    }

    /// Gives the connection's sender back to the driving task, which puts it in the pool
    /// once hyper can take another request on the connection, or lets it go (and counts
    /// the connection busy no more) when it cannot.
    ///
    /// The task is still there to take it: a sender is handed back in the same poll that
    /// checked its connection out (`Pool::send` does in the call, before anything waits,
    /// and a `Pooled` can only be dropped unsent there too), and a connection leaves the
    /// idle list before its task ends, so none is checked out after.
    fn hand_back(&self, sender: SendRequest<ReqBody>) {
        *self.returning.borrow_mut() = Some(sender);
        self.wake();
    }
}

struct Idle {
    sender: SendRequest<ReqBody>,
    link: Rc<Link>,
}

/// A connection taken from the pool (or just opened) for one request. However the
/// request ends (answered, failed, or dropped with its client), the connection's sender
/// goes back to its driving task, so it is counted busy exactly until it is idle again
/// or closed.
pub(crate) struct Pooled {
    /// Taken when the request is sent: handed back at once (see `Pool::send`).
    sender: Option<SendRequest<ReqBody>>,
    link: Rc<Link>,
    /// Whether it served a request before.
    pub(crate) reused: bool,
}

impl Pooled {
    /// The connection's id, as the inspector lists it.
    pub(crate) fn connection(&self) -> ConnectionId {
        self.link.transport.id()
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        // Let go before a request was sent on it (the request could not be made).
        if let Some(sender) = self.sender.take() {
            self.link.hand_back(sender);
        }
    }
}

/// No response head came within the time given; `on_client` when sending the request's
/// body was waiting on its client then (the upstream may have been waiting on it too).
#[derive(Debug)]
pub(crate) struct TimedOut {
    pub(crate) on_client: bool,
}

/// How sending on a connection failed.
pub(crate) enum SendError {
    /// The connection was closed before the request went out: it is handed back, to be
    /// sent on another connection.
    NotSent(Box<Request<ReqBody>>),
    /// The exchange failed after the request (or part of it) went out.
    Failed(hyper::Error),
    /// The connection was aborted at a drain's deadline (the gateway stopping, or the
    /// service removed by a reload): not the upstream's failure.
    CutByDrain(hyper::Error),
    /// The connection was closed from the dashboard while the exchange was under way:
    /// not the upstream's failure either.
    ClosedHere(hyper::Error),
    /// The response's body broke off before any of it, in what came with its head (a
    /// chunk or trailer line malformed): nothing of it can be sent to the client.
    BrokenBody(hyper::Error),
    /// The response's `Content-Length` is not a length, on an answer hyper reads no body
    /// of (to HEAD, a 204 or a 304), so took as it came: its framing cannot be trusted
    /// (RFC 9112 §6.3), and the connection is aborted.
    Unframed,
}

/// What a client's error and the log say of an answer [`SendError::Unframed`].
pub(crate) const UNFRAMED: &str = "answered with a Content-Length that is not a length";

/// A response head, with the first frame of its body when that came with it.
pub(crate) type Answered = (Response<Incoming>, Option<hyper::body::Frame<bytes::Bytes>>);

impl Pool {
    pub(crate) fn new(
        service: Arc<str>,
        upstream: &Upstream,
        ca: Option<&Path>,
        config: &PoolConfig,
        state: Arc<UpstreamState>,
        used: ConnectionsUsed,
    ) -> Self {
        let host = escape(&upstream.host);
        let endpoint = match (upstream.tls, ca) {
            (false, _) => format!("tcp:{host}:{}", upstream.port),
            (true, None) => format!("ssl:{host}:{}", upstream.port),
            (true, Some(ca)) => format!(
                "ssl:{host}:{}:caCerts={}",
                upstream.port,
                escape(&ca.display().to_string())
            ),
        };
        Self(Rc::new(Inner {
            service,
            url: upstream.url.clone(),
            authority: upstream.authority(),
            endpoint,
            config: config.clone(),
            idle: RefCell::default(),
            state,
            used,
        }))
    }

    /// A connection for one exchange: the most recently used idle one that can take a
    /// request, or a new one (only a new one when `fresh`).
    pub(crate) async fn checkout(
        &self,
        connect_timeout: Duration,
        fresh: bool,
    ) -> Result<Pooled, UpstreamError> {
        let idle = if fresh { None } else { self.0.take_idle() };
        let pooled = match idle {
            Some(pooled) => pooled,
            // Boxed: a connection being opened (TCP, TLS, the handshake) takes kilobytes
            // of state that a request on a pooled one would otherwise carry, and copy
            // each time its future moves.
            None => Box::pin(self.connect(connect_timeout)).await?,
        };
        // A pooled connection is counted once it answers (`Answer`): one the upstream had
        // closed meanwhile answers nothing, and the request is tried on a new one.
        if !pooled.reused {
            self.0.used.count(false);
        }
        self.0.state.busy.fetch_add(1, Relaxed);
        Ok(pooled)
    }

    /// A new connection to the upstream, not pooled, for an upgrade, which makes it a
    /// tunnel: counted among the connections used (`reused="false"`), as a pooled one is.
    pub(crate) async fn open_own(
        &self,
        timeout: Duration,
    ) -> Result<InspectedStream, UpstreamError> {
        let stream = self.open(timeout).await?;
        self.0.used.count(false);
        Ok(stream)
    }

    /// A new connection to the upstream (TLS for `https://`), not pooled: the pool's own
    /// connections start here, and so does an upgrade's.
    async fn open(&self, timeout: Duration) -> Result<InspectedStream, UpstreamError> {
        let inner = &self.0;
        let endpoint = format!("{}:timeout={}", inner.endpoint, timeout.as_secs_f64());
        let url = || inner.url.clone();
        let mut stream = Reactor::current()
            .connect_stream(&inner.service, &endpoint)
            .await
            .map_err(|e| match e {
                ConnectError::Refused { .. } => UpstreamError::Refused(url()),
                ConnectError::TimedOut { after, .. } => UpstreamError::ConnectTimeout(url(), after),
                ConnectError::Tls { reason, .. } => UpstreamError::Tls(url(), reason),
                ConnectError::TlsTimedOut { after, .. } => UpstreamError::TlsTimeout(url(), after),
                other => UpstreamError::Connect(url(), other.to_string()),
            })?;
        let _ = stream.set_nodelay(true);
        // At shutdown the exchange in flight finishes; the connection ends with it (a
        // pooled one by its driving task, as it does at once for an idle one).
        stream.keep_reading_when_closing();
        Ok(stream)
    }

    /// Opens a connection and starts the task that drives it.
    async fn connect(&self, timeout: Duration) -> Result<Pooled, UpstreamError> {
        let inner = &self.0;
        let url = || inner.url.clone();
        let stream = self.open(timeout).await?;
        let transport = stream.transport().clone();
        let (sender, connection) = http1::Builder::new()
            .max_buf_size(UPSTREAM_READ_BUF)
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|e| UpstreamError::Exchange(url(), e.to_string()))?;
        let link = Rc::new(Link {
            transport,
            state: inner.state.clone(),
            idle: Cell::new(false),
            idle_since: Cell::new(Instant::now()),
            waker: RefCell::default(),
            returning: RefCell::default(),
            answer_due: Cell::new(Instant::now()),
            answer_by: RefCell::new(Box::pin(tokio::time::sleep(Duration::ZERO))),
            on_client: Cell::new(false),
            used: inner.used.clone(),
        });
        // The upstream connection's task, listed under it: it serves whichever requests
        // the pool gives it, long after the client whose request opened it has gone. It
        // waits on its upstream, or on a client reading the answer it relays (whose
        // request's chain is watched on its own): never a stall of its own.
        let task = drive(
            link.clone(),
            connection,
            Rc::downgrade(&self.0),
            inner.config.idle_timeout,
        );
        weft::observe::with_connection(Some(link.transport.info().id), || {
            Reactor::current().spawn(weft::tasks::awaiting_outside_events(task));
        });
        Ok(Pooled {
            sender: Some(sender),
            link,
            reused: false,
        })
    }

    /// Sends `request` on `conn` now (hyper's request channel takes it); the future waits
    /// at most `timeout` for the response head. The connection goes back to the pool when
    /// the response body has been read.
    ///
    /// Not an `async fn`: the request goes to hyper in the call, so the future that waits
    /// does not carry it (a quarter of a kilobyte, copied once more a request).
    pub(crate) fn send(
        &self,
        mut conn: Pooled,
        request: Request<ReqBody>,
        timeout: Duration,
    ) -> Answer<
        impl Future<Output = Result<Response<Incoming>, TrySendError<Request<ReqBody>>>> + use<>,
    > {
        self.0.state.requests.fetch_add(1, Relaxed);
        // A cancel (or the client going away) before the response head leaves the
        // connection mid-request: it is aborted, never reused.
        let abandon = Abandon(Some(conn.link.transport.clone()));
        conn.link.answer_due.set(Instant::now() + timeout);
        conn.link.on_client.set(false);
        let mut request = request;
        request.body_mut().goes_out_on(Outstanding {
            link: conn.link.clone(),
            timeout,
        });
        let mut sender = conn.sender.take().expect("a connection is sent on once");
        let exchange = sender.try_send_request(request);
        // The sender goes back to the connection's own task at once, before the answer:
        // that task (which hyper's request channel has just woken to write the request)
        // is then already waiting to put the connection back in the pool as soon as its
        // response has been read, rather than woken once more for it afterwards; and a
        // connection whose exchange times out or is dropped is ended and uncounted there.
        conn.link.hand_back(sender);
        Answer {
            exchange,
            link: conn.link.clone(),
            abandon,
            reused: conn.reused,
        }
    }

    /// `GET path` with the route's `fields` (its `request_headers`): `Ok` for a 2xx or
    /// 3xx within the connect and answer timeouts.
    pub(crate) async fn check(
        &self,
        path: &str,
        timeouts: (Duration, Duration),
        fields: &[(http::HeaderName, Option<http::HeaderValue>)],
    ) -> Result<(), UpstreamError> {
        let url = || self.0.url.clone();
        let mut request = Request::get(path)
            .header(header::HOST, &self.0.authority)
            .header(header::USER_AGENT, "weft-health-check")
            .body(ReqBody::Empty)
            .map_err(|e| UpstreamError::Exchange(url(), e.to_string()))?;
        crate::config::set_fields(request.headers_mut(), fields);
        let conn = self.checkout(timeouts.0, false).await?;
        let response = match self.send(conn, request, timeouts.1).await {
            Err(_) => return Err(UpstreamError::Timeout(url(), timeouts.1)),
            Ok(Err(SendError::NotSent(_))) => {
                return Err(UpstreamError::Exchange(url(), "connection closed".into()));
            }
            Ok(Err(SendError::Failed(e))) => {
                return Err(UpstreamError::Exchange(url(), e.to_string()));
            }
            Ok(Err(SendError::CutByDrain(e))) => {
                return Err(UpstreamError::CutByDrain(e.to_string()));
            }
            Ok(Err(SendError::ClosedHere(e))) => {
                return Err(UpstreamError::ClosedHere(e.to_string()));
            }
            Ok(Err(SendError::BrokenBody(e))) => {
                return Err(UpstreamError::Exchange(url(), e.to_string()));
            }
            Ok(Err(SendError::Unframed)) => {
                return Err(UpstreamError::Exchange(url(), UNFRAMED.into()));
            }
            Ok(Ok((response, _))) => response,
        };
        let status = response.status();
        // Read to the end, so the connection can serve again.
        let _ = Limited::new(response.into_body(), CHECK_BODY_BYTES)
            .collect()
            .await;
        if status.is_success() || status.is_redirection() {
            Ok(())
        } else {
            Err(UpstreamError::Unhealthy(url(), status))
        }
    }
}

pin_project_lite::pin_project! {
    /// The response head to a request sent on a connection (`link`), or `TimedOut` at the
    /// connection's deadline; dropped before the head came (timed out, or the request
    /// cancelled), it aborts the connection through `abandon`.
    ///
    /// A future of its own rather than an `async fn`: hyper's exchange is polled where it
    /// lies, where an `async fn` kept it twice, as the local it was made in and the pinned
    /// one it polled (a quarter of a kilobyte each, in every proxied request's future).
    #[must_use = "the request is sent already; dropping its answer aborts the connection"]
    pub(crate) struct Answer<F> {
        #[pin]
        exchange: F,
        link: Rc<Link>,
        abandon: Abandon,
        // From the pool: it is counted used once it answers (not when the upstream had
        // closed it, found so as the request went out, which then goes on a new one).
        reused: bool,
    }
}

impl<F> Future for Answer<F>
where
    F: Future<Output = Result<Response<Incoming>, TrySendError<Request<ReqBody>>>>,
{
    type Output = Result<Result<Answered, SendError>, TimedOut>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let sent = match this.exchange.poll(cx) {
            Poll::Ready(sent) => sent,
            Poll::Pending => {
                let mut answer_by = this.link.answer_by.borrow_mut();
                let due = this.link.answer_due.get();
                return match crate::deadline::poll_due(answer_by.as_mut(), due, cx) {
                    // Timed out halfway: `abandon` aborts the connection (when this is
                    // dropped), which its task then ends.
                    Poll::Ready(()) => Poll::Ready(Err(TimedOut {
                        on_client: this.link.on_client.get(),
                    })),
                    Poll::Pending => Poll::Pending,
                };
            }
        };
        let (drained, closed_here) = (
            this.link.transport.cut_by_drain(),
            this.link.transport.closed_by_request(),
        );
        if std::mem::take(this.reused) && sent.is_ok() {
            this.link.used.count(true);
        }
        let mut response = match sent {
            Ok(response) => response,
            // Failed: `abandon` resets the connection when this is dropped (a request
            // body cut short by its client must not end in order, as if it were whole).
            Err(mut err) => {
                return Poll::Ready(Ok(Err(match err.take_message() {
                    Some(request) => SendError::NotSent(Box::new(request)),
                    None if drained => SendError::CutByDrain(err.into_error()),
                    None if closed_here => SendError::ClosedHere(err.into_error()),
                    None => SendError::Failed(err.into_error()),
                })));
            }
        };
        // hyper refuses a `Content-Length` that is not a length where it reads a body by
        // it; where there is none to read, it takes any. Such an answer is no answer.
        if hyper::body::Body::is_end_stream(response.body())
            && content_length(response.headers()).is_err()
        {
            return Poll::Ready(Ok(Err(SendError::Unframed)));
        }
        // What of the body came with the head is taken now, in this poll: a body that
        // broke off before any of it leaves nothing sent to the client, which then gets
        // a 502 rather than a head cut short, or nothing at all. A body still to come is
        // not waited for.
        let first = match hyper::body::Body::poll_frame(Pin::new(response.body_mut()), cx) {
            Poll::Ready(Some(Err(err))) => return Poll::Ready(Ok(Err(SendError::BrokenBody(err)))),
            Poll::Ready(Some(Ok(frame))) => Some(frame),
            Poll::Ready(None) | Poll::Pending => None,
        };
        this.abandon.0 = None;
        Poll::Ready(Ok(Ok((response, first))))
    }
}

impl Inner {
    fn take_idle(&self) -> Option<Pooled> {
        let mut idle = self.idle.borrow_mut();
        let before = idle.len();
        let taken = loop {
            let Some(conn) = idle.pop() else { break None };
            // Dropping a stale one lets its driving task end it.
            if conn.link.transport.is_disconnecting() || !conn.sender.is_ready() {
                continue;
            }
            conn.link.idle.set(false);
            break Some(Pooled {
                sender: Some(conn.sender),
                link: conn.link,
                reused: true,
            });
        };
        self.state.idle.fetch_sub(before - idle.len(), Relaxed);
        taken
    }

    fn put_back(&self, sender: SendRequest<ReqBody>, link: Rc<Link>) {
        let mut idle = self.idle.borrow_mut();
        if link.transport.is_disconnecting() || idle.len() >= self.config.max_idle {
            // Dropping the sender ends the (idle) connection.
            return;
        }
        link.idle.set(true);
        link.idle_since.set(Instant::now());
        link.wake();
        idle.push(Idle { sender, link });
        self.state.idle.fetch_add(1, Relaxed);
    }

    /// Puts the sender `link` has been handed back in the pool once the connection can
    /// take another request; drops it when it cannot (hyper then ends the connection).
    fn take_back(&self, link: &Rc<Link>, cx: &mut Context<'_>) {
        let mut returning = link.returning.borrow_mut();
        let Some(sender) = returning.as_mut() else {
            return;
        };
        let ready = match sender.poll_ready(cx) {
            Poll::Pending => return,
            Poll::Ready(ready) => ready.is_ok(),
        };
        let sender = returning.take().expect("checked above");
        drop(returning);
        link.state.busy.fetch_sub(1, Relaxed);
        if ready {
            self.put_back(sender, link.clone());
        }
    }

    /// Takes a connection whose task ended out of the pool.
    fn forget(&self, link: &Rc<Link>) {
        let mut idle = self.idle.borrow_mut();
        let before = idle.len();
        idle.retain(|c| !Rc::ptr_eq(&c.link, link));
        self.state.idle.fetch_sub(before - idle.len(), Relaxed);
    }
}

/// The counts are changed by what each pool adds and takes, never set: after a reload
/// two generations' pools may count in one state, and a pool that goes (its generation
/// ended) takes its idle connections, which close, out of it.
impl Drop for Inner {
    fn drop(&mut self) {
        self.state
            .idle
            .fetch_sub(self.idle.get_mut().len(), Relaxed);
    }
}

/// Drives one connection until hyper ends it (the upstream closed, an error, or no
/// request can come any more), or until, idle, it is asked to close or times out.
async fn drive(link: Rc<Link>, connection: Connection, pool: Weak<Inner>, idle_timeout: Duration) {
    let mut expiry = pin!(tokio::time::sleep(idle_timeout));
    // The connection ends with this block if it has not ended (idle and timed out, or
    // asked to close).
    {
        let mut connection = pin!(connection);
        poll_fn(|cx| {
            {
                let mut waker = link.waker.borrow_mut();
                if !waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    *waker = Some(cx.waker().clone());
                }
            }
            // hyper's request channel wakes it as a request is sent.
            if let Poll::Ready(ended) = connection.as_mut().poll(cx) {
                if let Err(err) = ended {
                    tracing::debug!(connection = %link.transport.id(), %err, "upstream connection ended with an error");
                }
                return Poll::Ready(());
            }
            match pool.upgrade() {
                Some(pool) => pool.take_back(&link, cx),
                // The service is gone: the connection ends after the exchange in flight.
                None => {
                    if link.returning.borrow_mut().take().is_some() {
                        link.state.busy.fetch_sub(1, Relaxed);
                    }
                }
            }
            if link.idle.get() {
                if link.transport.is_disconnecting() {
                    return Poll::Ready(());
                }
                let deadline = link.idle_since.get() + idle_timeout;
                if crate::deadline::poll_due(expiry.as_mut(), deadline, cx).is_ready() {
                    return Poll::Ready(());
                }
            }
            Poll::Pending
        })
        .await;
    }
    if link.returning.borrow_mut().take().is_some() {
        link.state.busy.fetch_sub(1, Relaxed);
    }
    if let Some(pool) = pool.upgrade() {
        pool.forget(&link);
    }
}

/// Escapes `:` and `\` in an endpoint string's field.
fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace(':', "\\:")
}

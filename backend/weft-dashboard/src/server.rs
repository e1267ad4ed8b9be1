//! The dashboard's listener: [`router`](crate::router) over HTTP/1.1 on hyper, with every
//! resource a peer can hold bounded.
//!
//! - A request head must be complete within [`HEADER_TIMEOUT`] of the connection opening
//!   or of the previous response: hyper's `header_read_timeout`, which runs whenever a
//!   connection waits for a head, so it bounds a slow sender (slowloris) and an idle
//!   keep-alive connection alike. A head over [`MAX_HEAD`] gets `431`.
//! - A peer (an IPv4 address or an IPv6 /64, [`PeerKey`]) holds at most
//!   `max_connections_per_peer` connections, and the listener at most `max_connections`
//!   in all. At either cap the connection idle longest (no request under way: one that
//!   never sent a head, or a kept-alive one between requests; never a `/ws` feed), the
//!   peer's own at the peer's cap, is closed to make room, counted as `idle_evicted`; when
//!   none is idle the new connection is closed as soon as it is accepted, before a byte is
//!   read, and counted in `weft_dashboard_refused_total{reason="limit_peer"}` or
//!   `{reason="limit_total"}`. So connections that send nothing, from as many addresses
//!   as it takes or from the same host as the browser (every local client is one peer
//!   on loopback), cannot keep a browser or a scraper out: a new client's request is
//!   served as long as it sends it before it is the idlest. An evicted connection gives
//!   its place back as its task ends, so a burst may hold a few more than a cap for that
//!   moment. A connection's place goes with its socket, so a `/ws` connection (upgraded,
//!   and no longer hyper's) keeps its place while the feed runs.
//! - When accepting fails (out of descriptors), it backs off from 10 ms, doubling to 1 s,
//!   instead of spinning, and says so once per episode.
//! - At shutdown it stops accepting, lets each connection finish the exchange in flight
//!   (idle ones close at once), and returns when they have; live feeds are ended by
//!   [`crate::background`].

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::Request;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;
use weft::policies::PeerKey;

use crate::metrics::{DashboardMetrics, Refusal};
use crate::state::DashboardState;

/// How long a client may take to send a request head, counted from the connection's
/// start or the end of its previous response; also how long a kept-alive connection may
/// idle.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest request head read, in bytes; a larger one gets `431`. Pages send small
/// heads: this bounds what a slow sender makes the dashboard buffer.
pub const MAX_HEAD: usize = 64 * 1024;

/// The largest request body read, in bytes; a larger one gets `413`. The dashboard's only
/// bodies are the login form's few fields (its actions take none), and the login form is
/// open to anyone who can reach the listener: each connection holds at most this much.
pub const MAX_BODY: usize = 16 * 1024;

/// How long a request body may take to arrive whole, from the end of its head; one
/// slower gets `408`. Bodies are read before any handler runs, so a client trickling a
/// byte now and then holds its connection no longer than this.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// Reads a request's body whole, within [`MAX_BODY`] and [`BODY_TIMEOUT`], before the
/// request goes on: what a handler extracts is then in memory already, bounded. A request
/// without a body goes on as it is.
pub(crate) async fn bounded_body(
    axum::extract::State(state): axum::extract::State<DashboardState>,
    request: Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    use hyper::body::Body as _;
    if request.body().is_end_stream() {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let read = tokio::time::timeout(BODY_TIMEOUT, axum::body::to_bytes(body, MAX_BODY)).await;
    let refused = match read {
        Ok(Ok(bytes)) => {
            return next
                .run(Request::from_parts(parts, Body::from(bytes)))
                .await;
        }
        Ok(Err(_)) => crate::ApiError::BodyTooLarge(format!(
            "the request body is over {} KiB, or broke off",
            MAX_BODY >> 10
        )),
        Err(_) => crate::ApiError::BodyTimeout(format!(
            "the request body did not all come within {BODY_TIMEOUT:?}"
        )),
    };
    state
        .metrics
        .refused(Refusal::Body, Peer::of(&parts.extensions));
    let mut response = refused.into_response();
    // What is left of the body is not read: the connection cannot carry another request.
    response.headers_mut().insert(
        axum::http::header::CONNECTION,
        axum::http::HeaderValue::from_static("close"),
    );
    response
}

/// Connections the dashboard holds at once by default (`[dashboard] max_connections`).
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;

/// Connections one peer holds at once by default (`[dashboard] max_connections_per_peer`).
pub const DEFAULT_MAX_CONNECTIONS_PER_PEER: usize = 64;

/// The first pause after accepting fails, and the longest.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(10), Duration::from_secs(1));

/// Serves `state`'s dashboard on `listener` until `shutdown` completes, then drains the
/// connections as the module says. Run [`crate::background`] beside it.
pub async fn serve(
    listener: TcpListener,
    state: DashboardState,
    shutdown: impl Future<Output = ()>,
) {
    let app = crate::router(state.clone());
    let places = Arc::new(Places::new(
        state.max_connections,
        state.max_connections_per_peer,
    ));
    let draining = CancellationToken::new();
    let connections = TaskTracker::new();
    let mut backoff: Option<Duration> = None;
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => {
                if backoff.take().is_some() {
                    tracing::info!("dashboard accepting again");
                }
                accepted
            }
            // The connection, not the listener, failed: take the next one.
            Err(e) if is_connection_error(&e) => continue,
            Err(error) => {
                let delay = match backoff {
                    None => {
                        tracing::warn!(%error, "dashboard cannot accept; backing off");
                        BACKOFF.0
                    }
                    Some(d) => (d * 2).min(BACKOFF.1),
                };
                backoff = Some(delay);
                tokio::select! {
                    () = &mut shutdown => break,
                    () = tokio::time::sleep(delay) => continue,
                }
            }
        };
        let (place, evicted) = match places.take(peer.ip()) {
            Ok(taken) => taken,
            Err(refusal) => {
                state.metrics.refused(refusal, Some(peer.ip()));
                continue;
            }
        };
        if evicted {
            state.metrics.refused(Refusal::IdleEvicted, Some(peer.ip()));
        }
        let activity = place.activity.clone();
        let placed = Placed { stream, place };
        let peer = Peer(peer.ip());
        let metrics = state.metrics.clone();
        connections.spawn(connection(
            placed,
            activity,
            peer,
            app.clone(),
            metrics,
            draining.clone(),
        ));
    }
    drop(listener);
    draining.cancel();
    connections.close();
    connections.wait().await;
}

/// Serves `app` on one accepted connection until the client is done, or, once `draining`
/// is cancelled, until the exchange in flight is. A head hyper refuses before any handler
/// sees it (too many fields, a target too long, a malformed one: hyper answers 431, 414 or
/// 400 with no body), or one not finished within [`HEADER_TIMEOUT`], is counted in
/// `metrics` here.
async fn connection(
    placed: Placed,
    activity: Arc<Activity>,
    peer: Peer,
    app: axum::Router,
    metrics: DashboardMetrics,
    draining: CancellationToken,
) {
    let (starts, ends) = (activity.clone(), activity.clone());
    let service = TowerToHyperService::new(
        app.map_request(move |r: Request<Incoming>| {
            starts.request_started();
            let mut r = r.map(Body::new);
            r.extensions_mut().insert(peer);
            r
        })
        .map_response(move |r: axum::response::Response| {
            if r.status() == hyper::StatusCode::SWITCHING_PROTOCOLS {
                ends.upgraded();
                return r;
            }
            // Under way until hyper has written the body and lets go of it.
            let ending = InFlight(ends.clone());
            r.map(move |body| {
                Body::new(Ending {
                    body,
                    _ending: ending,
                })
            })
        }),
    );
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(MAX_HEAD)
        .keep_alive(true);
    let connection = builder
        .serve_connection(TokioIo::new(placed), service)
        .with_upgrades();
    tokio::pin!(connection);
    let served = tokio::select! {
        served = connection.as_mut() => served,
        // Idle, and the idlest when a new connection needed its place.
        () = activity.evict.cancelled() => return,
        () = draining.cancelled() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(error) = served {
        if error.is_parse_too_large() {
            metrics.refused(Refusal::HeadTooLarge, Some(peer.0));
        } else if error.is_parse() {
            metrics.refused(Refusal::Malformed, Some(peer.0));
        } else if error.is_timeout() && activity.head_begun.load(Ordering::Relaxed) {
            // Idle between requests is routine; a head begun and not done is a slow
            // client's (or a slowloris's).
            metrics.refused(Refusal::HeadTimeout, Some(peer.0));
        }
        // A client going away or timing out is routine.
        tracing::debug!(%error, "dashboard connection ended");
    }
}

/// The address a request came from, in its extensions (requests served by [`serve`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Peer(pub(crate) IpAddr);

impl Peer {
    /// The address `extensions` say their request came from.
    pub(crate) fn of(extensions: &axum::http::Extensions) -> Option<IpAddr> {
        extensions.get::<Self>().map(|p| p.0)
    }
}

/// Errors of one connection that `accept` reports; the listener is fine.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionReset
    )
}

/// Connections held now, in all and per peer.
#[derive(Debug, Default)]
struct Held {
    /// Connections held now on the dashboard's listener.
    total: usize,
    /// Connections held per peer; a peer leaves the map when its last connection closes, so it
    /// stays bounded by `max_total`.
    per_peer: HashMap<PeerKey, usize>,
    /// What each connection held now is doing, and its peer, to find the idlest at a cap;
    /// one entry a place, taken out when it is given back or its connection evicted.
    activity: Vec<(PeerKey, Weak<Activity>)>,
}

/// What one dashboard connection is doing, as far as making room goes.
#[derive(Debug)]
struct Activity {
    /// Requests under way (read, or being answered); 0 while it waits for a head.
    in_flight: AtomicU64,
    /// Its last write found the socket full: an answer is still on its way to a slow
    /// reader, whose body hyper may have let go of already.
    write_blocked: AtomicBool,
    /// Bytes came since it opened or its last request ended: a head was begun, so a
    /// connection ending on hyper's header timeout now was cut mid-head, not idle.
    head_begun: AtomicBool,
    /// Since when it has been idle, in microseconds from `epoch`; `u64::MAX` once it became
    /// a `/ws` feed, which is never evicted.
    idle_since: AtomicU64,
    epoch: Instant,
    /// Cancelled to close the connection for a newcomer.
    evict: CancellationToken,
}

impl Activity {
    fn new(epoch: Instant) -> Self {
        let activity = Self {
            in_flight: AtomicU64::new(0),
            write_blocked: AtomicBool::new(false),
            head_begun: AtomicBool::new(false),
            idle_since: AtomicU64::new(0),
            epoch,
            evict: CancellationToken::new(),
        };
        activity.became_idle();
        activity
    }

    fn became_idle(&self) {
        let now = u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX - 1);
        self.idle_since.store(now, Ordering::Relaxed);
    }

    fn request_started(&self) {
        self.head_begun.store(false, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    fn request_ended(&self) {
        self.head_begun.store(false, Ordering::Relaxed);
        if self.in_flight.fetch_sub(1, Ordering::Relaxed) == 1 {
            self.became_idle();
        }
    }

    fn upgraded(&self) {
        self.idle_since.store(u64::MAX, Ordering::Relaxed);
    }

    /// Since when it has been idle, if it is and may be evicted: no request under way and
    /// nothing left to send.
    fn idle(&self) -> Option<u64> {
        let since = self.idle_since.load(Ordering::Relaxed);
        let busy = self.in_flight.load(Ordering::Relaxed) > 0
            || self.write_blocked.load(Ordering::Relaxed);
        (!busy && since != u64::MAX).then_some(since)
    }

    /// What the last write found: the socket full (`Pending`) or not.
    fn wrote<T>(&self, result: &Poll<T>) {
        self.write_blocked
            .store(result.is_pending(), Ordering::Relaxed);
    }
}

/// A request under way on its connection until its response's body is let go.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.request_ended();
    }
}

/// A response body that ends its request's time in flight when hyper lets go of it.
struct Ending {
    body: Body,
    _ending: InFlight,
}

impl hyper::body::Body for Ending {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

/// The places on the listener: `max_total` in all, `max_per_peer` per peer (0: no cap).
#[derive(Debug)]
struct Places {
    max_total: usize,
    /// 0: no per-peer cap.
    max_per_peer: usize,
    /// A std mutex: taken once per accept and once per close, never across an await.
    held: Mutex<Held>,
    /// What every connection's idle time counts from.
    epoch: Instant,
}

impl Places {
    fn new(max_total: usize, max_per_peer: usize) -> Self {
        Self {
            max_total,
            max_per_peer,
            held: Mutex::default(),
            epoch: Instant::now(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A place for a connection from `ip`, and whether an idle connection was evicted to
    /// make it; or why there is none.
    fn take(self: &Arc<Self>, ip: IpAddr) -> Result<(Place, bool), Refusal> {
        let peer = PeerKey::of_ip(ip);
        let mut held = self.lock();
        let from_peer = held.per_peer.get(&peer).copied().unwrap_or(0);
        // The evicted connection gives its place back as its task ends, a moment later:
        // the counts may pass their caps by the evictions under way meanwhile. At its own
        // cap a peer makes room from its own idle connections (all of a host's local
        // clients are one peer on loopback: a browser, a scraper, and whatever opens
        // connections and sends nothing); room made so is room in the total too.
        let evicted = if self.max_per_peer != 0 && from_peer >= self.max_per_peer {
            if !held.evict_idlest(Some(peer)) {
                return Err(Refusal::LimitPeer);
            }
            true
        } else if held.total >= self.max_total {
            if !held.evict_idlest(None) {
                return Err(Refusal::LimitTotal);
            }
            true
        } else {
            false
        };
        held.total += 1;
        held.per_peer.insert(peer, from_peer + 1);
        let activity = Arc::new(Activity::new(self.epoch));
        held.activity.push((peer, Arc::downgrade(&activity)));
        Ok((
            Place {
                places: self.clone(),
                peer,
                activity,
            },
            evicted,
        ))
    }
}

impl Held {
    /// Closes the connection idle longest, of `peer` or of any, if one is idle: true if
    /// one was.
    fn evict_idlest(&mut self, peer: Option<PeerKey>) -> bool {
        let idlest = self
            .activity
            .iter()
            .enumerate()
            .filter(|(_, (of, _))| peer.is_none_or(|p| p == *of))
            .filter_map(|(i, (_, a))| Some((i, a.upgrade()?.idle()?)))
            .min_by_key(|&(_, since)| since);
        let Some((i, _)) = idlest else {
            return false;
        };
        if let Some(activity) = self.activity.swap_remove(i).1.upgrade() {
            activity.evict.cancel();
        }
        true
    }
}

/// One connection's place, given back when dropped.
#[derive(Debug)]
struct Place {
    /// Where this place is given back when the connection closes.
    places: Arc<Places>,
    /// The peer whose count this place is in.
    peer: PeerKey,
    /// What the connection is doing, for making room at the cap.
    activity: Arc<Activity>,
}

impl Drop for Place {
    fn drop(&mut self) {
        let mut held = self.places.lock();
        let mine = Arc::downgrade(&self.activity);
        if let Some(i) = held.activity.iter().position(|(_, a)| a.ptr_eq(&mine)) {
            held.activity.swap_remove(i);
        }
        held.total -= 1;
        if let Some(n) = held.per_peer.get_mut(&self.peer) {
            *n -= 1;
            if *n == 0 {
                held.per_peer.remove(&self.peer);
            }
        }
    }
}

/// A socket that holds its connection's place for as long as it is open, through hyper
/// and through an upgrade.
#[derive(Debug)]
struct Placed {
    stream: TcpStream,
    /// Its place: an upgraded `/ws` connection keeps it until it closes; its writes say
    /// whether an answer is still on its way.
    place: Place,
}

impl AsyncRead for Placed {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let read = Pin::new(&mut self.stream).poll_read(cx, buf);
        // Bytes while no request is under way begin the next head (a body's are read
        // while its request is).
        let activity = &self.place.activity;
        if buf.filled().len() > before && activity.in_flight.load(Ordering::Relaxed) == 0 {
            activity.head_begun.store(true, Ordering::Relaxed);
        }
        read
    }
}

impl AsyncWrite for Placed {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.stream).poll_write(cx, buf);
        self.place.activity.wrote(&written);
        written
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        self.place.activity.wrote(&written);
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A place, with its connection busy answering a request.
    fn busy(places: &Arc<Places>, ip: IpAddr) -> Result<Place, Refusal> {
        let (place, evicted) = places.take(ip)?;
        assert!(!evicted);
        place.activity.request_started();
        Ok(place)
    }

    #[test]
    fn places_are_capped_per_peer_and_in_total_and_given_back() {
        let places = Arc::new(Places::new(4, 2));
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let a6: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        let b: IpAddr = "2001:db8::1".parse().unwrap();
        let b_same_64: IpAddr = "2001:db8::ffff:2".parse().unwrap();
        let first = busy(&places, a).unwrap();
        let _second = busy(&places, a6).unwrap();
        assert_eq!(places.take(a).unwrap_err(), Refusal::LimitPeer);
        let _third = busy(&places, b).unwrap();
        let _fourth = busy(&places, b_same_64).unwrap();
        assert_eq!(places.take(b).unwrap_err(), Refusal::LimitPeer);
        assert_eq!(
            places.take("198.51.100.7".parse().unwrap()).unwrap_err(),
            Refusal::LimitTotal,
            "every connection is busy: none to make room"
        );
        drop(first);
        let _again = busy(&places, a).expect("a place freed");
        assert_eq!(places.lock().total, 4);

        let uncapped = Arc::new(Places::new(3, 0));
        let all: Vec<_> = (0..3).map(|_| busy(&uncapped, a).unwrap()).collect();
        assert_eq!(uncapped.take(a).unwrap_err(), Refusal::LimitTotal);
        drop(all);
        assert_eq!(uncapped.lock().total, 0);
        assert!(uncapped.lock().per_peer.is_empty());
        assert!(uncapped.lock().activity.is_empty());
    }

    /// At a peer's cap, its own connection idle longest makes room (a local process
    /// holding idle connections does not keep the browser on the same host out), never
    /// another peer's; with none of its own idle, it is refused.
    #[test]
    fn at_a_peer_s_cap_its_own_idlest_connection_makes_room() {
        let places = Arc::new(Places::new(10, 2));
        let (local, other): (IpAddr, IpAddr) =
            ("127.0.0.1".parse().unwrap(), "192.0.2.9".parse().unwrap());
        let (elsewhere, _) = places.take(other).unwrap();
        let (silent, _) = places.take(local).unwrap();
        let answering = busy(&places, local).unwrap();
        let (browser, evicted) = places.take(local).unwrap();
        assert!(evicted && silent.activity.evict.is_cancelled());
        assert!(!elsewhere.activity.evict.is_cancelled(), "another peer's");
        assert!(!answering.activity.evict.is_cancelled());
        drop(silent);
        browser.activity.request_started();
        assert_eq!(
            places.take(local).unwrap_err(),
            Refusal::LimitPeer,
            "none of its own idle"
        );
        drop((browser, answering, elsewhere));
        assert_eq!(places.lock().total, 0);
    }

    /// At the cap, the connection idle longest makes room: one that never sent a head
    /// before one between requests, never one answering or a `/ws` feed.
    #[test]
    fn at_the_cap_the_connection_idle_longest_makes_room() {
        let places = Arc::new(Places::new(3, 0));
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let (silent, _) = places.take(ip).unwrap();
        let (feed, _) = places.take(ip).unwrap();
        feed.activity.request_started();
        feed.activity.upgraded();
        let (kept_alive, _) = places.take(ip).unwrap();
        kept_alive.activity.request_started();
        std::thread::sleep(Duration::from_millis(2));
        kept_alive.activity.request_ended();

        let (newcomer, evicted) = places.take(ip).unwrap();
        assert!(evicted);
        assert!(silent.activity.evict.is_cancelled(), "idle since it came");
        assert!(!kept_alive.activity.evict.is_cancelled());
        drop(silent);
        newcomer.activity.request_started();
        let (next, evicted) = places.take(ip).unwrap();
        next.activity.request_started();
        assert!(evicted && kept_alive.activity.evict.is_cancelled());
        drop(kept_alive);
        assert!(
            !feed.activity.evict.is_cancelled(),
            "a feed is never evicted"
        );
        assert_eq!(places.take(ip).unwrap_err(), Refusal::LimitTotal);

        // An answer still on its way to a slow reader (its body let go of by hyper, the
        // socket full) is no idle connection; once it is all sent, it is.
        let places = Arc::new(Places::new(1, 0));
        let (slow, _) = places.take(ip).unwrap();
        slow.activity.request_started();
        slow.activity.request_ended();
        slow.activity.wrote(&Poll::<()>::Pending);
        assert_eq!(places.take(ip).unwrap_err(), Refusal::LimitTotal);
        slow.activity.wrote(&Poll::Ready(()));
        assert!(places.take(ip).unwrap().1, "evicted once its answer is out");
    }
}

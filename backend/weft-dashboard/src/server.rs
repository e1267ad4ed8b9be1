//! The dashboard's listener: [`router`](crate::router) over HTTP/1.1 on hyper, with every
//! resource a peer can hold bounded.
//!
//! - A request head must be complete within [`HEADER_TIMEOUT`] of the connection opening
//!   or of the previous response: hyper's `header_read_timeout`, which runs whenever a
//!   connection waits for a head, so it bounds a slow sender (slowloris) and an idle
//!   keep-alive connection alike. A head over [`MAX_HEAD`] gets `431`.
//! - A peer (an IPv4 address or an IPv6 /64, [`PeerKey`]) holds at most
//!   `max_connections_per_peer` connections, and the listener at most `max_connections`
//!   in all. A connection beyond either is closed as soon as it is accepted, before a byte
//!   is read, and counted in `weft_dashboard_refused_total{reason="limit_peer"}` or
//!   `{reason="limit_total"}`. A connection's place goes with its socket, so a `/ws`
//!   connection (upgraded, and no longer hyper's) keeps its place while the feed runs.
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
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

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
    state.metrics.refused(Refusal::Body);
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
        let place = match places.take(peer.ip()) {
            Ok(place) => place,
            Err(refusal) => {
                state.metrics.refused(refusal);
                continue;
            }
        };
        let placed = Placed {
            stream,
            _place: place,
        };
        let peer = Peer(peer.ip());
        let metrics = state.metrics.clone();
        connections.spawn(connection(
            placed,
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
/// 400 with no body) is counted in `metrics` here.
async fn connection(
    placed: Placed,
    peer: Peer,
    app: axum::Router,
    metrics: DashboardMetrics,
    draining: CancellationToken,
) {
    let service = TowerToHyperService::new(app.map_request(move |r: Request<Incoming>| {
        let mut r = r.map(Body::new);
        r.extensions_mut().insert(peer);
        r
    }));
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
        () = draining.cancelled() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(error) = served {
        if error.is_parse_too_large() {
            metrics.refused(Refusal::HeadTooLarge);
        } else if error.is_parse() {
            metrics.refused(Refusal::Malformed);
        }
        // A client going away or timing out is routine.
        tracing::debug!(%error, "dashboard connection ended");
    }
}

/// The address a request came from, in its extensions (requests served by [`serve`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Peer(pub(crate) IpAddr);

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
}

/// The places on the listener: `max_total` in all, `max_per_peer` per peer (0: no cap).
#[derive(Debug)]
struct Places {
    max_total: usize,
    /// 0: no per-peer cap.
    max_per_peer: usize,
    /// A std mutex: taken once per accept and once per close, never across an await.
    held: Mutex<Held>,
}

impl Places {
    fn new(max_total: usize, max_per_peer: usize) -> Self {
        Self {
            max_total,
            max_per_peer,
            held: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A place for a connection from `ip`, or why there is none.
    fn take(self: &Arc<Self>, ip: IpAddr) -> Result<Place, Refusal> {
        let peer = PeerKey::of_ip(ip);
        let mut held = self.lock();
        if held.total >= self.max_total {
            return Err(Refusal::LimitTotal);
        }
        let from_peer = held.per_peer.get(&peer).copied().unwrap_or(0);
        if self.max_per_peer != 0 && from_peer >= self.max_per_peer {
            return Err(Refusal::LimitPeer);
        }
        held.total += 1;
        held.per_peer.insert(peer, from_peer + 1);
        Ok(Place {
            places: self.clone(),
            peer,
        })
    }
}

/// One connection's place, given back when dropped.
#[derive(Debug)]
struct Place {
    /// Where this place is given back when the connection closes.
    places: Arc<Places>,
    /// The peer whose count this place is in.
    peer: PeerKey,
}

impl Drop for Place {
    fn drop(&mut self) {
        let mut held = self.places.lock();
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
    /// Held only for its drop, so an upgraded `/ws` connection keeps its place until it closes.
    _place: Place,
}

impl AsyncRead for Placed {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Placed {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
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

    #[test]
    fn places_are_capped_per_peer_and_in_total_and_given_back() {
        let places = Arc::new(Places::new(4, 2));
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let a6: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        let b: IpAddr = "2001:db8::1".parse().unwrap();
        let b_same_64: IpAddr = "2001:db8::ffff:2".parse().unwrap();
        let first = places.take(a).unwrap();
        let _second = places.take(a6).unwrap();
        assert_eq!(places.take(a).unwrap_err(), Refusal::LimitPeer);
        let _third = places.take(b).unwrap();
        let _fourth = places.take(b_same_64).unwrap();
        assert_eq!(places.take(b).unwrap_err(), Refusal::LimitTotal);
        assert_eq!(
            places.take("198.51.100.7".parse().unwrap()).unwrap_err(),
            Refusal::LimitTotal
        );
        drop(first);
        let _again = places.take(a).expect("a place freed");
        assert_eq!(places.lock().total, 4);

        let uncapped = Arc::new(Places::new(3, 0));
        let all: Vec<_> = (0..3).map(|_| uncapped.take(a).unwrap()).collect();
        assert_eq!(uncapped.take(a).unwrap_err(), Refusal::LimitTotal);
        drop(all);
        assert_eq!(uncapped.lock().total, 0);
        assert!(uncapped.lock().per_peer.is_empty());
    }
}

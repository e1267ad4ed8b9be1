//! Protocol upgrades through the proxy (RFC 9110 §7.8): a WebSocket, or any protocol an
//! HTTP/1.1 client asks to switch to.
//!
//! A request asks only with both `Upgrade` and a `Connection` naming it; then, and only
//! then, the two go upstream (else they stay on their hop, like any hop-by-hop header).
//! It gets an upstream connection of its own, never shared: to an upstream of the route
//! picked as for any request (its `balance`, ejected ones passed over, the next one when
//! one cannot be reached), over TLS to an `https://` upstream; after a 101 that
//! connection is the tunnel's. The upstream's 101 is passed to the client when it switches to a
//! protocol the client offered (a 101 to anything else is a 502), and the upstream end
//! waits in the client connection's [`Slot`] until hyper has written the 101 and hands
//! back the client's end; [`tunnel`] then copies both ways, bytes already read on
//! either side first, relaying a half-close, until both sides have finished, either one
//! fails or is closed (from the dashboard, say), or either is asked to close (the
//! service's idle timeout, which the upstream end takes from the client's); a shutdown
//! lets it go on until then, or until the drain's deadline aborts it. Ending it closes
//! both connections.
//!
//! HTTP/2's extended CONNECT (RFC 8441) is not served: an HTTP/2 request cannot carry
//! `Upgrade` at all, so it is forwarded like any other.

use std::cell::RefCell;
use std::future::{Future, poll_fn};
use std::pin::pin;
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::task::Poll;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::request::Parts;
use http::{Response, StatusCode, Version};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use weft::defer::WaitsOn;
use weft::{InspectedStream, Reactor, Transport};

use super::outgoing::Outgoing;
use super::upstreams::{InFlight, RouteUpstreams, Tried};
use super::{Abandon, Client, Marks, UpstreamError, respond, send};
use crate::body::{self, Body};
use crate::config::{Limits, Route};
use crate::headers::{list_members, strip_hop_by_hop};
use crate::metrics::{Recorder, UpgradeOutcome};

/// What the request offers to switch to (its `Upgrade`), when it asks to switch.
pub(crate) fn asked(head: &Parts) -> Option<HeaderValue> {
    // RFC 9110 §7.8: Upgrade is a hop-by-hop field, so a sender lists it in Connection;
    // HTTP/1.0 and HTTP/2 requests cannot switch.
    if head.version != Version::HTTP_11 {
        return None;
    }
    let headers = &head.headers;
    // `Upgrade` first: most requests have none, and then `Connection` is not read. `h2c`
    // is never passed on: an upstream that switched to it would have the client speak
    // HTTP/2 to it straight through the tunnel, past this proxy's routes and rules (h2c
    // smuggling); a client wanting HTTP/2 speaks it to weft.
    let offered: Vec<&str> = headers
        .get_all(header::UPGRADE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|p| !p.is_empty() && !p.eq_ignore_ascii_case("h2c"))
        .collect();
    if offered.is_empty()
        || !list_members(headers, header::CONNECTION)
            .any(|token| token.eq_ignore_ascii_case("upgrade"))
    {
        return None;
    }
    // A request with content would have its body go up through the tunnel as it comes,
    // never read ahead: a client sending it slowly would hold an upstream connection. Its
    // Upgrade is ignored (RFC 9110 §7.8 lets a server), and it goes as any other request,
    // without the field (hop-by-hop).
    let content = headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .is_some_and(|n| n.as_bytes() != b"0");
    if content {
        return None;
    }
    HeaderValue::from_str(&offered.join(", ")).ok()
}

/// Whether every protocol `chosen` names is one of `offered` (RFC 9110 §7.8: a server
/// MUST NOT switch to a protocol the client did not indicate).
fn offers(offered: &HeaderValue, chosen: &HeaderValue) -> bool {
    let list = |v: &HeaderValue| -> Vec<String> {
        v.to_str()
            .unwrap_or("")
            .split(',')
            .map(|p| p.trim().to_ascii_lowercase())
            .filter(|p| !p.is_empty())
            .collect()
    };
    let offered = list(offered);
    let chosen = list(chosen);
    !chosen.is_empty() && chosen.iter().all(|p| offered.contains(p))
}

/// The upstream end of a tunnel, switched and waiting for the client's end.
pub(crate) struct UpstreamEnd {
    stream: InspectedStream,
    /// What the upstream sent right behind its 101: the new protocol's first bytes.
    early: Bytes,
    recorder: Rc<dyn Recorder>,
    /// The tunnel counted in flight to its upstream until it ends.
    _in_flight: InFlight,
}

/// Where a client connection keeps the upstream end of its tunnel between the 101 being
/// answered and hyper handing the client's end back.
#[derive(Default)]
pub(crate) struct Slot(RefCell<Option<UpstreamEnd>>);

impl Slot {
    /// The upstream end, once a 101 has been answered on this connection.
    pub(crate) fn take(&self) -> Option<UpstreamEnd> {
        self.0.borrow_mut().take()
    }
}

/// A request that asks to switch protocols: from whom, and to what.
pub(crate) struct Asks<'a> {
    /// The client's connection.
    pub(crate) client: Client<'a>,
    /// What its `Upgrade` offers.
    pub(crate) offered: HeaderValue,
}

/// Where an upgrade may go: the route and its upstreams.
pub(crate) struct To<'a> {
    pub(crate) route: &'a Route,
    pub(crate) upstreams: &'a RouteUpstreams,
}

/// Forwards a request (its head and body) that asks to switch protocols over a
/// connection of its own; on a 101, leaves the upstream end in the client's tunnel slot.
/// Counts the outcome.
pub(crate) async fn forward(
    to: To<'_>,
    limits: &Limits,
    asks: Asks<'_>,
    recorder: &Rc<dyn Recorder>,
    request: (&mut Parts, Incoming),
    marks: &Marks<'_>,
) -> Result<Response<Body>, UpstreamError> {
    let result = switch(&to, limits, &asks, recorder, request, marks).await;
    let outcome = match &result {
        Ok(response) if response.status() == StatusCode::SWITCHING_PROTOCOLS => {
            UpgradeOutcome::Tunnelled
        }
        Ok(_) => UpgradeOutcome::Declined,
        Err(UpstreamError::Switch(..)) => UpgradeOutcome::Invalid,
        Err(_) => UpgradeOutcome::Failed,
    };
    recorder.upgrade(outcome);
    result
}

/// A connection of its own to one of the route's upstreams, chosen as for any request
/// (balance, ejections); one that cannot be reached is passed over for the next, as an
/// idempotent request's would be (nothing of the request has gone out yet).
async fn open(
    to: &To<'_>,
    limits: &Limits,
    recorder: &Rc<dyn Recorder>,
    marks: &Marks<'_>,
) -> Result<(usize, InspectedStream), UpstreamError> {
    let upstreams = to.upstreams;
    let mut tried = Tried::default();
    let mut last = None;
    loop {
        let Some(i) = upstreams.pick(tried) else {
            return Err(last.unwrap_or_else(|| {
                recorder.upstream_unavailable(&to.route.prefix);
                UpstreamError::Unavailable(to.route.prefix.clone(), upstreams.back_in())
            }));
        };
        tried.insert(i);
        let detail = marks.upstreams.get(i);
        marks.steps.step_with("connect upstream", None, detail);
        match upstreams.targets[i]
            .pool
            .open_own(limits.upstream_connect_timeout)
            .await
        {
            Ok(stream) => return Ok((i, stream)),
            Err(err) => {
                upstreams.failed(i, &err, &**recorder);
                tracing::info!(%err, "trying another upstream for an upgrade");
                last = Some(err);
            }
        }
    }
}

/// The request prepared as any proxied request is (`Outgoing`), refused before any
/// upstream is dialled if its declared body is over the limit; then sent on a connection
/// of its own.
async fn switch(
    to: &To<'_>,
    limits: &Limits,
    asks: &Asks<'_>,
    recorder: &Rc<dyn Recorder>,
    (head, body): (&mut Parts, Incoming),
    marks: &Marks<'_>,
) -> Result<Response<Body>, UpstreamError> {
    let mut outgoing = Outgoing::new(head, body, limits, asks.client.forwarding, asks.client.via)?;
    let (i, stream) = open(to, limits, recorder, marks).await?;
    let state = &to.upstreams.targets[i].state;
    let since = state.ejections();
    let in_flight = InFlight::enter(state);
    let on = (i, stream, in_flight);
    let result = exchange(to, on, limits, asks, recorder, &mut outgoing, marks).await;
    match &result {
        Ok(_) => to.upstreams.succeeded(i, since),
        Err(err) if err.is_upstream() => to.upstreams.failed(i, err, &**recorder),
        Err(_) => {}
    }
    result
}

/// The request and the upstream's answer on the connection `stream` to upstream `i`,
/// counted in flight to it for as long as the answer's body, or the tunnel, lasts.
#[allow(clippy::too_many_arguments)]
async fn exchange(
    to: &To<'_>,
    (i, stream, in_flight): (usize, InspectedStream, InFlight),
    limits: &Limits,
    asks: &Asks<'_>,
    recorder: &Rc<dyn Recorder>,
    outgoing: &mut Outgoing<'_>,
    marks: &Marks<'_>,
) -> Result<Response<Body>, UpstreamError> {
    let Asks { client, offered } = asks;
    let (route, upstream) = (to.route, &to.upstreams.targets[i].upstream);
    let detail = marks.upstreams.get(i);
    let mut request = outgoing.request(route, upstream)?;
    let headers = request.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, offered.clone());
    let on_connection = stream.info().id;
    let on = WaitsOn::Connection(on_connection);
    let mut abandon = Abandon(Some(stream.transport().clone()));
    let (mut sender, connection) = hyper::client::conn::http1::Builder::new()
        .max_buf_size(super::pool::UPSTREAM_READ_BUF)
        .handshake(TokioIo::new(stream))
        .await
        .map_err(|e| UpstreamError::Exchange(upstream.url.clone(), e.to_string()))?;
    // The connection hands its stream back after a 101 instead of closing it.
    let (parts_tx, parts_rx) = tokio::sync::oneshot::channel();
    // Listed under the upstream connection it drives.
    weft::observe::with_connection(Some(on_connection), || {
        Reactor::current().spawn(async move {
            let _ = parts_tx.send(connection.without_shutdown().await);
        });
    });
    marks.steps.step_with("response head", Some(on), detail);
    in_flight.requests.fetch_add(1, Relaxed);
    let response = send(&mut sender, request, upstream, limits).await?;
    abandon.0 = None;
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        super::a_status(&response, upstream)?;
        return Ok(respond(
            route,
            &to.upstreams.targets[i],
            (response, None),
            in_flight,
            limits.upstream_timeout,
        ));
    }
    let switch = |why: &str| UpstreamError::Switch(upstream.url.clone(), why.to_owned());
    let chosen = match response.headers().get(header::UPGRADE) {
        Some(chosen) if offers(offered, chosen) => chosen.clone(),
        Some(_) => return Err(switch("to a protocol the client did not offer")),
        None => return Err(switch("without saying to what (no Upgrade)")),
    };
    let parts = tokio::time::timeout(limits.upstream_timeout, parts_rx)
        .await
        .ok()
        .and_then(Result::ok)
        .ok_or_else(|| switch("but its connection was not handed over"))?
        .map_err(|e| UpstreamError::Exchange(upstream.url.clone(), e.to_string()))?;
    *client.tunnel.0.borrow_mut() = Some(UpstreamEnd {
        stream: parts.io.into_inner(),
        early: parts.read_buf,
        recorder: recorder.clone(),
        _in_flight: in_flight,
    });
    let (mut head, _) = response.into_parts();
    strip_hop_by_hop(&mut head.headers);
    head.headers
        .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    head.headers.insert(header::UPGRADE, chosen);
    Ok(Response::from_parts(head, body::empty()))
}

/// Counts a tunnel open while it lives.
struct Open(Rc<dyn Recorder>);

impl Open {
    fn new(recorder: Rc<dyn Recorder>) -> Self {
        recorder.tunnels(1);
        Self(recorder)
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.tunnels(-1);
    }
}

/// Copies between the client's end (`client`, on the connection `transport`, with
/// `early`, the bytes it sent right behind its request) and `upstream` until the tunnel
/// ends (see the module's doc).
pub(crate) async fn tunnel<C>(
    mut client: C,
    early: Bytes,
    transport: &Transport,
    upstream: UpstreamEnd,
) where
    C: AsyncRead + AsyncWrite + Unpin,
{
    let UpstreamEnd {
        stream: mut up,
        early: up_early,
        recorder,
        _in_flight,
    } = upstream;
    let _open = Open::new(recorder);
    let up_transport = up.transport().clone();
    up_transport.set_idle_timeout(transport.idle_timeout());
    let started = async {
        up.write_all(&early).await?;
        client.write_all(&up_early).await?;
        tokio::io::copy_bidirectional(&mut client, &mut up).await
    };
    let mut copying = pin!(started);
    // A drain (shutdown, the service's removal) does not end a tunnel: like a tcp-proxy
    // pair it cannot tell a quiet stream from one between messages, so it goes on until
    // a side closes or the drain's deadline aborts it (a reset at both ends).
    let cut = |t: &Transport| t.is_disconnecting() && !t.is_draining();
    let ended = poll_fn(|cx| {
        if cut(transport) || cut(&up_transport) {
            return Poll::Ready(None);
        }
        copying.as_mut().poll(cx).map(Some)
    })
    .await;
    if let Some(Err(err)) = ended {
        tracing::debug!(connection = %transport.id(), upstream = %up_transport.id(), %err, "tunnel ended with an error");
    }
}

#[cfg(test)]
mod tests {
    use http::Request;

    use super::*;

    fn request(version: Version, headers: &[(&str, &str)]) -> Parts {
        let mut builder = Request::get("/chat").version(version);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).unwrap().into_parts().0
    }

    #[test]
    fn only_an_http11_request_whose_connection_names_upgrade_asks_to_switch() {
        let asks = [
            ("connection", "keep-alive, Upgrade"),
            ("upgrade", "websocket"),
        ];
        assert_eq!(
            asked(&request(Version::HTTP_11, &asks)).unwrap(),
            "websocket"
        );
        let two = [
            ("connection", "upgrade"),
            ("upgrade", "h2c"),
            ("upgrade", "shout/2"),
        ];
        // h2c is never passed on (it would tunnel HTTP/2 past the routes): the rest is.
        assert_eq!(asked(&request(Version::HTTP_11, &two)).unwrap(), "shout/2");
        let h2c = [
            ("connection", "Upgrade, HTTP2-Settings"),
            ("upgrade", "H2C"),
        ];
        assert!(asked(&request(Version::HTTP_11, &h2c)).is_none());
        let listed = [("connection", "upgrade"), ("upgrade", "h2c, websocket")];
        assert_eq!(
            asked(&request(Version::HTTP_11, &listed)).unwrap(),
            "websocket"
        );
        assert!(asked(&request(Version::HTTP_11, &[("upgrade", "websocket")])).is_none());
        assert!(asked(&request(Version::HTTP_11, &[("connection", "upgrade")])).is_none());
        assert!(asked(&request(Version::HTTP_10, &asks)).is_none());
        assert!(asked(&request(Version::HTTP_2, &asks)).is_none());
        // With a body, the request goes as any other (its body read ahead).
        let with = |field, value| {
            let mut fields = asks.to_vec();
            fields.push((field, value));
            asked(&request(Version::HTTP_11, &fields))
        };
        assert!(with("content-length", "2000000").is_none());
        assert!(with("transfer-encoding", "chunked").is_none());
        assert_eq!(with("content-length", "0").unwrap(), "websocket");
    }

    #[test]
    fn a_server_may_switch_only_to_what_the_client_offered() {
        let offered = HeaderValue::from_static("WebSocket, shout/2");
        let ok = |chosen| offers(&offered, &HeaderValue::from_static(chosen));
        assert!(ok("websocket"));
        assert!(ok("shout/2, websocket"));
        assert!(!ok("shout"));
        assert!(!ok("h2c"));
        assert!(!ok(""));
    }
}

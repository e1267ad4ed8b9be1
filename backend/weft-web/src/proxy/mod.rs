//! The reverse proxy: one upstream HTTP/1.1 exchange per request, over a connection the
//! reactor opens (so it is registered, counted and listed under the service), with
//! bodies streamed both ways.
//!
//! A request that asks to switch protocols (`Connection: upgrade` with `Upgrade`) goes
//! through [`upgrade`] instead: its own upstream connection, and a tunnel after the 101.

use std::net::IpAddr;
use std::rc::Rc;
use std::time::Duration;

use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use weft::defer::{StepDetail, Steps, WaitsOn};
use weft::{ConnectError, Reactor, Transport};

pub(crate) mod upgrade;

use crate::body::{Body, BoxError};
use crate::config::{Limits, Route, Upstream};
use crate::headers::{add_forwarded, strip_hop_by_hop};
use crate::metrics::{Recorder, Refusal};

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
    /// The request body is larger than the limit.
    #[error("request body larger than {0} bytes")]
    BodyTooLarge(u64),
    /// The client's request body broke off or was malformed (bad chunked framing, say).
    #[error("the request body is malformed or incomplete: {0}")]
    RequestBody(String),
}

impl UpstreamError {
    /// The status the client is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::ConnectTimeout(..) | Self::Timeout(..) => StatusCode::GATEWAY_TIMEOUT,
            Self::BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::RequestBody(_) => StatusCode::BAD_REQUEST,
            _ => StatusCode::BAD_GATEWAY,
        }
    }

    /// Whether the upstream is at fault (and counted), rather than the client.
    pub fn is_upstream(&self) -> bool {
        self.refusal().is_none()
    }

    /// Why the client's request was refused, when the client is at fault.
    pub fn refusal(&self) -> Option<Refusal> {
        match self {
            Self::BodyTooLarge(_) => Some(Refusal::BodyTooLarge),
            Self::RequestBody(_) => Some(Refusal::Body),
            _ => None,
        }
    }
}

/// A failure reading the client's request body, kept apart from the upstream's failures
/// when hyper reports either as the exchange failing.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct ClientBodyError(hyper::Error);

/// The path and query to ask the upstream for: the request's, with the route's prefix
/// replaced by the upstream's base path when it has one.
pub(crate) fn upstream_target(route: &Route, uri: &Uri) -> String {
    let path = uri.path();
    let base = &route.upstream.base_path;
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

/// Where `forward` marks the request chain's named steps, and the upstream's name it
/// gives them.
pub(crate) struct Marks<'a> {
    pub(crate) steps: &'a Steps,
    pub(crate) upstream: Option<&'a StepDetail>,
}

/// Aborts the upstream connection if the exchange ends before its response head (dropped
/// by a cancel from the inspector or by the client going away, or failed): it is
/// mid-request and must not be reused.
struct Abandon(Option<Transport>);

impl Drop for Abandon {
    fn drop(&mut self) {
        if let Some(transport) = self.0.take() {
            transport.abort_connection();
        }
    }
}

/// Forwards `request` along `route`, reporting the upstream connection under `service`.
pub(crate) async fn forward(
    service: &str,
    route: &Route,
    limits: &Limits,
    client: Client<'_>,
    recorder: &Rc<dyn Recorder>,
    request: Request<Incoming>,
    marks: &Marks<'_>,
) -> Result<Response<Body>, UpstreamError> {
    if let Some(offered) = upgrade::asked(&request) {
        // Never pooled: after a 101 its upstream connection is the tunnel's.
        let asks = upgrade::Asks { client, offered };
        return upgrade::forward(service, route, limits, asks, recorder, request, marks).await;
    }
    let upstream = &route.upstream;
    let request = outgoing(route, limits, client.addr, client.secure, request)?;
    marks
        .steps
        .step_with("connect upstream", None, marks.upstream);
    let stream = connect(service, upstream, limits.upstream_connect_timeout).await?;
    let on = WaitsOn::Connection(stream.info().id);
    let mut abandon = Abandon(Some(stream.transport().clone()));
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| UpstreamError::Exchange(upstream.url.clone(), e.to_string()))?;
    let url = upstream.url.clone();
    Reactor::current().spawn(async move {
        if let Err(err) = connection.await {
            tracing::debug!(upstream = %url, %err, "upstream connection ended with an error");
        }
    });
    marks
        .steps
        .step_with("response head", Some(on), marks.upstream);
    let response = send(&mut sender, request, upstream, limits).await?;
    abandon.0 = None;
    // RFC 9110 §15.2.2: a server switches protocols only when the request asked to
    // (requests that ask go through `upgrade`); the client could not follow.
    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
        return Err(UpstreamError::Switch(
            upstream.url.clone(),
            "for a request that did not ask to".into(),
        ));
    }
    Ok(respond(route, response))
}

/// What forwarding needs of the client's connection.
pub(crate) struct Client<'a> {
    /// Its address, for `Forwarded`.
    pub(crate) addr: Option<IpAddr>,
    /// Whether it came over TLS.
    pub(crate) secure: bool,
    /// Where the upstream end of a tunnel goes after a 101.
    pub(crate) tunnel: &'a upgrade::Slot,
}

/// The body sent upstream: the client's, cut off past the limit.
type UpstreamBody = http_body_util::combinators::UnsyncBoxBody<bytes::Bytes, BoxError>;

/// The request as it goes upstream: the size limit checked, the target rewritten for
/// the upstream, hop-by-hop headers removed and the client named in `Forwarded`.
fn outgoing(
    route: &Route,
    limits: &Limits,
    client: Option<IpAddr>,
    secure: bool,
    request: Request<Incoming>,
) -> Result<Request<UpstreamBody>, UpstreamError> {
    let upstream = &route.upstream;
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limits.max_body_bytes) {
        return Err(UpstreamError::BodyTooLarge(limits.max_body_bytes));
    }
    let (mut parts, body) = request.into_parts();
    let target = upstream_target(route, &parts.uri);
    parts.uri = target
        .parse()
        .map_err(|e| UpstreamError::Exchange(upstream.url.clone(), format!("bad target: {e}")))?;
    parts.version = http::Version::HTTP_11;
    let host = parts.headers.get(header::HOST).cloned();
    strip_hop_by_hop(&mut parts.headers);
    add_forwarded(&mut parts.headers, client, host.as_ref(), secure);
    if host.is_none()
        && let Ok(v) = HeaderValue::from_str(&upstream.authority())
    {
        parts.headers.insert(header::HOST, v);
    }
    let max = usize::try_from(limits.max_body_bytes).unwrap_or(usize::MAX);
    let body = Limited::new(body.map_err(ClientBodyError), max).boxed_unsync();
    Ok(Request::from_parts(parts, body))
}

/// Sends `request` and waits for the response head, up to the upstream timeout.
async fn send(
    sender: &mut hyper::client::conn::http1::SendRequest<UpstreamBody>,
    request: Request<UpstreamBody>,
    upstream: &Upstream,
    limits: &Limits,
) -> Result<Response<Incoming>, UpstreamError> {
    tokio::time::timeout(limits.upstream_timeout, sender.send_request(request))
        .await
        .map_err(|_| UpstreamError::Timeout(upstream.url.clone(), limits.upstream_timeout))?
        .map_err(|e| match client_fault(&e) {
            Some(ClientFault::TooLarge) => UpstreamError::BodyTooLarge(limits.max_body_bytes),
            Some(ClientFault::Body(reason)) => UpstreamError::RequestBody(reason),
            None => UpstreamError::Exchange(upstream.url.clone(), e.to_string()),
        })
}

/// The upstream's response as the client gets it: without its hop-by-hop headers, and
/// with the route's `Cache-Control` when it has none of its own.
fn respond(route: &Route, response: Response<Incoming>) -> Response<Body> {
    let (mut parts, body) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    if let Some(value) = &route.cache_control {
        parts
            .headers
            .entry(header::CACHE_CONTROL)
            .or_insert_with(|| value.clone());
    }
    Response::from_parts(parts, body.map_err(Into::into).boxed_unsync())
}

enum ClientFault {
    TooLarge,
    Body(String),
}

/// The client's part in a failed exchange: the request body it sent surfaces here as the
/// cause of hyper's error.
fn client_fault(err: &hyper::Error) -> Option<ClientFault> {
    let mut cause = std::error::Error::source(err);
    while let Some(c) = cause {
        if c.is::<http_body_util::LengthLimitError>() {
            return Some(ClientFault::TooLarge);
        }
        if let Some(ClientBodyError(e)) = c.downcast_ref() {
            return Some(ClientFault::Body(e.to_string()));
        }
        cause = c.source();
    }
    None
}

pub(crate) async fn connect(
    service: &str,
    upstream: &Upstream,
    timeout: Duration,
) -> Result<weft::InspectedStream, UpstreamError> {
    let host = upstream.host.replace(':', "\\:");
    let endpoint = format!(
        "tcp:{host}:{}:timeout={}",
        upstream.port,
        timeout.as_secs_f64()
    );
    let mut stream = Reactor::current()
        .connect_stream(service, &endpoint)
        .await
        .map_err(|e| match e {
            ConnectError::Refused { .. } => UpstreamError::Refused(upstream.url.clone()),
            ConnectError::TimedOut { after, .. } => {
                UpstreamError::ConnectTimeout(upstream.url.clone(), after)
            }
            other => UpstreamError::Connect(upstream.url.clone(), other.to_string()),
        })?;
    let _ = stream.set_nodelay(true);
    // At shutdown the exchange in flight finishes; the connection ends with it.
    stream.keep_reading_when_closing();
    Ok(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(prefix: &str, upstream: &str, uri: &str) -> String {
        let route = Route::new(prefix, upstream).unwrap();
        upstream_target(&route, &uri.parse().unwrap())
    }

    #[test]
    fn paths_are_forwarded_unchanged_without_a_base_path() {
        assert_eq!(
            target("/api/", "http://u:1", "/api/users?id=3"),
            "/api/users?id=3"
        );
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

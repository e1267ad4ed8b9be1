//! The reverse proxy: one upstream HTTP/1.1 exchange per request, over a connection the
//! reactor opens (so it is registered, counted and listed under the service), with
//! bodies streamed both ways.

use std::net::IpAddr;
use std::time::Duration;

use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use weft::{ConnectError, Reactor};

use crate::body::Body;
use crate::config::{Limits, Route, Upstream};
use crate::headers::{add_forwarded, strip_hop_by_hop};

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
    /// The exchange broke (the upstream closed, or sent something that is not HTTP).
    #[error("upstream {0} failed: {1}")]
    Exchange(String, String),
    /// The request body is larger than the limit.
    #[error("request body larger than {0} bytes")]
    BodyTooLarge(u64),
}

impl UpstreamError {
    /// The status the client is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::ConnectTimeout(..) | Self::Timeout(..) => StatusCode::GATEWAY_TIMEOUT,
            Self::BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::BAD_GATEWAY,
        }
    }

    /// Whether the upstream is at fault (and counted), rather than the client.
    pub fn is_upstream(&self) -> bool {
        !matches!(self, Self::BodyTooLarge(_))
    }
}

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

/// Forwards `request` along `route`, reporting the upstream connection under `service`.
pub(crate) async fn forward(
    service: &str,
    route: &Route,
    limits: &Limits,
    client: Option<IpAddr>,
    request: Request<Incoming>,
) -> Result<Response<Body>, UpstreamError> {
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
    add_forwarded(&mut parts.headers, client, host.as_ref());
    if host.is_none()
        && let Ok(v) = HeaderValue::from_str(&upstream.authority())
    {
        parts.headers.insert(header::HOST, v);
    }
    let max = usize::try_from(limits.max_body_bytes).unwrap_or(usize::MAX);
    let body = Limited::new(body, max).boxed_unsync();
    let request = Request::from_parts(parts, body);

    let stream = connect(service, upstream, limits.upstream_connect_timeout).await?;
    let exchange = |e: hyper::Error| UpstreamError::Exchange(upstream.url.clone(), e.to_string());
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(exchange)?;
    let url = upstream.url.clone();
    Reactor::current().spawn(async move {
        if let Err(err) = connection.await {
            tracing::debug!(upstream = %url, %err, "upstream connection ended with an error");
        }
    });
    let response = tokio::time::timeout(limits.upstream_timeout, sender.send_request(request))
        .await
        .map_err(|_| UpstreamError::Timeout(upstream.url.clone(), limits.upstream_timeout))?
        .map_err(|e| {
            // A request body over the limit surfaces here as the body's error.
            let over = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            if over {
                UpstreamError::BodyTooLarge(limits.max_body_bytes)
            } else {
                exchange(e)
            }
        })?;
    let (mut parts, body) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    Ok(Response::from_parts(
        parts,
        body.map_err(Into::into).boxed_unsync(),
    ))
}

async fn connect(
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
    }
}

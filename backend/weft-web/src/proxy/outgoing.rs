//! The request as it goes upstream, kept across attempts: a request that did not reach
//! one upstream can go to another, and one without a body, or with one read whole, can be
//! sent again.

use http::header::{self, HeaderName, HeaderValue};
use http::request::Parts;
use http::{HeaderMap, Method, Request};
use http_body_util::Limited;
use hyper::body::{Body as _, Incoming};

use super::body::{self, Ahead, ClientBody, ReadAhead, ReqBody, Whole};
use super::{UpstreamError, upstream_uri};
use crate::behind::Claim;
use crate::client_body::Paced;
use crate::config::{Limits, Route, Upstream};
use crate::headers::{
    Forwarding, Via, drop_underscored, join_cookies, one_content_length, strip_hop_by_hop,
};
use crate::metrics::BodyBuffered;

/// What goes upstream, kept across attempts: the client's head (hop-by-hop headers
/// removed, `Forwarded` added), where it lies in the request's future, and the body until
/// it is sent. Borrowed rather than moved here: moved, it would be copied and held twice.
pub(super) struct Outgoing<'h> {
    /// The method, the client's path and query in normal form, and the header fields
    /// (taken out by a request, and put back if it is not sent).
    head: &'h mut Parts,
    /// Whether the client named a host (otherwise each upstream's authority is sent).
    client_host: bool,
    /// The client's body, until a request takes it.
    body: Option<ReqBody>,
    /// The client sent no body: the request can be made again with an empty one.
    bodiless: bool,
    /// The client's body read whole before any upstream was contacted, kept when the
    /// request may be made again with it (its method is idempotent).
    whole: Option<Whole>,
}

impl<'h> Outgoing<'h> {
    /// A request whose declared body is over `limits.max_body_bytes` is refused here,
    /// before any upstream is dialled; a body that declares no length is cut off past it
    /// as it is read, and fails when nothing of it comes for `limits.request_timeout`.
    pub(super) fn new(
        head: &'h mut Parts,
        body: Incoming,
        limits: &Limits,
        forwarding: &Forwarding,
        via: &Via,
    ) -> Result<Self, UpstreamError> {
        let declared = head
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limits.max_body_bytes) {
            return Err(UpstreamError::BodyTooLarge(limits.max_body_bytes));
        }
        let headers = &mut head.headers;
        if via.came_through(headers) {
            return Err(UpstreamError::Loop(via.name().to_owned()));
        }
        let host = headers.get(header::HOST).cloned();
        strip_hop_by_hop(headers);
        drop_underscored(headers);
        if head.version == http::Version::HTTP_2 {
            join_cookies(headers);
        }
        // h2 refuses lengths that differ but lets the same one come on several lines,
        // which an HTTP/1.1 upstream may refuse (nginx does) and a sender MUST NOT
        // forward as a list (RFC 9110 §8.6); and `010` goes on as `10`: one length, in
        // digits without leading zeros.
        one_content_length(headers);
        // The client was told to go on (100 Continue) by hyper as its body was read; the
        // upstream is not to wait for a go-ahead of its own (nginx clears it too).
        headers.remove(header::EXPECT);
        // Room for the forwarding fields and `Via` at once.
        headers.reserve(Forwarding::FIELDS + 1);
        forwarding.add(headers, host.as_ref());
        // A client a trusted proxy in front named: its address and scheme, not the
        // proxy's.
        if let Some(claim) = head.extensions.get::<Claim>() {
            claim.amend(headers);
        }
        via.add(headers, head.version);
        let bodiless = body.is_end_stream();
        // Nothing to read of a body that has ended (none came): sent as none. A method
        // that gives a body meaning says its empty one (RFC 9110 §8.6: an HTTP/2 POST
        // ended with its HEADERS has no length to pass on, and some upstreams answer 411).
        let body = if bodiless {
            if matches!(head.method, Method::POST | Method::PUT | Method::PATCH)
                && !head.headers.contains_key(header::CONTENT_LENGTH)
            {
                head.headers
                    .insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
            }
            ReqBody::Empty
        } else {
            let max = usize::try_from(limits.max_body_bytes).unwrap_or(usize::MAX);
            let paced = Paced::new(body, limits.request_timeout);
            ReqBody::Client(Box::new(ClientBody::streamed(Limited::new(paced, max))))
        };
        Ok(Self {
            head,
            client_host: host.is_some(),
            body: Some(body),
            bodiless,
            whole: None,
        })
    }

    /// Reads the client's body ahead of any upstream (`proxy::body`) as `how` says (a
    /// limit above 0); says how much it read. A body that fails as it is read (too large, paced out,
    /// broken off, or not in within the deadline) fails the request here, before any
    /// upstream is contacted. A body read whole is sent with its length, and kept to send
    /// again when the request may go again.
    pub(super) async fn read_ahead(
        &mut self,
        how: ReadAhead<'_>,
        limits: &Limits,
    ) -> Result<BodyBuffered, UpstreamError> {
        let Some(reading) = self.body.as_mut().and_then(ReqBody::reading) else {
            return Ok(BodyBuffered::None);
        };
        let (ahead, buffered) = body::read_ahead(reading, how)
            .await
            .map_err(|e| super::body_error(&*e, limits))?;
        self.body = Some(match ahead {
            Ahead::Whole(whole) => {
                // Its length, when the client sent it in chunks or, over HTTP/2, without one.
                self.head
                    .headers
                    .entry(header::CONTENT_LENGTH)
                    .or_insert_with(|| HeaderValue::from(whole.len()));
                let body = whole.body();
                if is_idempotent(&self.head.method) {
                    self.whole = Some(whole);
                }
                body
            }
            Ahead::Part(part) => ReqBody::Client(Box::new(part)),
        });
        Ok(buffered)
    }

    /// Whether the request is a HEAD: its response has no body, whatever its head says.
    pub(super) fn is_head(&self) -> bool {
        self.head.method == Method::HEAD
    }

    /// Whether the client sent no body.
    pub(super) fn bodiless(&self) -> bool {
        self.bodiless
    }

    /// Whether no part of the body is gone: the request may go to another upstream when
    /// connecting to one failed. Whatever its method: nothing of it was sent, so it
    /// cannot have been applied (RFC 9110 §9.2.2), as nginx's `proxy_next_upstream
    /// error` retries a POST whose connection failed.
    pub(super) fn may_retry(&self) -> bool {
        self.body.is_some() || self.may_resend_body()
    }

    /// Whether the request may be sent again even after it went out: idempotent, and
    /// without a body or with one read whole.
    fn may_replay(&self) -> bool {
        is_idempotent(&self.head.method) && self.may_resend_body()
    }

    /// Whether the body can be sent again once sent: there is none, or it was read whole.
    fn may_resend_body(&self) -> bool {
        self.bodiless || self.whole.is_some()
    }

    /// What the request needs to go again if the connection it is sent on fails before
    /// its answer, when it may (see `may_replay`): its header fields, which
    /// [`request`](Self::request) moves into the request (the method and target stay
    /// here). Made before that.
    pub(super) fn replay_copy(&self) -> Option<Replay> {
        self.may_replay().then(|| {
            let mut fields = Vec::with_capacity(self.head.headers.len());
            fields.extend(
                self.head
                    .headers
                    .iter()
                    .map(|(n, v)| (n.clone(), v.clone())),
            );
            Replay(fields)
        })
    }

    /// Puts back the header fields of a request that went out on a connection that failed
    /// before its answer, to make it again.
    pub(super) fn replay(&mut self, copy: Replay) {
        let mut headers = HeaderMap::with_capacity(copy.0.len());
        for (name, value) in copy.0 {
            headers.append(name, value);
        }
        self.head.headers = headers;
    }

    /// The request for `upstream`, with the client's body or, when that is gone, the
    /// body read whole again, or an empty one when there was none.
    pub(super) fn request(
        &mut self,
        route: &Route,
        upstream: &Upstream,
    ) -> Result<Request<ReqBody>, UpstreamError> {
        let bad = |reason: String| UpstreamError::Exchange(upstream.url.clone(), reason);
        let body = match (self.body.take(), &self.whole) {
            (Some(body), _) => body,
            (None, Some(whole)) => whole.body(),
            (None, None) if self.bodiless => ReqBody::Empty,
            (None, None) => return Err(bad("the request body was already sent".into())),
        };
        let mut request = Request::new(body);
        *request.method_mut() = self.head.method.clone();
        *request.uri_mut() = upstream_uri(route, upstream, &self.head.uri)?;
        // Taken, not copied: a request that is not sent comes back with them.
        *request.headers_mut() = std::mem::take(&mut self.head.headers);
        if !self.client_host
            && let Ok(v) = HeaderValue::from_str(&upstream.authority())
        {
            request.headers_mut().insert(header::HOST, v);
        }
        // The route's own fields (`request_headers`), over the client's; an attempt that
        // is not sent gives them back with the rest, and the next sets them again.
        crate::config::set_fields(request.headers_mut(), &route.request_headers);
        // A body of unknown length goes chunked: hyper's client would send it with a GET,
        // HEAD or CONNECT as no body at all, dropping it, unless told so.
        let body = request.body();
        if !body.is_end_stream()
            && body.size_hint().exact().is_none()
            && !request.headers().contains_key(header::CONTENT_LENGTH)
        {
            request.headers_mut().insert(
                header::TRANSFER_ENCODING,
                HeaderValue::from_static("chunked"),
            );
        }
        Ok(request)
    }

    /// Takes back a request that was not sent: its body can go with the next attempt.
    pub(super) fn give_back(&mut self, request: Request<ReqBody>) {
        let (parts, body) = request.into_parts();
        self.head.headers = parts.headers;
        if !self.client_host {
            self.head.headers.remove(header::HOST);
        }
        self.body = Some(body);
    }
}

/// A request's header fields, kept to send it again (`Outgoing::replay_copy`), in the
/// map's order. A list, not a map: the copy is made for every idempotent request without
/// a body on a reused connection and almost never used, and a list is one allocation
/// where a map's clone is two and a copy of its index.
pub(super) struct Replay(Vec<(HeaderName, HeaderValue)>);

/// RFC 9110 §9.2.2: GET, HEAD, PUT, DELETE, OPTIONS and TRACE may be repeated.
fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::PUT | Method::DELETE | Method::OPTIONS | Method::TRACE
    )
}

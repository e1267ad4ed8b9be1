//! The bounded labels the service's series use: a request's method and status class, why
//! a request was refused, what became of one that asked to switch protocols, and how
//! much of a proxied body was read before its upstream was contacted.

use http::{Method, StatusCode};

/// What became of a request that asked to switch protocols, as a bounded label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum UpgradeOutcome {
    /// The upstream switched: the 101 was passed on and the connections tunnelled.
    Tunnelled,
    /// The upstream answered without switching; the client got that answer.
    Declined,
    /// The upstream switched to a protocol the client did not offer, or named none (502).
    Invalid,
    /// The upstream could not be reached, or failed or timed out before answering.
    Failed,
}

impl UpgradeOutcome {
    /// Every outcome, in [`index`](Self::index) order.
    pub const ALL: [Self; 4] = [Self::Tunnelled, Self::Declined, Self::Invalid, Self::Failed];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tunnelled => "tunnelled",
            Self::Declined => "declined",
            Self::Invalid => "invalid",
            Self::Failed => "failed",
        }
    }

    /// Its position in [`ALL`](Self::ALL), for array-indexed caches.
    pub fn index(self) -> usize {
        self as usize
    }
}

/// How much of a proxied request's body was read before an upstream was contacted, as a
/// bounded label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BodyBuffered {
    /// All of it, into memory: the upstream got the request whole.
    Whole,
    /// All of it, the part past `body_buffer_bytes` into a temporary file: the upstream
    /// got the request whole.
    File,
    /// The first part (it was longer than `body_buffer_bytes`, and there were no files or
    /// no room in them for all of it); the rest was streamed as it came.
    Part,
    /// None: streamed as it came (no room in the service's buffers or in the peer's share
    /// of them, or buffering is off).
    None,
}

impl BodyBuffered {
    /// Every value, in [`index`](Self::index) order.
    pub const ALL: [Self; 4] = [Self::Whole, Self::File, Self::Part, Self::None];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Whole => "whole",
            Self::File => "file",
            Self::Part => "part",
            Self::None => "none",
        }
    }

    /// Its position in [`ALL`](Self::ALL), for array-indexed caches.
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Why a request was refused, as a bounded label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Refusal {
    /// The request head was not HTTP (400).
    Malformed,
    /// The request head had more bytes or more header lines than allowed (431).
    HeadTooLarge,
    /// No `Host` in an HTTP/1.1 request, several, or an invalid one (400).
    Host,
    /// A path that climbs above the root, or whose encoded dots or slashes change where it
    /// leads (400).
    Path,
    /// A method the service does not serve at all: `CONNECT` (501).
    Method,
    /// A request body that broke off or was malformed, such as bad chunked framing (400).
    Body,
    /// A request body over the limit (413).
    BodyTooLarge,
    /// A `Range` with more ranges than served at once, or overlapping ones: the whole
    /// file is sent instead (200).
    Ranges,
    /// An HTTP/2 connection ended with GOAWAY for a protocol error or a broken limit,
    /// such as streams reset faster than they are served (counted once per connection).
    Protocol,
    /// The request's chain was cancelled from the inspector (the dashboard's cancel on its
    /// Deferred): the exchange was abandoned and the client answered 503.
    Cancelled,
    /// A request head begun but not finished within `request_timeout` (an HTTP/1.1 head
    /// sent too slowly, an HTTP/2 HEADERS frame whose CONTINUATION never ends it): the
    /// connection was closed.
    HeadTimeout,
    /// A request body of which nothing came for `request_timeout` (the head, or the last
    /// piece, came longer ago): answered 408, and over HTTP/2 only that stream is reset.
    BodyTimeout,
    /// An HTTP/2 request from a peer that already has as many requests in flight, over all
    /// its connections, as it may hold connections (`max_connections_per_peer`): 503.
    LimitPeer,
    /// A request target longer than hyper takes (65,534 bytes), in a head within
    /// `max_header_bytes` (414).
    UriTooLong,
    /// An HTTP/2 response of which the client took no next piece within the idle timeout
    /// (its window kept shut) while its connection went on: the stream was reset, as an
    /// HTTP/1.1 connection whose client stops reading is closed.
    SendTimeout,
    /// An HTTP/1.1 request in a transfer coding other than `chunked` alone (`gzip,
    /// chunked`): 501, as its body can be neither served nor passed on.
    TransferCoding,
    /// An HTTP/2 stream reset for the client's error (a malformed request, a frame that
    /// breaks flow control or the stream's state, a stream past the concurrency limit):
    /// that stream ends, the connection's others go on.
    StreamError,
    /// A request to proxy whose `Via` says it came through this gateway before: a route's
    /// upstream leads back here (508).
    Loop,
    /// A request over its client's `rate_limit`, the service's or its route's (429).
    RateLimited,
    /// A request from a client the service's or its route's `allow` and `deny` refuse
    /// (403).
    Forbidden,
}

impl Refusal {
    /// Every reason, in [`index`](Self::index) order.
    pub const ALL: [Self; 20] = [
        Self::Malformed,
        Self::HeadTooLarge,
        Self::Host,
        Self::Path,
        Self::Method,
        Self::Body,
        Self::BodyTooLarge,
        Self::Ranges,
        Self::Protocol,
        Self::Cancelled,
        Self::HeadTimeout,
        Self::BodyTimeout,
        Self::LimitPeer,
        Self::UriTooLong,
        Self::SendTimeout,
        Self::TransferCoding,
        Self::StreamError,
        Self::Loop,
        Self::RateLimited,
        Self::Forbidden,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::HeadTooLarge => "head_too_large",
            Self::Host => "host",
            Self::Path => "path",
            Self::Method => "method",
            Self::Body => "body",
            Self::BodyTooLarge => "body_too_large",
            Self::Ranges => "ranges",
            Self::Protocol => "protocol",
            Self::Cancelled => "cancelled",
            Self::HeadTimeout => "head_timeout",
            Self::BodyTimeout => "body_timeout",
            Self::LimitPeer => "limit_peer",
            Self::UriTooLong => "uri_too_long",
            Self::SendTimeout => "send_timeout",
            Self::TransferCoding => "transfer_coding",
            Self::StreamError => "stream_error",
            Self::Loop => "loop",
            Self::RateLimited => "rate_limited",
            Self::Forbidden => "forbidden",
        }
    }

    /// Its position in [`ALL`](Self::ALL), for array-indexed caches.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The name a dashboard's counter of it goes by: `refused_` and its label.
    pub fn counter_name(self) -> &'static str {
        match self {
            Self::Malformed => "refused_malformed",
            Self::HeadTooLarge => "refused_head_too_large",
            Self::Host => "refused_host",
            Self::Path => "refused_path",
            Self::Method => "refused_method",
            Self::Body => "refused_body",
            Self::BodyTooLarge => "refused_body_too_large",
            Self::Ranges => "refused_ranges",
            Self::Protocol => "refused_protocol",
            Self::Cancelled => "refused_cancelled",
            Self::HeadTimeout => "refused_head_timeout",
            Self::BodyTimeout => "refused_body_timeout",
            Self::LimitPeer => "refused_limit_peer",
            Self::UriTooLong => "refused_uri_too_long",
            Self::SendTimeout => "refused_send_timeout",
            Self::TransferCoding => "refused_transfer_coding",
            Self::StreamError => "refused_stream_error",
            Self::Loop => "refused_loop",
            Self::RateLimited => "refused_rate_limited",
            Self::Forbidden => "refused_forbidden",
        }
    }
}

#[cfg(test)]
#[test]
fn each_refusal_s_counter_is_named_by_its_label() {
    for reason in Refusal::ALL {
        assert_eq!(
            reason.counter_name(),
            format!("refused_{}", reason.as_str())
        );
    }
}

/// A request method as a bounded label: the common ones by name, the rest as `other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MethodLabel {
    /// GET.
    Get,
    /// HEAD.
    Head,
    /// POST.
    Post,
    /// PUT.
    Put,
    /// DELETE.
    Delete,
    /// PATCH.
    Patch,
    /// OPTIONS.
    Options,
    /// Anything else, and requests too malformed to have a method.
    Other,
}

impl MethodLabel {
    /// Every label, in [`index`](Self::index) order.
    pub const ALL: [Self; 8] = [
        Self::Get,
        Self::Head,
        Self::Post,
        Self::Put,
        Self::Delete,
        Self::Patch,
        Self::Options,
        Self::Other,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Head => "HEAD",
            Self::Post => "POST",
            Self::Put => "PUT",
            Self::Delete => "DELETE",
            Self::Patch => "PATCH",
            Self::Options => "OPTIONS",
            Self::Other => "other",
        }
    }

    /// Its position in [`ALL`](Self::ALL), for array-indexed caches.
    pub fn index(self) -> usize {
        self as usize
    }
}

impl From<&Method> for MethodLabel {
    fn from(m: &Method) -> Self {
        match *m {
            Method::GET => Self::Get,
            Method::HEAD => Self::Head,
            Method::POST => Self::Post,
            Method::PUT => Self::Put,
            Method::DELETE => Self::Delete,
            Method::PATCH => Self::Patch,
            Method::OPTIONS => Self::Options,
            _ => Self::Other,
        }
    }
}

/// A status code's class (`2xx`), the bounded form of a status in labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StatusClass {
    /// 1xx.
    Informational,
    /// 2xx.
    Success,
    /// 3xx.
    Redirection,
    /// 4xx.
    ClientError,
    /// 5xx.
    ServerError,
}

impl StatusClass {
    /// Every class, in [`index`](Self::index) order.
    pub const ALL: [Self; 5] = [
        Self::Informational,
        Self::Success,
        Self::Redirection,
        Self::ClientError,
        Self::ServerError,
    ];

    /// The label value: `1xx` to `5xx`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Informational => "1xx",
            Self::Success => "2xx",
            Self::Redirection => "3xx",
            Self::ClientError => "4xx",
            Self::ServerError => "5xx",
        }
    }

    /// Its position in [`ALL`](Self::ALL), for array-indexed caches.
    pub fn index(self) -> usize {
        self as usize
    }
}

impl From<StatusCode> for StatusClass {
    fn from(s: StatusCode) -> Self {
        match s.as_u16() {
            100..=199 => Self::Informational,
            200..=299 => Self::Success,
            300..=399 => Self::Redirection,
            400..=499 => Self::ClientError,
            _ => Self::ServerError,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_bounded() {
        assert_eq!(MethodLabel::from(&Method::GET).as_str(), "GET");
        let odd = Method::from_bytes(b"BREW").unwrap();
        assert_eq!(MethodLabel::from(&odd), MethodLabel::Other);
        assert_eq!(StatusClass::from(StatusCode::NOT_FOUND).as_str(), "4xx");
        assert_eq!(StatusClass::from(StatusCode::BAD_GATEWAY).as_str(), "5xx");
        for (i, m) in MethodLabel::ALL.iter().enumerate() {
            assert_eq!(m.index(), i);
        }
        for (i, c) in StatusClass::ALL.iter().enumerate() {
            assert_eq!(c.index(), i);
        }
        for (i, r) in Refusal::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
        for (i, o) in UpgradeOutcome::ALL.iter().enumerate() {
            assert_eq!(o.index(), i);
        }
        for (i, b) in BodyBuffered::ALL.iter().enumerate() {
            assert_eq!(b.index(), i);
        }
    }
}

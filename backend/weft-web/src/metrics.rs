//! What the service reports per request, through a [`Recorder`] the caller supplies (the
//! gateway's turns it into Prometheus series), with the bounded labels it uses: method,
//! status class, and the reason a request was refused.

use std::time::Duration;

use http::{Method, StatusCode};

/// Receives one call per request and per failed upstream exchange. Called on the reactor
/// thread, so it must be quick: bump counters, never block.
pub trait Recorder {
    /// A request was answered with `status` after `elapsed` (to the response head).
    fn request(&self, method: MethodLabel, status: StatusClass, elapsed: Duration) {
        let _ = (method, status, elapsed);
    }
    /// An upstream could not be reached or did not answer in time.
    fn upstream_error(&self) {}
    /// A request was refused for `reason` (it is also counted by [`request`](Self::request)
    /// with its 4xx or 5xx status).
    fn refused(&self, reason: Refusal) {
        let _ = reason;
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
}

impl Refusal {
    /// Every reason, in [`index`](Self::index) order.
    pub const ALL: [Self; 8] = [
        Self::Malformed,
        Self::HeadTooLarge,
        Self::Host,
        Self::Path,
        Self::Method,
        Self::Body,
        Self::BodyTooLarge,
        Self::Ranges,
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
        }
    }

    /// Its position in [`ALL`](Self::ALL), for array-indexed caches.
    pub fn index(self) -> usize {
        self as usize
    }
}

/// A recorder that records nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoRecorder;

impl Recorder for NoRecorder {}

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
    }
}

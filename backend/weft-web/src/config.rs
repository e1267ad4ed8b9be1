//! What an HTTP service serves: a static root (or embedded files), proxy routes, and its
//! limits.

mod upstreams;

use std::borrow::Cow;
use std::path::PathBuf;
use std::time::Duration;

use http::{HeaderName, HeaderValue};

use crate::embedded::EmbeddedFiles;
use crate::path::{self, PathError, Reading};

pub use upstreams::{
    ActiveCheck, Balance, Health, MAX_FAILS, MAX_IDLE, MAX_PERIOD, MAX_UPSTREAMS, MIN_PERIOD,
    PoolConfig, Upstream,
};

/// Why a setting is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// An upstream is not an `http[s]://HOST:PORT[/PATH]` URL.
    #[error("upstream {url:?}: {reason}")]
    Upstream {
        /// The URL as written.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An upstream URL whose path is not in normal form: it would go to the upstream
    /// as written, dot segments and all.
    #[error(
        "upstream {url:?} has a path that is not in normal form: write {normal:?}, the path it stands for"
    )]
    UpstreamPathNotNormal {
        /// The URL as written.
        url: String,
        /// The path it would have to have.
        normal: String,
    },
    /// A route names no upstream, or more than [`MAX_UPSTREAMS`].
    #[error("a route needs between 1 and {MAX_UPSTREAMS} upstreams, got {0}")]
    UpstreamCount(usize),
    /// `balance` is not one of the ways to balance.
    #[error("balance {0:?} must be \"round_robin\" or \"least_conn\"")]
    Balance(String),
    /// A health setting out of bounds (`key` is `max_fails`, `eject_for`, `health.path`
    /// or `health.interval`).
    #[error("{key} {reason}")]
    Health {
        /// The setting.
        key: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A pool setting out of bounds (`key` is `max_idle` or `idle_timeout`).
    #[error("{key} {reason}")]
    Pool {
        /// The setting.
        key: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A route's `ca` does not load as a PEM file of certificates.
    #[error("ca {path:?}: {reason}")]
    Ca {
        /// The file as configured.
        path: PathBuf,
        /// Why it cannot be used.
        reason: String,
    },
    /// Request bodies are to be written to files, and none can be made in the directory.
    #[error("body_file_dir {path:?}: cannot make a temporary file in it: {reason}")]
    BodyFileDir {
        /// The directory as configured.
        path: PathBuf,
        /// Why not.
        reason: String,
    },
    /// A route prefix does not start with `/`.
    #[error("route prefix {0:?} must start with '/'")]
    Prefix(String),
    /// A route prefix that no request path, put in normal form before it is matched,
    /// can start with.
    #[error(
        "route prefix {prefix:?} would never match: request paths are matched in normal form, so write {normal:?}"
    )]
    PrefixNotNormal {
        /// The prefix as given.
        prefix: String,
        /// What it would have to be.
        normal: String,
    },
    /// A route prefix that is no path at all: no request can start with it.
    #[error("route prefix {prefix:?} can match no request path: {reason}")]
    PrefixInvalid {
        /// The prefix as given.
        prefix: String,
        /// Why.
        reason: &'static str,
    },
    /// Compression on the fly of files larger than allowed.
    #[error(
        "compression: max_bytes must be at most {max} (a file compressed on the fly is read whole into memory), got {got}"
    )]
    CompressionTooLarge {
        /// The largest allowed.
        max: u64,
        /// The value given.
        got: u64,
    },
    /// An embedded file's path could never be requested.
    #[error("embedded file {name:?} {reason}")]
    Embedded {
        /// The path as given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A `response_headers` field that cannot be added to responses.
    #[error("response header {name:?}: {reason}")]
    ResponseHeader {
        /// The field name as written.
        name: String,
        /// Why.
        reason: &'static str,
    },
    /// A `request_headers` field that cannot be set on requests sent upstream.
    #[error("request header {name:?}: {reason}")]
    RequestHeader {
        /// The field name as written.
        name: String,
        /// Why.
        reason: &'static str,
    },
    /// An `error_pages` entry that cannot be served.
    #[error("error page {path:?}: {reason}")]
    ErrorPage {
        /// The page's path as written.
        path: String,
        /// Why.
        reason: String,
    },
    /// A `fallback` that is not a file's path in normal form.
    #[error("fallback {path:?}: {reason}")]
    Fallback {
        /// The path as written.
        path: String,
        /// Why.
        reason: &'static str,
    },
    /// A `rate_limit` that could never let a request through, or never refill.
    #[error("rate_limit: requests_per_second and burst must each be at least 1")]
    RateLimit,
    /// A `Cache-Control` value that cannot be sent as a header.
    #[error("cache_control {0:?} must be visible ASCII, such as \"public, max-age=3600\"")]
    CacheControl(String),
    /// Compression bounds that leave no file to compress.
    #[error("compression: min_bytes ({min}) must not exceed max_bytes ({max})")]
    CompressionBounds {
        /// The smallest size compressed.
        min: u64,
        /// The largest size compressed.
        max: u64,
    },
    /// Both `root` and `embedded` are set: a service serves files from one place.
    #[error("static files come from `root` or from embedded files, not both")]
    RootAndEmbedded,
    /// The static root is not a readable directory.
    #[error("root {path:?} is not a readable directory: {reason}")]
    Root {
        /// The root as configured.
        path: PathBuf,
        /// Why it cannot be served.
        reason: String,
    },
}

/// One reverse-proxy route: requests whose path starts with `prefix` go to one of its
/// upstreams.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// A path prefix such as `/api/`; the longest matching prefix wins.
    pub prefix: String,
    /// Where matching requests go: one or several, balanced.
    pub upstreams: Vec<Upstream>,
    /// How a request's upstream is picked among several.
    pub balance: Balance,
    /// When an upstream that fails stops getting requests, and for how long.
    pub health: Health,
    /// PEM file of the roots `https://` upstreams are verified against; the system's
    /// roots when `None`.
    pub ca: Option<PathBuf>,
    /// `Cache-Control` sent with the upstream's responses that carry none of their own
    /// (none added when `None`).
    pub cache_control: Option<HeaderValue>,
    /// The requests a client may make of this route, beside the service's own budget.
    pub rate_limit: Option<RateLimit>,
    /// Header fields added to the responses relayed from its upstreams that carry none
    /// of the name ([`response_header`] checks them).
    pub response_headers: Vec<(HeaderName, HeaderValue)>,
    /// Header fields set on the requests it sends upstream, replacing the client's of the
    /// name, or removing them (`None`): nginx's `proxy_set_header` with fixed values
    /// ([`request_header`] checks them).
    pub request_headers: Vec<(HeaderName, Option<HeaderValue>)>,
    /// Who may use the route, besides the service's own list.
    pub access: Access,
}

impl Route {
    /// How `path` lies under the prefix, if it does, on a segment boundary: the length of
    /// the prefix it matched, and whether it matched it whole. A prefix `/app/` also takes
    /// `/app` itself, its last slash left out (the upstream's base path itself,
    /// `proxy::upstream_target`), so that a path and its redirect map one to one both
    /// ways; below a route whose prefix is `/app`, which takes it whole.
    fn matched(&self, path: &str) -> Option<(usize, bool)> {
        if let Some(rest) = path.strip_prefix(self.prefix.as_str()) {
            let boundary = self.prefix.ends_with('/') || rest.is_empty() || rest.starts_with('/');
            return boundary.then_some((self.prefix.len(), true));
        }
        let bare = self.prefix.strip_suffix('/')?;
        (!bare.is_empty() && path == bare).then_some((bare.len(), false))
    }

    /// A route to one upstream, checking that the prefix is a path and the URL parses.
    pub fn new(prefix: &str, upstream: &str) -> Result<Self, ConfigError> {
        Self::balanced(prefix, &[upstream])
    }

    /// A route over several upstreams, round robin, with the default health settings.
    pub fn balanced(prefix: &str, upstreams: &[&str]) -> Result<Self, ConfigError> {
        if !prefix.starts_with('/') {
            return Err(ConfigError::Prefix(prefix.to_owned()));
        }
        // A request path has no `?` (its query follows one) or `#` (never sent): a prefix
        // holding either matches nothing; the characters themselves come percent-encoded.
        if prefix.contains(['?', '#']) {
            return Err(ConfigError::PrefixNotNormal {
                prefix: prefix.to_owned(),
                normal: prefix.replace('?', "%3F").replace('#', "%23"),
            });
        }
        match path::normalize(prefix) {
            Ok(normal) if normal == prefix => {}
            Ok(normal) => {
                return Err(ConfigError::PrefixNotNormal {
                    prefix: prefix.to_owned(),
                    normal: normal.into_owned(),
                });
            }
            Err(e) => {
                return Err(ConfigError::PrefixInvalid {
                    prefix: prefix.to_owned(),
                    reason: match e {
                        path::PathError::AboveRoot => "a `..` in it climbs above `/`",
                        path::PathError::Ambiguous => {
                            "a dot segment in it reads differently to different servers"
                        }
                        _ => {
                            "a `%` must begin a percent-encoding of two hex digits, such as `%2F` (`%25` for `%` itself)"
                        }
                    },
                });
            }
        }
        if upstreams.is_empty() || upstreams.len() > MAX_UPSTREAMS {
            return Err(ConfigError::UpstreamCount(upstreams.len()));
        }
        Ok(Self {
            prefix: prefix.to_owned(),
            upstreams: upstreams
                .iter()
                .map(|u| u.parse())
                .collect::<Result<_, _>>()?,
            balance: Balance::default(),
            health: Health::default(),
            ca: None,
            cache_control: None,
            rate_limit: None,
            response_headers: Vec::new(),
            request_headers: Vec::new(),
            access: Access::default(),
        })
    }

    /// Checks the settings a route may be given after [`new`](Self::new): its number of
    /// upstreams, health bounds, and that its `ca` loads.
    pub fn check(&self) -> Result<(), ConfigError> {
        if self.upstreams.is_empty() || self.upstreams.len() > MAX_UPSTREAMS {
            return Err(ConfigError::UpstreamCount(self.upstreams.len()));
        }
        upstreams::check_health(&self.health)?;
        match &self.ca {
            Some(ca) => upstreams::check_ca(ca),
            None => Ok(()),
        }
    }
}

/// `allow` and `deny`: the clients that may use a service or a route, by address, as
/// nginx's `allow` and `deny`: a client in a `deny` block is refused; so is one in no
/// `allow` block when there are any. A client that has no address (on a unix socket,
/// which its file's mode guards) is let through.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Access {
    /// When not empty, only clients in one of these blocks.
    pub allow: Vec<weft::policies::Prefix>,
    /// Never clients in one of these blocks.
    pub deny: Vec<weft::policies::Prefix>,
}

impl Access {
    /// Whether it admits every client.
    pub fn is_open(&self) -> bool {
        self.allow.is_empty() && self.deny.is_empty()
    }

    /// Whether `peer` may go on.
    pub fn admits(&self, peer: Option<std::net::IpAddr>) -> bool {
        let Some(peer) = peer else {
            return true;
        };
        !self.deny.iter().any(|p| p.contains(peer))
            && (self.allow.is_empty() || self.allow.iter().any(|p| p.contains(peer)))
    }
}

/// `rate_limit`: the requests a client may make, by its address's prefix, as nginx's
/// `limit_req ... nodelay`: a bucket of `burst` requests refilled at
/// `requests_per_second`; a request that finds it empty is answered 429 at once, with
/// `Retry-After`. Each reactor keeps its own buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Requests a client gets a second, on average.
    pub requests_per_second: u32,
    /// Requests a client may make at once after being quiet.
    pub burst: u32,
    /// The IPv4 prefix length clients are grouped by (32: each address).
    pub ipv4_prefix: u8,
    /// The IPv6 prefix length clients are grouped by (64: each host's usual share).
    pub ipv6_prefix: u8,
}

impl RateLimit {
    /// The default `ipv4_prefix`: each address is a client.
    pub const DEFAULT_IPV4_PREFIX: u8 = 32;
    /// The default `ipv6_prefix`: each /64, as every per-peer cap counts.
    pub const DEFAULT_IPV6_PREFIX: u8 = 64;

    /// `requests_per_second` with a burst of as many, by address (IPv6: /64).
    pub fn per_second(requests_per_second: u32) -> Self {
        Self {
            requests_per_second,
            burst: requests_per_second,
            ipv4_prefix: Self::DEFAULT_IPV4_PREFIX,
            ipv6_prefix: Self::DEFAULT_IPV6_PREFIX,
        }
    }

    /// The library's settings for a table of these budgets.
    pub(crate) fn settings(&self) -> weft::policies::RateSettings {
        weft::policies::RateSettings {
            per_second: self.requests_per_second,
            burst: self.burst,
            ipv4_prefix: self.ipv4_prefix,
            ipv6_prefix: self.ipv6_prefix,
        }
    }
}

/// Bounds on what one client may make the service do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest request head (request line and headers); larger gets 431.
    pub max_header_bytes: usize,
    /// Time a client has to send a request head; also how long an idle keep-alive
    /// connection is kept. A client slower than this is disconnected. A proxied request
    /// body of which nothing comes for this long is answered 408.
    pub request_timeout: Duration,
    /// Largest request body forwarded to an upstream; larger gets 413.
    pub max_body_bytes: u64,
    /// The most of a proxied request's body read before an upstream is contacted: a body
    /// no larger reaches its upstream whole, and a slow client holds no upstream
    /// connection while it sends it. 0 streams every body as it comes.
    pub body_buffer_bytes: u64,
    /// The most the service holds in such buffers at once (on each reactor); past it,
    /// bodies stream as they come.
    pub body_buffer_total_bytes: u64,
    /// The most the service holds at once (on each reactor) in temporary files of
    /// proxied request bodies longer than `body_buffer_bytes`, read on into a file before
    /// an upstream is contacted; past it, the rest of a body streams as it comes. 0
    /// streams the rest of every such body.
    pub body_file_total_bytes: u64,
    /// Time to connect to an upstream; slower gets 504.
    pub upstream_connect_timeout: Duration,
    /// Time for an upstream to answer with its response head (slower gets 504), and then
    /// to send each piece of its body (a body stalled longer is cut short).
    pub upstream_timeout: Duration,
    /// Requests one connection may make (nginx's `keepalive_requests`): the last one's
    /// response closes an HTTP/1.1 connection (`Connection: close`), and an HTTP/2
    /// connection is told GOAWAY once its last stream is taken. 0: no cap.
    pub max_requests_per_connection: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_header_bytes: 16 * 1024,
            request_timeout: Duration::from_secs(10),
            max_body_bytes: 10 * 1024 * 1024,
            body_buffer_bytes: 64 * 1024,
            body_buffer_total_bytes: 64 * 1024 * 1024,
            body_file_total_bytes: 256 * 1024 * 1024,
            upstream_connect_timeout: Duration::from_secs(5),
            upstream_timeout: Duration::from_secs(30),
            max_requests_per_connection: 1000,
        }
    }
}

/// How static files are answered, beyond finding them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FileOptions {
    /// List a directory that has no index file (off: such a directory is 404).
    pub listing: bool,
    /// `Cache-Control` sent with every file, listing and 304 (none when `None`).
    pub cache_control: Option<HeaderValue>,
    /// Content codings.
    pub compression: Compression,
    /// The file answered, with 200, for a GET or HEAD of a path no file (nor directory
    /// index) is found at, such as `/index.html` for a single-page application whose
    /// routes are its own (nginx's `try_files $uri $uri/ /index.html`); none when
    /// `None` (404). A path in normal form ([`fallback`]).
    pub fallback: Option<String>,
}

/// Checks a `fallback` path: absolute, in normal form, not a directory (no trailing
/// slash).
pub fn fallback(path: &str) -> Result<String, ConfigError> {
    let bad = |reason| ConfigError::Fallback {
        path: path.to_owned(),
        reason,
    };
    if !path.starts_with('/') || path.ends_with('/') || path.contains("//") {
        return Err(bad(
            "must be a file's path from the root, such as \"/index.html\"",
        ));
    }
    match crate::path::normalize(path) {
        Ok(normal) if normal == path => Ok(path.to_owned()),
        _ => Err(bad(
            "must be a path in normal form (no `..`, `.`, `//` or needless %-escapes)",
        )),
    }
}

/// The most `error_pages` a service may have, and the largest page: each is kept in
/// memory, to be answered without touching the disk when things go wrong.
pub const MAX_ERROR_PAGES: usize = 16;
/// See [`MAX_ERROR_PAGES`].
pub const MAX_ERROR_PAGE_BYTES: usize = 64 * 1024;

/// A page answered in place of the service's own error response of one status (nginx's
/// `error_page 404 /404.html`): its status keeps, and so do the fields that say why
/// (`Retry-After`, `Allow`); the page's body and type replace the plain-text detail.
/// Responses relayed from an upstream are not replaced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorPage {
    /// The status it answers.
    pub status: http::StatusCode,
    /// The page, read whole.
    pub body: bytes::Bytes,
    /// Its `Content-Type`, by its name.
    pub content_type: HeaderValue,
    /// The file it was read from, by device and inode: the configuration's check refuses
    /// a page that is a file of weft's own, whatever name a mount gave it.
    pub file: (u64, u64),
}

impl ErrorPage {
    /// The page for `status` (400 to 599) at `path` under `root`: a file's path in normal
    /// form, as [`fallback`] takes, at most [`MAX_ERROR_PAGE_BYTES`], read now.
    pub fn read(status: u16, root: &std::path::Path, path: &str) -> Result<Self, ConfigError> {
        let bad = |reason: String| ConfigError::ErrorPage {
            path: path.to_owned(),
            reason,
        };
        let status = http::StatusCode::from_u16(status)
            .ok()
            .filter(|s| s.is_client_error() || s.is_server_error())
            .ok_or_else(|| bad(format!("{status} is not an error status (400 to 599)")))?;
        let path = match fallback(path) {
            Ok(path) => path,
            Err(ConfigError::Fallback { reason, .. }) => return Err(bad(reason.to_owned())),
            Err(e) => return Err(bad(e.to_string())),
        };
        // Found as a request for it would be: under the root once links are followed, no
        // hidden name on the way, `%`-escapes decoded.
        let canonical = root.canonicalize().map_err(|e| bad(e.to_string()))?;
        let file = crate::path::resolve(&canonical, &path)
            .map_err(|_| {
                // Which of the lookup's refusals it was, for whoever fixes the setting.
                let named = root.join(path.trim_start_matches('/'));
                let unreadable = std::fs::File::open(&named)
                    .is_err_and(|e| e.kind() == std::io::ErrorKind::PermissionDenied);
                let why = match std::fs::symlink_metadata(&named) {
                    Err(_) => "is no file under the root",
                    Ok(_) if unreadable => "cannot be read by this process (permission denied)",
                    Ok(_) => "is hidden, or behind a link that leads out of the root: no request could be served it",
                };
                bad(why.to_owned())
            })?;
        if !file.meta.is_file() {
            return Err(bad("is not a file".to_owned()));
        }
        let too_large = || bad(format!("is larger than {MAX_ERROR_PAGE_BYTES} bytes"));
        let mut body = Vec::new();
        std::fs::File::open(&file.path)
            .and_then(|f| {
                use std::io::Read;
                f.take(MAX_ERROR_PAGE_BYTES as u64 + 1)
                    .read_to_end(&mut body)
            })
            .map_err(|e| bad(e.to_string()))?;
        if body.len() > MAX_ERROR_PAGE_BYTES {
            return Err(too_large());
        }
        use std::os::unix::fs::MetadataExt;
        Ok(Self {
            status,
            body: body.into(),
            content_type: HeaderValue::from_static(crate::mime::content_type(&path)),
            file: (file.meta.dev(), file.meta.ino()),
        })
    }
}

/// Parses a `cache_control` setting into the header value it will be sent as.
pub fn cache_control(value: &str) -> Result<HeaderValue, ConfigError> {
    let bad = || ConfigError::CacheControl(value.to_owned());
    if value.trim().is_empty() {
        return Err(bad());
    }
    HeaderValue::from_str(value)
        .ok()
        .filter(|v| v.to_str().is_ok())
        .ok_or_else(bad)
}

/// The most `response_headers` a service or a route may add.
pub const MAX_RESPONSE_HEADERS: usize = 32;

/// The longest value of a `response_headers` field, and the most bytes of them all
/// together: they go out with every response, and a client's header list limit (often
/// 16 KiB or more) must hold them with the rest.
pub const MAX_RESPONSE_HEADER_VALUE: usize = 4096;
/// See [`MAX_RESPONSE_HEADER_VALUE`].
pub const MAX_RESPONSE_HEADER_BYTES: usize = 8192;

/// A `response_headers` entry, checked: a field name (any case) and a value of visible
/// ASCII, spaces and tabs inside it (not at its ends: RFC 9113 §8.2.1 makes such a value
/// malformed over HTTP/2), at most [`MAX_RESPONSE_HEADER_VALUE`] bytes. Refused: fields
/// that frame the message or belong to one connection (`Content-Length`,
/// `Transfer-Encoding`, `Connection` and its kind); those that describe the
/// representation or the answer, which a fixed value would make false for most
/// responses (`Content-Type`, `Content-Encoding`, `Content-Range`, `Content-Location`,
/// `ETag`, `Last-Modified`, `Date`, `Location`); and `Strict-Transport-Security`, which
/// `hsts_max_age` sends over TLS alone (never over plain HTTP, RFC 6797 §7.2).
pub fn response_header(name: &str, value: &str) -> Result<(HeaderName, HeaderValue), ConfigError> {
    let refused = |reason| ConfigError::ResponseHeader {
        name: name.to_owned(),
        reason,
    };
    let field = HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| refused("is not a header field name"))?;
    use http::header;
    if frames_or_hop(&field) {
        return Err(refused(
            "frames the message or belongs to one connection, which the service sets itself",
        ));
    }
    let representation = [
        header::CONTENT_TYPE,
        header::CONTENT_ENCODING,
        header::CONTENT_RANGE,
        header::CONTENT_LOCATION,
        header::ETAG,
        header::LAST_MODIFIED,
        header::DATE,
        header::LOCATION,
    ];
    if representation.contains(&field) {
        return Err(refused(
            "describes each response itself: one value for all of them would be false for most",
        ));
    }
    if field == header::STRICT_TRANSPORT_SECURITY {
        return Err(refused(
            "is sent with hsts_max_age, over TLS alone (never over plain HTTP)",
        ));
    }
    let value = field_value(value).map_err(refused)?;
    Ok((field, value))
}

/// A route's `request_headers` entry, checked: a field name (any case) and a value as
/// [`response_header`] takes them, or an empty value, which removes the field. `Host`
/// may be set (to an authority, `app.example:8080`, for an upstream that serves several
/// sites). Refused: fields that frame the message or belong to one connection, which the
/// proxy sets itself for each hop, and those it says itself so that no client can say
/// them for it (`X-Forwarded-For`, `X-Forwarded-Host`, `X-Forwarded-Proto`,
/// `X-Real-IP`, `Forwarded`, `Via`).
pub fn request_header(
    name: &str,
    value: &str,
) -> Result<(HeaderName, Option<HeaderValue>), ConfigError> {
    let refused = |reason| ConfigError::RequestHeader {
        name: name.to_owned(),
        reason,
    };
    let field = HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| refused("is not a header field name"))?;
    if frames_or_hop(&field) || field == http::header::EXPECT {
        return Err(refused(
            "frames the message or belongs to one connection, which the proxy sets itself",
        ));
    }
    let forwarding = [
        "x-forwarded-for",
        "x-forwarded-host",
        "x-forwarded-proto",
        "x-real-ip",
        "forwarded",
        "via",
    ];
    if forwarding.contains(&field.as_str()) {
        return Err(refused(
            "is what the proxy says of the client and itself, which it sets for each request",
        ));
    }
    if field.as_str().contains('_') {
        return Err(refused(
            "has an underscore, which the proxy drops from requests (as nginx does)",
        ));
    }
    let own = [
        "proxy-authorization",
        "traceparent",
        "tracestate",
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-protocol",
        "sec-websocket-extensions",
    ];
    if own.contains(&field.as_str()) {
        return Err(refused(
            "belongs to the client's own exchange (its hop, its trace, its WebSocket \
             handshake): one value for every request would break it",
        ));
    }
    if value.is_empty() {
        if field == http::header::HOST {
            return Err(refused(
                "cannot be removed: every HTTP/1.1 request names its host",
            ));
        }
        return Ok((field, None));
    }
    if field == http::header::ACCEPT_ENCODING && !value.eq_ignore_ascii_case("identity") {
        return Err(refused(
            "may only be removed (\"\") or say \"identity\": the proxy passes on what the \
             upstream encodes, and a client that did not ask for a coding would get it",
        ));
    }

    if field == http::header::HOST && !crate::rules::is_valid_host(value.as_bytes()) {
        return Err(refused(
            "must be a host, with a port if any (app.example:8080)",
        ));
    }
    let mut value = field_value(value).map_err(refused)?;
    // Kept out of what `{:?}` prints: a value may be a key the upstream checks.
    value.set_sensitive(true);
    Ok((field, Some(value)))
}

/// Sets `fields` (a route's `request_headers`) on `headers`, replacing what is there of
/// each name, or removing it (`None`).
pub(crate) fn set_fields(
    headers: &mut http::HeaderMap,
    fields: &[(HeaderName, Option<HeaderValue>)],
) {
    for (name, value) in fields {
        match value {
            Some(value) => headers.insert(name, value.clone()),
            None => headers.remove(name),
        };
    }
}

/// Whether `field` frames a message or belongs to one connection: the sender sets it
/// for each message and hop.
fn frames_or_hop(field: &HeaderName) -> bool {
    use http::header;
    let framing = [
        header::CONTENT_LENGTH,
        header::TRANSFER_ENCODING,
        header::CONNECTION,
        header::TE,
        header::TRAILER,
        header::UPGRADE,
    ];
    framing.contains(field) || field == "keep-alive" || field == "proxy-connection"
}

/// A configured header field's value: visible ASCII, spaces and tabs inside it (not at
/// its ends: RFC 9113 §8.2.1 makes such a value malformed over HTTP/2), at most
/// [`MAX_RESPONSE_HEADER_VALUE`] bytes, not empty.
fn field_value(value: &str) -> Result<HeaderValue, &'static str> {
    if value.len() > MAX_RESPONSE_HEADER_VALUE {
        return Err("has a value longer than 4096 bytes");
    }
    let edges = [value.as_bytes().first(), value.as_bytes().last()];
    if edges.iter().any(|b| matches!(b, Some(b' ' | b'\t'))) {
        return Err(
            "has a value that begins or ends with a space or a tab (malformed over HTTP/2)",
        );
    }
    HeaderValue::from_str(value)
        .ok()
        .filter(|v| v.to_str().is_ok() && !v.is_empty())
        .ok_or("needs a value of visible ASCII, spaces and tabs")
}

/// Content codings for compressible types (text, JSON, JavaScript, XML, SVG, wasm).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compression {
    /// Send `NAME.br` or `NAME.gz` beside a file in its place to a client that accepts
    /// that coding.
    pub precompressed: bool,
    /// Compress with gzip or brotli on the fly when there is no such sibling.
    pub on_the_fly: bool,
    /// Files smaller than this are sent as they are (compression would save little).
    pub min_bytes: u64,
    /// Files larger than this are not compressed on the fly (the work and memory grow
    /// with the file).
    pub max_bytes: u64,
}

impl Default for Compression {
    fn default() -> Self {
        Self {
            precompressed: true,
            on_the_fly: true,
            min_bytes: 1024,
            max_bytes: 1024 * 1024,
        }
    }
}

impl Compression {
    /// The largest `max_bytes`: each compression reads its file whole.
    pub const MAX_BYTES_LIMIT: u64 = 64 * 1024 * 1024;

    /// Checks that some size lies between the bounds, and the upper one is bounded.
    pub fn check(&self) -> Result<(), ConfigError> {
        if self.max_bytes > Self::MAX_BYTES_LIMIT {
            return Err(ConfigError::CompressionTooLarge {
                max: Self::MAX_BYTES_LIMIT,
                got: self.max_bytes,
            });
        }
        if self.min_bytes > self.max_bytes {
            return Err(ConfigError::CompressionBounds {
                min: self.min_bytes,
                max: self.max_bytes,
            });
        }
        Ok(())
    }
}

/// One HTTP service's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebConfig {
    /// Static files are served from here; `None` for a proxy-only service.
    pub root: Option<PathBuf>,
    /// Static files served from memory instead of a root directory, under the same rules
    /// (a site built into the program); not with `root`.
    pub embedded: Option<EmbeddedFiles>,
    /// The file served for a directory (`index.html`).
    pub index: String,
    /// Reverse-proxy routes, in any order (the longest matching prefix wins).
    pub routes: Vec<Route>,
    /// Limits.
    pub limits: Limits,
    /// Upstream connections kept for reuse.
    pub pool: PoolConfig,
    /// Listing, caching and compression of static files.
    pub files: FileOptions,
    /// HSTS: responses over TLS carry `Strict-Transport-Security: max-age=` this
    /// (RFC 6797); `None` (the default) sends none.
    pub hsts_max_age: Option<Duration>,
    /// Where proxied request bodies longer than `limits.body_buffer_bytes` are written
    /// (anonymous files, gone once closed); the system's temporary directory by default.
    pub body_file_dir: PathBuf,
    /// The requests a client may make of the service, files and routes together (a
    /// route may have a budget of its own besides); none when `None`.
    pub rate_limit: Option<RateLimit>,
    /// Requests over plain HTTP are answered with a redirect to the same URL over HTTPS
    /// on this port (none when `None`), but for ACME's HTTP-01 challenges
    /// (`/.well-known/acme-challenge/`), which are served as usual.
    pub https_redirect: Option<u16>,
    /// Header fields added to every response of the service (files, proxied responses,
    /// its own error pages and redirects) that carries none of the name: security
    /// headers such as `X-Content-Type-Options: nosniff` ([`response_header`] checks
    /// them).
    pub response_headers: Vec<(HeaderName, HeaderValue)>,
    /// Who may use the service (a route may narrow it further).
    pub access: Access,
    /// Pages answered in place of its own error responses by status (`error_pages`),
    /// read from files when the configuration was: none when empty.
    pub error_pages: Vec<ErrorPage>,
    /// Proxies in front whose word on the client is taken (`trusted_proxies`): a
    /// request from one of them is judged, logged and forwarded as from the client its
    /// `X-Forwarded-For` names, over the scheme its `X-Forwarded-Proto` names.
    pub trusted_proxies: Vec<weft::policies::Prefix>,
    /// Whether a peer on a unix socket is a trusted proxy too (`"unix:"` in
    /// `trusted_proxies`): a front end on the same host that connects over one.
    pub trust_unix_peers: bool,
}

impl Default for WebConfig {
    fn default() -> Self {
        Self {
            root: None,
            embedded: None,
            index: "index.html".into(),
            routes: Vec::new(),
            limits: Limits::default(),
            pool: PoolConfig::default(),
            files: FileOptions::default(),
            hsts_max_age: None,
            body_file_dir: std::env::temp_dir(),
            rate_limit: None,
            https_redirect: None,
            response_headers: Vec::new(),
            access: Access::default(),
            error_pages: Vec::new(),
            trust_unix_peers: false,
            trusted_proxies: Vec::new(),
        }
    }
}

impl WebConfig {
    /// Checks every route ([`Route::check`]), the pool settings, the rate limits, and
    /// that request bodies can be written to `body_file_dir` when they are to be
    /// ([`check_body_files`](Self::check_body_files)).
    pub fn check_proxy(&self) -> Result<(), ConfigError> {
        let limits = self.routes.iter().map(|r| &r.rate_limit);
        for limit in std::iter::once(&self.rate_limit).chain(limits).flatten() {
            if limit.requests_per_second == 0 || limit.burst == 0 {
                return Err(ConfigError::RateLimit);
            }
        }
        upstreams::check_pool(&self.pool)?;
        self.routes.iter().try_for_each(Route::check)?;
        self.check_body_files()
    }

    /// Whether proxied request bodies are written to files: there are routes, bodies are
    /// read ahead, and files may hold some.
    pub fn body_files(&self) -> bool {
        !self.routes.is_empty()
            && self.limits.body_buffer_bytes > 0
            && self.limits.body_file_total_bytes > 0
    }

    /// When request bodies are written to files ([`body_files`](Self::body_files)), that
    /// one can be made in `body_file_dir` (it is, and removed at once).
    pub fn check_body_files(&self) -> Result<(), ConfigError> {
        if !self.body_files() {
            return Ok(());
        }
        tempfile::tempfile_in(&self.body_file_dir)
            .map(drop)
            .map_err(|e| ConfigError::BodyFileDir {
                path: self.body_file_dir.clone(),
                reason: e.to_string(),
            })
    }

    /// The route for `path` (in normal form): the one with the longest matching prefix.
    /// A prefix matches whole segments: `/api` matches `/api` and `/api/x`, not `/apix`.
    pub fn route_for(&self, path: &str) -> Option<&Route> {
        self.routes
            .iter()
            .filter_map(|r| Some((r.matched(path)?, r)))
            .max_by_key(|(matched, _)| *matched)
            .map(|(_, r)| r)
    }

    /// Where the request path `raw` leads: its normal form and its route (`None` for
    /// static files). A path whose encoded dots or slashes would lead elsewhere when
    /// read another way (by an upstream that decodes them, or a matcher that does not)
    /// is refused, so no reader can be led out of the route this one chose.
    pub fn route_path<'r>(
        &self,
        raw: &'r str,
    ) -> Result<(Cow<'r, str>, Option<&Route>), PathError> {
        let normal = path::normalize(raw)?;
        let route = self.route_for(&normal);
        for reading in Reading::OTHERS {
            if !reading.may_differ(raw) {
                continue;
            }
            let other = path::read(raw, reading).map_err(|_| PathError::Ambiguous)?;
            if !same(self.route_for(&other), route) {
                return Err(PathError::Ambiguous);
            }
        }
        Ok((normal, route))
    }
}

fn same(a: Option<&Route>, b: Option<&Route>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => std::ptr::eq(a, b),
        (None, None) => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_urls_parse_with_default_port_and_base_path() {
        let u: Upstream = "http://127.0.0.1:9000".parse().unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.base_path.as_str()),
            ("127.0.0.1", 9000, "")
        );
        let u: Upstream = "http://backend/v1/".parse().unwrap();
        assert_eq!((u.port, u.base_path.as_str()), (80, "/v1"));
        let u: Upstream = "http://[::1]:8080".parse().unwrap();
        assert_eq!(u.authority(), "[::1]:8080");
        let u: Upstream = "https://backend".parse().unwrap();
        assert_eq!((u.tls, u.port), (true, 443));
    }

    #[test]
    fn bad_upstreams_say_why() {
        for (url, why) in [
            ("ftp://x", "http://"),
            ("http://:80", "no host"),
            ("http://h:port", "bad port"),
            ("http://u@h", "credentials"),
            ("http://h/p?q", "query"),
            ("http://h/x/../y", "write \"/y\""),
            ("http://h/./v1/", "write \"/v1/\""),
            ("http://h/%76%31", "write \"/v1\""),
            ("http://bad host/", "bad host"),
            ("http://victim.test;x:80", "bad host"),
            ("http://[not-v6]:80", "bad host"),
            ("http://h:0", "port 0"),
            ("http://224.0.0.1:80", "multicast or broadcast"),
            ("http://255.255.255.255", "multicast or broadcast"),
            ("https://[ff02::1]:443", "multicast or broadcast"),
            // As the resolver reads them: 224.0.0.1 and 255.255.255.255.
            ("http://0xe0000001:80", "multicast or broadcast"),
            ("http://4294967295", "multicast or broadcast"),
            ("http://h:99999", "bad port"),
            ("http://h/a b", "bad path"),
        ] {
            let err = url.parse::<Upstream>().unwrap_err().to_string();
            assert!(err.contains(why), "{url}: {err}");
        }
    }

    #[test]
    fn a_prefix_no_normal_path_can_start_with_is_refused_naming_the_one_to_write() {
        for (prefix, normal) in [
            ("/a/../b/", "/b/"),
            ("/./api/", "/api/"),
            ("/%61pi/", "/api/"),
            ("/a?b/", "/a%3Fb/"),
            ("/a#b", "/a%23b"),
            // Characters a path does not hold as they are: requests carry them encoded.
            ("/a b/", "/a%20b/"),
            ("/a\tb/", "/a%09b/"),
            ("/c\"d/", "/c%22d/"),
            ("/e{f}/", "/e%7Bf%7D/"),
            ("/g|h^i`j/", "/g%7Ch%5Ei%60j/"),
            ("/m<n>/", "/m%3Cn%3E/"),
            ("/o\\p/", "/o%5Cp/"),
        ] {
            assert_eq!(
                path::normalize(normal).unwrap(),
                normal,
                "{normal} is normal"
            );
            let err = Route::new(prefix, "http://h:1").unwrap_err();
            assert!(
                matches!(&err, ConfigError::PrefixNotNormal { normal: n, .. } if n == normal),
                "{prefix}: {err}"
            );
        }
        for prefix in [
            "/",
            "/api",
            "/api/",
            "/a-b/c_d/",
            "/a%20b/",
            "/v1:x@y!$&'()*+,;=/",
        ] {
            assert!(Route::new(prefix, "http://h:1").is_ok(), "{prefix}");
        }
        // No hint leads to `/`, which would take every path.
        for prefix in [
            "/a%zz/",
            "/a%/",
            "/a%2/",
            "/x/%%/",
            "/../a/",
            "/api/..;v=1/",
        ] {
            let err = Route::new(prefix, "http://h:1").unwrap_err();
            assert!(
                matches!(&err, ConfigError::PrefixInvalid { .. }),
                "{prefix}: {err}"
            );
        }
    }

    #[test]
    fn compression_on_the_fly_is_bounded() {
        let c = Compression {
            max_bytes: 10 << 30,
            ..Compression::default()
        };
        assert!(matches!(
            c.check(),
            Err(ConfigError::CompressionTooLarge { .. })
        ));
    }

    #[test]
    fn the_longest_prefix_wins_whatever_the_order() {
        let config = WebConfig {
            routes: vec![
                Route::new("/api/", "http://a:1").unwrap(),
                Route::new("/api/v2/", "http://b:2").unwrap(),
                Route::new("/", "http://c:3").unwrap(),
            ],
            ..WebConfig::default()
        };
        let host = |p: &str| config.route_for(p).map(|r| r.upstreams[0].host.clone());
        assert_eq!(host("/api/v2/users").as_deref(), Some("b"));
        assert_eq!(host("/api/v1").as_deref(), Some("a"));
        assert_eq!(host("/apix").as_deref(), Some("c"));
        assert!(Route::new("api", "http://a:1").is_err());
        let no_catch_all = WebConfig {
            routes: vec![Route::new("/api/", "http://a:1").unwrap()],
            ..WebConfig::default()
        };
        assert!(no_catch_all.route_for("/index.html").is_none());
    }

    #[test]
    fn a_prefix_matches_whole_segments() {
        let config = WebConfig {
            routes: vec![Route::new("/api", "http://a:1").unwrap()],
            ..WebConfig::default()
        };
        assert!(config.route_for("/api").is_some());
        assert!(config.route_for("/api/x").is_some());
        assert!(config.route_for("/apix").is_none());
        assert!(config.route_for("/api..").is_none());
    }

    #[test]
    fn a_prefix_with_its_last_slash_takes_the_path_without_it_below_a_prefix_that_is_that_path() {
        let host = |routes: &[(&str, &str)], p: &str| {
            let config = WebConfig {
                routes: routes
                    .iter()
                    .map(|(prefix, up)| Route::new(prefix, up).unwrap())
                    .collect(),
                ..WebConfig::default()
            };
            config.route_for(p).map(|r| r.upstreams[0].host.clone())
        };
        let app = [("/app/", "http://a:1/base")];
        assert_eq!(host(&app, "/app").as_deref(), Some("a"));
        assert_eq!(host(&app, "/app/").as_deref(), Some("a"));
        assert_eq!(host(&app, "/apps"), None);
        assert_eq!(host(&app, "/ap"), None);
        let both = [("/app/", "http://a:1"), ("/app", "http://b:2")];
        assert_eq!(host(&both, "/app").as_deref(), Some("b"));
        assert_eq!(host(&both, "/app/x").as_deref(), Some("a"));
        let root = [("/", "http://r:1")];
        assert_eq!(host(&root, "/").as_deref(), Some("r"));
    }

    #[test]
    fn encoded_dots_or_slashes_that_change_the_route_are_refused() {
        let config = WebConfig {
            routes: vec![Route::new("/api/", "http://a:1").unwrap()],
            ..WebConfig::default()
        };
        let route = |raw| config.route_path(raw).map(|(p, r)| (p, r.is_some()));
        assert_eq!(route("/api/a/../b"), Ok(("/api/b".into(), true)));
        assert_eq!(route("/api/../b"), Ok(("/b".into(), false)));
        assert_eq!(route("/api/%2e/b"), Ok(("/api/b".into(), true)));
        assert_eq!(route("/api/a%2Fb"), Ok(("/api/a%2Fb".into(), true)));
        assert_eq!(route("/x/%2e%2e/api/b"), Err(PathError::Ambiguous));
        assert_eq!(route("/api/%2e%2e/b"), Err(PathError::Ambiguous));
        assert_eq!(route("/api/..%2fb"), Err(PathError::Ambiguous));
        assert_eq!(route("/api/..%2f..%2fb"), Err(PathError::Ambiguous));
        // An encoded slash that makes an empty segment for a `..` to take: out of `/api`
        // to an upstream that merges slashes (nginx), in it to one that does not.
        assert_eq!(route("/api/%2F../admin/x"), Err(PathError::Ambiguous));
        assert_eq!(route("/api//..%2Fadmin/x"), Err(PathError::Ambiguous));
        assert_eq!(route("/api/a%2F%2Fb"), Ok(("/api/a%2F%2Fb".into(), true)));
        assert_eq!(route("/api/../../b"), Err(PathError::AboveRoot));
        // A run of slashes before a prefix: no route as it is (the files, which drop the
        // empty segment, would serve what lies under the route's path), the route to a
        // reader that merges slashes.
        assert_eq!(route("//api/x"), Err(PathError::Ambiguous));
        assert_eq!(route("///api/x"), Err(PathError::Ambiguous));
        // Within one route, or outside every route, a run of slashes changes nothing.
        assert_eq!(route("/api//x"), Ok(("/api//x".into(), true)));
        assert_eq!(
            route("/css//main.css"),
            Ok(("/css//main.css".into(), false))
        );
    }
}

//! One `POST` to a receiver outside (an on-call tool, an OpenTelemetry collector), on a
//! connection of its own, from the inspector's thread.

use bytes::Bytes;
use http_body_util::Full;
use hyper::Uri;
use hyper_util::rt::TokioIo;
use prometheus::{IntCounter, IntCounterVec, Opts, Registry};

/// Why a post failed: no connection, no answer in time, or not 2xx.
const FAIL_REASONS: [&str; 3] = ["connect", "timeout", "status"];

/// The names and help of a poster's three families.
pub(crate) struct Families {
    /// Posted and answered 2xx.
    pub(crate) sent: (&'static str, &'static str),
    /// Not posted, by reason (each reason listed at 0 from the start).
    pub(crate) dropped: (&'static str, &'static str, &'static [&'static str]),
    /// Posts that failed, by reason (`connect`, `timeout`, `status`).
    pub(crate) failed: (&'static str, &'static str),
}

/// What a poster counts: what it sent, what it dropped and what failed, by reason.
#[derive(Clone)]
pub(crate) struct PostMetrics {
    pub(crate) sent: IntCounter,
    pub(crate) dropped: IntCounterVec,
    pub(crate) failed: IntCounterVec,
}

impl PostMetrics {
    pub(crate) fn register(
        registry: &Registry,
        names: &Families,
    ) -> Result<Self, prometheus::Error> {
        let sent = IntCounter::new(names.sent.0, names.sent.1)?;
        let (dropped, help, reasons) = names.dropped;
        let dropped = IntCounterVec::new(Opts::new(dropped, help), &["reason"])?;
        let failed = IntCounterVec::new(Opts::new(names.failed.0, names.failed.1), &["reason"])?;
        for reason in reasons {
            dropped.with_label_values(&[reason]);
        }
        for reason in FAIL_REASONS {
            failed.with_label_values(&[reason]);
        }
        registry.register(Box::new(sent.clone()))?;
        registry.register(Box::new(dropped.clone()))?;
        registry.register(Box::new(failed.clone()))?;
        Ok(Self {
            sent,
            dropped,
            failed,
        })
    }
}

/// What is wrong with a receiver's URL.
pub(crate) enum UrlProblem {
    /// Not a URL at all.
    Malformed(String),
    /// Not `http://`.
    Scheme,
    /// No host.
    Host,
    /// A URL no connection could reach: why.
    Unreachable(&'static str),
    /// User information (`user:password@`), which would not be sent and would be logged.
    Credentials,
}

/// An `http://` URL with a host: the only kind posted to (TLS goes through a local relay).
pub(crate) fn http_url(url: &str) -> Result<Uri, UrlProblem> {
    let url: Uri = url
        .parse()
        .map_err(|e| UrlProblem::Malformed(format!("{e}")))?;
    if url.scheme_str() != Some("http") {
        return Err(UrlProblem::Scheme);
    }
    let Some(host) = url.host().filter(|h| !h.is_empty()) else {
        return Err(UrlProblem::Host);
    };
    if url.authority().is_some_and(|a| a.as_str().contains('@')) {
        return Err(UrlProblem::Credentials);
    }
    if url.port_u16() == Some(0) {
        return Err(UrlProblem::Unreachable(
            "the URL has port 0, where no server listens",
        ));
    }
    // Read as the resolver reads it: `0xe0000001` is 224.0.0.1.
    let ip = weft::endpoint::host_ip(host.trim_start_matches('[').trim_end_matches(']'));
    if ip.is_some_and(weft::endpoint::is_many_hosts) {
        return Err(UrlProblem::Unreachable(
            "the URL's host is a multicast or broadcast address, which no TCP connection reaches",
        ));
    }
    Ok(url)
}

/// Why a URL with `user:password@` is refused.
pub(crate) const CREDENTIALS: &str = "the URL must not carry credentials (user:password@): \
     none would be sent; post through a local relay that adds them";

/// `url` as a log line names it: its scheme and authority, the path left out (a
/// webhook's path is often its secret).
pub(crate) fn shown(url: &Uri) -> String {
    let authority = url.authority().map_or("", |a| a.as_str());
    match url.path_and_query().map_or("/", |p| p.as_str()) {
        "" | "/" => format!("http://{authority}/"),
        _ => format!("http://{authority}/…"),
    }
}

/// Why a `POST` failed: the reason label, and how long the server asked to be left alone
/// (`Retry-After` in seconds on a 429 or 503), if it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Failed {
    pub(crate) reason: &'static str,
    pub(crate) retry_after: Option<std::time::Duration>,
}

impl From<&'static str> for Failed {
    fn from(reason: &'static str) -> Self {
        Self {
            reason,
            retry_after: None,
        }
    }
}

/// One `POST` on a connection of its own.
pub(crate) async fn post(url: &Uri, content_type: &'static str, body: Bytes) -> Result<(), Failed> {
    let host = url.host().unwrap_or_default();
    let port = url.port_u16().unwrap_or(80);
    // An IPv6 literal comes bracketed in a URL; the socket wants it bare.
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let stream = tokio::net::TcpStream::connect((bare, port))
        .await
        .map_err(|_| "connect")?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|_| "connect")?;
    let connection = tokio::spawn(connection);
    let authority = url
        .authority()
        .map_or_else(|| host.to_owned(), |a| a.as_str().to_owned());
    let path = url.path_and_query().map_or("/", |p| p.as_str());
    let request = hyper::Request::post(path)
        .header(hyper::header::HOST, authority)
        .header(hyper::header::CONTENT_TYPE, content_type)
        .header(hyper::header::USER_AGENT, "weft")
        .body(Full::new(body))
        .map_err(|_| "status")?;
    let response = sender.send_request(request).await.map_err(|_| "status");
    connection.abort();
    let response = response?;
    if response.status().is_success() {
        return Ok(());
    }
    let asks_to_wait = matches!(response.status().as_u16(), 429 | 503);
    let retry_after = response
        .headers()
        .get(hyper::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|_| asks_to_wait)
        .map(std::time::Duration::from_secs);
    Err(Failed {
        reason: "status",
        retry_after,
    })
}

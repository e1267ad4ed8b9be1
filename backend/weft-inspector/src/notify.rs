//! Notifications: a JSON `POST` to an on-call tool's URL for each new detection worth a
//! page (every detector's but `slow`: stalled, unhandled, leaked, deadlock, and any added
//! later), sent from the inspector's thread, never the reactor's.
//!
//! The bus reader `notify` takes detections as they are published. Each passes a rate
//! limit (a token bucket of `per_minute`, refilled evenly) and waits in a queue of at most
//! `queue`; one sender posts them in order, each with a deadline. What the limit or the
//! full queue leaves out, and every failed post, is counted
//! (`weft_notifications_dropped_total{reason}`, `weft_notifications_failed_total{reason}`);
//! a receiver that is down costs the services nothing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::Uri;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use weft::defer::Detector;
use weft_telemetry::{EventKind, Feed, TelemetryEvent};

use crate::post::{Families, PostMetrics, UrlProblem, http_url, post};

/// Notifications sent a minute at most by default.
pub const DEFAULT_NOTIFY_PER_MINUTE: u32 = 60;
/// Notifications waiting to be sent at most by default.
pub const DEFAULT_NOTIFY_QUEUE: usize = 100;
/// The most either may be.
pub const MAX_NOTIFY: u32 = 100_000;
/// How long one post may take, connecting included.
const POST_TIMEOUT: Duration = Duration::from_secs(5);

/// Where and how often detections are posted.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NotifyConfig {
    /// The receiver: an `http://host[:port]/path` URL.
    pub url: Uri,
    /// Notifications posted a minute at most (a burst up to this many at once); the rest
    /// are dropped and counted.
    pub per_minute: u32,
    /// Notifications waiting to be posted at most; beyond, new ones are dropped and
    /// counted.
    pub queue: usize,
}

/// Why a notification URL or limit was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NotifyError {
    /// Not a URL at all.
    #[error("not a URL: {0}")]
    Url(String),
    /// Not `http://` (TLS is not supported: post to a local relay).
    #[error("only http:// URLs are supported, such as \"http://127.0.0.1:9000/hook\"")]
    Scheme,
    /// A URL without a host.
    #[error("the URL names no host")]
    Host,
    /// A URL no connection could reach (port 0, a multicast or broadcast address).
    #[error("{0}")]
    Unreachable(&'static str),
    /// A limit out of its range.
    #[error("must be between 1 and {MAX_NOTIFY}")]
    Range,
    /// A URL with user information, which would not be sent.
    #[error("{}", crate::post::CREDENTIALS)]
    Credentials,
}

impl NotifyConfig {
    /// Posts to `url` with the default limits.
    pub fn new(url: &str) -> Result<Self, NotifyError> {
        let url = http_url(url).map_err(|p| match p {
            UrlProblem::Malformed(e) => NotifyError::Url(e),
            UrlProblem::Scheme => NotifyError::Scheme,
            UrlProblem::Host => NotifyError::Host,
            UrlProblem::Unreachable(why) => NotifyError::Unreachable(why),
            UrlProblem::Credentials => NotifyError::Credentials,
        })?;
        Ok(Self {
            url,
            per_minute: DEFAULT_NOTIFY_PER_MINUTE,
            queue: DEFAULT_NOTIFY_QUEUE,
        })
    }

    /// Checks a limit (`per_minute`, `queue`) is within 1 to [`MAX_NOTIFY`].
    pub fn check_limit(n: u64) -> Result<(), NotifyError> {
        (1..=u64::from(MAX_NOTIFY))
            .contains(&n)
            .then_some(())
            .ok_or(NotifyError::Range)
    }
}

/// Whether a detection is worth a page: a slow callback is a figure to look at later;
/// anything else (a chain that cannot finish, a failure nobody saw) wants someone now.
fn pages(detector: Detector) -> bool {
    detector != Detector::Slow
}

/// What is posted: one detection, as JSON.
#[derive(Debug, Serialize)]
struct Notification<'a> {
    /// The detector: `stalled`, `unhandled`, `leaked`, `deadlock`, ...
    kind: Detector,
    /// What it saw, in words.
    detail: &'a str,
    /// The chain's id (its page is `/deferreds/{chain}` on the dashboard).
    chain: u64,
    label: Option<&'a str>,
    /// The line that created the chain.
    site: &'a str,
    service: Option<&'a str>,
    connection: Option<u64>,
    /// The chain's age when detected, milliseconds.
    age_ms: u64,
    state: &'static str,
    /// The named step it is at, and what about.
    step: Option<&'a str>,
    step_detail: Option<&'a str>,
    /// The event's number and time (unix milliseconds).
    seq: u64,
    at_ms: i64,
}

impl<'a> Notification<'a> {
    fn of(event: &'a TelemetryEvent) -> Option<Self> {
        let EventKind::DeferredDetected {
            detector,
            deferred: d,
            detail,
        } = &event.kind
        else {
            return None;
        };
        // A task's detection is not paged: a stuck task is stuck on a chain, a connection or
        // a peer whose own detection pages, and one page per stuck thing is the contract.
        if !pages(*detector) || d.task.is_some() {
            return None;
        }
        let step = d.named_step();
        Some(Self {
            kind: *detector,
            detail,
            chain: d.id,
            label: d.label.as_deref(),
            site: &d.site,
            service: d.service.as_deref(),
            connection: d.connection,
            // An ended chain's age is its life; a live one's, up to the detection.
            age_ms: if d.age_ms > 0 {
                d.age_ms
            } else {
                u64::try_from(event.at_ms - d.created_at_ms).unwrap_or(0)
            },
            state: d.state.as_str(),
            step: step.map(|s| s.name),
            step_detail: step.and_then(|s| s.detail.as_deref()),
            seq: event.seq,
            at_ms: event.at_ms,
        })
    }
}

/// `weft_notifications_*`.
pub(crate) const FAMILIES: Families = Families {
    sent: (
        "weft_notifications_sent_total",
        "Detections posted to [inspect] notify and answered 2xx.",
    ),
    dropped: (
        "weft_notifications_dropped_total",
        "Detections not posted: over the rate limit, or the queue was full.",
        &["rate_limited", "queue_full"],
    ),
    failed: (
        "weft_notifications_failed_total",
        "Posts that failed: no connection, no answer in time, or not 2xx.",
    ),
};

/// A token bucket: `per_minute` at once, refilled evenly over the minute.
struct RateLimit {
    per_minute: f64,
    tokens: f64,
    refilled: Instant,
}

impl RateLimit {
    fn new(per_minute: u32) -> Self {
        Self {
            per_minute: f64::from(per_minute),
            tokens: f64::from(per_minute),
            refilled: Instant::now(),
        }
    }

    fn admit(&mut self, now: Instant) -> bool {
        let refill = now.duration_since(self.refilled).as_secs_f64() * self.per_minute / 60.0;
        self.tokens = (self.tokens + refill).min(self.per_minute);
        self.refilled = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Takes detections from `feed` and posts those worth a page to `config.url` until `stop`.
pub(crate) async fn run(
    mut feed: Feed,
    config: NotifyConfig,
    metrics: PostMetrics,
    stop: CancellationToken,
) {
    let (queue, queued) = mpsc::channel(config.queue);
    let sender = tokio::spawn(send_all(queued, config.url.clone(), metrics.clone()));
    let mut limit = RateLimit::new(config.per_minute);
    let mut batch: Vec<Arc<TelemetryEvent>> = Vec::new();
    loop {
        tokio::select! {
            // Events this reader lost are counted by the hub
            // (weft_events_dropped_total{consumer="notify"}).
            taken = feed.recv_many(&mut batch, usize::MAX) => if taken == Ok(0) {
                break;
            },
            () = stop.cancelled() => break,
        }
        for event in batch.drain(..) {
            let Some(body) = Notification::of(&event).and_then(|n| serde_json::to_vec(&n).ok())
            else {
                continue;
            };
            if !limit.admit(Instant::now()) {
                metrics.dropped.with_label_values(&["rate_limited"]).inc();
            } else if queue.try_send(Bytes::from(body)).is_err() {
                metrics.dropped.with_label_values(&["queue_full"]).inc();
            }
        }
    }
    // What is queued is not waited for: the process is stopping.
    sender.abort();
}

/// Posts each queued notification in turn.
async fn send_all(mut queued: mpsc::Receiver<Bytes>, url: Uri, metrics: PostMetrics) {
    let shown = crate::post::shown(&url);
    while let Some(body) = queued.recv().await {
        match tokio::time::timeout(POST_TIMEOUT, post(&url, "application/json", body)).await {
            Ok(Ok(())) => metrics.sent.inc(),
            Ok(Err(failed)) => {
                let reason = failed.reason;
                tracing::warn!(url = %shown, reason, "a notification was not delivered");
                metrics.failed.with_label_values(&[reason]).inc();
            }
            Err(_) => {
                tracing::warn!(url = %shown, "a notification got no answer in time");
                metrics.failed.with_label_values(&["timeout"]).inc();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_http_urls_with_a_host_are_taken() {
        assert!(NotifyConfig::new("http://127.0.0.1:9000/hook").is_ok());
        assert_eq!(
            NotifyConfig::new("https://pager.example/hook"),
            Err(NotifyError::Scheme)
        );
        assert_eq!(NotifyConfig::new("/hook"), Err(NotifyError::Scheme));
        assert!(matches!(
            NotifyConfig::new("http://exa mple/"),
            Err(NotifyError::Url(_))
        ));
        // URLs no connection could reach.
        for url in [
            "http://127.0.0.1:0/hook",
            "http://224.0.0.1/hook",
            "http://255.255.255.255:9000/",
            "http://[ff02::1]:9000/",
            // Numeric hosts as the resolver reads them: 224.0.0.1, 255.255.255.255.
            "http://0xe0000001/hook",
            "http://4294967295:9000/",
        ] {
            assert!(
                matches!(NotifyConfig::new(url), Err(NotifyError::Unreachable(_))),
                "{url}"
            );
        }
        assert_eq!(NotifyConfig::check_limit(0), Err(NotifyError::Range));
        assert!(NotifyConfig::check_limit(1).is_ok());
        // Credentials would not be sent: refused, not dropped in silence.
        for url in ["http://u:secret@127.0.0.1:9000/hook", "http://u@pager/hook"] {
            assert_eq!(
                NotifyConfig::new(url),
                Err(NotifyError::Credentials),
                "{url}"
            );
        }
    }

    /// A failed post is logged by the receiver's address alone: a webhook's path is
    /// often its secret.
    #[test]
    fn a_log_line_names_the_receiver_without_its_path() {
        let shown = |url: &str| crate::post::shown(&NotifyConfig::new(url).unwrap().url);
        assert_eq!(
            shown("http://hooks.example:8080/services/T0/B0/s3cret?key=k"),
            "http://hooks.example:8080/…"
        );
        assert_eq!(shown("http://127.0.0.1:9000"), "http://127.0.0.1:9000/");
        assert_eq!(shown("http://h:1/?key=k"), "http://h:1/…");
    }

    #[test]
    fn the_rate_limit_lets_a_minutes_worth_through_then_refills_evenly() {
        let start = Instant::now();
        let mut limit = RateLimit::new(3);
        let admitted = (0..5).filter(|_| limit.admit(start)).count();
        assert_eq!(admitted, 3);
        assert!(!limit.admit(start + Duration::from_secs(10)));
        assert!(limit.admit(start + Duration::from_secs(21)));
    }

    #[test]
    fn slow_callbacks_do_not_page() {
        assert!(!pages(Detector::Slow));
        assert!(Detector::ALL.iter().filter(|d| pages(**d)).count() >= 3);
    }
}

//! OpenTelemetry traces: the chains and async tasks history keeps (flagged ones always,
//! failed and cancelled ones up to `[inspect] failed_per_second`, successful ones as
//! `[inspect] sample` picks them), exported as
//! spans over OTLP/HTTP in protobuf, from the inspector's thread, never the reactor's.
//!
//! The bus reader `otlp` takes each `deferred_ended` event, turns its chain into a span
//! (`spans`: trace and parent as the waterfall links them, attributes, steps as span
//! events); DNS services hand it the answers their query logs keep through
//! [`QuerySpans`] (`queries`: a zone's or the cache's answer has no chain), each a
//! `dns query` span. It gathers spans into a batch, sent every second or at [`BATCH`]
//! spans. At
//! most `queue` spans wait to be sent (and at most `queue` DNS answers wait to become
//! spans); what would overflow either, and what a failed export loses, is counted (`weft_otlp_spans_dropped_total{reason}`), so a collector that is
//! down or slow costs the services nothing. Events the reader itself lost are counted by
//! the hub (`weft_events_dropped_total{consumer="otlp"}`).
//!
//! Starting the exporter turns [`weft::observe::trace`] on: the HTTP service then
//! continues a caller's `traceparent` and sends its own upstream.

mod queries;
mod spans;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use hyper::Uri;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use weft_telemetry::{Feed, TelemetryEvent};

use crate::post::{Families, PostMetrics, UrlProblem, http_url, post};

pub(crate) use queries::Queries;
pub use queries::{DNS_QUERY, QuerySpans};
pub(crate) use spans::Spans;

/// Spans waiting to be exported at most by default.
pub const DEFAULT_OTLP_QUEUE: usize = 2048;
/// The most `queue` may be.
pub const MAX_OTLP_QUEUE: usize = 1_000_000;
/// Spans in one export at most: a batch is sent when it has this many, or a second
/// after its first span, whichever comes first.
pub const BATCH: usize = 512;
/// How long a span waits for its batch to fill at most.
const FLUSH: Duration = Duration::from_secs(1);
/// How long one export may take, connecting included.
const POST_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest a collector's `Retry-After` holds the exporter back.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);
/// The OTLP/HTTP content type for protobuf.
const PROTOBUF: &str = "application/x-protobuf";

/// Where spans go and how many may wait.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct OtlpConfig {
    /// The collector's OTLP/HTTP base URL, `http://host:4318`; spans are posted to its
    /// `/v1/traces`.
    pub endpoint: Uri,
    /// The traces URL itself: the endpoint's path with `/v1/traces` added.
    pub traces_url: Uri,
    /// The resource's `service.name`.
    pub service_name: String,
    /// Spans waiting to be exported at most; beyond, new ones are dropped and counted.
    pub queue: usize,
}

/// Why an OTLP endpoint or setting was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OtlpError {
    /// Not a URL at all.
    #[error("not a URL: {0}")]
    Url(String),
    /// Not `http://` (TLS is not supported: export to a local collector).
    #[error("only http:// endpoints are supported, such as \"http://127.0.0.1:4318\"")]
    Scheme,
    /// A URL without a host.
    #[error("the URL names no host")]
    Host,
    /// A URL no connection could reach (port 0, a multicast or broadcast address).
    #[error("{0}")]
    Unreachable(&'static str),
    /// A URL with a query: OTLP/HTTP appends `/v1/traces` to the endpoint's path.
    #[error("the endpoint takes no query; spans go to its path plus /v1/traces")]
    Query,
    /// An empty service name.
    #[error("the service name is empty")]
    ServiceName,
    /// A queue out of its range.
    #[error("must be between 1 and {MAX_OTLP_QUEUE}")]
    Range,
    /// An endpoint with user information, which would not be sent.
    #[error("{}", crate::post::CREDENTIALS)]
    Credentials,
}

impl OtlpConfig {
    /// Exports to the collector at `endpoint` as service `weft`, with the default queue.
    pub fn new(endpoint: &str) -> Result<Self, OtlpError> {
        let endpoint = http_url(endpoint).map_err(|p| match p {
            UrlProblem::Malformed(e) => OtlpError::Url(e),
            UrlProblem::Scheme => OtlpError::Scheme,
            UrlProblem::Host => OtlpError::Host,
            UrlProblem::Unreachable(why) => OtlpError::Unreachable(why),
            UrlProblem::Credentials => OtlpError::Credentials,
        })?;
        if endpoint.query().is_some() {
            return Err(OtlpError::Query);
        }
        let base = endpoint.path().trim_end_matches('/');
        let authority = endpoint.authority().map_or("", |a| a.as_str());
        let traces_url = format!("http://{authority}{base}/v1/traces")
            .parse()
            .map_err(|e| OtlpError::Url(format!("{e}")))?;
        Ok(Self {
            endpoint,
            traces_url,
            service_name: "weft".into(),
            queue: DEFAULT_OTLP_QUEUE,
        })
    }

    /// Sets the resource's `service.name`.
    pub fn with_service_name(mut self, name: &str) -> Result<Self, OtlpError> {
        if name.trim().is_empty() {
            return Err(OtlpError::ServiceName);
        }
        self.service_name = name.to_owned();
        Ok(self)
    }

    /// Sets how many spans may wait, 1 to [`MAX_OTLP_QUEUE`].
    pub fn with_queue(mut self, queue: u64) -> Result<Self, OtlpError> {
        self.queue = usize::try_from(queue)
            .ok()
            .filter(|q| (1..=MAX_OTLP_QUEUE).contains(q))
            .ok_or(OtlpError::Range)?;
        Ok(self)
    }
}

/// `weft_otlp_*`.
pub(crate) const FAMILIES: Families = Families {
    sent: (
        "weft_otlp_spans_exported_total",
        "Spans exported to [otlp] endpoint and answered 2xx.",
    ),
    dropped: (
        "weft_otlp_spans_dropped_total",
        "Spans not exported: the export queue was full, or their export failed.",
        &["queue_full", "export_failed"],
    ),
    failed: (
        "weft_otlp_exports_failed_total",
        "Exports that failed: no connection, no answer in time, or not 2xx.",
    ),
};

/// What woke the exporter.
enum Woke {
    /// Bus events were taken (`false`: the bus is gone).
    Events(bool),
    /// DNS query spans were taken (`false`: every sender is gone).
    Queries(bool),
    /// A second passed: time to send what waits.
    Tick,
}

/// Takes chains from `feed`, and DNS queries from `queries` when given, and exports them
/// as spans to `config` until `stop`.
pub(crate) async fn run(
    mut feed: Feed,
    mut queries: Option<Queries>,
    config: OtlpConfig,
    metrics: PostMetrics,
    stop: CancellationToken,
) {
    // Counts spans handed to the sender and not yet exported, so the queue is bounded in
    // spans whatever the size of the batches.
    let waiting = Arc::new(AtomicUsize::new(0));
    let (queue, queued) = mpsc::unbounded_channel();
    let sender = tokio::spawn(send_all(
        queued,
        config.clone(),
        metrics.clone(),
        waiting.clone(),
    ));
    let mut spans = Spans::default();
    let mut batch: Vec<Span> = Vec::new();
    let mut events: Vec<Arc<TelemetryEvent>> = Vec::new();
    let mut tick = tokio::time::interval(FLUSH);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let woke = tokio::select! {
            taken = feed.recv_many(&mut events, usize::MAX) => Woke::Events(taken != Ok(0)),
            n = recv_queries(queries.as_mut(), &mut batch) => Woke::Queries(n > 0),
            _ = tick.tick() => Woke::Tick,
            () = stop.cancelled() => break,
        };
        match woke {
            Woke::Events(false) => break,
            Woke::Queries(false) => queries = None,
            Woke::Events(true) | Woke::Queries(true) | Woke::Tick => {}
        }
        if let Some(lost) = queries.as_ref().map(Queries::take_dropped)
            && lost > 0
        {
            metrics
                .dropped
                .with_label_values(&["queue_full"])
                .inc_by(lost);
        }
        for event in events.drain(..) {
            if let Some(span) = spans.of(&event) {
                batch.push(span);
                if batch.len() >= BATCH {
                    hand_over(&mut batch, &queue, &config, &metrics, &waiting);
                }
            }
        }
        if batch.len() >= BATCH || (matches!(woke, Woke::Tick) && !batch.is_empty()) {
            hand_over(&mut batch, &queue, &config, &metrics, &waiting);
        }
    }
    // What is queued is not waited for: the process is stopping.
    sender.abort();
}

/// Turns DNS queries waiting in `queries` into spans at the end of `batch`, no more than
/// fill it; never returns without `queries`.
async fn recv_queries(queries: Option<&mut Queries>, batch: &mut Vec<Span>) -> usize {
    match queries {
        Some(q) => {
            let room = BATCH.saturating_sub(batch.len()).max(1);
            q.recv_many(batch, room).await
        }
        None => std::future::pending().await,
    }
}

/// Queues `batch` for export if the queue has room for it, or drops it and counts.
fn hand_over(
    batch: &mut Vec<Span>,
    queue: &mpsc::UnboundedSender<Vec<Span>>,
    config: &OtlpConfig,
    metrics: &PostMetrics,
    waiting: &AtomicUsize,
) {
    let spans = std::mem::take(batch);
    let n = spans.len();
    if waiting.load(Ordering::Relaxed) + n > config.queue || queue.send(spans).is_err() {
        metrics
            .dropped
            .with_label_values(&["queue_full"])
            .inc_by(n as u64);
        return;
    }
    waiting.fetch_add(n, Ordering::Relaxed);
}

/// Exports each queued batch in turn.
async fn send_all(
    mut queued: mpsc::UnboundedReceiver<Vec<Span>>,
    config: OtlpConfig,
    metrics: PostMetrics,
    waiting: Arc<AtomicUsize>,
) {
    let resource = spans::resource(&config.service_name);
    while let Some(batch) = queued.recv().await {
        let n = batch.len();
        let body = Bytes::from(spans::request(resource.clone(), batch).encode_to_vec());
        let result =
            tokio::time::timeout(POST_TIMEOUT, post(&config.traces_url, PROTOBUF, body)).await;
        waiting.fetch_sub(n, Ordering::Relaxed);
        let failed = match result {
            Ok(Ok(())) => {
                metrics.sent.inc_by(n as u64);
                continue;
            }
            Ok(Err(failed)) => failed,
            Err(_) => "timeout".into(),
        };
        let reason = failed.reason;
        tracing::warn!(url = %crate::post::shown(&config.traces_url), reason, spans = n, "spans were not exported");
        metrics.failed.with_label_values(&[reason]).inc();
        metrics
            .dropped
            .with_label_values(&["export_failed"])
            .inc_by(n as u64);
        // A collector that asked to be left alone a while (429 or 503 with
        // `Retry-After`, as the OTLP/HTTP specification has a client wait) is: what
        // queues meanwhile past the queue's bound is dropped and counted, as ever.
        if let Some(after) = failed.retry_after {
            tokio::time::sleep(after.min(MAX_RETRY_AFTER)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_endpoint_is_a_base_url_spans_go_to_its_v1_traces() {
        let c = OtlpConfig::new("http://127.0.0.1:4318").unwrap();
        assert_eq!(c.traces_url.to_string(), "http://127.0.0.1:4318/v1/traces");
        let c = OtlpConfig::new("http://collector:4318/otel/").unwrap();
        assert_eq!(
            c.traces_url.to_string(),
            "http://collector:4318/otel/v1/traces"
        );
        assert_eq!(
            OtlpConfig::new("https://collector:4318"),
            Err(OtlpError::Scheme)
        );
        assert_eq!(
            OtlpConfig::new("http://collector:4318/?a=b"),
            Err(OtlpError::Query)
        );
        for url in ["http://collector:0", "http://239.1.2.3:4318"] {
            assert!(
                matches!(OtlpConfig::new(url), Err(OtlpError::Unreachable(_))),
                "{url}"
            );
        }
        assert_eq!(
            OtlpConfig::new("http://user:pw@collector:4318"),
            Err(OtlpError::Credentials)
        );
        assert_eq!(
            OtlpConfig::new("http://c").unwrap().with_queue(0),
            Err(OtlpError::Range)
        );
        assert_eq!(
            OtlpConfig::new("http://c").unwrap().with_service_name(" "),
            Err(OtlpError::ServiceName)
        );
    }
}

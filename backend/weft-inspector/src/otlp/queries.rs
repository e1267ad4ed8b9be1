//! DNS queries as spans: the answers a DNS service's query log keeps (failures always,
//! routine answers under `[store] queries_per_second`: the same sampling as history),
//! handed over by the service through [`QuerySpans`], a bounded queue that never blocks.
//!
//! An answer from a zone or the cache has no Deferred chain, so its span roots a trace
//! of its own. A forwarded answer's span is the child of its upstream query's chain (the
//! `dns upstream query` span, shared by everyone who asked the question meanwhile), in
//! that chain's trace: the chain is exported too, and is not repeated here.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::{Span, Status};
use tokio::sync::mpsc;
use weft::observe::exemplar::SpanRef;
use weft_store::QueryRecord;

use super::spans::{HAS_IS_REMOTE, int, nanos, text};

/// The name of a DNS query's span.
pub const DNS_QUERY: &str = "dns query";

/// Where a DNS service hands the answers its query log keeps, to be exported as spans
/// (see [`Inspector::query_spans`](crate::Inspector::query_spans)). Cheap to clone; an
/// answer that finds the queue full is dropped and counted in
/// `weft_otlp_spans_dropped_total{reason="queue_full"}`.
#[derive(Debug, Clone)]
pub struct QuerySpans {
    queue: mpsc::Sender<(QueryRecord, Option<SpanRef>)>,
    dropped: Arc<AtomicU64>,
}

impl QuerySpans {
    /// A queue of `capacity` answers, and its reading end for the exporter.
    pub(crate) fn channel(capacity: usize) -> (Self, Queries) {
        let (queue, queued) = mpsc::channel(capacity.max(1));
        let dropped = Arc::new(AtomicU64::new(0));
        let spans = Self {
            queue,
            dropped: dropped.clone(),
        };
        let queries = Queries {
            queued,
            dropped,
            key: RandomState::new(),
            next: 0,
        };
        (spans, queries)
    }

    /// Queues `query` for export, as the child of `upstream` (the span of the upstream
    /// query that answered it) when given; never waits.
    pub fn offer(&self, query: QueryRecord, upstream: Option<SpanRef>) {
        if self.queue.try_send((query, upstream)).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The exporter's end of [`QuerySpans`]: the queued answers, and the ids of their spans.
pub(crate) struct Queries {
    queued: mpsc::Receiver<(QueryRecord, Option<SpanRef>)>,
    dropped: Arc<AtomicU64>,
    /// Span and trace ids are a keyed hash of a count, so they are unique in the process
    /// and not guessable outside it.
    key: RandomState,
    next: u64,
}

impl Queries {
    /// Waits for queued answers and turns up to `limit` of them into spans; 0 when every
    /// sender is gone.
    pub(crate) async fn recv_many(&mut self, spans: &mut Vec<Span>, limit: usize) -> usize {
        let mut taken = Vec::new();
        let n = self.queued.recv_many(&mut taken, limit).await;
        for (query, upstream) in taken {
            let span = self.span(&query, upstream);
            spans.push(span);
        }
        n
    }

    /// Answers dropped on a full queue since the last call.
    pub(crate) fn take_dropped(&self) -> u64 {
        self.dropped.swap(0, Ordering::Relaxed)
    }

    fn id(&self, tag: u8, n: u64) -> [u8; 8] {
        let mut h = self.key.build_hasher();
        h.write_u8(tag);
        h.write_u64(n);
        // Zero is the spec's "no id".
        h.finish().max(1).to_be_bytes()
    }

    fn span(&mut self, q: &QueryRecord, upstream: Option<SpanRef>) -> Span {
        let n = self.next;
        self.next += 1;
        let (trace_id, parent_span_id) = match upstream {
            Some(u) => (u.trace_id.to_vec(), u.span_id.to_vec()),
            None => ([self.id(1, n), self.id(2, n)].concat(), Vec::new()),
        };
        let end = nanos(q.at_ms);
        let latency = u64::try_from(q.latency_us)
            .unwrap_or(0)
            .saturating_mul(1000);
        Span {
            trace_id,
            span_id: self.id(3, n).to_vec(),
            parent_span_id,
            flags: HAS_IS_REMOTE,
            name: DNS_QUERY.into(),
            kind: SpanKind::Server as i32,
            start_time_unix_nano: end.saturating_sub(latency),
            end_time_unix_nano: end,
            attributes: attributes(q),
            status: Some(if q.failed {
                Status {
                    message: q.rcode.clone(),
                    code: StatusCode::Error as i32,
                }
            } else {
                Status::default()
            }),
            ..Default::default()
        }
    }
}

/// The service, the question (`dns.question.name` as the semantic conventions name it;
/// its type and the answer's code in the same style), the client, where the answer came
/// from and how many answers the span stands for when it was sampled.
fn attributes(q: &QueryRecord) -> Vec<KeyValue> {
    let mut a = vec![text("weft.service", &q.service)];
    if !q.name.is_empty() {
        a.push(text("dns.question.name", &q.name));
    }
    if !q.qtype.is_empty() {
        a.push(text("dns.question.type", &q.qtype));
    }
    a.push(text("dns.response_code", &q.rcode));
    a.push(text("weft.dns.source", &q.source));
    if let Ok(client) = q.client.parse::<SocketAddr>() {
        a.push(text("client.address", &client.ip().to_string()));
        a.push(int("client.port", u64::from(client.port())));
        a.push(text("network.peer.address", &q.client));
    }
    if q.weight > 1 {
        a.push(int("weft.dns.weight", u64::try_from(q.weight).unwrap_or(1)));
    }
    if q.failed {
        a.push(text("error.type", &q.rcode));
    }
    a
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::common::v1::any_value::Value;

    use super::*;

    fn record(rcode: &str, source: &str, failed: bool) -> QueryRecord {
        QueryRecord {
            service: "names".into(),
            at_ms: 1_700_000_000_123,
            client: "127.0.0.1:5353".into(),
            name: "www.example.test.".into(),
            qtype: "A".into(),
            rcode: rcode.into(),
            latency_us: 250,
            source: source.into(),
            failed,
            weight: 1,
        }
    }

    fn attribute(span: &Span, key: &str) -> Option<Value> {
        span.attributes
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.clone()?.value)
    }

    /// A zone's answer roots its own trace and ends when it was answered; a failure is an
    /// error; a forwarded answer is its upstream query's child; a full queue drops and
    /// counts without waiting.
    #[tokio::test]
    async fn answers_become_spans_in_their_upstream_querys_trace_when_forwarded() {
        let (sender, mut queries) = QuerySpans::channel(3);
        let upstream = SpanRef {
            trace_id: [7; 16],
            span_id: [9; 8],
        };
        sender.offer(record("NOERROR", "zone", false), None);
        sender.offer(record("REFUSED", "refused", true), None);
        sender.offer(
            record("NOERROR", "upstream 127.0.0.1:53", false),
            Some(upstream),
        );
        sender.offer(record("NOERROR", "zone", false), None);
        assert_eq!(queries.take_dropped(), 1, "the fourth found the queue full");

        let mut spans = Vec::new();
        assert_eq!(queries.recv_many(&mut spans, 10).await, 3);
        let [zone, refused, forwarded] = &spans[..] else {
            panic!("{spans:?}")
        };
        assert_eq!(zone.name, DNS_QUERY);
        assert!(zone.parent_span_id.is_empty());
        assert_eq!((zone.trace_id.len(), zone.span_id.len()), (16, 8));
        assert_ne!(zone.trace_id, refused.trace_id, "each roots its own trace");
        assert_eq!(zone.end_time_unix_nano, 1_700_000_000_123_000_000);
        assert_eq!(zone.end_time_unix_nano - zone.start_time_unix_nano, 250_000);
        assert_eq!(zone.status.as_ref().unwrap().code, StatusCode::Unset as i32);
        let expect = [
            ("dns.question.name", "www.example.test."),
            ("dns.question.type", "A"),
            ("dns.response_code", "NOERROR"),
            ("weft.dns.source", "zone"),
            ("client.address", "127.0.0.1"),
            ("network.peer.address", "127.0.0.1:5353"),
            ("weft.service", "names"),
        ];
        for (key, value) in expect {
            assert_eq!(attribute(zone, key), Some(Value::StringValue(value.into())));
        }
        assert_eq!(attribute(zone, "client.port"), Some(Value::IntValue(5353)));
        assert_eq!(attribute(zone, "error.type"), None);

        let status = refused.status.as_ref().unwrap();
        assert_eq!(
            (status.code, status.message.as_str()),
            (StatusCode::Error as i32, "REFUSED")
        );
        assert_eq!(
            attribute(refused, "error.type"),
            Some(Value::StringValue("REFUSED".into()))
        );

        assert_eq!(forwarded.trace_id, upstream.trace_id);
        assert_eq!(forwarded.parent_span_id, upstream.span_id);
        assert_ne!(forwarded.span_id, upstream.span_id);
    }
}

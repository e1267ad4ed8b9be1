//! A chain as a span: its trace and parent as the waterfall links them, what it is as
//! attributes, its steps as span events.
//!
//! A chain's span id and the id of a trace it roots come from
//! [`weft::observe::trace`], so the proxy that named a request's span upstream and this
//! exporter agree without talking. A chain created by another's callback is that chain's
//! child, in its trace; a request that came with a `traceparent` is the caller's span's
//! child, in the caller's trace.
//!
//! The peer of a chain's connection is not in its snapshot: this reader keeps the peers
//! of the connections it saw open (and of the last ones that closed, whose chains may end
//! after them), bounded.

use std::collections::{HashMap, VecDeque};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, InstrumentationScope, KeyValue, any_value::Value,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::{Event, SpanKind};
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use weft::defer::{DeferredId, DeferredState};
use weft::observe::trace::{span_id, trace_id};
use weft_telemetry::{DeferredSnapshot, EventKind, NO_SERVICE, TelemetryEvent};

/// Open connections whose peers are kept at most.
const OPEN_PEERS: usize = 65_536;
/// Closed connections whose peers are kept, the last ones.
const CLOSED_PEERS: usize = 4096;
/// The label of an HTTP request's chain (weft-web's `Trace`): a server span.
const HTTP_REQUEST: &str = "http request";
/// `SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK`: the flags say whether the parent is remote.
pub(super) const HAS_IS_REMOTE: u32 = 0x100;
/// `SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK`: the parent span is another process's.
const IS_REMOTE: u32 = 0x200;

/// Turns bus events into spans.
#[derive(Default)]
pub(crate) struct Spans {
    open: HashMap<u64, String>,
    closed: HashMap<u64, String>,
    closed_order: VecDeque<u64>,
}

impl Spans {
    /// The span of a chain that ended; notes connections' peers on the way.
    pub(crate) fn of(&mut self, event: &TelemetryEvent) -> Option<Span> {
        match &event.kind {
            EventKind::ConnectionOpened { connection } => {
                if self.open.len() < OPEN_PEERS {
                    self.open.insert(connection.id, connection.peer.to_string());
                }
                None
            }
            EventKind::ConnectionClosed { connection, .. } => {
                let peer = self
                    .open
                    .remove(&connection.id)
                    .unwrap_or_else(|| connection.peer.to_string());
                self.closed.insert(connection.id, peer);
                self.closed_order.push_back(connection.id);
                while self.closed_order.len() > CLOSED_PEERS {
                    if let Some(old) = self.closed_order.pop_front() {
                        self.closed.remove(&old);
                    }
                }
                None
            }
            EventKind::DeferredEnded { deferred } => Some(self.span(deferred)),
            _ => None,
        }
    }

    fn peer(&self, connection: u64) -> Option<&str> {
        self.open
            .get(&connection)
            .or_else(|| self.closed.get(&connection))
            .map(String::as_str)
    }

    fn span(&self, d: &DeferredSnapshot) -> Span {
        let remote = d.trace.as_ref().and_then(|t| t.remote.as_deref());
        let root = d.trace.as_ref().map_or(d.id, |t| t.root);
        let trace = remote.map_or_else(|| trace_id(DeferredId(root)), |r| r.trace_id);
        let (parent, flags) = match (d.parent, remote) {
            (Some(p), _) => (span_id(DeferredId(p)).to_vec(), HAS_IS_REMOTE),
            (None, Some(r)) => (r.parent_span.to_vec(), HAS_IS_REMOTE | IS_REMOTE),
            (None, None) => (Vec::new(), HAS_IS_REMOTE),
        };
        let start = nanos(d.created_at_ms);
        let end = nanos(
            d.created_at_ms
                .saturating_add(i64::try_from(d.age_ms).unwrap_or(0)),
        );
        Span {
            trace_id: trace.to_vec(),
            span_id: span_id(DeferredId(d.id)).to_vec(),
            trace_state: remote
                .and_then(|r| r.state.as_deref())
                .unwrap_or_default()
                .to_owned(),
            parent_span_id: parent,
            flags,
            name: name(d),
            kind: if d.label.as_deref() == Some(HTTP_REQUEST) {
                SpanKind::Server
            } else {
                SpanKind::Internal
            } as i32,
            start_time_unix_nano: start,
            end_time_unix_nano: end.max(start),
            attributes: self.attributes(d),
            events: events(d),
            status: Some(status(d)),
            ..Default::default()
        }
    }

    fn attributes(&self, d: &DeferredSnapshot) -> Vec<KeyValue> {
        let mut a = vec![
            text("weft.service", d.service.as_deref().unwrap_or(NO_SERVICE)),
            int("weft.deferred.id", d.id),
            text("weft.site", &d.site),
            text("weft.state", d.state.as_str()),
        ];
        if let Some(c) = d.connection {
            a.push(int("weft.connection.id", c));
            if let Some(peer) = self.peer(c) {
                a.push(text("network.peer.address", peer));
            }
        }
        if let Some(p) = d.parent {
            a.push(int("weft.parent.id", p));
        }
        if let Some(f) = &d.failure {
            a.push(text("weft.failure", f));
        }
        let detected: Vec<&str> = [
            (d.stalled, "stalled"),
            (d.slow, "slow"),
            (d.unhandled, "unhandled"),
            (d.leaked, "leaked"),
            (d.deadlock, "deadlock"),
        ]
        .iter()
        .filter_map(|(on, name)| on.then_some(*name))
        .collect();
        if !detected.is_empty() {
            a.push(text("weft.detected", &detected.join(",")));
        }
        if let Some(t) = &d.task {
            a.push(text("weft.task.kind", t.kind.as_str()));
            a.push(int("weft.task.polls", t.polls));
            a.push(int("weft.task.busy_us", t.busy_us));
        }
        if let Some(step) = d.named_step()
            && let Some(detail) = &step.detail
        {
            a.push(text("weft.step.detail", detail));
        }
        if d.label.as_deref() == Some(HTTP_REQUEST) {
            a.extend(http_attributes(d));
        }
        a
    }
}

/// An HTTP request's semantic-convention attributes, from the steps weft-web names while
/// spans are exported: `request` (its method), `route` (the route's prefix, or `files`)
/// and `response` (its status).
fn http_attributes(d: &DeferredSnapshot) -> Vec<KeyValue> {
    let mut a = Vec::new();
    for step in &d.named_steps {
        let Some(detail) = step.detail.as_deref() else {
            continue;
        };
        match step.name {
            // The semantic conventions' name for a method outside the known set.
            "request" if detail == "other" => a.push(text("http.request.method", "_OTHER")),
            "request" => a.push(text("http.request.method", detail)),
            "route" => a.push(text("http.route", detail)),
            "response" => {
                if let Ok(code) = detail.parse() {
                    a.push(int("http.response.status_code", code));
                }
            }
            _ => {}
        }
    }
    a
}

/// A bounded name: the chain's label, else what it is (a task of which kind, a Deferred);
/// its site is an attribute.
fn name(d: &DeferredSnapshot) -> String {
    match (&d.label, &d.task) {
        (Some(label), _) => label.clone(),
        (None, Some(t)) => format!("task {}", t.kind.as_str()),
        (None, None) => "deferred".into(),
    }
}

/// Each callback step, and each named step, as a span event at the time it happened.
fn events(d: &DeferredSnapshot) -> Vec<Event> {
    let steps = d.steps.iter().map(|s| {
        let mut attributes = vec![
            text("weft.step.kind", s.kind.as_str()),
            text("weft.step.outcome", s.outcome.as_str()),
            text("weft.site", &s.site),
            int("weft.step.duration_us", s.duration_us),
        ];
        if let Some(f) = &s.failure {
            attributes.push(text("weft.failure", f));
        }
        if let Some(c) = s.child {
            attributes.push(int("weft.step.child", c));
        }
        Event {
            time_unix_nano: nanos(s.at_ms),
            name: "step".into(),
            attributes,
            ..Default::default()
        }
    });
    let named = d.named_steps.iter().map(|n| {
        let mut attributes = Vec::new();
        if let Some(detail) = &n.detail {
            attributes.push(text("weft.step.detail", detail));
        }
        if let Some(ms) = n.duration_ms {
            attributes.push(int("weft.step.duration_ms", ms));
        }
        Event {
            time_unix_nano: nanos(n.started_at_ms),
            name: n.name.into(),
            attributes,
            ..Default::default()
        }
    });
    let mut all: Vec<Event> = steps.chain(named).collect();
    all.sort_by_key(|e| e.time_unix_nano);
    all
}

fn status(d: &DeferredSnapshot) -> Status {
    match d.state {
        DeferredState::Failed | DeferredState::Cancelled => Status {
            message: d
                .failure
                .clone()
                .unwrap_or_else(|| d.state.as_str().to_owned()),
            code: StatusCode::Error as i32,
        },
        _ if d.flagged() => Status {
            message: "flagged by a detector".into(),
            code: StatusCode::Error as i32,
        },
        _ => Status {
            message: String::new(),
            code: StatusCode::Unset as i32,
        },
    }
}

/// The resource every span of this process belongs to.
pub(crate) fn resource(service_name: &str) -> Resource {
    Resource {
        attributes: vec![
            text("service.name", service_name),
            text("service.version", weft_telemetry::VERSION),
        ],
        ..Default::default()
    }
}

/// One export of `spans`.
pub(crate) fn request(resource: Resource, spans: Vec<Span>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(resource),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "weft".into(),
                    version: weft_telemetry::VERSION.into(),
                    ..Default::default()
                }),
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

pub(super) fn nanos(ms: i64) -> u64 {
    u64::try_from(ms).unwrap_or(0).saturating_mul(1_000_000)
}

pub(super) fn text(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(Value::StringValue(value.into())),
        }),
        ..Default::default()
    }
}

pub(super) fn int(key: &str, value: u64) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(Value::IntValue(i64::try_from(value).unwrap_or(i64::MAX))),
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::rc::Rc;

    use weft::defer::Deferred;
    use weft::observe::trace::{self, TraceContext};
    use weft_telemetry::{Hub, HubConfig};

    use super::*;

    const CALLER: &[u8] = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    /// A hub keeping every chain, installed on a reactor, and its `otlp` feed.
    fn hub() -> (weft::Reactor, std::sync::Arc<Hub>, weft_telemetry::Feed) {
        let reactor = weft::Reactor::new().unwrap();
        let mut config = HubConfig::default();
        config.sample = 1.0;
        config.sample_per_second = 0;
        let hub = Hub::new(config).unwrap();
        let feed = hub.subscribe("otlp");
        hub.install(&reactor);
        (reactor, hub, feed)
    }

    /// A chain created by another's callback is that chain's child, in its trace; the
    /// outer chain continues its caller's trace, so both are in the caller's.
    #[test]
    fn a_chain_created_in_a_callback_is_its_parents_child_in_the_callers_trace() {
        trace::enable();
        let (_reactor, _hub, mut feed) = hub();

        let caller = TraceContext::parse(CALLER, Some(b"k=v")).unwrap();
        let (resolver, outer) = Deferred::<u32>::labeled("outer");
        let outer_id = outer.id();
        trace::continue_trace(outer_id, None, caller.clone());
        let inner_id = Rc::new(Cell::new(None));
        let seen = inner_id.clone();
        let outer = outer.add_callback(move |n| {
            let (r, inner) = Deferred::<u32>::labeled("inner");
            seen.set(Some(inner.id()));
            r.callback(n);
            drop(inner);
            n
        });
        resolver.callback(1);
        drop(outer);
        let inner_id = inner_id.get().expect("the callback ran");

        let mut events = Vec::new();
        feed.try_recv_many(&mut events, usize::MAX).unwrap();
        let mut spans = Spans::default();
        let all: Vec<Span> = events.iter().filter_map(|e| spans.of(e)).collect();
        let find = |name: &str| {
            all.iter()
                .find(|s| s.name == name)
                .unwrap_or_else(|| panic!("a span {name}: {all:?}"))
        };
        let (outer, inner) = (find("outer"), find("inner"));
        assert_eq!(outer.trace_id, caller.trace_id);
        assert_eq!(outer.parent_span_id, caller.parent_span);
        assert_eq!(outer.trace_state, "k=v");
        assert_eq!(outer.flags, HAS_IS_REMOTE | IS_REMOTE);
        assert_eq!(outer.span_id, span_id(outer_id));
        assert_eq!(
            inner.trace_id, caller.trace_id,
            "the child is in its parent's trace"
        );
        assert_eq!(inner.parent_span_id, span_id(outer_id));
        assert_eq!(inner.span_id, span_id(inner_id));
        assert_eq!(inner.flags, HAS_IS_REMOTE);
        let service = inner.attributes.iter().find(|kv| kv.key == "weft.service");
        assert!(service.is_some());
    }

    /// An HTTP request's span carries the method, route and status its chain named.
    #[test]
    fn an_http_requests_span_has_its_method_route_and_status() {
        use weft::defer::StepDetail;

        let (_reactor, _hub, mut feed) = hub();

        let (resolver, request) = Deferred::<()>::labeled(HTTP_REQUEST);
        let steps = request.steps();
        for (name, detail) in [
            ("request", "other"),
            ("route", "/api/"),
            ("response", "404"),
        ] {
            steps.step_with(name, None, Some(&StepDetail::new(detail)));
        }
        resolver.callback(());
        drop(request);

        let mut events = Vec::new();
        feed.try_recv_many(&mut events, usize::MAX).unwrap();
        let mut spans = Spans::default();
        let span = events
            .iter()
            .filter_map(|e| spans.of(e))
            .find(|s| s.name == HTTP_REQUEST)
            .expect("the request's span");
        let attribute = |key: &str| {
            span.attributes
                .iter()
                .find(|kv| kv.key == key)
                .and_then(|kv| kv.value.clone()?.value)
        };
        assert_eq!(
            attribute("http.request.method"),
            Some(Value::StringValue("_OTHER".into()))
        );
        assert_eq!(
            attribute("http.route"),
            Some(Value::StringValue("/api/".into()))
        );
        assert_eq!(
            attribute("http.response.status_code"),
            Some(Value::IntValue(404))
        );
    }
}

//! `[otlp]`: chains exported as OpenTelemetry spans over OTLP/HTTP (protobuf), received by
//! a collector in the test that decodes them with the official protobuf definitions; W3C
//! `traceparent` continued by the HTTP service and sent on by its proxy, so a request
//! through two gateways is one trace; DNS answers (from a zone, refused, forwarded) as
//! `dns query` spans, a forwarded one in its upstream query's trace; a collector that is
//! down or never answers costs the services nothing, and what it loses is counted.

use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use prost::Message;

use crate::assert_eventually;
use crate::support::{App, free_port, http, spawn_app_with};

/// One span as received, with its resource's `service.name`.
#[derive(Clone, Debug)]
pub(crate) struct Received {
    service: String,
    span: Span,
}

/// An OTLP/HTTP collector on loopback: decodes each `POST /v1/traces` and keeps its spans.
/// One that does not `answer` reads each request and never responds.
pub(crate) struct Collector {
    addr: SocketAddr,
    spans: Arc<Mutex<Vec<Received>>>,
    /// Requests that were not an OTLP/HTTP protobuf export of traces.
    wrong: Arc<Mutex<Vec<String>>>,
    /// Exports received, answered or not.
    exports: Arc<std::sync::atomic::AtomicUsize>,
}

impl Collector {
    pub(crate) fn start(answer: bool) -> Self {
        Self::answering(answer.then_some(200))
    }

    /// A collector that answers every export with `status` (429 with `Retry-After: 30`
    /// a collector asking to be left alone), or never answers (`None`).
    pub(crate) fn answering(status: Option<u16>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let spans = Arc::new(Mutex::new(Vec::new()));
        let wrong = Arc::new(Mutex::new(Vec::new()));
        let exports = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (kept, refused, counted) = (spans.clone(), wrong.clone(), exports.clone());
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                while let Ok((stream, _)) = listener.accept().await {
                    let (kept, refused, counted) = (kept.clone(), refused.clone(), counted.clone());
                    tokio::spawn(async move {
                        let service = service_fn(move |request| {
                            let (kept, refused) = (kept.clone(), refused.clone());
                            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            async move {
                                export(request, &kept, &refused).await;
                                let Some(status) = status else {
                                    std::future::pending::<()>().await;
                                    unreachable!()
                                };
                                let mut response = hyper::Response::new(Full::new(Bytes::new()));
                                *response.status_mut() =
                                    hyper::StatusCode::from_u16(status).unwrap();
                                if status == 429 {
                                    response.headers_mut().insert(
                                        hyper::header::RETRY_AFTER,
                                        hyper::header::HeaderValue::from_static("30"),
                                    );
                                }
                                Ok::<_, std::convert::Infallible>(response)
                            }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            });
        });
        Self {
            addr,
            spans,
            wrong,
            exports,
        }
    }

    pub(crate) fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub(crate) fn spans(&self) -> Vec<Received> {
        self.spans.lock().unwrap().clone()
    }

    /// The spans named `name` from the service `service`.
    pub(crate) fn named(&self, service: &str, name: &str) -> Vec<Span> {
        self.spans()
            .into_iter()
            .filter(|r| r.service == service && r.span.name == name)
            .map(|r| r.span)
            .collect()
    }
}

async fn export(
    request: hyper::Request<Incoming>,
    kept: &Mutex<Vec<Received>>,
    refused: &Mutex<Vec<String>>,
) {
    let path = request.uri().path().to_owned();
    let content_type = request
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = request.into_body().collect().await.unwrap().to_bytes();
    if path != "/v1/traces" || content_type != "application/x-protobuf" {
        refused
            .lock()
            .unwrap()
            .push(format!("{path} {content_type}"));
        return;
    }
    let decoded = ExportTraceServiceRequest::decode(body).expect("an OTLP trace export");
    for resource in decoded.resource_spans {
        let service = resource
            .resource
            .as_ref()
            .and_then(|r| text(&r.attributes, "service.name"))
            .unwrap_or_default();
        for scope in resource.scope_spans {
            for span in scope.spans {
                kept.lock().unwrap().push(Received {
                    service: service.clone(),
                    span,
                });
            }
        }
    }
}

fn attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a Value> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v: &AnyValue| v.value.as_ref())
}

fn text(attributes: &[KeyValue], key: &str) -> Option<String> {
    match attribute(attributes, key)? {
        Value::StringValue(s) => Some(s.clone()),
        _ => None,
    }
}

fn int(attributes: &[KeyValue], key: &str) -> Option<i64> {
    match attribute(attributes, key)? {
        Value::IntValue(n) => Some(*n),
        _ => None,
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A gateway named `name` (its spans' `service.name`) exporting every chain to
/// `collector`, with an http service `web` on `port`: static files, or a proxy to
/// `upstream` when given. `otlp_keys` are added to `[otlp]`.
fn gateway(
    name: &str,
    collector: &str,
    port: u16,
    upstream: Option<SocketAddr>,
    otlp_keys: &str,
) -> App {
    spawn_app_with(|dir| {
        let root = dir.join("site");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(root.join("index.html"), "hello").unwrap();
        let serve = match upstream {
            Some(up) => format!("[[service.route]]\nprefix = \"/\"\nupstream = \"http://{up}\""),
            None => format!("root = \"{}\"", root.display()),
        };
        format!(
            r#"
[inspect]
sample = 1.0

[otlp]
endpoint = "{collector}"
service_name = "{name}"
{otlp_keys}

[[service]]
name = "web"
kind = "http"
listen = "tcp:{port}:interface=127.0.0.1"
{serve}
"#
        )
    })
}

fn get(addr: SocketAddr, extra_headers: &str) -> u16 {
    http(
        addr,
        &format!("GET / HTTP/1.1\r\nHost: web\r\n{extra_headers}"),
        "",
    )
    .status
}

const CALLER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

#[test]
fn a_request_continues_its_callers_trace_and_is_exported_with_its_attributes() {
    let collector = Collector::start(true);
    let port = free_port();
    let app = gateway("edge", &collector.endpoint(), port, None, "");
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();

    let traced = format!(
        "traceparent: 00-{CALLER_TRACE}-{CALLER_SPAN}-01\r\ntracestate: congo=t61rcWkgMzE\r\n"
    );
    assert_eq!(get(addr, &traced), 200);
    // Upper-case hex is invalid (W3C Trace Context): ignored, a trace of our own begins.
    let invalid = format!(
        "traceparent: 00-{}-{CALLER_SPAN}-01\r\n",
        CALLER_TRACE.to_uppercase()
    );
    assert_eq!(get(addr, &invalid), 200);

    assert_eventually!(
        collector.named("edge", "http request").len() >= 2,
        "both requests exported: {:?}\n{}",
        collector.spans(),
        app.log()
    );
    assert!(collector.wrong.lock().unwrap().is_empty());
    let spans = collector.named("edge", "http request");
    let continued = spans
        .iter()
        .find(|s| hex(&s.trace_id) == CALLER_TRACE)
        .unwrap_or_else(|| panic!("a span in the caller's trace: {spans:?}"));
    assert_eq!(hex(&continued.parent_span_id), CALLER_SPAN);
    assert_eq!(continued.trace_state, "congo=t61rcWkgMzE");
    assert_eq!(continued.flags & 0x300, 0x300, "its parent is remote");
    assert_eq!(continued.kind, SpanKind::Server as i32);
    assert_eq!(continued.span_id.len(), 8);
    assert!(continued.end_time_unix_nano >= continued.start_time_unix_nano);
    let a = &continued.attributes;
    assert_eq!(text(a, "weft.service").as_deref(), Some("web"));
    assert!(int(a, "weft.connection.id").is_some_and(|c| c > 0));
    assert!(
        text(a, "network.peer.address").is_some_and(|p| p.starts_with("127.0.0.1:")),
        "{a:?}"
    );
    assert_eq!(text(a, "weft.state").as_deref(), Some("succeeded"));
    assert_eq!(text(a, "http.request.method").as_deref(), Some("GET"));
    assert_eq!(text(a, "http.route").as_deref(), Some("files"));
    assert_eq!(int(a, "http.response.status_code"), Some(200));
    assert!(text(a, "weft.site").is_some_and(|s| s.contains("trace.rs")));
    assert!(
        continued.events.iter().any(|e| e.name == "route"
            && text(&e.attributes, "weft.step.detail").as_deref() == Some("files")),
        "its named steps are span events: {:?}",
        continued.events
    );

    let own = spans
        .iter()
        .find(|s| hex(&s.trace_id) != CALLER_TRACE)
        .expect("the request with an invalid traceparent");
    assert!(own.parent_span_id.is_empty(), "it roots its own trace");
    assert_eq!(own.trace_id.len(), 16);
    assert_ne!(
        hex(&own.trace_id),
        CALLER_TRACE.to_uppercase().to_lowercase()
    );
    assert!(
        app.metric("weft_otlp_spans_exported_total")
            .is_some_and(|n| n >= 2.0)
    );
    assert_eq!(
        app.metric(r#"weft_http_traceparent_invalid_total{service="web"}"#),
        Some(1.0),
        "the invalid traceparent is counted, the valid one not"
    );
}

#[test]
fn a_request_through_two_gateways_is_one_trace() {
    let collector = Collector::start(true);
    let (back_port, front_port) = (free_port(), free_port());
    let _back = gateway("back", &collector.endpoint(), back_port, None, "");
    let front = gateway(
        "front",
        &collector.endpoint(),
        front_port,
        Some(([127, 0, 0, 1], back_port).into()),
        "",
    );

    assert_eq!(get(([127, 0, 0, 1], front_port).into(), ""), 200);

    assert_eventually!(
        !collector.named("front", "http request").is_empty()
            && !collector.named("back", "http request").is_empty(),
        "both gateways exported the request: {:?}\n{}",
        collector.spans(),
        front.log()
    );
    let f = &collector.named("front", "http request")[0];
    let b = &collector.named("back", "http request")[0];
    assert!(f.parent_span_id.is_empty(), "the front roots the trace");
    assert_eq!(hex(&b.trace_id), hex(&f.trace_id), "one trace across both");
    assert_eq!(
        hex(&b.parent_span_id),
        hex(&f.span_id),
        "the back's request is the front's request's child"
    );
    assert_eq!(b.flags & 0x300, 0x300, "a remote parent");
}

#[test]
fn a_collector_that_never_answers_or_is_down_costs_the_services_nothing() {
    let stuck = Collector::start(false);
    let port = free_port();
    let app = gateway("edge", &stuck.endpoint(), port, None, "queue = 4");
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();

    // The first export hangs (its deadline is 5 s); everything after waits in a queue of
    // 4 spans, and what does not fit is dropped: requests go on being answered at once.
    let mut slowest = Duration::ZERO;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(3) {
        let one = Instant::now();
        assert_eq!(get(addr, ""), 200);
        slowest = slowest.max(one.elapsed());
    }
    assert!(
        slowest < Duration::from_millis(500),
        "slowest request {slowest:?}"
    );
    assert_eventually!(
        app.metric(r#"weft_otlp_spans_dropped_total{reason="queue_full"}"#)
            .is_some_and(|n| n > 0.0),
        "spans past the queue are dropped and counted\n{}",
        app.curl("/metrics").unwrap_or_default()
    );

    // Down: nothing listens on the port any more.
    let down = TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = down.local_addr().unwrap();
    drop(down);
    let port = free_port();
    let app = gateway("edge", &format!("http://{closed}"), port, None, "");
    assert_eq!(get(([127, 0, 0, 1], port).into(), ""), 200);
    assert_eventually!(
        app.metric(r#"weft_otlp_exports_failed_total{reason="connect"}"#)
            .is_some_and(|n| n > 0.0)
            && app
                .metric(r#"weft_otlp_spans_dropped_total{reason="export_failed"}"#)
                .is_some_and(|n| n > 0.0),
        "a failed export is counted with the spans it lost\n{}",
        app.curl("/metrics").unwrap_or_default()
    );
}

/// A collector that answers 429 with `Retry-After: 30` is left alone that long, as the
/// OTLP/HTTP specification has a client do: not asked again each second with the next
/// batch. What the exporter could not send is dropped and counted, as for any failure.
#[test]
fn a_collector_asking_to_be_left_alone_is() {
    let collector = Collector::answering(Some(429));
    let port = free_port();
    let app = gateway("edge", &collector.endpoint(), port, None, "");
    let web: SocketAddr = ([127, 0, 0, 1], port).into();
    let until = std::time::Instant::now() + Duration::from_secs(5);
    while std::time::Instant::now() < until {
        assert_eq!(get(web, ""), 200);
        std::thread::sleep(Duration::from_millis(100));
    }
    let exports = collector.exports.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(
        exports,
        1,
        "asked again before its 30 s were up\n{}",
        app.log()
    );
    assert_eq!(
        app.metric(r#"weft_otlp_exports_failed_total{reason="status"}"#),
        Some(1.0)
    );
}

#[test]
fn without_otlp_no_traceparent_is_added_upstream() {
    let port = free_port();
    let upstream = TcpListener::bind("127.0.0.1:0").unwrap();
    let up = upstream.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(String::new()));
    let keep = seen.clone();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        if let Ok((mut s, _)) = upstream.accept() {
            let mut buf = [0; 4096];
            let n = s.read(&mut buf).unwrap_or(0);
            *keep.lock().unwrap() = String::from_utf8_lossy(&buf[..n]).into_owned();
            let _ =
                s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
    let _app = spawn_app_with(|_| {
        format!(
            "[[service]]\nname = \"web\"\nkind = \"http\"\nlisten = \"tcp:{port}:interface=127.0.0.1\"\n[[service.route]]\nprefix = \"/\"\nupstream = \"http://{up}\"\n"
        )
    });
    assert_eq!(get(([127, 0, 0, 1], port).into(), ""), 200);
    let head = seen.lock().unwrap().to_ascii_lowercase();
    assert!(head.starts_with("get /"), "{head}");
    assert!(!head.contains("traceparent"), "{head}");
}

/// `[inspect]` keeping every chain and, with a `collector`, `[otlp]` exporting to it as
/// `edge`.
pub(crate) fn traced(collector: Option<&Collector>) -> String {
    let otlp = collector.map_or(String::new(), |c| {
        format!(
            "[otlp]\nendpoint = \"{}\"\nservice_name = \"edge\"\n",
            c.endpoint()
        )
    });
    format!("[inspect]\nsample = 1.0\n\n{otlp}")
}

/// A gateway exporting to `collector` (when given) with two dns services: `names`,
/// authoritative for `example.test` and nothing else, and `resolver`, forwarding to
/// `upstream`.
fn dns_gateway(
    collector: Option<&Collector>,
    names: u16,
    resolver: u16,
    upstream: SocketAddr,
) -> App {
    spawn_app_with(|dir| {
        let zone = dir.join("example.test.zone");
        std::fs::write(&zone, crate::dns::ZONE).unwrap();
        format!(
            r#"{traced}
[[service]]
name = "names"
kind = "dns"
listen = "udp:{names}:interface=127.0.0.1"
zones = ["{zone}"]

[[service]]
name = "resolver"
kind = "dns"
listen = "udp:{resolver}:interface=127.0.0.1"
forward = ["{upstream}"]
{forward_ports}
"#,
            forward_ports = crate::support::FORWARD_PORTS,
            traced = traced(collector),
            zone = zone.display()
        )
    })
}

/// The `dns query` span of the question for `name`.
fn dns_span(collector: &Collector, name: &str) -> Option<Span> {
    collector
        .named("edge", "dns query")
        .into_iter()
        .find(|s| text(&s.attributes, "dns.question.name").as_deref() == Some(name))
}

#[test]
fn dns_answers_from_a_zone_or_refused_are_spans_and_forwarded_ones_join_their_upstream_query() {
    let collector = Collector::start(true);
    let (upstream, _) = crate::dns::upstream();
    let (names, resolver) = (free_port(), free_port());
    let app = dns_gateway(Some(&collector), names, resolver, upstream);

    let out = crate::dns::dig(names, &["www.example.test", "A"]);
    assert!(out.contains("status: NOERROR"), "{out}");
    let out = crate::dns::dig(names, &["nope.example.test", "AAAA"]);
    assert!(out.contains("status: NXDOMAIN"), "{out}");
    let out = crate::dns::dig(names, &["www.elsewhere.test", "A"]);
    assert!(out.contains("status: REFUSED"), "{out}");
    let out = crate::dns::dig(resolver, &["fwd.elsewhere.test", "A"]);
    assert!(out.contains("status: NOERROR"), "{out}");

    let asked = [
        "www.example.test.",
        "nope.example.test.",
        "www.elsewhere.test.",
        "fwd.elsewhere.test.",
    ];
    assert_eventually!(
        asked.iter().all(|n| dns_span(&collector, n).is_some())
            && !collector.named("edge", "dns upstream query").is_empty(),
        "every answer exported: {:?}\n{}",
        collector.spans(),
        app.log()
    );
    let zone = dns_span(&collector, "www.example.test.").unwrap();
    let a = &zone.attributes;
    assert_eq!(zone.kind, SpanKind::Server as i32);
    assert!(zone.parent_span_id.is_empty(), "it roots its own trace");
    assert_eq!((zone.trace_id.len(), zone.span_id.len()), (16, 8));
    assert!(zone.end_time_unix_nano >= zone.start_time_unix_nano);
    assert_eq!(text(a, "weft.service").as_deref(), Some("names"));
    assert_eq!(text(a, "dns.question.type").as_deref(), Some("A"));
    assert_eq!(text(a, "dns.response_code").as_deref(), Some("NOERROR"));
    assert_eq!(text(a, "weft.dns.source").as_deref(), Some("zone"));
    assert_eq!(text(a, "client.address").as_deref(), Some("127.0.0.1"));
    assert!(int(a, "client.port").is_some_and(|p| p > 0), "{a:?}");
    assert!(text(a, "network.peer.address").is_some_and(|p| p.starts_with("127.0.0.1:")));
    assert_eq!(zone.status.as_ref().map(|s| s.code), Some(0), "unset");

    let nx = dns_span(&collector, "nope.example.test.").unwrap();
    let attr = |span: &Span, key: &str| text(&span.attributes, key);
    assert_eq!(attr(&nx, "dns.question.type").as_deref(), Some("AAAA"));
    assert_eq!(attr(&nx, "dns.response_code").as_deref(), Some("NXDOMAIN"));
    assert_eq!(nx.status.as_ref().map(|s| s.code), Some(0), "not a failure");

    let refused = dns_span(&collector, "www.elsewhere.test.").unwrap();
    let status = refused.status.clone().unwrap();
    assert_eq!((status.code, &*status.message), (2, "REFUSED"), "an error");
    assert_eq!(attr(&refused, "error.type").as_deref(), Some("REFUSED"));
    assert_eq!(
        attr(&refused, "weft.dns.source").as_deref(),
        Some("refused")
    );

    let forwarded = dns_span(&collector, "fwd.elsewhere.test.").unwrap();
    let source = attr(&forwarded, "weft.dns.source");
    assert_eq!(source, Some(format!("upstream {upstream}")));
    let chain = collector
        .named("edge", "dns upstream query")
        .into_iter()
        .find(|s| s.span_id == forwarded.parent_span_id)
        .unwrap_or_else(|| panic!("the upstream query's span is its parent: {forwarded:?}"));
    assert_eq!(forwarded.trace_id, chain.trace_id, "in its trace");
    assert_eq!(
        collector
            .spans()
            .iter()
            .filter(|r| r.span.name == "dns query")
            .count(),
        4,
        "one span per answer: {:?}",
        collector.spans()
    );
}

#[test]
fn without_otlp_dns_answers_make_no_spans_and_no_exporter_runs() {
    let (upstream, _) = crate::dns::upstream();
    let (names, resolver) = (free_port(), free_port());
    let app = dns_gateway(None, names, resolver, upstream);
    let out = crate::dns::dig(names, &["www.elsewhere.test", "A"]);
    assert!(out.contains("status: REFUSED"), "{out}");
    assert_eventually!(
        app.metric(r#"weft_dns_responses_total{rcode="REFUSED",service="names"}"#) == Some(1.0),
        "the answer counted\n{}",
        app.log()
    );
    let metrics = app.curl("/metrics").unwrap_or_default();
    assert!(!metrics.contains("weft_otlp_"), "{metrics}");
}

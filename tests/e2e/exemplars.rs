//! Exemplars and the OpenMetrics exposition: with `[otlp]`, a traced request's latency is
//! kept as its bucket's exemplar with the trace id (an HTTP request's, a forwarded DNS
//! question's upstream query's); a real Prometheus (with exemplar
//! storage) that scrapes `/metrics` asks for OpenMetrics, reads them, and
//! `/api/v1/query_exemplars` finds the caller's trace. The plain format stays as it was,
//! clean under `promtool check metrics`; without `[otlp]` no exemplar is kept.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::assert_eventually;
use crate::dns::{dig, upstream};
use crate::metrics::promtool_check;
use crate::otlp::{Collector, hex};
use crate::support::{App, free_port, http, spawn_app_with};

const CALLER_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const CALLER_SPAN: &str = "b7ad6b7169203331";
const OPENMETRICS: &str = "application/openmetrics-text;version=1.0.0,text/plain;q=0.5";

/// `/metrics` asked for with `accept`: the content type and the body.
fn scrape(app: &App, accept: &str) -> (String, String) {
    let out = Command::new("curl")
        .args(["-sf", "--max-time", "5", "-H", &format!("Accept: {accept}")])
        .args(["-w", "\n%{content_type}"])
        .arg(format!("http://{}/metrics", app.dashboard))
        .output()
        .expect("curl must be installed (scripts/test installs it)");
    assert!(out.status.success(), "/metrics answers\n{}", app.log());
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, kind) = text.rsplit_once('\n').unwrap();
    (kind.to_owned(), body.to_owned())
}

/// The first line of `text` that starts with `prefix` and carries an exemplar.
fn with_exemplar<'a>(text: &'a str, prefix: &str) -> &'a str {
    text.lines()
        .find(|l| l.starts_with(prefix) && l.contains(" # {"))
        .unwrap_or_else(|| panic!("{prefix}... with an exemplar\n{text}"))
}

/// weft with an http service serving a file on `port` and a dns service forwarding to a
/// test upstream on `dns_port`; `otlp` adds `[otlp]` to `collector`.
fn gateway(port: u16, dns_port: u16, otlp: Option<&Collector>) -> App {
    let (forward, _) = upstream();
    spawn_app_with(|dir| {
        let root = dir.join("site");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(root.join("index.html"), "hello").unwrap();
        format!(
            r#"{traced}
[[service]]
name = "web"
kind = "http"
listen = "tcp:{port}:interface=127.0.0.1"
root = "{}"

[[service]]
name = "dns"
kind = "dns"
listen = "udp:{dns_port}:interface=127.0.0.1"
forward = ["{forward}"]
{forward_ports}
"#,
            root.display(),
            forward_ports = crate::support::FORWARD_PORTS,
            traced = crate::otlp::traced(otlp),
        )
    })
}

fn traced_get(port: u16) {
    let head = format!(
        "GET / HTTP/1.1\r\nHost: web\r\ntraceparent: 00-{CALLER_TRACE}-{CALLER_SPAN}-01\r\n"
    );
    assert_eq!(http(([127, 0, 0, 1], port).into(), &head, "").status, 200);
}

/// Kills the process when the test ends, passed or not.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Prometheus with exemplar storage, scraping `target`'s `/metrics` every second.
fn prometheus(dir: &std::path::Path, target: SocketAddr) -> (Running, SocketAddr) {
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: weft\n    \
             static_configs:\n      - targets: ['{target}']\n"
        ),
    )
    .unwrap();
    let listen: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let child = Command::new("prometheus")
        .arg("--enable-feature=exemplar-storage")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("tsdb").display()
        ))
        .arg(format!("--web.listen-address={listen}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("prometheus.log")).unwrap())
        .spawn()
        .expect("prometheus must be installed (scripts/test installs it)");
    (Running(child), listen)
}

/// `GET` on Prometheus' API with `query` parameters: the JSON answer (`Null` if none).
fn api(prometheus: SocketAddr, path: &str, query: &[(&str, String)]) -> Value {
    let mut args = vec![
        "-s".to_owned(),
        "--max-time".into(),
        "5".into(),
        "--get".into(),
    ];
    for (name, value) in query {
        args.push("--data-urlencode".into());
        args.push(format!("{name}={value}"));
    }
    let out = Command::new("curl")
        .args(&args)
        .arg(format!("http://{prometheus}{path}"))
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

/// The trace ids of the exemplars Prometheus holds for `series` over the last minute.
fn exemplar_traces(prometheus: SocketAddr, series: &str) -> Vec<String> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let answer = api(
        prometheus,
        "/api/v1/query_exemplars",
        &[
            ("query", series.to_owned()),
            ("start", format!("{:.3}", now - 60.0)),
            ("end", format!("{:.3}", now + 5.0)),
        ],
    );
    let mut traces = Vec::new();
    for result in answer["data"].as_array().into_iter().flatten() {
        for exemplar in result["exemplars"].as_array().into_iter().flatten() {
            if let Some(trace) = exemplar["labels"]["trace_id"].as_str() {
                traces.push(trace.to_owned());
            }
        }
    }
    traces
}

#[test]
fn prometheus_scrapes_openmetrics_and_finds_a_traced_requests_exemplar() {
    let collector = Collector::start(true);
    let (port, dns_port) = (free_port(), free_port());
    let app = gateway(port, dns_port, Some(&collector));
    traced_get(port);
    assert!(dig(dns_port, &["www.elsewhere.test", "A"]).contains("198.51.100.80"));

    let (kind, text) = scrape(&app, OPENMETRICS);
    assert_eq!(
        kind,
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    assert!(text.ends_with("# EOF\n"), "{text}");
    let bucket = with_exemplar(
        &text,
        "weft_http_request_duration_seconds_bucket{service=\"web\"",
    );
    assert!(
        bucket.contains(&format!("trace_id=\"{CALLER_TRACE}\"")),
        "{bucket}"
    );
    assert!(
        text.lines().any(|l| l
            .starts_with("weft_http_route_request_duration_seconds_bucket{route=\"files\"")
            && l.contains(CALLER_TRACE)),
        "the route's histogram too\n{text}"
    );
    // The exemplar names the span the exporter sent for the request.
    assert_eventually!(
        !collector.named("edge", "http request").is_empty(),
        "the request's span exported: {:?}",
        collector.spans()
    );
    let span = collector
        .named("edge", "http request")
        .into_iter()
        .find(|s| hex(&s.trace_id) == CALLER_TRACE)
        .expect("the request's span continues the caller's trace");
    assert!(
        bucket.contains(&format!("span_id=\"{}\"", hex(&span.span_id))),
        "{bucket}"
    );
    // The forwarded answer's exemplar names the upstream query's span and trace.
    let dns = with_exemplar(
        &text,
        "weft_dns_request_duration_seconds_bucket{service=\"dns\"",
    );
    assert_eventually!(
        !collector.named("edge", "dns upstream query").is_empty(),
        "the upstream query's span exported: {:?}",
        collector.spans()
    );
    let upstream_span = &collector.named("edge", "dns upstream query")[0];
    assert!(
        dns.contains(&format!(
            "{{trace_id=\"{}\",span_id=\"{}\"}}",
            hex(&upstream_span.trace_id),
            hex(&upstream_span.span_id)
        )),
        "{dns}\n{upstream_span:?}"
    );

    // The plain format is as before: no exemplars, and promtool accepts it.
    let (kind, plain) = scrape(&app, "*/*");
    assert_eq!(kind, "text/plain; version=0.0.4; charset=utf-8");
    assert!(!plain.contains(CALLER_TRACE) && !plain.contains("# EOF"));
    let report = promtool_check(&plain);
    assert!(report.trim().is_empty(), "promtool: {report}");

    let dir = tempfile::tempdir().unwrap();
    let (mut prom, listen) = prometheus(dir.path(), app.dashboard);
    let says = || {
        let targets = api(listen, "/api/v1/targets", &[]);
        format!(
            "targets: {targets}\nprometheus log:\n{}",
            std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default()
        )
    };
    weft_test_support::wait_for(
        60,
        "Prometheus to hold the request's exemplar",
        || {
            if let Ok(Some(status)) = prom.0.try_wait() {
                panic!("prometheus exited with {status}\n{}", says());
            }
            exemplar_traces(
                listen,
                r#"weft_http_request_duration_seconds_bucket{service="web"}"#,
            )
            .contains(&CALLER_TRACE.to_owned())
            .then_some(())
        },
        says,
    );
    let dns_trace = hex(&upstream_span.trace_id);
    weft_test_support::wait_for(
        30,
        "Prometheus to hold the forwarded answer's exemplar",
        || {
            exemplar_traces(
                listen,
                r#"weft_dns_request_duration_seconds_bucket{service="dns"}"#,
            )
            .contains(&dns_trace)
            .then_some(())
        },
        says,
    );
    let targets = api(listen, "/api/v1/targets", &[]);
    assert_eq!(
        targets["data"]["activeTargets"][0]["health"], "up",
        "{targets}"
    );
}

#[test]
fn without_otlp_no_exemplar_is_kept() {
    let (port, dns_port) = (free_port(), free_port());
    let app = gateway(port, dns_port, None);
    traced_get(port);
    assert!(dig(dns_port, &["www.elsewhere.test", "A"]).contains("198.51.100.80"));
    let (kind, text) = scrape(&app, OPENMETRICS);
    assert!(kind.starts_with("application/openmetrics-text"), "{kind}");
    assert!(
        text.contains("weft_http_request_duration_seconds_count{service=\"web\"} 1.0\n"),
        "{text}"
    );
    assert!(
        text.contains("weft_dns_request_duration_seconds_count{service=\"dns\"} 1.0\n"),
        "{text}"
    );
    assert!(!text.contains("trace_id"), "{text}");
}

//! `/metrics` as Prometheus and alerting rules expect it: the `process_*` series and
//! `weft_build_info`, clean under `promtool check metrics`, and every configured
//! service's connection, request and query series present at zero before any traffic.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::assert_eventually;
use crate::dns::dig;
use crate::http::curl;
use crate::support::{App, free_port, spawn_app, spawn_app_with};

/// Every sample of `/metrics`: series (name and labels, as written) to value.
fn scrape(app: &App) -> BTreeMap<String, f64> {
    let text = app.curl("/metrics").expect("/metrics answers");
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').expect("a sample line");
            (series.to_owned(), value.parse().expect("a number"))
        })
        .collect()
}

/// The samples of `family` (exact name) that differ between `before` and `after`.
fn changed(
    before: &BTreeMap<String, f64>,
    after: &BTreeMap<String, f64>,
    family: &str,
) -> Vec<(String, Option<f64>, f64)> {
    after
        .iter()
        .filter(|(series, _)| series.split('{').next() == Some(family))
        .filter(|(series, value)| before.get(*series) != Some(*value))
        .map(|(series, value)| (series.clone(), before.get(series).copied(), *value))
        .collect()
}

pub(crate) fn promtool_check(text: &str) -> String {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool must be installed (scripts/test installs prometheus)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The soft `Max open files` of process `pid`.
fn soft_nofile(pid: u32) -> f64 {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("Max open files in /proc/PID/limits");
    line.split_whitespace().nth(3).unwrap().parse().unwrap()
}

fn now_s() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[test]
fn process_series_and_build_info_are_on_metrics_and_pass_promtool() {
    let started = now_s();
    let app = spawn_app();
    let pid = app.child.id();
    let text = app.curl("/metrics").unwrap();
    for (family, kind) in [
        ("process_cpu_seconds_total", "counter"),
        ("process_resident_memory_bytes", "gauge"),
        ("process_open_fds", "gauge"),
        ("process_max_fds", "gauge"),
        ("process_start_time_seconds", "gauge"),
        ("weft_build_info", "gauge"),
    ] {
        assert!(
            text.contains(&format!("# TYPE {family} {kind}\n")),
            "{family} ({kind}) missing\n{text}"
        );
    }
    let report = promtool_check(&text);
    assert!(report.trim().is_empty(), "promtool: {report}\n{text}");

    let samples = scrape(&app);
    let value = |series: &str| {
        *samples
            .get(series)
            .unwrap_or_else(|| panic!("{series} missing\n{text}"))
    };
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        value(&format!("weft_build_info{{version=\"{version}\"}}")),
        1.0
    );

    let start = value("process_start_time_seconds");
    assert!(
        start > started - 2.0 && start < now_s() + 1.0,
        "started at {start}, the test spawned it at {started}"
    );
    assert_eq!(value("process_max_fds"), soft_nofile(pid));
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count() as f64;
    let open = value("process_open_fds");
    assert!(
        (open - fds).abs() <= 8.0,
        "process_open_fds {open}, /proc/{pid}/fd lists {fds}"
    );
    let rss = value("process_resident_memory_bytes");
    let vm_rss = app.rss_kib() as f64 * 1024.0;
    assert!(
        rss > vm_rss * 0.5 && rss < vm_rss * 2.0,
        "process_resident_memory_bytes {rss}, VmRSS {vm_rss}"
    );
    // Starting takes a fraction of a second of CPU: counted in clock ticks, not whole
    // seconds (which would still read 0).
    let cpu = value("process_cpu_seconds_total");
    assert!(cpu > 0.0 && cpu < 60.0, "{cpu}");
}

const ZONE: &str = "$ORIGIN example.test.
$TTL 1h
@       IN SOA ns1 hostmaster ( 1 2h 15m 2w 5m )
        IN NS  ns1
ns1     IN A   192.0.2.53
www     IN A   192.0.2.10
";

#[test]
fn every_service_has_its_series_at_zero_before_traffic_and_one_event_moves_one() {
    let (web, dns) = (free_port(), free_port());
    let app = spawn_app_with(|dir| {
        let root = dir.join("public");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(root.join("hello.txt"), "hello\n").unwrap();
        std::fs::write(dir.join("example.test.zone"), ZONE).unwrap();
        format!(
            r#"
[[service]]
name = "web"
kind = "http"
listen = "tcp:{web}:interface=127.0.0.1"
root = "{root}"

[[service]]
name = "dns"
kind = "dns"
listen = ["udp:{dns}:interface=127.0.0.1", "tcp:{dns}:interface=127.0.0.1"]
zones = ["{zone}"]
"#,
            root = root.display(),
            zone = dir.join("example.test.zone").display()
        )
    });
    assert_eventually!(app.curl("/readyz").is_some(), "ready\n{}", app.log());
    let before = scrape(&app);
    let text = app.curl("/metrics").unwrap();
    let zero = |series: &str| {
        assert_eq!(
            before.get(series),
            Some(&0.0),
            "{series} should be 0 before any traffic\n{text}"
        );
    };
    for (service, transport) in [("echo", "tcp"), ("web", "tcp"), ("dns", "tcp")] {
        let labels = format!("service=\"{service}\",transport=\"{transport}\"");
        zero(&format!("weft_connections_opened_total{{{labels}}}"));
        zero(&format!("weft_connections_active{{{labels}}}"));
        zero(&format!("weft_received_bytes_total{{{labels}}}"));
        zero(&format!("weft_sent_bytes_total{{{labels}}}"));
        for reason in [
            "done",
            "peer_closed",
            "reset",
            "timeout",
            "send_timeout",
            "aborted",
            "protocol",
            "error",
            "shutdown",
        ] {
            zero(&format!(
                "weft_connections_closed_total{{reason=\"{reason}\",{labels}}}"
            ));
        }
    }
    // A UDP endpoint is open from the start (it counts as one connection).
    for service in ["echo", "dns"] {
        let labels = format!("service=\"{service}\",transport=\"udp\"");
        assert_eq!(
            before.get(&format!("weft_connections_opened_total{{{labels}}}")),
            Some(&1.0),
            "{text}"
        );
        zero(&format!("weft_received_bytes_total{{{labels}}}"));
        zero(&format!("weft_sent_bytes_total{{{labels}}}"));
    }
    for method in ["GET", "HEAD", "POST"] {
        for code in ["2xx", "3xx", "4xx", "5xx"] {
            zero(&format!(
                "weft_http_requests_total{{code=\"{code}\",method=\"{method}\",service=\"web\"}}"
            ));
        }
    }
    for reason in [
        "malformed",
        "head_too_large",
        "host",
        "path",
        "method",
        "body",
        "body_too_large",
        "ranges",
    ] {
        zero(&format!(
            "weft_http_requests_refused_total{{reason=\"{reason}\",service=\"web\"}}"
        ));
    }
    for qtype in ["A", "AAAA", "MX", "TXT", "SOA", "other"] {
        zero(&format!(
            "weft_dns_queries_total{{qtype=\"{qtype}\",service=\"dns\"}}"
        ));
    }
    for rcode in ["NOERROR", "NXDOMAIN", "SERVFAIL", "REFUSED"] {
        zero(&format!(
            "weft_dns_responses_total{{rcode=\"{rcode}\",service=\"dns\"}}"
        ));
    }

    // One request, one query, one echo: each moves exactly its own series to 1.
    let web: SocketAddr = ([127, 0, 0, 1], web).into();
    assert_eq!(curl(web, &[], "/hello.txt"), (200, "hello\n".into()));
    assert_eq!(
        dig(dns, &["www.example.test", "A", "+short"]).trim(),
        "192.0.2.10"
    );
    let mut echo = TcpStream::connect(app.echo).unwrap();
    echo.write_all(b"ping").unwrap();
    let mut buf = [0; 4];
    echo.read_exact(&mut buf).unwrap();
    drop(echo);
    let one = |series: &str| (series.to_owned(), Some(0.0), 1.0);
    assert_eventually!(
        changed(&before, &scrape(&app), "weft_connections_closed_total").len() == 2,
        "the echo and web connections are closed\n{}",
        app.curl("/metrics").unwrap_or_default()
    );
    let after = scrape(&app);
    assert_eq!(
        changed(&before, &after, "weft_http_requests_total"),
        [one(
            r#"weft_http_requests_total{code="2xx",method="GET",service="web"}"#
        )]
    );
    assert_eq!(
        changed(&before, &after, "weft_dns_queries_total"),
        [one(r#"weft_dns_queries_total{qtype="A",service="dns"}"#)]
    );
    assert_eq!(
        changed(&before, &after, "weft_dns_responses_total"),
        [one(
            r#"weft_dns_responses_total{rcode="NOERROR",service="dns"}"#
        )]
    );
    assert_eq!(
        changed(&before, &after, "weft_connections_opened_total"),
        [
            one(r#"weft_connections_opened_total{service="echo",transport="tcp"}"#),
            one(r#"weft_connections_opened_total{service="web",transport="tcp"}"#),
        ]
    );
    assert!(
        changed(&before, &after, "weft_connections_active").is_empty(),
        "both closed again"
    );
    let report = promtool_check(&app.curl("/metrics").unwrap());
    assert!(report.trim().is_empty(), "promtool: {report}");
}

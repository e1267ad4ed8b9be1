//! The `http` kind end to end: the real binary serving a temp dir and proxying to an
//! in-test upstream, driven with curl, measured on `/metrics`, stopped with SIGTERM.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::time::Duration;

use crate::assert_eventually;
use crate::http_peers::Upstream;
use crate::support::{App, free_port, spawn_app_with};

/// `curl` against the web service: (status, body).
pub(crate) fn curl(web: SocketAddr, args: &[&str], path: &str) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "10", "-w", "\n%{http_code}"])
        .args(args)
        .arg(format!("http://{web}{path}"))
        .output()
        .expect("curl must be installed (scripts/test installs it)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (code.parse().unwrap_or(0), body.to_owned())
}

fn start() -> (App, SocketAddr) {
    let up = Upstream::start().addr;
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let web: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let app = spawn_app_with(|dir| {
        let root = dir.join("public");
        std::fs::create_dir_all(root.join("docs")).unwrap();
        std::fs::write(root.join("index.html"), "<h1>weft</h1>\n").unwrap();
        std::fs::write(root.join("docs/guide.txt"), "read me\n").unwrap();
        std::fs::write(dir.join("secret.txt"), "do not serve\n").unwrap();
        format!(
            r#"
[[service]]
name = "web"
kind = "http"
listen = "tcp:{port}:interface=127.0.0.1"
root = "{root}"
limits = {{ request_timeout = "2s" }}
[[service.route]]
prefix = "/api/"
upstream = "http://{up}"
[[service.route]]
prefix = "/down/"
upstream = "http://{closed}"
"#,
            port = web.port(),
            root = root.display()
        )
    });
    (app, web)
}

#[test]
fn http_serves_files_proxies_counts_and_stops_cleanly() {
    let (mut app, web) = start();

    let (code, body) = curl(web, &[], "/");
    assert_eq!(
        (code, body.as_str()),
        (200, "<h1>weft</h1>\n"),
        "{}",
        app.log()
    );
    assert_eq!(curl(web, &[], "/docs/guide.txt"), (200, "read me\n".into()));
    let (code, head) = curl(web, &["-I"], "/docs/guide.txt");
    assert_eq!(code, 200);
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain"),
        "{head}"
    );
    assert!(
        head.to_ascii_lowercase().contains("last-modified:"),
        "{head}"
    );
    assert_eq!(curl(web, &[], "/missing").0, 404);
    let (code, body) = curl(web, &["--path-as-is"], "/../secret.txt");
    assert_eq!(code, 400);
    assert!(!body.contains("do not serve"));
    assert_eq!(curl(web, &["--path-as-is"], "/%2e%2e/secret.txt").0, 400);

    let (code, body) = curl(web, &[], "/api/items?id=7");
    assert_eq!(code, 200);
    assert_eq!(
        body,
        "upstream: GET /api/items?id=7 HTTP/1.1 xff=127.0.0.1 body="
    );
    let (code, body) = curl(web, &["--data-binary", "payload"], "/api/post");
    assert_eq!(
        (code, body.as_str()),
        (
            200,
            "upstream: POST /api/post HTTP/1.1 xff=127.0.0.1 body=payload"
        )
    );
    let (code, body) = curl(web, &[], "/down/x");
    assert_eq!(code, 502);
    assert!(body.contains("could not be reached"), "{body}");

    // A malformed request gets 400, and the service goes on.
    let mut raw = TcpStream::connect(web).unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    raw.write_all(b"NOT HTTP AT ALL\r\n\r\n").unwrap();
    let mut answer = String::new();
    let _ = raw.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer:?}");
    assert_eq!(curl(web, &[], "/").0, 200);

    let series = |method: &str, code: &str| {
        format!(r#"weft_http_requests_total{{code="{code}",method="{method}",service="web"}}"#)
    };
    assert_eventually!(
        app.metric(&series("GET", "2xx")) == Some(4.0),
        "GET 2xx counted\n{}",
        app.curl("/metrics").unwrap_or_default()
    );
    assert_eq!(app.metric(&series("HEAD", "2xx")), Some(1.0));
    assert_eq!(app.metric(&series("POST", "2xx")), Some(1.0));
    assert_eq!(app.metric(&series("GET", "4xx")), Some(3.0));
    assert_eq!(app.metric(&series("GET", "5xx")), Some(1.0));
    assert_eq!(app.metric(&series("other", "4xx")), Some(1.0));
    assert_eq!(
        app.metric(r#"weft_http_upstream_errors_total{service="web"}"#),
        Some(1.0)
    );
    assert_eq!(
        app.metric(r#"weft_http_request_duration_seconds_count{service="web"}"#),
        Some(11.0)
    );
    // Client connections and upstream connections are both the service's.
    assert!(
        app.metric(r#"weft_connections_opened_total{service="web",transport="tcp"}"#)
            .is_some_and(|n| n >= 11.0)
    );
    assert!(
        app.log().contains("\"GET /docs/guide.txt HTTP/1.1\" 200 8"),
        "access log\n{}",
        app.log()
    );

    let status = app.signal_and_wait("TERM");
    assert!(status.success(), "{status:?}\n{}", app.log());
}

/// A keep-alive request costs its connection's task one poll, not two: the request's
/// chain, watched for a cancel from the dashboard while the answer is made, wakes nothing
/// when it fires at the end (the task is running then; a wake polled the whole
/// connection again for nothing, once a request).
#[test]
fn a_keep_alive_request_polls_its_connection_task_once() {
    let (app, web) = start();
    let mut s = TcpStream::connect(web).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    const REQUESTS: u64 = 40;
    let mut answer = Vec::new();
    for _ in 0..REQUESTS {
        s.write_all(b"GET /docs/guide.txt HTTP/1.1\r\nHost: web\r\n\r\n")
            .unwrap();
        answer.clear();
        let mut buf = [0u8; 1024];
        // The answer is whole when its body ("read me\n") has come.
        while !answer.ends_with(b"read me\n") {
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0, "the connection closed mid-answer");
            answer.extend_from_slice(&buf[..n]);
        }
        assert!(
            answer.starts_with(b"HTTP/1.1 200"),
            "{}",
            String::from_utf8_lossy(&answer)
        );
    }
    let body = app
        .curl("/api/deferreds?service=web")
        .expect("/api/deferreds answers");
    let list: serde_json::Value = serde_json::from_str(&body).unwrap();
    let task = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["task"]["kind"] == "connection")
        .unwrap_or_else(|| panic!("the connection's task is listed: {body}"));
    let polls = task["task"]["polls"].as_u64().unwrap();
    // One poll a request, and a few for the connection's start and its reads that found
    // nothing more; two a request would be 80.
    assert!(
        (REQUESTS..REQUESTS + 10).contains(&polls),
        "{polls} polls for {REQUESTS} requests: {task}"
    );
}

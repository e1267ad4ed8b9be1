//! SIGTERM with HTTP exchanges in flight, on the real binary: each finishes (every byte
//! of a large download, a request waiting on a slow upstream) within the drain deadline,
//! an idle keep-alive connection does not hold the exit, and the access log gives the
//! bytes actually sent, marking a response that was cut short.

use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::assert_eventually;
use crate::http_peers::{RawClient, Upstream};
use crate::support::{App, free_port, spawn_app_with};

/// Far more than the socket buffers hold, so some of it is always still to be sent.
const BIG: usize = 20_000_000;

/// Serves `big.bin` (BIG bytes) from a temp dir, and proxies `/api/` to `upstream`.
fn start(upstream: SocketAddr) -> (App, SocketAddr) {
    let web: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let app = spawn_app_with(|dir| {
        let root = dir.join("public");
        std::fs::create_dir_all(&root).unwrap();
        let content: Vec<u8> = (0..BIG).map(|i| (i % 251) as u8).collect();
        std::fs::write(root.join("big.bin"), content).unwrap();
        format!(
            r#"
[[service]]
name = "web"
kind = "http"
listen = "tcp:{port}:interface=127.0.0.1"
root = "{root}"
limits = {{ request_timeout = "30s" }}
[[service.route]]
prefix = "/api/"
upstream = "http://{upstream}"
"#,
            port = web.port(),
            root = root.display()
        )
    });
    (app, web)
}

/// Sends SIGTERM and returns once shutdown has begun: the listener is gone, so every
/// connection has been asked to close.
fn terminate(app: &App, web: SocketAddr) -> Instant {
    let sent = Instant::now();
    let ok = Command::new("kill")
        .args(["-TERM", &app.child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -TERM failed");
    assert_eventually!(
        TcpStream::connect(web).is_err(),
        "the listener closes\n{}",
        app.log()
    );
    sent
}

/// Waits for the exit, failing after `within`; the status and how long it took.
fn exit_within(app: &mut App, within: Duration, since: Instant) -> (bool, Duration) {
    loop {
        if let Some(status) = app.child.try_wait().unwrap() {
            return (status.success(), since.elapsed());
        }
        assert!(
            since.elapsed() < within,
            "weft did not exit within {within:?}\n{}",
            app.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The access log lines for `request` (e.g. `GET /big.bin HTTP/1.1`).
fn access_lines(app: &App, request: &str) -> Vec<String> {
    let quoted = format!("\"{request}\"");
    app.log()
        .lines()
        .filter(|l| l.contains("weft_web::access") && l.contains(&quoted))
        .map(str::to_owned)
        .collect()
}

/// The status and bytes fields after `"request"` in an access line.
fn status_and_bytes(line: &str, request: &str) -> (u16, u64) {
    let rest = line.split(&format!("\"{request}\" ")).nth(1).unwrap();
    let mut fields = rest.split(' ');
    let status = fields.next().unwrap().parse().unwrap();
    let bytes = fields.next().unwrap().parse().unwrap_or(0);
    (status, bytes)
}

#[test]
fn sigterm_lets_a_large_download_finish() {
    let (mut app, web) = start(Upstream::start().addr);
    let mut client = RawClient::connect(web);
    client.send(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n");
    let head = client.read_head();
    assert_eq!(head.status, 200);
    let mut body = client.read_some(1_000_000);

    let sent = terminate(&app, web);
    client.read_to_end(&mut body).unwrap();
    assert_eq!(body.len(), BIG, "every byte arrives\n{}", app.log());
    assert!(body.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8));

    let (ok, took) = exit_within(&mut app, Duration::from_secs(8), sent);
    assert!(ok, "exit status\n{}", app.log());
    assert!(
        took < Duration::from_secs(5),
        "{took:?}, the drain deadline is 10 s"
    );
    let lines = access_lines(&app, "GET /big.bin HTTP/1.1");
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(
        status_and_bytes(&lines[0], "GET /big.bin HTTP/1.1"),
        (200, BIG as u64)
    );
    assert!(!lines[0].contains("cut short"), "{}", lines[0]);
}

#[test]
fn sigterm_lets_a_request_waiting_on_its_upstream_finish() {
    let upstream = Upstream::holding();
    let (mut app, web) = start(upstream.addr);
    let mut client = RawClient::connect(web);
    client.send(b"GET /api/slow HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eventually!(upstream.received() == 1, "the upstream has the request");

    let sent = terminate(&app, web);
    upstream.release();
    let reply = client.read_reply();
    assert_eq!(reply.status, 200, "{}", app.log());
    let expected = "upstream: GET /api/slow HTTP/1.1 xff=127.0.0.1 body=";
    assert_eq!(reply.text(), expected);
    assert_eq!(reply.header("connection"), Some("close"), "keep-alive ends");
    assert!(client.is_closed());

    let (ok, took) = exit_within(&mut app, Duration::from_secs(8), sent);
    assert!(ok, "exit status\n{}", app.log());
    assert!(took < Duration::from_secs(5), "{took:?}");
    let lines = access_lines(&app, "GET /api/slow HTTP/1.1");
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(
        status_and_bytes(&lines[0], "GET /api/slow HTTP/1.1"),
        (200, expected.len() as u64)
    );
}

#[test]
fn an_idle_keep_alive_connection_does_not_hold_the_exit() {
    let (mut app, web) = start(Upstream::start().addr);
    let mut idle = RawClient::connect(web);
    idle.send(b"GET /api/x HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(idle.read_reply().status, 200);

    let sent = terminate(&app, web);
    assert!(idle.is_closed(), "the idle connection is closed");
    let (ok, took) = exit_within(&mut app, Duration::from_secs(8), sent);
    assert!(ok, "exit status\n{}", app.log());
    assert!(
        took < Duration::from_secs(3),
        "{took:?}: the idle connection held the shutdown"
    );
}

#[test]
fn a_response_cut_short_is_logged_with_the_bytes_sent() {
    let (app, web) = start(Upstream::start().addr);
    let mut client = RawClient::connect(web);
    client.send(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(client.read_head().status, 200);
    client.read_some(1_000_000);
    drop(client);

    let request = "GET /big.bin HTTP/1.1";
    assert_eventually!(
        access_lines(&app, request).len() == 1,
        "an access line\n{}",
        app.log()
    );
    let line = access_lines(&app, request).remove(0);
    let (status, bytes) = status_and_bytes(&line, request);
    assert_eq!(status, 200, "{line}");
    assert!(
        (1_000_000..BIG as u64).contains(&bytes),
        "{bytes} bytes: {line}"
    );
    assert!(
        line.contains("(cut short: the connection closed)"),
        "{line}"
    );
}

#[test]
fn a_request_whose_client_leaves_before_its_answer_is_logged_and_counted_as_499() {
    let upstream = Upstream::holding();
    let (app, web) = start(upstream.addr);
    let counted = || {
        app.metric(r#"weft_http_requests_total{code="4xx",method="GET",service="web"}"#)
            .unwrap_or(0.0)
    };
    // The client goes away while its request waits on the upstream: hyper gives the
    // request up, and nothing is sent.
    let mut client = RawClient::connect(web);
    client.send(b"GET /api/left HTTP/1.1\r\nHost: t\r\nUser-Agent: leaver/1\r\n\r\n");
    assert_eventually!(upstream.received() == 1, "the upstream has the request");
    drop(client);

    let request = "GET /api/left HTTP/1.1";
    assert_eventually!(
        access_lines(&app, request).len() == 1,
        "an access line for the request given up\n{}",
        app.log()
    );
    let line = access_lines(&app, request).remove(0);
    assert_eq!(status_and_bytes(&line, request), (499, 0), "{line}");
    assert!(
        line.contains("\"leaver/1\" (cut short: the connection closed)"),
        "{line}"
    );
    assert_eventually!(counted() == 1.0, "counted as 4xx: {}", counted());
    upstream.release();
}

/// An HTTP/2 request still waiting on its upstream when the drain's deadline passes is cut
/// by the stop, not failed by the upstream: logged and counted as 499, as over HTTP/1.1,
/// and not counted against the upstream (where it would count toward its ejection).
#[test]
fn an_h2_request_cut_by_the_drain_deadline_is_499_not_the_upstream_s_failure() {
    let upstream = Upstream::holding();
    let (mut app, web) = start(upstream.addr);
    let mut curl = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "--http2-prior-knowledge"])
        .arg(format!("http://{web}/api/held"))
        .spawn()
        .expect("curl runs");
    assert_eventually!(upstream.received() == 1, "the upstream has the request");
    let since = terminate(&app, web);
    let (clean, _) = exit_within(&mut app, Duration::from_secs(25), since);
    let _ = curl.kill();
    let _ = curl.wait();
    assert!(clean, "{}", app.log());
    let request = "GET /api/held HTTP/2.0";
    let lines = access_lines(&app, request);
    assert_eq!(lines.len(), 1, "{}", app.log());
    assert_eq!(status_and_bytes(&lines[0], request).0, 499, "{}", lines[0]);
    assert!(
        !app.log().contains("proxying failed"),
        "not the upstream's failure\n{}",
        app.log()
    );
    upstream.release();
}

/// A second SIGTERM during the drain is the operator's "now": the gateway does not wait
/// out the drain's deadline for a request still waiting on its upstream, aborts it (logged
/// as 499) and exits.
#[test]
fn a_second_sigterm_during_the_drain_stops_at_once() {
    let upstream = Upstream::holding();
    let (mut app, web) = start(upstream.addr);
    let mut client = RawClient::connect(web);
    client.send(b"GET /api/held HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eventually!(upstream.received() == 1, "the upstream has the request");
    let since = terminate(&app, web);
    std::thread::sleep(Duration::from_millis(500));
    app.signal("TERM");
    let (clean, took) = exit_within(&mut app, Duration::from_secs(20), since);
    assert!(clean, "{}", app.log());
    assert!(
        took < Duration::from_secs(6),
        "{took:?}: the drain's deadline (10 s) was not waited out\n{}",
        app.log()
    );
    assert!(app.log().contains("a second stop signal"), "{}", app.log());
    let request = "GET /api/held HTTP/1.1";
    assert_eq!(access_lines(&app, request).len(), 1, "{}", app.log());
    upstream.release();
}

//! Proxied request bodies are read before any upstream is contacted (up to
//! `limits.body_buffer_bytes`): a client that sends its body slowly, or declares more
//! than it sends, holds no upstream connection; a chunked body read whole goes upstream
//! with its length. A longer body is read on into a temporary file and goes up whole from
//! there; without files, or room in them, its rest streams, and once the service's
//! buffers are full bodies stream as they come. Each is counted.

use std::io::Write;
use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::assert_eventually;
use crate::http_peers::{RawClient, Upstream};
use crate::support::{App, free_port, spawn_app_with};

/// A service proxying `/api/` to `up`, with `limits` (TOML inline-table keys).
fn start(up: &Upstream, limits: &str) -> (App, SocketAddr) {
    start_with(up, limits, "")
}

/// The same, with further service keys (`keys`, TOML lines).
fn start_with(up: &Upstream, limits: &str, keys: &str) -> (App, SocketAddr) {
    let port = free_port();
    let up_addr = up.addr;
    let app = spawn_app_with(|_| {
        format!(
            "\n[[service]]\nname = \"web\"\nkind = \"http\"\n\
             listen = \"tcp:{port}:interface=127.0.0.1\"\n\
             limits = {{ {limits} }}\n{keys}\
             [[service.route]]\nprefix = \"/api/\"\nupstream = \"http://{up_addr}\"\n"
        )
    });
    (app, ([127, 0, 0, 1], port).into())
}

/// A body of `n` bytes in which a piece lost or repeated shows.
fn counted(n: usize) -> Vec<u8> {
    (0..n).map(|i| b'a' + (i % 23) as u8).collect()
}

/// What the upstream says it got as the body.
fn echoed(reply: &crate::http_peers::Reply) -> Vec<u8> {
    let text = reply.text();
    text.split_once("body=")
        .map_or_else(Vec::new, |(_, b)| b.as_bytes().to_vec())
}

/// POSTs `body` to `/api/h2` over HTTP/2 with curl, which sends no length for an upload
/// from stdin; what came back.
fn h2_upload(web: SocketAddr, body: &[u8]) -> String {
    let out = Command::new("curl")
        .args(["-sS", "--http2-prior-knowledge", "-X", "POST", "-T", "-"])
        .arg(format!("http://{web}/api/h2"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            child.stdin.take().unwrap().write_all(body)?;
            child.wait_with_output()
        })
        .expect("curl runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// POSTs `body` to `path` with its length, and checks that it came back whole.
fn post_intact(web: SocketAddr, path: &str, body: &[u8]) {
    let mut client = RawClient::connect(web);
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    client.send(head.as_bytes());
    client.send(body);
    let reply = client.read_reply();
    assert_eq!(reply.status, 200, "{reply:?}");
    assert!(echoed(&reply) == body, "nothing lost");
}

fn file_bytes(app: &App) -> Option<f64> {
    app.metric(r#"weft_http_request_body_file_bytes{service="web"}"#)
}

/// What the HTTP view (`/api/http`) says service `web` holds of `name`: `(held, limit)`.
fn held(app: &App, name: &str) -> Option<(u64, Option<u64>)> {
    let services: Value = serde_json::from_str(&app.curl("/api/http")?).ok()?;
    let web = services
        .as_array()?
        .iter()
        .find(|s| s["service"] == "web")?;
    let entry = web["held"].as_array()?.iter().find(|h| h["name"] == name)?;
    Some((entry["held"].as_u64()?, entry["limit"].as_u64()))
}

fn bodies(app: &App, buffered: &str) -> Option<f64> {
    app.metric(&format!(
        r#"weft_http_request_bodies_total{{buffered="{buffered}",service="web"}}"#
    ))
}

fn refused(app: &App, reason: &str) -> Option<f64> {
    app.metric(&format!(
        r#"weft_http_requests_refused_total{{reason="{reason}",service="web"}}"#
    ))
}

/// The pending `http request` chain, if there is one.
fn pending_request(app: &App) -> Option<Value> {
    let list: Value = serde_json::from_str(&app.curl("/api/deferreds?state=pending")?).ok()?;
    list["items"]
        .as_array()?
        .iter()
        .find(|d| d["label"] == "http request")
        .cloned()
}

#[test]
fn a_slow_body_holds_no_upstream_connection_and_goes_up_whole_once_it_is_in() {
    let up = Upstream::start();
    let (app, web) = start(&up, r#"request_timeout = "5s""#);
    let mut client = RawClient::connect(web);
    client.send(b"POST /api/upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: 10\r\n\r\n01234");

    // While the body comes, the request waits on its client, not on an upstream.
    let chain = assert_eventually!(
        pending_request(&app).filter(|c| c["step_name"] == "request body"),
        "the request's chain is pending at its body\n{:?}\n{}",
        pending_request(&app),
        app.log()
    );
    assert_eq!(
        chain["waiting_on_connection"], chain["connection_id"],
        "it waits on its client's connection: {chain}"
    );
    assert_eq!(
        up.connections(),
        0,
        "no upstream connection while the body comes"
    );
    let held = r#"weft_http_request_body_buffer_bytes{service="web"}"#;
    assert_eq!(app.metric(held), Some(10.0), "its length reserved");

    client.send(b"56789");
    let reply = client.read_reply();
    assert_eq!(reply.status, 200, "{reply:?}");
    assert!(
        reply.text().ends_with("body=0123456789"),
        "the whole body went up: {}",
        reply.text()
    );
    assert_eq!(up.connections(), 1);
    assert_eventually!(
        bodies(&app, "whole") == Some(1.0) && app.metric(held) == Some(0.0),
        "counted as read whole, its buffer given back\n{}",
        app.curl("/metrics").unwrap_or_default()
    );
}

#[test]
fn a_body_shorter_than_it_declares_is_refused_before_any_upstream_is_contacted() {
    let up = Upstream::start();
    let (app, web) = start(&up, "");
    let mut client = RawClient::connect(web);
    client.send(b"POST /api/upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: 10\r\n\r\n01234");
    client.shut_write();
    let reply = client.read_reply();
    assert_eq!(reply.status, 400, "{reply:?}");
    assert_eventually!(
        refused(&app, "body") == Some(1.0),
        "counted as a broken body\n{}",
        app.curl("/metrics").unwrap_or_default()
    );
    assert_eq!(up.connections(), 0, "no upstream was dialled for it");
    assert_eventually!(
        app.log()
            .contains("refused a request: the request body is malformed or incomplete"),
        "the log says why, as it does for a malformed head\n{}",
        app.log()
    );
}

#[test]
fn a_chunked_body_read_whole_goes_upstream_with_its_length() {
    // The upstream reads bodies by Content-Length only.
    let up = Upstream::start();
    let (app, web) = start(&up, "");
    let mut client = RawClient::connect(web);
    client.send(
        b"POST /api/chunks HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n\
          5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
    );
    let reply = client.read_reply();
    assert_eq!(reply.status, 200, "{reply:?}");
    assert!(
        reply.text().ends_with("body=hello world"),
        "{}",
        reply.text()
    );
    assert_eq!(up.header(0, "content-length"), ["11"]);
    assert!(up.header(0, "transfer-encoding").is_empty());
    // An empty one says so.
    client.send(b"POST /api/empty HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n");
    assert_eq!(client.read_reply().status, 200);
    assert_eq!(up.header(1, "content-length"), ["0"]);

    // And over HTTP/2.
    let text = h2_upload(web, b"from curl");
    assert!(text.ends_with("body=from curl"), "{text}");
    assert_eq!(up.header(2, "content-length"), ["9"]);
    assert_eventually!(
        bodies(&app, "whole") == Some(3.0),
        "each counted as read whole\n{}",
        app.curl("/metrics").unwrap_or_default()
    );
}

/// A client that has sent 1,000 of the 1,024 bytes its body declares: it holds the 1 KiB
/// of buffers the service has while the rest does not come.
fn holding_the_buffers(app: &App, web: SocketAddr) -> RawClient {
    let mut slow = RawClient::connect(web);
    slow.send(b"POST /api/slow HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1024\r\n\r\n");
    slow.send(&[b'a'; 1000]);
    assert_eventually!(
        pending_request(app).is_some_and(|c| c["step_name"] == "request body"),
        "the slow body is being read\n{}",
        app.log()
    );
    slow
}

#[test]
fn full_buffers_stream_a_body_from_its_start_and_a_longer_body_streams_after_its_first_part() {
    let up = Upstream::start();
    let (app, web) = start(
        &up,
        r#"request_timeout = "5s", body_buffer_bytes = 1024, body_buffer_total_bytes = 1024,
           body_file_total_bytes = 0"#,
    );
    // A body of 1 KiB coming slowly reserves all of the service's buffers while it comes.
    let mut slow = holding_the_buffers(&app, web);

    // Meanwhile another body finds no room: it streams from its first byte.
    let mut short = RawClient::connect(web);
    short.send(b"POST /api/short HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n\r\nhello");
    let reply = short.read_reply();
    assert_eq!(reply.status, 200, "{reply:?}");
    assert!(reply.text().ends_with("body=hello"), "{}", reply.text());
    assert_eq!(up.connections(), 1, "only the streamed one went upstream");

    slow.send(&[b'b'; 24]);
    let reply = slow.read_reply();
    assert_eq!(reply.status, 200, "{reply:?}");
    assert!(
        reply
            .text()
            .ends_with(&format!("body={}{}", "a".repeat(1000), "b".repeat(24)))
    );

    // With the buffers free again, a body longer than one has its first part read ahead
    // and, without files, the rest streamed; nothing is lost.
    let mut long = RawClient::connect(web);
    long.send(b"POST /api/long HTTP/1.1\r\nHost: localhost\r\nContent-Length: 3000\r\n\r\n");
    long.send(&[b'c'; 3000]);
    let reply = long.read_reply();
    assert_eq!(reply.status, 200, "{reply:?}");
    let body = reply.text();
    assert_eq!(
        body.split("body=").nth(1).map(str::len),
        Some(3000),
        "nothing lost"
    );
    assert_eventually!(
        bodies(&app, "none") == Some(1.0)
            && bodies(&app, "whole") == Some(1.0)
            && bodies(&app, "part") == Some(1.0),
        "counted: one streamed, one read whole, one in part\n{}",
        app.curl("/metrics").unwrap_or_default()
    );
}

#[test]
fn a_body_of_exactly_the_buffer_is_read_whole_and_one_past_the_body_limit_is_413() {
    let up = Upstream::start();
    let (app, web) = start(
        &up,
        "max_body_bytes = 1024, body_buffer_bytes = 1024, body_buffer_total_bytes = 4096",
    );
    // Chunked, so only its end says it is whole.
    let mut client = RawClient::connect(web);
    client.send(
        b"POST /api/exact HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n400\r\n",
    );
    client.send(&[b'x'; 1024]);
    client.send(b"\r\n0\r\n\r\n");
    let reply = client.read_reply();
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(up.header(0, "content-length"), ["1024"]);
    assert_eventually!(
        bodies(&app, "whole") == Some(1.0),
        "read whole\n{}",
        app.curl("/metrics").unwrap_or_default()
    );

    // One byte more than the body limit, in chunks: refused, never cut short and sent
    // (whatever part of it the buffer held).
    let mut client = RawClient::connect(web);
    client.send(
        b"POST /api/over HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n400\r\n",
    );
    client.send(&[b'y'; 1024]);
    client.send(b"\r\n1\r\nz\r\n0\r\n\r\n");
    let reply = client.read_reply();
    assert_eq!(reply.status, 413, "{reply:?}");
    assert_eq!(up.received(), 1, "nothing of it reached the upstream");
    assert_eventually!(
        refused(&app, "body_too_large") == Some(1.0),
        "counted\n{}",
        app.curl("/metrics").unwrap_or_default()
    );
}

#[test]
fn a_body_dribbled_slower_than_the_request_timeout_in_all_is_408_and_frees_its_buffer() {
    let up = Upstream::start();
    let (app, web) = start(
        &up,
        r#"request_timeout = "1s", body_buffer_bytes = 1024, body_buffer_total_bytes = 1024"#,
    );
    let mut client = RawClient::connect(web);
    client.send(b"POST /api/drip HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\n");
    // A byte every 300 ms: each piece in time, the whole not.
    let started = Instant::now();
    let mut writer = client.try_clone_stream();
    let dripper = std::thread::spawn(move || {
        for _ in 0..20 {
            std::thread::sleep(Duration::from_millis(300));
            if writer.write_all(b"x").is_err() {
                return;
            }
        }
    });
    let reply = client.read_reply();
    let took = started.elapsed();
    assert_eq!(reply.status, 408, "{reply:?}");
    assert!(
        took < Duration::from_secs(3),
        "answered after {took:?}; request_timeout is 1 s"
    );
    assert_eq!(up.connections(), 0);
    assert_eventually!(
        refused(&app, "body_timeout") == Some(1.0),
        "counted\n{}",
        app.curl("/metrics").unwrap_or_default()
    );
    // Its buffer is free again: the next body is read whole.
    let mut next = RawClient::connect(web);
    next.send(b"POST /api/next HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1000\r\n\r\n");
    next.send(&[b'n'; 1000]);
    assert_eq!(next.read_reply().status, 200);
    assert_eventually!(
        bodies(&app, "whole") == Some(1.0),
        "read whole\n{}",
        app.curl("/metrics").unwrap_or_default()
    );
    dripper.join().unwrap();
}

#[test]
fn an_http2_stream_declaring_more_than_it_sends_is_refused_before_any_upstream() {
    let up = Upstream::start();
    let (app, web) = start(&up, "");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let status = runtime.block_on(async {
        let tcp = tokio::net::TcpStream::connect(web).await.unwrap();
        let (mut sender, connection) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(tcp),
        )
        .await
        .unwrap();
        tokio::spawn(connection);
        // hyper's client sends what it is told to, a length it does not keep to too.
        let request = http::Request::post(format!("http://{web}/api/lie"))
            .header("content-length", "100")
            .body(http_body_util::Full::new(bytes::Bytes::from_static(
                b"0123456789",
            )))
            .unwrap();
        match sender.send_request(request).await {
            Ok(response) => response.status().as_u16(),
            // Reset rather than answered: refused all the same.
            Err(_) => 0,
        }
    });
    assert!(status == 400 || status == 0, "status {status}");
    // The stream is reset for the malformed request (RFC 9113 §8.1.1), counted where the
    // reset is sent, and once.
    assert_eventually!(
        refused(&app, "stream_error") == Some(1.0),
        "counted\n{}",
        app.curl("/metrics").unwrap_or_default()
    );
    assert_eq!(refused(&app, "body").unwrap_or(0.0), 0.0, "counted once");
    assert_eq!(up.connections(), 0, "no upstream was dialled for it");
}

#[test]
fn a_body_read_ahead_to_its_limit_with_more_to_come_is_413_not_cut_short() {
    let up = Upstream::start();
    // The body limit one byte past the buffer: a piece of 1025 bytes fills both.
    let (app, web) = start(
        &up,
        "max_body_bytes = 1025, body_buffer_bytes = 1024, body_buffer_total_bytes = 4096",
    );
    let mut client = RawClient::connect(web);
    let mut first =
        b"POST /api/cut HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n401\r\n"
            .to_vec();
    first.extend_from_slice(&[b'x'; 1025]);
    first.extend_from_slice(b"\r\n");
    client.send(&first);
    std::thread::sleep(Duration::from_millis(200));
    client.send(b"1\r\nz\r\n0\r\n\r\n");
    let reply = client.read_reply();
    assert_eq!(
        reply.status, 413,
        "never sent upstream as if whole: {reply:?}"
    );
    assert_eventually!(
        refused(&app, "body_too_large") == Some(1.0),
        "counted\n{}",
        app.curl("/metrics").unwrap_or_default()
    );
}

#[test]
fn a_long_body_sent_slowly_goes_into_a_file_and_holds_no_upstream_connection() {
    let up = Upstream::start();
    let dir = tempfile::tempdir().unwrap();
    let (app, web) = start_with(
        &up,
        r#"request_timeout = "5s", body_buffer_bytes = 1024"#,
        &format!("body_file_dir = {:?}\n", dir.path().display().to_string()),
    );
    // Longer than the buffer and than several pieces of the file.
    let body = counted(200_000);
    let mut client = RawClient::connect(web);
    client.send(b"POST /api/upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: 200000\r\n\r\n");
    client.send(&body[..150_000]);
    assert_eventually!(
        file_bytes(&app).is_some_and(|n| n >= 150_000.0)
            && pending_request(&app).is_some_and(|c| c["step_name"] == "request body"),
        "the body goes into a file while it comes\n{}",
        app.curl("/metrics").unwrap_or_default()
    );
    assert_eq!(up.connections(), 0, "no upstream connection while it comes");
    let (in_files, limit) = held(&app, "request_body_file_bytes").expect("in the HTTP view");
    assert!(in_files >= 150_000, "{in_files}");
    assert_eq!(limit, Some(256 << 20), "against the default total");
    let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(names.is_empty(), "the file has no name: {names:?}");

    std::thread::sleep(Duration::from_millis(300));
    client.send(&body[150_000..]);
    let reply = client.read_reply();
    assert_eq!(reply.status, 200, "{reply:?}");
    assert!(
        echoed(&reply) == body,
        "the body went up whole, byte for byte"
    );
    assert_eq!(up.header(0, "content-length"), ["200000"]);
    assert_eq!(up.connections(), 1);

    // A chunked body of unknown length goes up with its length too.
    let mut chunked =
        b"POST /api/chunks HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
            .to_vec();
    let long = counted(100_000);
    for piece in long.chunks(7_000) {
        chunked.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        chunked.extend_from_slice(piece);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    client.send(&chunked);
    let reply = client.read_reply();
    assert!(echoed(&reply) == long, "{reply:?}");
    assert_eq!(up.header(1, "content-length"), ["100000"]);
    assert!(up.header(1, "transfer-encoding").is_empty());

    // And one over HTTP/2.
    let text = h2_upload(web, &long);
    assert!(text.ends_with(&format!("body={}", String::from_utf8_lossy(&long))));
    assert_eq!(up.header(2, "content-length"), ["100000"]);
    assert_eventually!(
        bodies(&app, "file") == Some(3.0) && file_bytes(&app) == Some(0.0),
        "counted, and the files' room given back\n{}",
        app.curl("/metrics").unwrap_or_default()
    );
    assert_eq!(
        held(&app, "request_body_file_bytes"),
        Some((0, Some(256 << 20)))
    );
    assert_eq!(held(&app, "request_body_file_errors"), Some((0, None)));
}

/// The write system calls the process has made (`syscw` in `/proc/PID/io`: `write`,
/// `pwrite64`, `writev` and their kind).
fn writes(app: &App) -> u64 {
    let io = std::fs::read_to_string(format!("/proc/{}/io", app.child.id())).unwrap();
    io.lines()
        .find_map(|l| l.strip_prefix("syscw:"))
        .and_then(|n| n.trim().parse().ok())
        .expect("syscw in /proc/PID/io")
}

#[test]
fn a_body_sent_a_byte_a_chunk_goes_into_its_file_in_a_few_writes() {
    let up = Upstream::start();
    let (app, web) = start(&up, "body_buffer_bytes = 1024");
    let body = counted(200_000);
    let mut chunked =
        b"POST /api/bytes HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
            .to_vec();
    for byte in &body {
        chunked.extend_from_slice(b"1\r\n");
        chunked.push(*byte);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let mut client = RawClient::connect(web);
    let before = writes(&app);
    client.send(&chunked);
    let reply = client.read_reply();
    let made = writes(&app) - before;
    assert!(echoed(&reply) == body, "{reply:?}");
    assert_eq!(bodies(&app, "file"), Some(1.0));
    // One write a chunk would be 200,000 (the log, the history and the sockets make a
    // few hundred of their own).
    assert!(
        made < 5_000,
        "{made} write calls for a body of 200,000 one-byte chunks"
    );
}

#[test]
fn with_no_room_in_the_files_the_rest_of_a_body_streams_and_nothing_is_lost() {
    let up = Upstream::start();
    // Room for the first KiB in a file, not for the next piece.
    let (app, web) = start(
        &up,
        "body_buffer_bytes = 1024, body_file_total_bytes = 2048",
    );
    let body = counted(100_000);
    post_intact(web, "/api/long", &body);
    assert_eventually!(
        bodies(&app, "part") == Some(1.0) && file_bytes(&app) == Some(0.0),
        "counted as read in part\n{}",
        app.curl("/metrics").unwrap_or_default()
    );
}

#[test]
fn a_file_that_cannot_be_made_is_logged_and_counted_and_the_body_streams() {
    let up = Upstream::start();
    let dir = tempfile::tempdir().unwrap();
    let bodies_dir = dir.path().join("bodies");
    std::fs::create_dir(&bodies_dir).unwrap();
    let (app, web) = start_with(
        &up,
        "body_buffer_bytes = 1024",
        &format!("body_file_dir = {:?}\n", bodies_dir.display().to_string()),
    );
    // Gone after the service checked it.
    std::fs::remove_dir(&bodies_dir).unwrap();
    let body = counted(50_000);
    post_intact(web, "/api/long", &body);
    assert_eventually!(
        app.metric(r#"weft_http_request_body_file_errors_total{service="web"}"#) == Some(1.0)
            && bodies(&app, "part") == Some(1.0),
        "counted\n{}",
        app.curl("/metrics").unwrap_or_default()
    );
    assert_eq!(
        held(&app, "request_body_file_errors"),
        Some((1, None)),
        "and shown"
    );
    assert_eventually!(
        app.log()
            .contains("could not make a request body's temporary file")
            && app.log().contains("bodies"),
        "logged with the directory and cause\n{}",
        app.log()
    );
}

#[test]
fn a_body_of_the_largest_size_fits_in_a_peer_s_share_of_the_files_whole() {
    let up = Upstream::start();
    // One peer's share is one largest body: room is never asked for past its end.
    let (app, web) = start(
        &up,
        "max_body_bytes = 300000, body_buffer_bytes = 1024, body_file_total_bytes = 300000",
    );
    let body = counted(300_000);
    post_intact(web, "/api/max", &body);
    assert_eventually!(
        bodies(&app, "file") == Some(1.0) && file_bytes(&app) == Some(0.0),
        "read whole into a file, not in part\n{}",
        app.curl("/metrics").unwrap_or_default()
    );
}

/// With no room in the memory buffers (another body holds them), a body goes into a file
/// from its first byte rather than streaming: a client sending many bodies slowly holds
/// files, not upstream connections.
#[test]
fn with_the_buffers_full_a_body_goes_into_a_file_from_its_first_byte() {
    let up = Upstream::start();
    let (app, web) = start(
        &up,
        r#"request_timeout = "5s", body_buffer_bytes = 1024, body_buffer_total_bytes = 1024"#,
    );
    let mut slow = holding_the_buffers(&app, web);

    let mut second = RawClient::connect(web);
    second.send(b"POST /api/second HTTP/1.1\r\nHost: localhost\r\nContent-Length: 10\r\n\r\nhello");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        up.connections(),
        0,
        "no upstream connection while its body comes"
    );
    second.send(b"world");
    let reply = second.read_reply();
    assert_eq!(reply.status, 200, "{reply:?}");
    assert!(
        reply.text().ends_with("body=helloworld"),
        "{}",
        reply.text()
    );

    slow.send(&[b'b'; 24]);
    assert_eq!(slow.read_reply().status, 200);
    assert_eventually!(
        bodies(&app, "file") == Some(1.0) && bodies(&app, "whole") == Some(1.0),
        "counted: one in a file, one read whole\n{}",
        app.curl("/metrics").unwrap_or_default()
    );
}

/// A service whose bodies stream from their first byte (no buffers, no files), its
/// upstream given 1 s to answer and its clients 5 s a piece.
fn streaming(up: &Upstream) -> (App, SocketAddr) {
    start(
        up,
        r#"request_timeout = "5s", upstream_timeout = "1s", body_buffer_bytes = 0,
           body_file_total_bytes = 0"#,
    )
}

/// Asserts that `app` counted no failure of any upstream.
fn no_upstream_failure(app: &App) {
    let metrics = app.curl("/metrics").unwrap_or_default();
    assert!(
        !metrics
            .lines()
            .any(|l| l.starts_with("weft_http_upstream_failures_total{") && !l.ends_with(" 0")),
        "no failure of the upstream\n{metrics}"
    );
}

/// An upstream's time to answer runs from a streamed body's end when that comes after
/// the exchange began, as nginx's `proxy_read_timeout` runs from the request's end: an
/// upstream that answers in time after a body finished late is not charged for the
/// client's pace, over `Content-Length` and chunked (its end a chunk of its own, with
/// trailer fields or without) alike.
#[test]
fn an_upstream_has_its_whole_timeout_after_a_late_body_s_end() {
    for (framing, pieces) in [
        ("Content-Length: 6", [&b"ab"[..], b"cd", b"ef"]),
        (
            "Transfer-Encoding: chunked",
            [&b"2\r\nab\r\n"[..], b"4\r\ncdef\r\n", b"0\r\n\r\n"],
        ),
        (
            "Transfer-Encoding: chunked",
            [
                &b"2\r\nab\r\n"[..],
                b"4\r\ncdef\r\n",
                b"0\r\nX-Sum: 1\r\n\r\n",
            ],
        ),
    ] {
        let up = Upstream::holding();
        let (app, web) = streaming(&up);
        let mut client = RawClient::connect(web);
        client.send(
            format!("POST /api/x HTTP/1.1\r\nHost: localhost\r\n{framing}\r\n\r\n").as_bytes(),
        );
        for piece in pieces {
            std::thread::sleep(Duration::from_millis(300));
            client.send(piece);
        }
        // The body ended at 0.9 s; the upstream answers at 1.5 s, within its second of
        // that (1 s from the exchange's start has passed).
        std::thread::sleep(Duration::from_millis(600));
        up.release();
        let reply = client.read_reply();
        assert_eq!(reply.status, 200, "{framing}: {reply:?}");
        assert!(reply.text().ends_with("body=abcdef"), "{}", reply.text());
        no_upstream_failure(&app);
    }
}

/// A streamed body the client sent whole (its trailers too) leaves an upstream that does
/// not answer to be blamed for it: 504, counted against the upstream, not 408.
#[test]
fn an_upstream_silent_after_the_whole_body_came_is_charged_for_its_silence() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_addr = silent.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in silent.incoming().flatten() {
            held.push(stream);
        }
    });
    let port = free_port();
    let app = spawn_app_with(|_| {
        format!(
            "\n[[service]]\nname = \"web\"\nkind = \"http\"\n\
             listen = \"tcp:{port}:interface=127.0.0.1\"\n\
             limits = {{ upstream_timeout = \"1s\", body_buffer_bytes = 0, body_file_total_bytes = 0 }}\n\
             [[service.route]]\nprefix = \"/api/\"\nupstream = \"http://{silent_addr}\"\n"
        )
    });
    let web: SocketAddr = ([127, 0, 0, 1], port).into();
    let mut client = RawClient::connect(web);
    client.send(
        b"POST /api/x HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n\
          5\r\nhello\r\n0\r\nX-Checksum: 1\r\n\r\n",
    );
    let reply = client.read_reply();
    assert_eq!(reply.status, 504, "{reply:?}");
    assert_eventually!(
        app.metric(&format!(
            r#"weft_http_upstream_failures_total{{reason="timeout",service="web",upstream="http://{silent_addr}"}}"#
        )) == Some(1.0),
        "counted against the upstream\n{}",
        app.curl("/metrics").unwrap_or_default()
    );
}

/// A body sent to a file from its first byte (no room in memory) must still bring what
/// memory would have held within `request_timeout`, as there: a client dribbling it
/// holds a file no longer than it would a buffer.
#[test]
fn a_body_dribbled_into_a_file_for_want_of_memory_is_408_as_in_memory() {
    let up = Upstream::start();
    let (app, web) = start(
        &up,
        r#"request_timeout = "1s", body_buffer_bytes = 1024, body_buffer_total_bytes = 1024"#,
    );
    let _slow = holding_the_buffers(&app, web);
    let mut dribbling = RawClient::connect(web);
    dribbling
        .send(b"POST /api/dribble HTTP/1.1\r\nHost: localhost\r\nContent-Length: 4096\r\n\r\n");
    let started = Instant::now();
    let stream = dribbling.try_clone_stream();
    let writer = std::thread::spawn(move || {
        let mut stream = stream;
        for _ in 0..20 {
            if stream.write_all(b"x").is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    let reply = dribbling.read_reply();
    assert_eq!(reply.status, 408, "{reply:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(up.connections(), 0);
    let _ = writer.join();
}

/// A body that streams (nothing read ahead) and is still coming when the upstream's
/// answer is late was what the upstream waited on: the client is answered 408 and the
/// upstream's health and failure counts do not count it, so one client sending slowly
/// ejects no upstream for the others.
#[test]
fn an_upstream_waiting_on_a_body_still_coming_is_not_charged_for_its_lateness() {
    let up = Upstream::start();
    let (app, web) = streaming(&up);
    let mut client = RawClient::connect(web);
    client.send(b"POST /api/x HTTP/1.1\r\nHost: localhost\r\nContent-Length: 10\r\n\r\nhello");
    let reply = client.read_reply();
    assert_eq!(reply.status, 408, "{reply:?}");
    assert_eq!(up.connections(), 1);
    assert_eventually!(
        refused(&app, "body_timeout") == Some(1.0),
        "counted as the client's\n{}",
        app.curl("/metrics").unwrap_or_default()
    );
    no_upstream_failure(&app);
}

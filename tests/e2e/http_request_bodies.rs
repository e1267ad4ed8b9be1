//! Proxied request bodies are read before any upstream is contacted (up to
//! `limits.body_buffer_bytes`): a client that sends its body slowly, or declares more
//! than it sends, holds no upstream connection; a chunked body read whole goes upstream
//! with its length; a longer body streams after its first part, and once the service's
//! buffers are full bodies stream as they come. Each is counted.

use std::net::SocketAddr;
use std::process::Command;

use serde_json::Value;

use crate::assert_eventually;
use crate::http_peers::{RawClient, Upstream};
use crate::support::{App, free_port, spawn_app_with};

/// A service proxying `/api/` to `up`, with `limits` (TOML inline-table keys).
fn start(up: &Upstream, limits: &str) -> (App, SocketAddr) {
    let port = free_port();
    let up_addr = up.addr;
    let app = spawn_app_with(|_| {
        format!(
            "\n[[service]]\nname = \"web\"\nkind = \"http\"\n\
             listen = \"tcp:{port}:interface=127.0.0.1\"\n\
             limits = {{ {limits} }}\n\
             [[service.route]]\nprefix = \"/api/\"\nupstream = \"http://{up_addr}\"\n"
        )
    });
    (app, ([127, 0, 0, 1], port).into())
}

fn bodies(app: &App, buffered: &str) -> Option<f64> {
    app.metric(&format!(
        r#"weft_http_request_bodies_total{{buffered="{buffered}",service="web"}}"#
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
        pending_request(&app),
        "the request's chain is pending\n{}",
        app.log()
    );
    assert_eq!(chain["step_name"], "request body", "{chain}");
    assert_eq!(
        chain["waiting_on_connection"], chain["connection_id"],
        "it waits on its client's connection: {chain}"
    );
    assert_eq!(
        up.connections(),
        0,
        "no upstream connection while the body comes"
    );

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
        bodies(&app, "whole") == Some(1.0),
        "counted as read whole\n{}",
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
        app.metric(r#"weft_http_requests_refused_total{reason="body",service="web"}"#) == Some(1.0),
        "counted as a broken body\n{}",
        app.curl("/metrics").unwrap_or_default()
    );
    assert_eq!(up.connections(), 0, "no upstream was dialled for it");
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

    // And over HTTP/2 with curl, which sends no length for data it reads from stdin.
    let url = format!("http://{web}/api/h2");
    let out = Command::new("curl")
        .args([
            "-sS",
            "--http2-prior-knowledge",
            "--data-binary",
            "@-",
            "-H",
        ])
        .arg("Content-Type: application/octet-stream")
        .arg(&url)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(b"from curl")?;
            child.wait_with_output()
        })
        .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.ends_with("body=from curl"), "{text}");
    assert_eq!(up.header(1, "content-length"), ["9"]);
    assert_eventually!(
        bodies(&app, "whole") == Some(2.0),
        "both counted as read whole\n{}",
        app.curl("/metrics").unwrap_or_default()
    );
}

#[test]
fn a_longer_body_streams_after_its_first_part_and_full_buffers_stream_from_the_start() {
    let up = Upstream::start();
    let (app, web) = start(
        &up,
        r#"request_timeout = "5s", body_buffer_bytes = 1024, body_buffer_total_bytes = 1024"#,
    );
    // 1 KiB of a 2 KiB body: its first part fills its buffer (and the service's), so it
    // goes upstream and the rest streams as it comes.
    let mut long = RawClient::connect(web);
    long.send(b"POST /api/long HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2048\r\n\r\n");
    long.send(&[b'a'; 1024]);
    assert_eventually!(
        up.connections() == 1,
        "the long body's request went upstream after its first part\n{}",
        app.log()
    );

    // Meanwhile another body finds the buffers full: it streams from its first byte.
    let mut short = RawClient::connect(web);
    short.send(b"POST /api/short HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n\r\nhello");
    let reply = short.read_reply();
    assert_eq!(reply.status, 200, "{reply:?}");
    assert!(reply.text().ends_with("body=hello"), "{}", reply.text());

    long.send(&[b'b'; 1024]);
    let reply = long.read_reply();
    assert_eq!(reply.status, 200, "{reply:?}");
    let body = reply.text();
    let sent = body.split("body=").nth(1).unwrap_or("");
    assert_eq!(sent.len(), 2048, "nothing lost");
    assert!(sent.starts_with(&"a".repeat(1024)) && sent.ends_with(&"b".repeat(1024)));
    assert_eventually!(
        bodies(&app, "part") == Some(1.0) && bodies(&app, "none") == Some(1.0),
        "counted: one read in part, one streamed\n{}",
        app.curl("/metrics").unwrap_or_default()
    );

    // With the long one done, the buffers are free again.
    let mut again = RawClient::connect(web);
    again.send(b"POST /api/again HTTP/1.1\r\nHost: localhost\r\nContent-Length: 3\r\n\r\nabc");
    assert_eq!(again.read_reply().status, 200);
    assert_eventually!(
        bodies(&app, "whole") == Some(1.0),
        "read whole\n{}",
        app.curl("/metrics").unwrap_or_default()
    );
}

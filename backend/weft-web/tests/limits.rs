//! Bad and abusive clients: malformed requests, huge headers, slow clients. Each gets its
//! answer (or is cut off), is counted, and the service goes on serving.

mod support;

use std::time::{Duration, Instant};

use support::Server;
use weft_test_support::eventually;
use weft_web::{Limits, WebConfig};

fn server(limits: Limits) -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ok.txt"), "ok").unwrap();
    let server = Server::start(WebConfig {
        root: Some(dir.path().to_owned()),
        limits,
        ..WebConfig::default()
    });
    (dir, server)
}

#[test]
fn a_malformed_request_gets_400_is_counted_and_the_service_goes_on() {
    let (_dir, server) = server(Limits::default());
    let mut client = server.connect();
    client.send(b"THIS IS NOT HTTP\r\n\r\n");
    let reply = client.read_reply(false);
    assert_eq!(reply.status, 400);
    eventually("counted", || server.recorded.count("other", "4xx") == 1);
    assert_eq!(server.recorded.refused("malformed"), 1);
    assert_eq!(server.get("/ok.txt").text(), "ok");
}

#[test]
fn oversized_headers_get_431() {
    let (_dir, server) = server(Limits {
        max_header_bytes: 8192,
        ..Limits::default()
    });
    let mut client = server.connect();
    let big = "x".repeat(10_000);
    client.send(format!("GET /ok.txt HTTP/1.1\r\nHost: t\r\nX-Big: {big}\r\n\r\n").as_bytes());
    assert_eq!(client.read_reply(false).status, 431);
    eventually("counted", || server.recorded.count("other", "4xx") == 1);
    assert_eq!(server.recorded.refused("head_too_large"), 1);
    assert_eq!(server.get("/ok.txt").status, 200);
}

#[test]
fn a_slow_client_is_disconnected_after_the_request_timeout() {
    let (_dir, server) = server(Limits {
        request_timeout: Duration::from_millis(300),
        ..Limits::default()
    });
    // Before the connect: the server's clock for the head starts after it.
    let started = Instant::now();
    let mut slow = server.connect();
    slow.send(b"GET /ok.txt HTTP/1.1\r\nHost: t\r\n");
    assert!(slow.is_closed(), "the server hung up");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
    assert_eq!(server.get("/ok.txt").text(), "ok");
    eventually("unregistered", || server.connections().is_empty());
}

#[test]
fn an_idle_keep_alive_connection_is_closed_after_the_request_timeout() {
    let (_dir, server) = server(Limits {
        request_timeout: Duration::from_millis(300),
        ..Limits::default()
    });
    let mut client = server.connect();
    assert_eq!(
        client
            .request("GET /ok.txt HTTP/1.1\r\nHost: t\r\n\r\n")
            .status,
        200
    );
    assert!(client.is_closed());
    eventually("unregistered", || server.connections().is_empty());
}

#[test]
fn a_keep_alive_connection_closes_after_its_last_request_saying_so() {
    let (_dir, capped) = server(Limits {
        max_requests_per_connection: 3,
        ..Limits::default()
    });
    let mut client = capped.connect();
    for _ in 0..2 {
        let reply = client.request("GET /ok.txt HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_eq!((reply.status, reply.header("connection")), (200, None));
    }
    let last = client.request("GET /ok.txt HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(
        (last.status, last.header("connection")),
        (200, Some("close"))
    );
    assert!(client.is_closed(), "closed after its third request");

    // Pipelined: three answered, the fourth left for the client to send again.
    let mut client = capped.connect();
    client.send(
        "GET /ok.txt HTTP/1.1\r\nHost: t\r\n\r\n"
            .repeat(4)
            .as_bytes(),
    );
    let statuses: Vec<_> = (0..3).map(|_| client.read_reply(false).status).collect();
    assert_eq!(statuses, [200, 200, 200]);
    assert!(client.is_closed(), "the fourth request is not answered");
    assert_eq!(capped.recorded.count("GET", "2xx"), 6);

    // 0: no cap.
    let (_dir, uncapped) = server(Limits {
        max_requests_per_connection: 0,
        ..Limits::default()
    });
    let mut client = uncapped.connect();
    for _ in 0..1001 {
        let reply = client.request("GET /ok.txt HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_eq!((reply.status, reply.header("connection")), (200, None));
    }
}

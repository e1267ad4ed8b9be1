//! HTTP/1.1 message rules (RFC 9112, RFC 9110) over real sockets: what a careless or
//! hostile client gets, and that none of it reaches an upstream.

mod support;

use support::Server;
use support::upstream::{Log, ok, targets, upstream};
use weft_test_support::eventually;
use weft_web::{Route, WebConfig};

/// A proxy route `/api/` and static files (with a directory `sub`) for the rest.
fn site() -> (tempfile::TempDir, Server, Log) {
    let (api, seen) = upstream(ok);
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("sub")).unwrap();
    std::fs::write(dir.path().join("sub/index.html"), "sub").unwrap();
    let server = Server::start(WebConfig {
        root: Some(dir.path().to_owned()),
        routes: vec![Route::new("/api/", &format!("http://{api}")).unwrap()],
        ..WebConfig::default()
    });
    (dir, server, seen)
}

#[test]
fn a_request_without_host_or_with_two_gets_400_rfc9112_3_2() {
    let (_dir, server, seen) = site();
    for raw in [
        "GET /api/x HTTP/1.1\r\n\r\n",
        "GET /api/x HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n",
        "GET /api/x HTTP/1.1\r\nHost: a.test, b.test\r\n\r\n",
        "GET /api/x HTTP/1.1\r\nHost: user@a.test\r\n\r\n",
        "GET /api/x HTTP/1.1\r\nHost:\r\n\r\n",
        "GET /sub/ HTTP/1.1\r\n\r\n",
    ] {
        let reply = server.connect().request(raw);
        assert_eq!(reply.status, 400, "{raw:?}: {}", reply.text());
        assert!(reply.text().contains("Host"), "{}", reply.text());
    }
    assert!(targets(&seen).is_empty(), "{:?}", targets(&seen));
    assert_eq!(server.recorded.count("GET", "4xx"), 6);
    assert_eq!(server.recorded.refused("host"), 6);

    // HTTP/1.0 may leave Host out: the upstream gets its own authority.
    let reply = server.connect().request("GET /api/old HTTP/1.0\r\n\r\n");
    assert_eq!(reply.status, 200);
    let host = seen.lock().unwrap()[0].header("host").unwrap();
    assert!(host.starts_with("127.0.0.1:"), "{host}");
}

#[test]
fn connection_cannot_name_host_away() {
    let (_dir, server, seen) = site();
    let reply = server.connect().request(
        "GET /api/x HTTP/1.1\r\nHost: site.test\r\nConnection: host, x-hop\r\nX-Hop: 1\r\n\r\n",
    );
    assert_eq!(reply.status, 200);
    let seen = seen.lock().unwrap()[0].clone();
    assert_eq!(seen.headers("host"), ["site.test"]);
    assert_eq!(seen.header("x-hop"), None);
}

#[test]
fn an_absolute_form_target_names_the_host_rfc9112_3_2_2() {
    let (_dir, server, seen) = site();
    let reply = server
        .connect()
        .request("GET http://site.test/api/x HTTP/1.1\r\nHost: other.test\r\n\r\n");
    assert_eq!(reply.status, 200);
    let seen = seen.lock().unwrap()[0].clone();
    assert_eq!(seen.target(), "/api/x");
    assert_eq!(seen.headers("host"), ["site.test"]);
}

#[test]
fn a_malformed_chunked_body_is_the_clients_fault() {
    let (_dir, server, _seen) = site();
    let mut client = server.connect();
    client.send(
        b"POST /api/x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\nnot a chunk\r\n\r\n",
    );
    let reply = client.read_reply(false);
    assert_eq!(reply.status, 400, "{}", reply.text());
    eventually("counted", || server.recorded.count("POST", "4xx") == 1);
    assert_eq!(*server.recorded.upstream_errors.lock().unwrap(), 0);
    assert_eq!(server.recorded.count("POST", "5xx"), 0);
    assert_eq!(server.recorded.refused("body"), 1);
    assert!(
        client.is_closed(),
        "a connection with a broken body is not reused"
    );
    assert_eq!(
        server.recorded.requests.lock().unwrap().len(),
        1,
        "counted once"
    );
}

#[test]
fn connect_is_refused_and_never_forwarded() {
    let (_dir, server, seen) = site();
    for raw in [
        "CONNECT /api/x HTTP/1.1\r\nHost: t\r\n\r\n",
        "CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: 127.0.0.1:22\r\n\r\n",
    ] {
        let mut client = server.connect();
        // What a client sends after its CONNECT is meant for the tunnel, never a
        // request: the connection closes with the refusal (nginx: 400 and closed).
        client.send(format!("{raw}GET /api/tunnelled HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
        let reply = client.read_reply(false);
        assert_eq!(reply.status, 501, "{raw:?}: {}", reply.text());
        assert_eq!(reply.header("connection"), Some("close"), "{raw:?}");
        assert!(client.is_closed(), "{raw:?}");
    }
    assert!(targets(&seen).is_empty(), "{:?}", targets(&seen));
    assert_eq!(server.recorded.count("other", "5xx"), 2);
    assert_eq!(server.recorded.refused("method"), 2);
}

#[test]
fn a_directory_redirect_is_never_protocol_relative() {
    let (_dir, server, _seen) = site();
    for (path, location) in [
        ("/sub", "/sub/"),
        ("//sub", "/sub/"),
        ("///sub?x=1", "/sub/?x=1"),
    ] {
        let reply = server.get(path);
        assert_eq!(reply.status, 301, "{path}");
        assert_eq!(reply.header("location"), Some(location), "{path}");
    }
}

#[test]
fn more_headers_than_the_count_limit_get_431() {
    let (_dir, server, seen) = site();
    let headers: String = (0..100).map(|i| format!("X-H{i}: {i}\r\n")).collect();
    let mut client = server.connect();
    client.send(format!("GET /api/x HTTP/1.1\r\nHost: t\r\n{headers}\r\n").as_bytes());
    let reply = client.read_reply(false);
    assert_eq!(reply.status, 431, "{}", reply.text());
    eventually("counted", || server.recorded.count("other", "4xx") == 1);
    assert_eq!(server.recorded.refused("head_too_large"), 1);
    assert!(targets(&seen).is_empty());

    let fewer: String = (0..99).map(|i| format!("X-H{i}: {i}\r\n")).collect();
    let reply = server
        .connect()
        .request(&format!("GET /api/x HTTP/1.1\r\nHost: t\r\n{fewer}\r\n"));
    assert_eq!(reply.status, 200, "100 header lines are allowed");
}

//! The reverse proxy against in-test upstreams on loopback: routing, headers, bodies
//! both ways, and each way an upstream can fail.

mod support;

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use support::Server;
use support::upstream::{AfterResponse, KeepAlive, Seen, ok, upstream};
use weft::testing::RecordingObserver;
use weft_test_support::eventually;
use weft_web::{Limits, Route, WebConfig};

fn echo_body(seen: &Seen) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
        seen.body.len()
    )
    .into_bytes();
    out.extend_from_slice(&seen.body);
    out
}

fn chunked_slowly(_: &Seen) -> Vec<u8> {
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
        .to_vec()
}

fn never(_: &Seen) -> Vec<u8> {
    std::thread::sleep(Duration::from_secs(10));
    Vec::new()
}

fn proxy_to(routes: &[(&str, SocketAddr)], limits: Limits) -> Server {
    let routes = routes
        .iter()
        .map(|(prefix, addr)| Route::new(prefix, &format!("http://{addr}")).unwrap())
        .collect();
    Server::start(WebConfig {
        routes,
        limits,
        ..WebConfig::default()
    })
}

#[test]
fn the_longest_prefix_picks_the_upstream_and_the_path_goes_through() {
    let (api, _) = upstream(ok);
    let (v2, _) = upstream(|_| b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nv2".to_vec());
    let server = proxy_to(&[("/api/", api), ("/api/v2/", v2)], Limits::default());
    assert_eq!(
        server.get("/api/users?id=1").text(),
        "upstream saw GET /api/users?id=1 HTTP/1.1"
    );
    assert_eq!(server.get("/api/v2/x").text(), "v2");
    assert_eq!(server.get("/other").status, 404, "no route and no root");
}

#[test]
fn hop_by_hop_headers_stay_behind_and_the_client_is_named() {
    let (api, seen) = upstream(ok);
    let server = proxy_to(&[("/", api)], Limits::default());
    let reply = server.connect().request(
        "GET /x HTTP/1.1\r\nHost: site.test\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\nX-Kept: 2\r\nX-Real-IP: 6.6.6.6\r\nX-Real-IP: 7.7.7.7\r\n\r\n",
    );
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("x-upstream"), Some("yes"));
    assert_eq!(
        reply.header("keep-alive"),
        None,
        "the upstream's hop-by-hop header"
    );
    let seen = seen.lock().unwrap()[0].clone();
    assert_eq!(seen.header("x-hop"), None);
    assert_eq!(seen.header("x-kept").as_deref(), Some("2"));
    assert_eq!(seen.header("host").as_deref(), Some("site.test"));
    assert_eq!(seen.header("x-forwarded-for").as_deref(), Some("127.0.0.1"));
    assert_eq!(
        seen.headers("x-real-ip"),
        ["127.0.0.1"],
        "the client's own never passes"
    );
    assert_eq!(
        seen.header("x-forwarded-host").as_deref(),
        Some("site.test")
    );
    assert_eq!(
        seen.header("forwarded").as_deref(),
        Some("for=127.0.0.1;host=\"site.test\";proto=http")
    );
}

#[test]
fn bodies_stream_both_ways() {
    let (echo, _) = upstream(echo_body);
    let (chunked, _) = upstream(chunked_slowly);
    let server = proxy_to(&[("/echo", echo), ("/chunked", chunked)], Limits::default());
    let mut client = server.connect();
    let reply =
        client.request("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\nhello proxy");
    assert_eq!(reply.text(), "hello proxy");
    let reply = client.request("GET /chunked HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(reply.text(), "hello world");
    assert_eq!(server.recorded.count("POST", "2xx"), 1);
}

/// An HTTP/1.0 client cannot take a chunked body: one of unknown length ends with the
/// connection, so the answer says `close` even when the client asked to keep it alive
/// (RFC 9112 §9.3, appendix C.2.2), and a request pipelined behind it is not left
/// hanging.
#[test]
fn an_http_1_0_client_given_a_body_of_unknown_length_is_told_the_connection_closes() {
    let (chunked, _) = upstream(chunked_slowly);
    let server = proxy_to(&[("/", chunked)], Limits::default());
    let mut client = server.connect();
    client.send(b"GET /c HTTP/1.0\r\nHost: t\r\nConnection: keep-alive\r\n\r\n");
    let reply = client.read_reply(false);
    assert_eq!(reply.status, 200);
    assert_eq!(reply.text(), "hello world");
    assert_ne!(
        reply
            .header("connection")
            .map(str::to_ascii_lowercase)
            .as_deref(),
        Some("keep-alive"),
        "{:?}",
        reply.headers
    );
}

/// An upstream response whose body breaks off before any of it (a malformed chunk or
/// trailer line in the packet that brought the head) is answered 502, counted against the
/// upstream: nothing had been sent, and the client got nothing at all (HTTP/1.1: not even
/// a status line; HTTP/2: a reset stream). A body that breaks off after some of it went
/// out still cuts the response short.
#[test]
fn a_response_whose_body_breaks_off_before_any_of_it_is_a_502() {
    let (bad, _) = upstream(|_| {
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n".to_vec()
    });
    let (good, _) = upstream(chunked_slowly);
    let server = proxy_to(&[("/bad", bad), ("/good", good)], Limits::default());
    let mut client = server.connect();
    let reply = client.request("GET /bad HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(reply.status, 502, "{}", reply.text());
    // The connection goes on: the next request on it is answered.
    let reply = client.request("GET /good HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(reply.text(), "hello world");
    assert_eq!(server.recorded.count("GET", "5xx"), 1);
}

/// A POST (or PUT, PATCH) with no body says its empty one to the upstream (RFC 9110
/// §8.6; an HTTP/2 POST ended with its HEADERS has no length of its own to pass on, and
/// some upstreams answer 411 without one); a GET does not get one.
#[test]
fn a_post_without_a_body_says_its_length_to_the_upstream() {
    let (api, seen) = upstream(ok);
    let server = proxy_to(&[("/", api)], Limits::default());
    let mut client = server.connect();
    client.request("POST /x HTTP/1.1\r\nHost: t\r\n\r\n");
    client.request("GET /y HTTP/1.1\r\nHost: t\r\n\r\n");
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen[0].header("content-length").as_deref(), Some("0"));
    assert_eq!(seen[1].header("content-length"), None);
}

/// `Content-Length: 010` is ten bytes (RFC 9110 §8.6) but goes on as `10` both ways, as
/// nginx writes it: a next hop that read it as octal would frame the message as eight.
#[test]
fn a_content_length_with_leading_zeros_goes_on_without_them() {
    let (echo, seen) = upstream(|seen: &Seen| {
        let mut out = b"HTTP/1.1 200 OK\r\nContent-Length: 0010\r\n\r\n".to_vec();
        out.extend_from_slice(&seen.body);
        out
    });
    let server = proxy_to(&[("/", echo)], Limits::default());
    let reply = server
        .connect()
        .request("POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 010\r\n\r\n0123456789");
    assert_eq!(reply.header("content-length"), Some("10"));
    assert_eq!(reply.text(), "0123456789");
    let seen = seen.lock().unwrap()[0].clone();
    assert_eq!(seen.header("content-length").as_deref(), Some("10"));
}

/// A chunked body's trailer section ended by a bare LF (`0\r\nX: 1\n\n`) was read to the
/// next CRLF CRLF, and the request after it, in between, thrown away unanswered: the
/// connection's idea of where messages end differed from its client's (a front end
/// sharing its connection among clients would hand one client's answer to another). Such
/// a body is refused, 400, and the connection closed; nothing after it is taken.
#[test]
fn a_trailer_section_ended_by_a_bare_lf_is_refused_and_takes_no_request_with_it() {
    let (echo, log) = upstream(echo_body);
    let server = proxy_to(&[("/", echo)], Limits::default());
    for ending in ["0\r\nX: 1\n\n", "0\r\n\n", "0\r\nX: 1\r\n\n"] {
        let mut client = server.connect();
        client.send(
            format!(
                "POST /attacker HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n\
                 5\r\nhello\r\n{ending}\
                 GET /victim HTTP/1.1\r\nHost: t\r\n\r\n"
            )
            .as_bytes(),
        );
        let reply = client.read_reply(false);
        assert_eq!(reply.status, 400, "{ending:?}: {}", reply.text());
        assert!(client.is_closed(), "{ending:?}");
    }
    let targets = support::upstream::targets(&log);
    assert!(targets.is_empty(), "nothing went upstream: {targets:?}");
}

/// RFC 9110 §8.6: a sender MUST NOT forward a `Content-Length` that is not digits; an
/// upstream's `5, 5` (one length, repeated) goes on as `5`.
#[test]
fn an_upstream_s_repeated_content_length_reaches_the_client_as_one_length() {
    let (up, _) = upstream(|_| b"HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\nhello".to_vec());
    let server = proxy_to(&[("/", up)], Limits::default());
    let reply = server.get("/x");
    assert_eq!((reply.status, reply.text()), (200, "hello".to_owned()));
    let lengths: Vec<_> = reply
        .headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(lengths, ["5"]);
}

#[test]
fn a_get_s_body_of_unknown_length_streamed_past_the_buffer_reaches_the_upstream() {
    let (echo, seen) = upstream(echo_body);
    let server = proxy_to(
        &[("/", echo)],
        Limits {
            body_buffer_bytes: 4,
            body_file_total_bytes: 0,
            ..Limits::default()
        },
    );
    // hyper's client sends a GET whose body has no length as bodiless unless told it is
    // chunked.
    let reply = server.connect().request(
        "GET /x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n\
         5\r\nhello\r\n6\r\n proxy\r\n0\r\n\r\n",
    );
    assert_eq!(reply.text(), "hello proxy");
    let seen = seen.lock().unwrap();
    assert_eq!(
        seen[0].header("transfer-encoding").as_deref(),
        Some("chunked")
    );
}

#[test]
fn a_body_over_the_limit_gets_413_without_bothering_the_upstream() {
    let (echo, seen) = upstream(echo_body);
    let server = proxy_to(
        &[("/", echo)],
        Limits {
            max_body_bytes: 4,
            ..Limits::default()
        },
    );
    let reply = server
        .connect()
        .request("POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello");
    assert_eq!(reply.status, 413);
    assert!(seen.lock().unwrap().is_empty());
    assert_eq!(*server.recorded.upstream_errors.lock().unwrap(), 0);
    assert_eq!(server.recorded.refused("body_too_large"), 1);
}

#[test]
fn a_refused_upstream_is_a_502_that_says_so_and_is_counted() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let server = proxy_to(&[("/", port)], Limits::default());
    let reply = server.get("/x");
    assert_eq!(reply.status, 502);
    assert_says_nothing_of_the_upstream(&reply, port);
    assert_eq!(*server.recorded.upstream_errors.lock().unwrap(), 1);
    assert_eq!(server.recorded.count("GET", "5xx"), 1);
}

#[test]
fn a_silent_upstream_is_a_504_and_its_connection_is_listed_meanwhile() {
    let (silent, _) = upstream(never);
    let server = proxy_to(
        &[("/", silent)],
        Limits {
            upstream_timeout: Duration::from_millis(500),
            ..Limits::default()
        },
    );
    let mut client = server.connect();
    client.send(b"GET /x HTTP/1.1\r\nHost: t\r\n\r\n");
    eventually("client and upstream connections listed", || {
        server.connections() == ["web", "web"]
    });
    let reply = client.read_reply(false);
    assert_eq!(reply.status, 504);
    assert_says_nothing_of_the_upstream(&reply, silent);
    assert_eq!(*server.recorded.upstream_errors.lock().unwrap(), 1);
    eventually("upstream connection closed", || {
        server.connections().len() == 1
    });
}

#[test]
fn a_reused_upstream_connection_times_out_each_exchange_on_its_own_deadline() {
    let up = KeepAlive::start("a", AfterResponse::KeepOpen);
    let timeout = Duration::from_millis(400);
    let server = proxy_to(
        &[("/", up.addr)],
        Limits {
            upstream_timeout: timeout,
            ..Limits::default()
        },
    );
    assert_eq!(server.get("/x").text(), "a #1");
    // Past the first exchange's deadline with the connection idle: the next exchange on
    // it is timed from its own start.
    std::thread::sleep(timeout + Duration::from_millis(200));
    assert_eq!(server.get("/x").text(), "a #2");
    assert_eq!(up.accepted(), 1, "the same upstream connection");

    let started = std::time::Instant::now();
    let reply = server.get("/slow");
    let waited = started.elapsed();
    assert_eq!(reply.status, 504);
    assert!(
        waited >= timeout - Duration::from_millis(50) && waited < Duration::from_secs(5),
        "timed out after {waited:?}, the limit is {timeout:?}"
    );
    // The timed-out connection is closed, never reused: the next request opens another.
    assert_eq!(
        server.get("/x").text(),
        "a #3",
        "the slow one was never answered"
    );
    assert_eq!(up.accepted(), 2);
    up.release();
}

#[test]
fn a_request_its_client_abandons_mid_exchange_leaves_no_connection_busy() {
    let up = KeepAlive::start("a", AfterResponse::KeepOpen);
    let server = proxy_to(&[("/", up.addr)], Limits::default());
    let url = format!("http://{}", up.addr);
    let mut client = server.connect();
    client.send(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n");
    eventually("the request is on an upstream connection", || {
        up.accepted() == 1 && server.upstream(&url).busy_connections == 1
    });
    // The client goes away before the answer: the exchange is dropped, its upstream
    // connection aborted (never reused), and the pool counts it busy no more.
    drop(client);
    eventually("the abandoned connection is no longer counted busy", || {
        server.upstream(&url).busy_connections == 0
    });
    assert_eq!(server.get("/x").text(), "a #1");
    assert_eq!(up.accepted(), 2, "the abandoned connection was not reused");
    eventually("the second connection is back in the pool", || {
        let pool = server.upstream(&url);
        (pool.busy_connections, pool.idle_connections) == (0, 1)
    });
    up.release();
}

/// An upstream that takes one connection, reads whatever comes and never answers; says
/// how the connection ended: `end of stream` (in order) or the error's kind
/// (`ConnectionReset`).
fn upstream_that_tells_how_it_ended() -> (SocketAddr, std::sync::mpsc::Receiver<String>) {
    upstream_that_answers_once_and_tells_how_it_ended(Vec::new())
}

/// An upstream that takes one connection, writes `answer` once the request comes (nothing
/// when empty), and then reads on until it ends: it sends how (`end of stream`, or the
/// error's kind).
fn upstream_that_answers_once_and_tells_how_it_ended(
    answer: Vec<u8>,
) -> (SocketAddr, std::sync::mpsc::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (ended, how) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = [0u8; 65536];
        let mut answer = Some(answer).filter(|a| !a.is_empty());
        let end = loop {
            match std::io::Read::read(&mut s, &mut buf) {
                Ok(0) => break "end of stream".to_owned(),
                Ok(_) => {
                    if let Some(answer) = answer.take() {
                        std::io::Write::write_all(&mut s, &answer).unwrap();
                    }
                }
                Err(e) => break format!("{:?}", e.kind()),
            }
        };
        ended.send(end).unwrap();
    });
    (addr, how)
}

/// An exchange abandoned before its answer (the client went away) resets its upstream
/// connection, as its record says (`aborted`): a clean end would tell the upstream that a
/// request it was reading, or answering, was all there was.
#[test]
fn an_exchange_its_client_abandons_resets_the_upstream_connection() {
    let (addr, how) = upstream_that_tells_how_it_ended();
    let server = proxy_to(&[("/", addr)], Limits::default());
    let mut client = server.connect();
    client.send(b"GET /never HTTP/1.1\r\nHost: t\r\n\r\n");
    eventually("the request is on an upstream connection", || {
        server.upstream(&format!("http://{addr}")).busy_connections == 1
    });
    drop(client);
    let end = how.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(end, "ConnectionReset");
}

/// A request body streamed to the upstream and cut short by its client (it left halfway)
/// resets the upstream connection: ended in order, the upstream could take the part it
/// got for the whole body.
#[test]
fn a_streamed_body_its_client_cuts_short_resets_the_upstream_connection() {
    let (addr, how) = upstream_that_tells_how_it_ended();
    let limits = Limits {
        body_buffer_bytes: 0,
        ..Limits::default()
    };
    let server = proxy_to(&[("/", addr)], limits);
    let mut client = server.connect();
    client.send(b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n");
    client.send(&[b'x'; 50_000]);
    eventually("the request is on an upstream connection", || {
        server.upstream(&format!("http://{addr}")).busy_connections == 1
    });
    drop(client);
    let end = how.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(end, "ConnectionReset");
}

/// A client is told what kind of failure it was, never where the upstream is or what the
/// operating system said.
fn assert_says_nothing_of_the_upstream(reply: &support::Reply, upstream: SocketAddr) {
    let text = reply.text();
    for leak in [
        upstream.to_string(),
        upstream.port().to_string(),
        "127.0.0.1".to_owned(),
        "refused".to_owned(),
        "os error".to_owned(),
        "within".to_owned(),
    ] {
        assert!(!text.contains(&leak), "{leak:?} in {text:?}");
    }
    assert!(
        text.contains("upstream"),
        "still says what failed: {text:?}"
    );
}

/// An upstream connection closed from the dashboard while a request waits on it: the
/// request is answered 502 at once, not sent again, and the upstream is not blamed (its
/// health and failure counts are the close's doing, not its own).
#[test]
fn a_request_whose_upstream_connection_is_closed_from_the_dashboard_is_not_the_upstreams_failure() {
    let up = KeepAlive::start("a", AfterResponse::KeepOpen);
    let server = proxy_to(&[("/", up.addr)], Limits::default());
    assert_eq!(server.get("/x").text(), "a #1");
    let waiting = std::thread::spawn({
        let mut client = server.connect();
        move || client.request("GET /slow HTTP/1.1\r\nHost: h\r\n\r\n")
    });
    let url = format!("http://{}", up.addr);
    eventually("the request waits on the upstream", || {
        server.upstream(&url).in_flight == 1
    });
    assert!(
        server.close_connection_to(up.addr),
        "the upstream connection"
    );
    let reply = waiting.join().unwrap();
    assert_eq!(reply.status, 502);
    let snapshot = server.upstream(&url);
    assert_eq!(
        (snapshot.consecutive_failures, snapshot.failures),
        (0, 0),
        "{snapshot:?}"
    );
    assert_eq!(server.recorded.failures("exchange"), 0);
    up.release();
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(up.accepted(), 1, "not sent again, on a new connection");
}

#[test]
fn sequential_requests_reuse_one_upstream_connection() {
    let up = KeepAlive::start("a", AfterResponse::KeepOpen);
    let server = proxy_to(&[("/", up.addr)], Limits::default());
    for i in 1..=5 {
        // A new client connection each time: the pool is the service's, not the client's.
        assert_eq!(server.get("/x").text(), format!("a #{i}"));
    }
    assert_eq!(
        up.accepted(),
        1,
        "five requests over one upstream connection"
    );
    assert_eq!(server.recorded.upstream_connections(false), 1);
    assert_eq!(server.recorded.upstream_connections(true), 4);
    eventually(
        "the idle upstream connection is listed under the service",
        || server.connections() == ["web"],
    );
    // Its task is listed under it, not under the client connection that opened it (gone).
    let (tasks, open) = server.tasks_spawned_in("proxy/pool.rs");
    assert_eq!(
        tasks,
        [Some(open[0])],
        "the pool's task, and the open connection {open:?}"
    );
}

/// A request answered with a server error (502: the upstream refused) ends its chain
/// failed, so the inspector lists it with the failed ones, and not as an unhandled
/// failure: it was answered. A request answered well ends it succeeded.
#[test]
fn a_request_answered_with_a_server_error_ends_its_chain_failed() {
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let refused = closed.local_addr().unwrap();
    drop(closed);
    let observer = RecordingObserver::new();
    let config = WebConfig {
        routes: vec![Route::new("/", &format!("http://{refused}")).unwrap()],
        ..WebConfig::default()
    };
    let server = Server::start_observed(config, observer.clone());
    assert_eq!(server.get("/x").status, 502);
    eventually("the chain settled", || observer.count("Settled") == 1);
    let settled = observer.first("Settled").unwrap();
    assert!(
        settled.contains("Failed") && settled.contains("answered 502"),
        "{settled}"
    );
    assert_eq!(observer.count("Unhandled"), 0);
}

#[test]
fn a_pooled_exchange_spawns_no_task_of_its_own() {
    let up = KeepAlive::start("a", AfterResponse::KeepOpen);
    let observer = RecordingObserver::new();
    let config = WebConfig {
        routes: vec![Route::new("/", &format!("http://{}", up.addr)).unwrap()],
        ..WebConfig::default()
    };
    let server = Server::start_observed(config, observer.clone());
    let mut client = server.connect();
    let get = "GET /x HTTP/1.1\r\nHost: test\r\n\r\n";
    assert_eq!(client.request(get).text(), "a #1");
    // The first exchange opened the upstream connection and its driving task.
    eventually("the upstream connection is back in the pool", || {
        server
            .upstream(&format!("http://{}", up.addr))
            .idle_connections
            == 1
    });
    let spawned = observer.count("TaskSpawned");
    for i in 2..=11 {
        assert_eq!(client.request(get).text(), format!("a #{i}"));
        eventually("the upstream connection is back in the pool", || {
            server
                .upstream(&format!("http://{}", up.addr))
                .idle_connections
                == 1
        });
    }
    assert_eq!(up.accepted(), 1, "every request on one upstream connection");
    assert_eq!(
        observer.count("TaskSpawned") - spawned,
        0,
        "ten pooled exchanges on kept-alive connections spawn no task"
    );
    assert_eq!(
        server
            .upstream(&format!("http://{}", up.addr))
            .busy_connections,
        0
    );
}

#[test]
fn an_upstream_that_closes_after_each_response_costs_no_request() {
    let up = KeepAlive::start("a", AfterResponse::Close);
    let server = proxy_to(&[("/", up.addr)], Limits::default());
    let mut client = server.connect();
    for i in 1..=200 {
        let reply = client.request("GET /x HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_eq!((reply.status, reply.text()), (200, format!("a #{i}")));
    }
    assert_eq!(
        up.accepted(),
        200,
        "a connection the upstream closed is never reused"
    );
    assert_eq!(*server.recorded.upstream_errors.lock().unwrap(), 0);
    // Nor counted as reused: one taken from the pool as the upstream's close came answers
    // nothing (the request goes on a new one).
    assert_eq!(
        (
            server.recorded.upstream_connections(false),
            server.recorded.upstream_connections(true)
        ),
        (200, 0)
    );
}

/// An upstream that answers the first request of each connection, then resets the
/// connection when the next one arrives (it closes with that request unread, so the
/// kernel sends RST): a server restarting, or one whose keep-alive timeout ran out as the
/// request crossed it. The proxy sees a connection reset, not a clean end.
/// The requests it answered are kept, in order: each head, then its body (read by
/// `Content-Length`).
fn resets_every_second_request() -> (
    SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
    std::sync::Arc<std::sync::Mutex<Vec<String>>>,
) {
    use std::io::{BufRead, BufReader, Write};
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = std::sync::Arc::new(AtomicUsize::new(0));
    let heads = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let (count, answered) = (accepted.clone(), heads.clone());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let n = count.fetch_add(1, SeqCst) + 1;
            let answered = answered.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut head = String::new();
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                    head.push_str(&line);
                    line.clear();
                }
                let length = head
                    .lines()
                    .find_map(|l| {
                        let (name, value) = l.split_once(':')?;
                        name.eq_ignore_ascii_case("content-length")
                            .then(|| value.trim().parse::<usize>().ok())?
                    })
                    .unwrap_or(0);
                let mut body = vec![0; length];
                std::io::Read::read_exact(&mut reader, &mut body).unwrap();
                head.push_str(&String::from_utf8_lossy(&body));
                answered.lock().unwrap().push(head);
                let body = format!("conn #{n}");
                let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
                stream
                    .write_all(format!("{head}{body}").as_bytes())
                    .unwrap();
                // Wait for the next request and close with it unread.
                let mut peek = [0u8; 1];
                let _ = stream.peek(&mut peek);
                drop(reader);
            });
        }
    });
    (addr, accepted, heads)
}

/// An upstream that answers `/fill` after 300 ms (so that concurrent requests leave as
/// many connections idle in the pool) and, on every connection, answers `/bad` by
/// closing with it unread when `close`, or else with a head no parser takes (two lengths
/// that disagree). Counts the `/bad` requests it got.
fn fails_bad_requests(close: bool) -> (SocketAddr, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::{BufRead, BufReader, Write};
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let bad = std::sync::Arc::new(AtomicUsize::new(0));
    let count = bad.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let count = count.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                loop {
                    let (mut head, mut line) = (String::new(), String::new());
                    while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                        head.push_str(&line);
                        line.clear();
                    }
                    if head.starts_with("GET /fill") {
                        std::thread::sleep(Duration::from_millis(300));
                        let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
                    } else if head.starts_with("GET /bad") {
                        count.fetch_add(1, SeqCst);
                        if close {
                            return;
                        }
                        let _ = stream.write_all(
                            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 9\r\n\r\nhello",
                        );
                    } else {
                        return;
                    }
                }
            });
        }
    });
    (addr, bad)
}

/// A request that failed on a reused connection goes again once, on a new connection:
/// not through every idle connection of the pool, each of which would take it again (an
/// upstream whose worker dies on it saw it once per idle connection, and one more). One
/// that got an answer, even one that could not be read, does not go again.
#[test]
fn a_request_goes_again_at_most_once_and_never_after_an_answer() {
    for (close, sent) in [(true, 2), (false, 1)] {
        let (addr, bad) = fails_bad_requests(close);
        let server = proxy_to(&[("/", addr)], Limits::default());
        std::thread::scope(|s| {
            for _ in 0..6 {
                s.spawn(|| assert_eq!(server.get("/fill").text(), "ok"));
            }
        });
        eventually("six connections idle in the pool", || {
            server.recorded.upstream_connections(false) == 6 && server.connections().len() == 6
        });
        assert_eq!(server.get("/bad").status, 502);
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(
            bad.load(std::sync::atomic::Ordering::SeqCst),
            sent,
            "times the upstream got one request (closing on it: {close})"
        );
    }
}

#[test]
fn a_reused_connection_reset_by_the_upstream_is_replaced_for_an_idempotent_request() {
    let (addr, accepted, _) = resets_every_second_request();
    let server = proxy_to(&[("/", addr)], Limits::default());
    assert_eq!(server.get("/x").text(), "conn #1");
    eventually("the first connection is back in the pool", || {
        server.recorded.upstream_connections(false) == 1 && server.connections() == ["web"]
    });
    let reply = server.get("/x");
    assert_eq!(
        (reply.status, reply.text()),
        (200, "conn #2".to_owned()),
        "the GET goes again on a new connection"
    );
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 2);
    assert_eq!(*server.recorded.upstream_errors.lock().unwrap(), 0);
}

#[test]
fn a_put_whose_body_was_read_whole_goes_again_with_it_after_a_reset() {
    put_goes_again_after_a_reset(Limits::default());
}

#[test]
fn a_put_whose_body_went_into_a_file_goes_again_with_it_after_a_reset() {
    // Longer than the buffer: read on into a file, and read from it again.
    put_goes_again_after_a_reset(Limits {
        body_buffer_bytes: 4,
        ..Limits::default()
    });
}

fn put_goes_again_after_a_reset(limits: Limits) {
    let (addr, accepted, heads) = resets_every_second_request();
    let server = proxy_to(&[("/", addr)], limits);
    let put = "PUT /x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n\
               4\r\nsome\r\n5\r\n body\r\n0\r\n\r\n";
    assert_eq!(server.connect().request(put).text(), "conn #1");
    eventually("the first connection is back in the pool", || {
        server.recorded.upstream_connections(false) == 1 && server.connections() == ["web"]
    });
    let reply = server.connect().request(put);
    assert_eq!(
        (reply.status, reply.text()),
        (200, "conn #2".to_owned()),
        "the PUT goes again on a new connection, its body read whole"
    );
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 2);
    let heads = heads.lock().unwrap();
    let again = heads[1].to_ascii_lowercase();
    assert!(
        again.contains("content-length: 9\r\n") && again.ends_with("\r\nsome body"),
        "sent again with its body and length: {again:?}"
    );
    assert_eq!(heads[1], heads[0]);
}

#[test]
fn a_request_sent_again_after_a_reset_goes_with_all_its_header_fields() {
    let (addr, _, heads) = resets_every_second_request();
    let server = proxy_to(&[("/", addr)], Limits::default());
    let ask = "GET /x HTTP/1.1\r\nHost: t\r\nX-Asked: again\r\nX-Two: 1\r\nX-Two: 2\r\n\r\n";
    assert_eq!(server.connect().request(ask).text(), "conn #1");
    eventually("the first connection is back in the pool", || {
        server.recorded.upstream_connections(false) == 1 && server.connections() == ["web"]
    });
    let reply = server.connect().request(ask);
    assert_eq!((reply.status, reply.text()), (200, "conn #2".to_owned()));
    let heads = heads.lock().unwrap();
    assert_eq!(heads.len(), 2, "{heads:?}");
    let (first, again) = (heads[0].to_ascii_lowercase(), heads[1].to_ascii_lowercase());
    for field in [
        "host: t\r\n",
        "x-asked: again\r\n",
        "x-forwarded-for: 127.0.0.1\r\n",
    ] {
        assert!(first.contains(field), "{field:?} in the first: {first}");
        assert!(again.contains(field), "{field:?} sent again: {again}");
    }
    // Every field, in the same order, a repeated one's lines too.
    assert!(first.contains("x-two: 1\r\nx-two: 2\r\n"), "{first}");
    assert_eq!(again, first);
}

/// RFC 9112 §6.3: a response whose `Content-Length` is not a length has no framing a
/// proxy can trust, even one to HEAD (where hyper reads no body, so looks no further):
/// the proxy MUST close its connection to the server, discard the response and answer
/// 502, as nginx does.
#[test]
fn an_answer_to_head_whose_content_length_is_not_a_length_is_a_502_and_ends_its_connection() {
    for length in ["abc", "5, 6", "-1"] {
        let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {length}\r\n\r\n");
        let (addr, how) = upstream_that_answers_once_and_tells_how_it_ended(head.into_bytes());
        let server = proxy_to(&[("/", addr)], Limits::default());
        let reply = server
            .connect()
            .request("HEAD /x HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_eq!(reply.status, 502, "{length}");
        let end = how.recv_timeout(Duration::from_secs(10)).unwrap();
        assert!(
            ["end of stream", "ConnectionReset"].contains(&end.as_str()),
            "{length}: {end}"
        );
    }
}

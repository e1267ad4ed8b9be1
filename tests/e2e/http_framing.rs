//! Message framing across the proxy, as RFC 9110, 9112 and 9113 require of an
//! intermediary: transfer codings it cannot undo are refused, cookies an HTTP/2 client
//! split are joined, the client hears this service's HTTP version, an HTTP/2 field value
//! with whitespace at an edge is malformed, `Expect` stays on its hop, `Via` names this
//! gateway, and a response that ends with trailers is logged as whole.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};

use crate::assert_eventually;
use crate::http_peers::{RawClient, Upstream, exchange};
use crate::support::{App, free_port, spawn_app_with};

/// An upstream that reads each request head and answers it with `answer`, then closes.
fn scripted(answer: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                line.clear();
            }
            let _ = stream.write_all(answer.as_bytes());
        }
    });
    addr
}

struct Site {
    app: App,
    web: SocketAddr,
    up: Upstream,
}

fn start() -> Site {
    let up = Upstream::start();
    let http10 = scripted("HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nold");
    let gzip = scripted("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nnot really gzip");
    let trailers = scripted(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: x-sum\r\n\r\n\
         5\r\nhello\r\n0\r\nx-sum: 42\r\n\r\n",
    );
    // Trailers with fields that have no place in trailers (hop-by-hop ones, framing,
    // routing), and a 204 with a `Content-Length`.
    let bad_trailers = scripted(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
         5\r\nhello\r\n0\r\nx-sum: 42\r\nconnection: x-hop\r\nx-hop: 1\r\n\
         keep-alive: timeout=5\r\nte: trailers\r\nupgrade: h2c\r\n\
         proxy-connection: close\r\ncontent-length: 99\r\nhost: elsewhere\r\n\
         set-cookie: a=b\r\nauthorization: Basic eDp5\r\nlocation: /x\r\n\r\n",
    );
    let no_content = scripted("HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n");
    let port = free_port();
    let app = spawn_app_with(|dir| {
        format!(
            r#"
[[service]]
name = "web"
kind = "http"
listen = "tcp:{port}:interface=127.0.0.1"
access_log = "{log}"
[[service.route]]
prefix = "/api/"
upstream = "http://{up}"
[[service.route]]
prefix = "/old/"
upstream = "http://{http10}"
[[service.route]]
prefix = "/gzip/"
upstream = "http://{gzip}"
[[service.route]]
prefix = "/trailers/"
upstream = "http://{trailers}"
[[service.route]]
prefix = "/bad-trailers/"
upstream = "http://{bad_trailers}"
[[service.route]]
prefix = "/no-content/"
upstream = "http://{no_content}"
"#,
            up = up.addr,
            log = dir.join("access.log").display(),
        )
    });
    Site {
        app,
        web: ([127, 0, 0, 1], port).into(),
        up,
    }
}

/// Whether `via` is one member naming a weft gateway (`weft-` and eight hex digits) that
/// received the request over `protocol`.
fn is_this_gateway(via: &str, protocol: &str) -> bool {
    via.strip_prefix(protocol)
        .and_then(|rest| rest.strip_prefix(" weft-"))
        .is_some_and(|hex| hex.len() == 8 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// A TCP relay on a port of its own to `to`, both ways, for as long as the test runs: a
/// proxy that is not weft, between weft and itself.
fn relay(to: SocketAddr) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { return };
            let Ok(server) = TcpStream::connect(to) else {
                continue;
            };
            for (mut from, mut into) in [
                (client.try_clone().unwrap(), server.try_clone().unwrap()),
                (server, client),
            ] {
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut from, &mut into);
                    let _ = into.shutdown(std::net::Shutdown::Write);
                });
            }
        }
    });
    addr
}

/// Runs `exchange` with a client on one HTTP/2 connection (prior knowledge) to `web`.
pub(crate) fn over_h2c<T>(
    web: SocketAddr,
    exchange: impl AsyncFnOnce(&mut hyper::client::conn::http2::SendRequest<Empty<Bytes>>) -> T,
) -> T {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let stream = tokio::net::TcpStream::connect(web).await.unwrap();
        let (mut sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .unwrap();
        tokio::spawn(conn);
        exchange(&mut sender).await
    })
}

fn refused(app: &App, reason: &str) -> Option<f64> {
    app.metric(&format!(
        r#"weft_http_requests_refused_total{{reason="{reason}",service="web"}}"#
    ))
}

#[test]
fn a_request_in_a_transfer_coding_other_than_chunked_is_501_and_never_forwarded() {
    let site = start();
    let mut client = RawClient::connect(site.web);
    client.send(
        b"POST /api/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n\
          3\r\nabc\r\n0\r\n\r\n",
    );
    let reply = client.read_reply();
    assert_eq!(reply.status, 501, "{}", reply.text());
    assert_eq!(site.up.received(), 0, "nothing went upstream");
    // Chunked twice, in one line or two, is no coding to refuse but a malformed body
    // (RFC 9112 §6.1: a sender MUST NOT), 400.
    for coding in ["chunked, chunked", "chunked\r\nTransfer-Encoding: chunked"] {
        let mut client = RawClient::connect(site.web);
        client.send(
            format!(
                "POST /api/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: {coding}\r\n\r\n\
                 3\r\nabc\r\n0\r\n\r\n0\r\n\r\n"
            )
            .as_bytes(),
        );
        let reply = client.read_reply();
        assert_eq!(reply.status, 400, "{coding}: {}", reply.text());
    }
    assert_eq!(site.up.received(), 0, "nothing went upstream");
    assert_eventually!(
        refused(&site.app, "transfer_coding") == Some(1.0),
        "{}",
        site.app.curl("/metrics").unwrap_or_default()
    );
    // Chunked alone goes through, and the upstream is not asked to send 100 Continue
    // itself: hyper told the client to go on.
    let mut client = RawClient::connect(site.web);
    client.send(
        b"POST /api/y HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\
          Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    );
    assert_eq!(client.read_head().status, 100);
    let reply = client.read_reply();
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(reply.text().ends_with("body=abc"), "{}", reply.text());
    assert_eq!(site.up.header(0, "expect"), Vec::<String>::new());
    // RFC 9110 §7.6.3: a gateway says so in each request it forwards.
    let via = site.up.header(0, "via");
    assert!(via.len() == 1 && is_this_gateway(&via[0], "1.1"), "{via:?}");
}

/// The asterisk form names no resource but for a server-wide OPTIONS (RFC 9112 §3.2.4):
/// with any other method it is 400, counted `malformed`, and never forwarded.
#[test]
fn the_asterisk_target_with_another_method_than_options_is_400() {
    let site = start();
    for method in ["GET", "POST", "DELETE"] {
        let reply = exchange(site.web, &format!("{method} * HTTP/1.1\r\nHost: a\r\n\r\n"));
        assert_eq!(reply.status, 400, "{method}: {}", reply.text());
    }
    let options = exchange(site.web, "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_ne!(options.status, 400, "{}", options.text());
    assert_eq!(site.up.received(), 0);
    assert_eventually!(
        refused(&site.app, "malformed") == Some(3.0),
        "{}",
        site.app.curl("/metrics").unwrap_or_default()
    );
}

/// An answer given without reading the request's body leaves the rest of that body on
/// the connection, which then closes: the answer says so (RFC 9112 §9.6), so a client
/// with requests pipelined behind it knows they go unanswered. A body read whole keeps
/// the connection open.
#[test]
fn an_answer_that_leaves_the_request_body_unread_says_the_connection_closes() {
    let site = start();
    // `raw` answered `status`, saying the connection closes.
    let closing = |raw: &[u8], status: u16| {
        let mut client = RawClient::connect(site.web);
        client.send(raw);
        let reply = client.read_reply();
        assert_eq!(reply.status, status, "{}", reply.text());
        assert_eq!(reply.header("connection"), Some("close"), "{reply:?}");
        client
    };
    // No route and no files: answered 404 without reading the body.
    closing(
        b"POST /nowhere HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\nabc",
        404,
    );
    // Refused as too large before the upstream hears of it.
    let mut client = closing(
        b"POST /api/x HTTP/1.1\r\nHost: a\r\nContent-Length: 10000000000\r\n\r\nabc",
        413,
    );
    assert_eq!(client.read_head().status, 0, "the connection closes");
    // An OPTIONS that may go no further, answered by the proxy itself.
    closing(
        b"OPTIONS /api/x HTTP/1.1\r\nHost: a\r\nMax-Forwards: 0\r\nContent-Length: 100000\r\n\r\nabc",
        200,
    );
    // An HTTP/1.0 client that asked to keep the connection is told plainly it closes.
    closing(
        b"POST /nowhere HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\nContent-Length: 100000\r\n\r\nabc",
        404,
    );
    // A body the upstream read whole: the connection lives on.
    let mut client = RawClient::connect(site.web);
    client.send(b"POST /api/x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc");
    let reply = client.read_reply();
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("connection"), None, "{reply:?}");
    client.send(b"GET /api/y HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(client.read_reply().status, 200);
}

/// A route whose upstream leads back to the same service (here through a relay that is not
/// weft) would send each request round until a limit broke it: the request is known by
/// the service's name in its `Via` when it comes back, and answered 508 there, once. A
/// route to another service of the same gateway is no loop.
#[test]
fn a_request_that_comes_back_through_the_same_service_is_508_not_sent_round_again() {
    let (port, inner) = (free_port(), free_port());
    let back = relay(([127, 0, 0, 1], port).into());
    let up = Upstream::start();
    let app = spawn_app_with(|_| {
        format!(
            r#"
[[service]]
name = "web"
kind = "http"
listen = "tcp:{port}:interface=127.0.0.1"
[[service.route]]
prefix = "/round/"
upstream = "http://{back}"
[[service.route]]
prefix = "/inner/"
upstream = "http://127.0.0.1:{inner}"
[[service.route]]
prefix = "/api/"
upstream = "http://{up}"
[[service]]
name = "inner"
kind = "http"
listen = "tcp:{inner}:interface=127.0.0.1"
[[service.route]]
prefix = "/"
upstream = "http://{up}"
"#,
            up = up.addr
        )
    });
    let web: SocketAddr = ([127, 0, 0, 1], port).into();
    let reply = exchange(
        web,
        "GET /round/x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(reply.status, 508, "{}", reply.text());
    assert!(reply.text().contains("forwarding loop"), "{}", reply.text());
    assert_eventually!(
        refused(&app, "loop") == Some(1.0),
        "one hop refused, once: {:?}\n{}",
        refused(&app, "loop"),
        app.log()
    );
    assert_eventually!(
        app.metric(r#"weft_http_requests_total{code="5xx",method="GET",service="web"}"#)
            == Some(2.0),
        "two requests in all: the client's and the one that came back\n{}",
        app.curl("/metrics").unwrap_or_default()
    );
    assert!(
        app.log().contains("a route's upstream leads back here"),
        "{}",
        app.log()
    );
    // Another proxy's Via, or another weft's, is no loop.
    let reply = exchange(
        web,
        "GET /api/x HTTP/1.1\r\nHost: a\r\nVia: 1.1 weft-00000000, 1.1 cdn\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
    let via = up.header(0, "via");
    assert!(
        via.len() == 1 && via[0].starts_with("1.1 weft-00000000, 1.1 cdn, 1.1 weft-"),
        "{via:?}"
    );
    // Nor is one service's route to another's listener: each has a name of its own.
    let reply = exchange(
        web,
        "GET /inner/y HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
    let via = up.header(1, "via");
    let names: Vec<&str> = via[0].split(", ").collect();
    assert!(
        names.len() == 2 && names.iter().all(|n| is_this_gateway(n, "1.1")) && names[0] != names[1],
        "two services, two names: {via:?}"
    );
}

#[test]
fn upstream_framing_the_client_cannot_get_as_it_is_is_502_and_its_version_is_not_passed_on() {
    let site = start();
    // RFC 9110 §6.2: the response goes out in this service's version.
    let mut raw = TcpStream::connect(site.web).unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    raw.write_all(b"GET /old/x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut seen = String::new();
    raw.read_to_string(&mut seen).unwrap();
    assert!(seen.starts_with("HTTP/1.1 200 OK\r\n"), "{seen}");
    assert!(seen.ends_with("\r\n\r\nold"), "{seen}");

    // A body in a coding hyper does not undo would reach the client undone.
    let reply = exchange(site.web, "GET /gzip/x HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(reply.status, 502, "{}", reply.text());
    assert!(!reply.text().contains("gzip"), "{}", reply.text());
    assert!(
        site.app
            .log()
            .contains("answered in a transfer coding other than chunked (gzip)"),
        "{}",
        site.app.log()
    );

    // A response to HEAD has no body to undo, whatever its head says.
    let mut client = RawClient::connect(site.web);
    client.send(b"HEAD /gzip/x HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(client.read_head().status, 200);

    // Trailers end a response whole.
    let reply = exchange(site.web, "GET /trailers/x HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!((reply.status, reply.text().as_str()), (200, "hello"));
    let access_log = site.app.dir.path().join("access.log");
    assert_eventually!(
        std::fs::read_to_string(&access_log)
            .unwrap_or_default()
            .contains("GET /trailers/x HTTP/1.1\" 200 5"),
        "{}",
        std::fs::read_to_string(&access_log).unwrap_or_default()
    );
    let log = std::fs::read_to_string(&access_log).unwrap();
    assert!(!log.contains("cut short"), "{log}");
}

#[test]
fn an_http2_client_gets_an_upstream_s_trailers_without_the_fields_trailers_cannot_carry() {
    // RFC 9113 §8.2.2: connection-specific fields make an HTTP/2 message malformed, in
    // trailers too (the h2 crate resets such a stream after its whole body); RFC 9110
    // §6.5.1: framing and routing fields do not belong in trailers; §8.6: no
    // `Content-Length` in a 204.
    let site = start();
    let authority = site.web.to_string();
    let (trailers, body, no_content) = over_h2c(site.web, async |sender| {
        let get = |path: &str| {
            http::Request::get(format!("http://{authority}{path}"))
                .header("te", "trailers")
                .body(Empty::<Bytes>::new())
                .unwrap()
        };
        let response = sender.send_request(get("/bad-trailers/x")).await.unwrap();
        assert_eq!(response.status(), 200);
        let whole = response
            .into_body()
            .collect()
            .await
            .expect("the stream ends whole, not reset");
        let trailers = whole.trailers().cloned().expect("trailers");
        let body = String::from_utf8_lossy(&whole.to_bytes()).into_owned();
        let response = sender.send_request(get("/no-content/x")).await.unwrap();
        (trailers, body, response)
    });
    assert_eq!(body, "hello");
    let names: Vec<&str> = trailers.keys().map(http::HeaderName::as_str).collect();
    assert_eq!(names, ["x-sum"], "{trailers:?}");
    assert_eq!(no_content.status(), 204);
    assert_eq!(
        no_content.headers().get("content-length"),
        None,
        "{:?}",
        no_content.headers()
    );
    let access_log = site.app.dir.path().join("access.log");
    assert_eventually!(
        std::fs::read_to_string(&access_log)
            .unwrap_or_default()
            .contains("GET /bad-trailers/x HTTP/2.0\" 200 5"),
        "{}",
        std::fs::read_to_string(&access_log).unwrap_or_default()
    );
}

#[test]
fn an_http1_client_that_takes_trailers_gets_those_the_upstream_announced() {
    // `Trailer` is end-to-end (RFC 9110 §6.6.2); hyper sends an HTTP/1.1 client only the
    // trailer fields it names.
    let site = start();
    let mut client = RawClient::connect(site.web);
    client
        .send(b"GET /trailers/x HTTP/1.1\r\nHost: a\r\nTE: trailers\r\nConnection: close\r\n\r\n");
    let mut out = Vec::new();
    let _ = client.read_to_end(&mut out);
    let out = String::from_utf8_lossy(&out).to_lowercase();
    assert!(out.contains("\r\ntrailer: x-sum\r\n"), "{out}");
    assert!(out.ends_with("0\r\nx-sum: 42\r\n\r\n"), "{out}");
}

#[test]
fn a_length_an_http2_client_repeated_reaches_the_upstream_once() {
    let site = start();
    let authority = site.web.to_string();
    let status = over_h2c(site.web, async |sender| {
        let mut request = http::Request::get(format!("http://{authority}/api/twice"))
            .body(Empty::<Bytes>::new())
            .unwrap();
        for _ in 0..2 {
            request
                .headers_mut()
                .append("content-length", "0".parse().unwrap());
        }
        sender.send_request(request).await.unwrap().status()
    });
    assert_eq!(status, 200);
    assert_eq!(site.up.header(0, "content-length"), ["0"]);
}

#[test]
fn cookies_an_http2_client_split_reach_the_upstream_joined_and_edge_whitespace_is_refused() {
    let site = start();
    let authority = site.web.to_string();
    let (statuses, bodies) = over_h2c(site.web, async |sender| {
        let mut statuses = Vec::new();
        let mut bodies = Vec::new();
        for (name, values) in [
            ("cookie", ["a=1", "b=2"]),
            ("x-padded", [" leading", "fine"]),
        ] {
            let mut request = http::Request::get(format!("http://{authority}/api/c"))
                .body(Empty::<Bytes>::new())
                .unwrap();
            for value in values {
                request.headers_mut().append(name, value.parse().unwrap());
            }
            let response = sender.send_request(request).await.unwrap();
            statuses.push(response.status().as_u16());
            let body = response.into_body().collect().await.unwrap().to_bytes();
            bodies.push(String::from_utf8_lossy(&body).into_owned());
        }
        (statuses, bodies)
    });
    assert_eq!(statuses, [200, 400], "{bodies:?}");
    assert_eq!(
        site.up.received(),
        1,
        "the malformed request was not forwarded"
    );
    assert_eq!(site.up.header(0, "cookie"), ["a=1; b=2"]);
    let via = site.up.header(0, "via");
    assert!(via.len() == 1 && is_this_gateway(&via[0], "2"), "{via:?}");
    assert_eventually!(
        refused(&site.app, "malformed") == Some(1.0),
        "{}",
        site.app.curl("/metrics").unwrap_or_default()
    );
}

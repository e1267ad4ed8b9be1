//! The `http` kind against a careless or hostile client, on the real binary: request
//! paths never lead a proxied request out of its route, and the HTTP/1.1 message rules
//! (RFC 9112, RFC 9110) hold, each refusal counted with its reason.

use std::net::SocketAddr;

use crate::assert_eventually;
use crate::http::curl;
use crate::http_peers::{RawClient, Upstream, exchange};
use crate::support::{App, free_port, spawn_app_with};

/// `/api/` forwards to `api` unchanged, `/v1/` to `v1` under `/base`, `/framed/` to an
/// upstream framing its answers both by length and by chunks, `/app/` to one under
/// `/base` that redirects to its own address, `/short/` to one whose bodies break off;
/// other paths are files from `public/`, beside a `secret.txt` that must never be
/// served.
fn start() -> (App, SocketAddr, Upstream, Upstream) {
    let (api, v1) = (Upstream::start(), Upstream::start());
    let framed = canned_upstream(|_| {
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n\
          1a\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\n\r\n"
            .to_vec()
    });
    let short = canned_upstream(|_| {
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this much".to_vec()
    });
    let moved = canned_upstream(|at| {
        format!("HTTP/1.1 302 Found\r\nLocation: http://{at}/base/login?next=1\r\nContent-Length: 0\r\n\r\n")
            .into_bytes()
    });
    let web: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let app = spawn_app_with(|dir| {
        let root = dir.join("public");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("sub/index.html"), "sub\n").unwrap();
        std::fs::write(dir.join("secret.txt"), "do not serve\n").unwrap();
        format!(
            r#"
[[service]]
name = "web"
kind = "http"
listen = "tcp:{port}:interface=127.0.0.1"
root = "{root}"
[[service.route]]
prefix = "/api/"
upstream = "http://{api}"
[[service.route]]
prefix = "/v1/"
upstream = "http://{v1}/base"
[[service.route]]
prefix = "/framed/"
upstream = "http://{framed}"
[[service.route]]
prefix = "/app/"
upstream = "http://{moved}/base"
[[service.route]]
prefix = "/short/"
upstream = "http://{short}"
"#,
            port = web.port(),
            root = root.display(),
            api = api.addr,
            v1 = v1.addr,
        )
    });
    (app, web, api, v1)
}

fn refused(app: &App, reason: &str) -> Option<f64> {
    app.metric(&format!(
        r#"weft_http_requests_refused_total{{reason="{reason}",service="web"}}"#
    ))
}

#[test]
fn proxy_routes_never_lead_out_of_their_prefix() {
    let (app, web, api, v1) = start();
    for (path, status) in [
        ("/api/../secret.txt", 404),
        ("/api/%2e%2e/secret.txt", 400),
        ("/api/..%2fsecret.txt", 400),
        ("/v1/../../secret.txt", 400),
        ("/v1/%2e%2e/%2e%2e/secret.txt", 400),
        ("/api/..%5csecret.txt", 400),
        // `/api//../secret.txt` to an upstream that decodes and merges slashes.
        ("/api/%2F../secret.txt", 400),
        ("/api//..%2Fsecret.txt", 400),
        // A route's files past it, to a reader that keeps the empty segment (the files
        // drop it): `/api/` to one that merges slashes, as nginx does.
        ("//api/x", 400),
        ("///v1/y", 400),
    ] {
        let reply = exchange(web, &format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n"));
        assert_eq!(reply.status, status, "{path}: {}", reply.text());
        assert!(!reply.text().contains("do not serve"), "{path}");
    }
    assert!(api.targets().is_empty(), "{:?}", api.targets());
    assert!(v1.targets().is_empty(), "{:?}", v1.targets());

    // Inside a route, the upstream gets the path in normal form.
    // Characters a path does not hold as they are (hyper lets `"`, `{`, `|` and `^`
    // through raw) are sent percent-encoded, one path with their encoded spelling.
    for path in [
        "/api/a/./b/../c",
        "/%61pi/%7Euser",
        "/v1/x/../y",
        "/api/q\"{|}^",
        "/api/q%22%7b%7C%7D%5e",
    ] {
        let reply = exchange(web, &format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n"));
        assert_eq!(reply.status, 200, "{path}");
    }
    assert_eq!(
        api.targets(),
        [
            "/api/a/c",
            "/api/~user",
            "/api/q%22%7B%7C%7D%5E",
            "/api/q%22%7B%7C%7D%5E"
        ]
    );
    assert_eq!(v1.targets(), ["/base/y"]);
    // A file path no file can have is refused, and counted, the same way.
    let reply = exchange(web, "GET /sub/a%00b HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(reply.status, 400, "{}", reply.text());
    assert_eventually!(
        refused(&app, "path") == Some(10.0),
        "path refusals counted\n{}",
        app.curl("/metrics").unwrap_or_default()
    );
}

#[test]
fn http_message_rules_hold() {
    let (app, web, api, _v1) = start();

    // RFC 9112 §3.2: no Host, or two, is a 400 that reaches no upstream.
    let none = exchange(web, "GET /api/x HTTP/1.1\r\n\r\n");
    assert_eq!(none.status, 400, "{}", none.text());
    let two = exchange(web, "GET /api/x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n");
    assert_eq!(two.status, 400, "{}", two.text());
    assert_eq!(api.received(), 0);

    // `Connection` cannot name Host away.
    let kept = exchange(
        web,
        "GET /api/kept HTTP/1.1\r\nHost: site.test\r\nConnection: host\r\n\r\n",
    );
    assert_eq!(kept.status, 200);
    assert_eq!(api.header(0, "host"), ["site.test"]);
    assert_eq!(api.header(0, "x-forwarded-host"), ["site.test"]);

    // A client's own `X-Forwarded-Host` never reaches the upstream as the gateway's
    // word: the field names the request's host, or is absent when the request names
    // none fit to forward.
    for (raw, forwarded) in [
        (
            "GET /api/h HTTP/1.1\r\nHost: app_1.internal\r\nX-Forwarded-Host: victim.example\r\n\r\n",
            vec!["app_1.internal"],
        ),
        (
            "GET /api/h HTTP/1.1\r\nHost: site.test;x\r\nX-Forwarded-Host: victim.example\r\n\r\n",
            vec![],
        ),
        (
            "GET /api/h HTTP/1.0\r\nX-Forwarded-Host: victim.example\r\n\r\n",
            vec![],
        ),
    ] {
        assert_eq!(exchange(web, raw).status, 200, "{raw:?}");
        let last = api.received() - 1;
        assert_eq!(api.header(last, "x-forwarded-host"), forwarded, "{raw:?}");
    }

    // A field named with underscores does not pass for the one named with dashes.
    let spoofed = exchange(
        web,
        "GET /api/u HTTP/1.1\r\nHost: t\r\nX_Forwarded_For: 6.6.6.6\r\n\r\n",
    );
    assert_eq!(spoofed.status, 200);
    let last = api.received() - 1;
    assert!(api.header(last, "x_forwarded_for").is_empty());
    assert_eq!(api.header(last, "x-forwarded-for"), ["127.0.0.1"]);

    // CONNECT and TRACE are not served, and never forwarded.
    let before = api.received();
    for raw in [
        "CONNECT /api/x HTTP/1.1\r\nHost: t\r\n\r\n",
        "CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: 127.0.0.1:22\r\n\r\n",
        "TRACE /api/x HTTP/1.1\r\nHost: t\r\nCookie: secret=1\r\n\r\n",
    ] {
        let connect = exchange(web, raw);
        assert_eq!(connect.status, 501, "{raw:?}: {}", connect.text());
    }
    assert_eq!(api.received(), before);

    // RFC 9110 §7.6.2: an OPTIONS that may go no further is answered here; one that
    // may goes on with one hop less.
    let here = exchange(
        web,
        "OPTIONS /api/o HTTP/1.1\r\nHost: t\r\nMax-Forwards: 0\r\n\r\n",
    );
    assert_eq!(
        (here.status, here.header("content-length")),
        (200, Some("0"))
    );
    assert_eq!(api.received(), before, "not forwarded");
    let on = exchange(
        web,
        "OPTIONS /api/o HTTP/1.1\r\nHost: t\r\nMax-Forwards: 3\r\n\r\n",
    );
    assert_eq!(on.status, 200);
    assert_eq!(api.header(api.received() - 1, "max-forwards"), ["2"]);

    // A malformed chunked body is the client's fault (its head may still reach the
    // upstream, which is why this comes after the count above).
    let mut client = RawClient::connect(web);
    client.send(
        b"POST /api/x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n\r\n",
    );
    let bad = client.read_reply();
    assert_eq!(bad.status, 400, "{}", bad.text());

    // A directory redirect is never protocol-relative.
    let redirect = exchange(web, "GET //sub HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(redirect.status, 301);
    assert_eq!(redirect.header("location"), Some("/sub/"));

    // More header lines than the count limit (100) get 431, like too many bytes.
    let many: Vec<String> = (0..101).map(|i| format!("X-H{i}: {i}")).collect();
    let args: Vec<&str> = many.iter().flat_map(|h| ["-H", h.as_str()]).collect();
    assert_eq!(curl(web, &args, "/sub/").0, 431);
    let big = format!("X-Big: {}", "x".repeat(20_000));
    assert_eq!(curl(web, &["-H", &big], "/sub/").0, 431);
    // Over HTTP/2 too, counted and logged as over HTTP/1.1 (the h2 crate answered it
    // unseen): 20 KB here, over the 16 KiB of `max_header_bytes`.
    assert_eq!(
        curl(web, &["--http2-prior-knowledge", "-H", &big], "/sub/").0,
        431
    );

    assert_eventually!(
        refused(&app, "head_too_large") == Some(3.0),
        "refusals counted\n{}",
        app.curl("/metrics").unwrap_or_default()
    );
    assert_eq!(refused(&app, "host"), Some(2.0));
    assert_eq!(refused(&app, "body"), Some(1.0));
    assert_eq!(refused(&app, "method"), Some(3.0));
    let requests = |method: &str, code: &str| {
        app.metric(&format!(
            r#"weft_http_requests_total{{code="{code}",method="{method}",service="web"}}"#
        ))
    };
    assert_eq!(requests("POST", "4xx"), Some(1.0));
    assert_eq!(requests("POST", "5xx"), Some(0.0));
    assert_eq!(
        app.metric(r#"weft_http_upstream_errors_total{service="web"}"#),
        Some(0.0)
    );
    assert!(!app.log().contains("proxying failed"), "{}", app.log());
}

/// An upstream that answers each connection's first request with what `response` makes
/// of its address, then closes.
fn canned_upstream(response: impl FnOnce(SocketAddr) -> Vec<u8>) -> SocketAddr {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let response = response(addr);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut head = [0; 4096];
            let _ = stream.read(&mut head);
            let _ = stream.write_all(&response);
        }
    });
    addr
}

#[test]
fn an_upstream_response_framed_both_ways_reaches_the_client_by_its_chunks() {
    // RFC 9112 §6.3: `Transfer-Encoding` frames the message, and a proxy MUST remove
    // the `Content-Length` beside it; kept, it would cut the body short.
    let (_app, web, _api, _v1) = start();
    let mut client = RawClient::connect(web);
    for _ in 0..2 {
        client.send(b"GET /framed/twice HTTP/1.1\r\nHost: t\r\n\r\n");
        let reply = client.read_reply();
        assert_eq!(reply.status, 200, "{reply:?}");
        assert_eq!(reply.text(), "abcdefghijklmnopqrstuvwxyz");
        assert_ne!(reply.header("content-length"), Some("5"), "{reply:?}");
    }
}

#[test]
fn a_target_too_long_is_414_and_counted_as_such_not_as_a_head_too_large() {
    let web: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let app = spawn_app_with(|dir| {
        std::fs::create_dir_all(dir.join("public")).unwrap();
        format!(
            "[[service]]\nname = \"web\"\nkind = \"http\"\n\
             listen = \"tcp:{port}:interface=127.0.0.1\"\nroot = \"{root}\"\n\
             limits = {{ max_header_bytes = 131072 }}\n",
            port = web.port(),
            root = dir.join("public").display(),
        )
    });
    let long = format!("/{}", "a".repeat(70_000));
    let reply = exchange(web, &format!("GET {long} HTTP/1.1\r\nHost: t\r\n\r\n"));
    assert_eq!(reply.status, 414);
    assert_eventually!(
        refused(&app, "uri_too_long") == Some(1.0),
        "counted as a target too long\n{}",
        app.curl("/metrics").unwrap_or_default()
    );
    assert_eq!(refused(&app, "head_too_large"), Some(0.0));
    assert!(app.log().contains("\" 414 "), "{}", app.log());
}

#[test]
fn a_redirect_to_the_upstream_s_own_address_leads_the_client_through_the_route() {
    let (_app, web, _api, _v1) = start();
    let reply = exchange(web, "GET /app/account HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(reply.status, 302);
    // As nginx's `proxy_redirect default`: the client never learns the upstream's
    // address, and lands on a path this gateway serves.
    assert_eq!(
        reply.header("location"),
        Some("/app/login?next=1"),
        "{reply:?}"
    );
}

#[test]
fn an_upstream_body_that_breaks_off_is_counted_against_the_upstream() {
    use std::io::{Read, Write};
    let (app, web, _api, _v1) = start();
    let mut client = std::net::TcpStream::connect(web).unwrap();
    client
        .write_all(b"GET /short/x HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let mut got = Vec::new();
    let _ = client.read_to_end(&mut got);
    let got = String::from_utf8_lossy(&got);
    assert!(
        got.starts_with("HTTP/1.1 200") && got.ends_with("only this much"),
        "{got}"
    );
    assert_eventually!(
        app.metric(r#"weft_http_upstream_errors_total{service="web"}"#) == Some(1.0),
        "the upstream error counted\n{}",
        app.curl("/metrics").unwrap_or_default()
    );
    let upstream = app
        .curl("/metrics")
        .unwrap_or_default()
        .lines()
        .find(|l| {
            l.starts_with("weft_http_upstream_failures_total") && l.contains("reason=\"exchange\"")
        })
        .map(str::to_owned);
    assert!(
        upstream.as_deref().is_some_and(|l| l.ends_with(" 1")),
        "{upstream:?}"
    );
    // The route's own series counts it too.
    assert_eq!(
        app.metric(r#"weft_http_route_upstream_errors_total{route="/short/",service="web"}"#),
        Some(1.0),
        "{}",
        app.curl("/metrics").unwrap_or_default()
    );
    assert!(
        app.log().contains("response body broke off"),
        "{}",
        app.log()
    );
}

#[test]
fn a_client_s_forwarded_that_does_not_parse_never_hides_the_gateway_s_element() {
    // With `for="evil` kept, the element appended after it would sit inside the client's
    // quoted string, and the upstream would read the client's word for who it is.
    let (_app, web, api, _v1) = start();
    for (sent, forwarded) in [
        ("for=\"evil", "for=127.0.0.1;host=\"t\";proto=http"),
        (
            "for=192.0.2.1",
            "for=192.0.2.1, for=127.0.0.1;host=\"t\";proto=http",
        ),
    ] {
        let reply = exchange(
            web,
            &format!("GET /api/f HTTP/1.1\r\nHost: t\r\nForwarded: {sent}\r\n\r\n"),
        );
        assert_eq!(reply.status, 200, "{reply:?}");
        let last = api.received() - 1;
        assert_eq!(api.header(last, "forwarded"), [forwarded], "{sent}");
    }
}

#[test]
fn a_request_pipelined_behind_others_and_given_up_at_a_half_close_is_counted_and_logged() {
    // hyper reads the client's end-of-stream while the last request is being taken up
    // and ends the connection: that request gets no answer (as nginx gives up a proxied
    // request whose client's side ended), but it is counted and logged as 499, never
    // dropped without a trace.
    let (app, web, _api, _v1) = start();
    let mut client = RawClient::connect(web);
    client.send(
        b"GET /api/a HTTP/1.1\r\nHost: t\r\n\r\n\
          GET /sub/index.html HTTP/1.1\r\nHost: t\r\n\r\n\
          GET /api/b HTTP/1.1\r\nHost: t\r\nUser-Agent: behind/1\r\n\r\n",
    );
    client.shut_write();
    let mut out = Vec::new();
    let _ = client.read_to_end(&mut out);
    let out = String::from_utf8_lossy(&out);
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(
        out.contains("sub\n"),
        "the static request behind it is answered: {out}"
    );
    let count = |code: &str| {
        app.metric(&format!(
            r#"weft_http_requests_total{{code="{code}",method="GET",service="web"}}"#
        ))
    };
    let answered = out.matches("HTTP/1.1 200").count();
    assert_eventually!(
        count("2xx") == Some(answered as f64) && count("4xx") == Some(3.0 - answered as f64),
        "every request counted, answered or not:\n{out}\n{}",
        app.curl("/metrics").unwrap_or_default()
    );
    if answered < 3 {
        assert!(
            app.log().contains(
                "\"GET /api/b HTTP/1.1\" 499 - \"-\" \"behind/1\" (cut short: the connection closed)"
            ),
            "{}",
            app.log()
        );
        // Counted under its route, not as a request refused before routing.
        let by_route = |route: &str| {
            app.metric(&format!(
                r#"weft_http_route_requests_total{{code="4xx",route="{route}",service="web"}}"#
            ))
        };
        assert_eq!(by_route("/api/"), Some(1.0));
        assert_eq!(by_route("unrouted"), Some(0.0));
    }
}

/// A client that asks for files and then half-closes gets every answer whole: the end of
/// its side is read after the last answer, not taken for the client gone while that
/// answer is made or sent (hyper would drop it, as timing had it: a large file was cut
/// once the socket's buffers filled).
#[test]
fn a_client_that_half_closes_after_asking_for_files_gets_every_answer_whole() {
    const BIG: usize = 8 << 20;
    let web: std::net::SocketAddr = ([127, 0, 0, 1], crate::support::free_port()).into();
    let app = crate::support::spawn_app_with(|dir| {
        let root = dir.join("public");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(root.join("f.txt"), "a file\n").unwrap();
        std::fs::write(root.join("big.bin"), vec![b'x'; BIG]).unwrap();
        format!(
            "[[service]]\nname = \"web\"\nkind = \"http\"\n\
             listen = \"tcp:{port}:interface=127.0.0.1\"\nroot = \"{root}\"\n",
            port = web.port(),
            root = root.display(),
        )
    });
    let mut client = RawClient::connect(web);
    client.send(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n");
    client.shut_write();
    let mut out = Vec::new();
    let _ = client.read_to_end(&mut out);
    let body = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|at| out.len() - at - 4);
    assert_eq!(body, Some(BIG), "the whole file\n{}", app.log());

    let requests: Vec<u8> = (0..10)
        .flat_map(|i| format!("GET /f.txt?n={i} HTTP/1.1\r\nHost: t\r\n\r\n").into_bytes())
        .collect();
    for trial in 0..300 {
        let mut client = RawClient::connect(web);
        client.send(&requests);
        client.shut_write();
        let mut out = Vec::new();
        let _ = client.read_to_end(&mut out);
        let answers = String::from_utf8_lossy(&out)
            .matches("HTTP/1.1 200")
            .count();
        assert_eq!(answers, 10, "trial {trial}\n{}", app.log());
    }
}

/// An upstream that answers each request with `head_and_some`, then holds the
/// connection without a word for a minute.
fn stalling_upstream(head_and_some: &'static str) -> SocketAddr {
    pausing_upstream(head_and_some, std::time::Duration::from_secs(60), "")
}

/// An upstream that answers each request with `first`, waits `pause`, then sends `rest`.
fn pausing_upstream(
    first: &'static str,
    pause: std::time::Duration,
    rest: &'static str,
) -> SocketAddr {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            std::thread::spawn(move || {
                let mut head = [0; 4096];
                let _ = stream.read(&mut head);
                let _ = stream.write_all(first.as_bytes());
                std::thread::sleep(pause);
                let _ = stream.write_all(rest.as_bytes());
                std::thread::sleep(std::time::Duration::from_secs(60));
            });
        }
    });
    addr
}

#[test]
fn an_upstream_body_that_stops_coming_is_cut_at_the_upstream_timeout_and_a_bad_status_is_502() {
    let stalls = stalling_upstream("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789");
    let bad_status = canned_upstream(|_| b"HTTP/1.1 999 Odd\r\nContent-Length: 0\r\n\r\n".to_vec());
    let web: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let app = spawn_app_with(|_| {
        format!(
            "[[service]]\nname = \"web\"\nkind = \"http\"\n\
             listen = \"tcp:{port}:interface=127.0.0.1\"\n\
             limits = {{ upstream_timeout = \"1s\" }}\n\
             [[service.route]]\nprefix = \"/stall/\"\nupstream = \"http://{stalls}\"\n\
             [[service.route]]\nprefix = \"/odd/\"\nupstream = \"http://{bad_status}\"\n",
            port = web.port(),
        )
    });
    let started = std::time::Instant::now();
    let mut client = RawClient::connect(web);
    client.send(b"GET /stall/x HTTP/1.1\r\nHost: t\r\n\r\n");
    let mut out = Vec::new();
    let _ = client.read_to_end(&mut out);
    let took = started.elapsed();
    let out = String::from_utf8_lossy(&out);
    assert!(
        out.starts_with("HTTP/1.1 200") && out.ends_with("0123456789"),
        "{out}"
    );
    assert!(
        took < std::time::Duration::from_secs(10),
        "cut at the upstream timeout, not held: {took:?}"
    );
    assert_eventually!(
        app.log().contains("\"GET /stall/x HTTP/1.1\" 200 10")
            && app.log().contains("(cut short: the body failed)"),
        "{}",
        app.log()
    );
    assert!(
        app.log().contains("no piece of it came for 1s"),
        "{}",
        app.log()
    );

    let reply = exchange(web, "GET /odd/x HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(reply.status, 502, "{reply:?}");
    assert!(app.log().contains("is not a status code"), "{}", app.log());
    // So is one answering a request to switch protocols.
    let reply = exchange(
        web,
        "GET /odd/ws HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    );
    assert_eq!(reply.status, 502, "{reply:?}");
}

#[test]
fn an_http2_stream_whose_upstream_pauses_past_the_idle_and_close_timeouts_is_waited_for() {
    // The connection goes idle (no frame moves for 1 s) and is told GOAWAY; its one
    // stream then waits on its upstream, not on the client, for longer than the close
    // timeout (10 s): it is left to finish within `upstream_timeout`, not dropped as a
    // stalled client.
    use http_body_util::BodyExt;
    let pause = std::time::Duration::from_secs(12);
    let slow = pausing_upstream(
        "HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\n0123456789",
        pause,
        "abcdefghij",
    );
    let web: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let app = spawn_app_with(|_| {
        format!(
            "[[service]]\nname = \"web\"\nkind = \"http\"\n\
             listen = \"tcp:{port}:interface=127.0.0.1\"\nidle_timeout = \"1s\"\n\
             limits = {{ upstream_timeout = \"30s\" }}\n\
             [[service.route]]\nprefix = \"/slow/\"\nupstream = \"http://{slow}\"\n",
            port = web.port(),
        )
    });
    let body = crate::http_framing::over_h2c(web, async |sender| {
        let request = hyper::Request::get(format!("http://{web}/slow/x"))
            .body(http_body_util::Empty::new())
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        assert_eq!(response.status(), 200);
        response.into_body().collect().await.map(|b| b.to_bytes())
    });
    let body = body.expect("the whole body, after the upstream's pause");
    assert_eq!(&body[..], b"0123456789abcdefghij");
    assert_eventually!(
        app.log().contains("\"GET /slow/x HTTP/2.0\" 200 20"),
        "{}",
        app.log()
    );
    assert!(!app.log().contains("cut short"), "{}", app.log());
    assert_eq!(
        app.metric(r#"weft_http_requests_refused_total{reason="send_timeout",service="web"}"#)
            .unwrap_or(0.0),
        0.0,
        "the client was not at fault"
    );
}

#[test]
fn an_upstream_that_drops_trailing_slashes_is_not_sent_round_a_redirect_loop() {
    // Behind `prefix = "/app/"` with base path `/base`, `/app/` goes upstream as `/base/`,
    // which this upstream redirects to `/base`: that must lead the client to a path that
    // goes upstream as `/base` (`/app`), not back to `/app/`.
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let up = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut head = Vec::new();
            let mut buf = [0; 4096];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let line = String::from_utf8_lossy(&head)
                .lines()
                .next()
                .unwrap_or("")
                .to_owned();
            let reply = if line.starts_with("GET /base/ ") {
                format!(
                    "HTTP/1.1 301 Moved Permanently\r\nLocation: http://{up}/base\r\n\
                     Content-Length: 0\r\nConnection: close\r\n\r\n"
                )
            } else {
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{line}",
                    line.len()
                )
            };
            let _ = stream.write_all(reply.as_bytes());
        }
    });
    let web: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let _app = spawn_app_with(|_| {
        format!(
            "[[service]]\nname = \"web\"\nkind = \"http\"\n\
             listen = \"tcp:{port}:interface=127.0.0.1\"\n\
             [[service.route]]\nprefix = \"/app/\"\nupstream = \"http://{up}/base\"\n",
            port = web.port(),
        )
    });
    let first = exchange(
        web,
        "GET /app/ HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(first.status, 301, "{first:?}");
    let location = first.header("location").expect("a Location").to_owned();
    assert_eq!(
        location, "/app",
        "the upstream's address is not leaked, and no loop"
    );
    let second = exchange(
        web,
        &format!("GET {location} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"),
    );
    assert_eq!(second.status, 200, "{second:?}");
    assert_eq!(second.text(), "GET /base HTTP/1.1", "{second:?}");
}

//! `cache_control` on a proxy route: sent with the route's responses that have no
//! `Cache-Control` of their own; the upstream's own wins, other routes are untouched.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};

use crate::http_peers::exchange;
use crate::support::{free_port, spawn_app_with};

/// An upstream that answers `/…/own` with `Cache-Control: no-store` and anything else
/// without one.
fn upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                loop {
                    let mut first = String::new();
                    if reader.read_line(&mut first).unwrap_or(0) == 0 {
                        return;
                    }
                    let mut line = String::new();
                    while reader.read_line(&mut line).is_ok() && line != "\r\n" {
                        line.clear();
                    }
                    let own = if first.contains("/own ") {
                        "Cache-Control: no-store\r\n"
                    } else {
                        ""
                    };
                    let answer = format!("HTTP/1.1 200 OK\r\n{own}Content-Length: 2\r\n\r\nok");
                    if stream.write_all(answer.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

#[test]
fn a_routes_cache_control_fills_in_for_upstreams_that_send_none() {
    let up = upstream();
    let port = free_port();
    let _app = spawn_app_with(|_| {
        format!(
            r#"
[[service]]
name = "web"
kind = "http"
listen = "tcp:{port}:interface=127.0.0.1"
[[service.route]]
prefix = "/assets/"
upstream = "http://{up}"
cache_control = "public, max-age=600"
[[service.route]]
prefix = "/api/"
upstream = "http://{up}"
"#
        )
    });
    let web: SocketAddr = ([127, 0, 0, 1], port).into();
    let get = |path: &str| {
        exchange(
            web,
            &format!("GET {path} HTTP/1.1\r\nHost: site.test\r\nConnection: close\r\n\r\n"),
        )
    };
    let reply = get("/assets/app.js");
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(
        reply.header("cache-control"),
        Some("public, max-age=600"),
        "{reply:?}"
    );
    let reply = get("/assets/own");
    assert_eq!(reply.header("cache-control"), Some("no-store"), "{reply:?}");
    let reply = get("/api/data");
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.header("cache-control"), None, "{reply:?}");
}

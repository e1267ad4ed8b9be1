//! Hostile peers of an http service, each bounded, counted, and leaving the other
//! connections served: malformed HTTP/2 frames and a rapid reset while an h2 connection
//! opened before goes on; a 10 GB `Content-Length` on a proxy route; an upstream that
//! sends without end to a client that stopped reading.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use weft_test_support::wait::{poll_until, wait_for};

use crate::assert_eventually;
use crate::http_peers::{RawClient, Upstream};
use crate::http2::{frame, goaway_for};
use crate::support::{App, free_port, spawn_app_with};

/// An upstream that answers every request with a body that never ends, as fast as the
/// connection takes it; counts what it sent, and notices when the gateway hangs up.
struct Endless {
    addr: SocketAddr,
    sent: Arc<AtomicU64>,
    hung_up: Arc<AtomicBool>,
}

impl Endless {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let sent = Arc::new(AtomicU64::new(0));
        let hung_up = Arc::new(AtomicBool::new(false));
        let (counter, flag) = (sent.clone(), hung_up.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let (sent, hung_up) = (counter.clone(), flag.clone());
                std::thread::spawn(move || {
                    let mut head = [0; 4096];
                    let _ = stream.read(&mut head);
                    let chunk = [b'x'; 64 * 1024];
                    let mut out =
                        b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\r\n"
                            .to_vec();
                    while stream.write_all(&out).is_ok() {
                        sent.fetch_add(out.len() as u64, Ordering::SeqCst);
                        out = chunk.to_vec();
                    }
                    hung_up.store(true, Ordering::SeqCst);
                });
            }
        });
        Self {
            addr,
            sent,
            hung_up,
        }
    }
}

struct Site {
    app: App,
    web: SocketAddr,
    up: Upstream,
    endless: Endless,
}

/// An http service with files, a recording upstream under `/api/`, an endless one under
/// `/endless/`, and a short idle timeout.
fn start() -> Site {
    let up = Upstream::start();
    let endless = Endless::start();
    let port = free_port();
    let app = spawn_app_with(|dir| {
        let root = dir.join("public");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(root.join("index.html"), "<h1>weft</h1>\n").unwrap();
        format!(
            r#"
[[service]]
name = "web"
kind = "http"
listen = "tcp:{port}:interface=127.0.0.1"
idle_timeout = "2s"
root = "{root}"
[[service.route]]
prefix = "/api/"
upstream = "http://{up}"
[[service.route]]
prefix = "/endless/"
upstream = "http://{endless}"
"#,
            root = root.display(),
            up = up.addr,
            endless = endless.addr,
        )
    });
    Site {
        app,
        web: ([127, 0, 0, 1], port).into(),
        up,
        endless,
    }
}

/// `GET /` on a fresh connection answers 200.
fn served(web: SocketAddr) -> bool {
    let mut c = RawClient::connect(web);
    c.send(b"GET / HTTP/1.1\r\nHost: site.test\r\nConnection: close\r\n\r\n");
    c.read_reply().status == 200
}

#[test]
fn a_10_gb_content_length_on_a_proxy_route_is_413_before_any_upstream_is_contacted() {
    let site = start();
    let mut bystander = RawClient::connect(site.web);
    let mut c = RawClient::connect(site.web);
    c.send(
        b"POST /api/upload HTTP/1.1\r\nHost: site.test\r\nContent-Length: 10737418240\r\n\r\n\
          the first bytes of ten gigabytes",
    );
    let reply = c.read_reply();
    assert_eq!(reply.status, 413, "{reply:?}");
    assert!(c.is_closed(), "the rest of the body is not read");
    assert_eq!(site.up.connections(), 0, "the upstream was never contacted");
    assert_eq!(
        site.app
            .metric(r#"weft_http_requests_refused_total{reason="body_too_large",service="web"}"#),
        Some(1.0)
    );
    // A connection opened before is served, through the same route.
    bystander.send(b"GET /api/after HTTP/1.1\r\nHost: site.test\r\n\r\n");
    let reply = bystander.read_reply();
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(site.up.targets(), ["/api/after"]);
}

#[test]
fn an_endless_upstream_body_to_a_client_that_stopped_reading_is_bounded_and_timed_out() {
    let site = start();
    let before = site.app.rss_kib();
    let mut client = TcpStream::connect(site.web).unwrap();
    client
        .write_all(b"GET /endless/stream HTTP/1.1\r\nHost: site.test\r\n\r\n")
        .unwrap();
    let mut first = [0; 4096];
    client.read_exact(&mut first).unwrap();
    assert!(first.starts_with(b"HTTP/1.1 200"), "{first:?}");
    // The client reads no more: the upstream is held back once the buffers on the way are
    // full, instead of the gateway taking all it sends.
    let mut last = (0, Instant::now());
    poll_until(
        Duration::from_secs(20),
        Duration::from_millis(100),
        || {
            let now = site.endless.sent.load(Ordering::SeqCst);
            if now != last.0 {
                last = (now, Instant::now());
            }
            last.1.elapsed() > Duration::from_secs(1)
        },
        || "the upstream was never held back".to_owned(),
    );
    let sent = site.endless.sent.load(Ordering::SeqCst);
    let grown = site.app.rss_kib().saturating_sub(before);
    assert!(
        grown < 16 * 1024,
        "the gateway grew by {grown} KiB with {sent} bytes sent by the upstream"
    );
    assert!(sent < 64 << 20, "the upstream got {sent} bytes out");
    // Others are served meanwhile.
    assert!(served(site.web));

    // Idle (2 s), then asked to close with output stuck: dropped after the close timeout.
    let stuck =
        r#"weft_connections_closed_total{reason="send_timeout",service="web",transport="tcp"}"#;
    wait_for(
        30,
        "the stuck client is closed and counted",
        || (site.app.metric(stuck) >= Some(1.0)).then_some(()),
        || site.app.log(),
    );
    assert_eventually!(
        site.endless.hung_up.load(Ordering::SeqCst),
        "the upstream connection is closed with it"
    );
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut rest = Vec::new();
    // Closed or reset: either way reading ends.
    let _ = client.read_to_end(&mut rest);
    assert!(served(site.web));
}

/// What a proxied client that stops reading holds in the gateway is one piece of the
/// body waiting to be written and one read buffer on the upstream side, not the 400 KB
/// that hyper reads at once by default: 48 such clients grow it by well under 384 KiB
/// each (about 600 KiB each before the upstream reads were bounded).
#[test]
fn clients_that_stop_reading_a_proxied_body_hold_little_memory_each() {
    const CLIENTS: u64 = 48;
    let site = start();
    let before = site.app.rss_kib();
    let clients: Vec<TcpStream> = (0..CLIENTS)
        .map(|_| {
            let mut client = TcpStream::connect(site.web).unwrap();
            client
                .write_all(b"GET /endless/stream HTTP/1.1\r\nHost: site.test\r\n\r\n")
                .unwrap();
            client
        })
        .collect();
    // Until the upstream is held back on every connection.
    let mut last = (0, Instant::now());
    poll_until(
        Duration::from_secs(20),
        Duration::from_millis(50),
        || {
            let now = site.endless.sent.load(Ordering::SeqCst);
            if now != last.0 {
                last = (now, Instant::now());
            }
            now > 0 && last.1.elapsed() > Duration::from_millis(500)
        },
        || "the upstream was never held back".to_owned(),
    );
    let grown = site.app.rss_kib().saturating_sub(before);
    assert!(
        grown < 384 * CLIENTS,
        "the gateway grew by {grown} KiB, {} KiB per client, with {} bytes sent by the \
         upstream",
        grown / CLIENTS,
        site.endless.sent.load(Ordering::SeqCst)
    );
    assert!(served(site.web));
    drop(clients);
}

/// HTTP/2 error codes (RFC 9113 §7).
const PROTOCOL_ERROR: u32 = 0x1;
const FRAME_SIZE_ERROR: u32 = 0x6;
const COMPRESSION_ERROR: u32 = 0x9;
const ENHANCE_YOUR_CALM: u32 = 0xb;

/// An h2c connection preface and an empty SETTINGS frame.
fn preface() -> Vec<u8> {
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    frame(&mut out, 0x4, 0, 0, &[]);
    out
}

/// `GET :path` for `localhost`, from the HPACK static table.
fn get_headers() -> Vec<u8> {
    let mut headers = vec![0x82, 0x86, 0x84, 0x41, 9];
    headers.extend_from_slice(b"localhost");
    headers
}

#[test]
fn malformed_h2_frames_and_a_rapid_reset_end_their_connection_and_no_other() {
    let site = start();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // An h2 connection opened before the abuse, used again after it.
    let tcp = runtime
        .block_on(tokio::net::TcpStream::connect(site.web))
        .unwrap();
    let (mut sender, connection) = runtime
        .block_on(hyper::client::conn::http2::handshake(
            TokioExecutor::new(),
            TokioIo::new(tcp),
        ))
        .unwrap();
    runtime.spawn(connection);
    let authority = site.web.to_string();
    let mut get = |path: &str| {
        let request = http::Request::get(format!("http://{authority}{path}"))
            .body(Empty::<Bytes>::new())
            .unwrap();
        runtime.block_on(async {
            let response = sender.send_request(request).await.unwrap();
            let status = response.status().as_u16();
            let body = response.into_body().collect().await.unwrap().to_bytes();
            (status, body)
        })
    };
    assert_eq!(get("/").0, 200);

    // What each case may get. h2 0.4 answers PROTOCOL_ERROR where RFC 9113 names
    // FRAME_SIZE_ERROR for a bad SETTINGS length and COMPRESSION_ERROR for a field block
    // it cannot decode; either way the connection ends.
    let mut cases: Vec<(&str, Vec<u8>, &[u32])> = Vec::new();
    let mut out = preface();
    frame(&mut out, 0x1, 0x5, 0, &get_headers());
    cases.push(("HEADERS on stream 0 (§6.2)", out, &[PROTOCOL_ERROR]));
    let mut out = preface();
    frame(&mut out, 0x4, 0, 0, &[0, 3, 0, 0, 0]);
    cases.push((
        "SETTINGS not a multiple of 6 octets (§6.5)",
        out,
        &[FRAME_SIZE_ERROR, PROTOCOL_ERROR],
    ));
    let mut out = preface();
    frame(&mut out, 0x1, 0x5, 1, &[0xff, 0xff, 0xff, 0xff, 0x0f]);
    cases.push((
        "an HPACK index past the tables (§4.3)",
        out,
        &[COMPRESSION_ERROR, PROTOCOL_ERROR],
    ));
    let mut out = preface();
    frame(&mut out, 0x8, 0, 0, &0u32.to_be_bytes());
    cases.push((
        "a WINDOW_UPDATE of 0 on the connection (§6.9)",
        out,
        &[PROTOCOL_ERROR],
    ));
    let mut out = preface();
    frame(&mut out, 0x0, 0, 1, &vec![0; 20_000]);
    cases.push((
        "a frame over SETTINGS_MAX_FRAME_SIZE (§4.2)",
        out,
        &[FRAME_SIZE_ERROR],
    ));
    let mut out = preface();
    frame(&mut out, 0x1, 0x5, 2, &get_headers());
    cases.push((
        "a client stream with an even id (§5.1.1)",
        out,
        &[PROTOCOL_ERROR],
    ));
    let mut out = preface();
    for i in 0..1000u32 {
        let stream = 2 * i + 1;
        frame(&mut out, 0x1, 0x5, stream, &get_headers());
        frame(&mut out, 0x3, 0, stream, &8u32.to_be_bytes());
    }
    cases.push(("1000 streams opened and reset", out, &[ENHANCE_YOUR_CALM]));

    let answered: Vec<_> = cases
        .iter()
        .map(|(what, bytes, codes)| (*what, goaway_for(site.web, bytes), *codes))
        .collect();
    let wrong: Vec<_> = answered
        .iter()
        .filter(|(_, got, codes)| !got.is_some_and(|c| codes.contains(&c)))
        .collect();
    assert!(wrong.is_empty(), "(case, GOAWAY code, expected): {wrong:?}");
    let protocol = r#"weft_http_requests_refused_total{reason="protocol",service="web"}"#;
    let count = cases.len() as f64;
    assert_eventually!(
        site.app.metric(protocol) == Some(count),
        "each connection counted once: {:?}",
        site.app.metric(protocol)
    );
    // The connection opened before, and new ones, are served.
    assert_eq!(get("/"), (200, Bytes::from_static(b"<h1>weft</h1>\n")));
    assert!(served(site.web));
    drop(runtime);
}

/// Malformed requests (one without `:path`, RFC 9113 §8.3.1; one with a
/// connection-specific field, §8.2.2) end only their streams, each reset for the client's error: counted
/// as `stream_error` and reported, while the connection's other requests are answered.
#[test]
fn http2_streams_reset_for_the_client_s_errors_are_counted_and_their_connection_goes_on() {
    let site = start();
    let mut out = preface();
    // `GET` for `localhost` without `:path`.
    let mut no_path = vec![0x82, 0x86, 0x41, 9];
    no_path.extend_from_slice(b"localhost");
    frame(&mut out, 0x1, 0x5, 1, &no_path);
    // `GET /` with `connection: close`, a literal without indexing.
    let mut hop = get_headers();
    hop.extend_from_slice(&[0x00, 10]);
    hop.extend_from_slice(b"connection");
    hop.push(5);
    hop.extend_from_slice(b"close");
    frame(&mut out, 0x1, 0x5, 3, &hop);
    frame(&mut out, 0x1, 0x5, 5, &get_headers());
    let mut conn = TcpStream::connect(site.web).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    conn.write_all(&out).unwrap();
    let mut seen = Vec::new();
    let mut buf = [0; 16_384];
    let (mut resets, mut answered) = (Vec::new(), false);
    while !(answered && resets.len() == 2) {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
        let mut at = 0;
        (resets, answered) = (Vec::new(), false);
        while at + 9 <= seen.len() {
            let len = usize::from(seen[at]) << 16
                | usize::from(seen[at + 1]) << 8
                | usize::from(seen[at + 2]);
            if at + 9 + len > seen.len() {
                break;
            }
            let stream = u32::from_be_bytes(seen[at + 5..at + 9].try_into().unwrap());
            let payload = &seen[at + 9..at + 9 + len];
            match seen[at + 3] {
                0x3 => resets.push((stream, u32::from_be_bytes(payload.try_into().unwrap()))),
                0x0 if stream == 5 => answered |= payload == b"<h1>weft</h1>\n",
                0x7 => panic!("the connection was ended: {payload:?}"),
                _ => {}
            }
            at += 9 + len;
        }
    }
    resets.sort_unstable();
    assert_eq!(
        resets,
        [(1, PROTOCOL_ERROR), (3, PROTOCOL_ERROR)],
        "the streams reset, and why"
    );
    assert!(answered, "the request after them was answered");
    assert_eventually!(
        site.app
            .metric(r#"weft_http_requests_refused_total{reason="stream_error",service="web"}"#)
            == Some(2.0),
        "{}",
        site.app.curl("/metrics").unwrap_or_default()
    );
    assert!(
        site.app
            .log()
            .contains("HTTP/2 stream 1 reset for the client's error: PROTOCOL_ERROR"),
        "{}",
        site.app.log()
    );
}

/// Clients that stop reading large static files hold little of the gateway's memory
/// each: the chunk waiting to be written, no more. Each read runs on a blocking-pool
/// thread, and a thread's first touch of its heap made 2 MiB resident while the process
/// took transparent huge pages: 32 such clients cost about 600 KiB each.
#[test]
fn clients_that_stop_reading_large_files_hold_little_memory_each() {
    const CLIENTS: u64 = 32;
    let site = start();
    let large = site.app.dir.path().join("public/large.bin");
    std::fs::write(&large, vec![b'x'; 4 << 20]).unwrap();
    assert!(served(site.web));
    let before = site.app.rss_kib();
    let mut clients: Vec<TcpStream> = (0..CLIENTS)
        .map(|_| {
            let mut client = TcpStream::connect(site.web).unwrap();
            client
                .write_all(b"GET /large.bin HTTP/1.1\r\nHost: site.test\r\n\r\n")
                .unwrap();
            client
        })
        .collect();
    for client in &mut clients {
        let mut head = [0; 16];
        client.read_exact(&mut head).unwrap();
        assert!(head.starts_with(b"HTTP/1.1 200"), "{head:?}");
    }
    // Until every answer is held back by its client's full socket.
    let mut last = (0, Instant::now());
    poll_until(
        Duration::from_secs(20),
        Duration::from_millis(50),
        || {
            let now = site.app.rss_kib();
            if now != last.0 {
                last = (now, Instant::now());
            }
            last.1.elapsed() > Duration::from_millis(500)
        },
        || "the gateway's memory never settled".to_owned(),
    );
    let grown = site.app.rss_kib().saturating_sub(before);
    assert!(
        grown < 192 * CLIENTS,
        "the gateway grew by {grown} KiB, {} KiB per client",
        grown / CLIENTS
    );
    assert!(served(site.web));
    drop(clients);
}

//! Requests per second for a small static file over keep-alive connections, against a
//! baseline measured in the same run: a bare hyper HTTP/1.1 server on a tokio
//! current-thread runtime answering the same bytes from memory (no files, no routing,
//! no inspector, no access log).
//!
//! `cargo bench -p weft-web --bench static_files`; `WEFT_BENCH_SECS` (default 3) and
//! `WEFT_BENCH_CONNS` (default 4) tune it. Each server runs on one thread, like weft's
//! reactor; the clients are plain blocking sockets on their own threads.

use std::convert::Infallible;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use weft::{Reactor, ReactorConfig};
use weft_web::{HttpService, NoRecorder, WebConfig};

const FILE: &str = "hello.html";

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let secs = env("WEFT_BENCH_SECS", 3);
    let conns = env("WEFT_BENCH_CONNS", 4);
    let content: Bytes = Bytes::from(vec![b'w'; 1024]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(FILE), &content).unwrap();

    let weft_addr = start_weft(dir.path().to_owned());
    let hyper_addr = start_hyper(content.clone());
    // Warm both up (page cache, allocator, connection setup), then measure.
    load(weft_addr, 1, Duration::from_millis(300), content.len());
    load(hyper_addr, 1, Duration::from_millis(300), content.len());
    let window = Duration::from_secs(secs);
    let base = load(hyper_addr, conns, window, content.len());
    let weft = load(weft_addr, conns, window, content.len());
    println!(
        "static file of {} bytes, {conns} keep-alive connections, {secs} s each",
        content.len()
    );
    println!("  bare hyper from memory (baseline): {base:>9.0} requests/s");
    println!("  weft-web static file:              {weft:>9.0} requests/s");
    println!("  ratio weft-web / baseline:         {:>9.2}", weft / base);
}

/// weft-web on its reactor thread, as the gateway runs it (minus Prometheus).
fn start_weft(root: std::path::PathBuf) -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let reactor = Reactor::with_config(ReactorConfig {
            handle_signals: false,
            ..ReactorConfig::default()
        })
        .unwrap();
        let config = WebConfig {
            root: Some(root),
            ..WebConfig::default()
        };
        let web = HttpService::new("bench", config, Rc::new(NoRecorder)).unwrap();
        let port = web.listen(&reactor, "tcp:0:interface=127.0.0.1").unwrap();
        tx.send(port.local_addr().unwrap()).unwrap();
        reactor.run().unwrap();
    });
    rx.recv().unwrap()
}

/// The baseline: hyper's HTTP/1.1 server, the bytes from memory, one thread.
fn start_hyper(content: Bytes) -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let local = tokio::task::LocalSet::new();
        local.block_on(&rt, async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let _ = stream.set_nodelay(true);
                let content = content.clone();
                tokio::task::spawn_local(async move {
                    let service = service_fn(move |_req| {
                        let content = content.clone();
                        async move {
                            let mut response = hyper::Response::new(Full::new(content));
                            response.headers_mut().insert(
                                hyper::header::CONTENT_TYPE,
                                hyper::header::HeaderValue::from_static("text/html; charset=utf-8"),
                            );
                            Ok::<_, Infallible>(response)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
    });
    rx.recv().unwrap()
}

/// Drives `conns` keep-alive connections for `window`; returns requests per second.
fn load(addr: SocketAddr, conns: u64, window: Duration, body_len: usize) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..conns)
        .map(|_| {
            let (stop, done) = (stop.clone(), done.clone());
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(addr).unwrap();
                s.set_nodelay(true).unwrap();
                let request = format!("GET /{FILE} HTTP/1.1\r\nHost: bench\r\n\r\n");
                let mut buf = vec![0u8; 64 * 1024];
                while !stop.load(Ordering::Relaxed) {
                    s.write_all(request.as_bytes()).unwrap();
                    read_response(&mut s, &mut buf, body_len);
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let started = Instant::now();
    std::thread::sleep(window);
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

/// Reads one response whose body is `body_len` bytes.
fn read_response(s: &mut TcpStream, buf: &mut [u8], body_len: usize) {
    let mut filled = 0;
    loop {
        let n = s.read(&mut buf[filled..]).unwrap();
        assert!(n > 0, "server closed the connection");
        filled += n;
        if let Some(end) = buf[..filled].windows(4).position(|w| w == b"\r\n\r\n") {
            assert!(
                buf.starts_with(b"HTTP/1.1 200"),
                "{}",
                String::from_utf8_lossy(&buf[..filled])
            );
            let total = end + 4 + body_len;
            while filled < total {
                let n = s.read(&mut buf[filled..]).unwrap();
                assert!(n > 0, "server closed the connection");
                filled += n;
            }
            return;
        }
    }
}

//! Request bodies that stop coming: over HTTP/2 (hyper's client, several streams on one
//! connection) the stream whose body stalls past `request_timeout` is answered 408 and
//! counted, and the connection's other streams are served before and after; over
//! HTTP/1.1 the same bound answers 408.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Frame;
use hyper_util::rt::{TokioExecutor, TokioIo};

use crate::assert_eventually;
use crate::http_peers::Upstream;
use crate::support::{App, free_port, spawn_app_with, www};

/// A request body sent piece by piece as the test says; none at all without a channel.
struct Pieces(Option<tokio::sync::mpsc::UnboundedReceiver<Bytes>>);

impl hyper::body::Body for Pieces {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match &mut self.get_mut().0 {
            Some(rx) => rx.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b)))),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_none()
    }
}

/// A service with a 1 s `request_timeout`, files, and `/api/` proxied to an upstream that
/// reads whole bodies before it answers (and would wait 20 s for one that never ends).
fn start() -> (App, SocketAddr, Upstream) {
    let up = Upstream::start();
    let port = free_port();
    let up_addr = up.addr;
    let app = spawn_app_with(|dir| {
        std::fs::write(www(dir).join("index.html"), "<h1>weft</h1>\n").unwrap();
        format!(
            "\n[[service]]\nname = \"web\"\nkind = \"http\"\n\
             listen = \"tcp:{port}:interface=127.0.0.1\"\nroot = \"{}\"\n\
             limits = {{ request_timeout = \"1s\", upstream_timeout = \"20s\" }}\n\
             [[service.route]]\nprefix = \"/api/\"\nupstream = \"http://{up_addr}\"\n",
            www(dir).display()
        )
    });
    (app, ([127, 0, 0, 1], port).into(), up)
}

async fn get(sender: &mut hyper::client::conn::http2::SendRequest<Pieces>, url: &str) -> u16 {
    let request = http::Request::get(url).body(Pieces(None)).unwrap();
    let response = sender.send_request(request).await.unwrap();
    let status = response.status().as_u16();
    response.into_body().collect().await.unwrap();
    status
}

#[test]
fn an_http2_request_body_that_stops_coming_is_408_for_its_stream_and_the_connection_goes_on() {
    let (app, web, up) = start();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let tcp = tokio::net::TcpStream::connect(web).await.unwrap();
        let (mut sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
                .await
                .unwrap();
        tokio::spawn(connection);
        let base = format!("http://{web}");

        // A complete upload first: bodies that come are forwarded whole.
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tx.send(Bytes::from_static(b"whole")).unwrap();
        drop(tx);
        let request = http::Request::post(format!("{base}/api/whole"))
            .header("content-length", "5")
            .body(Pieces(Some(rx)))
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert!(body.ends_with(b"body=whole"), "{body:?}");

        // 10 of the 100 bytes it declares, then nothing.
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tx.send(Bytes::from_static(b"0123456789")).unwrap();
        let request = http::Request::post(format!("{base}/api/upload"))
            .header("content-length", "100")
            .body(Pieces(Some(rx)))
            .unwrap();
        let started = Instant::now();
        let mut slow_sender = sender.clone();
        let slow = tokio::spawn(async move { slow_sender.send_request(request).await });

        // The stalled stream does not hold up the others on the connection.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(get(&mut sender, &format!("{base}/")).await, 200);

        let response = tokio::time::timeout(Duration::from_secs(10), slow)
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "the stalled stream is not answered within the request timeout\n{}",
                    app.log()
                )
            })
            .unwrap()
            .unwrap();
        let took = started.elapsed();
        assert_eq!(response.status(), 408, "RFC 9110 §15.5.9 Request Timeout");
        assert!(
            took >= Duration::from_millis(900) && took < Duration::from_secs(5),
            "answered after {took:?}; request_timeout is 1 s"
        );

        // The connection goes on after it.
        assert_eq!(get(&mut sender, &format!("{base}/")).await, 200);
        drop(tx);
    });
    assert_eventually!(
        app.metric(r#"weft_http_requests_refused_total{reason="body_timeout",service="web"}"#)
            == Some(1.0),
        "counted\n{}",
        app.curl("/metrics").unwrap_or_default()
    );
    assert_eq!(
        up.received(),
        1,
        "only the whole upload was answered upstream"
    );
}

#[test]
fn an_http1_request_body_that_stops_coming_is_408_within_the_request_timeout() {
    let (app, web, _up) = start();
    let mut conn = TcpStream::connect(web).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let started = Instant::now();
    conn.write_all(
        b"POST /api/upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\n0123456789",
    )
    .unwrap();
    let mut seen = Vec::new();
    let mut buf = [0; 4096];
    while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
        match conn.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
            Err(e) => panic!(
                "no answer after {:?}: {e}\n{}",
                started.elapsed(),
                app.log()
            ),
        }
    }
    let took = started.elapsed();
    let head = String::from_utf8_lossy(&seen);
    assert!(head.starts_with("HTTP/1.1 408 "), "{head}");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "answered after {took:?}; request_timeout is 1 s"
    );
    assert_eventually!(
        app.metric(r#"weft_http_requests_refused_total{reason="body_timeout",service="web"}"#)
            == Some(1.0),
        "counted\n{}",
        app.curl("/metrics").unwrap_or_default()
    );
}
